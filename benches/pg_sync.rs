//! Postgres source at scale (issue #3): the demo shop's three tables in PostgreSQL, generated
//! in SQL (seeded, deterministic), then, on the same machine in the same run:
//!
//! 1. the limit: `psql \copy ... to stdout` of each table piped into `sqlite3 .import` (rows/s);
//! 2. the floor of the store's layout: `sqlite3` alone writes what the full sync leaves in the
//!    store, from the limit's local tables, in the cheapest order (benches/layout_floor.sql):
//!    the most any sync into this layout could reach;
//! 3. Dossier's full sync of the three tables into the embedded SQLite store, identity
//!    resolution and aggregates on (rows/s, peak RSS);
//! 4. Dossier's incremental sync after 1% of the rows of each table changed.
//!
//! Run: `cargo bench --bench pg_sync`. Settings:
//! - `DOSSIER_PG_BENCH_CUSTOMERS` (default 1000000): customers; orders are 5×, conversations 2×;
//! - `DOSSIER_BENCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`): a server
//!   where that user may create databases. The bench creates `dossier_bench_<pid>` and drops it
//!   at the end, also when a step fails;
//! - `DOSSIER_PG_BENCH_STORE=postgres`: Dossier's store on that server too (a database
//!   `dossier_bench_<pid>_store`, also dropped), instead of the embedded SQLite file. The
//!   targets are set for the embedded store; this measures the other backend.
//!
//! Needs `psql` and `sqlite3` on the PATH.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, ensure};

mod common;
use common::{BenchDb, benching, demo_streams, env_count, psql, sqlite3, timed_sync};

/// Targets from issue #3.
const TARGET_FULL_VS_LIMIT: f64 = 0.40;
const TARGET_PEAK_RSS_MIB: f64 = 200.0;
const TARGET_INCREMENTAL_VS_FULL: f64 = 0.03;

/// `r(i, salt, n)`: a deterministic pseudo-random integer in `0..n` for row `i`; each salt
/// (0..16) gives an independent-looking column. The same scale always gives the same tables.
const SCHEMA: &str = "
CREATE FUNCTION r(i bigint, salt int, n int) RETURNS int IMMUTABLE STRICT PARALLEL SAFE
  LANGUAGE sql AS $$ SELECT (abs(hashint8(i * 16 + salt)::int8) % n)::int $$;
CREATE TABLE customers (id bigint NOT NULL, email text NOT NULL, first_name text, last_name text,
  country text, plan text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE orders (id bigint NOT NULL, customer_id bigint NOT NULL, total numeric(10,2) NOT NULL,
  currency text NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL);
CREATE TABLE conversations (id bigint NOT NULL, customer_id bigint NOT NULL, csat int,
  channel text NOT NULL, started_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
";

fn customers_sql(n: u64) -> String {
    format!(
        "INSERT INTO customers
         SELECT i, lower(f) || '.' || lower(replace(l, '-', '')) || i || '@example.com', f, l,
                (ARRAY['FR','DE','US','GB','ES','IT','NL','BE'])[1 + r(i, 3, 8)],
                (ARRAY['free','basic','pro'])[1 + r(i, 4, 3)],
                c, c + r(i, 5, 100000) * interval '1 minute'
         FROM (SELECT i,
                 (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Donald','Margaret','Ken',
                        'Frances','Dennis','Radia','Linus','Sophie','Tim','Hedy','John'])
                   [1 + r(i, 1, 16)] AS f,
                 (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth','Hamilton',
                        'Thompson','Allen','Ritchie','Perlman','Torvalds','Wilson',
                        'Berners-Lee','Lamarr','Backus'])[1 + r(i, 2, 16)] AS l,
                 timestamptz '2024-01-01 00:00:00+00' + r(i, 6, 300000) * interval '1 minute'
                   AS c
               FROM generate_series(1, {n}::bigint) AS i) AS g"
    )
}

fn orders_sql(n: u64, customers: u64) -> String {
    format!(
        "INSERT INTO orders
         SELECT i, 1 + r(i, 1, {customers}), (500 + r(i, 2, 39500)) / 100.0, 'EUR',
                (ARRAY['paid','paid','paid','refunded'])[1 + r(i, 3, 4)],
                c, c + r(i, 4, 5000) * interval '1 minute'
         FROM (SELECT i,
                 timestamptz '2024-01-01 00:00:00+00' + r(i, 5, 500000) * interval '1 minute'
                   AS c
               FROM generate_series(1, {n}::bigint) AS i) AS g"
    )
}

fn conversations_sql(n: u64, customers: u64) -> String {
    format!(
        "INSERT INTO conversations
         SELECT i, 1 + r(i, 1, {customers}),
                CASE WHEN r(i, 2, 10) < 3 THEN NULL ELSE 1 + r(i, 3, 5) END,
                (ARRAY['email','chat','phone'])[1 + r(i, 4, 3)],
                s, s + r(i, 5, 3000) * interval '1 minute'
         FROM (SELECT i,
                 timestamptz '2024-01-01 00:00:00+00' + r(i, 6, 500000) * interval '1 minute'
                   AS s
               FROM generate_series(1, {n}::bigint) AS i) AS g"
    )
}

/// The demo shop's streams, mappings and aggregates (examples/demo/dossier.toml) over the
/// Postgres tables. `| number` and `| datetime` pass Decimal and DateTime values through
/// unchanged.
fn config_toml(url: &str, store_url: &str) -> String {
    format!(
        r#"[store]
url = "{store_url}"

[[sources]]
name = "shop"
connector = "postgres"
config = {{ url = "{url}" }}

{}"#,
        demo_streams()
    )
}

/// Generates the three tables, their primary keys and `(updated_at, id)` indexes.
fn generate(url: &str, customers: u64) -> anyhow::Result<()> {
    let (orders, conversations) = (customers * 5, customers * 2);
    psql(url, SCHEMA)?;
    for (table, rows, sql) in [
        ("customers", customers, customers_sql(customers)),
        ("orders", orders, orders_sql(orders, customers)),
        (
            "conversations",
            conversations,
            conversations_sql(conversations, customers),
        ),
    ] {
        let t = Instant::now();
        print!("  {table}: {rows} rows ...");
        std::io::Write::flush(&mut std::io::stdout())?;
        psql(url, &sql)?;
        psql(
            url,
            &format!(
                "ALTER TABLE {table} ADD PRIMARY KEY (id);
                 CREATE INDEX {table}_updated ON {table} (updated_at, id);"
            ),
        )?;
        psql(url, &format!("VACUUM ANALYZE {table}"))?;
        println!(" {:.1}s", t.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The limit: every table copied out of PostgreSQL as CSV and imported by `sqlite3`, one
/// pipeline per table. Returns (seconds, rows imported).
fn limit(url: &str, dir: &Path) -> anyhow::Result<(f64, u64)> {
    let db = dir.join("limit.db");
    sqlite3(
        &db,
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, first_name TEXT, \
         last_name TEXT, country TEXT, plan TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL); \
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, total NUMERIC NOT NULL, \
         currency TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL); \
         CREATE TABLE conversations (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, csat INTEGER, \
         channel TEXT NOT NULL, started_at TEXT NOT NULL, updated_at TEXT NOT NULL);",
    )
    .context("sqlite3 could not create the limit's tables")?;
    let start = Instant::now();
    for table in ["customers", "orders", "conversations"] {
        let t = Instant::now();
        let pipeline = format!(
            "psql \"$PG_URL\" -X -v ON_ERROR_STOP=1 \
               -c '\\copy (SELECT * FROM {table}) TO STDOUT WITH (FORMAT csv)' \
             | sqlite3 \"$LIMIT_DB\" '.mode csv' '.import /dev/stdin {table}'"
        );
        let st = Command::new("bash")
            .args(["-o", "pipefail", "-c", &pipeline])
            .env("PG_URL", url)
            .env("LIMIT_DB", &db)
            .status()
            .context("cannot run bash")?;
        ensure!(st.success(), "the limit's pipeline failed for {table}");
        println!("  {table}: {:.1}s", t.elapsed().as_secs_f64());
    }
    let secs = start.elapsed().as_secs_f64();
    let rows = sqlite3(
        &db,
        "SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM orders) \
         + (SELECT count(*) FROM conversations)",
    )?
    .trim()
    .parse()
    .context("sqlite3 printed no row count")?;
    Ok((secs, rows))
}

/// The floor of the embedded store's layout: a store file with the store's migrations, filled
/// by `sqlite3` from the limit's tables with benches/layout_floor.sql. Returns the seconds the
/// script took. Fails when the script no longer rebuilds exactly the indexes the migrations
/// create (a migration changed them), or writes other counts than a sync would.
fn layout_floor(dir: &Path, customers: u64) -> anyhow::Result<f64> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let db = dir.join("floor.db");
    let mut migrations: Vec<_> =
        std::fs::read_dir(root.join("crates/dossier-store/migrations/sqlite"))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
    migrations.sort();
    for m in &migrations {
        sqlite3(&db, &std::fs::read_to_string(m)?)
            .with_context(|| format!("applying {}", m.display()))?;
    }
    let indexes = "SELECT name || ': ' || sql FROM sqlite_master WHERE type = 'index' \
                   AND sql IS NOT NULL ORDER BY name";
    let migrated = sqlite3(&db, indexes)?;
    let script = std::fs::read_to_string(root.join("benches/layout_floor.sql"))?;
    let start = Instant::now();
    sqlite3(&db, &script).context("benches/layout_floor.sql failed")?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(
        sqlite3(&db, indexes)? == migrated,
        "benches/layout_floor.sql no longer rebuilds the indexes the store's migrations create; \
         update its DROP INDEX and CREATE INDEX statements"
    );
    let counts = sqlite3(
        &db,
        "SELECT (SELECT count(*) FROM contacts) || ' ' || (SELECT count(*) FROM identities) \
         || ' ' || (SELECT count(*) FROM sessions)",
    )?;
    ensure!(
        counts.trim() == format!("{customers} {} {}", 2 * customers, 7 * customers),
        "the floor wrote {counts:?} contacts, identities and sessions"
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("floor.db{suffix}")));
    }
    Ok(secs)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// Where a sync's time went: each stream's read and the end-of-load pass over contacts.
fn print_phases(log: &str) {
    for line in log
        .lines()
        .filter(|l| l.contains("stream read") || l.contains("bulk load touched"))
    {
        println!("  {}", line.trim());
    }
}

fn run(customers: u64, admin_url: &str, pg_store: bool) -> anyhow::Result<()> {
    let total = customers * 8;
    println!(
        "pg_sync: {customers} customers, {} orders, {} conversations ({total} rows)",
        customers * 5,
        customers * 2
    );
    let db = BenchDb::create(admin_url)?;
    println!("created database {}; generating the shop ...", db.name);
    let t = Instant::now();
    generate(&db.url, customers)?;
    println!("generated in {:.1}s", t.elapsed().as_secs_f64());

    let dir = tempfile::tempdir()?;
    println!("limit: psql \\copy | sqlite3 .import ...");
    let (limit_s, limit_rows) = limit(&db.url, dir.path())?;
    ensure!(
        limit_rows == total,
        "the limit imported {limit_rows} rows, expected {total}"
    );
    let limit_rate = limit_rows as f64 / limit_s;
    println!("limit:            {limit_rows} rows in {limit_s:.2}s = {limit_rate:.0} rows/s");

    // The floor is the embedded store's: it measures nothing about a PostgreSQL store.
    let floor_rate = if pg_store {
        None
    } else {
        println!("floor of the store's layout: sqlite3 alone, benches/layout_floor.sql ...");
        let floor_s = layout_floor(dir.path(), customers)?;
        let rate = total as f64 / floor_s;
        println!(
            "layout floor:     {total} rows in {floor_s:.2}s = {rate:.0} rows/s = {:.1}% of the limit",
            100.0 * rate / limit_rate
        );
        Some(rate)
    };

    let store_db = pg_store
        .then(|| BenchDb::create_named(admin_url, "_store"))
        .transpose()?;
    let store_url = match &store_db {
        Some(store) => {
            println!("the store: PostgreSQL database {}", store.name);
            store.url.clone()
        }
        None => "sqlite://dossier.db".to_string(),
    };
    let config = dir.path().join("dossier.toml");
    std::fs::write(&config, config_toml(&db.url, &store_url))?;
    println!("full sync ...");
    let full = timed_sync(&config, "shop", "info")?;
    print_phases(&full.stderr);
    ensure!(
        full.rows == total,
        "the full sync read {} rows, expected {total}",
        full.rows
    );
    let full_rate = full.rate();
    println!("full sync:        {}", full.summary());

    println!("changing 1% of the rows of each table ...");
    psql(
        &db.url,
        "UPDATE customers SET updated_at = now() WHERE id % 100 = 0;
         UPDATE orders SET total = total + 1, updated_at = now() WHERE id % 100 = 0;
         UPDATE conversations SET updated_at = now() WHERE id % 100 = 0;",
    )?;
    psql(&db.url, "VACUUM ANALYZE customers, orders, conversations")?;
    println!("incremental sync ...");
    let inc = timed_sync(&config, "shop", "info")?;
    print_phases(&inc.stderr);
    println!("incremental sync: {}", inc.summary());

    let full_vs_limit = full_rate / limit_rate;
    let inc_vs_full = inc.secs / full.secs;
    let peak = full.rss_mib.max(inc.rss_mib);
    println!();
    println!(
        "full sync / limit (rows/s):    {:.1}% (target >= {:.0}%: {})",
        100.0 * full_vs_limit,
        100.0 * TARGET_FULL_VS_LIMIT,
        verdict(full_vs_limit >= TARGET_FULL_VS_LIMIT)
    );
    if let Some(floor_rate) = floor_rate {
        println!(
            "layout floor / limit:          {:.1}% (the most a sync into this layout can reach)",
            100.0 * floor_rate / limit_rate
        );
        println!(
            "full sync / layout floor:      {:.1}%",
            100.0 * full_rate / floor_rate
        );
    }
    println!(
        "peak RSS:                      {peak:.1} MiB (target <= {TARGET_PEAK_RSS_MIB:.0} MiB: {})",
        verdict(peak <= TARGET_PEAK_RSS_MIB)
    );
    println!(
        "incremental / full (time):     {:.2}% (target <= {:.0}%: {})",
        100.0 * inc_vs_full,
        100.0 * TARGET_INCREMENTAL_VS_FULL,
        verdict(inc_vs_full <= TARGET_INCREMENTAL_VS_FULL)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` would too: only run when benching.
    if !benching() {
        return Ok(());
    }
    let customers = env_count("DOSSIER_PG_BENCH_CUSTOMERS", 1_000_000);
    let admin_url = std::env::var("DOSSIER_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let pg_store = match std::env::var("DOSSIER_PG_BENCH_STORE").as_deref() {
        Err(_) | Ok("" | "sqlite") => false,
        Ok("postgres") => true,
        Ok(other) => anyhow::bail!(
            "DOSSIER_PG_BENCH_STORE is {other:?}; set it to sqlite (the default) or postgres"
        ),
    };
    run(customers, &admin_url, pg_store)
}
