//! The C ABI between Dossier (the host) and a connector plugin (a dynamic library).
//!
//! Only `extern "C"` function pointers and `#[repr(C)]` structs cross the boundary: no Rust
//! type (no `String`, `Vec`, trait object, `Result`, enum) does, so a plugin built by another
//! compiler version, or in another language, works as long as it follows this file.
//!
//! # Versions
//!
//! [`ABI_MAJOR`].[`ABI_MINOR`]. The host refuses a plugin of another major. Within a major,
//! minors only **append** fields at the end of [`PluginVtable`] and [`HostApi`]; each struct
//! starts with its `struct_size`, and a reader checks that the size covers a field before it
//! reads a field added in a later minor. The first three fields of [`PluginVtable`]
//! (`struct_size`, `abi_major`, `abi_minor`) are frozen for every major, so the host can
//! always read them to refuse a plugin politely.
//!
//! # Loading
//!
//! A plugin exports one symbol, [`ENTRY_SYMBOL`] (`dossier_plugin_entry`), of type
//! [`EntryFn`]: given the host's callbacks it returns a pointer to its vtable, which (with the
//! manifest and every string it points to) lives as long as the library. The host never
//! unloads a library.
//!
//! # Calls
//!
//! Every function but `free_buf`, `read_close` and `close` returns a status ([`STATUS_OK`],
//! [`STATUS_ERROR`], or [`STATUS_END`] from `read_next` when a stream is done). On
//! [`STATUS_ERROR`] the plugin has filled the [`PluginError`] out-parameter. A plugin never
//! unwinds into the host: a panic becomes an error of kind [`ERROR_INTERNAL`]. Calls may
//! block (the plugin runs its own async runtime); the host makes them on threads set aside
//! for blocking work, never on its async runtime. A source handle may be used by several
//! threads at once; a reader handle by one thread at a time.
//!
//! # Buffers
//!
//! [`Bytes`] is borrowed: valid for the duration of the call only, owned by the caller.
//! [`OwnedBuf`] is allocated by the plugin and handed to the host, which frees it by passing
//! it back to the plugin's `free_buf` exactly once. The host never frees plugin memory with
//! its own allocator, nor the plugin host memory.
//!
//! # Encodings
//!
//! - Connection config and stream settings, host → plugin: JSON text (UTF-8).
//! - Everything else, both ways (read requests, batches with their state, catalogs, stream
//!   descriptions, check problems): [MessagePack](https://msgpack.org), as written by
//!   `rmp-serde` with field names (`to_vec_named`): structs are maps, so fields can be added.
//!   The shapes are documented, with their codec, in `dossier-plugin-sdk`'s `wire` module.
//!   MessagePack was measured against JSON for batches (see BENCHMARKS.md).
//! - The manifest's schemas: JSON text. Messages and names: UTF-8 text.

#![allow(unsafe_code)] // `unsafe impl Send/Sync` for structs of raw pointers, nothing else.

use std::ffi::c_void;

/// The ABI's major version: a plugin of another major is refused.
pub const ABI_MAJOR: u32 = 1;
/// The ABI's minor version: fields appended to the structs since the major.
pub const ABI_MINOR: u32 = 0;

/// The one symbol a plugin exports, NUL-terminated for the loader.
pub const ENTRY_SYMBOL: &[u8] = b"dossier_plugin_entry\0";

/// The call succeeded.
pub const STATUS_OK: u32 = 0;
/// The call failed: the error out-parameter is filled.
pub const STATUS_ERROR: u32 = 1;
/// `read_next` only: the stream has no more batches.
pub const STATUS_END: u32 = 2;

/// The user's configuration is wrong: fix the config.
pub const ERROR_CONFIG: u32 = 1;
/// The remote side failed (server down, permission, timeout); see `retryable`.
pub const ERROR_REMOTE: u32 = 2;
/// A bug in the plugin (including a panic it caught).
pub const ERROR_INTERNAL: u32 = 3;

/// [`PluginError::retryable`] of a remote error where nothing answered at the source's
/// address (connection refused, unknown host): retryable, but a run someone watches fails at
/// once. Hosts that predate it read it as retryable, as any non-zero value.
pub const RETRYABLE_UNREACHABLE: u8 = 2;

/// Log levels of [`HostApi::log`], as in `tracing`.
pub const LOG_ERROR: u32 = 1;
pub const LOG_WARN: u32 = 2;
pub const LOG_INFO: u32 = 3;
pub const LOG_DEBUG: u32 = 4;
pub const LOG_TRACE: u32 = 5;

/// Borrowed bytes: valid for the duration of one call, owned by the caller.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Bytes {
    pub ptr: *const u8,
    pub len: usize,
}

/// Bytes allocated by the plugin and given to the host, who frees them with the plugin's
/// [`PluginVtable::free_buf`], once. `cap` is the plugin's business (its allocation size).
#[repr(C)]
#[derive(Debug)]
pub struct OwnedBuf {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl OwnedBuf {
    /// No buffer (nothing to free).
    pub const EMPTY: OwnedBuf = OwnedBuf {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };
}

/// UTF-8 text owned by the plugin that lives as long as the library (manifest strings).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StaticStr {
    pub ptr: *const u8,
    pub len: usize,
}

/// An error: whose fault it is, whether retrying can help, and a message (UTF-8, freed with
/// `free_buf` like any [`OwnedBuf`]).
#[repr(C)]
#[derive(Debug)]
pub struct PluginError {
    /// [`ERROR_CONFIG`], [`ERROR_REMOTE`] or [`ERROR_INTERNAL`].
    pub kind: u32,
    /// 1 if trying again later can help, [`RETRYABLE_UNREACHABLE`] if also nothing answered
    /// at the source's address, else 0.
    pub retryable: u8,
    pub message: OwnedBuf,
}

impl PluginError {
    /// An error slot before a call.
    pub const NONE: PluginError = PluginError {
        kind: 0,
        retryable: 0,
        message: OwnedBuf::EMPTY,
    };
}

/// What a plugin is: read by the host before anything else is called.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Manifest {
    /// The connector's name, as configs write it (`connector = "stripe"`): lowercase
    /// `[a-z0-9_-]`, at most 64 bytes.
    pub name: StaticStr,
    /// The connector's own version (semver text).
    pub version: StaticStr,
    /// The ABI the plugin was built for (the same as the vtable's).
    pub abi_major: u32,
    pub abi_minor: u32,
    /// JSON Schema (JSON text) of the connection config.
    pub config_schema: StaticStr,
    /// JSON Schema (JSON text) of one stream's settings: the streams the connector offers.
    pub stream_schema: StaticStr,
}

/// Callbacks the host gives the plugin at entry. They may be called from any thread, at any
/// time until the process exits.
#[repr(C)]
#[derive(Debug)]
pub struct HostApi {
    /// `size_of::<HostApi>()` as the host was built.
    pub struct_size: usize,
    pub abi_major: u32,
    pub abi_minor: u32,
    /// The most verbose level the host records ([`LOG_ERROR`]..[`LOG_TRACE`]): the plugin
    /// need not format what would be dropped.
    pub max_log_level: u32,
    /// A log line: level, target (module path) and message, UTF-8, borrowed for the call.
    pub log: extern "C" fn(level: u32, target: Bytes, message: Bytes),
    /// Progress of a read: the stream's name and the records it produced so far.
    pub progress: extern "C" fn(stream: Bytes, records: u64),
}

/// Opaque handle of a connected source, owned by the plugin; freed by `close`.
pub type SourceHandle = *mut c_void;
/// Opaque handle of an open read, owned by the plugin; freed by `read_close`.
pub type ReaderHandle = *mut c_void;

/// The plugin's functions.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PluginVtable {
    /// `size_of::<PluginVtable>()` as the plugin was built (frozen position).
    pub struct_size: usize,
    /// The ABI the plugin was built for (frozen positions).
    pub abi_major: u32,
    pub abi_minor: u32,
    /// The manifest, valid for the library's lifetime.
    pub manifest: *const Manifest,
    /// Frees a buffer the plugin allocated (a result or an error message). Null is a no-op.
    pub free_buf: unsafe extern "C" fn(buf: OwnedBuf),
    /// Checks one stream's settings (JSON) without connecting.
    pub validate_stream: unsafe extern "C" fn(settings_json: Bytes, err: *mut PluginError) -> u32,
    /// Connects with a config (JSON); on success writes the source handle.
    pub open: unsafe extern "C" fn(
        config_json: Bytes,
        out: *mut SourceHandle,
        err: *mut PluginError,
    ) -> u32,
    /// Checks the streams (MessagePack list of `{name, settings}`); writes the problems
    /// (MessagePack list of `{stream, message}`), empty when all is well.
    pub check: unsafe extern "C" fn(
        source: SourceHandle,
        streams: Bytes,
        out: *mut OwnedBuf,
        err: *mut PluginError,
    ) -> u32,
    /// Writes the catalog (MessagePack).
    pub discover: unsafe extern "C" fn(
        source: SourceHandle,
        out: *mut OwnedBuf,
        err: *mut PluginError,
    ) -> u32,
    /// Describes one stream (MessagePack `{name, settings}` in, stream info out).
    pub describe: unsafe extern "C" fn(
        source: SourceHandle,
        stream: Bytes,
        out: *mut OwnedBuf,
        err: *mut PluginError,
    ) -> u32,
    /// Starts reading a stream (MessagePack read request); writes the reader handle.
    pub read_open: unsafe extern "C" fn(
        source: SourceHandle,
        request: Bytes,
        out: *mut ReaderHandle,
        err: *mut PluginError,
    ) -> u32,
    /// The next batch (MessagePack, with its state): [`STATUS_OK`] with a batch,
    /// [`STATUS_END`] when done, or [`STATUS_ERROR`]. After an error or the end, the reader
    /// only answers [`STATUS_END`].
    pub read_next: unsafe extern "C" fn(
        reader: ReaderHandle,
        out: *mut OwnedBuf,
        err: *mut PluginError,
    ) -> u32,
    /// Frees a reader.
    pub read_close: unsafe extern "C" fn(reader: ReaderHandle),
    /// Frees a source handle (readers opened from it stay usable until closed).
    pub close: unsafe extern "C" fn(source: SourceHandle),
}

/// The type of [`ENTRY_SYMBOL`]: returns the vtable (never null for a well-formed plugin).
pub type EntryFn = unsafe extern "C" fn(host: *const HostApi) -> *const PluginVtable;

// SAFETY: the vtable, the manifest and the strings they point to are immutable and live as
// long as the library (which is never unloaded); the functions are callable from any thread.
unsafe impl Send for PluginVtable {}
// SAFETY: as above: nothing in it is ever written after the plugin returns it.
unsafe impl Sync for PluginVtable {}
// SAFETY: the manifest is immutable static data of the library.
unsafe impl Send for Manifest {}
// SAFETY: as above.
unsafe impl Sync for Manifest {}
// SAFETY: the host API is immutable once given; its functions are callable from any thread.
unsafe impl Send for HostApi {}
// SAFETY: as above.
unsafe impl Sync for HostApi {}

/// The smallest vtable of this major: every field of 1.0. A larger one is a later minor.
pub const MIN_VTABLE_SIZE: usize = std::mem::size_of::<PluginVtable>();
/// The smallest host API of this major.
pub const MIN_HOST_API_SIZE: usize = std::mem::size_of::<HostApi>();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_positions_are_frozen() {
        assert_eq!(std::mem::offset_of!(PluginVtable, struct_size), 0);
        assert_eq!(
            std::mem::offset_of!(PluginVtable, abi_major),
            std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::offset_of!(PluginVtable, abi_minor),
            std::mem::size_of::<usize>() + 4
        );
        assert_eq!(std::mem::offset_of!(HostApi, struct_size), 0);
    }
}
