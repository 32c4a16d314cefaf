//! SQLite source connector for Dossier.
//!
//! Reads tables, views or `SELECT` queries of one SQLite file, opened read-only.
//!
//! ```toml
//! [sources.shop]
//! connector = "sqlite"
//! path = "shop.db"
//!
//! [sources.shop.streams.customers]
//! table = "customers"
//! cursor = "updated_at"
//!
//! [sources.shop.streams.orders]
//! query = "SELECT o.id, o.email, o.total, o.updated_at FROM orders o WHERE o.status != 'draft'"
//! cursor = "updated_at"
//! primary_key = ["id"]
//! ```
//!
//! # Rules
//!
//! - **Incremental reads** (a stream with a `cursor`) page through the rows in
//!   `(cursor, primary key)` order and resume strictly after the last committed row, so rows
//!   sharing a cursor value are neither lost nor duplicated at batch boundaries. Every batch
//!   is one `SELECT ... ORDER BY ... LIMIT ?` statement, which SQLite runs on one consistent
//!   snapshot; pages are read only when the consumer asks for the next batch, so at most one
//!   batch is in memory. The checkpoint is a [`KeysetState`]; its values are bound back with
//!   the storage class they were read with (a BLOB key is kept as `{"blob_hex": "..."}`).
//! - **NULL cursors**: SQLite sorts NULL before every value, and so does the checkpoint. Rows
//!   whose cursor is NULL are read by a full read (the first read, or a read after the stream's
//!   state was reset) and not by later incremental reads, unless their cursor gets a value.
//!   [`Connector::check`] reports how many rows of a stream have a NULL cursor.
//! - **No cursor**: the stream is read whole on every run. Incoming state is ignored and every
//!   batch carries the state `{"full_refresh": true}`; pages are still read by primary key, one
//!   short statement each. A cursor added later starts with a full read.
//! - **Primary key**: defaults to a table's declared primary key. Views, queries and tables
//!   without a declared primary key must set `primary_key`; its columns must identify a row
//!   (rows with the same key at a batch boundary would be skipped). `rowid` is not used: it is
//!   not a column of `SELECT *` and `VACUUM` may change it.
//! - **Values** are converted by the storage class of each value, not the declared column type:
//!   NULL → `Null`, INTEGER → `Int`, REAL → `Float`, TEXT → `Text` (invalid UTF-8 replaced),
//!   BLOB → `Text` holding the bytes as lowercase hex. Booleans are integers (map them with the
//!   `boolean` transform) and dates are whatever the file holds (map text or epoch seconds with
//!   the `datetime` transform). Every field is mappable.
//! - **SQL**: identifiers are checked against the file's schema and always double-quoted;
//!   values are always bound as parameters. A `query` must be a single `SELECT` (or `WITH ...
//!   SELECT`, leading comments allowed) without `;` (a trailing one is dropped; one inside a
//!   string literal is refused too) and without parameters. It is wrapped as a subquery,
//!   `SELECT * FROM (<query>) AS "src" WHERE ... ORDER BY ... LIMIT ?`, and so re-run for
//!   every batch; SQLite names a repeated column of it uniquely (`id`, `id:1`).
//! - The file is opened read-only, never created, with `query_only` set: no statement can
//!   write to it.
//! - **Errors**: a missing file, table or column, or an invalid query, is a config error;
//!   busy, locked and I/O errors are retryable source errors; other SQLite errors are source
//!   errors that retrying does not fix.
//!
//! [`KeysetState`]: dossier_connector::keyset::KeysetState

mod catalog;
mod read;
mod sql;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dossier_connector::{
    BatchStream, Catalog, Connector, ConnectorError, Problem, ReadRequest, StreamInfo,
    problems_per_stream,
};
use schemars::JsonSchema;
use serde::Deserialize;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// Connection settings of a SQLite source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The SQLite database file to read. It is opened read-only and never created.
    pub path: PathBuf,
}

/// One stream of a SQLite source: a table or view, or a `SELECT` query.
///
/// Exactly one of `table` and `query` is set; the settings are checked when they are parsed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
// Unknown fields are refused by `StreamSettings` (`deny_unknown_fields`), which this is parsed
// from.
#[serde(try_from = "StreamSettings")]
pub struct Stream {
    /// The table or view to read.
    pub table: Option<String>,
    /// A single `SELECT` (or `WITH ... SELECT`) statement to read instead of a table.
    pub query: Option<String>,
    /// The column to read incrementally by: a last-update timestamp or an ever-growing number.
    pub cursor: Option<String>,
    /// The columns that identify a row; defaults to the table's declared primary key.
    pub primary_key: Option<Vec<String>>,
}

/// One stream of a SQLite source: a table or view, or a `SELECT` query.
// The unchecked form of `Stream`, as written in config; its docs make the JSON schema.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Stream")]
struct StreamSettings {
    /// The table or view to read. Set either `table` or `query`.
    table: Option<String>,
    /// A single `SELECT` (or `WITH ... SELECT`) statement to read instead of a table, without
    /// `;`. It is run as a subquery, once per batch. Requires `primary_key`.
    query: Option<String>,
    /// The column to read incrementally by: a last-update timestamp or an ever-growing number.
    /// Without a cursor the stream is read whole on every run. Rows whose cursor is NULL are
    /// read only by a full read.
    cursor: Option<String>,
    /// The columns that identify a row. Defaults to the table's declared primary key; required
    /// for views, queries and tables without one.
    primary_key: Option<Vec<String>>,
}

impl TryFrom<StreamSettings> for Stream {
    type Error = String;

    fn try_from(s: StreamSettings) -> Result<Self, String> {
        let stream = Stream {
            table: s.table,
            query: s.query,
            cursor: s.cursor,
            primary_key: s.primary_key,
        };
        stream.validate()?;
        Ok(stream)
    }
}

/// What a validated stream reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    Table(&'a str),
    /// The query, without trailing `;` and whitespace.
    Query(&'a str),
}

impl Stream {
    /// A stream reading a whole table.
    pub fn table(name: impl Into<String>) -> Self {
        Self {
            table: Some(name.into()),
            query: None,
            cursor: None,
            primary_key: None,
        }
    }

    /// A stream reading a `SELECT` query.
    pub fn query(sql: impl Into<String>) -> Self {
        Self {
            table: None,
            query: Some(sql.into()),
            cursor: None,
            primary_key: None,
        }
    }

    /// Sets the cursor column.
    pub fn with_cursor(mut self, column: impl Into<String>) -> Self {
        self.cursor = Some(column.into());
        self
    }

    /// Sets the primary key columns.
    pub fn with_primary_key<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.primary_key = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Checks the settings that need no database: one of `table`/`query`, a single `SELECT`,
    /// no empty names.
    pub fn validate(&self) -> Result<(), String> {
        self.source().map(|_| ())
    }

    pub(crate) fn source(&self) -> Result<Source<'_>, String> {
        let source = match (&self.table, &self.query) {
            (Some(_), Some(_)) => return Err("set either `table` or `query`, not both".into()),
            (None, None) => {
                return Err(
                    "set `table` (a table or view to read) or `query` (a SELECT statement)".into(),
                );
            }
            (Some(t), None) if t.is_empty() => return Err("`table` is empty".into()),
            (Some(t), None) => Source::Table(t),
            (None, Some(q)) => Source::Query(sql::check_query(q)?),
        };
        if self.cursor.as_deref() == Some("") {
            return Err("`cursor` is empty; name a column or remove it".into());
        }
        if let Some(pk) = &self.primary_key {
            if pk.is_empty() {
                return Err("`primary_key` is empty; name the columns that identify a row".into());
            }
            for (i, c) in pk.iter().enumerate() {
                if c.is_empty() {
                    return Err("`primary_key` has an empty column name".into());
                }
                if pk[..i].iter().any(|p| p.eq_ignore_ascii_case(c)) {
                    return Err(format!("`primary_key` names column {c:?} twice"));
                }
            }
        }
        Ok(source)
    }
}

/// Reads a SQLite file. See the [crate docs](crate) for the rules it follows.
#[derive(Debug)]
pub struct SqliteConnector {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteConnector {
    /// The database file this connector reads.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[async_trait::async_trait]
impl Connector for SqliteConnector {
    type Config = Config;
    type Stream = Stream;

    const NAME: &'static str = "sqlite";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    async fn connect(config: Config) -> Result<Self, ConnectorError> {
        let path = config.path;
        let shown = path.display();
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(ConnectorError::config(format!(
                    "sqlite path {shown} is not a file; set `path` to a SQLite database file"
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConnectorError::config(format!(
                    "sqlite database file {shown} does not exist; set `path` to an existing \
                     SQLite database file (it is opened read-only and never created)"
                )));
            }
            Err(e) => {
                return Err(ConnectorError::config(format!(
                    "cannot access sqlite database file {shown}: {e}"
                )));
            }
        }
        // An absolute path is never taken for a `file:` URI.
        let absolute = std::path::absolute(&path).map_err(|e| {
            ConnectorError::config(format!("cannot resolve sqlite path {shown}: {e}"))
        })?;
        let options = SqliteConnectOptions::new()
            .filename(&absolute)
            .read_only(true)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(5))
            .pragma("query_only", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| sql::error(format!("cannot open sqlite database {shown}"), e, true))?;
        // Opening succeeds on any file; the first read tells whether it is a database.
        sqlx::query("SELECT count(*) FROM sqlite_schema")
            .fetch_one(&pool)
            .await
            .map_err(|e| sql::error(format!("cannot read sqlite database {shown}"), e, true))?;
        Ok(Self { pool, path })
    }

    async fn check(&self, streams: &[(String, Stream)]) -> Vec<Problem> {
        problems_per_stream(streams, |name, stream| self.check_stream(name, stream)).await
    }

    async fn discover(&self) -> Result<Catalog, ConnectorError> {
        self.discover_streams().await
    }

    async fn describe(&self, name: &str, stream: &Stream) -> Result<StreamInfo, ConnectorError> {
        Ok(self.resolve(name, stream).await?.info)
    }

    fn read(self: Arc<Self>, request: ReadRequest<Stream>) -> BatchStream {
        read::read(self, request)
    }
}
