//! The harness both store suites share: a fresh SQLite file or PostgreSQL database per
//! test, and records shaped like the demo shop.
// Each suite uses its own part.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;

use dossier_core::{AggOp, AggregateRule, DataValue};
use dossier_store::{BatchWrite, SqlStore};
use dossier_test_support::PgDb;
pub use dossier_test_support::shop::{WS, batch, customer, key, order};

pub struct TestDb {
    pub store: SqlStore,
    _dir: Option<tempfile::TempDir>,
    pg: Option<PgDb>,
}

impl TestDb {
    /// The test's PostgreSQL database (none on SQLite).
    pub fn postgres_url(&self) -> Option<String> {
        Some(self.pg.as_ref()?.url().to_string())
    }

    /// A connection of its own to the test's PostgreSQL database (none on SQLite).
    pub async fn postgres_connection(&self) -> Option<sqlx::PgConnection> {
        Some(self.pg.as_ref()?.connect().await)
    }
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    TestDb {
        store: SqlStore::open(&url).await.unwrap(),
        _dir: Some(dir),
        pg: None,
    }
}

pub async fn postgres() -> TestDb {
    let pg = PgDb::create("test").await;
    TestDb {
        store: SqlStore::open(pg.url()).await.unwrap(),
        _dir: None,
        pg: Some(pg),
    }
}

pub fn rules() -> Vec<AggregateRule> {
    vec![
        AggregateRule::new("transactions", AggOp::Count, "order", None).unwrap(),
        AggregateRule::new("total_spent", AggOp::Sum, "order", Some("total")).unwrap(),
        AggregateRule::new("avg_basket", AggOp::Avg, "order", Some("total")).unwrap(),
        AggregateRule::new("biggest", AggOp::Max, "order", Some("total")).unwrap(),
        AggregateRule::new("last_total", AggOp::Last, "order", Some("total")).unwrap(),
    ]
}

/// The workspace with `rules` and one customer: external id 1, a@example.com, FR, basic.
pub async fn with_one_customer(s: &SqlStore, rules: &[AggregateRule]) {
    s.ensure_workspace(WS).await.unwrap();
    s.set_rules(WS, rules).await.unwrap();
    s.apply_batch(
        WS,
        &batch(
            "customers",
            vec![customer(1, "a@example.com", "FR", "basic")],
            1,
        ),
    )
    .await
    .unwrap();
}

pub async fn aggs(s: &SqlStore, id: i64) -> BTreeMap<String, DataValue> {
    s.aggregates(WS, &[id])
        .await
        .unwrap()
        .remove(&id)
        .unwrap_or_default()
}

pub fn n(v: f64) -> DataValue {
    DataValue::Number(v)
}

/// Runs each named test once per backend.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )*
        }
        mod on_postgres {
            $( #[tokio::test] async fn $name() { super::$name(super::postgres().await).await } )*
        }
    };
}

/// A tiny deterministic generator, so a failure reproduces from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A full-refresh read of `stream` by a new run: `records` marked seen, then the deletion of
/// what the run did not see. Returns the run and how many sessions it deleted.
pub async fn full_refresh(s: &SqlStore, mut batch: BatchWrite) -> (i64, u64) {
    let run = s.start_run(WS, &batch.source, "test").await.unwrap();
    batch.run_id = Some(run);
    batch.mark_seen = true;
    s.apply_batch(WS, &batch).await.unwrap();
    let deleted = s
        .mark_unseen_deleted(WS, &batch.source, &batch.stream, run)
        .await
        .unwrap();
    (run, deleted)
}

/// The id of the contact holding `email`.
pub async fn email_id(s: &SqlStore, email: &str) -> i64 {
    s.contact_by_email(WS, email).await.unwrap().unwrap().id
}
