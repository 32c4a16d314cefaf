//! MongoDB source connector for Dossier, over the official driver.
//!
//! ```toml
//! [[sources]]
//! name = "shop"
//! connector = "mongodb"
//! config = { uri = "${MONGODB_URI}", database = "${MONGODB_DB}" }
//!
//! [[sources.streams]]
//! name = "customers"
//! read = { collection = "customers", cursor = "updated_at" }
//!
//! [[sources.streams]]
//! name = "orders"
//! read = { collection = "orders", cursor = "updated_at", filter = { status = "paid" }, batch_size = 5000 }
//! ```
//!
//! # Rules
//!
//! - **Connection**: `uri` is a MongoDB connection string (`mongodb://` or `mongodb+srv://`,
//!   with its options: TLS, `authSource`, replica set, read preference). It usually holds
//!   credentials: write `${MONGODB_URI}`. It is kept as a secret, never logged nor shown, and
//!   its password is cut out of driver messages. Connecting pings the server.
//! - **Incremental reads** (a stream with a `cursor`) read the documents in `(cursor, _id)`
//!   order and resume strictly after the last committed document with
//!   `{$or: [{c: {$gt: v}}, {c: v, _id: {$gt: id}}]}`, so documents sharing a cursor value are
//!   neither lost nor duplicated at batch boundaries. A read is one server cursor (one more
//!   for documents without a cursor value, below) whose server batches are the stream's
//!   `batch_size`; each batch of documents is converted when the consumer asks for it, so
//!   at most one batch is in memory, and carries a [`KeysetState`] whose values are the
//!   cursor's and `_id`'s canonical extended JSON, so a resumed read compares exactly the
//!   same BSON values. `cursor = "_id"` reads inserted-only collections in ObjectId order.
//! - **Missing or null cursors** sort first: those documents are read (by `_id`) before the
//!   others, by a full read only (the first, or one after the stream's state is reset);
//!   `check` reports them.
//! - **One type per key**: MongoDB compares values of one type only (`$gt` on a date never
//!   matches a string), so a cursor or `_id` of another type than the ones read before stops
//!   the read with a config error rather than skipping documents, and a cursor that is an
//!   array or a document is refused; `check` reports a cursor with mixed types in its sample.
//! - **No cursor**: the collection is read whole on every run in `_id` order; every batch
//!   carries [`StreamState::full_refresh`], from which the framework detects deletions.
//! - **Fields**: a stream's fields are inferred from a bounded sample (`sample_size`
//!   documents: half the first, half the last by `_id`), fixed for a read: `_id`, every field
//!   path (nested documents both whole, `address`, and flattened, `address.city`), plus the
//!   cursor and the fields a `projection` lists. An object with more than
//!   [`schema::MAX_OBJECT_KEYS`] distinct keys across the sample is a map (keys are data) and
//!   is read whole only. A field missing from a document is `Null`.
//! - **Types**: ObjectId → `Text` (hex); Int32, Int64 → `Int`; Double → `Float`; Decimal128 →
//!   exact `Decimal` (plain notation, as for SQL decimals: a number in contact data when a
//!   double holds it exactly, else an exact string); Date → `DateTime` (UTC, milliseconds);
//!   Timestamp → `DateTime` of its seconds; booleans and strings as such; null and undefined
//!   → `Null`; documents and arrays → `Json`, whole (ObjectIds, dates, decimals inside as
//!   strings). Binary data, regular expressions, JavaScript code, DBPointers, MinKey and
//!   MaxKey cannot be mapped: `discover` marks the field unsupported and a mapping that uses
//!   it is refused; a value of such a type found later reads as its extended JSON, which a
//!   mapping refuses for that record (counted as rejected, with the reason).
//! - **A field whose type changes between documents** is read as each document has it (a
//!   string stays a string, a number a number): `discover` lists its types with their
//!   frequency (`int 60, string 40`), a mapping's transforms (`| number`, `| datetime`) make
//!   them one type, and a value the mapping cannot take rejects its record with the reason;
//!   nothing is coerced or dropped silently.
//! - **Arrays** are kept whole, or, with `unwind = "orders"`, each element becomes a record
//!   of its own with the document's fields, the element's (`orders.total`, or `orders` for a
//!   scalar) and its position `orders.$index` (primary key `["_id", "orders.$index"]`): an
//!   embedded `orders` array maps to sessions like an `orders` collection. Elements removed
//!   from an array are detected as deleted by a stream without cursor (full refresh).
//! - **Logs**: each read ends with an `info` event `read finished` (stream, documents,
//!   records, batches, `server_wait_ms`: time waiting for the server's batches,
//!   `connector_ms`: time turning documents into records), which tells whether the server or
//!   the connector is the bottleneck; and each sample (`describe`, `discover`, `check`) an
//!   `info` event `sampled` with its time.
//! - **Errors**: authentication failures, a missing collection and a filter the server
//!   refuses are config errors naming the stream; an unreachable server, a lost connection or
//!   cursor and a stepping-down or shutting-down server are retryable source errors; no
//!   permission to read is a source error that retrying does not fix.
//!
//! [`KeysetState`]: dossier_connector::keyset::KeysetState
//! [`StreamState::full_refresh`]: dossier_connector::StreamState::full_refresh

mod config;
mod convert;
mod error;
mod read;
pub mod schema;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dossier_connector::{
    BatchStream, Catalog, Connector, ConnectorError, Problem, ReadRequest, StreamInfo,
    problems_per_stream,
};
use futures::TryStreamExt as _;
use mongodb::action::Action as _;
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database};
use secrecy::ExposeSecret as _;

pub use config::{Config, MAX_SAMPLE_SIZE, Projection, Stream};
pub use convert::{decimal, to_json, to_value, type_name};
use error::error;
use schema::{INDEX_SUFFIX, Sample};

/// The MongoDB connector: one client (a connection pool) to one database.
pub struct MongoConnector {
    db: Database,
    database: String,
    /// Where the source is, for messages: hosts and database, never credentials.
    target: String,
    sample_size: usize,
    /// The fields `describe` gave each stream (by name and settings): a read of the same
    /// stream returns them, so a mapping checked against them binds to every batch.
    described: Mutex<HashMap<String, Vec<String>>>,
}

impl std::fmt::Debug for MongoConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoConnector")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl MongoConnector {
    /// The database read.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Where the source is: `host:port/database`, never credentials.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub(crate) fn collection(&self, name: &str) -> Collection<RawDocumentBuf> {
        self.db.collection(name)
    }

    async fn collection_names(&self) -> Result<Vec<String>, ConnectorError> {
        let mut names = self.db.list_collection_names().await.map_err(|e| {
            error(
                format!("cannot list the collections of {}", self.target),
                &e,
                true,
            )
        })?;
        names.retain(|n| !n.starts_with("system."));
        names.sort();
        Ok(names)
    }

    /// Refuses a stream whose collection does not exist, listing those that do.
    async fn check_collection(&self, name: &str, stream: &Stream) -> Result<(), ConnectorError> {
        let names = self.collection_names().await?;
        if names.contains(&stream.collection) {
            return Ok(());
        }
        let shown: Vec<&str> = names.iter().take(20).map(String::as_str).collect();
        let more = names.len().saturating_sub(shown.len());
        Err(ConnectorError::config(format!(
            "stream {name:?}: no collection {:?} in database {:?}; it has: {}{}",
            stream.collection,
            self.database,
            if shown.is_empty() {
                "none".to_string()
            } else {
                shown.join(", ")
            },
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )))
    }

    /// A bounded sample of a stream's documents: half the first and half the last by `_id`.
    async fn sample(
        &self,
        at: &str,
        collection: &str,
        filter: Option<&Document>,
        projection: Option<Document>,
        unwind: Option<&str>,
    ) -> Result<Sample, ConnectorError> {
        let coll = self.collection(collection);
        let first = self.sample_size.div_ceil(2);
        let err = |e: mongodb::error::Error| {
            error(
                format!("{at}: cannot sample collection {collection:?}"),
                &e,
                true,
            )
        };
        let filter = filter.cloned().unwrap_or_default();
        let docs: Vec<RawDocumentBuf> = coll
            .find(filter.clone())
            .sort(doc! { "_id": 1 })
            .optional(projection.clone(), |a, p| a.projection(p))
            .limit(first as i64)
            .await
            .map_err(err)?
            .try_collect()
            .await
            .map_err(err)?;
        let mut sample = Sample::default();
        for d in &docs {
            sample.add(d, unwind);
        }
        let last_id = docs
            .last()
            .and_then(|d| d.get("_id").ok().flatten())
            .map(convert::to_bson);
        if docs.len() == first
            && self.sample_size > first
            && let Some(last_id) = last_id
        {
            let after = doc! { "_id": { "$gt": last_id } };
            let rest = if filter.is_empty() {
                after
            } else {
                doc! { "$and": [filter, after] }
            };
            let mut cursor = coll
                .find(rest)
                .sort(doc! { "_id": -1 })
                .optional(projection, |a, p| a.projection(p))
                .limit((self.sample_size - first) as i64)
                .await
                .map_err(err)?;
            while let Some(d) = cursor.try_next().await.map_err(err)? {
                sample.add(&d, unwind);
            }
        }
        Ok(sample)
    }

    /// Samples a configured stream: its fields and what discovery says of it.
    async fn describe_stream(
        &self,
        name: &str,
        stream: &Stream,
    ) -> Result<(StreamInfo, Sample), ConnectorError> {
        let at = format!("stream {name:?}");
        let started = std::time::Instant::now();
        self.check_collection(name, stream).await?;
        let sample = self
            .sample(
                &at,
                &stream.collection,
                stream.filter.as_ref(),
                stream.projection_doc(),
                stream.unwind.as_deref(),
            )
            .await?;
        let mut always = vec!["_id".to_string()];
        always.extend(stream.cursor.clone());
        if let Some(Projection::Include(paths)) = &stream.projection {
            always.extend(paths.iter().cloned());
        }
        let mut primary_key = vec!["_id".to_string()];
        if let Some(u) = &stream.unwind {
            always.push(u.clone());
            always.push(format!("{u}{INDEX_SUFFIX}"));
            primary_key.push(format!("{u}{INDEX_SUFFIX}"));
        }
        let info = StreamInfo {
            name: name.to_string(),
            fields: sample.fields(&always),
            primary_key,
            cursor_candidates: sample.cursor_candidates(),
            sampled: true,
        };
        tracing::info!(
            stream = %name,
            collection = %stream.collection,
            records = sample.records(),
            fields = info.fields.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "sampled"
        );
        Ok((info, sample))
    }

    /// The fields a read of `name` returns: those `describe` gave it, else a fresh sample's.
    pub(crate) async fn fields(
        &self,
        name: &str,
        stream: &Stream,
    ) -> Result<Vec<String>, ConnectorError> {
        if let Some(fields) = self
            .described
            .lock()
            .expect("described")
            .get(&described_key(name, stream))
        {
            return Ok(fields.clone());
        }
        let info = self.describe(name, stream).await?;
        Ok(info.fields.into_iter().map(|f| f.name).collect())
    }

    async fn check_stream(
        &self,
        name: &str,
        stream: &Stream,
    ) -> Result<Vec<String>, ConnectorError> {
        let at = format!("stream {name:?}");
        self.check_collection(name, stream).await?;
        let coll = self.collection(&stream.collection);
        let read_err = |e: mongodb::error::Error| {
            error(
                format!(
                    "{at}: cannot read collection {:?} of {}",
                    stream.collection, self.target
                ),
                &e,
                true,
            )
        };
        coll.find_one(stream.filter.clone().unwrap_or_default())
            .optional(stream.projection_doc(), |a, p| a.projection(p))
            .await
            .map_err(read_err)?;
        let mut warnings = vec![];
        let Some(cursor) = stream.cursor.as_deref().filter(|c| *c != "_id") else {
            return Ok(warnings);
        };
        let (_, sample) = self.describe_stream(name, stream).await?;
        let types: Vec<&str> = sample
            .types(cursor)
            .into_iter()
            .filter(|t| *t != "null")
            .collect();
        let numbers = ["int", "long", "double", "decimal"];
        let kinds = types
            .iter()
            .map(|t| if numbers.contains(t) { "number" } else { t })
            .collect::<std::collections::BTreeSet<_>>();
        if kinds.len() > 1 || kinds.contains("object") || kinds.contains("array") {
            warnings.push(format!(
                "the cursor {cursor:?} holds {} in the sampled documents; a cursor must hold one \
                 type of single value (a read stops at the first document of another type)",
                types.join(", ")
            ));
        }
        let nulls = and_filter(
            stream.filter.as_ref(),
            doc! { cursor: { "$in": [Bson::Null] } },
        );
        if coll
            .find_one(nulls)
            .projection(doc! { "_id": 1 })
            .await
            .map_err(read_err)?
            .is_some()
        {
            warnings.push(format!(
                "some documents have no cursor {cursor:?} (missing or null); they are read only \
                 by a full read (the first read, or a read after the stream's state is reset)"
            ));
        }
        Ok(warnings)
    }
}

fn described_key(name: &str, stream: &Stream) -> String {
    format!("{name}\0{stream:?}")
}

fn and_filter(a: Option<&Document>, b: Document) -> Document {
    match a {
        Some(a) if !a.is_empty() => doc! { "$and": [a.clone(), b] },
        _ => b,
    }
}

/// Where a client connects, for messages: its hosts, never credentials.
fn hosts(options: &ClientOptions) -> String {
    options
        .hosts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Why no host of `options` accepts a TCP connection, when none does: the driver would
/// only report it after its whole server selection timeout (10 s by default), retrying
/// what a refused port or an unknown host will not change. `None` when one accepts, when
/// one cannot be told within a second (a filtered port: the driver's own wait decides, and
/// the probe adds at most that second to it), or when a host is a Unix socket.
/// (`mongodb+srv://` hosts are resolved by then.)
async fn all_refuse(options: &ClientOptions, timeout: std::time::Duration) -> Option<String> {
    // A refusal or an unknown host answers in milliseconds; only silence takes longer.
    let timeout = timeout.min(std::time::Duration::from_secs(1));
    let mut reasons = vec![];
    for host in &options.hosts {
        let mongodb::options::ServerAddress::Tcp { host, port } = host else {
            return None;
        };
        let addr = format!("{host}:{}", port.unwrap_or(27017));
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Err(e)) => reasons.push(format!("{addr}: {e}")),
            Ok(Ok(_)) | Err(_) => return None,
        }
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

#[async_trait::async_trait]
impl Connector for MongoConnector {
    type Config = Config;
    type Stream = Stream;

    const NAME: &'static str = "mongodb";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    async fn connect(config: Config) -> Result<Self, ConnectorError> {
        config.validate().map_err(ConnectorError::config)?;
        let uri = config.uri.expose_secret();
        if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
            return Err(ConnectorError::config(
                "`uri` must start with mongodb:// or mongodb+srv:// (e.g. mongodb://host:27017)",
            ));
        }
        let timeout = config.connect_timeout();
        let parsed = tokio::time::timeout(timeout, ClientOptions::parse(uri))
            .await
            .map_err(|_| {
                ConnectorError::remote(
                    format!(
                        "cannot resolve `uri` within {}s (`connect_timeout_secs`)",
                        timeout.as_secs()
                    ),
                    true,
                )
            })?;
        let mut options = parsed.map_err(|e| {
            error::redacted(
                error("`uri` is not a valid MongoDB connection string", &e, true),
                uri,
            )
        })?;
        options
            .app_name
            .get_or_insert_with(|| "dossier".to_string());
        options.connect_timeout.get_or_insert(timeout);
        options.server_selection_timeout.get_or_insert(timeout);
        let target = format!("{}/{}", hosts(&options), config.database);
        let connect_error = |e: mongodb::error::Error| {
            let e = match &*e.kind {
                // No server answered at all (refused, unknown host): a run someone watches
                // fails at once rather than retrying, as for the other connectors.
                mongodb::error::ErrorKind::ServerSelection { .. }
                | mongodb::error::ErrorKind::DnsResolve { .. } => ConnectorError::unreachable(
                    &format!("mongodb at {target}"),
                    &error::message(&e),
                ),
                _ => error(format!("cannot connect to mongodb at {target}"), &e, true),
            };
            error::redacted(e, uri)
        };
        if let Some(refused) = all_refuse(&options, timeout).await {
            return Err(error::redacted(
                ConnectorError::unreachable(&format!("mongodb at {target}"), &refused),
                uri,
            ));
        }
        let client = Client::with_options(options).map_err(connect_error)?;
        let db = client.database(&config.database);
        db.run_command(doc! { "ping": 1 })
            .await
            .map_err(connect_error)?;
        tracing::debug!(%target, "connected to mongodb");
        Ok(Self {
            db,
            sample_size: config.sample_size(),
            database: config.database,
            target,
            described: Mutex::default(),
        })
    }

    async fn check(&self, streams: &[(String, Stream)]) -> Vec<Problem> {
        problems_per_stream(streams, |name, stream| self.check_stream(name, stream)).await
    }

    async fn discover(&self) -> Result<Catalog, ConnectorError> {
        let mut streams = vec![];
        for name in self.collection_names().await? {
            let stream = Stream::collection(&name);
            let (info, _) = self.describe_stream(&name, &stream).await?;
            streams.push(info);
        }
        Ok(Catalog { streams })
    }

    async fn describe(&self, name: &str, stream: &Stream) -> Result<StreamInfo, ConnectorError> {
        let (info, _) = self.describe_stream(name, stream).await?;
        self.described.lock().expect("described").insert(
            described_key(name, stream),
            info.fields.iter().map(|f| f.name.clone()).collect(),
        );
        Ok(info)
    }

    fn read(self: Arc<Self>, request: ReadRequest<Stream>) -> BatchStream {
        read::read(self, request)
    }
}
