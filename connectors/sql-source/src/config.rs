//! Connection settings of the PostgreSQL and MySQL connectors; stream settings of every SQL
//! connector.

use std::fmt;
use std::time::Duration;

use dossier_connector::ConnectorError;
use schemars::JsonSchema;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::sql;

pub use dossier_connector::MAX_BATCH_SIZE;

const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
const DEFAULT_STATEMENT_TIMEOUT_SECS: u64 = 300;

/// Whether the connection is encrypted with TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Never use TLS.
    Disable,
    /// Use TLS when the server offers it, else connect without.
    Prefer,
    /// Refuse to connect without TLS.
    Require,
}

/// What [`SqlConnector`](crate::SqlConnector) needs of a driver's connection settings.
pub trait SourceConfig: DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// Checks what needs no server.
    fn validate(&self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// The schemas to read when the settings name them, the default one first.
    fn schemas(&self) -> Option<&[String]> {
        None
    }
}

impl SourceConfig for Config {
    fn validate(&self) -> Result<(), ConnectorError> {
        Config::validate(self)
    }

    fn schemas(&self) -> Option<&[String]> {
        self.schemas.as_deref()
    }
}

/// Connection settings of a SQL source (PostgreSQL, MySQL or MariaDB).
///
/// Either `url`, or `host` with `user` (and `port`, `database`).
#[derive(Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Connection URL: `postgres://user@host:5432/db` or `mysql://user@host:3306/db`. Set
    /// either `url` or `host`. A password written in it works, but shows wherever the config
    /// does: prefer `password_env`.
    pub url: Option<String>,
    /// Server host name or address, instead of `url`.
    pub host: Option<String>,
    /// Server port, with `host`; defaults to 5432 (PostgreSQL) or 3306 (MySQL).
    pub port: Option<u16>,
    /// User to connect as, with `host`.
    pub user: Option<String>,
    /// Database to connect to, with `host`. PostgreSQL defaults to the user's name; MySQL
    /// needs it unless `schemas` is set.
    pub database: Option<String>,
    /// Name of the environment variable holding the password (e.g. `PAGILA_PASSWORD`). The
    /// password is read when connecting and is never logged nor shown.
    pub password_env: Option<String>,
    /// TLS: `disable`, `prefer` or `require`. Defaults to what `url` says, else `prefer`.
    pub tls: Option<TlsMode>,
    /// Seconds to wait for a connection before giving up; default 10.
    pub connect_timeout_secs: Option<u64>,
    /// Longest a statement may run, in seconds, so a read never holds the source for long;
    /// default 300, 0 for no limit.
    pub statement_timeout_secs: Option<u64>,
    /// Schemas (MySQL: databases) whose tables and views are discovered and may be read;
    /// default `public` (PostgreSQL) or the connection's database (MySQL). The first one is
    /// the default for unqualified table names.
    pub schemas: Option<Vec<String>>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url.as_deref().map(dossier_core::redact_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("password_env", &self.password_env)
            .field("tls", &self.tls)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("statement_timeout_secs", &self.statement_timeout_secs)
            .field("schemas", &self.schemas)
            .finish()
    }
}

/// Where to connect, from `url` or from the separate fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint<'a> {
    Url(&'a str),
    Fields {
        host: &'a str,
        port: Option<u16>,
        user: &'a str,
        database: Option<&'a str>,
    },
}

impl Config {
    /// A config connecting to `url`.
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Checks what needs no server: one way to connect, sane numbers and names.
    pub fn validate(&self) -> Result<(), ConnectorError> {
        self.endpoint()?;
        if let Some(var) = &self.password_env
            && var.trim().is_empty()
        {
            return Err(ConnectorError::config(
                "`password_env` is empty; name the environment variable holding the password",
            ));
        }
        if self.connect_timeout_secs == Some(0) {
            return Err(ConnectorError::config(
                "`connect_timeout_secs` must be at least 1",
            ));
        }
        if let Some(schemas) = &self.schemas {
            if schemas.is_empty() {
                return Err(ConnectorError::config(
                    "`schemas` is empty; list the schemas to read, or remove it for the default",
                ));
            }
            if schemas.iter().any(String::is_empty) {
                return Err(ConnectorError::config("`schemas` has an empty name"));
            }
        }
        Ok(())
    }

    /// Where to connect; refuses `url` mixed with the separate fields.
    pub fn endpoint(&self) -> Result<Endpoint<'_>, ConnectorError> {
        let fields: Vec<&str> = [
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("user", self.user.is_some()),
            ("database", self.database.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        match (&self.url, &self.host, &self.user) {
            (Some(_), _, _) if !fields.is_empty() => Err(ConnectorError::config(format!(
                "set either `url` or `host` with `user`, not both (`url` and `{}` are set)",
                fields.join("`, `")
            ))),
            (Some(url), _, _) if url.trim().is_empty() => {
                Err(ConnectorError::config("`url` is empty"))
            }
            (Some(url), _, _) => Ok(Endpoint::Url(url)),
            (None, Some(host), Some(user)) if !host.is_empty() && !user.is_empty() => {
                Ok(Endpoint::Fields {
                    host,
                    port: self.port,
                    user,
                    database: self.database.as_deref(),
                })
            }
            (None, Some(_), _) => Err(ConnectorError::config(
                "`host` needs a non-empty `user` (and no empty `host`)",
            )),
            (None, None, _) => Err(ConnectorError::config(
                "set `url` (e.g. postgres://user@host:5432/db) or `host` and `user`",
            )),
        }
    }

    /// The password from `password_env`, if set. Never put in messages.
    pub fn password(&self) -> Result<Option<SecretString>, ConnectorError> {
        let Some(var) = &self.password_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(p) => Ok(Some(SecretString::from(p))),
            Err(std::env::VarError::NotPresent) => Err(ConnectorError::config(format!(
                "`password_env` names the environment variable {var}, which is not set"
            ))),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConnectorError::config(format!(
                "the environment variable {var} (`password_env`) is not valid UTF-8"
            ))),
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(
            self.connect_timeout_secs
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS),
        )
    }

    /// `None` when statements may run for ever.
    pub fn statement_timeout(&self) -> Option<Duration> {
        match self
            .statement_timeout_secs
            .unwrap_or(DEFAULT_STATEMENT_TIMEOUT_SECS)
        {
            0 => None,
            s => Some(Duration::from_secs(s)),
        }
    }
}

/// A server reached over the network (PostgreSQL, MySQL), as its driver spells its connection
/// options: what each names differently, so that [`Config::server_options`] reads a config
/// into either the same way. Implemented by the connector's [`Driver`](crate::Driver), through
/// [`server_options!`](crate::server_options).
pub trait ServerOptions {
    /// The driver's connection options.
    type Options;
    /// The server's name in messages (`PostgreSQL`).
    const NAME: &'static str;
    /// The URL schemes accepted; the first is the one messages show.
    const SCHEMES: &'static [&'static str];
    const DEFAULT_PORT: u16;

    /// Options from a URL with one of [`Self::SCHEMES`].
    fn parse_url(url: &str) -> Result<Self::Options, sqlx::Error>;
    /// Options for `user` at `host:port`.
    fn fields(host: &str, port: u16, user: &str) -> Self::Options;
    fn database(options: Self::Options, database: &str) -> Self::Options;
    fn password(options: Self::Options, password: &str) -> Self::Options;
    fn tls(options: Self::Options, mode: TlsMode) -> Self::Options;
}

/// Implements [`ServerOptions`] for a driver whose options have sqlx's setters (`host`,
/// `port`, `username`, `database`, `password`, `ssl_mode`): sqlx gives PostgreSQL's and
/// MySQL's options setters of the same names but no trait to call them through, so a macro
/// writes those calls once. The caller gives what differs: the names, how a URL is parsed
/// (`|url| ...`), the options a connection by fields starts from, and its TLS modes for
/// `disable`, `prefer` and `require`.
#[macro_export]
macro_rules! server_options {
    (
        $driver:ty => $options:ty {
            name: $name:expr,
            schemes: $schemes:expr,
            default_port: $port:expr,
            parse_url: |$url:ident| $parse:expr,
            new: $new:expr,
            tls: $ssl:ident { $disable:ident, $prefer:ident, $require:ident } $(,)?
        }
    ) => {
        impl $crate::ServerOptions for $driver {
            type Options = $options;
            const NAME: &'static str = $name;
            const SCHEMES: &'static [&'static str] = &$schemes;
            const DEFAULT_PORT: u16 = $port;

            fn parse_url($url: &str) -> ::std::result::Result<$options, $crate::sqlx::Error> {
                $parse
            }

            fn fields(host: &str, port: u16, user: &str) -> $options {
                $new.host(host).port(port).username(user)
            }

            fn database(options: $options, database: &str) -> $options {
                options.database(database)
            }

            fn password(options: $options, password: &str) -> $options {
                options.password(password)
            }

            fn tls(options: $options, mode: $crate::TlsMode) -> $options {
                options.ssl_mode(match mode {
                    $crate::TlsMode::Disable => $ssl::$disable,
                    $crate::TlsMode::Prefer => $ssl::$prefer,
                    $crate::TlsMode::Require => $ssl::$require,
                })
            }
        }
    };
}

impl Config {
    /// The server's options from `url` or the separate fields, with the password and TLS
    /// mode; server-specific settings are the caller's to add.
    pub fn server_options<S: ServerOptions>(&self) -> Result<S::Options, ConnectorError> {
        let mut options = match self.endpoint()? {
            Endpoint::Url(url) => {
                if !S::SCHEMES.iter().any(|s| url.starts_with(s)) {
                    let scheme = S::SCHEMES[0];
                    return Err(ConnectorError::config(format!(
                        "`url` must start with {scheme} (e.g. {scheme}user@host:{}/db)",
                        S::DEFAULT_PORT
                    )));
                }
                S::parse_url(url).map_err(|e| {
                    ConnectorError::config(format!("`url` is not a valid {} URL: {e}", S::NAME))
                })?
            }
            Endpoint::Fields {
                host,
                port,
                user,
                database,
            } => {
                let options = S::fields(host, port.unwrap_or(S::DEFAULT_PORT), user);
                match database {
                    Some(db) => S::database(options, db),
                    None => options,
                }
            }
        };
        if let Some(password) = self.password()? {
            options = S::password(options, password.expose_secret());
        }
        if let Some(tls) = self.tls {
            options = S::tls(options, tls);
        }
        Ok(options)
    }
}

/// One stream of a SQL source: a table or view, or a `SELECT` query.
///
/// Exactly one of `table` and `query` is set; the settings are checked when they are parsed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
// Unknown fields are refused by `StreamSettings` (`deny_unknown_fields`), which this is parsed
// from.
#[serde(try_from = "StreamSettings")]
pub struct Stream {
    /// The table or view to read, optionally `schema.table`.
    pub table: Option<String>,
    /// A single `SELECT` (or `WITH ... SELECT`) statement to read instead of a table.
    pub query: Option<String>,
    /// The column to read incrementally by: a last-update timestamp or an ever-growing number.
    pub cursor: Option<String>,
    /// The columns that identify a row; defaults to the table's primary key.
    pub primary_key: Option<Vec<String>>,
    /// Rows per batch for this stream, instead of the source's `batch_size`.
    pub batch_size: Option<usize>,
}

/// One stream of a SQL source: a table or view, or a `SELECT` query.
// The unchecked form of `Stream`, as written in config; its docs make the JSON schema.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Stream")]
struct StreamSettings {
    /// The table or view to read: `name`, looked up in `schemas` in order, or `schema.name`.
    /// Set either `table` or `query`.
    table: Option<String>,
    /// A single `SELECT` (or `WITH ... SELECT`) statement to read instead of a table, without
    /// `;` and without parameters. It is run as a subquery, once per batch. Requires
    /// `primary_key`.
    query: Option<String>,
    /// The column to read incrementally by: a last-update timestamp or an ever-growing number.
    /// Without a cursor the stream is read whole on every run. Rows whose cursor is NULL are
    /// read only by a full read.
    cursor: Option<String>,
    /// The columns that identify a row; their values must never be NULL. Defaults to the
    /// table's primary key; required for views, queries and tables without one.
    primary_key: Option<Vec<String>>,
    /// Rows per batch (and per store transaction) for this stream, instead of the source's
    /// `batch_size`; 1 to 100000.
    batch_size: Option<usize>,
}

impl TryFrom<StreamSettings> for Stream {
    type Error = String;

    fn try_from(s: StreamSettings) -> Result<Self, String> {
        let stream = Stream {
            table: s.table,
            query: s.query,
            cursor: s.cursor,
            primary_key: s.primary_key,
            batch_size: s.batch_size,
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
            batch_size: None,
        }
    }

    /// A stream reading a `SELECT` query.
    pub fn query(sql: impl Into<String>) -> Self {
        Self {
            table: None,
            query: Some(sql.into()),
            cursor: None,
            primary_key: None,
            batch_size: None,
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

    /// Sets the batch size.
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.batch_size = Some(rows);
        self
    }

    /// Checks the settings that need no database: one of `table`/`query`, a single `SELECT`,
    /// no empty names, a sane batch size.
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
                if pk[..i].iter().any(|p| p == c) {
                    return Err(format!("`primary_key` names column {c:?} twice"));
                }
            }
        }
        if let Some(n) = self.batch_size {
            dossier_connector::check_batch_size(n)?;
        }
        Ok(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_way_to_connect() {
        assert!(Config::url("postgres://u@h/db").validate().is_ok());
        let both = Config {
            host: Some("h".into()),
            port: Some(5432),
            ..Config::url("postgres://u@h/db")
        };
        let e = both.validate().unwrap_err().to_string();
        assert!(e.contains("`url` and `host`, `port` are set"), "{e}");
        let e = Config::default().validate().unwrap_err().to_string();
        assert!(e.contains("set `url`"), "{e}");
        let no_user = Config {
            host: Some("h".into()),
            ..Config::default()
        };
        assert!(no_user.validate().is_err());
        let fields = Config {
            host: Some("h".into()),
            user: Some("u".into()),
            ..Config::default()
        };
        assert_eq!(
            fields.endpoint().unwrap(),
            Endpoint::Fields {
                host: "h",
                port: None,
                user: "u",
                database: None
            }
        );
    }

    #[test]
    fn debug_never_shows_a_password() {
        let c = Config::url("postgres://ada:hunter2@db.example.com/shop");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("ada:***@db.example.com/shop"), "{shown}");
    }

    #[test]
    fn timeouts_have_defaults() {
        let c = Config::url("x");
        assert_eq!(c.connect_timeout(), Duration::from_secs(10));
        assert_eq!(c.statement_timeout(), Some(Duration::from_secs(300)));
        let c = Config {
            statement_timeout_secs: Some(0),
            ..c
        };
        assert_eq!(c.statement_timeout(), None);
    }

    #[test]
    fn stream_settings_are_checked() {
        assert!(Stream::table("t").with_batch_size(0).validate().is_err());
        assert!(
            Stream::table("t")
                .with_batch_size(MAX_BATCH_SIZE)
                .validate()
                .is_ok()
        );
        assert!(
            Stream::table("t")
                .with_primary_key(["a", "a"])
                .validate()
                .is_err()
        );
        assert!(Stream::query("DELETE FROM t").validate().is_err());
    }
}
