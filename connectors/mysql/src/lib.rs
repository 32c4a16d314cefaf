//! MySQL and MariaDB source connector for Dossier.
//!
//! Reads tables, views and `SELECT` queries of MySQL (8.0+) and MariaDB (10.4+) databases;
//! the shared rules (keyset reads, checkpoints, NULL cursors, full refresh, errors) are those
//! of [`dossier_sql_source`].
//!
//! ```toml
//! [[sources]]
//! name = "sakila"
//! connector = "mysql"
//! config = { url = "mysql://dossier@db.internal:3306/sakila", password_env = "SAKILA_PASSWORD" }
//!
//! [[sources.streams]]
//! name = "customer"
//! read = { table = "customer", cursor = "last_update" }
//! ```
//!
//! # MySQL and MariaDB specifics
//!
//! - **Schemas** are databases: the connection's database unless `schemas` says otherwise
//!   (then the URL needs no database).
//! - **Session**: every connection sets `time_zone = '+00:00'` (so `TIMESTAMP` values come
//!   back in UTC), `NAMES utf8mb4`, `TRANSACTION READ ONLY` and, unless disabled, the
//!   statement timeout (`max_statement_time` on MariaDB, `max_execution_time` on MySQL); the
//!   server's `sql_mode` is kept. Every batch is read in a `START TRANSACTION READ ONLY`
//!   transaction.
//! - **Types**: integer types and `YEAR` → `Int`; `BIGINT UNSIGNED` (and `BIT(n)`) → `Int`,
//!   or an exact `Decimal` beyond `i64`; `TINYINT(1)`/`BOOLEAN` and `BIT(1)` → `Bool`;
//!   `DECIMAL` (read as text, exact) → `Decimal`; `FLOAT`/`DOUBLE` → `Float`; `CHAR`,
//!   `VARCHAR`, `TEXT` types, `ENUM`, `SET`, `TIME`, MariaDB `UUID`/`INET4`/`INET6` → `Text`;
//!   `DATE` → `DateTime` at 00:00 UTC; `TIMESTAMP` → `DateTime` (UTC, converted by the
//!   server); `DATETIME` has no time zone and is **taken as UTC**; zero dates (`0000-00-00`)
//!   → `Null`; `JSON` → `Json`, including MariaDB's `JSON`, a `LONGTEXT` with a
//!   `JSON_VALID` check (recognized in tables; in a `query` it reads as text). Binary
//!   (`BINARY`, `VARBINARY`, `BLOB` types) and spatial types are unsupported: listed, never
//!   read.
//! - **Keysets** are spelled out as `c >= ? AND (c > ? OR (c = ? AND pk > ?))` rather than
//!   as a row-value comparison, which older optimizers do not serve from an index; parameters
//!   are cast to the column's type so that no comparison falls back to doubles.

use std::str::FromStr as _;

use dossier_connector::ConnectorError;
use dossier_sql_source::{
    Binder, Cell, Column, Connect, DbError, Dialect, Driver, ErrorClass, KeptConnection, Kind,
    Placeholders, RawColumn, SqlConnector, Wire, connect_error, connect_within, expanded_after,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlSslMode};
use sqlx::{AssertSqlSafe, Column as _, Connection as _, Executor as _, TypeInfo as _};

pub use dossier_sql_source::{Config, Stream, TlsMode};

/// The MySQL/MariaDB connector: [`SqlConnector`] over [`MySql`].
pub type MySqlConnector = SqlConnector<MySql>;

const DEFAULT_PORT: u16 = 3306;

/// A connection to one MySQL or MariaDB server.
pub struct MySql {
    /// The one connection the source reads on (see [`KeptConnection`]).
    conn: KeptConnection<MySqlConnection>,
    target: String,
    database: Option<String>,
    dialect: MySqlDialect,
}

impl std::fmt::Debug for MySql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySql")
            .field("target", &self.target)
            .field("mariadb", &self.dialect.mariadb)
            .finish()
    }
}

impl MySql {
    /// Whether the server is MariaDB.
    pub fn is_mariadb(&self) -> bool {
        self.dialect.mariadb
    }
}

/// MySQL's and MariaDB's SQL.
#[derive(Debug, Clone, Copy, Default)]
pub struct MySqlDialect {
    /// MariaDB stores `JSON` as `LONGTEXT` with a `JSON_VALID` check constraint.
    pub mariadb: bool,
}

const BINARY: &[&str] = &[
    "binary",
    "varbinary",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
];
const SPATIAL: &[&str] = &[
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "geomcollection",
];

impl Dialect for MySqlDialect {
    fn quote(&self, ident: &str) -> String {
        format!("`{}`", ident.replace('`', "``"))
    }

    fn placeholders(&self) -> Placeholders {
        Placeholders::Question
    }

    fn tables_sql(&self, schemas: &[String], b: &mut Binder) -> String {
        format!(
            "SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(TABLE_NAME AS CHAR), \
                    CAST(CASE TABLE_TYPE WHEN 'VIEW' THEN 'view' ELSE 'table' END AS CHAR) \
             FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA IN ({}) \
               AND TABLE_TYPE IN ('BASE TABLE', 'VIEW', 'SYSTEM VERSIONED') \
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
        let filter = b.catalog_filter("c.TABLE_SCHEMA", "c.TABLE_NAME", schemas, table);
        let class = if self.mariadb {
            "CASE WHEN EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS cc \
                               WHERE cc.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA \
                                 AND cc.TABLE_NAME = c.TABLE_NAME \
                                 AND cc.CHECK_CLAUSE = CONCAT('json_valid(`', c.COLUMN_NAME, '`)')) \
                  THEN 'json' ELSE c.DATA_TYPE END"
        } else {
            "c.DATA_TYPE"
        };
        format!(
            "SELECT CAST(c.TABLE_SCHEMA AS CHAR), CAST(c.TABLE_NAME AS CHAR), \
                    CAST(c.COLUMN_NAME AS CHAR), CAST(c.ORDINAL_POSITION AS SIGNED), \
                    CAST(c.COLUMN_TYPE AS CHAR), CAST(LOWER({class}) AS CHAR), \
                    CAST(c.IS_NULLABLE = 'YES' AS SIGNED), \
                    CAST(COALESCE(k.SEQ_IN_INDEX, 0) AS SIGNED), \
                    CAST(c.EXTRA LIKE '%auto_increment%' AS SIGNED) \
             FROM information_schema.COLUMNS c \
             LEFT JOIN information_schema.STATISTICS k \
               ON k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME \
              AND k.COLUMN_NAME = c.COLUMN_NAME AND k.INDEX_NAME = 'PRIMARY' \
             WHERE {filter} \
             ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION"
        )
    }

    fn classify(&self, class: &str, display: &str) -> (Kind, String) {
        let display = display.to_ascii_lowercase();
        let unsigned = display.contains("unsigned");
        let (kind, cast) = match class {
            "tinyint" if display.starts_with("tinyint(1)") => (Kind::Bool, "SIGNED"),
            "bit" if display == "bit(1)" => (Kind::Bool, "UNSIGNED"),
            "bit" => (Kind::BigUnsigned, "UNSIGNED"),
            "bigint" if unsigned => (Kind::BigUnsigned, "UNSIGNED"),
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
                (Kind::Int, "SIGNED")
            }
            "decimal" | "numeric" | "dec" | "fixed" => {
                // The column's own precision, so a bound value compares exactly.
                let cast = match (display.find('('), display.find(')')) {
                    (Some(open), Some(close)) if open < close => {
                        format!("DECIMAL{}", &display[open..=close])
                    }
                    _ => "DECIMAL(65,30)".to_string(),
                };
                return (Kind::Decimal, cast);
            }
            "float" | "double" | "real" | "double precision" => (Kind::Float, "DOUBLE"),
            "date" => (Kind::Date, "DATE"),
            "datetime" | "timestamp" => (Kind::Timestamp, "DATETIME(6)"),
            "time" => (Kind::Text, "TIME(6)"),
            "json" => (Kind::Json, ""),
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" | "uuid" | "inet4" | "inet6" => (Kind::Text, ""),
            c if BINARY.contains(&c) => (Kind::not_read("binary data", "HEX(col)"), ""),
            c if SPATIAL.contains(&c) => (Kind::not_read("spatial data", "ST_AsGeoJSON(col)"), ""),
            _ => (
                Kind::Unsupported(format!(
                    "type {display} is not supported; to map it, read it through a `query` \
                     that converts it, e.g. CAST(col AS CHAR)"
                )),
                "",
            ),
        };
        (kind, cast.to_string())
    }

    fn wire(&self, kind: &Kind) -> Wire {
        match kind {
            Kind::Int | Kind::Bool => Wire::Int,
            Kind::Float => Wire::Float,
            _ => Wire::Text,
        }
    }

    fn select_expr(&self, c: &str, column: &Column) -> String {
        match &column.kind {
            Kind::Int | Kind::Bool => format!("CAST({c} AS SIGNED)"),
            Kind::BigUnsigned if column.class == "bit" => {
                format!("CAST(CAST({c} AS UNSIGNED) AS CHAR)")
            }
            Kind::Float => format!("CAST({c} AS DOUBLE)"),
            Kind::Date => format!("DATE_FORMAT({c}, '%Y-%m-%d')"),
            Kind::Timestamp => format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')"),
            _ => format!("CAST({c} AS CHAR)"),
        }
    }

    fn param_expr(&self, placeholder: String, column: &Column) -> String {
        if column.cast.is_empty() {
            placeholder
        } else {
            format!("CAST({placeholder} AS {})", column.cast)
        }
    }

    fn after(&self, keys: &[(&str, &Column, &Cell)], b: &mut Binder) -> String {
        expanded_after(self, keys, b)
    }
}

/// Classifies a MySQL/MariaDB error by its number
/// (<https://mariadb.com/kb/en/mariadb-error-code-reference/>).
fn classify(e: sqlx::Error) -> DbError {
    use ErrorClass::*;
    let class = match &e {
        sqlx::Error::Database(db) => {
            let number = db
                .try_downcast_ref::<MySqlDatabaseError>()
                .map_or(0, MySqlDatabaseError::number);
            let class = match number {
                // Access denied, account locked, expired password, unknown auth plugin.
                1044 | 1045 | 1251 | 1698 | 1862 | 3118 | 4151 => Auth,
                1049 => UnknownDatabase,
                // No such table, column, function; a view over something gone.
                1054 | 1146 | 1305 | 1356 => Undefined,
                // Command denied for the table or column, or needing a privilege.
                1142 | 1143 | 1227 => Permission,
                // Syntax, duplicate column names, derived table trouble, a write in a
                // read-only transaction.
                1060 | 1064 | 1248 | 1149 | 1792 => Invalid,
                // The connection killed or timed out by the server, the server gone away or
                // shutting down.
                1053 | 1927 | 2006 | 2013 | 4031 => ConnectionLost,
                // Too many connections, shutdown, lock timeouts, deadlocks, interrupted or
                // killed statements, statement timeouts, network trouble.
                1040 | 1077 | 1152 | 1153 | 1158..=1161 | 1205 | 1213 | 1317 | 1969 | 3024 => {
                    Transient
                }
                _ => Other,
            };
            return DbError::new(class, db.message());
        }
        other => dossier_sql_source::driver_error_class(other),
    };
    DbError::new(class, e.to_string())
}

/// Sets the session up as every connection needs it (see the crate's doc).
async fn set_session(conn: &mut MySqlConnection, session: &[String]) -> Result<(), sqlx::Error> {
    for statement in session {
        conn.execute(AssertSqlSafe(statement.clone())).await?;
    }
    Ok(())
}

/// A query column's (class, display) from the type the server describes it with.
fn query_type(name: &str) -> (String, String) {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "boolean" => ("tinyint".into(), "tinyint(1)".into()),
        _ => (
            lower.split(' ').next().unwrap_or_default().to_string(),
            lower.clone(),
        ),
    }
}

dossier_sql_source::server_options! {
    MySql => MySqlConnectOptions {
        name: "MySQL",
        schemes: ["mysql://", "mariadb://"],
        default_port: DEFAULT_PORT,
        // sqlx knows MariaDB's URLs only by MySQL's scheme.
        parse_url: |url| MySqlConnectOptions::from_str(&url.replacen("mariadb://", "mysql://", 1)),
        new: MySqlConnectOptions::new(),
        tls: MySqlSslMode { Disabled, Preferred, Required },
    }
}

impl MySql {
    fn options(config: &Config) -> Result<MySqlConnectOptions, ConnectorError> {
        let options = config.server_options::<MySql>()?;
        // User queries are written for the server's own sql_mode; TIMESTAMPs come back in UTC.
        Ok(options
            .pipes_as_concat(false)
            .no_engine_substitution(false)
            .timezone(Some("+00:00".to_string())))
    }
}

#[async_trait::async_trait]
impl Driver for MySql {
    const NAME: &'static str = "mysql";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    type Config = Config;

    async fn connect(config: &Config) -> Result<Self, ConnectorError> {
        let options = Self::options(config)?;
        let user = options.get_username().to_string();
        let database = options.get_database().map(str::to_string);
        let target = format!(
            "{user}@{}:{}/{}",
            options.get_host(),
            options.get_port(),
            database.as_deref().unwrap_or_default()
        );
        let timeout = config.connect_timeout();
        // A direct connection, not a pool: a pool would retry a refused connection until its
        // timeout and report only that it timed out.
        let mut conn = connect_within(MySqlConnection::connect_with(&options), timeout, classify)
            .await
            .map_err(|e| connect_error("mysql", &target, &user, e))?;
        let connect_failed = |e| connect_error("mysql", &target, &user, classify(e));
        let version: String = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
            .fetch_one(&mut conn)
            .await
            .map_err(connect_failed)?;
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        let mut session = vec!["SET SESSION TRANSACTION READ ONLY".to_string()];
        if let Some(t) = config.statement_timeout() {
            session.push(if mariadb {
                format!("SET SESSION max_statement_time = {}", t.as_secs())
            } else {
                format!("SET SESSION max_execution_time = {}", t.as_millis())
            });
        }
        set_session(&mut conn, &session)
            .await
            .map_err(connect_failed)?;
        let reconnect: Connect<MySqlConnection> = Box::new(move || {
            let (options, session) = (options.clone(), session.clone());
            Box::pin(async move {
                let mut conn =
                    connect_within(MySqlConnection::connect_with(&options), timeout, classify)
                        .await?;
                set_session(&mut conn, &session).await.map_err(classify)?;
                Ok(conn)
            })
        });
        Ok(Self {
            conn: KeptConnection::new(conn, reconnect, classify, format!("mysql at {target}")),
            target,
            database,
            dialect: MySqlDialect { mariadb },
        })
    }

    fn dialect(&self) -> &dyn Dialect {
        &self.dialect
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn default_schemas(&self) -> Result<Vec<String>, ConnectorError> {
        match &self.database {
            Some(db) if !db.is_empty() => Ok(vec![db.clone()]),
            _ => Err(ConnectorError::config(format!(
                "the connection to {} names no database; set one in `url` (or `database`), \
                 or list the databases to read in `schemas`",
                self.target
            ))),
        }
    }

    async fn fetch(
        &self,
        sql: String,
        params: Vec<Cell>,
        wires: &[Wire],
    ) -> Result<Vec<Vec<Cell>>, DbError> {
        self.conn
            .fetch(self.dialect.begin_read_only(), &sql, &params, wires)
            .await
    }

    async fn describe(&self, sql: String) -> Result<Vec<RawColumn>, DbError> {
        let columns = self
            .conn
            .describe(&sql, "`?`", |c| {
                (c.name().to_string(), c.type_info().name().to_string())
            })
            .await?;
        Ok(columns
            .into_iter()
            .map(|(name, type_name)| {
                let (class, display) = query_type(&type_name);
                RawColumn {
                    name,
                    display,
                    class,
                    nullable: None,
                    pk_position: 0,
                    auto_increment: false,
                }
            })
            .collect())
    }
}
