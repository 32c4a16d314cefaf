//! Dossier's connector SDK.
//!
//! The contract Airbyte, Singer and Hasura's data connectors converged on: `spec` (config
//! schema), `check` (can we connect and read?), `discover` (streams, fields, primary keys,
//! cursor candidates) and `read` (batches of records, each followed by an opaque state
//! checkpoint). A connector implements the typed [`Connector`] trait; [`Registry::register`]
//! wraps it in the type-erased adapter the rest of Dossier uses.

mod error;
pub mod keyset;
mod reading;
mod registry;
mod types;

pub use error::{ConnectorError, ErrorOrigin};
pub use reading::{BatchReader, batch_stream, problems_per_stream, read_all, read_to_end};
pub use registry::{ConnectorFactory, Registry, Source, StreamConfig, erase};
pub use types::{Batch, Catalog, ConnectorKind, Problem, Spec, StreamInfo, StreamState};

pub use dossier_core::Value;
pub use dossier_core::mapping::FieldInfo;

use std::sync::Arc;

use futures::stream::BoxStream;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

/// Largest batch a source or a stream may ask for (records per batch and per store
/// transaction).
pub const MAX_BATCH_SIZE: usize = 100_000;

/// Checks a `batch_size` setting: 1 to [`MAX_BATCH_SIZE`].
pub fn check_batch_size(n: usize) -> Result<(), String> {
    if (1..=MAX_BATCH_SIZE).contains(&n) {
        Ok(())
    } else {
        Err(format!(
            "`batch_size` must be between 1 and {MAX_BATCH_SIZE} (got {n})"
        ))
    }
}

/// A stream of batches, each carrying the checkpoint to resume after it.
pub type BatchStream = BoxStream<'static, Result<Batch, ConnectorError>>;

/// What a read is asked to do.
#[derive(Debug, Clone)]
pub struct ReadRequest<S> {
    /// The stream's name in the source config.
    pub name: String,
    /// The stream's connector-specific settings.
    pub stream: S,
    /// The checkpoint of the last committed batch; `None` for a first (full) read.
    pub state: Option<StreamState>,
    /// Records per batch.
    pub batch_size: usize,
}

impl<S> ReadRequest<S> {
    /// Records per batch: the stream's own setting when it has one, else the source's; at
    /// least 1.
    pub fn rows_per_batch(&self, stream_setting: Option<usize>) -> usize {
        stream_setting.unwrap_or(self.batch_size).max(1)
    }
}

/// A source connector, typed. Implement this; the registry erases the types.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + Sized + 'static {
    /// Connection settings and secrets, shared by every stream.
    type Config: DeserializeOwned + JsonSchema + Send;
    /// Per-stream settings (a table, a query, a collection, a cursor field...).
    type Stream: DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static;

    /// The name configs refer to (`connector = "sqlite"`).
    const NAME: &'static str;
    const VERSION: &'static str;

    /// Opens the source. Cheap checks (file exists, URL parses) belong here.
    async fn connect(config: Self::Config) -> Result<Self, ConnectorError>;

    /// Can we read each configured stream? One problem per stream that cannot be read.
    async fn check(&self, streams: &[(String, Self::Stream)]) -> Vec<Problem>;

    /// Every stream the source offers, with fields, primary key and cursor candidates.
    async fn discover(&self) -> Result<Catalog, ConnectorError>;

    /// The fields one configured stream returns, to check a mapping before reading.
    async fn describe(
        &self,
        name: &str,
        stream: &Self::Stream,
    ) -> Result<StreamInfo, ConnectorError>;

    /// Reads a stream from `state` on. Every batch carries the state to resume after it;
    /// an empty read yields no batch, so the stored state is never reset.
    fn read(self: Arc<Self>, request: ReadRequest<Self::Stream>) -> BatchStream;

    /// Requests the connector sent again after an error so far (an HTTP client's retries),
    /// which a run counts into its history's `retries`.
    fn retries(&self) -> u64 {
        0
    }
}
