//! Server errors, classified by drivers, turned into connector errors with their context.

use std::fmt::Display;

use dossier_connector::ConnectorError;

/// What kind of failure a server error is; drivers classify their errors into these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Wrong user or password, locked account: the config's fault.
    Auth,
    /// The database named in the config does not exist.
    UnknownDatabase,
    /// No such table, column or function.
    Undefined,
    /// Invalid SQL or settings (a syntax error, a write in a read-only transaction).
    Invalid,
    /// The user may not read this.
    Permission,
    /// Nothing listens at the server's address (connection refused, no route): may pass, but
    /// not within seconds.
    Unreachable,
    /// The server is restarting, overloaded, or cancelled the statement: may pass.
    Transient,
    /// The connection broke or the server ended it: may pass, on a new connection.
    ConnectionLost,
    /// A value the driver could not decode: a bug.
    Internal,
    /// Anything else the server refused.
    Other,
}

/// A server or driver error, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub class: ErrorClass,
    pub message: String,
}

impl DbError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

impl Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The connector error for `e`, prefixed with `context`. While `configuring` (describing or
/// checking a stream) invalid SQL and missing objects are the config's fault; while reading
/// they are source errors that retrying does not fix (a table dropped mid-read).
pub fn error(context: impl Display, e: DbError, configuring: bool) -> ConnectorError {
    let message = format!("{context}: {}", e.message);
    match e.class {
        ErrorClass::Auth | ErrorClass::UnknownDatabase => ConnectorError::config(message),
        ErrorClass::Undefined | ErrorClass::Invalid if configuring => {
            ConnectorError::config(message)
        }
        ErrorClass::Unreachable => ConnectorError::unreachable(&context.to_string(), &e.message),
        ErrorClass::Transient | ErrorClass::ConnectionLost => ConnectorError::remote(message, true),
        ErrorClass::Internal => ConnectorError::internal(message),
        ErrorClass::Permission
        | ErrorClass::Undefined
        | ErrorClass::Invalid
        | ErrorClass::Other => ConnectorError::remote(message, false),
    }
}

/// The error of a failed connection attempt, naming the server and user (never the password).
pub fn connect_error(engine: &str, target: &str, user: &str, e: DbError) -> ConnectorError {
    match e.class {
        ErrorClass::Auth => ConnectorError::config(format!(
            "cannot connect to {engine} at {target} as user {user:?}: {}; check `user` and the \
             password (`password_env`)",
            e.message
        )),
        ErrorClass::Unreachable => error(format!("{engine} at {target}"), e, true),
        _ => error(format!("cannot connect to {engine} at {target}"), e, true),
    }
}

/// The class of a driver-side sqlx error (I/O, TLS, pool, decoding), the same for every
/// server; server errors (`sqlx::Error::Database`) are classified by each driver.
pub fn driver_error_class(e: &sqlx::Error) -> ErrorClass {
    match e {
        sqlx::Error::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            )
            // An unknown host: the standard library gives it no kind of its own.
            || e.to_string().starts_with("failed to lookup address information") =>
        {
            ErrorClass::Unreachable
        }
        // A reset, a broken pipe, the stream ending: the connection is gone.
        sqlx::Error::Io(_) => ErrorClass::ConnectionLost,
        sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => ErrorClass::Transient,
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. } => ErrorClass::Internal,
        sqlx::Error::Configuration(_) => ErrorClass::Invalid,
        _ => ErrorClass::Other,
    }
}

/// Refuses a statement that takes `n` parameters (spelled as `spelled`, e.g. `$1...`): a
/// `query` must be written with its values in it.
pub fn refuse_parameters(n: usize, spelled: &str) -> Result<(), DbError> {
    if n > 0 {
        return Err(DbError::new(
            ErrorClass::Invalid,
            format!("it has {n} parameter(s) ({spelled}); write the values into it"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dossier_connector::ErrorOrigin;

    #[test]
    fn classes_decide_whose_fault() {
        let e = |class| DbError::new(class, "boom");
        assert_eq!(
            error("x", e(ErrorClass::Undefined), true).origin(),
            ErrorOrigin::Config
        );
        assert_eq!(
            error("x", e(ErrorClass::Undefined), false).origin(),
            ErrorOrigin::Remote
        );
        assert!(error("x", e(ErrorClass::Transient), false).is_retryable());
        assert!(error("x", e(ErrorClass::ConnectionLost), false).is_retryable());
        assert!(!error("x", e(ErrorClass::Permission), true).is_retryable());
        let refused = sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(driver_error_class(&refused), ErrorClass::Unreachable);
        // How the standard library words a name that does not resolve (no kind of its own).
        let unknown_host = std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        );
        assert_eq!(
            driver_error_class(&sqlx::Error::Io(unknown_host)),
            ErrorClass::Unreachable
        );
        let reset = sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into());
        assert_eq!(driver_error_class(&reset), ErrorClass::ConnectionLost);
        let gone = connect_error(
            "postgres",
            "db:5432/shop",
            "ada",
            e(ErrorClass::Unreachable),
        );
        assert!(gone.is_unreachable() && gone.is_retryable(), "{gone}");
        assert!(
            gone.to_string()
                .contains("postgres at db:5432/shop is unreachable: boom"),
            "{gone}"
        );
        let auth = connect_error("postgres", "db:5432/shop", "ada", e(ErrorClass::Auth));
        assert_eq!(auth.origin(), ErrorOrigin::Config);
        assert!(
            auth.to_string()
                .contains(r#"at db:5432/shop as user "ada": boom"#),
            "{auth}"
        );
    }
}
