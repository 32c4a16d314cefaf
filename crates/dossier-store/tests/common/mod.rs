//! The harness both store suites share: a fresh SQLite file or PostgreSQL database per
//! test, and records shaped like the demo shop.
#![allow(dead_code)]

use std::collections::BTreeMap;

use dossier_core::model::{ContactLink, ContactRecord, SessionRecord};
use dossier_core::{
    AggOp, AggregateRule, DataKey, DataValue, Identity, MappedRecord, ProfileField,
};
use dossier_store::{BatchWrite, SqlStore};
use sqlx::{AssertSqlSafe, Connection};

pub const WS: &str = "default";

pub struct TestDb {
    pub store: SqlStore,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg_drop.take() {
            // Best effort: a leftover test database is harmless and has a unique name.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            })
            .join()
            .ok();
        }
    }
}

impl TestDb {
    /// The test's PostgreSQL database (none on SQLite).
    pub fn postgres_url(&self) -> Option<String> {
        let (admin, name) = self.pg_drop.as_ref()?;
        let (base, _) = admin.rsplit_once('/').unwrap();
        Some(format!("{base}/{name}"))
    }

    /// A connection of its own to the test's PostgreSQL database (none on SQLite).
    pub async fn postgres_connection(&self) -> Option<sqlx::PgConnection> {
        let url = self.postgres_url()?;
        Some(sqlx::PgConnection::connect(&url).await.unwrap())
    }
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    TestDb {
        store: SqlStore::open(&url).await.unwrap(),
        _dir: Some(dir),
        pg_drop: None,
    }
}

pub async fn postgres() -> TestDb {
    let admin = std::env::var("DOSSIER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("dossier_test_{}_{}", std::process::id(), rand_suffix());
    let mut c = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL is required for this test at {admin} (set DOSSIER_TEST_PG_URL): {e}")
        });
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut c)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    TestDb {
        store: SqlStore::open(&url).await.unwrap(),
        _dir: None,
        pg_drop: Some((admin, name)),
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    t * 1000 + N.fetch_add(1, Ordering::SeqCst)
}

pub fn key(k: &str) -> DataKey {
    DataKey::new(k).unwrap()
}

pub fn customer(id: u32, email: &str, country: &str, plan: &str) -> MappedRecord {
    MappedRecord::Contact(ContactRecord {
        external: Identity::external("shop", "customers", &id.to_string()),
        identities: vec![Identity::email(email).unwrap()],
        profile: vec![
            (ProfileField::Email, email.to_lowercase()),
            (ProfileField::Country, country.into()),
        ],
        data: vec![(key("price_plan"), DataValue::String(plan.into()))],
        updated_at: Some(1_000 + id as i64),
        created_at: Some(1_000),
    })
}

pub fn order(id: u32, customer: u32, total: f64, at: i64) -> MappedRecord {
    MappedRecord::Session(SessionRecord {
        external_id: id.to_string(),
        kind: "order".into(),
        contact: Some(ContactLink::Identity(Identity::external(
            "shop",
            "customers",
            &customer.to_string(),
        ))),
        started_at: Some(at),
        ended_at: None,
        data: vec![
            (key("total"), DataValue::Number(total)),
            (key("status"), DataValue::String("paid".into())),
        ],
    })
}

pub fn batch(stream: &str, records: Vec<MappedRecord>, state: i64) -> BatchWrite {
    BatchWrite {
        source: "shop".into(),
        stream: stream.into(),
        records,
        rejected: vec![],
        state: serde_json::json!({ "n": state }),
        run_id: None,
        mark_seen: false,
        defer_derived: false,
        lease_owner: None,
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
