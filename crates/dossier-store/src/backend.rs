use std::sync::{Arc, Once};
use std::time::Duration;

use dossier_core::redact_url;
use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, ConnectOptions as _, Connection as _, Executor, Row};

use crate::error::{Result, StoreError};
use crate::planner_stats::GrowthWatch;
use crate::{Page, SourceRow};

static DRIVERS: Once = Once::new();

/// A pooled PostgreSQL connection is pinged before use only after it sat idle this long. One
/// in steady use has just proven itself, and sqlx's ping on every acquire was a round trip per
/// statement: half of a contact lookup's round trips.
const PING_AFTER_IDLE: Duration = Duration::from_secs(10);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The store, on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) backend: Backend,
    /// On SQLite a single connection, so writers queue instead of failing with SQLITE_BUSY.
    pub(crate) write: AnyPool,
    pub(crate) read: AnyPool,
    /// Rows written since opening, for PostgreSQL's planner statistics.
    pub(crate) growth: Arc<GrowthWatch>,
    /// Batches (or groups) that met a concurrent writer and were written again alone.
    pub(crate) conflicts: Arc<std::sync::atomic::AtomicU64>,
}

impl SqlStore {
    /// Closes every connection, once those in use come back. On SQLite the last connection
    /// to close checkpoints the write-ahead log into the database and removes it.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

impl SqlStore {
    /// How many batches (or groups of batches) since the store opened met a concurrent
    /// writer of their workspace and were written again holding it alone (see the write
    /// protocol): a measure of how much the sources being synced at once overlap.
    pub fn write_conflicts(&self) -> u64 {
        self.conflicts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts rows a sync committed; on PostgreSQL, refreshes the planner's statistics when
    /// they are due (see `planner_stats`).
    pub(crate) async fn wrote(&self, rows: u64) {
        if self.backend == Backend::Postgres
            && let Some(total) = self.growth.wrote(rows)
        {
            let why = format!("{total} rows written since the store opened");
            crate::planner_stats::refresh(&self.write, &why).await;
        }
    }

    /// After a bulk load's aggregates and session data of `contacts` contacts were computed:
    /// on PostgreSQL, their tables just grew from nothing, so their statistics are refreshed.
    /// A page of at most `first` items, decoded by `decode` from the rows of `query` on the
    /// read pool. The query's last parameter, its `LIMIT`, is bound here: one row more than
    /// `first`, which tells whether another page follows.
    pub(crate) async fn read_page<T>(
        &self,
        query: Query<'_, Any, AnyArguments>,
        first: usize,
        decode: impl Fn(&AnyRow) -> Result<T>,
    ) -> Result<Page<T>> {
        let rows = query.bind(first as i64 + 1).fetch_all(&self.read).await?;
        let items = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(Page::cut(items, first))
    }

    pub(crate) async fn settled(&self, contacts: u64) {
        if self.backend == Backend::Postgres && contacts >= crate::planner_stats::FIRST_AFTER_ROWS {
            let why = format!("{contacts} contacts settled");
            crate::planner_stats::refresh(&self.write, &why).await;
        }
    }
}

/// Statements are logged at trace level and slow ones at debug: a bulk statement carries a
/// thousand parameters, and sqlx's default (a warning with the whole statement) filled a
/// user's terminal during a sync.
fn quiet(opts: AnyConnectOptions) -> AnyConnectOptions {
    opts.log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1))
}

pub(crate) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl SqlStore {
    /// Opens (creating if needed) and migrates the store at `url`:
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub async fn open(url: &str) -> Result<Self> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let open_err = |source| StoreError::Open {
            url: redact_url(url),
            source,
        };
        let store = if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::Url { url: url.into() });
            }
            let opts: AnyConnectOptions = format!("sqlite://{path}?mode=rwc")
                .parse()
                .map_err(open_err)?;
            let opts = quiet(opts);
            let pragmas = sqlite_pragmas;
            // Connections to a file in this process: nothing on the way to go stale, so no
            // ping before each use.
            let write = AnyPoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(60))
                .after_connect(pragmas)
                .connect_with(opts.clone())
                .await
                .map_err(open_err)?;
            SQLITE_MIGRATIONS.run(&write).await?;
            let read = AnyPoolOptions::new()
                .test_before_acquire(false)
                .max_connections(4)
                .after_connect(sqlite_read_pragmas)
                .connect_with(opts)
                .await
                .map_err(open_err)?;
            SqlStore {
                backend: Backend::Sqlite,
                write,
                read,
                growth: Arc::default(),
                conflicts: Arc::default(),
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_AFTER_IDLE {
                            conn.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(quiet(url.parse().map_err(open_err)?))
                .await
                .map_err(open_err)?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            crate::planner_stats::refresh_if_never(&pool).await;
            SqlStore {
                backend: Backend::Postgres,
                write: pool.clone(),
                read: pool,
                growth: Arc::default(),
                conflicts: Arc::default(),
            }
        } else {
            return Err(StoreError::Url {
                url: redact_url(url),
            });
        };
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Is the database reachable?
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    pub async fn ensure_workspace(&self, ws: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO workspaces (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(ws)
        .bind(now_micros())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records a source as configured; `config` must already have its secrets redacted.
    pub async fn upsert_source(&self, ws: &str, source: &SourceRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO sources (workspace, name, connector, config, streams, schedule, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (workspace, name) DO UPDATE SET \
             connector = excluded.connector, config = excluded.config, streams = excluded.streams, \
             schedule = excluded.schedule, updated_at = excluded.updated_at",
        )
        .bind(ws)
        .bind(&source.name)
        .bind(&source.connector)
        .bind(source.config.to_string())
        .bind(streams_column(source).to_string())
        .bind(source.schedule.clone())
        .bind(now_micros())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn sources(&self, ws: &str) -> Result<Vec<SourceRow>> {
        let rows = sqlx::query("SELECT name, connector, config, streams, schedule FROM sources WHERE workspace = $1 ORDER BY name")
            .bind(ws)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SourceRow {
                    name: r.try_get("name")?,
                    connector: r.try_get("connector")?,
                    config: serde_json::from_str(&r.try_get::<String, _>("config")?)
                        .map_err(|e| StoreError::corrupt("source config", e))?,
                    schedule: r.try_get("schedule")?,
                    ..streams_of(&r.try_get::<String, _>("streams")?)?
                })
            })
            .collect()
    }

    /// The checkpoint of the last committed batch of a stream.
    pub async fn stream_state(
        &self,
        ws: &str,
        source: &str,
        stream: &str,
    ) -> Result<Option<serde_json::Value>> {
        let row = sqlx::query(
            "SELECT state FROM stream_states WHERE workspace = $1 AND source = $2 AND stream = $3",
        )
        .bind(ws)
        .bind(source)
        .bind(stream)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            let s: String = r.try_get("state")?;
            serde_json::from_str(&s).map_err(|e| StoreError::corrupt("stream state", e))
        })
        .transpose()
    }

    /// Forgets a stream's checkpoint so the next sync reads it in full.
    pub async fn reset_stream_state(&self, ws: &str, source: &str, stream: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM stream_states WHERE workspace = $1 AND source = $2 AND stream = $3",
        )
        .bind(ws)
        .bind(source)
        .bind(stream)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}

fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        // A checkpoint every 16,384 WAL pages (64 MiB) rather than SQLite's 1,000: a batch
        // scatters inserts over the session and contact indexes, so a checkpoint ran after
        // almost every commit and copied the same hot pages again and again. With it a
        // 100,000-customer load took 54.7 s instead of 69.8 s, at the same peak RSS.
        conn.execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; \
             PRAGMA cache_size = -32000; PRAGMA temp_store = MEMORY; \
             PRAGMA wal_autocheckpoint = 16384;",
        )
        .await?;
        Ok(())
    })
}

/// Readers also map the file into memory: the four read connections then share the OS page
/// cache instead of each warming a private 32 MB cache, which keeps large segment counts
/// steady. (The writer does not: a sync's memory stays what it needs.)
fn sqlite_read_pragmas(
    conn: &mut sqlx::AnyConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        sqlite_pragmas(conn, meta).await?;
        conn.execute("PRAGMA mmap_size = 1073741824;").await?;
        Ok(())
    })
}

/// The `streams` column: each stream's config (with its `name`) where the source has them,
/// else the names alone, as stores before stream configs were kept hold it.
fn streams_column(source: &SourceRow) -> serde_json::Value {
    if source.stream_configs.len() == source.streams.len() && !source.streams.is_empty() {
        serde_json::Value::Array(source.stream_configs.clone())
    } else {
        serde_json::json!(source.streams)
    }
}

/// A source's streams from its `streams` column: names, and configs where kept.
fn streams_of(column: &str) -> Result<SourceRow> {
    let items: Vec<serde_json::Value> =
        serde_json::from_str(column).map_err(|e| StoreError::corrupt("source streams", e))?;
    let mut row = SourceRow {
        name: String::new(),
        connector: String::new(),
        config: serde_json::Value::Null,
        streams: Vec::with_capacity(items.len()),
        stream_configs: vec![],
        schedule: None,
    };
    for item in items {
        match item {
            serde_json::Value::String(name) => row.streams.push(name),
            serde_json::Value::Object(ref m) => {
                let name = m.get("name").and_then(|n| n.as_str()).ok_or_else(|| {
                    StoreError::corrupt("source streams", "a stream without a name")
                })?;
                row.streams.push(name.to_string());
                row.stream_configs.push(item);
            }
            other => return Err(StoreError::corrupt("source streams", other)),
        }
    }
    Ok(row)
}

#[cfg(test)]
mod streams_column_tests {
    use super::*;

    #[test]
    fn names_alone_and_configs_with_names_both_read_back() {
        let old = streams_of(r#"["customers", "orders"]"#).unwrap();
        assert_eq!(old.streams, ["customers", "orders"]);
        assert!(old.stream_configs.is_empty());
        let kept = streams_of(r#"[{"name": "customers", "read": {"table": "c"}}]"#).unwrap();
        assert_eq!(kept.streams, ["customers"]);
        assert_eq!(kept.stream_configs[0]["read"]["table"], "c");
        assert!(streams_of("[1]").is_err());
        assert!(streams_of(r#"[{"read": {}}]"#).is_err());
        // Written back as configs where every stream has one, as names otherwise.
        let row = SourceRow {
            name: "shop".into(),
            connector: "sqlite".into(),
            config: serde_json::json!({}),
            schedule: None,
            ..kept.clone()
        };
        assert_eq!(streams_column(&row)[0]["name"], "customers");
        let names_only = SourceRow {
            stream_configs: vec![],
            ..row
        };
        assert_eq!(
            streams_column(&names_only),
            serde_json::json!(["customers"])
        );
    }
}
