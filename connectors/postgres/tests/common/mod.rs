//! Fresh PostgreSQL databases for tests, dropped when the test ends (even when it fails).
//!
//! The server is `DOSSIER_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! a test whose server is missing fails. Pagila is loaded with `psql`, since its data is
//! `COPY ... FROM stdin`.

#![allow(dead_code)] // each test binary uses its own part

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use dossier_connector::{Batch, StreamState, Value};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, Executor as _, PgConnection};

pub fn admin_url() -> String {
    std::env::var("DOSSIER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database replaced by `db` (query parameters kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sql-source/fixtures")
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A database of its own for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    /// A writable pool, to set up and change the data.
    pub pool: PgPool,
}

impl TestDb {
    pub async fn empty() -> TestDb {
        let name = format!(
            "dossier_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        admin(&format!("CREATE DATABASE \"{name}\"")).await;
        let url = with_database(&admin_url(), &name);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        TestDb { name, url, pool }
    }

    /// A fresh database holding Pagila.
    pub async fn pagila() -> TestDb {
        let db = TestDb::empty().await;
        let dir = fixtures().join("pagila");
        for file in ["pagila-schema.sql", "pagila-data.sql"] {
            // Without a `postgres` role the `OWNER TO` statements fail; nothing else does.
            let out = Command::new("psql")
                .arg(&db.url)
                .args(["-q", "-X", "-f"])
                .arg(dir.join(file))
                .stdout(Stdio::null())
                .output()
                .expect("psql runs (install postgresql-client)");
            assert!(out.status.success(), "psql -f {file} failed: {out:?}");
        }
        assert_eq!(db.count("customer").await, 599, "pagila did not load");
        db
    }

    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT count(*) FROM {table}")).await
    }

    pub async fn scalar<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let out = Command::new("psql")
            .arg(admin_url())
            .args(["-q", "-X", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("could not drop test database {}: {out:?}", self.name);
        }
    }
}

/// Runs one statement on the server's admin database.
pub async fn admin(sql: &str) {
    let url = admin_url();
    let mut conn = PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {url} (set DOSSIER_TEST_PG_URL): {e}")
    });
    conn.execute(AssertSqlSafe(sql.to_string()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The integer values of `field` in every row, in read order.
pub fn ints(batches: &[Batch], field: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let i = b
                .fields
                .iter()
                .position(|f| f == field)
                .unwrap_or_else(|| panic!("no field {field} in {:?}", b.fields));
            b.rows.iter().map(move |r| match &r[i] {
                Value::Int(v) => *v,
                other => panic!("{field} is {other:?}"),
            })
        })
        .collect()
}

/// The values of `field` in every row, in read order.
pub fn values(batches: &[Batch], field: &str) -> Vec<Value> {
    batches
        .iter()
        .flat_map(|b| {
            let i = b.fields.iter().position(|f| f == field).unwrap();
            b.rows.iter().map(move |r| r[i].clone())
        })
        .collect()
}

/// The state as the framework stores and reloads it.
pub fn stored(batch: &Batch) -> StreamState {
    serde_json::from_str(&serde_json::to_string(&batch.state).unwrap()).unwrap()
}

/// Sums exact decimals as integer hundredths.
pub fn cents(values: &[Value]) -> i64 {
    values
        .iter()
        .map(|v| match v {
            Value::Decimal(s) => {
                let (int, frac) = s.split_once('.').unwrap_or((s, ""));
                let frac = format!("{frac:0<2}");
                assert_eq!(frac.len(), 2, "{s} has more than two decimals");
                let sign = if int.starts_with('-') { -1 } else { 1 };
                int.parse::<i64>().unwrap() * 100 + sign * frac.parse::<i64>().unwrap()
            }
            other => panic!("not a decimal: {other:?}"),
        })
        .sum()
}
