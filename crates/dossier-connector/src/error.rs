use thiserror::Error;

/// Whose fault an error is, which decides what the user should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorOrigin {
    /// The user's configuration: fix the config.
    Config,
    /// The remote side (server down, permission, timeout): may pass.
    Remote,
    /// A bug in Dossier or the connector.
    Internal,
}

/// The words of an [`ConnectorError::unreachable`] error's message.
const UNREACHABLE: &str = "is unreachable:";

/// A connector error: says whose fault it is and whether retrying can help.
#[derive(Debug, Clone, Error)]
pub enum ConnectorError {
    #[error("config error: {0}")]
    Config(String),
    #[error("source error: {message}")]
    Remote {
        message: String,
        retryable: bool,
        /// Nothing answered at the source's address ([`ConnectorError::unreachable`]).
        unreachable: bool,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConnectorError {
    pub fn config(msg: impl Into<String>) -> Self {
        Self::Config(msg.into())
    }

    pub fn remote(msg: impl Into<String>, retryable: bool) -> Self {
        Self::Remote {
            message: msg.into(),
            retryable,
            unreachable: false,
        }
    }

    /// Nothing answers at the source's address (connection refused, unknown host): retryable,
    /// as a server may come back, but a run someone watches fails at once
    /// ([`is_unreachable`](Self::is_unreachable)). `what` names the source, `why` says where
    /// and how.
    pub fn unreachable(what: &str, why: &str) -> Self {
        Self::Remote {
            message: format!("{what} {UNREACHABLE} {why}"),
            retryable: true,
            unreachable: true,
        }
    }

    /// Whether this is an [`unreachable`](Self::unreachable) error.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Remote {
                unreachable: true,
                ..
            }
        )
    }

    /// The same error with its message rewritten by `f` (to redact a secret, say): whose
    /// fault it is, whether it may pass and whether the source was unreachable stay.
    pub fn map_message(self, f: impl FnOnce(&str) -> String) -> Self {
        match self {
            Self::Config(m) => Self::Config(f(&m)),
            Self::Remote {
                message,
                retryable,
                unreachable,
            } => Self::Remote {
                message: f(&message),
                retryable,
                unreachable,
            },
            Self::Internal(m) => Self::Internal(f(&m)),
        }
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }

    pub fn origin(&self) -> ErrorOrigin {
        match self {
            Self::Config(_) => ErrorOrigin::Config,
            Self::Remote { .. } => ErrorOrigin::Remote,
            Self::Internal(_) => ErrorOrigin::Internal,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Remote {
                retryable: true,
                ..
            }
        )
    }
}
