//! Reading: keyset pages, values by storage class, checkpoints.

use std::sync::Arc;

use dossier_connector::keyset::KeysetState;
use dossier_connector::{
    Batch, BatchReader, BatchStream, ConnectorError, ReadRequest, StreamState, Value, batch_stream,
};
use futures::TryStreamExt as _;
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{AssertSqlSafe, Column as _, Row as _, TypeInfo as _, ValueRef as _};

use crate::catalog::Resolved;
use crate::sql;
use crate::{SqliteConnector, Stream};

type Query<'q> = sqlx::query::Query<'q, Sqlite, <Sqlite as sqlx::Database>::Arguments>;

/// The key under which a BLOB key value is kept in a checkpoint, as lowercase hex.
const BLOB_HEX: &str = "blob_hex";

/// One value as SQLite stored it: its storage class decides the type, not the column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    fn read(row: &SqliteRow, i: usize) -> Result<Cell, sqlx::Error> {
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

    /// The value a record carries: a BLOB becomes its bytes in lowercase hex.
    pub fn into_value(self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => Value::Int(i),
            Cell::Float(f) => Value::Float(f),
            Cell::Text(s) => Value::Text(s),
            Cell::Blob(b) => Value::Text(hex(&b)),
        }
    }

    /// The value a checkpoint carries; unlike a record's, a BLOB stays distinct from text so
    /// that it is bound back as a BLOB.
    fn to_state(&self) -> Value {
        match self {
            Cell::Blob(b) => Value::Json(serde_json::json!({ BLOB_HEX: hex(b) })),
            other => other.clone().into_value(),
        }
    }

    fn from_state(v: &Value) -> Option<Cell> {
        Some(match v {
            Value::Null => Cell::Null,
            Value::Int(i) => Cell::Int(*i),
            Value::Float(f) => Cell::Float(*f),
            Value::Text(s) => Cell::Text(s.clone()),
            Value::Json(j) => Cell::Blob(unhex(j.get(BLOB_HEX)?.as_str()?)?),
            Value::Bool(_) | Value::Decimal(_) | Value::DateTime(_) => return None,
        })
    }

    /// Binds the value with the storage class it was read with.
    fn bind<'q>(&self, q: Query<'q>) -> Query<'q> {
        match self {
            Cell::Null => q.bind(Option::<i64>::None),
            Cell::Int(i) => q.bind(*i),
            Cell::Float(f) => q.bind(*f),
            Cell::Text(s) => q.bind(s.clone()),
            Cell::Blob(b) => q.bind(b.clone()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The key values of the last row of a page.
#[derive(Debug)]
pub(crate) struct Last {
    /// Keyset values, in [`Resolved::key`] order.
    key: Vec<Cell>,
    cursor: Option<Cell>,
    pk: Vec<Cell>,
}

impl SqliteConnector {
    /// One page: at most `limit` rows after `after`, in keyset order, with one statement.
    pub(crate) async fn fetch_page(
        &self,
        name: &str,
        r: &Resolved,
        after: Option<&[Cell]>,
        limit: usize,
    ) -> Result<(Vec<Vec<Value>>, Option<Last>), ConnectorError> {
        let at = format!("stream {name:?}");
        let (text, binds) = sql::page(&r.select, &r.key_sql, after);
        tracing::debug!(stream = name, sql = %text, "sqlite: reading a page");
        let mut query = sqlx::query(AssertSqlSafe(text));
        for cell in binds {
            query = cell.bind(query);
        }
        query = query.bind(i64::try_from(limit).unwrap_or(i64::MAX));

        let mut rows = vec![];
        let mut last: Option<Vec<Cell>> = None;
        let mut fetched = query.fetch(&self.pool);
        while let Some(row) = fetched
            .try_next()
            .await
            .map_err(|e| sql::error(format!("{at}: cannot read"), e, false))?
        {
            if last.is_none() && rows.is_empty() {
                check_columns(&at, r, &row)?;
            }
            let cells = (0..r.info.fields.len())
                .map(|i| Cell::read(&row, i))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| sql::error(format!("{at}: cannot read a value"), e, false))?;
            if let Some(previous) = last.replace(cells) {
                rows.push(previous.into_iter().map(Cell::into_value).collect());
            }
        }
        let last = last.map(|cells| {
            let info = Last {
                key: r.key.iter().map(|&i| cells[i].clone()).collect(),
                cursor: r.cursor.map(|i| cells[i].clone()),
                pk: r.pk.iter().map(|&i| cells[i].clone()).collect(),
            };
            rows.push(cells.into_iter().map(Cell::into_value).collect());
            info
        });
        Ok((rows, last))
    }
}

/// The rows must still have the fields the stream was described with.
fn check_columns(at: &str, r: &Resolved, row: &SqliteRow) -> Result<(), ConnectorError> {
    let same = row.columns().len() == r.info.fields.len()
        && row
            .columns()
            .iter()
            .zip(&r.info.fields)
            .all(|(c, f)| c.name() == f.name);
    if same {
        Ok(())
    } else {
        Err(ConnectorError::remote(
            format!("{at}: the columns changed while reading; read again"),
            true,
        ))
    }
}

/// The state of every batch of a stream without a cursor, which is read whole on every run.
fn full_refresh_state() -> StreamState {
    StreamState::full_refresh()
}

/// Where a read starts: `None` for the beginning.
fn start_after(
    at: &str,
    r: &Resolved,
    state: Option<&StreamState>,
) -> Result<Option<Vec<Cell>>, ConnectorError> {
    let Some(cursor) = r.cursor else {
        // Without a cursor every read is a full read.
        return Ok(None);
    };
    let Some(state) = state else { return Ok(None) };
    if state.0.is_null() || *state == full_refresh_state() {
        // The stream had no cursor before: nothing to resume from.
        return Ok(None);
    }
    let keyset = KeysetState::from_state(state)?;
    let mismatch = || {
        ConnectorError::config(format!(
            "{at}: the stored state does not fit the stream's cursor and primary key (were \
             they changed?); reset the stream's state to read it again"
        ))
    };
    let (Some(cursor_value), true) = (&keyset.cursor, keyset.pk.len() == r.pk.len()) else {
        return Err(mismatch());
    };
    let mut key = vec![Cell::from_state(cursor_value).ok_or_else(mismatch)?];
    for (&i, v) in r.pk.iter().zip(&keyset.pk) {
        if i != cursor {
            key.push(Cell::from_state(v).ok_or_else(mismatch)?);
        }
    }
    Ok(Some(key))
}

struct Reader {
    connector: Arc<SqliteConnector>,
    name: String,
    stream: Stream,
    state: Option<StreamState>,
    batch_size: usize,
    plan: Option<Plan>,
    done: bool,
}

struct Plan {
    resolved: Resolved,
    fields: Arc<Vec<String>>,
    after: Option<Vec<Cell>>,
}

#[async_trait::async_trait]
impl BatchReader for Reader {
    async fn next_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
        if self.done {
            return Ok(None);
        }
        let at = format!("stream {:?}", self.name);
        if self.plan.is_none() {
            let resolved = self.connector.resolve(&self.name, &self.stream).await?;
            let after = start_after(&at, &resolved, self.state.as_ref())?;
            let fields = resolved.info.fields.iter().map(|f| f.name.clone());
            self.plan = Some(Plan {
                fields: Arc::new(fields.collect()),
                resolved,
                after,
            });
        }
        let Some(plan) = self.plan.as_mut() else {
            return Ok(None);
        };
        let limit = self.batch_size.max(1);
        let (rows, last) = self
            .connector
            .fetch_page(&self.name, &plan.resolved, plan.after.as_deref(), limit)
            .await?;
        let Some(last) = last else {
            return Ok(None);
        };
        if rows.len() < limit {
            self.done = true;
        }
        if plan.after.as_ref() == Some(&last.key) {
            return Err(ConnectorError::internal(format!(
                "{at}: the read did not move past its checkpoint; its cursor or primary key \
                 values may not be comparable"
            )));
        }
        let state = if plan.resolved.cursor.is_some() {
            KeysetState {
                cursor: last.cursor.as_ref().map(Cell::to_state),
                pk: last.pk.iter().map(Cell::to_state).collect(),
            }
            .to_state()
        } else {
            full_refresh_state()
        };
        plan.after = Some(last.key);
        Ok(Some(Batch {
            fields: plan.fields.clone(),
            rows,
            state,
        }))
    }
}

/// Reads a stream page by page: each page is read when the consumer asks for it, so at most
/// one batch is in memory.
pub(crate) fn read(connector: Arc<SqliteConnector>, request: ReadRequest<Stream>) -> BatchStream {
    let reader = Reader {
        connector,
        name: request.name,
        stream: request.stream,
        state: request.state,
        batch_size: request.batch_size,
        plan: None,
        done: false,
    };
    batch_stream(Ok(reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = vec![0, 1, 0xab, 0xff, 0x10];
        assert_eq!(hex(&bytes), "0001abff10");
        assert_eq!(unhex("0001abff10"), Some(bytes));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn state_values_round_trip_through_json() {
        for cell in [
            Cell::Null,
            Cell::Int(-5),
            Cell::Int(i64::MAX),
            Cell::Float(0.1),
            Cell::Float(1.0),
            Cell::Text("2024-01-01 10:00:00".into()),
            Cell::Blob(vec![1, 2, 254]),
        ] {
            let json = serde_json::to_string(&cell.to_state()).unwrap();
            let back: Value = serde_json::from_str(&json).unwrap();
            assert_eq!(Cell::from_state(&back), Some(cell));
        }
    }
}
