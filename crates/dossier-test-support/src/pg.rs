//! A PostgreSQL database of its own for one test, dropped when the test ends (even when it
//! fails).

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

/// The server tests create their databases on: `DOSSIER_TEST_PG_URL`, else the local
/// default of `scripts/test.sh`.
pub fn admin_url() -> String {
    std::env::var("DOSSIER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test on [`admin_url`]'s server, dropped with this value.
#[derive(Debug)]
pub struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    /// Creates `dossier_{tag}_...`, a name no other test process or test uses. A test whose
    /// server is missing fails, naming the variable to set.
    pub async fn create(tag: &str) -> PgDb {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let admin = admin_url();
        // Nanoseconds tell apart runs of the same process id; the counter, tests of one run.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
        let name = format!(
            "dossier_{tag}_{}_{}",
            std::process::id(),
            nanos * 1000 + NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let mut c = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is required for this test at {admin} (set DOSSIER_TEST_PG_URL): {e}")
        });
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        PgDb { admin, name, url }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection of its own to the database.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url))
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: the database is
        // dropped from a thread of its own. Best effort: a leftover database is harmless and
        // has a unique name.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    if let Ok(mut c) = PgConnection::connect(&admin).await {
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
