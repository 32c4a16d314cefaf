//! SQLite source connector for Dossier.
//!
//! Reads tables, views or `SELECT` queries of one SQLite file, opened read-only. The shared
//! rules (keyset reads, checkpoints, NULL cursors, full refresh, queries, errors) are those of
//! [`dossier_sql_source`]; this crate is its SQLite [`Driver`] and [`Dialect`].
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
//! # SQLite specifics
//!
//! - **Values** are converted by the storage class of each value, not the declared column type
//!   ([`Kind::Any`]): NULL → `Null`, INTEGER → `Int`, REAL → `Float`, TEXT → `Text` (invalid
//!   UTF-8 replaced), BLOB → `Text` holding the bytes as lowercase hex. Booleans are integers
//!   (map them with the `boolean` transform) and dates are whatever the file holds (map text or
//!   epoch seconds with the `datetime` transform). Every field is mappable. Checkpoint values
//!   are bound back with the storage class they were read with (a BLOB key is kept as
//!   `{"blob_hex": "..."}`).
//! - **Keys**: a declared primary key may hold NULLs in SQLite; NULL sorts before every value,
//!   and so does the checkpoint. `rowid` is not used: it is not a column of `SELECT *` and
//!   `VACUUM` may change it. An `INTEGER PRIMARY KEY` of a rowid table (an alias of the rowid,
//!   which grows with inserts) is a cursor candidate.
//! - **Schema**: `main`; SQLite's own and shadow tables are not listed, and a table whose
//!   columns cannot be read (a view over a dropped table) is skipped by discovery. A query
//!   that returns a column name twice gets it renamed by SQLite (`id`, `id:1`).
//! - The file is opened read-only, never created, with `query_only` set: no statement can
//!   write to it. Each page is one statement, which SQLite runs on one consistent snapshot.
//! - **Errors**: a missing file, table or column, or an invalid query, is a config error;
//!   busy, locked and I/O errors are retryable source errors; other SQLite errors are source
//!   errors that retrying does not fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dossier_connector::ConnectorError;
use dossier_sql_source::{
    Binder, Cell, Column, DbError, Dialect, Driver, ErrorClass, Kind, Placeholders, RawColumn,
    SourceConfig, SqlConnector, Wire, error, refuse_parameters,
};
use futures::TryStreamExt as _;
use schemars::JsonSchema;
use serde::Deserialize;
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{
    AssertSqlSafe, Column as _, Executor as _, Row as _, SqlSafeStr as _, Statement as _,
    TypeInfo as _, ValueRef as _,
};

pub use dossier_sql_source::Stream;

/// The SQLite connector: [`SqlConnector`] over [`SqliteFile`].
pub type SqliteConnector = SqlConnector<SqliteFile>;

/// Connection settings of a SQLite source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The SQLite database file to read. It is opened read-only and never created.
    pub path: PathBuf,
}

impl SourceConfig for Config {}

/// One SQLite file, opened read-only.
#[derive(Debug)]
pub struct SqliteFile {
    pool: SqlitePool,
    path: PathBuf,
    target: String,
}

impl SqliteFile {
    /// The database file this connector reads.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// SQLite's SQL.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteDialect;

/// The tables and views of the listed schemas, without SQLite's own and shadow tables.
const TABLES: &str = r"t.type IN ('table', 'view', 'virtual')
    AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\'";

impl Dialect for SqliteDialect {
    fn placeholders(&self) -> Placeholders {
        Placeholders::Question
    }

    fn tables_sql(&self, schemas: &[String], b: &mut Binder) -> String {
        format!(
            "SELECT t.schema, t.name, CASE t.type WHEN 'view' THEN 'view' ELSE 'table' END \
             FROM pragma_table_list t \
             WHERE {TABLES} AND t.schema IN ({}) \
             ORDER BY 1, 2",
            b.bind_list(schemas)
        )
    }

    fn columns_sql(
        &self,
        schemas: &[String],
        table: Option<(&str, &str)>,
        b: &mut Binder,
    ) -> String {
        let filter = b.catalog_filter("t.schema", "t.name", schemas, table);
        // The columns `SELECT *` returns: generated columns included (hidden 2 and 3), hidden
        // columns of virtual tables not. The one column of an `INTEGER PRIMARY KEY` of a rowid
        // table is an alias of the rowid, which SQLite fills.
        format!(
            "SELECT t.schema, t.name, c.name, c.cid, \
                    CASE c.type WHEN '' THEN 'ANY' ELSE c.type END, c.type, \
                    CASE WHEN c.\"notnull\" THEN 0 ELSE 1 END, c.pk, \
                    CASE WHEN c.pk = 1 AND t.type = 'table' AND NOT t.wr \
                              AND lower(c.type) = 'integer' \
                              AND (SELECT count(*) FROM pragma_table_xinfo(t.name, t.schema) k \
                                   WHERE k.pk > 0) = 1 \
                         THEN 1 ELSE 0 END \
             FROM pragma_table_list t \
             JOIN pragma_table_xinfo(t.name, t.schema) c \
             WHERE {TABLES} AND c.hidden IN (0, 2, 3) AND {filter} \
             ORDER BY 1, 2, 4"
        )
    }

    fn classify(&self, _class: &str, _display: &str) -> (Kind, String) {
        (Kind::Any, String::new())
    }

    fn select_expr(&self, column_sql: &str, _column: &Column) -> String {
        column_sql.to_string()
    }

    fn param_expr(&self, placeholder: String, _column: &Column) -> String {
        placeholder
    }

    fn nulls_in_keys(&self) -> bool {
        true
    }

    fn primary_key_term(&self) -> &'static str {
        "declared primary key"
    }

    fn counts_null_cursors(&self) -> bool {
        true
    }

    fn columns_per_table(&self) -> bool {
        true
    }
}

// Primary result codes, https://www.sqlite.org/rescode.html
const SQLITE_ERROR: i32 = 1;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_NOTADB: i32 = 26;

/// Classifies a SQLite error. Busy, locked and I/O errors may pass; a file that is not a
/// database is the config's fault, as are SQL errors and files that cannot be opened while
/// configuring.
fn classify(e: sqlx::Error) -> DbError {
    let class = match &e {
        sqlx::Error::Database(db) => {
            let code = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .unwrap_or(SQLITE_ERROR);
            return match code & 0xff {
                SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR => {
                    DbError::new(ErrorClass::Transient, db.message())
                }
                SQLITE_NOTADB => DbError::new(
                    ErrorClass::UnknownDatabase,
                    format!("the file is not a SQLite database ({})", db.message()),
                ),
                SQLITE_ERROR => DbError::new(ErrorClass::Invalid, db.message()),
                SQLITE_CANTOPEN => DbError::new(ErrorClass::Undefined, db.message()),
                _ => DbError::new(ErrorClass::Other, db.message()),
            };
        }
        other => dossier_sql_source::driver_error_class(other),
    };
    DbError::new(class, e.to_string())
}

/// One value as SQLite stored it: its storage class decides the type, not the column.
fn read_cell(row: &SqliteRow, i: usize) -> Result<Cell, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    // For a non-NULL value this is the value's storage class (`sqlite3_value_type`).
    let class = raw.type_info().name().to_string();
    drop(raw);
    Ok(match class.as_str() {
        "INTEGER" => Cell::Int(row.try_get_unchecked(i)?),
        "REAL" => Cell::Float(row.try_get_unchecked(i)?),
        "TEXT" => {
            // SQLite does not enforce UTF-8; invalid bytes become U+FFFD.
            let bytes: Vec<u8> = row.try_get_unchecked(i)?;
            Cell::Text(
                String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            )
        }
        "BLOB" => Cell::Blob(row.try_get_unchecked(i)?),
        other => {
            return Err(sqlx::Error::Decode(
                format!("unexpected sqlite storage class {other}").into(),
            ));
        }
    })
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, <Sqlite as sqlx::Database>::Arguments>;

/// Binds a value with the storage class it was read with.
fn bind(q: Query<'_>, cell: Cell) -> Query<'_> {
    match cell {
        Cell::Null => q.bind(Option::<i64>::None),
        Cell::Int(i) => q.bind(i),
        Cell::Float(f) => q.bind(f),
        Cell::Bool(b) => q.bind(b),
        Cell::Text(s) => q.bind(s),
        Cell::Blob(b) => q.bind(b),
    }
}

#[async_trait::async_trait]
impl Driver for SqliteFile {
    const NAME: &'static str = "sqlite";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    type Config = Config;

    async fn connect(config: &Config) -> Result<Self, ConnectorError> {
        let path = config.path.clone();
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
            .map_err(|e| {
                error(
                    format!("cannot open sqlite database {shown}"),
                    classify(e),
                    true,
                )
            })?;
        // Opening succeeds on any file; the first read tells whether it is a database.
        sqlx::query("SELECT count(*) FROM sqlite_schema")
            .fetch_one(&pool)
            .await
            .map_err(|e| {
                error(
                    format!("cannot read sqlite database {shown}"),
                    classify(e),
                    true,
                )
            })?;
        let target = shown.to_string();
        Ok(Self { pool, path, target })
    }

    fn dialect(&self) -> &dyn Dialect {
        &SqliteDialect
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn default_schemas(&self) -> Result<Vec<String>, ConnectorError> {
        Ok(vec!["main".to_string()])
    }

    /// Each statement runs alone on a read-only connection: it sees one snapshot, and needs
    /// no transaction around it. Values are decoded by their storage class, whatever `wires`
    /// says, since SQLite's values carry their own type.
    async fn fetch(
        &self,
        sql: String,
        params: Vec<Cell>,
        wires: &[Wire],
    ) -> Result<Vec<Vec<Cell>>, DbError> {
        let query = params
            .into_iter()
            .fold(sqlx::query(AssertSqlSafe(sql)), bind);
        let mut rows = query.fetch(&self.pool);
        let mut out = vec![];
        while let Some(row) = rows.try_next().await.map_err(classify)? {
            let cells = (0..wires.len())
                .map(|i| read_cell(&row, i))
                .collect::<Result<Vec<_>, _>>()
                .map_err(classify)?;
            out.push(cells);
        }
        Ok(out)
    }

    async fn describe(&self, sql: String) -> Result<Vec<RawColumn>, DbError> {
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        let statement = (&mut *conn)
            .prepare(AssertSqlSafe(sql).into_sql_str())
            .await
            .map_err(classify)?;
        let params = statement.parameters().and_then(|p| p.right()).unwrap_or(0);
        refuse_parameters(params, "`?`, `:name`")?;
        Ok(statement
            .columns()
            .iter()
            .map(|column| {
                // The declared type of a column the query takes from a table (as SQLx reads
                // it), else the type of the first value, which is unknown before a row is read.
                let ty = column.type_info().name();
                let display = if ty == "NULL" { "ANY" } else { ty }.to_string();
                RawColumn {
                    name: column.name().to_string(),
                    class: display.clone(),
                    display,
                    nullable: None,
                    pk_position: 0,
                    auto_increment: false,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        let d = SqliteDialect;
        assert_eq!(d.quote("customers"), r#""customers""#);
        assert_eq!(
            d.quote(r#"x"; DROP TABLE customers; --"#),
            r#""x""; DROP TABLE customers; --""#
        );
    }
}
