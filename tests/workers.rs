//! Scale-out on PostgreSQL with real `dossier worker` processes: three workers share twenty
//! sources on a two-second schedule (every due slot runs exactly once, runs of a source never
//! overlap), and a worker killed with `kill -9` mid-sync is taken over, ending with exactly
//! the source's rows and aggregates.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{bin, signal};
use dossier_test_support::PgDb;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, Row as _};

/// A SQLite source: `people` people, each with two orders of `id % 100` and 1.5.
async fn source_file(path: &Path, people: i64) {
    let domain = path.file_stem().unwrap().to_str().unwrap().to_string();
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in [
        "CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT NOT NULL)".to_string(),
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL, total REAL NOT NULL, at TEXT NOT NULL)".to_string(),
        format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {people}) \
             INSERT INTO people SELECT i, 'p' || i || '@{domain}.example.com' FROM s"
        ),
        "INSERT INTO orders SELECT id * 2, id, id % 100, '2024-01-01 00:00:00' FROM people".to_string(),
        "INSERT INTO orders SELECT id * 2 + 1, id, 1.5, '2024-01-02 00:00:00' FROM people".to_string(),
    ] {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
    }
}

fn source_toml(name: &str, file: &Path, schedule: &str, batch: usize) -> String {
    format!(
        r#"
[[sources]]
name = "{name}"
connector = "sqlite"
config = {{ path = "{}" }}
schedule = "{schedule}"
batch_size = {batch}
bulk_commit_rows = {group}

[[sources.streams]]
name = "people"
read = {{ table = "people", cursor = "id" }}

[sources.streams.mapping]
target = "contact"
id = "id"
identities = {{ email = "email" }}

[[sources.streams]]
name = "orders"
read = {{ table = "orders", cursor = "id" }}

[sources.streams.mapping]
target = "session"
id = "id"
kind = "order"
started_at = "at | datetime"
contact = {{ stream = "people", field = "person_id" }}
data = {{ total = "total" }}
"#,
        file.display(),
        // A first load commits every three batches: a kill can land inside a group.
        group = batch * 3
    )
}

fn config(dir: &Path, store: &str, sources: &str) -> std::path::PathBuf {
    let text = format!(
        r#"[store]
url = "{store}"

[scheduler]
lease = "3s"
poll = "1s"
max_parallel = 4

[[aggregates]]
name = "total_spent"
op = "sum"
kind = "order"
field = "total"
{sources}"#
    );
    let path = dir.join("dossier.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A `dossier worker`; its stderr goes to `<config dir>/worker-<n>.log`.
fn worker(config: &Path, n: usize) -> Child {
    worker_with(config, n, &[])
}

fn worker_with(config: &Path, n: usize, extra: &[&str]) -> Child {
    let log = std::fs::File::create(config.with_file_name(format!("worker-{n}.log"))).unwrap();
    bin()
        .args(["worker", "--config", config.to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn worker_log(config: &Path, n: usize) -> String {
    std::fs::read_to_string(config.with_file_name(format!("worker-{n}.log"))).unwrap_or_default()
}

/// Kills the workers of one config still running when a test ends, also when it fails
/// half-way. A pid is only killed while it still runs `dossier worker` on that config (a
/// waited-for pid may be reused by another process).
struct Reaper(Vec<u32>, String);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.contains("worker") && cmdline.contains(&self.1) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
    }
}

#[tokio::test]
async fn three_workers_share_twenty_sources_each_slot_once_never_overlapping() {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::create("workers").await;
    let mut sources = String::new();
    for i in 0..20 {
        let file = dir.path().join(format!("s{i:02}.db"));
        source_file(&file, 20).await;
        sources += &source_toml(&format!("s{i:02}"), &file, "2s", 100);
    }
    let cfg = config(dir.path(), pg.url(), &sources);
    let mut workers: Vec<Child> = (0..3)
        .map(|n| match n {
            0 => worker_with(&cfg, n, &["--metrics-listen", "127.0.0.1:0"]),
            _ => worker(&cfg, n),
        })
        .collect();
    let _reaper = Reaper(
        workers.iter().map(Child::id).collect(),
        cfg.display().to_string(),
    );
    tokio::time::sleep(Duration::from_secs(14)).await;
    // A worker serves its sync metrics.
    let log = worker_log(&cfg, 0);
    let addr = log
        .split("metrics: http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no metrics address in {log:?}"))
        .to_string();
    let metrics = {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(
        metrics.contains("dossier_sync_runs_total{source=\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("dossier_sync_consecutive_failures{source=\"s00\"} 0"),
        "{metrics}"
    );
    for w in &workers {
        signal(w, "-INT");
    }
    for (n, w) in workers.iter_mut().enumerate() {
        let status = w.wait().unwrap();
        assert!(
            status.success(),
            "worker {n} exited with {status}: {}",
            worker_log(&cfg, n)
        );
    }
    let mut c = pg.connect().await;
    let rows = sqlx::query(
        "SELECT source, status, trigger, due_at, started_at, finished_at, owner FROM sync_runs ORDER BY source, started_at",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert!(!rows.is_empty());
    let mut owners = std::collections::BTreeSet::new();
    for i in 0..20 {
        let name = format!("s{i:02}");
        let runs: Vec<_> = rows
            .iter()
            .filter(|r| r.get::<String, _>(0) == name)
            .collect();
        // Every slot served once: due times are distinct and on the 2 s grid.
        let dues: Vec<i64> = runs
            .iter()
            .filter(|r| r.get::<String, _>(1) == "succeeded")
            .map(|r| {
                r.get::<Option<i64>, _>(3)
                    .expect("scheduled runs have a slot")
            })
            .collect();
        assert!(
            dues.len() >= 4,
            "{name}: only {} slots ran: {dues:?}",
            dues.len()
        );
        // A slot runs once; one missed while the machine was starved is skipped, not replayed,
        // so consecutive slots are a whole number of periods apart (almost always one).
        for pair in dues.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap > 0 && gap % 2_000_000 == 0, "{name}: slots {dues:?}");
        }
        // No two runs of a source at once.
        for pair in runs.windows(2) {
            let end: Option<i64> = pair[0].get(5);
            let next_start: i64 = pair[1].get(4);
            assert!(
                end.is_some_and(|e| e <= next_start),
                "{name}: runs overlap: {:?} then {next_start}",
                end
            );
        }
        for r in &runs {
            owners.insert(r.get::<Option<String>, _>(6).unwrap());
            let status: String = r.get(1);
            assert!(
                ["succeeded", "cancelled"].contains(&status.as_str()),
                "{name}: a run ended {status}"
            );
        }
    }
    assert!(owners.len() >= 2, "the work was shared: {owners:?}");
    // Every source's rows, exactly once.
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM contacts WHERE merged_into IS NULL")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20 * 20);
}

#[tokio::test]
async fn a_worker_killed_mid_sync_is_taken_over_with_nothing_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::create("kill9").await;
    let people = 6_000;
    let file = dir.path().join("big.db");
    source_file(&file, people).await;
    let cfg = config(
        dir.path(),
        pg.url(),
        &source_toml("big", &file, "1h", 100).replace("schedule = \"1h\"", "schedule = \"2s\""),
    );
    let mut first = worker(&cfg, 0);
    let _first_reaper = Reaper(vec![first.id()], cfg.display().to_string());
    let mut c = pg.connect().await;
    let start = Instant::now();
    let mut killed_at = 0;
    while start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM sessions")
            .fetch_one(&mut c)
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if n > 0 {
            signal(&first, "-9");
            killed_at = n;
            break;
        }
    }
    if killed_at == 0 {
        signal(&first, "-9");
    }
    first.wait().unwrap();
    assert!(killed_at > 0, "the worker never got to the orders");
    let mut second = worker(&cfg, 1);
    let _second_reaper = Reaper(vec![second.id()], cfg.display().to_string());
    let start = Instant::now();
    let done = loop {
        if start.elapsed() > Duration::from_secs(90) {
            signal(&second, "-9");
            panic!("the source never finished");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = sqlx::query(
            "SELECT COUNT(*) FROM sync_runs WHERE source = 'big' AND status = 'succeeded' AND trigger = 'resume'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        if r.get::<i64, _>(0) > 0 {
            break true;
        }
    };
    assert!(done);
    signal(&second, "-INT");
    second.wait().unwrap();
    let statuses: Vec<(String, String)> =
        sqlx::query("SELECT status, trigger FROM sync_runs WHERE source = 'big' ORDER BY id")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(
        statuses[0],
        ("interrupted".into(), "schedule".into()),
        "{statuses:?}"
    );
    assert_eq!(
        statuses[1],
        ("succeeded".into(), "resume".into()),
        "{statuses:?}"
    );
    let (contacts, sessions): (i64, i64) = {
        let a = sqlx::query("SELECT COUNT(*) FROM contacts WHERE merged_into IS NULL")
            .fetch_one(&mut c)
            .await
            .unwrap();
        let b = sqlx::query("SELECT COUNT(*) FROM sessions WHERE deleted = 0")
            .fetch_one(&mut c)
            .await
            .unwrap();
        (a.get(0), b.get(0))
    };
    assert_eq!((contacts, sessions), (people, people * 2));
    // Every contact's sum equals its orders: (id % 100) + 1.5.
    let wrong: i64 = sqlx::query(
        "SELECT COUNT(*) FROM contacts c JOIN identities i ON i.contact_id = c.id AND i.kind = 'external' \
         JOIN contact_aggregates a ON a.contact_id = c.id AND a.name = 'total_spent' \
         WHERE a.num <> (CAST(split_part(i.value, ':', 3) AS BIGINT) % 100) + 1.5",
    )
    .fetch_one(&mut c)
    .await
    .unwrap()
    .get(0);
    assert_eq!(wrong, 0);
    let with_aggs: i64 =
        sqlx::query("SELECT COUNT(*) FROM contact_aggregates WHERE name = 'total_spent'")
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get(0);
    assert_eq!(with_aggs, people);
}

/// Two sources whose people share every email (both read the same shop), synced by two
/// `dossier sync` processes started at the same moment into one PostgreSQL store: one contact
/// per person, each with both sources' identities and orders, as when they run one after
/// the other.
#[tokio::test]
async fn two_syncs_at_once_sharing_emails_leave_one_contact_per_person() {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDb::create("two_syncs").await;
    let people = 3_000;
    let file = dir.path().join("shop.db");
    source_file(&file, people).await;
    let sources = format!(
        "{}{}",
        source_toml("a", &file, "1h", 200),
        source_toml("b", &file, "1h", 200)
    );
    let cfg = config(dir.path(), pg.url(), &sources);
    let sync = |name: &str| {
        bin()
            .args(["sync", name, "--config", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (sync("a"), sync("b"));
    for (name, child) in [("a", a), ("b", b)] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "sync {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut c = pg.connect().await;
    async fn count(c: &mut PgConnection, sql: &'static str) -> i64 {
        sqlx::query(sql).fetch_one(c).await.unwrap().get(0)
    }
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM contacts WHERE merged_into IS NULL"
        )
        .await,
        people,
        "one contact per distinct email"
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(DISTINCT contact_id) FROM identities WHERE kind = 'email'"
        )
        .await,
        people,
        "every email on a live contact of its own"
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM contacts c WHERE c.merged_into IS NULL AND (SELECT COUNT(*) FROM identities i \
             WHERE i.contact_id = c.id) <> 3"
        )
        .await,
        0,
        "each contact holds its email and both sources' ids"
    );
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM sessions WHERE deleted = 0").await,
        people * 4
    );
    // Each person's four orders (two per source) on their contact, summed exactly.
    let wrong: i64 = sqlx::query(
        "SELECT COUNT(*) FROM contact_aggregates a JOIN contacts c ON c.id = a.contact_id \
         WHERE a.name = 'total_spent' AND c.merged_into IS NULL \
         AND a.num <> (SELECT SUM((s.data::json->'total'->>'n')::float8) FROM sessions s WHERE s.contact_id = c.id)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap()
    .get(0);
    assert_eq!(wrong, 0, "aggregates equal their sessions");
    let with_aggregate: i64 =
        sqlx::query("SELECT COUNT(*) FROM contact_aggregates WHERE name = 'total_spent'")
            .fetch_one(&mut c)
            .await
            .unwrap()
            .get(0);
    assert_eq!(with_aggregate, people);
}
