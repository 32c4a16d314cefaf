//! Driver errors as connector errors: whose fault, and whether retrying can help.

use std::fmt::Display;

use dossier_connector::ConnectorError;
use mongodb::error::{Error, ErrorKind};

/// Server error codes that mean "try again later": the server is shutting down, stepping
/// down, unreachable or timed out, or a cursor was lost with its connection.
const TRANSIENT_CODES: &[i32] = &[
    6, 7, 43, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];
/// Codes that mean the user may not do this.
const PERMISSION_CODES: &[i32] = &[13, 8000];
/// Codes of a query the server refuses (bad filter or projection, unknown operator).
const INVALID_CODES: &[i32] = &[2, 9, 14, 17, 31253, 31254, 51270];

/// The message of a driver error, without the driver's debugging noise.
pub fn message(e: &Error) -> String {
    match &*e.kind {
        ErrorKind::Command(c) if c.code_name.is_empty() => {
            format!("{} (code {})", c.message, c.code)
        }
        ErrorKind::Command(c) => format!("{} ({} {})", c.message, c.code_name, c.code),
        ErrorKind::Authentication { message, .. } => format!("authentication failed: {message}"),
        ErrorKind::ServerSelection { message, .. } => {
            format!("no server answered in time: {message}")
        }
        ErrorKind::Io(io) => format!("connection lost: {io}"),
        ErrorKind::ConnectionPoolCleared { message, .. } => format!("connection lost: {message}"),
        ErrorKind::InvalidArgument { message, .. } => message.clone(),
        ErrorKind::DnsResolve { message, .. } => format!("cannot resolve the host: {message}"),
        ErrorKind::InvalidTlsConfig { message, .. } => format!("invalid TLS settings: {message}"),
        ErrorKind::Internal { message, .. } | ErrorKind::InvalidResponse { message, .. } => {
            message.clone()
        }
        _ => e.to_string(),
    }
    .trim_end_matches('.')
    .to_string()
}

/// The connector error for a driver error, prefixed with `context`. While `configuring`
/// (checking or describing a stream) a query the server refuses is the config's fault; while
/// reading it is a source error that retrying does not fix.
pub fn error(context: impl Display, e: &Error, configuring: bool) -> ConnectorError {
    let msg = format!("{context}: {}", message(e));
    match &*e.kind {
        ErrorKind::Authentication { .. } | ErrorKind::InvalidTlsConfig { .. } => {
            ConnectorError::config(msg)
        }
        ErrorKind::InvalidArgument { .. } if configuring => ConnectorError::config(msg),
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => ConnectorError::remote(msg, true),
        ErrorKind::Command(c) if TRANSIENT_CODES.contains(&c.code) => {
            ConnectorError::remote(msg, true)
        }
        ErrorKind::Command(c) if INVALID_CODES.contains(&c.code) && configuring => {
            ConnectorError::config(msg)
        }
        ErrorKind::Command(c) if PERMISSION_CODES.contains(&c.code) => {
            ConnectorError::remote(msg, false)
        }
        ErrorKind::BsonDeserialization(_) | ErrorKind::Internal { .. } => {
            ConnectorError::internal(msg)
        }
        _ if e.contains_label("RetryableReadError")
            || e.contains_label("ResumableChangeStreamError") =>
        {
            ConnectorError::remote(msg, true)
        }
        _ => ConnectorError::remote(msg, false),
    }
}

/// `text` with the password of `uri` (if any) replaced by `***`: driver messages about a
/// connection string may quote it.
pub fn redact(text: &str, uri: &str) -> String {
    let Some(start) = uri.find("://").map(|i| i + 3) else {
        return text.to_string();
    };
    let rest = &uri[start..];
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return text.to_string();
    };
    match userinfo.split_once(':') {
        Some((_, password)) if !password.is_empty() => text.replace(password, "***"),
        _ => text.to_string(),
    }
}

/// `e` with the password of `uri` cut out of its message.
pub fn redacted(e: ConnectorError, uri: &str) -> ConnectorError {
    e.map_message(|m| redact(m, uri))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dossier_connector::ErrorOrigin;

    #[test]
    fn classifies_driver_errors() {
        let io = Error::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset by peer",
        ));
        let e = error("stream \"c\"", &io, false);
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().contains("connection lost"), "{e}");
        let bad = Error::custom("x");
        assert_eq!(error("x", &bad, false).origin(), ErrorOrigin::Remote);
    }

    #[test]
    fn redacts_passwords() {
        let uri = "mongodb://ada:s3cret@db.example.com:27017/?authSource=admin";
        assert_eq!(
            redact("cannot parse mongodb://ada:s3cret@db", uri),
            "cannot parse mongodb://ada:***@db"
        );
        assert_eq!(redact("nothing", "mongodb://db"), "nothing");
    }
}
