//! The one connection a SQL source reads on, kept from query to query.

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::{AssertSqlSafe, Database, Either, Executor as _, SqlSafeStr as _, Statement as _};
use tokio::sync::Mutex;

use crate::cell::Cell;
use crate::dialect::{Wire, decode_row};
use crate::error::refuse_parameters;
use crate::{DbError, ErrorClass};

/// Opens a new connection to the source's server.
pub type Connect<C> = Box<dyn Fn() -> BoxFuture<'static, Result<C, DbError>> + Send + Sync>;

/// The connection a source runs its queries on, one at a time. The connection that proved the
/// server reachable is kept: a pool would open a second one (another TCP and TLS handshake on
/// every run) and check each connection with a round trip before lending it.
///
/// Nothing is checked before a query. A kept connection the server has ended meanwhile (a
/// restart, an idle timeout, an administrator) fails with [`ErrorClass::ConnectionLost`]; the
/// query then runs once more on a new connection. That is safe because every query a source
/// runs is a read in its own read-only transaction. An error on a new connection is the
/// caller's, as is every other error; any error drops the connection, so the next query starts
/// on a new one.
pub struct KeptConnection<C> {
    slot: Mutex<Option<C>>,
    connect: Connect<C>,
    classify: fn(sqlx::Error) -> DbError,
    /// The server, for messages: `postgres at user@host:port/database`.
    server: String,
}

impl<C: Send> KeptConnection<C> {
    /// Keeps `first`; `connect` opens the next ones to `server`, `classify` says what an
    /// error means.
    pub fn new(
        first: C,
        connect: Connect<C>,
        classify: fn(sqlx::Error) -> DbError,
        server: String,
    ) -> Self {
        Self {
            slot: Mutex::new(Some(first)),
            connect,
            classify,
            server,
        }
    }

    /// Runs `op` on the kept connection, or on a new one if there is none or the kept one
    /// turns out to be lost.
    pub async fn run<T>(
        &self,
        op: impl for<'c> Fn(&'c mut C) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    ) -> Result<T, DbError> {
        let mut slot = self.slot.lock().await;
        if let Some(conn) = slot.as_mut() {
            match op(conn).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    *slot = None;
                    let e = (self.classify)(e);
                    if e.class != ErrorClass::ConnectionLost {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "kept source connection lost; reconnecting");
                }
            }
        }
        let conn = (self.connect)().await.map_err(|e| {
            DbError::new(
                e.class,
                format!("cannot connect again to {}: {}", self.server, e.message),
            )
        })?;
        let conn = slot.insert(conn);
        match op(conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                *slot = None;
                Err((self.classify)(e))
            }
        }
    }
}

impl<C> KeptConnection<C>
where
    C: sqlx::Connection,
    for<'e> &'e mut <C::Database as Database>::Connection:
        sqlx::Executor<'e, Database = C::Database>,
    Option<String>: for<'q> sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    <C::Database as Database>::Arguments: sqlx::IntoArguments<C::Database>,
    usize: sqlx::ColumnIndex<<C::Database as Database>::Row>,
    for<'r> i64: sqlx::Decode<'r, C::Database> + sqlx::Type<C::Database>,
    for<'r> f64: sqlx::Decode<'r, C::Database> + sqlx::Type<C::Database>,
    for<'r> bool: sqlx::Decode<'r, C::Database> + sqlx::Type<C::Database>,
    for<'r> String: sqlx::Decode<'r, C::Database> + sqlx::Type<C::Database>,
{
    /// [`Driver::fetch`](crate::Driver::fetch) on the kept connection: runs one statement,
    /// with parameters bound as text, in a transaction of its own that `begin` starts
    /// (read-only, in the dialect's words), and decodes each column of the result as `wires`
    /// says ([`decode_row`]).
    pub async fn fetch(
        &self,
        begin: &'static str,
        sql: &str,
        params: &[Cell],
        wires: &[Wire],
    ) -> Result<Vec<Vec<Cell>>, DbError> {
        let rows = self
            .run(|conn| {
                let sql = sql.to_string();
                let params: Vec<Option<String>> = params.iter().map(Cell::to_param).collect();
                Box::pin(async move {
                    let mut tx = conn.begin_with(begin).await?;
                    let mut query = sqlx::query(AssertSqlSafe(sql));
                    for p in params {
                        query = query.bind(p);
                    }
                    let rows = query.fetch_all(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(rows)
                })
            })
            .await?;
        rows.iter()
            .map(|r| decode_row(r, wires))
            .collect::<Result<_, _>>()
            .map_err(self.classify)
    }

    /// Prepares `sql` without running it and returns what `column` makes of each column it
    /// returns; refuses a statement with parameters ([`refuse_parameters`], `spelled` saying
    /// how the server writes them).
    pub async fn describe<T: Send + 'static>(
        &self,
        sql: &str,
        spelled: &str,
        column: fn(&<C::Database as Database>::Column) -> T,
    ) -> Result<Vec<T>, DbError> {
        let (params, columns) = self
            .run(|conn| {
                let sql = sql.to_string();
                Box::pin(async move {
                    let statement = conn.prepare(AssertSqlSafe(sql).into_sql_str()).await?;
                    let params = match statement.parameters() {
                        Some(Either::Left(types)) => types.len(),
                        Some(Either::Right(n)) => n,
                        None => 0,
                    };
                    Ok((params, statement.columns().iter().map(column).collect()))
                })
            })
            .await?;
        refuse_parameters(params, spelled)?;
        Ok(columns)
    }
}

/// Runs `connect` for at most `timeout` (the config's `connect_timeout_secs`).
pub async fn connect_within<C>(
    connect: impl Future<Output = Result<C, sqlx::Error>>,
    timeout: Duration,
    classify: fn(sqlx::Error) -> DbError,
) -> Result<C, DbError> {
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| {
            DbError::new(
                ErrorClass::Transient,
                format!(
                    "no answer within {}s (`connect_timeout_secs`)",
                    timeout.as_secs()
                ),
            )
        })?
        .map_err(classify)
}
