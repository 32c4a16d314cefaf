//! Dashboards at scale (issue 28): the top 20 contacts by an aggregate, a two-key breakdown
//! of every contact, and 52 weekly buckets of orders with their sum and average, each asked
//! through the gateway (`dossier_gateway::execute`, admission and GraphQL included) and, on
//! the same store, as hand-written SQL (the floor), on SQLite and PostgreSQL.
//!
//! The store is filled with SQL in its own tables and encodings (as `segment_count` does):
//! contacts with a country (five, and none for one in 50) and a `price_plan` (three, and none
//! for one in seven), `DOSSIER_DASHBOARD_SESSIONS_PER_CONTACT` orders each (default 5) with a
//! `total` of 0 to 199.99 spread over a year, and each contact's `total_spent` aggregate
//! summed from its orders.
//!
//! The console's pages are timed on the same store (`console_pages`).
//!
//! Run: `cargo bench --bench dashboard` (`DOSSIER_DASHBOARD_PARTS`, default
//! `dashboards,console`; `DOSSIER_DASHBOARD_CONTACTS`, default 1000000;
//! `DOSSIER_DASHBOARD_BACKENDS`, default `sqlite,postgres`; `DOSSIER_BENCH_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

mod common;

use std::time::Instant;

use anyhow::{Context as _, bail};
use dossier_core::{AggOp, AggregateRule};
use dossier_gateway::{Caller, GatewayConfig};
use dossier_store::SqlStore;
use sqlx::{AnyConnection, AssertSqlSafe, Connection as _};

/// 2024-01-01T00:00:00Z, where the orders' year starts.
const T0: i64 = 1_704_067_200_000_000;
const WEEK: i64 = 7 * 86_400_000_000;

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    std::env::var(name)
        .ok()
        .map(|v| v.parse())
        .transpose()
        .with_context(|| format!("{name} must be a number"))
        .map(|v| v.unwrap_or(default))
}

fn fill_sql(sqlite: bool, contacts: u64, sessions: u64) -> Vec<String> {
    let seq = |n: u64| {
        if sqlite {
            format!(
                "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})"
            )
        } else {
            format!("WITH seq(i) AS (SELECT CAST(g AS BIGINT) FROM generate_series(1, {n}) AS g)")
        }
    };
    let (cs, ss) = (seq(contacts), seq(sessions));
    let year_secs = 365 * 86_400;
    let total = "((i * 7919) % 20000)";
    vec![
        format!(
            "{cs} INSERT INTO contacts (id, workspace, email, country, created_at, updated_at) \
             SELECT i, 'default', 'user' || i || '@example.com', \
             CASE WHEN i % 50 = 0 THEN NULL ELSE CASE i % 5 WHEN 0 THEN 'FR' WHEN 1 THEN 'DE' WHEN 2 THEN 'US' WHEN 3 THEN 'GB' ELSE 'ES' END END, \
             {T0} + i, {T0} + i FROM seq"
        ),
        format!(
            "{cs} INSERT INTO contact_data (contact_id, key, value, num, txt, own, updated_at) \
             SELECT i, 'price_plan', '{{\"s\":\"' || p || '\"}}', NULL, p, 1, 0 FROM \
             (SELECT i, CASE i % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'basic' ELSE 'pro' END AS p FROM seq) t \
             WHERE i % 7 <> 0"
        ),
        format!(
            "{ss} INSERT INTO sessions (id, workspace, source, stream, external_id, kind, contact_id, \
             started_at, data, deleted, created_at, updated_at) \
             SELECT i, 'default', 'shop', 'orders', CAST(i AS TEXT), 'order', ((i * 7907) % {contacts}) + 1, \
             {T0} + ((i * 6301) % {year_secs}) * 1000000, \
             '{{\"total\":{{\"n\":' || CAST({total} / 100 AS TEXT) || '.' || \
             CASE WHEN {total} % 100 < 10 THEN '0' ELSE '' END || CAST({total} % 100 AS TEXT) || '}}}}', \
             0, {T0}, {T0} FROM seq"
        ),
        // Each contact's total spent, from its orders, as the store keeps it (fixed point).
        format!(
            "INSERT INTO contact_aggregates (contact_id, name, state, value, num, txt) \
             SELECT contact_id, 'total_spent', '{{}}', '{{\"n\":' || CAST(spent AS TEXT) || '}}', spent, NULL FROM \
             (SELECT contact_id, SUM(CAST(json_total AS DOUBLE PRECISION)) AS spent FROM \
              (SELECT contact_id, {json} AS json_total FROM sessions) o GROUP BY contact_id) t",
            json = if sqlite {
                "json_extract(data, '$.total.n')"
            } else {
                "CAST(data AS json) -> 'total' ->> 'n'"
            }
        ),
    ]
}

/// The same answers, written by hand against the store's tables: the floor.
fn floor_sql(sqlite: bool) -> [(&'static str, String); 3] {
    let total = if sqlite {
        "json_extract(s.data, '$.total.n')"
    } else {
        "CAST(CAST(s.data AS json) -> 'total' ->> 'n' AS DOUBLE PRECISION)"
    };
    [
        (
            "top 20 by agg.total_spent",
            "SELECT c.id, a.num FROM contact_aggregates a JOIN contacts c ON c.id = a.contact_id \
             WHERE a.name = 'total_spent' AND c.workspace = 'default' AND c.merged_into IS NULL \
             ORDER BY a.num DESC, c.id LIMIT 20"
                .into(),
        ),
        (
            "breakdown by country and data.price_plan",
            "SELECT c.country, d.txt, COUNT(*), SUM(a.num) FROM contacts c \
             LEFT JOIN contact_data d ON d.contact_id = c.id AND d.key = 'price_plan' \
             LEFT JOIN contact_aggregates a ON a.contact_id = c.id AND a.name = 'total_spent' \
             WHERE c.workspace = 'default' AND c.merged_into IS NULL GROUP BY c.country, d.txt \
             ORDER BY COUNT(*) DESC"
                .into(),
        ),
        (
            "52 weekly buckets of orders, sum and avg",
            format!(
                "SELECT (s.started_at - {T0}) / {WEEK} AS w, COUNT(*), SUM({total}), AVG({total}) \
                 FROM sessions s WHERE s.workspace = 'default' AND s.kind = 'order' AND s.deleted = 0 \
                 AND s.started_at >= {T0} AND s.started_at < {end} GROUP BY (s.started_at - {T0}) / {WEEK}",
                end = T0 + 52 * WEEK
            ),
        ),
    ]
}

fn documents() -> [&'static str; 3] {
    [
        r#"{ contacts(orderBy: [{field: "agg.total_spent", direction: DESC}], first: 20) { edges { node { id email } } } }"#,
        r#"{ contactStats(groupBy: ["country", "data.price_plan"], metrics: [{op: COUNT}, {op: SUM, field: "agg.total_spent"}], first: 100) { buckets { keys count metrics } totals { count metrics } } }"#,
        r#"{ sessionStats(kind: "order", interval: WEEK, from: "2024-01-01T00:00:00Z", to: "2024-12-30T00:00:00Z", metrics: [{op: SUM, field: "data.total"}, {op: AVG, field: "data.total"}]) { points { start totals { count metrics } } } }"#,
    ]
}

/// Median and 99th percentile (the slowest run below 100 runs), in milliseconds.
fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let p99 = ms[((ms.len() as f64 * 0.99).ceil() as usize).clamp(1, ms.len()) - 1];
    (ms[ms.len() / 2], p99)
}

async fn bench(name: &str, url: &str, contacts: u64, per_contact: u64) -> anyhow::Result<()> {
    let sqlite = url.starts_with("sqlite");
    let sessions = contacts * per_contact;
    let store = SqlStore::open(url).await?;
    store.ensure_workspace("default").await?;
    store
        .set_rules(
            "default",
            &[AggregateRule::new(
                "total_spent",
                AggOp::Sum,
                "order",
                Some("total"),
            )?],
        )
        .await?;
    let fill = Instant::now();
    let mut conn = AnyConnection::connect(url).await?;
    for sql in fill_sql(sqlite, contacts, sessions) {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
    }
    let settle = if sqlite {
        "PRAGMA wal_checkpoint(TRUNCATE)"
    } else {
        "ANALYZE"
    };
    sqlx::query(settle).execute(&mut conn).await?;
    eprintln!(
        "{name}: filled {contacts} contacts and {sessions} orders in {:.1} s",
        fill.elapsed().as_secs_f64()
    );
    let schema = dossier_gateway::build_schema(
        store.clone(),
        None,
        None,
        None,
        GatewayConfig::open("default"),
    );
    let parts =
        std::env::var("DOSSIER_DASHBOARD_PARTS").unwrap_or_else(|_| "dashboards,console".into());
    if parts.contains("console") {
        console_pages(name, &schema, &store).await?;
    }
    if !parts.contains("dashboards") {
        return Ok(());
    }
    println!("\n{name}: {contacts} contacts, {sessions} orders");
    println!(
        "| query | runs | gateway p50 | gateway p99 | hand-written SQL p50 | SQL p99 | ratio (p50) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for ((label, floor), doc) in floor_sql(sqlite).into_iter().zip(documents()) {
        let runs = if label.starts_with("top") { 50 } else { 7 };
        let run_doc =
            || dossier_gateway::execute(&schema, &store, Caller::admin("default"), doc, None);
        let first = run_doc().await;
        if first.get("errors").is_some() {
            bail!("{label}: {first}");
        }
        let mut ours = vec![];
        for _ in 0..runs {
            let t = Instant::now();
            run_doc().await;
            ours.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        sqlx::query(AssertSqlSafe(floor.clone()))
            .fetch_all(&mut conn)
            .await?;
        let mut theirs = vec![];
        for _ in 0..runs {
            let t = Instant::now();
            sqlx::query(AssertSqlSafe(floor.clone()))
                .fetch_all(&mut conn)
                .await?;
            theirs.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let ((o50, o99), (t50, t99)) = (percentiles(ours), percentiles(theirs));
        println!(
            "| {label} | {runs} | {o50:.1} ms | {o99:.1} ms | {t50:.1} ms | {t99:.1} ms | {:.2}× |",
            o50 / t50
        );
    }
    Ok(())
}

/// The console's pages at this scale (issue 26): each page's server time, through the
/// console's router in-process (session, GraphQL through the schema, HTML), and the filter
/// builder's live count of a two-condition filter.
async fn console_pages(
    name: &str,
    schema: &dossier_gateway::DossierSchema,
    store: &SqlStore,
) -> anyhow::Result<()> {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt as _;

    let app = dossier_console::router(schema.clone(), store.clone());
    // Open access: the first visit makes the session whose cookie every request carries.
    let first = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty())?)
        .await?;
    let cookie = first
        .headers()
        .get(header::SET_COOKIE)
        .context("no session cookie")?
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let two = "country = \"FR\" and data.price_plan = \"pro\"";
    let pages = [
        (
            "contacts list, first page with its total",
            "/contacts".to_string(),
        ),
        (
            "contacts list, a later page (the total carried by the link)",
            "/contacts?total=1000000&after=".to_string(),
        ),
        (
            "search by a whole email",
            "/contacts?q=user123456%40example.com".to_string(),
        ),
        (
            "search by part of an email, phone or name (a scan)",
            "/contacts?q=user123456%40".to_string(),
        ),
        ("contact card", "/contacts/123456".to_string()),
        (
            "contacts list, two-condition filter",
            format!("/contacts?filter={}", enc(two)),
        ),
        (
            "filter builder's live count, two conditions",
            format!("/segments/-/count?filter={}", enc(two)),
        ),
        ("sources", "/sources".to_string()),
        ("segments", "/segments".to_string()),
    ];
    println!("\n{name}: console pages (server time, in-process)");
    println!("| page | runs | p50 | p99 |");
    println!("| --- | --- | --- | --- |");
    for (label, mut uri) in pages {
        if uri.ends_with("after=") {
            // A cursor from the middle of the list, as the "Next page" link carries.
            let doc = "{ contacts(first: 25) { pageInfo { endCursor } } }";
            let page =
                dossier_gateway::execute(schema, store, Caller::admin("default"), doc, None).await;
            let cursor = page["data"]["contacts"]["pageInfo"]["endCursor"]
                .as_str()
                .context("no cursor")?;
            uri.push_str(&enc(cursor));
        }
        let get = || {
            let request = Request::get(uri.as_str())
                .header(header::COOKIE, cookie.as_str())
                .body(Body::empty())
                .expect("a request");
            app.clone().oneshot(request)
        };
        let r = get().await?;
        if !r.status().is_success() {
            bail!("{label}: {uri} answered {}", r.status());
        }
        let runs = 30;
        let mut ms = vec![];
        for _ in 0..runs {
            let t = Instant::now();
            let r = get().await?;
            axum::body::to_bytes(r.into_body(), usize::MAX).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (p50, p99) = percentiles(ms);
        println!("| {label} | {runs} | {p50:.1} ms | {p99:.1} ms |");
    }
    Ok(())
}

/// A URL query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let contacts = env_number("DOSSIER_DASHBOARD_CONTACTS", 1_000_000)?;
    let per_contact = env_number("DOSSIER_DASHBOARD_SESSIONS_PER_CONTACT", 5)?;
    let backends =
        std::env::var("DOSSIER_DASHBOARD_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    for backend in backends.split(',') {
        match backend.trim() {
            "sqlite" => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("store.db").display());
                bench("SQLite", &url, contacts, per_contact).await?;
            }
            "postgres" => {
                let admin = std::env::var("DOSSIER_BENCH_PG_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
                let db = common::BenchDb::create(&admin)?;
                bench("PostgreSQL", &db.url, contacts, per_contact).await?;
            }
            other => bail!("unknown backend {other:?}; use sqlite, postgres"),
        }
    }
    Ok(())
}
