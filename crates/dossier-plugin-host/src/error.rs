use std::path::PathBuf;

use thiserror::Error;

/// Why a plugin was refused, or could not be installed, listed or removed.
#[derive(Debug, Error)]
pub enum PluginError {
    #[error("plugin {path}: cannot read the file: {message}")]
    Read { path: PathBuf, message: String },
    #[error(
        "plugin {path}: sha256 mismatch: expected {expected}, the file has {actual}; the file is corrupted or not the one pinned"
    )]
    Sha256Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("plugin {path}: not a loadable library: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "plugin {path}: missing entry symbol `{symbol}`; is it a Dossier plugin (built with export_connector!)?"
    )]
    MissingEntry { path: PathBuf, symbol: String },
    #[error("plugin {path}: its entry point returned no vtable")]
    NullVtable { path: PathBuf },
    #[error(
        "plugin {path}: built for plugin ABI {found_major}.{found_minor}, this dossier speaks ABI {expected}.x; rebuild it against this version of dossier-plugin-sdk"
    )]
    AbiMajor {
        path: PathBuf,
        found_major: u32,
        found_minor: u32,
        expected: u32,
    },
    #[error(
        "plugin {path}: vtable too small: {size} bytes, ABI {major}.{minor} needs at least {min}"
    )]
    VtableTooSmall {
        path: PathBuf,
        size: usize,
        min: usize,
        major: u32,
        minor: u32,
    },
    #[error("plugin {path}: invalid manifest: {reason}")]
    InvalidManifest { path: PathBuf, reason: String },
    #[error("plugin {name:?}: {message}")]
    Conflict { name: String, message: String },
    #[error("plugin directory {path}: {message}")]
    Dir { path: PathBuf, message: String },
    #[error("no plugin named {name:?} is installed; installed: {installed}")]
    NotInstalled { name: String, installed: String },
    #[error("plugin file {file:?} is not a file name in the plugin directory")]
    NotInPluginDir { file: String },
}
