//! What can go wrong running a source, and whose fault each is.

use dossier_connector::ConnectorError;
use thiserror::Error;

/// An error of a source's run. `at` says which source and which command (`airbyte source
/// \`source-faker\` (read of stream "users")`), `line` which line of its output.
#[derive(Debug, Error)]
pub enum AirbyteError {
    #[error("{0}")]
    Config(String),
    /// Installing or removing a package (its pip's last lines included).
    #[error("{0}")]
    Install(String),
    #[error("{at}: cannot start `{program}`: {source}")]
    Spawn {
        at: String,
        program: String,
        source: std::io::Error,
    },
    #[error("{at}: {what}: {source}")]
    Io {
        at: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(
        "{at}: line {line} is longer than {limit} bytes (`max_line_bytes`); nothing after the last state was committed"
    )]
    LineTooLong { at: String, line: u64, limit: usize },
    #[error("{at}: line {line} is not a JSON message ({error}): {start}")]
    InvalidJson {
        at: String,
        line: u64,
        error: String,
        start: String,
    },
    #[error("{at}: line {line}: {message}")]
    Protocol {
        at: String,
        line: u64,
        message: String,
    },
    #[error("{at}: wrote nothing for {secs} s (`idle_timeout_secs`) and was stopped")]
    Idle { at: String, secs: u64 },
    #[error("{at}: exited with {status}{detail}")]
    Exited {
        at: String,
        status: String,
        detail: String,
    },
    #[error("{at}: the source failed ({failure_type}): {message}")]
    Trace {
        at: String,
        failure_type: String,
        message: String,
    },
    #[error(
        "{at}: more than {limit} records without a STATE message covering them; records commit only with the state after them, so raise `max_records_per_state` or read the stream in full_refresh mode"
    )]
    TooManyRecords { at: String, limit: usize },
}

impl From<AirbyteError> for ConnectorError {
    fn from(e: AirbyteError) -> Self {
        let message = e.to_string();
        match &e {
            AirbyteError::Config(_)
            | AirbyteError::Install(_)
            | AirbyteError::TooManyRecords { .. } => ConnectorError::config(message),
            AirbyteError::Spawn { source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                ConnectorError::config(message)
            }
            AirbyteError::Spawn { .. } | AirbyteError::Io { .. } => {
                ConnectorError::internal(message)
            }
            AirbyteError::Trace { failure_type, .. } => match failure_type.as_str() {
                "config_error" => ConnectorError::config(message),
                "transient_error" => ConnectorError::remote(message, true),
                _ => ConnectorError::remote(message, false),
            },
            // A source that crashed or hung without saying why may well pass (a network
            // outage, the machine short of memory): the run retries from the last state.
            AirbyteError::Exited { .. } | AirbyteError::Idle { .. } => {
                ConnectorError::remote(message, true)
            }
            // The source broke the protocol: the same input fails the same way.
            AirbyteError::LineTooLong { .. }
            | AirbyteError::InvalidJson { .. }
            | AirbyteError::Protocol { .. } => ConnectorError::remote(message, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dossier_connector::ErrorOrigin;

    #[test]
    fn trace_failure_types_classify() {
        let trace = |t: &str| -> ConnectorError {
            AirbyteError::Trace {
                at: "s".into(),
                failure_type: t.into(),
                message: "m".into(),
            }
            .into()
        };
        assert_eq!(trace("config_error").origin(), ErrorOrigin::Config);
        assert!(trace("transient_error").is_retryable());
        let system = trace("system_error");
        assert_eq!(system.origin(), ErrorOrigin::Remote);
        assert!(!system.is_retryable());
        let missing: ConnectorError = AirbyteError::Spawn {
            at: "s".into(),
            program: "nope".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }
        .into();
        assert_eq!(missing.origin(), ErrorOrigin::Config);
    }
}
