//! Reading: one server cursor per phase in `(cursor, _id)` order, batches of documents, and
//! a checkpoint after each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dossier_connector::keyset::KeysetState;
use dossier_connector::{
    Batch, BatchReader, BatchStream, ConnectorError, ReadRequest, StreamState, Value, batch_stream,
};
use mongodb::Cursor;
use mongodb::action::Action as _;
use mongodb::bson::raw::{RawBsonRef, RawDocument};
use mongodb::bson::{Bson, Document, RawBson, RawDocumentBuf, doc};

use crate::convert::{self, bracket, bracket_name};
use crate::error::error;
use crate::schema::Layout;
use crate::{MongoConnector, Stream};

/// A document's position in key order.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    /// The cursor value; `None` for streams ordered by `_id` alone.
    cursor: Option<Bson>,
    id: Bson,
}

/// Where the next document is read from.
#[derive(Debug, Clone, PartialEq)]
enum Position {
    /// Documents whose cursor is missing or null, by `_id`, after this `_id`. They come first,
    /// as MongoDB sorts null before every value.
    Nulls(Option<Bson>),
    /// Documents in key order (`cursor`, `_id`; or `_id`) after this key.
    Keys(Option<Key>),
}

/// How a stream is ordered.
#[derive(Debug, Clone, PartialEq)]
enum Order {
    /// By a cursor field, then `_id`.
    Cursor(String),
    /// By `_id` alone: a stream without a cursor (read whole), or whose cursor is `_id`.
    Id { incremental: bool },
}

impl Order {
    fn of(stream: &Stream) -> Self {
        match stream.cursor.as_deref() {
            Some("_id") => Order::Id { incremental: true },
            Some(c) => Order::Cursor(c.to_string()),
            None => Order::Id { incremental: false },
        }
    }
}

fn owned(v: RawBsonRef<'_>) -> Bson {
    convert::to_bson(v)
}

/// Where a read starts, from the stored state.
fn start(at: &str, order: &Order, state: Option<&StreamState>) -> Result<Position, ConnectorError> {
    let fresh = match order {
        Order::Cursor(_) => Position::Nulls(None),
        Order::Id { .. } => Position::Keys(None),
    };
    let Some(state) = state else { return Ok(fresh) };
    if matches!(order, Order::Id { incremental: false })
        || state.0.is_null()
        || state.is_full_refresh()
    {
        return Ok(fresh);
    }
    let keyset = KeysetState::from_state(state)?;
    let mismatch = || {
        ConnectorError::config(format!(
            "{at}: the stored state does not fit the stream's cursor (was it changed?); reset \
             the stream's state to read it again"
        ))
    };
    let bson = |v: &Value| match v {
        Value::Json(j) => convert::from_extjson(j).ok_or_else(mismatch),
        _ => Err(mismatch()),
    };
    let [id] = keyset.pk.as_slice() else {
        return Err(mismatch());
    };
    let id = bson(id)?;
    Ok(match (order, &keyset.cursor) {
        (Order::Cursor(_), Some(Value::Null)) => Position::Nulls(Some(id)),
        (Order::Cursor(_), Some(c)) => Position::Keys(Some(Key {
            cursor: Some(bson(c)?),
            id,
        })),
        (Order::Id { .. }, Some(_)) => Position::Keys(Some(Key { cursor: None, id })),
        (_, None) => return Err(mismatch()),
    })
}

/// The query and sort of a position.
fn query(order: &Order, pos: &Position) -> (Document, Document) {
    match (order, pos) {
        (Order::Cursor(c), Position::Nulls(after)) => {
            let mut q = doc! { c.as_str(): { "$in": [Bson::Null] } };
            if let Some(id) = after {
                q.insert("_id", doc! { "$gt": id.clone() });
            }
            (q, doc! { "_id": 1 })
        }
        (Order::Cursor(c), Position::Keys(None)) => (
            doc! { c.as_str(): { "$nin": [Bson::Null] } },
            doc! { c.as_str(): 1, "_id": 1 },
        ),
        (Order::Cursor(c), Position::Keys(Some(k))) => {
            let v = k.cursor.clone().unwrap_or(Bson::Null);
            (
                doc! { "$or": [
                    { c.as_str(): { "$gt": v.clone() } },
                    { c.as_str(): v, "_id": { "$gt": k.id.clone() } },
                ] },
                doc! { c.as_str(): 1, "_id": 1 },
            )
        }
        (Order::Id { .. }, Position::Keys(after)) => {
            let q = match after {
                Some(k) => doc! { "_id": { "$gt": k.id.clone() } },
                None => Document::new(),
            };
            (q, doc! { "_id": 1 })
        }
        (Order::Id { .. }, Position::Nulls(_)) => unreachable!("no null phase without a cursor"),
    }
}

/// `a AND b`, without an empty side.
fn and(a: Option<&Document>, b: Document) -> Document {
    match a {
        Some(a) if !a.is_empty() && !b.is_empty() => doc! { "$and": [a.clone(), b] },
        Some(a) if !a.is_empty() => a.clone(),
        _ => b,
    }
}

/// Time spent in a read, for the log line that ends it.
#[derive(Debug, Default)]
struct Timing {
    documents: u64,
    records: u64,
    batches: u64,
    /// Waiting for the server's batches (the driver's I/O included).
    server: Duration,
    /// Turning documents into records.
    connector: Duration,
}

struct Reader {
    connector: Arc<MongoConnector>,
    name: String,
    stream: Stream,
    state: Option<StreamState>,
    batch_size: usize,
    order: Order,
    layout: Option<Arc<Layout>>,
    fields: Arc<Vec<String>>,
    pos: Option<Position>,
    cursor: Option<Cursor<RawDocumentBuf>>,
    /// The type bracket of the cursor and `_id` values read so far.
    brackets: (Option<u8>, Option<u8>),
    timing: Timing,
    done: bool,
}

impl Reader {
    fn at(&self) -> String {
        format!("stream {:?}", self.name)
    }

    /// The key of a document, checking that keys keep one type (MongoDB compares values of
    /// one type only: a key of another type would make the read skip documents).
    fn key(&mut self, doc: &RawDocument, pos: &Position) -> Result<Key, ConnectorError> {
        let at = self.at();
        let id = match doc.get("_id") {
            Ok(Some(id)) => id,
            _ => {
                return Err(ConnectorError::config(format!(
                    "{at}: a document of collection {:?} has no `_id` (is it a view that \
                     leaves it out?); every document needs one",
                    self.stream.collection
                )));
            }
        };
        let id_text = || convert::to_json(id).to_string();
        let check = |slot: &mut Option<u8>, v: RawBsonRef<'_>, what: &str| {
            if matches!(v, RawBsonRef::Document(_) | RawBsonRef::Array(_)) {
                return Err(ConnectorError::config(format!(
                    "{at}: {what} is {} in the document with _id {}; it must be a single \
                     value (a date, a number, a string, an ObjectId)",
                    bracket_name(v),
                    id_text()
                )));
            }
            match *slot {
                None => *slot = Some(bracket(v)),
                Some(b) if b != bracket(v) => {
                    return Err(ConnectorError::config(format!(
                        "{at}: {what} is {} in the document with _id {} but of another type in \
                         documents read before; MongoDB compares values of one type only, so \
                         documents would be missed: give every document the same type, or \
                         choose another cursor",
                        bracket_name(v),
                        id_text()
                    )));
                }
                Some(_) => {}
            }
            Ok(())
        };
        check(&mut self.brackets.1, id, "`_id`")?;
        let cursor = match (&self.order, pos) {
            (Order::Cursor(c), Position::Keys(_)) => {
                let v = convert::lookup(doc, c).unwrap_or(RawBsonRef::Null);
                check(&mut self.brackets.0, v, &format!("the cursor {c:?}"))?;
                Some(owned(v))
            }
            _ => None,
        };
        Ok(Key {
            cursor,
            id: owned(id),
        })
    }

    fn log_finished(&self, error: Option<&ConnectorError>) {
        let t = &self.timing;
        tracing::info!(
            stream = %self.name,
            collection = %self.stream.collection,
            documents = t.documents,
            records = t.records,
            batches = t.batches,
            server_wait_ms = t.server.as_millis() as u64,
            connector_ms = t.connector.as_millis() as u64,
            error = error.map(tracing::field::display),
            "read finished"
        );
    }
}

#[async_trait::async_trait]
impl BatchReader for Reader {
    async fn next_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
        if self.done {
            return Ok(None);
        }
        let at = self.at();
        if self.layout.is_none() {
            let fields = self.connector.fields(&self.name, &self.stream).await?;
            self.fields = Arc::new(fields.clone());
            self.layout = Some(Arc::new(Layout::new(fields)));
            let pos = start(&at, &self.order, self.state.as_ref())?;
            if let Position::Keys(Some(Key {
                cursor: Some(c), ..
            })) = &pos
                && let Ok(raw) = RawBson::try_from(c.clone())
            {
                self.brackets.0 = Some(bracket(raw.as_raw_bson_ref()));
            }
            self.pos = Some(pos);
        }
        let layout = self.layout.clone().expect("set above");
        loop {
            let pos = self.pos.clone().expect("set with the layout");
            if self.cursor.is_none() {
                let (q, sort) = query(&self.order, &pos);
                let filter = and(self.stream.filter.as_ref(), q);
                tracing::debug!(stream = %self.name, ?filter, ?sort, "opening a cursor");
                let t = Instant::now();
                let cursor = self
                    .connector
                    .collection(&self.stream.collection)
                    .find(filter)
                    .sort(sort)
                    .optional(self.stream.projection_doc(), |a, p| a.projection(p))
                    .batch_size(u32::try_from(self.batch_size).unwrap_or(u32::MAX))
                    .await
                    .map_err(|e| {
                        error(
                            format!("{at}: cannot read collection {:?}", self.stream.collection),
                            &e,
                            false,
                        )
                    })?;
                self.timing.server += t.elapsed();
                self.cursor = Some(cursor);
            }
            let mut rows = vec![];
            let mut documents = 0;
            let mut last: Option<Key> = None;
            let mut exhausted = false;
            // Taken while reading, put back unless it ended or failed.
            let mut cursor = self.cursor.take().expect("opened above");
            while documents < self.batch_size {
                let t = Instant::now();
                let more = cursor.advance().await;
                self.timing.server += t.elapsed();
                match more {
                    Err(e) => {
                        return Err(error(
                            format!("{at}: cannot read collection {:?}", self.stream.collection),
                            &e,
                            false,
                        ));
                    }
                    Ok(false) => {
                        exhausted = true;
                        break;
                    }
                    Ok(true) => {}
                }
                let t = Instant::now();
                let doc = cursor.current();
                let key = self.key(doc, &pos)?;
                let records = layout.records(doc, self.stream.unwind.as_deref());
                self.timing.records += records.len() as u64;
                rows.extend(records);
                last = Some(key);
                documents += 1;
                self.timing.connector += t.elapsed();
            }
            if !exhausted {
                self.cursor = Some(cursor);
            }
            let Some(last) = last else {
                match pos {
                    Position::Nulls(_) => {
                        self.pos = Some(Position::Keys(None));
                        continue;
                    }
                    Position::Keys(_) => return Ok(None),
                }
            };
            let state = match (&self.order, &pos) {
                (Order::Id { incremental: false }, _) => StreamState::full_refresh(),
                (_, Position::Nulls(_)) => KeysetState {
                    cursor: Some(Value::Null),
                    pk: vec![Value::Json(last.id.clone().into_canonical_extjson())],
                }
                .to_state(),
                (_, Position::Keys(_)) => {
                    let id = Value::Json(last.id.clone().into_canonical_extjson());
                    KeysetState {
                        cursor: Some(match &last.cursor {
                            Some(c) => Value::Json(c.clone().into_canonical_extjson()),
                            None => id.clone(),
                        }),
                        pk: vec![id],
                    }
                    .to_state()
                }
            };
            self.pos = Some(match (pos, exhausted) {
                (Position::Nulls(_), true) => Position::Keys(None),
                (Position::Nulls(_), false) => Position::Nulls(Some(last.id)),
                (Position::Keys(_), exhausted) => {
                    self.done = exhausted;
                    Position::Keys(Some(last))
                }
            });
            self.timing.documents += documents as u64;
            self.timing.batches += 1;
            return Ok(Some(Batch {
                fields: self.fields.clone(),
                rows,
                state,
            }));
        }
    }

    fn finished(&mut self, error: Option<&ConnectorError>) {
        self.log_finished(error);
    }
}

/// Reads a stream batch by batch: each batch is read when the consumer asks for it, so at most
/// one batch (and the driver's buffer of one server batch) is in memory.
pub(crate) fn read(connector: Arc<MongoConnector>, request: ReadRequest<Stream>) -> BatchStream {
    let batch_size = request.rows_per_batch(request.stream.batch_size);
    let reader = Reader {
        connector,
        name: request.name,
        order: Order::of(&request.stream),
        stream: request.stream,
        state: request.state,
        batch_size,
        layout: None,
        fields: Arc::default(),
        pos: None,
        cursor: None,
        brackets: (None, None),
        timing: Timing::default(),
        done: false,
    };
    batch_stream(Ok(reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    #[test]
    fn keyset_queries_tie_break_on_id() {
        let order = Order::Cursor("updated_at".into());
        let at = mongodb::bson::DateTime::from_millis(1000);
        let id = ObjectId::parse_str("5ca4bbcea2dd94ee58162a68").unwrap();
        let (q, sort) = query(
            &order,
            &Position::Keys(Some(Key {
                cursor: Some(Bson::DateTime(at)),
                id: Bson::ObjectId(id),
            })),
        );
        assert_eq!(
            q,
            doc! { "$or": [
                { "updated_at": { "$gt": at } },
                { "updated_at": at, "_id": { "$gt": id } },
            ] }
        );
        assert_eq!(sort, doc! { "updated_at": 1, "_id": 1 });
        let (q, sort) = query(&order, &Position::Nulls(None));
        assert_eq!(q, doc! { "updated_at": { "$in": [Bson::Null] } });
        assert_eq!(sort, doc! { "_id": 1 });
        let filter = doc! { "status": "active" };
        assert_eq!(
            and(Some(&filter), q.clone()),
            doc! { "$and": [filter.clone(), q] }
        );
        assert_eq!(and(Some(&filter), Document::new()), filter);
    }

    #[test]
    fn resumes_from_stored_checkpoints() {
        let order = Order::Cursor("u".into());
        let at = "stream \"s\"";
        assert_eq!(start(at, &order, None).unwrap(), Position::Nulls(None));
        let id = Bson::ObjectId(ObjectId::new());
        let key = Key {
            cursor: Some(Bson::Int64(7)),
            id: id.clone(),
        };
        let state = KeysetState {
            cursor: Some(Value::Json(Bson::Int64(7).into_canonical_extjson())),
            pk: vec![Value::Json(id.clone().into_canonical_extjson())],
        };
        // Through the store (JSON text) and back.
        let stored: StreamState =
            serde_json::from_str(&serde_json::to_string(&state.to_state()).unwrap()).unwrap();
        assert_eq!(
            start(at, &order, Some(&stored)).unwrap(),
            Position::Keys(Some(key))
        );
        let nulls = KeysetState {
            cursor: Some(Value::Null),
            pk: vec![Value::Json(id.clone().into_canonical_extjson())],
        };
        assert_eq!(
            start(at, &order, Some(&nulls.to_state())).unwrap(),
            Position::Nulls(Some(id))
        );
        // A full-refresh stream ignores state; a foreign state is refused.
        let full = Order::Id { incremental: false };
        assert_eq!(
            start(at, &full, Some(&nulls.to_state())).unwrap(),
            Position::Keys(None)
        );
        let foreign = KeysetState {
            cursor: Some(Value::Int(1)),
            pk: vec![Value::Int(1)],
        };
        assert!(start(at, &order, Some(&foreign.to_state())).is_err());
    }
}
