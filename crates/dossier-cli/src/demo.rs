//! `dossier demo`: a deterministic sample shop, its config, a sync, and a server.

use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Context;
use chrono::{Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection};

use crate::commands;
use crate::progress::Bars;

/// The demo's config: customers → contacts, orders and conversations → sessions.
pub const DEMO_CONFIG: &str = include_str!("../../../examples/demo/dossier.toml");
const FIRST: [&str; 16] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Frances", "Dennis",
    "Radia", "Linus", "Sophie", "Tim", "Hedy", "John",
];
const LAST: [&str; 16] = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Hamilton",
    "Thompson",
    "Allen",
    "Ritchie",
    "Perlman",
    "Torvalds",
    "Wilson",
    "Berners-Lee",
    "Lamarr",
    "Backus",
];
const COUNTRIES: [&str; 8] = ["FR", "DE", "US", "GB", "ES", "IT", "NL", "BE"];
const PLANS: [&str; 3] = ["free", "basic", "pro"];
const STATUSES: [&str; 4] = ["paid", "paid", "paid", "refunded"];
const CHANNELS: [&str; 3] = ["email", "chat", "phone"];

fn ts(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Writes the sample shop: `customers` customers, 5 orders and 3 conversations each on average.
/// The same `customers` always gives the same file.
pub async fn generate_shop(path: &Path, customers: u32) -> anyhow::Result<(u64, u64, u64)> {
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let mut conn = opts.connect().await?;
    let mut tx = conn.begin().await?;
    for ddl in [
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, first_name TEXT, last_name TEXT, \
         country TEXT, plan TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, total NUMERIC NOT NULL, currency TEXT NOT NULL, \
         status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE TABLE conversations (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, csat INTEGER, channel TEXT NOT NULL, \
         started_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE INDEX customers_updated ON customers (updated_at, id)",
        "CREATE INDEX orders_updated ON orders (updated_at, id)",
        "CREATE INDEX conversations_updated ON conversations (updated_at, id)",
    ] {
        sqlx::query(ddl).execute(&mut *tx).await?;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let epoch = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    let n = customers as u64;
    for id in 1..=n {
        let first = FIRST[rng.random_range(0..FIRST.len())];
        let last = LAST[rng.random_range(0..LAST.len())];
        let created = epoch + Duration::minutes(rng.random_range(0..300_000));
        let updated = created + Duration::minutes(rng.random_range(0..100_000));
        sqlx::query("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(id as i64)
            .bind(format!(
                "{}.{}{id}@example.com",
                first.to_lowercase(),
                last.to_lowercase().replace('-', "")
            ))
            .bind(first)
            .bind(last)
            .bind(COUNTRIES[rng.random_range(0..COUNTRIES.len())])
            .bind(PLANS[rng.random_range(0..PLANS.len())])
            .bind(ts(created))
            .bind(ts(updated))
            .execute(&mut *tx)
            .await?;
    }
    let orders = n * 5;
    for id in 1..=orders {
        let created = epoch + Duration::minutes(rng.random_range(0..500_000));
        let cents: i64 = rng.random_range(500..40_000);
        sqlx::query("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(id as i64)
            .bind(rng.random_range(1..=n) as i64)
            .bind(format!("{}.{:02}", cents / 100, cents % 100))
            .bind("EUR")
            .bind(STATUSES[rng.random_range(0..STATUSES.len())])
            .bind(ts(created))
            .bind(ts(created + Duration::minutes(rng.random_range(0..5_000))))
            .execute(&mut *tx)
            .await?;
    }
    let conversations = n * 3;
    for id in 1..=conversations {
        let started = epoch + Duration::minutes(rng.random_range(0..500_000));
        let csat: Option<i64> = rng.random_bool(0.7).then(|| rng.random_range(1..=5));
        sqlx::query("INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?)")
            .bind(id as i64)
            .bind(rng.random_range(1..=n) as i64)
            .bind(csat)
            .bind(CHANNELS[rng.random_range(0..CHANNELS.len())])
            .bind(ts(started))
            .bind(ts(started + Duration::minutes(rng.random_range(0..3_000))))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    conn.close().await?;
    Ok((n, orders, conversations))
}

pub async fn run(
    dir: &Path,
    listen: &str,
    no_serve: bool,
    customers: u32,
    plugins: &dossier_plugin_host::PluginDir,
) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    let shop = dir.join("shop.db");
    if shop.exists() {
        println!("using the existing sample shop {}", shop.display());
    } else {
        println!("generating a sample shop in {} ...", shop.display());
        let tmp = dir.join("shop.db.partial");
        let _ = std::fs::remove_file(&tmp);
        let (c, o, v) = generate_shop(&tmp, customers).await?;
        for ext in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("shop.db.partial{ext}")));
        }
        std::fs::rename(&tmp, &shop)?;
        println!("  {c} customers, {o} orders, {v} conversations");
    }
    let config = dir.join("dossier.toml");
    if !config.exists() {
        std::fs::write(&config, DEMO_CONFIG)?;
        println!("wrote {}", config.display());
    }
    let engine = crate::bootstrap::engine(&config, plugins).await?;
    let shutdown = crate::scheduling::Shutdown::listen()?;
    shutdown.stop_runs_on_signal(&engine);
    let bars = Bars::new("shop");
    let s = match dossier_sync::scheduler::sync_now(&engine, "shop", None, "demo", &bars).await {
        Ok(s) => s,
        Err(dossier_sync::SyncError::Cancelled) => {
            println!(
                "stopped: the sync of the shop ends here, with what it committed; run the demo again to resume it"
            );
            engine.store().close().await;
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "synced shop: {} rows read, {} written in {:.1}s",
        s.rows_read(),
        s.rows_written(),
        s.elapsed.as_secs_f64()
    );
    let (contacts, sessions) = engine.store().counts(engine.workspace()).await?;
    println!("the store holds {contacts} contacts and {sessions} sessions");
    let sample = engine
        .store()
        .contacts(engine.workspace(), None, 1, None)
        .await?;
    let email = sample
        .items
        .first()
        .and_then(|c| c.email.clone())
        .unwrap_or_default();
    println!(
        "\ntry these queries (in GraphiQL, or with `dossier query --config {}`):",
        config.display()
    );
    println!(
        "  {{ contact(email: \"{email}\") {{ firstName country data aggregates sessions(first: 3) {{ edges {{ node {{ kind startedAt data }} }} }} }} }}"
    );
    println!(
        "  {{ contacts(where: {{ and: [{{ field: \"country\", eq: \"FR\" }}, {{ field: \"data.price_plan\", eq: \"basic\" }}, {{ field: \"agg.avg_basket\", gt: 150 }}] }}, first: 5) {{ totalCount edges {{ node {{ email aggregates }} }} }} }}"
    );
    if no_serve {
        return Ok(ExitCode::SUCCESS);
    }
    commands::serve_engine(engine, plugins, listen, true, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, header};
    use dossier_gateway::{Access, Caller};
    use futures::StreamExt as _;
    use http_body_util::BodyExt as _;
    use serde_json::{Value, json};
    use tower::ServiceExt as _;

    use crate::metrics::tests::sample;

    /// `serve`'s wiring end to end: a real sync of a generated shop, triggered over HTTP,
    /// streams its progress to a `syncProgress` subscription and shows in `/metrics`.
    #[tokio::test]
    async fn a_real_sync_streams_progress_and_fills_the_metrics() {
        let dir = tempfile::tempdir().unwrap();
        super::generate_shop(&dir.path().join("shop.db"), 40)
            .await
            .unwrap();
        let config = dir.path().join("dossier.toml");
        std::fs::write(&config, super::DEMO_CONFIG).unwrap();
        let plugins = dossier_plugin_host::PluginDir::new(dir.path().join("plugins"));
        let engine = crate::bootstrap::engine(&config, &plugins).await.unwrap();
        let ws = engine.workspace().to_string();
        let mut gateway = crate::commands::gateway_config(&engine).unwrap();
        gateway.access = Access::Open {
            workspace: ws.clone(),
        };
        let (schema, app) = crate::commands::gateway_app(&engine, &plugins, gateway).await;

        let request = async_graphql::Request::new(
            r#"subscription { syncProgress(source: "shop") { kind source runId stream rows streamRows read error } }"#,
        )
        .data(Caller::admin(&ws));
        let mut progress = schema.execute_stream(request);
        // The first poll runs the resolver, which subscribes; nothing has happened yet.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), progress.next())
                .await
                .is_err()
        );

        let post = |query: &str| {
            Request::post("/graphql")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json!({ "query": query }).to_string()))
                .unwrap()
        };
        let resp = app
            .clone()
            .oneshot(post(
                r#"mutation { triggerSync(source: "shop") { id status } }"#,
            ))
            .await
            .unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let out: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(out["data"]["triggerSync"]["status"], "succeeded", "{out}");
        let run = out["data"]["triggerSync"]["id"]
            .as_str()
            .unwrap()
            .to_string();

        let mut events = vec![];
        loop {
            let r = tokio::time::timeout(Duration::from_secs(10), progress.next())
                .await
                .expect("no progress within 10s")
                .expect("the subscription ended");
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            let e = r.data.into_json().unwrap()["syncProgress"].clone();
            assert_eq!(e["runId"], run.as_str());
            let last = e["kind"] == "RUN_FINISHED";
            events.push(e);
            if last {
                break;
            }
        }
        assert_eq!(events[0]["kind"], "RUN_STARTED");
        assert_eq!(events.last().unwrap()["error"], Value::Null);
        // Per stream: started, its batches (their rows adding up), finished with that count.
        let mut read = 0;
        for stream in ["customers", "orders", "conversations"] {
            let of: Vec<&Value> = events.iter().filter(|e| e["stream"] == stream).collect();
            assert_eq!(of[0]["kind"], "STREAM_STARTED", "{stream}");
            let last = of.last().unwrap();
            assert_eq!(last["kind"], "STREAM_FINISHED", "{stream}");
            let batches: Vec<&&Value> = of[1..of.len() - 1].iter().collect();
            assert!(!batches.is_empty(), "{stream}");
            assert!(batches.iter().all(|b| b["kind"] == "BATCH_COMMITTED"));
            let rows: i64 = batches.iter().map(|b| b["rows"].as_i64().unwrap()).sum();
            assert_eq!(batches.last().unwrap()["streamRows"].as_i64(), Some(rows));
            assert_eq!(last["read"].as_i64(), Some(rows), "{stream}");
            read += rows;
        }
        assert!(read > 40, "{read}");

        // The metrics follow the same events (in another task: wait for the run to show).
        for _ in 0..200 {
            let resp = app
                .clone()
                .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
                .await
                .unwrap();
            let text = String::from_utf8(
                resp.into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
                    .to_vec(),
            )
            .unwrap();
            if sample(
                &text,
                r#"dossier_sync_runs_total{source="shop",status="succeeded"}"#,
            ) != Some(1.0)
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            let synced: f64 = ["customers", "orders", "conversations"]
                .iter()
                .map(|s| {
                    sample(
                        &text,
                        &format!(r#"dossier_rows_synced_total{{source="shop",stream="{s}"}}"#),
                    )
                    .unwrap()
                })
                .sum();
            assert_eq!(synced, read as f64);
            assert_eq!(
                sample(
                    &text,
                    r#"dossier_sync_run_duration_seconds_count{source="shop"}"#
                ),
                Some(1.0)
            );
            assert_eq!(
                sample(&text, r#"dossier_sync_consecutive_failures{source="shop"}"#),
                Some(0.0)
            );
            assert!(
                sample(
                    &text,
                    r#"dossier_sync_seconds_since_success{source="shop"}"#
                )
                .is_some()
            );
            assert_eq!(
                sample(
                    &text,
                    r#"dossier_graphql_requests_total{operation_type="mutation",status="ok"}"#
                ),
                Some(1.0)
            );
            return;
        }
        panic!("the run never showed in /metrics");
    }
}
