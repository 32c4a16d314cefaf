//! End to end: `examples/sakila/dossier.toml` synced by the engine from a fresh Sakila into
//! a fresh store; every customer's aggregates match what SQL computes on Sakila.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::TestDb;
use dossier_store::SqlStore;
use dossier_sync::{Config, Engine, NoProgress};
use sqlx::sqlite::SqlitePoolOptions;

/// The registry the engine syncs the example with: this connector alone.
fn registry() -> dossier_connector::Registry {
    let mut registry = dossier_connector::Registry::new();
    registry.register::<dossier_connector_mysql::MySqlConnector>();
    registry
}

/// Per customer id: (sum of amounts, payments, rentals).
type Expected = HashMap<i64, (f64, i64, i64)>;

async fn expected(db: &TestDb) -> Expected {
    let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT CAST(c.customer_id AS SIGNED),
                (SELECT CAST(coalesce(sum(p.amount), 0) AS CHAR) FROM payment p
                  WHERE p.customer_id = c.customer_id),
                (SELECT count(*) FROM payment p WHERE p.customer_id = c.customer_id),
                (SELECT count(*) FROM rental r WHERE r.customer_id = c.customer_id)
         FROM customer c",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, sum, payments, rentals)| (id, (sum.parse().unwrap(), payments, rentals)))
        .collect()
}

/// Per customer id, aggregate name → number, as the store holds them.
async fn stored(store_path: &Path) -> HashMap<i64, HashMap<String, f64>> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}?mode=ro", store_path.display()))
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT i.value, a.name, a.value FROM identities i
         JOIN contact_aggregates a ON a.contact_id = i.contact_id
         WHERE i.kind = 'external' AND i.value LIKE 'sakila:customer:%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut out: HashMap<i64, HashMap<String, f64>> = HashMap::new();
    for (external, name, value) in rows {
        let id: i64 = external.rsplit(':').next().unwrap().parse().unwrap();
        let Some(value) = value else { continue };
        let json: serde_json::Value = serde_json::from_str(&value).unwrap();
        let n = json["n"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} of {id} is {value}"));
        out.entry(id).or_default().insert(name, n);
    }
    out
}

fn assert_matches(want: &Expected, got: &HashMap<i64, HashMap<String, f64>>) {
    assert_eq!(want.len(), 599);
    for (id, (sum, payments, rentals)) in want {
        let agg = got.get(id).cloned().unwrap_or_default();
        let get = |n: &str| agg.get(n).copied().unwrap_or(0.0);
        assert!(
            (get("total_paid") - sum).abs() < 1e-6,
            "customer {id}: total_paid {} != {sum}",
            get("total_paid")
        );
        assert_eq!(get("payments"), *payments as f64, "customer {id}: payments");
        assert_eq!(get("rentals"), *rentals as f64, "customer {id}: rentals");
    }
}

#[tokio::test]
#[allow(unsafe_code)] // the only test of this binary sets the variable before any thread reads it
async fn sakila_example_syncs_and_every_aggregate_matches_sql() {
    let db = TestDb::sakila().await;
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("dossier.db");

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sakila");
    let text = std::fs::read_to_string(example.join("dossier.toml")).unwrap();
    unsafe { std::env::set_var("SAKILA_URL", &db.url) };
    let mut loaded = Config::parse(
        &text,
        "examples/sakila/dossier.toml",
        example.clone(),
        &registry(),
    )
    .unwrap();
    loaded.config.store.url = format!("sqlite://{}", store_path.display());
    let store = SqlStore::open(&loaded.config.store.url).await.unwrap();
    let engine = Engine::new(store, registry(), loaded).await.unwrap();

    assert!(
        engine.check("sakila").await.unwrap().is_empty(),
        "check found problems"
    );
    let summary = engine
        .sync("sakila", None, "test", &NoProgress)
        .await
        .unwrap();
    assert_eq!(summary.error, None);
    assert_eq!(summary.rows_read(), 599 + 16044 + 16044);
    assert_eq!(summary.rows_rejected(), 0);
    assert_matches(&expected(&db).await, &stored(&store_path).await);

    // Incremental: only what changed is read, and the aggregates follow.
    db.exec(
        "INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)
         VALUES (1, 1, 1, 10.01, '2006-02-15 12:00:00')",
    )
    .await;
    db.exec("UPDATE rental SET customer_id = 2 WHERE rental_id = 1")
        .await;
    let summary = engine
        .sync("sakila", None, "test", &NoProgress)
        .await
        .unwrap();
    assert_eq!(summary.error, None);
    assert_eq!(summary.rows_read(), 2);
    assert_matches(&expected(&db).await, &stored(&store_path).await);
}
