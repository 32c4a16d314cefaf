use thiserror::Error;

/// Every way the core model refuses input. Messages are lowercase, say what and where.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    #[error("invalid data key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("invalid value for {key:?}: {reason}")]
    InvalidValue { key: String, reason: String },
    #[error("invalid mapping for stream {stream:?}, field {field:?}: {reason}")]
    Mapping {
        stream: String,
        field: String,
        reason: String,
    },
    #[error("record {record} of stream {stream:?}: {reason}")]
    Record {
        stream: String,
        record: String,
        reason: String,
    },
    #[error("invalid aggregate rule {name:?}: {reason}")]
    Rule { name: String, reason: String },
    #[error("invalid filter at {path}: {reason}")]
    Filter { path: String, reason: String },
}
