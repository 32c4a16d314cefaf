use dossier_core::CoreError;
use thiserror::Error;

/// Everything the store can refuse or fail at.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store url {url:?} is not supported: use sqlite://<path> or postgres://user@host/db")]
    Url { url: String },
    #[error("cannot open the store at {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error(transparent)]
    Invalid(#[from] CoreError),
    #[error("{0}")]
    Refused(String),
    #[error(
        "this scheduler lost its lease on source {source_name:?} (another one took it over); nothing more was written"
    )]
    LeaseLost { source_name: String },
    #[error("corrupt stored {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
}

impl StoreError {
    pub(crate) fn corrupt(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            what,
            reason: e.to_string(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
