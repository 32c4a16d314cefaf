//! Reading: keyset pages, one read-only transaction each, and their checkpoints.

use std::sync::Arc;

use dossier_connector::keyset::KeysetState;
use dossier_connector::{
    Batch, BatchReader, BatchStream, ConnectorError, ReadRequest, StreamState, Value, batch_stream,
};

use crate::catalog::Plan;
use crate::cell::Cell;
use crate::dialect::{Dialect, null_after, state_cell, to_state, to_value};
use crate::error::error;
use crate::sql::Binder;
use crate::{Driver, SqlConnector, Stream};

/// Where the next page starts, after the key values bound as these parameters.
#[derive(Debug, Clone, PartialEq)]
enum Position {
    /// Rows whose cursor is NULL, by primary key, after these primary key values (which
    /// come first: NULL sorts before every value).
    Nulls(Option<Vec<Cell>>),
    /// Rows in keyset order (cursor, then primary key) after these keyset values; for a
    /// stream without a cursor the keyset is the primary key.
    Keys(Option<Vec<Cell>>),
}

/// Where a read starts, from the stored state.
fn start(
    at: &str,
    d: &dyn Dialect,
    plan: &Plan,
    state: Option<&StreamState>,
) -> Result<Position, ConnectorError> {
    let Some(cursor) = plan.cursor else {
        // Without a cursor every read is a full read.
        return Ok(Position::Keys(None));
    };
    let fresh = if plan.cursor_nullable {
        Position::Nulls(None)
    } else {
        Position::Keys(None)
    };
    let Some(state) = state else { return Ok(fresh) };
    if state.0.is_null() || state.is_full_refresh() {
        // The stream had no cursor before: nothing to resume from.
        return Ok(fresh);
    }
    let keyset = KeysetState::from_state(state)?;
    let mismatch = || {
        ConnectorError::config(format!(
            "{at}: the stored state does not fit the stream's cursor and primary key (were \
             they changed?); reset the stream's state to read it again"
        ))
    };
    let (Some(cursor_value), true) = (&keyset.cursor, keyset.pk.len() == plan.pk.len()) else {
        return Err(mismatch());
    };
    let pk = plan
        .pk
        .iter()
        .zip(&keyset.pk)
        .map(|(&i, v)| match v {
            Value::Null if d.nulls_in_keys() => Ok(Cell::Null),
            v => state_cell(&plan.columns[i].kind, v).ok_or_else(mismatch),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match cursor_value {
        Value::Null => Position::Nulls(Some(pk)),
        v => {
            let c = state_cell(&plan.columns[cursor].kind, v).ok_or_else(mismatch)?;
            let mut key = vec![c];
            key.extend(
                plan.pk
                    .iter()
                    .zip(pk)
                    .filter(|(i, _)| **i != cursor)
                    .map(|(_, v)| v),
            );
            Position::Keys(Some(key))
        }
    })
}

/// The SQL of one page and its parameters.
fn page(d: &dyn Dialect, plan: &Plan, pos: &Position, limit: usize) -> (String, Vec<Cell>) {
    let mut b = Binder::new(d.placeholders());
    let mut filter = vec![];
    let after = |b: &mut Binder, cols: &[usize], values: &[Cell]| {
        let keys: Vec<(&str, &crate::Column, &Cell)> = cols
            .iter()
            .zip(values)
            .map(|(&i, v)| (plan.column_sql[i].as_str(), &plan.columns[i], v))
            .collect();
        if values.iter().any(Cell::is_null) {
            format!("({})", null_after(d, &keys, b))
        } else {
            format!("({})", d.after(&keys, b))
        }
    };
    let order = match pos {
        Position::Nulls(values) => {
            let cursor = plan.cursor.expect("only a cursor has a NULL phase");
            filter.push(format!("{} IS NULL", plan.column_sql[cursor]));
            if let Some(values) = values {
                filter.push(after(&mut b, &plan.pk, values));
            }
            &plan.pk
        }
        Position::Keys(Some(values)) => {
            filter.push(after(&mut b, &plan.key, values));
            &plan.key
        }
        Position::Keys(None) => {
            if let Some(cursor) = plan.cursor
                && plan.cursor_nullable
            {
                filter.push(format!("{} IS NOT NULL", plan.column_sql[cursor]));
            }
            &plan.key
        }
    };
    let order: Vec<&str> = order.iter().map(|&i| plan.column_sql[i].as_str()).collect();
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filter.join(" AND "))
    };
    (
        format!(
            "{}{filter} ORDER BY {} LIMIT {limit}",
            plan.select,
            order.join(", ")
        ),
        b.into_params(),
    )
}

struct Reader<D> {
    connector: Arc<SqlConnector<D>>,
    name: String,
    stream: Stream,
    state: Option<StreamState>,
    batch_size: usize,
    plan: Option<Plan>,
    pos: Option<Position>,
    done: bool,
}

#[async_trait::async_trait]
impl<D: Driver> BatchReader for Reader<D> {
    async fn next_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
        if self.done {
            return Ok(None);
        }
        let at = format!("stream {:?}", self.name);
        if self.plan.is_none() {
            let plan = self.connector.resolve(&self.name, &self.stream).await?;
            let dialect = self.connector.driver.dialect();
            self.pos = Some(start(&at, dialect, &plan, self.state.as_ref())?);
            self.plan = Some(plan);
        }
        let (Some(plan), Some(pos)) = (self.plan.as_ref(), self.pos.as_mut()) else {
            return Ok(None);
        };
        let driver = &self.connector.driver;
        let limit = self.batch_size;
        loop {
            let (sql, params) = page(driver.dialect(), plan, pos, limit);
            tracing::debug!(stream = %self.name, %sql, "reading a page");
            let rows = driver
                .fetch(sql, params, &plan.wires)
                .await
                .map_err(|e| error(format!("{at}: cannot read {}", plan.what), e, false))?;
            let Some(last) = rows.last() else {
                match pos {
                    Position::Nulls(_) => {
                        *pos = Position::Keys(None);
                        continue;
                    }
                    Position::Keys(_) => return Ok(None),
                }
            };
            let nulls_in_keys = driver.dialect().nulls_in_keys();
            if let Some(&i) = plan
                .pk
                .iter()
                .find(|&&i| !nulls_in_keys && rows.iter().any(|r| r[i].is_null()))
            {
                return Err(ConnectorError::config(format!(
                    "{at}: primary key column {:?} is NULL in a row of {}; set `primary_key` \
                     to columns that are never NULL",
                    plan.columns[i].name, plan.what
                )));
            }
            let params = |cols: &[usize]| -> Result<Vec<Cell>, ConnectorError> {
                cols.iter()
                    .map(|&i| match &last[i] {
                        Cell::Null if !nulls_in_keys => Err(ConnectorError::internal(format!(
                            "{at}: keyset column {:?} is NULL where it cannot be",
                            plan.columns[i].name
                        ))),
                        cell => Ok(cell.clone()),
                    })
                    .collect()
            };
            let full = rows.len() == limit;
            let next = match pos {
                Position::Nulls(_) if full => Position::Nulls(Some(params(&plan.pk)?)),
                Position::Nulls(_) => Position::Keys(None),
                Position::Keys(_) => {
                    self.done = !full;
                    Position::Keys(Some(params(&plan.key)?))
                }
            };
            if next == *pos {
                return Err(ConnectorError::internal(format!(
                    "{at}: the read did not move past its checkpoint; its cursor or primary key \
                     values may not compare as they sort"
                )));
            }
            *pos = next;
            let state = match plan.cursor {
                Some(c) => KeysetState {
                    cursor: Some(to_state(&plan.columns[c].kind, &last[c])),
                    pk: plan
                        .pk
                        .iter()
                        .map(|&i| to_state(&plan.columns[i].kind, &last[i]))
                        .collect(),
                }
                .to_state(),
                None => StreamState::full_refresh(),
            };
            let rows: Vec<Vec<Value>> = rows
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .zip(&plan.columns)
                        .map(|(cell, c)| to_value(&c.kind, cell))
                        .collect()
                })
                .collect();
            return Ok(Some(Batch {
                fields: plan.fields.clone(),
                rows,
                state,
            }));
        }
    }
}

/// Reads a stream page by page: each page is read when the consumer asks for it, so at most
/// one batch is in memory.
pub(crate) fn read<D: Driver>(
    connector: Arc<SqlConnector<D>>,
    request: ReadRequest<Stream>,
) -> BatchStream {
    let batch_size = request.rows_per_batch(request.stream.batch_size);
    let reader = Reader {
        connector,
        name: request.name,
        stream: request.stream,
        state: request.state,
        batch_size,
        plan: None,
        pos: None,
        done: false,
    };
    batch_stream(Ok(reader))
}
