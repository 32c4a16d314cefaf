//! What a new user trips on (issue 23), over the real binary: signals, rejected records,
//! countries, `--json` failures and read-only commands.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sqlx::Row;

/// A demo shop of `customers` customers without its store: the next sync is a first load.
fn shop_without_store(d: &Path, customers: u32) {
    demo(d, customers);
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(d.join(format!("dossier.db{ext}")));
    }
}

/// Small batches, each committed: a run lasts long enough to be stopped half-way.
fn slow_batches(d: &Path, extra_server: &str) {
    let cfg = std::fs::read_to_string(config(d))
        .unwrap()
        .replace(
            "connector = \"sqlite\"",
            "connector = \"sqlite\"\nbatch_size = 20\nbulk_commit_rows = 20",
        )
        .replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:8080\"\n{extra_server}"),
        );
    std::fs::write(config(d), cfg).unwrap();
}

/// Waits up to `limit` for the child to exit; kills it (and fails) if it does not.
fn exits_within(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn store_query(d: &Path, sql: &'static str) -> Vec<sqlx::sqlite::SqliteRow> {
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}?mode=ro",
        d.join("dossier.db").display()
    ))
    .await
    .unwrap();
    sqlx::query(sql).fetch_all(&mut c).await.unwrap()
}

/// Waits until a run of the shop is running with some batches committed.
async fn wait_for_committed_rows(d: &Path) {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
            "sqlite://{}?mode=ro",
            d.join("dossier.db").display()
        ))
        .await
        {
            // Fails until the store's tables exist.
            let running = sqlx::query(
                "SELECT COUNT(*) FROM sync_runs WHERE status = 'running' AND EXISTS (SELECT 1 FROM contacts)",
            )
            .fetch_one(&mut c)
            .await
            .map(|r| r.get::<i64, _>(0));
            if running.is_ok_and(|n| n > 0) {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no run got going within a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The runs stopped by the signal are recorded as cancelled, with their batches, and no
/// lease or scheduler is left behind.
async fn assert_stopped_cleanly(d: &Path) {
    let runs = store_query(d, "SELECT status, rows_read FROM sync_runs ORDER BY id").await;
    let last = runs.last().expect("a run");
    assert_eq!(last.get::<String, _>(0), "cancelled");
    assert!(
        last.get::<i64, _>(1) > 0,
        "the cancelled run kept its batches"
    );
    let leased = store_query(
        d,
        "SELECT COUNT(*) FROM source_schedules WHERE lease_owner IS NOT NULL",
    )
    .await;
    assert_eq!(leased[0].get::<i64, _>(0), 0, "a lease was not given back");
    let schedulers = store_query(d, "SELECT COUNT(*) FROM schedulers").await;
    assert_eq!(
        schedulers[0].get::<i64, _>(0),
        0,
        "a scheduler is still registered"
    );
}

/// Sends one request on `s` (kept alive), with `key` if any, and reads its response.
fn request(s: &mut TcpStream, addr: &str, key: Option<&str>, body: &str) -> String {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        s,
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    let mut len = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        head.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

#[tokio::test]
async fn sigterm_stops_serve_with_a_keep_alive_connection_and_a_sync_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    shop_without_store(d, 3000);
    slow_batches(d, "request_timeout = \"5m\"");
    // With keys, not `access = "open"`: `serve` prints nothing more after the address, which
    // is all the helper reads of its output.
    let key = api_key(&config(d), "write");
    let (mut child, addr) = serve(&["--config", config(d).to_str().unwrap()]);

    // A keep-alive connection, idle once its first request is answered.
    let mut idle = TcpStream::connect(&addr).unwrap();
    let first = request(
        &mut idle,
        &addr,
        Some(&key),
        r#"{"query":"{ contacts(first: 1) { totalCount } }"}"#,
    );
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // A request in flight: it runs the sync.
    let in_flight = {
        let (addr, key) = (addr.clone(), key.clone());
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            request(
                &mut s,
                &addr,
                Some(&key),
                r#"{"query":"mutation { triggerSync(source: \"shop\") { id status } }"}"#,
            )
        })
    };
    wait_for_committed_rows(d).await;

    signal(&child, "-TERM");
    let (status, took) = exits_within(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    eprintln!("serve stopped {took:?} after SIGTERM");

    // The request in flight was answered (the run it started says it was cancelled).
    let answer = in_flight.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("cancelled"), "{answer}");
    // The idle connection was closed, not left hanging.
    idle.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut rest = vec![];
    assert_eq!(idle.read_to_end(&mut rest).unwrap_or(0), 0, "{rest:?}");
    assert_stopped_cleanly(d).await;
    // Nothing is accepted any more.
    assert!(TcpStream::connect(&addr).is_err());
}

/// `dossier demo` on the shop in `d`, serving on a free port; its stdout is piped.
fn spawn_demo(d: &Path) -> Child {
    bin()
        .args([
            "demo",
            "--dir",
            d.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn sigterm_stops_demo_mid_sync_with_what_it_committed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    shop_without_store(d, 3000);
    slow_batches(d, "");
    let mut child = spawn_demo(d);
    wait_for_committed_rows(d).await;
    signal(&child, "-TERM");
    let (status, _) = exits_within(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert_stopped_cleanly(d).await;
    // The next run resumes from the cancelled one and the store matches the shop.
    let o = run(&["sync", "shop", "--config", config(d).to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_store_matches_source(d).await;
}

/// A second signal stops at once (exit code 130) instead of waiting for the runs' next batch:
/// SIGTERM then Ctrl-C's SIGINT, sent back to back by one shell (two of the same signal
/// could merge into one while pending).
#[tokio::test]
async fn a_second_signal_stops_demo_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    shop_without_store(d, 3000);
    slow_batches(d, "");
    let mut child = spawn_demo(d);
    wait_for_committed_rows(d).await;
    let pid = child.id().to_string();
    let ok = std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}; kill -INT {pid}")])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let (status, _) = exits_within(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "{status:?}");
    // What the runs committed stays: the next run resumes and the store matches the shop.
    let o = run(&["sync", "shop", "--config", config(d).to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_store_matches_source(d).await;
}

/// `serve` whose stdout is closed before it prints (a pipe to a reader that went away) still
/// serves: its address lines are not worth a panic.
#[tokio::test]
async fn serve_with_its_stdout_closed_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 20);
    let text = std::fs::read_to_string(config(d))
        .unwrap()
        .replace("[server]\n", "[server]\naccess = \"open\"\n");
    std::fs::write(config(d), text).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = bin()
        .args([
            "serve",
            "--config",
            config(d).to_str().unwrap(),
            "--listen",
            &addr,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let start = Instant::now();
    let answer = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("serve exited with {status:?}");
        }
        if let Ok(mut s) = TcpStream::connect(&addr) {
            break request(
                &mut s,
                &addr,
                None,
                r#"{"query":"{ contacts(first: 1) { totalCount } }"}"#,
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(answer.contains("\"totalCount\":20"), "{answer}");
    signal(&child, "-TERM");
    let (status, _) = exits_within(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn sigterm_stops_demo_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 200);
    let mut child = spawn_demo(d);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let start = Instant::now();
    let mut line = String::new();
    while !line.contains("/graphql") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "demo ended early");
        assert!(start.elapsed() < Duration::from_secs(60));
    }
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_string();
    let mut idle = TcpStream::connect(&addr).unwrap();
    let first = request(
        &mut idle,
        &addr,
        None,
        r#"{"query":"{ contacts(first: 1) { totalCount } }"}"#,
    );
    assert!(first.contains("\"totalCount\":200"), "{first}");
    signal(&child, "-TERM");
    let (status, _) = exits_within(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn sigterm_stops_a_worker_mid_sync_and_gives_its_lease_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    shop_without_store(d, 3000);
    slow_batches(d, "");
    let cfg = std::fs::read_to_string(config(d))
        .unwrap()
        .replace("name = \"shop\"\n", "name = \"shop\"\nschedule = \"1s\"\n");
    std::fs::write(config(d), cfg).unwrap();
    let mut child = bin()
        .args(["worker", "--config", config(d).to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_committed_rows(d).await;
    signal(&child, "-TERM");
    let (status, _) = exits_within(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert_stopped_cleanly(d).await;
}

async fn shop_sql(d: &Path, sql: &'static str) {
    let mut shop = open(&d.join("shop.db")).await;
    sqlx::query(sql).execute(&mut shop).await.unwrap();
}

/// `check` goes on past a stream whose mapping names a missing field: one run lists what is
/// wrong with every stream.
#[tokio::test]
async fn check_lists_the_problems_of_every_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 20);
    let text = std::fs::read_to_string(config(d))
        .unwrap()
        .replace("price_plan = \"plan\"", "price_plan = \"plan_name\"")
        .replace("csat = \"csat\"", "csat = \"score\"");
    std::fs::write(config(d), text).unwrap();
    let o = run(&["check", "shop", "--config", config(d).to_str().unwrap()]);
    assert!(!o.status.success(), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains(r#"no field "plan_name""#), "{out}");
    assert!(out.contains(r#"no field "score""#), "{out}");
}

#[tokio::test]
async fn a_stream_rejecting_more_than_max_rejected_fails_with_the_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 200);
    let cfg = config(d);
    let cfg = cfg.to_str().unwrap();

    // Every customer's email is broken: every customer would be rejected.
    shop_sql(
        d,
        "UPDATE customers SET email = 'nobody-' || id, updated_at = '2030-01-01 00:00:00'",
    )
    .await;
    let o = run(&["check", "shop", "--config", cfg]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(r#"stream "customers": the mapping would reject 200 of the first 200 records: record 1: identities.email: "#),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("\"nobody-1\""), "{}", stdout(&o));

    let o = run(&["sync", "shop", "--config", cfg, "--json"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&o), stderr(&o)));
    assert_eq!(out["stream"], "customers", "{out}");
    assert_eq!(out["rejected"], 200, "{out}");
    assert_eq!(out["read"], 200, "{out}");
    assert!(
        out["reasons"][0].as_str().unwrap().contains("\"nobody-1\""),
        "{out}"
    );
    assert!(
        stderr(&o).contains("rejected 200 of 200 records, more than max_rejected"),
        "{}",
        stderr(&o)
    );
    let runs = run(&["runs", "--config", cfg]);
    assert!(
        stdout(&runs).lines().next().unwrap().contains("failed"),
        "{}",
        stdout(&runs)
    );

    // 5 of 100 changed customers (5%, under the default 10%): the run succeeds and says so.
    shop_sql(
        d,
        "UPDATE customers SET email = CASE WHEN id <= 5 THEN 'still-nobody-' || id ELSE 'p' || id || '@example.com' END, \
         updated_at = '2030-01-02 00:00:00' WHERE id <= 100",
    )
    .await;
    let o = run(&["sync", "shop", "--config", cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("5 rejected"), "{}", stdout(&o));
    assert!(stdout(&o).contains("still-nobody-"), "{}", stdout(&o));

    // A stricter max_rejected fails the same share.
    shop_sql(
        d,
        "UPDATE customers SET updated_at = '2030-01-03 00:00:00' WHERE id <= 100",
    )
    .await;
    let strict = d.join("strict.toml");
    std::fs::write(
        &strict,
        std::fs::read_to_string(cfg).unwrap().replace(
            "connector = \"sqlite\"",
            "connector = \"sqlite\"\nmax_rejected = 0.01",
        ),
    )
    .unwrap();
    let o = run(&["sync", "shop", "--config", strict.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("rejected 5 of 100 records"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn countries_written_as_names_are_kept_as_codes_and_filters_read_them_alike() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    shop_without_store(d, 200);
    shop_sql(
        d,
        "UPDATE customers SET country = CASE id % 5 WHEN 0 THEN 'India' WHEN 1 THEN 'United Kingdom' \
         WHEN 2 THEN 'USA' WHEN 3 THEN 'Deutschland' ELSE 'Narnia' END, updated_at = '2030-01-01 00:00:00'",
    )
    .await;
    let o = run(&[
        "sync",
        "shop",
        "--config",
        config(d).to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["streams"]["customers"]["read"], 200, "{summary}");
    assert_eq!(summary["streams"]["customers"]["rejected"], 0, "{summary}");
    assert_eq!(summary["streams"]["customers"]["written"], 200, "{summary}");
    assert!(
        stderr(&o).contains("Narnia"),
        "the dropped value is warned about: {}",
        stderr(&o)
    );

    let count = |filter: &str| {
        let out = query(
            d,
            &format!(r#"{{ contacts(where: {filter}) {{ totalCount }} }}"#),
        );
        out["data"]["contacts"]["totalCount"]
            .as_i64()
            .unwrap_or_else(|| panic!("{out}"))
    };
    assert_eq!(count(r#"{ field: "country", eq: "IN" }"#), 40);
    assert_eq!(count(r#"{ field: "country", eq: "GB" }"#), 40);
    assert_eq!(count(r#"{ field: "country", eq: "DE" }"#), 40);
    assert_eq!(count(r#"{ field: "country", eq: "US" }"#), 40);
    assert_eq!(count(r#"{ field: "country", eq: "USA" }"#), 40);
    assert_eq!(count(r#"{ field: "country", eq: "United States" }"#), 40);
    assert_eq!(
        count(r#"{ field: "country", in: ["Deutschland", "india"] }"#),
        80
    );
    // The person with an unreadable country keeps their contact, email and data.
    let mut shop = open(&d.join("shop.db")).await;
    let email: String = sqlx::query("SELECT email FROM customers WHERE id = 4")
        .fetch_one(&mut shop)
        .await
        .unwrap()
        .get(0);
    let out = query(
        d,
        &format!(r#"{{ contact(email: "{email}") {{ country email data }} }}"#),
    );
    let node = &out["data"]["contact"];
    assert_eq!(node["email"], email.as_str(), "{out}");
    assert_eq!(node["country"], serde_json::Value::Null, "{out}");
    assert!(node["data"]["price_plan"].is_string(), "{out}");
    assert_eq!(count(r#"{ not: { field: "country", exists: true } }"#), 40);
}

#[tokio::test]
async fn sync_json_prints_failures_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 50);
    let o = run(&[
        "sync",
        "nope",
        "--config",
        config(d).to_str().unwrap(),
        "--json",
    ]);
    assert!(!o.status.success());
    let out: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&o), stderr(&o)));
    assert_eq!(out["source"], "nope");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("unknown source \"nope\""),
        "{out}"
    );
    assert_eq!(out["retryable"], false);
}

#[tokio::test]
async fn read_only_commands_need_no_connection_variables_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 50);
    // A second source whose connection is a variable nobody set here, and a new rule.
    let cfg = std::fs::read_to_string(config(d)).unwrap()
        + r#"
[[aggregates]]
name = "orders_seen"
op = "count"
kind = "order"

[[sources]]
name = "crm"
connector = "postgres"
config = { url = "${DOSSIER_TEST_NEVER_SET_URL}" }

[[sources.streams]]
name = "people"
read = { table = "people" }

[sources.streams.mapping]
target = "contact"
id = "id"
identities = { email = "email" }
"#;
    std::fs::write(config(d), cfg).unwrap();
    let cfg = config(d);
    let cfg = cfg.to_str().unwrap();
    let snapshot = || async {
        let rules =
            store_query(d, "SELECT COUNT(*) FROM aggregate_rules").await[0].get::<i64, _>(0);
        let sources: Vec<(String, i64)> =
            store_query(d, "SELECT name, updated_at FROM sources ORDER BY name")
                .await
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
        (rules, sources)
    };
    let before = snapshot().await;
    for args in [
        vec!["runs", "--config", cfg],
        vec!["sources", "--config", cfg],
        vec!["keys", "list", "--config", cfg],
        vec![
            "query",
            "--config",
            cfg,
            "{ contacts(first: 1) { totalCount } }",
        ],
    ] {
        let o = bin()
            .args(&args)
            .env_remove("DOSSIER_TEST_NEVER_SET_URL")
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(
        snapshot().await,
        before,
        "a read-only command wrote to the store"
    );
    // The commands that connect still say what is missing.
    let o = run(&["sync", "crm", "--config", cfg]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("DOSSIER_TEST_NEVER_SET_URL"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unreachable_shop_fails_within_seconds_naming_host_and_port_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = d.join("dossier.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[store]
url = "sqlite://dossier.db"

[[sources]]
name = "shopify"
connector = "shopify"
config = {{ shop = "my-shop", token = "shpat_test", api_version = "2025-01", endpoint = "http://127.0.0.1:{port}" }}

[[sources.streams]]
name = "customers"
read = {{ resource = "customers" }}

[sources.streams.mapping]
target = "contact"
id = "id"
identities = {{ email = "email" }}
"#
        ),
    )
    .unwrap();
    let at = format!("127.0.0.1:{port}");
    for (command, seen) in [("check", "stdout"), ("sync", "stderr")] {
        let start = Instant::now();
        let o = run(&[command, "shopify", "--config", cfg.to_str().unwrap()]);
        let took = start.elapsed();
        // The line that reports the failure (logs may say it too, on lines of their own).
        let all = if seen == "stdout" {
            stdout(&o)
        } else {
            stderr(&o)
        };
        let text = all
            .lines()
            .find(|l| l.starts_with("shopify:") || l.starts_with("error:"))
            .unwrap_or_else(|| panic!("{command}: no error line in {all}"))
            .to_string();
        assert!(!o.status.success(), "{command}: {text}");
        assert!(
            took < Duration::from_secs(10),
            "{command} took {took:?}: {text}"
        );
        assert!(text.contains(&at), "{command} does not name {at}: {text}");
        assert_eq!(
            text.matches("refused").count(),
            1,
            "{command} says its cause other than once: {text}"
        );
        eprintln!("{command} failed in {took:?}: {text}");
    }
}

#[test]
fn a_filter_on_an_undefined_aggregate_is_an_error_listing_the_defined_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 20);
    for doc in [
        r#"{ contacts(where: { field: "agg.avg_bsket", gt: 1 }) { totalCount } }"#,
        r#"{ contacts(filter: "country = \"FR\" and agg.avg_bsket > 1") { totalCount } }"#,
    ] {
        let out = query(d, doc);
        let msg = out["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(r#"no aggregate "avg_bsket" is defined; defined: avg_basket, avg_csat, "#),
            "{out}"
        );
    }
    let out = query(
        d,
        r#"mutation { saveSegment(name: "typo", definition: "agg.avg_bsket > 1") { name } }"#,
    );
    let msg = out["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(r#"no aggregate "avg_bsket" is defined"#),
        "{out}"
    );
    let out = query(
        d,
        r#"{ contacts(where: { field: "agg.avg_basket", gt: 1 }) { totalCount } }"#,
    );
    assert!(out["errors"].is_null(), "{out}");

    // A rule over a kind no stream maps is refused when the config loads.
    let bad = d.join("bad-rule.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(config(d)).unwrap()
            + "\n[[aggregates]]\nname = \"visits\"\nop = \"count\"\nkind = \"visit\"\n",
    )
    .unwrap();
    let o = run(&["check", "shop", "--config", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(r#"aggregate "visits": no stream maps sessions of kind "visit"; the kinds mapped are: conversation, order"#),
        "{}",
        stderr(&o)
    );
}

/// A new source starts with its connection alone: `discover` lists its tables with their
/// cursor candidates and says what qualifies, `check` tests the connection, and `sync`
/// says what to add instead of syncing nothing.
#[tokio::test]
async fn a_source_with_its_connection_alone_is_discovered_checked_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 20);
    std::fs::write(
        config(d),
        "[store]\nurl = \"sqlite://dossier.db\"\n\n[[sources]]\nname = \"shop\"\nconnector = \"sqlite\"\nconfig = { path = \"shop.db\" }\n",
    )
    .unwrap();
    let cfg = config(d);
    let cfg = cfg.to_str().unwrap();

    let o = run(&["discover", "shop", "--config", cfg]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let catalog: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let customers = catalog["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "customers")
        .unwrap_or_else(|| panic!("{catalog}"));
    assert_eq!(
        customers["cursor_candidates"],
        // The row id grows with inserts; updated_at with every change.
        serde_json::json!(["id", "updated_at"]),
        "{customers}"
    );
    assert!(
        stderr(&o).contains("a cursor must grow whenever a row changes"),
        "{}",
        stderr(&o)
    );

    let o = run(&["check", "shop", "--config", cfg]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("no streams are configured yet"),
        "{}",
        stdout(&o)
    );

    let o = run(&["sync", "shop", "--config", cfg]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("has no streams yet; `dossier discover shop` lists what it offers"),
        "{}",
        stderr(&o)
    );
}
