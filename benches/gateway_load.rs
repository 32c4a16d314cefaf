//! The gateway under load (issue #9): a store with many contacts and 5 sessions each, `dossier
//! serve` behind an API key, and 8 keep-alive connections over loopback for a fixed time:
//!
//! (a) `contact(email:)` with data, aggregates and the last 5 sessions, for random emails;
//! (b) a segment page of 50 (`country = FR and data.price_plan = basic`, after a random id);
//!
//! on a PostgreSQL store next to `pgbench` running the equivalent SQL with the same
//! concurrency on the same database (the limit), then on an embedded (SQLite) store. Reports
//! requests/s, p50/p99 latency, errors and the gateway's peak RSS.
//!
//! Each store is filled with SQL (`generate_series` through `psql`, recursive CTEs through
//! the `sqlite3` shell) in the store's own tables and encodings, not through a sync, so that
//! a million contacts take a minute or two rather than an hour.
//!
//! Run: `cargo bench --bench gateway_load`. Settings:
//! - `DOSSIER_GW_BENCH_CONTACTS` (default 1000000): contacts; sessions are 5×;
//! - `DOSSIER_GW_BENCH_SECONDS` (default 20): each load phase;
//! - `DOSSIER_GW_BENCH_STORES` (default `postgres,sqlite`): which stores to run;
//! - `DOSSIER_GW_BENCH_BIN`: another `dossier` binary to serve with (to compare builds);
//! - `DOSSIER_BENCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! Needs `psql` and `pgbench` (PostgreSQL) and `sqlite3` (SQLite) on the PATH.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

mod common;
use common::{BenchDb, dossier, proc_status_kib, psql, sqlite3, vm_hwm_kib};

const CONNECTIONS: usize = 8;

fn config_toml(url: &str) -> String {
    format!(
        r#"[store]
url = "{url}"

[server]
rate_limit_per_second = 0
max_page_size = 50

[[aggregates]]
name = "transactions"
op = "count"
kind = "order"

[[aggregates]]
name = "total_spent"
op = "sum"
kind = "order"
field = "total"
"#
    )
}

/// The store's rows, in the encodings the store writes (`{"s": ..}` strings, `{"n": ..}`
/// numbers, fixed-point sums with 9 decimals).
fn fill_sql(n: u64) -> String {
    let sessions = n * 5;
    format!(
        "
INSERT INTO contacts (id, workspace, email, first_name, country, created_at, updated_at)
  SELECT i, 'default', 'user' || i || '@example.com', 'User' || i,
         (ARRAY['FR','DE','US','GB'])[1 + i % 4], 1700000000000000 + i, 1700000000000000 + i
  FROM generate_series(1, {n}::bigint) i;
INSERT INTO identities (workspace, kind, value, contact_id, created_at)
  SELECT 'default', 'email', 'user' || i || '@example.com', i, 0 FROM generate_series(1, {n}::bigint) i;
INSERT INTO identities (workspace, kind, value, contact_id, created_at)
  SELECT 'default', 'external', 'shop:customers:' || i, i, 0 FROM generate_series(1, {n}::bigint) i;
INSERT INTO contact_data (contact_id, key, value, num, txt, own, updated_at)
  SELECT i, 'price_plan', '{{\"s\":\"' || p || '\"}}', NULL, p, 1, 0
  FROM (SELECT i, (ARRAY['free','basic','pro'])[1 + i % 3] AS p FROM generate_series(1, {n}::bigint) i) x;
INSERT INTO sessions (id, workspace, source, stream, external_id, kind, contact_id, started_at,
                      data, created_at, updated_at)
  SELECT s, 'default', 'shop', 'orders', s::text, 'order', 1 + (s - 1) / 5,
         1700000000000000 + s * 1000000, '{{\"total\":{{\"n\":' || (s % 500) || '.5}}}}', 0, 0
  FROM generate_series(1, {sessions}::bigint) s;
INSERT INTO contact_aggregates (contact_id, name, state, value, num, txt)
  SELECT c, 'transactions', '{{\"count\":5}}', '{{\"n\":5.0}}', 5, NULL FROM generate_series(1, {n}::bigint) c;
INSERT INTO contact_aggregates (contact_id, name, state, value, num, txt)
  SELECT contact_id, 'total_spent',
         '{{\"count\":5,\"sum\":\"' || (sum(s % 500) * 1000000000 + 2500000000) || '\"}}',
         '{{\"n\":' || (sum(s % 500) + 2.5) || '}}', sum(s % 500) + 2.5, NULL
  FROM (SELECT s, 1 + (s - 1) / 5 AS contact_id FROM generate_series(1, {sessions}::bigint) s) x
  GROUP BY contact_id;
SELECT setval(pg_get_serial_sequence('contacts', 'id'), {n});
SELECT setval(pg_get_serial_sequence('sessions', 'id'), {sessions});
"
    )
}

/// [`fill_sql`] for the SQLite store: the same rows, made with recursive CTEs, then the
/// statistics the planner uses; written without the log (then back to WAL, as the store
/// keeps it), so that the store starts settled.
fn fill_sqlite(n: u64) -> String {
    let sessions = n * 5;
    let seq = format!(
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})"
    );
    format!(
        "
PRAGMA journal_mode = DELETE;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -524288;
BEGIN;
{seq} INSERT INTO contacts (id, workspace, email, first_name, country, created_at, updated_at)
  SELECT i, 'default', 'user' || i || '@example.com', 'User' || i,
         CASE i % 4 WHEN 0 THEN 'FR' WHEN 1 THEN 'DE' WHEN 2 THEN 'US' ELSE 'GB' END,
         1700000000000000 + i, 1700000000000000 + i FROM seq;
{seq} INSERT INTO identities (workspace, kind, value, contact_id, created_at)
  SELECT 'default', 'email', 'user' || i || '@example.com', i, 0 FROM seq;
{seq} INSERT INTO identities (workspace, kind, value, contact_id, created_at)
  SELECT 'default', 'external', 'shop:customers:' || i, i, 0 FROM seq;
{seq} INSERT INTO contact_data (contact_id, key, value, num, txt, own, updated_at)
  SELECT i, 'price_plan', '{{\"s\":\"' || p || '\"}}', NULL, p, 1, 0
  FROM (SELECT i, CASE i % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'basic' ELSE 'pro' END AS p FROM seq);
WITH RECURSIVE seq(s) AS (SELECT 1 UNION ALL SELECT s + 1 FROM seq WHERE s < {sessions})
INSERT INTO sessions (id, workspace, source, stream, external_id, kind, contact_id, started_at,
                      data, created_at, updated_at)
  SELECT s, 'default', 'shop', 'orders', CAST(s AS TEXT), 'order', 1 + (s - 1) / 5,
         1700000000000000 + s * 1000000, '{{\"total\":{{\"n\":' || (s % 500) || '.5}}}}', 0, 0
  FROM seq;
{seq} INSERT INTO contact_aggregates (contact_id, name, state, value, num, txt)
  SELECT i, 'transactions', '{{\"count\":5}}', '{{\"n\":5.0}}', 5, NULL FROM seq;
INSERT INTO contact_aggregates (contact_id, name, state, value, num, txt)
  SELECT contact_id, 'total_spent',
         '{{\"count\":5,\"sum\":\"' || (t * 1000000000 + 2500000000) || '\"}}',
         '{{\"n\":' || (t + 2.5) || '}}', t + 2.5, NULL
  FROM (SELECT contact_id, sum(id % 500) AS t FROM sessions GROUP BY contact_id);
COMMIT;
ANALYZE;
PRAGMA journal_mode = WAL;
"
    )
}

const CONTACT_QUERY: &str = r#"query($e: String) { contact(email: $e) { id email firstName country data aggregates sessions(first: 5) { edges { node { id kind startedAt data } } } } }"#;
const SEGMENT_QUERY: &str = r#"query($a: String) { contacts(where: {and: [{field: "country", eq: "FR"}, {field: "data.price_plan", eq: "basic"}]}, first: 50, after: $a) { edges { node { id email } } pageInfo { endCursor } } }"#;

/// The reads of (a) in SQL, one statement per part, as a hand-written service would issue
/// them.
fn pgbench_contact(n: u64) -> String {
    format!(
        "\\set i random(1, {n})
SELECT contact_id FROM identities WHERE workspace = 'default' AND kind = 'email' AND value = 'user' || :i || '@example.com';
SELECT * FROM contacts WHERE workspace = 'default' AND id = :i;
SELECT key, value FROM contact_data WHERE contact_id = :i;
SELECT name, value FROM contact_aggregates WHERE contact_id = :i;
SELECT id, kind, started_at, data FROM sessions WHERE contact_id = :i AND deleted = 0 ORDER BY started_at DESC, id DESC LIMIT 6;
"
    )
}

/// The reads of (a) as the store issues them: the contact with its parts in one statement
/// (`SqlStore::contact_card`).
fn pgbench_contact_card(n: u64) -> String {
    format!(
        "\\set i random(1, {n})
SELECT c.id, c.email, c.phone, c.first_name, c.last_name, c.company, c.country, c.city, c.locale, c.created_at, c.updated_at, c.merged_into,
 (SELECT json_agg(json_build_array(d.key, d.value))::text FROM contact_data d WHERE d.contact_id = c.id) AS card_data,
 (SELECT json_agg(json_build_array(r.name, r.definition, a.contact_id, a.value))::text FROM aggregate_rules r LEFT JOIN contact_aggregates a ON a.name = r.name AND a.contact_id = c.id WHERE r.workspace = 'default') AS card_aggregates,
 (SELECT json_agg(json_build_object('id', s.id, 'contact_id', s.contact_id, 'source', s.source, 'stream', s.stream, 'external_id', s.external_id, 'kind', s.kind, 'started_at', s.started_at, 'ended_at', s.ended_at, 'data', s.data, 'updated_at', s.updated_at))::text
   FROM (SELECT * FROM sessions s WHERE s.contact_id = c.id AND s.deleted = 0 ORDER BY s.started_at DESC, s.id DESC LIMIT 6) s) AS card_sessions
FROM identities i JOIN contacts c ON c.id = i.contact_id
WHERE i.workspace = 'default' AND i.kind = 'email' AND i.value = 'user' || :i || '@example.com' AND c.workspace = 'default';
"
    )
}

/// The segment page as the store issues it (the cursor bound repeated in the data subquery).
fn pgbench_segment(n: u64) -> String {
    format!(
        "\\set a random(0, {n})
SELECT c.id, c.email FROM contacts c WHERE c.workspace = 'default' AND c.merged_into IS NULL AND c.country = 'FR'
  AND EXISTS (SELECT 1 FROM contact_data d WHERE d.contact_id = c.id AND d.contact_id > :a AND d.key = 'price_plan' AND d.txt = 'basic')
  AND c.id > :a ORDER BY c.id LIMIT 51;
"
    )
}

struct Load {
    requests: u64,
    errors: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU time the gateway process spent per request: unlike requests/s, hardly moved by
    /// whatever else runs on the machine.
    cpu_ms_per_request: f64,
    /// Share of the machine's CPU time that was busy during the phase (everything: the
    /// gateway, the database, the load threads and any other process).
    machine_busy: f64,
}

/// User + system CPU time of a process so far, in ms (clock ticks of 10 ms).
fn cpu_ms(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(f64::NAN))
        .collect();
    (f.get(11).copied().unwrap_or(f64::NAN) + f.get(12).copied().unwrap_or(f64::NAN)) * 10.0
}

/// (busy, total) CPU ticks of the whole machine so far.
fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let total: f64 = v.iter().sum();
    // idle and iowait
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// Runs `phase` and tells how busy the machine was meanwhile (0 to 1).
fn busy_during<T>(phase: impl FnOnce() -> T) -> (T, f64) {
    let (b0, t0) = machine_ticks();
    let out = phase();
    let (b1, t1) = machine_ticks();
    (out, (b1 - b0) / (t1 - t0).max(1.0))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One keep-alive HTTP/1.1 connection: POST a body, read the status and the body.
struct Conn {
    reader: BufReader<TcpStream>,
    addr: String,
    key: String,
}

impl Conn {
    fn open(addr: &str, key: &str) -> anyhow::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(s),
            addr: addr.to_string(),
            key: key.to_string(),
        })
    }

    fn post(&mut self, body: &str) -> anyhow::Result<(u16, String)> {
        let req = format!(
            "POST /graphql HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            self.key,
            body.len()
        );
        self.reader.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse()?;
            }
        }
        let mut buf = vec![0; len];
        self.reader.read_exact(&mut buf)?;
        Ok((status, String::from_utf8_lossy(&buf).into_owned()))
    }
}

/// `CONNECTIONS` threads sending `make(i)` bodies for `secs` seconds. An answer that is not
/// 200, has errors or lacks `expect` (what every right answer holds) counts as an error.
fn load(
    addr: &str,
    key: &str,
    pid: u32,
    secs: u64,
    expect: &'static str,
    make: impl Fn(u64) -> String + Send + Sync + 'static,
) -> anyhow::Result<Load> {
    let cpu_before = cpu_ms(pid);
    let (b0, t0) = machine_ticks();
    let make = Arc::new(make);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|w| {
            let (addr, key, make, stop) = (
                addr.to_string(),
                key.to_string(),
                make.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || -> anyhow::Result<(Vec<f64>, u64)> {
                let mut conn = Conn::open(&addr, &key)?;
                let mut lat = vec![];
                let mut errors = 0;
                // xorshift: cheap, deterministic per worker.
                let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1);
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let body = make(x);
                    let t = Instant::now();
                    let (status, out) = conn.post(&body)?;
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    if status != 200 || out.contains("\"errors\"") || !out.contains(expect) {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("first error: HTTP {status}: {out}");
                        }
                    }
                }
                Ok((lat, errors))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let elapsed_at_stop = start.elapsed().as_secs_f64();
    let mut all = vec![];
    let mut errors = 0;
    for w in workers {
        let (lat, e) = w.join().expect("worker")?;
        all.extend(lat);
        errors += e;
    }
    let (b1, t1) = machine_ticks();
    let cpu = cpu_ms(pid) - cpu_before;
    all.sort_by(f64::total_cmp);
    Ok(Load {
        requests: all.len() as u64,
        errors,
        rps: all.len() as f64 / elapsed_at_stop,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        cpu_ms_per_request: cpu / all.len().max(1) as f64,
        machine_busy: (b1 - b0) / (t1 - t0).max(1.0),
    })
}

/// `pgbench` with a custom script: (transactions/s, p50 ms, p99 ms) from its per-transaction
/// log.
fn pgbench(
    url: &str,
    script: &str,
    secs: u64,
    dir: &Path,
    tag: &str,
) -> anyhow::Result<(f64, f64, f64)> {
    let file = dir.join(format!("{tag}.sql"));
    std::fs::write(&file, script)?;
    let prefix = dir.join(format!("pgbench_{tag}"));
    let out = Command::new("pgbench")
        .args([
            "-n",
            // Parsed and planned once per connection, as the gateway's statements are: the
            // simple protocol's parse and plan per statement would understate the limit.
            "-M",
            "prepared",
            "-c",
            &CONNECTIONS.to_string(),
            "-j",
            "2",
            "-T",
            &secs.to_string(),
            "-l",
        ])
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg("-f")
        .arg(&file)
        .arg(url)
        .current_dir(dir)
        .stderr(Stdio::piped())
        .output()
        .context("cannot run pgbench (is the PostgreSQL client installed?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench output: {text}"))?;
    let mut lat = vec![];
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&format!("pgbench_{tag}")))
        {
            for l in std::fs::read_to_string(&p)?.lines() {
                // client_id transaction_no time(us) script_no time_epoch time_us
                if let Some(us) = l
                    .split_whitespace()
                    .nth(2)
                    .and_then(|v| v.parse::<f64>().ok())
                {
                    lat.push(us / 1000.0);
                }
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    Ok((tps, percentile(&lat, 0.50), percentile(&lat, 0.99)))
}

/// The `dossier` binary the gateway runs from: this build's, or `DOSSIER_GW_BENCH_BIN`.
fn gateway_bin() -> Command {
    match std::env::var_os("DOSSIER_GW_BENCH_BIN") {
        Some(bin) => {
            let mut c = Command::new(bin);
            c.env("DOSSIER_LOG", "warn");
            c
        }
        None => dossier(),
    }
}

/// Migrates the store of `config` (registering its rules) and makes a `read` key.
fn make_key(config: &Path) -> anyhow::Result<String> {
    let out = gateway_bin()
        .args([
            "keys", "create", "--role", "read", "--name", "bench", "--config",
        ])
        .arg(config)
        .output()?;
    if !out.status.success() {
        bail!(
            "keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// `dossier serve` on a free loopback port: the child and its address.
fn serve(config: &Path) -> anyhow::Result<(Child, String)> {
    let mut child = gateway_bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line)? == 0 {
            let _ = child.kill();
            bail!("dossier serve exited before listening");
        }
        if let Some(rest) = line.split("http://").nth(1) {
            let addr = rest.split('/').next().unwrap_or_default().to_string();
            return Ok((child, addr));
        }
    }
}

/// Resident anonymous memory (heap, stacks) of a process now: its RSS without the store
/// file's pages that SQLite maps into it.
fn rss_anon_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "RssAnon")
}

/// What `pgbench` measured for one workload: (transactions/s, p50 ms, p99 ms, share of the
/// machine busy).
type Limit = (f64, f64, f64, f64);

/// The limits of a store: (a) as separate statements, (b), and (a) as the store's one
/// statement.
type Limits = (Limit, Limit, Limit);

/// Both workloads against a running gateway, then (on PostgreSQL) `limit` for each; prints
/// the table and the targets.
fn measure(
    store: &str,
    addr: &str,
    key: &str,
    pid: u32,
    n: u64,
    secs: u64,
    limit: impl FnOnce() -> anyhow::Result<Option<Limits>>,
) -> anyhow::Result<()> {
    // Every contact of the store has sessions, and every page its pageInfo.
    let contact = load(
        addr,
        key,
        pid,
        secs,
        r#""sessions":{"edges":[{"node":{"id""#,
        move |x| {
            serde_json::json!({ "query": CONTACT_QUERY, "variables": { "e": format!("user{}@example.com", 1 + x % n) } })
            .to_string()
        },
    )?;
    let segment = load(
        addr,
        key,
        pid,
        secs,
        r#""pageInfo":{"endCursor""#,
        move |x| {
            let after = x % n;
            // The gateway's cursor for "after contact `after`".
            let cursor = URL_SAFE_NO_PAD.encode(format!("contact:{after}"));
            serde_json::json!({ "query": SEGMENT_QUERY, "variables": { "a": cursor } }).to_string()
        },
    )?;
    let rss = vm_hwm_kib(pid).map_or(f64::NAN, |k| k as f64 / 1024.0);
    let anon = rss_anon_kib(pid).map_or(f64::NAN, |k| k as f64 / 1024.0);
    let limits = limit()?;
    println!(
        "\n{n} contacts, {} sessions, {store} store, {CONNECTIONS} connections, {secs} s each",
        n * 5
    );
    println!(
        "| workload | gateway req/s | p50 ms | p99 ms | errors | pgbench tps | p50 ms | p99 ms | gateway / pgbench |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let rows = [
        (
            "(a) contact by email + data + aggregates + 5 sessions",
            &contact,
            limits.map(|l| l.0),
        ),
        ("(b) segment page of 50", &segment, limits.map(|l| l.1)),
    ];
    for (name, l, limit) in rows {
        let limit = match limit {
            Some((tps, p50, p99, _)) => format!(
                "{tps:.0} | {p50:.2} | {p99:.2} | {:.0}%",
                100.0 * l.rps / tps
            ),
            None => "- | - | - | -".to_string(),
        };
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} of {} | {limit} |",
            l.rps, l.p50_ms, l.p99_ms, l.errors, l.requests,
        );
    }
    if let Some((_, _, (tps, p50, p99, _))) = limits {
        println!(
            "(a) as the store's one statement (contact_card): pgbench {tps:.0} tps, p50 {p50:.2} ms, p99 {p99:.2} ms; gateway at {:.0}% of it",
            100.0 * contact.rps / tps
        );
    }
    println!("gateway peak RSS: {rss:.1} MiB (anonymous at the end: {anon:.1} MiB)");
    println!(
        "gateway CPU per request: (a) {:.3} ms, (b) {:.3} ms; machine busy: (a) {:.0}%, (b) {:.0}%{}",
        contact.cpu_ms_per_request,
        segment.cpu_ms_per_request,
        100.0 * contact.machine_busy,
        100.0 * segment.machine_busy,
        limits.map_or(String::new(), |(a, b, _)| format!(
            "; during pgbench (a) {:.0}%, (b) {:.0}%",
            100.0 * a.3,
            100.0 * b.3
        )),
    );
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let share = limits.map_or("n/a (no pgbench on this store)".to_string(), |l| {
        met(contact.rps >= 0.5 * l.0.0).to_string()
    });
    println!(
        "targets: (a) >= 50% of pgbench: {share}; p99 < 10 ms: {}; no errors: {}",
        met(contact.p99_ms < 10.0),
        met(contact.errors + segment.errors == 0),
    );
    Ok(())
}

/// Runs the gateway on `config` while `body` measures it; stops it whatever happens.
fn with_gateway(
    config: &Path,
    body: impl FnOnce(&str, u32) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (mut child, addr) = serve(config)?;
    let result = body(&addr, child.id());
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn postgres(n: u64, secs: u64) -> anyhow::Result<()> {
    let admin = std::env::var("DOSSIER_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = BenchDb::create(&admin)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("dossier.toml");
    std::fs::write(&config, config_toml(&db.url))?;
    let key = make_key(&config)?;

    println!(
        "PostgreSQL: filling the store: {n} contacts, {} sessions",
        n * 5
    );
    let t = Instant::now();
    psql(&db.url, &fill_sql(n))?;
    psql(&db.url, "VACUUM ANALYZE")?;
    println!("  filled in {:.1} s", t.elapsed().as_secs_f64());

    with_gateway(&config, |addr, pid| {
        measure("PostgreSQL", addr, &key, pid, n, secs, || {
            let limit = |script: String, tag: &str| -> anyhow::Result<Limit> {
                let (r, busy) = busy_during(|| pgbench(&db.url, &script, secs, dir.path(), tag));
                let (tps, p50, p99) = r?;
                Ok((tps, p50, p99, busy))
            };
            let a = limit(pgbench_contact(n), "contact")?;
            let b = limit(pgbench_segment(n), "segment")?;
            let card = limit(pgbench_contact_card(n), "contact_card")?;
            Ok(Some((a, b, card)))
        })
    })
}

fn sqlite(n: u64, secs: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("dossier.db");
    let config = dir.path().join("dossier.toml");
    std::fs::write(
        &config,
        config_toml(&format!("sqlite://{}", file.display())),
    )?;
    let key = make_key(&config)?;

    println!(
        "SQLite: filling the store: {n} contacts, {} sessions",
        n * 5
    );
    let t = Instant::now();
    sqlite3(&file, &fill_sqlite(n))?;
    println!(
        "  filled in {:.1} s ({:.0} MiB)",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&file)?.len() as f64 / 1048576.0
    );

    with_gateway(&config, |addr, pid| {
        measure("SQLite", addr, &key, pid, n, secs, || Ok(None))
    })
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let n: u64 = std::env::var("DOSSIER_GW_BENCH_CONTACTS").map_or(Ok(1_000_000), |v| v.parse())?;
    let secs: u64 = std::env::var("DOSSIER_GW_BENCH_SECONDS").map_or(Ok(20), |v| v.parse())?;
    let stores =
        std::env::var("DOSSIER_GW_BENCH_STORES").unwrap_or_else(|_| "postgres,sqlite".into());
    for store in stores.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match store {
            "postgres" => postgres(n, secs)?,
            "sqlite" => sqlite(n, secs)?,
            other => {
                bail!("unknown store {other:?} in DOSSIER_GW_BENCH_STORES: postgres or sqlite")
            }
        }
    }
    Ok(())
}
