//! What Dossier's SQL source connectors (PostgreSQL, MySQL/MariaDB, SQLite) share.
//!
//! A connector crate implements [`Driver`] — connecting, running one statement in a read-only
//! transaction, describing a query — and a [`Dialect`] — quoting, placeholders, catalog
//! queries, types. [`SqlConnector`] does the rest once for all: streams, discovery, streams
//! checked against the catalog, keyset reads and checkpoints. PostgreSQL and MySQL share
//! [`Config`] too; SQLite has its own (a file path).
//!
//! ```toml
//! [[sources]]
//! name = "pagila"
//! connector = "postgres"                     # or "mysql"
//! config = { url = "postgres://dossier@db.internal:5432/pagila", password_env = "PAGILA_PASSWORD" }
//! # or: config = { host = "db.internal", user = "dossier", database = "pagila", tls = "require" }
//!
//! [[sources.streams]]
//! name = "customer"
//! read = { table = "customer", cursor = "last_update" }
//!
//! [[sources.streams]]
//! name = "big_orders"
//! read = { query = "SELECT o.id, o.total, o.updated_at FROM orders o WHERE o.total > 100", cursor = "updated_at", primary_key = ["id"], batch_size = 5000 }
//! ```
//!
//! # Rules
//!
//! - **Incremental reads** (a stream with a `cursor`) page through the rows in
//!   `(cursor, primary key)` order and resume strictly after the last committed row, so rows
//!   sharing a cursor value are neither lost nor duplicated at batch boundaries. Each batch is
//!   one `SELECT ... WHERE (cursor, pk) > (...) ORDER BY cursor, pk LIMIT n` run in its own
//!   read-only transaction (no `OFFSET`: every page is an index range scan when there is an
//!   index on the cursor); the next page is read only when the consumer asks for it, so at
//!   most one batch is in memory. Each batch's checkpoint is a [`KeysetState`].
//! - **NULL cursors** sort first: rows whose cursor is NULL are read (by primary key) before
//!   the others, by a full read only (the first read, or one after the stream's state is
//!   reset). `check` reports a stream whose cursor column holds NULLs. A NULL in a primary
//!   key column is an error, except where the dialect allows it ([`Dialect::nulls_in_keys`]).
//! - **Rows changed during a read** get a newer cursor value and are read later in the same
//!   read, or by the next one; none is lost. A row may be read twice (once before and once
//!   after its change); the store's upserts make that harmless. As with any cursor-based
//!   sync, a transaction that commits a cursor value older than rows already read (a long
//!   transaction stamping `now()` at its start) is not seen until the state is reset.
//! - **No cursor**: the stream is read whole on every run, paged by primary key. Incoming
//!   state is ignored and every batch carries [`StreamState::full_refresh`], from which the
//!   framework detects deletions.
//! - **Primary key**: defaults to the table's. Views, queries and tables without one must set
//!   `primary_key`; its columns must identify a row and never be NULL (a NULL is an error).
//! - **Types** (see each connector for its server's list): integers → `Int`; exact decimals
//!   → `Decimal` with the server's exact text; floats → `Float`; booleans → `Bool`; text,
//!   enums, UUIDs, times of day, intervals → `Text`; dates → `DateTime` at 00:00 UTC;
//!   timestamps → `DateTime` in UTC (without time zone: taken as UTC); JSON → `Json`; arrays →
//!   `Json` arrays. Values the model cannot hold (PostgreSQL `infinity`, MySQL zero dates)
//!   are `Null`. Types that cannot be mapped (binary data, spatial types, full-text vectors,
//!   unknown types) are listed with [`FieldInfo::unsupported`] set, are never read, and a
//!   mapping that uses one is refused; a `query` can convert them (`encode(col, 'hex')`).
//! - **SQL**: table, column and schema names are checked against the catalog and always
//!   quoted; values are always bound as parameters. A `query` must be a single `SELECT` (or
//!   `WITH ... SELECT`) without `;` or parameters; it runs as a subquery in a read-only
//!   transaction, so it cannot write.
//! - **Errors**: a missing table or column, an invalid query or a wrong user or password is a
//!   config error naming the stream (and listing what exists); connection refused, reset or
//!   timed out, a restarting server and cancelled statements are retryable source errors.
//! - **One connection** per source, kept from query to query and never pinged: when the
//!   server has ended it meanwhile, the query runs once more on a new connection
//!   ([`KeptConnection`]).
//!
//! [`KeysetState`]: dossier_connector::keyset::KeysetState
//! [`StreamState::full_refresh`]: dossier_connector::StreamState::full_refresh
//! [`FieldInfo::unsupported`]: dossier_connector::FieldInfo

mod catalog;
mod cell;
mod config;
mod dialect;
mod error;
mod kept;
mod read;
mod sql;

use std::sync::Arc;

use dossier_connector::{
    BatchStream, Catalog, Connector, ConnectorError, Problem, ReadRequest, StreamInfo,
    problems_per_stream,
};

pub use cell::{Cell, hex};
pub use config::{Config, Endpoint, MAX_BATCH_SIZE, ServerOptions, SourceConfig, Stream, TlsMode};
pub use dialect::{Column, Dialect, Kind, RawColumn, Wire, decode_row, expanded_after, to_value};
pub use dossier_core::redact_url;
pub use error::{DbError, ErrorClass, connect_error, driver_error_class, error, refuse_parameters};
pub use kept::{Connect, KeptConnection, connect_within};
pub use sql::{Binder, Placeholders};
// For `server_options!`, whose expansion names sqlx's error type from the caller's crate.
#[doc(hidden)]
pub use sqlx;

/// The server-specific half of a SQL connector.
#[async_trait::async_trait]
pub trait Driver: Send + Sync + Sized + 'static {
    /// The connector's name in configs (`connector = "postgres"`).
    const NAME: &'static str;
    const VERSION: &'static str;

    /// The connection settings ([`Config`] for servers).
    type Config: SourceConfig;

    /// Connects (checking the server answers and the credentials work).
    async fn connect(config: &Self::Config) -> Result<Self, ConnectorError>;

    fn dialect(&self) -> &dyn Dialect;

    /// Where the source is, for messages: `user@host:port/database`, never the password.
    fn target(&self) -> &str;

    /// The schemas read when the config sets none.
    fn default_schemas(&self) -> Result<Vec<String>, ConnectorError>;

    /// Runs one statement, with parameters, in its own read-only transaction; decodes each
    /// column of the result as `wires` says.
    async fn fetch(
        &self,
        sql: String,
        params: Vec<Cell>,
        wires: &[Wire],
    ) -> Result<Vec<Vec<Cell>>, DbError>;

    /// The columns a `SELECT` returns, without running it. Refuses statements with
    /// parameters (class [`ErrorClass::Invalid`]).
    async fn describe(&self, sql: String) -> Result<Vec<RawColumn>, DbError>;
}

/// A SQL source connector: discovery, checks and keyset reads over a [`Driver`].
pub struct SqlConnector<D> {
    driver: D,
    schemas: Vec<String>,
}

impl<D: Driver> std::fmt::Debug for SqlConnector<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlConnector")
            .field("connector", &D::NAME)
            .field("target", &self.driver.target())
            .field("schemas", &self.schemas)
            .finish()
    }
}

impl<D: Driver> SqlConnector<D> {
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// The schemas discovered and readable, the default one first.
    pub fn schemas(&self) -> &[String] {
        &self.schemas
    }
}

#[async_trait::async_trait]
impl<D: Driver> Connector for SqlConnector<D> {
    type Config = D::Config;
    type Stream = Stream;

    const NAME: &'static str = D::NAME;
    const VERSION: &'static str = D::VERSION;

    async fn connect(config: D::Config) -> Result<Self, ConnectorError> {
        config.validate()?;
        let driver = D::connect(&config).await?;
        let schemas = match config.schemas() {
            Some(s) => s.to_vec(),
            None => driver.default_schemas()?,
        };
        Ok(Self { driver, schemas })
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
