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
    /// The segment text form (`country = "FR" and agg.avg_basket > 50`) could not be read.
    #[error("syntax error at line {line}, column {column}: {reason}")]
    FilterSyntax {
        line: usize,
        column: usize,
        reason: String,
    },
    /// A shortcut template (`Hello {{ name.first | "there" }}`) could not be read.
    #[error("invalid template at line {line}, column {column}: {reason}")]
    Template {
        line: usize,
        column: usize,
        reason: String,
    },
}

/// The 1-based line and column (counted in characters) of byte offset `at` in `text`, so
/// errors in user-written text point where an editor would.
pub(crate) fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
