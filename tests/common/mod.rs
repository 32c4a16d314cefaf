//! Helpers for end-to-end tests over the real `dossier` binary.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Row, SqliteConnection};

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dossier"));
    c.env("DOSSIER_LOG", "warn").env_remove("DOSSIER_CONFIG");
    c
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the dossier binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Generates a demo shop of `customers` customers in `dir` without serving.
pub fn demo(dir: &Path, customers: u32) -> Output {
    let o = run(&[
        "demo",
        "--no-serve",
        "--dir",
        dir.to_str().unwrap(),
        "--customers",
        &customers.to_string(),
    ]);
    assert!(
        o.status.success(),
        "demo failed: {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    o
}

pub async fn open(path: &Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

pub fn config(dir: &Path) -> PathBuf {
    dir.join("dossier.toml")
}

/// Runs a GraphQL document through `dossier query` and returns the JSON result.
pub fn query(dir: &Path, doc: &str) -> serde_json::Value {
    let o = run(&["query", "--config", config(dir).to_str().unwrap(), doc]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "query output is not JSON ({e}): {}\n{}",
            stdout(&o),
            stderr(&o)
        )
    })
}

/// Aggregates as the source says they should be, per customer id, from SQL on the shop.
pub async fn expected_aggregates(shop: &Path) -> Vec<(i64, i64, f64, Option<f64>, Option<f64>)> {
    let mut c = open(shop).await;
    let rows = sqlx::query(
        "SELECT c.id, \
           (SELECT COUNT(*) FROM orders o WHERE o.customer_id = c.id), \
           (SELECT CAST(COALESCE(SUM(o.total), 0) AS REAL) FROM orders o WHERE o.customer_id = c.id), \
           (SELECT AVG(o.total) FROM orders o WHERE o.customer_id = c.id), \
           (SELECT AVG(v.csat) FROM conversations v WHERE v.customer_id = c.id) \
         FROM customers c ORDER BY c.id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get::<f64, _>(2), r.get(3), r.get(4)))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(1.0)
}

/// Compares every customer's aggregates in the store with SQL on the source.
pub async fn assert_store_matches_source(dir: &Path) {
    let want = expected_aggregates(&dir.join("shop.db")).await;
    let mut store = open(&dir.join("dossier.db")).await;
    let rows = sqlx::query(
        "SELECT i.value, a.name, a.value FROM identities i JOIN contact_aggregates a ON a.contact_id = i.contact_id \
         WHERE i.kind = 'external' AND i.value LIKE 'shop:customers:%'",
    )
    .fetch_all(&mut store)
    .await
    .unwrap();
    let mut got: std::collections::HashMap<(i64, String), serde_json::Value> =
        std::collections::HashMap::new();
    for r in rows {
        let ext: String = r.get(0);
        let id: i64 = ext.rsplit(':').next().unwrap().parse().unwrap();
        let v: Option<String> = r.get(2);
        got.insert(
            (id, r.get(1)),
            v.map(|v| serde_json::from_str(&v).unwrap())
                .unwrap_or(serde_json::Value::Null),
        );
    }
    let num = |id: i64, name: &str| -> Option<f64> {
        got.get(&(id, name.to_string()))
            .and_then(|v| v.get("n"))
            .and_then(|n| n.as_f64())
    };
    let customers: i64 = sqlx::query("SELECT COUNT(*) FROM contacts WHERE merged_into IS NULL")
        .fetch_one(&mut store)
        .await
        .unwrap()
        .get(0);
    let sessions: i64 = sqlx::query("SELECT COUNT(*) FROM sessions WHERE deleted = 0")
        .fetch_one(&mut store)
        .await
        .unwrap()
        .get(0);
    let mut shop = open(&dir.join("shop.db")).await;
    let src_sessions: i64 =
        sqlx::query("SELECT (SELECT COUNT(*) FROM orders) + (SELECT COUNT(*) FROM conversations)")
            .fetch_one(&mut shop)
            .await
            .unwrap()
            .get(0);
    assert_eq!(customers as usize, want.len(), "one contact per customer");
    assert_eq!(
        sessions, src_sessions,
        "one session per order and conversation"
    );
    let mut checked = 0;
    for (id, count, sum, avg, csat) in want {
        // A contact without sessions has no stored aggregate row: its count and sum are 0.
        assert_eq!(
            num(id, "transactions").unwrap_or(0.0),
            count as f64,
            "transactions of {id}"
        );
        let spent = num(id, "total_spent").unwrap_or(0.0);
        assert!(close(spent, sum), "total_spent of {id}: {spent} vs {sum}");
        match avg {
            Some(a) => assert!(
                close(num(id, "avg_basket").unwrap(), a),
                "avg_basket of {id}"
            ),
            None => assert_eq!(num(id, "avg_basket"), None, "avg_basket of {id}"),
        }
        match csat {
            Some(c) => assert!(close(num(id, "avg_csat").unwrap(), c), "avg_csat of {id}"),
            None => assert_eq!(num(id, "avg_csat"), None, "avg_csat of {id}"),
        }
        checked += 1;
    }
    assert!(checked > 0);
}

/// Starts `dossier serve` with `args` on a free port; returns the child and its address, once
/// it printed it. Its stderr is returned with the child's output when it is waited on.
/// A new API key of `role` for the config at `config`.
pub fn api_key(config: &Path, role: &str) -> String {
    let o = run(&[
        "keys",
        "create",
        "--role",
        role,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

pub fn serve(args: &[&str]) -> (Child, String) {
    serve_with(args, &[])
}

/// [`serve`] with variables set in the server's environment.
pub fn serve_with(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> (Child, String) {
    let mut child = bin()
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 512];
    let mut text = String::new();
    let start = Instant::now();
    while !text.contains("/graphql") && start.elapsed() < Duration::from_secs(30) {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let addr = text
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no address in {text:?}"))
        .to_string();
    (child, addr)
}

/// POSTs a GraphQL request body to `/graphql`; returns the raw HTTP response.
pub fn post_graphql(addr: &str, key: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

/// Sends `sig` (`-TERM`, `-INT`, `-9`) to `child` with kill(1), which must succeed: a child
/// not yet waited for can always be signalled.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}
