//! Fresh MySQL/MariaDB databases for tests, dropped when the test ends (even when it fails).
//!
//! The server is `DOSSIER_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`); a test
//! whose server is missing fails. Sakila is loaded with the `mariadb` (or `mysql`) client,
//! since its schema uses client `DELIMITER` directives.

#![allow(dead_code)] // each test binary uses its own part

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::str::FromStr as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use dossier_connector::{Batch, StreamState, Value};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, Executor as _, MySqlConnection};

pub fn admin_url() -> String {
    std::env::var("DOSSIER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
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

/// `url` with another user and password.
pub fn with_user(url: &str, user: &str, password: Option<&str>) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let at = url.rfind('@').expect("the URL names a user");
    let creds = match password {
        Some(p) => format!("{user}:{p}"),
        None => user.to_string(),
    };
    format!("{}{creds}{}", &url[..scheme_end], &url[at..])
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sql-source/fixtures")
}

/// The command-line client, with the admin URL's host, port, user and password.
fn client() -> Command {
    let url = admin_url();
    let options = MySqlConnectOptions::from_str(&url).expect("DOSSIER_TEST_MYSQL_URL parses");
    let program = if Command::new("mariadb").arg("--version").output().is_ok() {
        "mariadb"
    } else {
        "mysql"
    };
    let mut cmd = Command::new(program);
    cmd.arg("-h")
        .arg(options.get_host())
        .arg("-P")
        .arg(options.get_port().to_string())
        .arg("-u")
        .arg(options.get_username());
    // The password, if any, sits between `user:` and `@`.
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    if let Some(at) = url.rfind('@')
        && let Some((_, password)) = url[scheme_end..at].split_once(':')
    {
        cmd.env("MYSQL_PWD", password);
    }
    cmd
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A database of its own for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    /// A writable pool, to set up and change the data.
    pub pool: MySqlPool,
}

impl TestDb {
    pub async fn empty() -> TestDb {
        let name = format!(
            "dossier_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        admin(&format!("CREATE DATABASE `{name}`")).await;
        let url = with_database(&admin_url(), &name);
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        TestDb { name, url, pool }
    }

    /// A fresh database holding Sakila.
    pub async fn sakila() -> TestDb {
        let mut db = TestDb::empty().await;
        let dir = fixtures().join("sakila-mysql");
        for file in ["sakila-schema.sql", "sakila-data.sql"] {
            let sql = std::fs::read_to_string(dir.join(file)).unwrap();
            // The files name their database; MariaDB has no SRID column attribute.
            let sql = sql
                .replace("sakila;", &format!("`{}`;", db.name))
                .replace(" sakila.", &format!(" `{}`.", db.name))
                .replace("/*!80003 SRID 0 */", "");
            let mut child = client()
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the mariadb (or mysql) client runs (install mariadb-client)");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(sql.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "loading {file} failed: {out:?}");
        }
        // The schema drops and recreates the database under the pool's connections.
        db.pool = MySqlPoolOptions::new()
            .max_connections(2)
            .connect(&db.url)
            .await
            .unwrap();
        assert_eq!(db.count("customer").await, 599, "sakila did not load");
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
        T: for<'r> sqlx::Decode<'r, sqlx::MySql> + sqlx::Type<sqlx::MySql> + Send + Unpin,
    {
        sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let out = client()
            .arg("-e")
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("could not drop test database {}: {out:?}", self.name);
        }
    }
}

/// A user of its own for one test, dropped when the test ends.
pub struct TestUser(pub String);

impl TestUser {
    /// A user that may read `grants` (`db.*`, `db.table`), with a password.
    pub async fn new(name: &str, password: &str, grants: &[String]) -> TestUser {
        admin(&format!(
            "CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'"
        ))
        .await;
        let user = TestUser(name.to_string());
        for on in grants {
            admin(&format!("GRANT SELECT ON {on} TO '{name}'@'%'")).await;
        }
        user
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = client()
            .arg("-e")
            .arg(format!("DROP USER IF EXISTS '{}'@'%'", self.0))
            .output();
    }
}

/// Runs one statement as the admin user.
pub async fn admin(sql: &str) {
    let url = admin_url();
    let mut conn = MySqlConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!("MySQL/MariaDB is not reachable at {url} (set DOSSIER_TEST_MYSQL_URL): {e}")
    });
    conn.execute(AssertSqlSafe(sql.to_string()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Rows of one admin query, as text.
pub async fn admin_rows(sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::Row as _;
    let mut conn = MySqlConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| (0..r.len()).map(|i| r.try_get(i).unwrap()).collect())
        .collect()
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
