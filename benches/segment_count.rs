//! Segment counts on the embedded SQLite store at a million contacts (issue #7: under 200 ms),
//! with the query plans that show which indexes each count uses.
//!
//! The store is filled with SQL in the store's own tables and encodings (recursive CTEs), not
//! through a sync, so a million contacts take seconds. Each contact has a country (FR, DE, US
//! or GB), a `price_plan` (free, basic, pro) and an `avg_basket` aggregate (0 to 99.5).
//!
//! Run: `cargo bench --bench segment_count` (`DOSSIER_SEGMENT_BENCH_CONTACTS`, default 1000000).

use std::time::Instant;

use anyhow::Context as _;
use dossier_core::filter_text::parse_filter;
use dossier_store::SqlStore;
use sqlx::{AssertSqlSafe, Connection as _};

const RUNS: usize = 5;

const SEGMENTS: [(&str, &str); 5] = [
    (
        "issue example",
        r#"country = "FR" and data.price_plan = "basic" and agg.avg_basket > 50"#,
    ),
    ("one native field", r#"country = "FR""#),
    ("custom data only", r#"data.price_plan = "basic""#),
    ("aggregate range", "agg.avg_basket > 90"),
    (
        "or + not + relative date",
        r#"(country = "FR" or country = "DE") and not data.price_plan = "free" and created_at > ago(3650d)"#,
    ),
];

fn fill_sql(n: u64) -> Vec<String> {
    let seq = format!(
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})"
    );
    vec![
        format!(
            "{seq} INSERT INTO contacts (id, workspace, email, first_name, country, created_at, updated_at) \
             SELECT i, 'default', 'user' || i || '@example.com', 'User' || i, \
             CASE i % 4 WHEN 0 THEN 'FR' WHEN 1 THEN 'DE' WHEN 2 THEN 'US' ELSE 'GB' END, \
             1700000000000000 + i, 1700000000000000 + i FROM seq"
        ),
        format!(
            "{seq} INSERT INTO contact_data (contact_id, key, value, num, txt, own, updated_at) \
             SELECT i, 'price_plan', '{{\"s\":\"' || p || '\"}}', NULL, p, 1, 0 FROM \
             (SELECT i, CASE i % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'basic' ELSE 'pro' END AS p FROM seq)"
        ),
        format!(
            "{seq} INSERT INTO contact_aggregates (contact_id, name, state, value, num, txt) \
             SELECT i, 'avg_basket', '{{\"count\":1,\"sum\":\"' || ((i * 7919) % 200) * 500000000 || '\"}}', \
             '{{\"n\":' || ((i * 7919) % 200) * 0.5 || '}}', ((i * 7919) % 200) * 0.5, NULL FROM seq"
        ),
    ]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("DOSSIER_SEGMENT_BENCH_CONTACTS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("DOSSIER_SEGMENT_BENCH_CONTACTS must be a number")?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = SqlStore::open(&url).await?;
    store.ensure_workspace("default").await?;
    let fill = Instant::now();
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    for sql in fill_sql(n) {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
    }
    // A settled store: the fill's log folded into the database file, as SQLite does by itself
    // once no reader holds it back.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    eprintln!(
        "filled {n} contacts in {:.1} s",
        fill.elapsed().as_secs_f64()
    );

    println!("segment counts over {n} contacts, SQLite store, median of {RUNS} warm runs\n");
    for (label, text) in SEGMENTS {
        let filter = parse_filter(text)?;
        let mut times = vec![];
        let mut count = 0;
        // One cold run fills the page cache; it is not counted.
        store.count_contacts("default", Some(&filter)).await?;
        for _ in 0..RUNS {
            let t = Instant::now();
            count = store.count_contacts("default", Some(&filter)).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!("{label}: `{text}`");
        println!(
            "  count {count}  median {:.1} ms  (min {:.1}, max {:.1})",
            times[RUNS / 2],
            times[0],
            times[RUNS - 1]
        );
        for line in store.count_plan("default", Some(&filter)).await? {
            println!("  plan: {line}");
        }
        println!();
    }
    Ok(())
}
