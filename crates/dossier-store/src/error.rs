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
    /// A batch sharing its workspace with other writers met one of their writes (see the
    /// write protocol); the store retries such a batch alone, so callers rarely see it.
    #[error("a concurrent writer changed what this write read: {0}")]
    Conflict(String),
    #[error("corrupt stored {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
}

impl StoreError {
    /// A write that lost to a concurrent one (a conflict seen by the store, a deadlock or
    /// serialization failure reported by PostgreSQL) and succeeds when run again alone.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::Conflict(_) => true,
            Self::Db(e) => e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|code| code == "40P01" || code == "40001"),
            _ => false,
        }
    }

    pub(crate) fn corrupt(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            what,
            reason: e.to_string(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
