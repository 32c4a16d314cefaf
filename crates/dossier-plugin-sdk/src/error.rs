use thiserror::Error;

/// A value that does not cross the plugin boundary.
#[derive(Debug, Error)]
pub enum WireError {
    #[error("cannot encode {what}: {message}")]
    Encode { what: &'static str, message: String },
    #[error("cannot decode {what} (is the plugin built for this version of dossier?): {message}")]
    Decode { what: &'static str, message: String },
}
