//! The plugin's `tracing` events, forwarded to the host's log through [`HostApi::log`].

use std::fmt::Write as _;
use std::sync::OnceLock;

use dossier_plugin_abi::{
    Bytes, HostApi, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_TRACE, LOG_WARN, MIN_HOST_API_SIZE,
};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The host's callbacks, copied at entry.
#[derive(Clone, Copy)]
struct Host {
    max_level: u32,
    log: extern "C" fn(u32, Bytes, Bytes),
    progress: extern "C" fn(Bytes, u64),
}

static HOST: OnceLock<Host> = OnceLock::new();

fn as_bytes(s: &str) -> Bytes {
    Bytes {
        ptr: s.as_ptr(),
        len: s.len(),
    }
}

/// Keeps the host's callbacks and sends this library's `tracing` events to them.
///
/// # Safety
///
/// `host` is null or points to a valid [`HostApi`].
pub(crate) unsafe fn install(host: *const HostApi) {
    if host.is_null() || HOST.get().is_some() {
        return;
    }
    // SAFETY: non-null, valid per the contract; `struct_size` is checked before the rest is read.
    let api = unsafe { &*host };
    if api.struct_size < MIN_HOST_API_SIZE || api.abi_major != dossier_plugin_abi::ABI_MAJOR {
        return;
    }
    let _ = HOST.set(Host {
        max_level: api.max_log_level,
        log: api.log,
        progress: api.progress,
    });
    let _ = tracing::subscriber::set_global_default(HostLog);
}

/// Tells the host how far a read got.
pub(crate) fn progress(stream: &str, records: u64) {
    if let Some(h) = HOST.get() {
        (h.progress)(as_bytes(stream), records);
    }
}

fn level_number(level: &Level) -> u32 {
    match *level {
        Level::ERROR => LOG_ERROR,
        Level::WARN => LOG_WARN,
        Level::INFO => LOG_INFO,
        Level::DEBUG => LOG_DEBUG,
        Level::TRACE => LOG_TRACE,
    }
}

/// A subscriber that formats events (message, then `key=value` fields) for the host. Spans
/// are not forwarded.
struct HostLog;

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl Subscriber for HostLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        HOST.get()
            .is_some_and(|h| level_number(metadata.level()) <= h.max_level)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(match HOST.get().map_or(0, |h| h.max_level) {
            0 => LevelFilter::OFF,
            LOG_ERROR => LevelFilter::ERROR,
            LOG_WARN => LevelFilter::WARN,
            LOG_INFO => LevelFilter::INFO,
            LOG_DEBUG => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        })
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(h) = HOST.get() else { return };
        let mut line = Line(String::new());
        event.record(&mut line);
        let meta = event.metadata();
        (h.log)(
            level_number(meta.level()),
            as_bytes(meta.target()),
            as_bytes(line.0.trim_start()),
        );
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
