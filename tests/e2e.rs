//! End-to-end: the real binary, a generated shop, the embedded store.

mod common;

use std::io::{Read as _, Write as _};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use sqlx::Row;

#[tokio::test]
async fn demo_aggregates_equal_sql_on_the_shop() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 1500);
    assert_store_matches_source(dir.path()).await;

    // contact(email:) through GraphQL returns the same numbers as SQL on the shop file.
    let mut shop = open(&dir.path().join("shop.db")).await;
    let row = sqlx::query(
        "SELECT c.email, COUNT(o.id), CAST(SUM(o.total) AS REAL), AVG(o.total), MAX(o.created_at) FROM customers c JOIN orders o ON o.customer_id = c.id \
         GROUP BY c.id ORDER BY COUNT(o.id) DESC, c.id LIMIT 1",
    )
    .fetch_one(&mut shop)
    .await
    .unwrap();
    let email: String = row.get(0);
    let doc = format!(
        r#"{{ contact(email: "{}") {{ email data aggregates sessions(kind: "order", first: 2) {{ edges {{ node {{ kind }} }} }} }} }}"#,
        email.to_uppercase()
    );
    let out = query(dir.path(), &doc);
    let c = &out["data"]["contact"];
    assert_eq!(c["email"], email.as_str(), "{out}");
    assert_eq!(
        c["aggregates"]["transactions"].as_f64(),
        Some(row.get::<i64, _>(1) as f64)
    );
    assert!((c["aggregates"]["total_spent"].as_f64().unwrap() - row.get::<f64, _>(2)).abs() < 1e-6);
    assert!((c["aggregates"]["avg_basket"].as_f64().unwrap() - row.get::<f64, _>(3)).abs() < 1e-6);
    let last: String = row.get(4);
    assert_eq!(
        c["aggregates"]["last_order_at"].as_str().unwrap(),
        format!("{}Z", last.replace(' ', "T"))
    );
    assert_eq!(c["sessions"]["edges"].as_array().unwrap().len(), 2);
    assert!(c["data"]["price_plan"].is_string());

    // Running the demo again reuses everything and reads nothing new.
    let again = demo(dir.path(), 1500);
    assert!(stdout(&again).contains("using the existing sample shop"));
    assert!(
        stdout(&again).contains("synced shop: 0 rows read"),
        "{}",
        stdout(&again)
    );
}

#[tokio::test]
async fn incremental_sync_reads_only_changed_rows() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 1000);
    let mut shop = open(&dir.path().join("shop.db")).await;
    // 1% of orders change (total and updated_at), one customer changes plan.
    sqlx::query("UPDATE orders SET total = total + 1, updated_at = '2030-01-01 00:00:00' WHERE id % 100 = 0").execute(&mut shop).await.unwrap();
    sqlx::query(
        "UPDATE customers SET plan = 'enterprise', updated_at = '2030-01-01 00:00:00' WHERE id = 7",
    )
    .execute(&mut shop)
    .await
    .unwrap();
    let o = run(&[
        "sync",
        "shop",
        "--config",
        config(dir.path()).to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["streams"]["orders"]["read"], 50, "{summary}");
    assert_eq!(summary["streams"]["customers"]["read"], 1);
    assert_eq!(summary["streams"]["conversations"]["read"], 0);
    assert_store_matches_source(dir.path()).await;
    let out = query(
        dir.path(),
        r#"{ contacts(where: { field: "data.price_plan", eq: "enterprise" }) { totalCount } }"#,
    );
    assert_eq!(out["data"]["contacts"]["totalCount"], 1, "{out}");
}

#[tokio::test]
async fn kill_9_mid_sync_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Generate the shop only, then sync with small batches so a kill lands mid-stream.
    demo(d, 3000);
    std::fs::remove_file(d.join("dossier.db")).unwrap();
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(d.join(format!("dossier.db{ext}")));
    }
    let cfg = std::fs::read_to_string(config(d)).unwrap().replace(
        "connector = \"sqlite\"",
        // Groups of three batches: a kill can land inside one.
        "connector = \"sqlite\"\nbatch_size = 100\nbulk_commit_rows = 300",
    );
    std::fs::write(config(d), cfg).unwrap();

    let mut killed_after_commit = false;
    for attempt in 0..5 {
        let mut child = bin()
            .args(["sync", "shop", "--config", config(d).to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until some batches of orders are committed, then kill -9.
        let start = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(20));
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let n = committed_orders(d).await;
            if n > 0 || start.elapsed() > Duration::from_secs(60) {
                std::process::Command::new("kill")
                    .args(["-9", &child.id().to_string()])
                    .status()
                    .unwrap();
                killed_after_commit = n > 0;
                break;
            }
        }
        child.wait().unwrap();
        if killed_after_commit {
            eprintln!("killed on attempt {attempt}");
            break;
        }
    }
    assert!(killed_after_commit, "the sync was never killed mid-way");
    let o = run(&["sync", "shop", "--config", config(d).to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_store_matches_source(d).await;
    // The killed run is visible as such in the history, not left "running".
    let mut store = open(&d.join("dossier.db")).await;
    let statuses: Vec<String> = sqlx::query("SELECT status FROM sync_runs ORDER BY id")
        .fetch_all(&mut store)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("succeeded"),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|s| s == "interrupted"), "{statuses:?}");
    assert!(!statuses.iter().any(|s| s == "running"), "{statuses:?}");
}

async fn committed_orders(d: &std::path::Path) -> i64 {
    let p = d.join("dossier.db");
    if !p.exists() {
        return 0;
    }
    let Ok(mut c) = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}?mode=ro",
        p.display()
    ))
    .await
    else {
        return 0;
    };
    sqlx::query("SELECT COUNT(*) FROM sessions WHERE stream = 'orders'")
        .fetch_one(&mut c)
        .await
        .map(|r| r.get::<i64, _>(0))
        .unwrap_or(0)
}

#[tokio::test]
async fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 200);
    let cfg = std::fs::read_to_string(config(d)).unwrap();

    // An invalid config key.
    let bad = d.join("bad-key.toml");
    std::fs::write(&bad, cfg.replace("[server]", "[server]\nlisten_port = 9")).unwrap();
    let o = run(&["sync", "shop", "--config", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown field `listen_port`"),
        "{}",
        stderr(&o)
    );

    // A mapping to a missing column: named with source, stream and field.
    let bad = d.join("bad-column.toml");
    std::fs::write(
        &bad,
        cfg.replace("price_plan = \"plan\"", "price_plan = \"plan_name\""),
    )
    .unwrap();
    let o = run(&["check", "shop", "--config", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains(r#"invalid mapping for stream "shop.customers", field "data.price_plan": no field "plan_name" in the stream"#),
        "{}",
        stdout(&o)
    );
    let o = run(&["sync", "shop", "--config", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no field \"plan_name\""),
        "{}",
        stderr(&o)
    );

    // An invalid data key through setContactData.
    let out = query(
        d,
        r#"mutation { setContactData(id: "1", key: "Price Plan", value: "x") { id } }"#,
    );
    let msg = out["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("invalid data key \"Price Plan\""), "{out}");

    // A malformed GraphQL query.
    let out = query(d, "{ contacts(first: 1) { edges { node { email } }");
    assert!(
        out["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expected"),
        "{out}"
    );

    // A page size over the maximum.
    let out = query(d, "{ contacts(first: 100000) { totalCount } }");
    assert!(
        out["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("first must be between 1 and 100"),
        "{out}"
    );

    // A missing config file says what to do.
    let o = run(&[
        "sync",
        "shop",
        "--config",
        d.join("nope.toml").to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("run `dossier demo`"), "{}", stderr(&o));
}

#[tokio::test]
async fn serve_answers_graphql_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 200);
    let (mut child, addr) = serve(&["--config", config(d).to_str().unwrap()]);
    let post = |auth: &str| {
        let body = r#"{"query":"{ contacts(first: 2) { totalCount edges { node { email } } } }"}"#;
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    // `serve` wants API keys: none, none answered.
    let resp = post("");
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(resp.contains("dossier keys create"), "{resp}");
    // A key made with the CLI, shown once on stdout.
    let o = run(&[
        "keys",
        "create",
        "--role",
        "read",
        "--name",
        "e2e",
        "--config",
        config(d).to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let key = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("dsk_"), "{key}");
    let resp = post(&format!("Authorization: Bearer {key}\r\n"));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"totalCount\":200"), "{resp}");
    // Revoked: refused at once.
    let id = &key[4..16];
    let o = run(&[
        "keys",
        "revoke",
        id,
        "--config",
        config(d).to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Revoked by another process: refused once the server's one-second key cache expires.
    let revoked_at = Instant::now();
    let resp = loop {
        let resp = post(&format!("Authorization: Bearer {key}\r\n"));
        if !resp.starts_with("HTTP/1.1 200") || revoked_at.elapsed() > Duration::from_secs(3) {
            break resp;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(resp.contains("revoked"), "{resp}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A sync started over the API outlives the request that started it: the request is answered
/// when its time bound passes, and the run goes on to finish.
#[tokio::test]
async fn a_triggered_sync_outlives_the_request_that_started_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 10_000);
    // An empty store, so the triggered sync is a whole first load (several seconds here).
    for f in ["dossier.db", "dossier.db-wal", "dossier.db-shm"] {
        let _ = std::fs::remove_file(d.join(f));
    }
    let toml = std::fs::read_to_string(config(d)).unwrap();
    let toml = toml.replacen("[server]\n", "[server]\nrequest_timeout = \"1s\"\n", 1);
    std::fs::write(config(d), toml).unwrap();
    let key = common::api_key(&config(d), "write");
    let (mut child, addr) = serve(&["--config", config(d).to_str().unwrap()]);
    let ask = |query: &str| {
        let resp = common::post_graphql(
            &addr,
            &key,
            &serde_json::json!({ "query": query }).to_string(),
        );
        let body = resp
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        (resp, body)
    };
    let started = Instant::now();
    let (resp, _) = ask(r#"mutation { triggerSync(source: "shop") { id status } }"#);
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(resp.contains("TIMEOUT"), "{resp}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let run = loop {
        let (_, body) =
            ask(r#"{ syncRuns(source: "shop", first: 1) { edges { node { status rowsRead } } } }"#);
        let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
        let node = v["data"]["syncRuns"]["edges"][0]["node"].clone();
        if node["status"] != "running" && !node.is_null() {
            break node;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never ended: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run["status"], "succeeded", "{run}");
    let (_, body) = ask("{ contacts(first: 1) { totalCount } }");
    assert!(body.contains("\"totalCount\":10000"), "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
}
