//! Loading a plugin library and checking it before anything else is called.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dossier_core::sha256_hex;
use dossier_plugin_abi::{
    ABI_MAJOR, ABI_MINOR, Bytes, ENTRY_SYMBOL, EntryFn, HostApi, LOG_DEBUG, LOG_ERROR, LOG_INFO,
    LOG_TRACE, LOG_WARN, MIN_VTABLE_SIZE, PluginVtable, StaticStr,
};
use tracing::level_filters::LevelFilter;

use crate::PluginError;

/// A loaded, checked plugin. Its library stays loaded until the process exits.
#[derive(Debug)]
pub struct Plugin {
    pub(crate) vtable: &'static PluginVtable,
    /// The connector's name (`connector = "..."` in configs).
    pub name: String,
    /// The connector's own version.
    pub version: String,
    /// The ABI version it was built for.
    pub abi: (u32, u32),
    /// JSON Schema of its connection config.
    pub config_schema: serde_json::Value,
    /// JSON Schema of one stream's settings.
    pub stream_schema: serde_json::Value,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// The file's sha256, lowercase hex.
    pub sha256: String,
}

extern "C" fn host_log(level: u32, target: Bytes, message: Bytes) {
    // Never unwind into the plugin.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: the plugin passes buffers valid for the call, per the ABI.
        let (target, message) = unsafe { (text(target), text(message)) };
        match level {
            LOG_ERROR => {
                tracing::error!(target: "dossier::plugin", plugin_target = %target, "{message}")
            }
            LOG_WARN => {
                tracing::warn!(target: "dossier::plugin", plugin_target = %target, "{message}")
            }
            LOG_INFO => {
                tracing::info!(target: "dossier::plugin", plugin_target = %target, "{message}")
            }
            LOG_DEBUG => {
                tracing::debug!(target: "dossier::plugin", plugin_target = %target, "{message}")
            }
            _ => tracing::trace!(target: "dossier::plugin", plugin_target = %target, "{message}"),
        }
    });
}

extern "C" fn host_progress(stream: Bytes, records: u64) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: as in `host_log`.
        let stream = unsafe { text(stream) };
        tracing::trace!(target: "dossier::plugin", %stream, records, "plugin read progress");
    });
}

/// Text from a plugin buffer borrowed for the call; invalid UTF-8 is replaced.
///
/// # Safety
///
/// `b` is null or points to `len` readable bytes.
unsafe fn text(b: Bytes) -> String {
    if b.ptr.is_null() || b.len == 0 {
        return String::new();
    }
    // SAFETY: per this function's contract.
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(b.ptr, b.len) }).into_owned()
}

/// The callbacks given to every plugin: built once, with the log level in force then.
fn host_api() -> &'static HostApi {
    static API: OnceLock<HostApi> = OnceLock::new();
    API.get_or_init(|| HostApi {
        struct_size: std::mem::size_of::<HostApi>(),
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        max_log_level: match LevelFilter::current() {
            LevelFilter::OFF => 0,
            LevelFilter::ERROR => LOG_ERROR,
            LevelFilter::WARN => LOG_WARN,
            LevelFilter::INFO => LOG_INFO,
            LevelFilter::DEBUG => LOG_DEBUG,
            _ => LOG_TRACE,
        },
        log: host_log,
        progress: host_progress,
    })
}

/// Loads the plugin at `path`: checks its sha256 against `pinned` (hex) first, then loads the
/// library, calls its entry point and checks the vtable and manifest.
///
/// Loading runs the library's initialisers: only load what you trust; pin its sha256 to be
/// sure it is the file you trusted. Whatever happens after the library is opened, it is never
/// unloaded (its code may be running on threads it started).
pub fn load(path: &Path, pinned: Option<&str>) -> Result<Plugin, PluginError> {
    let bytes = std::fs::read(path).map_err(|e| PluginError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let sha256 = sha256_hex(&bytes);
    drop(bytes);
    if let Some(expected) = pinned {
        let expected = expected.trim().to_ascii_lowercase();
        if expected != sha256 {
            return Err(PluginError::Sha256Mismatch {
                path: path.to_path_buf(),
                expected,
                actual: sha256,
            });
        }
    }
    // SAFETY: opening a library runs its initialisers; the user installed this file (and may
    // have pinned its hash, checked above). It is leaked right away: never unloaded, so the
    // symbols and static data taken from it below live as long as the process.
    let library: &'static libloading::Library = Box::leak(Box::new(
        unsafe { libloading::Library::new(path) }.map_err(|e| PluginError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?,
    ));
    let symbol = String::from_utf8_lossy(&ENTRY_SYMBOL[..ENTRY_SYMBOL.len() - 1]).into_owned();
    // SAFETY: the symbol is the ABI's entry point, whose type is `EntryFn` by contract.
    let entry: EntryFn = unsafe { library.get::<EntryFn>(ENTRY_SYMBOL) }
        .map(|s| *s)
        .map_err(|_| PluginError::MissingEntry {
            path: path.to_path_buf(),
            symbol,
        })?;
    // SAFETY: calling the entry point with a host API that lives for the whole process; the
    // SDK catches panics behind it.
    let vtable = unsafe { entry(host_api()) };
    // SAFETY: the pointer comes from the entry point; `validate_vtable` reads the frozen
    // header before anything else.
    unsafe { validate_vtable(path, vtable, sha256) }
}

fn static_text(path: &Path, what: &str, s: StaticStr) -> Result<String, PluginError> {
    let invalid = |reason: String| PluginError::InvalidManifest {
        path: path.to_path_buf(),
        reason,
    };
    if s.ptr.is_null() {
        return Err(invalid(format!("{what} is missing")));
    }
    // SAFETY: the manifest's strings live as long as the library, per the ABI.
    let bytes = unsafe { std::slice::from_raw_parts(s.ptr, s.len) };
    String::from_utf8(bytes.to_vec()).map_err(|_| invalid(format!("{what} is not UTF-8")))
}

fn schema(path: &Path, what: &str, s: StaticStr) -> Result<serde_json::Value, PluginError> {
    let text = static_text(path, what, s)?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(PluginError::InvalidManifest {
            path: path.to_path_buf(),
            reason: format!("{what} is not a JSON Schema object"),
        }),
        Err(e) => Err(PluginError::InvalidManifest {
            path: path.to_path_buf(),
            reason: format!("{what} is not JSON: {e}"),
        }),
    }
}

/// A connector name as configs write it: lowercase `[a-z0-9_-]`, 1 to 64 bytes.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks a vtable the way [`load`] does: header (ABI major, size) first, then the manifest.
///
/// # Safety
///
/// `vtable` is null or points to at least the frozen header (`struct_size`, `abi_major`,
/// `abi_minor`), and to `struct_size` readable bytes, all living as long as the process.
pub unsafe fn validate_vtable(
    path: &Path,
    vtable: *const PluginVtable,
    sha256: String,
) -> Result<Plugin, PluginError> {
    let path_buf = path.to_path_buf();
    if vtable.is_null() {
        return Err(PluginError::NullVtable { path: path_buf });
    }
    // The header's positions are frozen for every major: read it alone before trusting the rest.
    #[repr(C)]
    struct Header {
        struct_size: usize,
        abi_major: u32,
        abi_minor: u32,
    }
    // SAFETY: per this function's contract, the header is readable.
    let header = unsafe { &*vtable.cast::<Header>() };
    if header.abi_major != ABI_MAJOR {
        return Err(PluginError::AbiMajor {
            path: path_buf,
            found_major: header.abi_major,
            found_minor: header.abi_minor,
            expected: ABI_MAJOR,
        });
    }
    if header.struct_size < MIN_VTABLE_SIZE {
        return Err(PluginError::VtableTooSmall {
            path: path_buf,
            size: header.struct_size,
            min: MIN_VTABLE_SIZE,
            major: header.abi_major,
            minor: header.abi_minor,
        });
    }
    // SAFETY: the size covers every field of this major; it lives as long as the library.
    let vtable: &'static PluginVtable = unsafe { &*vtable };
    let invalid = |reason: String| PluginError::InvalidManifest {
        path: path.to_path_buf(),
        reason,
    };
    if vtable.manifest.is_null() {
        return Err(invalid("the vtable has no manifest".into()));
    }
    // SAFETY: non-null, static data of the library per the ABI.
    let manifest = unsafe { &*vtable.manifest };
    let name = static_text(path, "name", manifest.name)?;
    if !valid_name(&name) {
        return Err(invalid(format!(
            "name {name:?} is not a connector name (lowercase a-z, 0-9, _ or -, at most 64 bytes)"
        )));
    }
    let version = static_text(path, "version", manifest.version)?;
    if version.trim().is_empty() {
        return Err(invalid("version is empty".into()));
    }
    if (manifest.abi_major, manifest.abi_minor) != (header.abi_major, header.abi_minor) {
        return Err(invalid(format!(
            "ABI {}.{} disagrees with the vtable's {}.{}",
            manifest.abi_major, manifest.abi_minor, header.abi_major, header.abi_minor
        )));
    }
    let config_schema = schema(path, "config schema", manifest.config_schema)?;
    let stream_schema = schema(path, "stream schema", manifest.stream_schema)?;
    Ok(Plugin {
        vtable,
        name,
        version,
        abi: (header.abi_major, header.abi_minor),
        config_schema,
        stream_schema,
        path: path_buf,
        sha256,
    })
}
