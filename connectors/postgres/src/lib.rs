//! PostgreSQL source connector for Dossier.
//!
//! Reads tables, views and `SELECT` queries of one PostgreSQL database; the shared rules
//! (keyset reads, checkpoints, NULL cursors, full refresh, errors) are those of
//! [`dossier_sql_source`].
//!
//! ```toml
//! [[sources]]
//! name = "pagila"
//! connector = "postgres"
//! config = { url = "postgres://dossier@db.internal:5432/pagila", password_env = "PAGILA_PASSWORD", tls = "require" }
//!
//! [[sources.streams]]
//! name = "customer"
//! read = { table = "customer", cursor = "last_update" }
//!
//! [[sources.streams]]
//! name = "payment"
//! read = { table = "payment", cursor = "payment_date" }   # a partitioned table: its partitions are read
//! ```
//!
//! # PostgreSQL specifics
//!
//! - **Schemas**: `public` unless `schemas` says otherwise. Discovery lists tables,
//!   partitioned tables (their partitions are not listed separately), views, materialized
//!   views and foreign tables.
//! - **Session**: every connection sets `TimeZone=UTC`, `DateStyle=ISO`,
//!   `default_transaction_read_only=on`, `application_name=dossier` and, unless disabled,
//!   `statement_timeout`; every batch is read in a `START TRANSACTION READ ONLY` transaction.
//! - **Types**: `smallint`/`integer`/`bigint`/`oid` → `Int`; `numeric` (read as text, exact)
//!   and `money` → `Decimal`; `real`/`double precision` → `Float`; `boolean` → `Bool`; `text`,
//!   `varchar`, `char`, `name`, `citext`, `uuid`, enums, `time`, `timetz`, `interval`,
//!   `inet`, `cidr`, `macaddr`, `xml`, `bit` → `Text`; `date` → `DateTime` at 00:00 UTC;
//!   `timestamp` (taken as UTC) and `timestamptz` → `DateTime` in UTC (`±infinity` → `Null`);
//!   `json`/`jsonb` → `Json`; arrays → `Json` arrays. Domains follow their base type.
//!   `bytea`, `tsvector`, `tsquery`, geometric and PostGIS types and other types are
//!   unsupported: listed, never read.
//! - **Keysets** compare the raw columns with `(cursor, pk) > (CAST($1 AS <column type>),
//!   ...)`, so an index on `(cursor, pk)` or on the cursor serves every page.

use std::str::FromStr as _;

use dossier_connector::ConnectorError;
use dossier_sql_source::{
    Binder, Cell, Column, Connect, DbError, Dialect, Driver, ErrorClass, KeptConnection, Kind,
    Placeholders, RawColumn, SqlConnector, Wire, connect_error, connect_within,
};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{Column as _, Connection as _};

pub use dossier_sql_source::{Config, Stream, TlsMode};

/// The PostgreSQL connector: [`SqlConnector`] over [`Postgres`].
pub type PostgresConnector = SqlConnector<Postgres>;

const DEFAULT_PORT: u16 = 5432;

/// A connection to one PostgreSQL database.
pub struct Postgres {
    /// The one connection the source reads on (see [`KeptConnection`]).
    conn: KeptConnection<PgConnection>,
    target: String,
    dialect: PgDialect,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("target", &self.target)
            .finish()
    }
}

/// PostgreSQL's SQL.
#[derive(Debug, Clone, Copy, Default)]
pub struct PgDialect;

/// The relation kinds a stream may read: tables, partitioned tables, views, materialized
/// views, foreign tables. Partitions are read through their parent.
const RELATIONS: &str = "c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition";

/// A column's class: `array`, `enum`, else the name of its (domain's base) type.
const CLASS: &str = "CASE WHEN t.typcategory = 'A' THEN 'array' WHEN b.typtype = 'e' THEN 'enum' \
                     ELSE b.typname::text END";

impl Dialect for PgDialect {
    fn placeholders(&self) -> Placeholders {
        Placeholders::Dollar
    }

    fn tables_sql(&self, schemas: &[String], b: &mut Binder) -> String {
        format!(
            "SELECT n.nspname::text, c.relname::text, \
                    CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' \
                                   WHEN 'f' THEN 'foreign table' ELSE 'table' END \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE {RELATIONS} AND n.nspname IN ({}) \
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
        let filter = b.catalog_filter("n.nspname", "c.relname", schemas, table);
        format!(
            "SELECT n.nspname::text, c.relname::text, a.attname::text, a.attnum::int8, \
                    format_type(a.atttypid, a.atttypmod), {CLASS}, \
                    (CASE WHEN a.attnotnull THEN 0 ELSE 1 END)::int8, \
                    COALESCE(array_position(i.indkey::int2[], a.attnum) \
                             - array_lower(i.indkey::int2[], 1) + 1, 0)::int8, \
                    (CASE WHEN a.attidentity <> '' \
                            OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%' \
                          THEN 1 ELSE 0 END)::int8 \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             JOIN pg_catalog.pg_type b \
               ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
             LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary \
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
             WHERE a.attnum > 0 AND NOT a.attisdropped AND {RELATIONS} AND {filter} \
             ORDER BY 1, 2, 4"
        )
    }

    fn classify(&self, class: &str, display: &str) -> (Kind, String) {
        let kind = match class {
            "int2" | "int4" | "int8" | "oid" => Kind::Int,
            "float4" | "float8" => Kind::Float,
            "numeric" | "money" => Kind::Decimal,
            "bool" => Kind::Bool,
            "date" => Kind::Date,
            "timestamp" => Kind::Timestamp,
            "timestamptz" => Kind::TimestampTz,
            "json" | "jsonb" | "array" => Kind::Json,
            "text" | "varchar" | "bpchar" | "char" | "name" | "citext" | "uuid" | "enum"
            | "time" | "timetz" | "interval" | "inet" | "cidr" | "macaddr" | "macaddr8" | "xml"
            | "bit" | "varbit" => Kind::Text,
            "bytea" => Kind::not_read("binary data", "encode(col, 'hex')"),
            "tsvector" | "tsquery" => Kind::Unsupported(
                "full-text search vectors are not read; map the text they are made from".into(),
            ),
            "point" | "line" | "lseg" | "box" | "path" | "polygon" | "circle" | "geometry"
            | "geography" => Kind::not_read("spatial data", "col::text or ST_AsGeoJSON(col)"),
            _ => Kind::Unsupported(format!(
                "type {display} is not supported; to map it, read it through a `query` that \
                 casts it, e.g. col::text"
            )),
        };
        (kind, display.to_string())
    }

    fn select_expr(&self, c: &str, column: &Column) -> String {
        match (&column.kind, column.class.as_str()) {
            (Kind::Int, _) => format!("{c}::int8"),
            (Kind::Float, _) => format!("{c}::float8"),
            // The cast also unwraps domains, which the driver would not decode as their base.
            (Kind::Bool, _) => format!("{c}::bool"),
            (Kind::Decimal, "money") => format!("{c}::numeric::text"),
            (Kind::Json, "array") => format!("to_json({c})::text"),
            _ => format!("{c}::text"),
        }
    }

    fn param_expr(&self, placeholder: String, column: &Column) -> String {
        format!("CAST({placeholder} AS {})", column.cast)
    }
}

/// Classifies a PostgreSQL error by its SQLSTATE
/// (<https://www.postgresql.org/docs/current/errcodes-appendix.html>).
fn classify(e: sqlx::Error) -> DbError {
    use ErrorClass::*;
    let class = match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let class = match code.as_str() {
                "28000" | "28P01" => Auth,
                "3D000" => UnknownDatabase,
                "42P01" | "42703" | "42883" | "42704" | "3F000" => Undefined,
                "42501" => Permission,
                // Read-only transaction violations and unsupported features: the query's fault.
                c if c.starts_with("42") || c == "25006" || c == "0A000" => Invalid,
                // Connection exceptions; the backend terminated by an administrator or a
                // crash of another backend.
                c if c.starts_with("08") || c == "57P01" || c == "57P02" => ConnectionLost,
                // Insufficient resources, operator intervention (shutdown, statement
                // timeout), serialization failures, lock timeouts, a database not accepting
                // connections, system errors.
                c if ["53", "57", "40", "58"].iter().any(|p| c.starts_with(p))
                    || c == "55000"
                    || c == "55P03" =>
                {
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

dossier_sql_source::server_options! {
    Postgres => PgConnectOptions {
        name: "PostgreSQL",
        schemes: ["postgres://", "postgresql://"],
        default_port: DEFAULT_PORT,
        parse_url: |url| PgConnectOptions::from_str(url),
        // Without pgpass: a password comes from the config alone.
        new: PgConnectOptions::new_without_pgpass(),
        tls: PgSslMode { Disable, Prefer, Require },
    }
}

impl Postgres {
    fn options(config: &Config) -> Result<PgConnectOptions, ConnectorError> {
        let options = config.server_options::<Postgres>()?;
        let mut settings = vec![("default_transaction_read_only", "on".to_string())];
        if let Some(t) = config.statement_timeout() {
            settings.push(("statement_timeout", format!("{}ms", t.as_millis())));
        }
        Ok(options.application_name("dossier").options(settings))
    }
}

#[async_trait::async_trait]
impl Driver for Postgres {
    const NAME: &'static str = "postgres";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    type Config = Config;

    async fn connect(config: &Config) -> Result<Self, ConnectorError> {
        let options = Self::options(config)?;
        let user = options.get_username().to_string();
        let target = format!(
            "{user}@{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(&user)
        );
        let timeout = config.connect_timeout();
        // A direct connection, not a pool: a pool would retry a refused connection until its
        // timeout and report only that it timed out.
        let conn = connect_within(PgConnection::connect_with(&options), timeout, classify)
            .await
            .map_err(|e| connect_error("postgres", &target, &user, e))?;
        let reconnect: Connect<PgConnection> = Box::new(move || {
            let options = options.clone();
            Box::pin(async move {
                connect_within(PgConnection::connect_with(&options), timeout, classify).await
            })
        });
        Ok(Self {
            conn: KeptConnection::new(conn, reconnect, classify, format!("postgres at {target}")),
            target,
            dialect: PgDialect,
        })
    }

    fn dialect(&self) -> &dyn Dialect {
        &self.dialect
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn default_schemas(&self) -> Result<Vec<String>, ConnectorError> {
        Ok(vec!["public".to_string()])
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
            .describe(&sql, "$1...", |c| {
                (
                    c.name().to_string(),
                    sqlx::Column::type_info(c).oid().map(|o| o.0),
                )
            })
            .await?;
        let (names, oids): (Vec<String>, Vec<Option<u32>>) = columns.into_iter().unzip();
        let known: Vec<String> = oids.iter().flatten().map(u32::to_string).collect();
        // Unbounded spellings: `character` alone would be char(1), and `bit` bit(1).
        let rows = self
            .fetch(
                format!(
                    "SELECT t.oid::int8, \
                            CASE b.typname WHEN 'bpchar' THEN 'bpchar' WHEN 'bit' THEN 'varbit' \
                                 ELSE format_type(t.oid, NULL) END, \
                            {CLASS} \
                     FROM pg_catalog.pg_type t \
                     JOIN pg_catalog.pg_type b \
                       ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
                     WHERE t.oid = ANY(CAST($1 AS oid[]))"
                ),
                vec![Cell::Text(format!("{{{}}}", known.join(",")))],
                &[Wire::Int, Wire::Text, Wire::Text],
            )
            .await?;
        let types: std::collections::HashMap<i64, (String, String)> = rows
            .into_iter()
            .filter_map(|r| {
                let mut r = r.into_iter();
                match (r.next(), r.next(), r.next()) {
                    (Some(Cell::Int(oid)), Some(Cell::Text(display)), Some(Cell::Text(class))) => {
                        Some((oid, (display, class)))
                    }
                    _ => None,
                }
            })
            .collect();
        Ok(names
            .into_iter()
            .zip(oids)
            .map(|(name, oid)| {
                let (display, class) = oid
                    .and_then(|o| types.get(&i64::from(o)).cloned())
                    .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
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
