//! Write a Dossier connector plugin.
//!
//! A plugin is a connector compiled as a dynamic library (`crate-type = ["cdylib"]`) that
//! Dossier loads at run time (`dossier connectors install`). Implement the same
//! [`Connector`](dossier_connector::Connector) trait as the built-in connectors, then export it:
//!
//! ```ignore
//! dossier_plugin_sdk::export_connector!(my_crate::MyConnector);
//! ```
//!
//! The macro exports the one entry symbol of the [C ABI](dossier_plugin_abi). Behind it the
//! SDK runs the connector on the plugin's own tokio runtime, catches every panic (a panic
//! becomes an internal error; it never unwinds into, nor aborts, the host), forwards the
//! connector's `tracing` events to the host's log, and encodes batches and state as
//! MessagePack ([`wire`]). See `docs/plugins.md` for the walk from `cargo new` to an installed
//! connector.
//!
//! A plugin must be built with `panic = "unwind"` (the default): with `panic = "abort"` a
//! panic cannot be caught, and the macro refuses to compile.

#![allow(unsafe_code)] // The plugin side of a C ABI: raw pointers from the host, by contract.

mod error;
#[doc(hidden)]
pub mod guest;
mod logging;
pub mod wire;

pub use error::WireError;

pub use async_trait::async_trait;
pub use dossier_connector as connector;
pub use dossier_plugin_abi as abi;

/// Exports a [`Connector`](dossier_connector::Connector) as a Dossier plugin: defines the
/// ABI's entry symbol, `dossier_plugin_entry`. Use it once, in a `cdylib` crate.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        #[cfg(panic = "abort")]
        compile_error!(
            "a Dossier plugin must be built with panic = \"unwind\": with abort a panic would kill the host"
        );

        /// The plugin's entry point (Dossier's C ABI): returns the vtable.
        ///
        /// # Safety
        ///
        /// `host` is null or points to a `HostApi` that outlives the process, as the ABI says.
        // The entry symbol must keep its name; the SDK wraps everything behind it in
        // catch_unwind.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dossier_plugin_entry(
            host: *const $crate::abi::HostApi,
        ) -> *const $crate::abi::PluginVtable {
            // SAFETY: forwarded as received; `entry` only reads `host` per the ABI.
            unsafe { $crate::guest::entry(host, $crate::connector::erase::<$connector>) }
        }
    };
}
