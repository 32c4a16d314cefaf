//! Dossier's side of the plugin ABI ([`dossier_plugin_abi`]).
//!
//! - [`load`] checks a library's sha256 when one is pinned, loads it (`libloading`), and
//!   refuses a missing entry symbol, a wrong ABI major, a too-small vtable or a manifest that
//!   fails validation, each with its own [`PluginError`]. A loaded library is never unloaded.
//! - [`PluginConnector`] makes a loaded plugin a
//!   [`ConnectorFactory`](dossier_connector::ConnectorFactory): registered beside the built-ins,
//!   the sync engine and the API cannot tell them apart. Every call into the plugin runs on
//!   tokio's blocking threads (`spawn_blocking`), never on the async runtime.
//! - [`PluginDir`] is the plugin directory: `install` (copy, validate, record in
//!   `plugins.toml`), `remove`, and `load_all` at start, where a plugin that fails to load is
//!   reported and skipped.

#![allow(unsafe_code)] // Loading libraries and calling them through the C ABI is unsafe by nature.

mod dir;
mod error;
mod loader;
mod source;

pub use dir::{Installation, InstalledPlugin, LoadOutcome, PluginDir, RECORD_FILE};
pub use dossier_core::sha256_hex;
pub use error::PluginError;
pub use loader::{Plugin, load};
pub use source::PluginConnector;

#[doc(hidden)]
pub use loader::validate_vtable;
#[doc(hidden)]
pub mod testing;
