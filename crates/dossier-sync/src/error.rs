use dossier_connector::ConnectorError;
use dossier_core::CoreError;
use dossier_store::StoreError;
use thiserror::Error;

/// Why a config could not be loaded or a sync could not run.
#[derive(Debug, Error)]
pub enum SyncError {
    #[error("config file {path}: {message}")]
    ConfigFile { path: String, message: String },
    #[error("config: {0}")]
    Config(String),
    // The message holds the connector's: as its `source()` too, an error chain (`{e:#}`)
    // would say the cause twice.
    #[error("source {source_name:?}: {error}")]
    Connector {
        source_name: String,
        error: ConnectorError,
    },
    #[error(transparent)]
    Mapping(#[from] CoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown source {name:?}; configured sources: {known}")]
    UnknownSource { name: String, known: String },
    #[error("source {0:?} is already syncing; wait for that run to finish")]
    AlreadyRunning(String),
    #[error(
        "source {source_name:?} is being synced by {holder}; a run was requested for when that one ends"
    )]
    RunningElsewhere { source_name: String, holder: String },
    #[error(
        "stream {stream:?} rejected {rejected} of {read} records, more than max_rejected = {max_rejected} allows: {}; fix the mapping or the data (or raise the source's `max_rejected`); the records that mapped are kept",
        reasons.join("; ")
    )]
    TooManyRejected {
        stream: String,
        rejected: u64,
        read: u64,
        max_rejected: f64,
        /// The first rejections: `record <id>: <why>`.
        reasons: Vec<String>,
    },
    #[error("cancelled; the batches committed before stay, and the next run resumes from there")]
    Cancelled,
    #[error("timed out after {0:?} (the source's `timeout`); the batches committed before stay")]
    TimedOut(std::time::Duration),
}

impl SyncError {
    /// Whether the source did not answer at all (see [`ConnectorError::unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SyncError::Connector { error, .. } if error.is_unreachable())
    }

    /// Can running the same sync again later help?
    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::Connector { error, .. } => error.is_retryable(),
            SyncError::Store(StoreError::Db(_)) => true,
            SyncError::AlreadyRunning(_) | SyncError::RunningElsewhere { .. } => true,
            _ => false,
        }
    }
}
