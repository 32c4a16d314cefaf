//! The plugin side of the C ABI, behind [`export_connector!`](crate::export_connector).
//!
//! Every exported function runs its body inside `catch_unwind`: a connector's panic becomes
//! an internal error naming the plugin and the call, and a reader that panicked answers "end"
//! from then on. The connector runs on one multi-threaded tokio runtime owned by the plugin;
//! the host calls block on it from its own threads.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use dossier_connector::{BatchStream, ConnectorError, ConnectorFactory, Source, StreamState};
use dossier_plugin_abi::{
    ABI_MAJOR, ABI_MINOR, Bytes, ERROR_CONFIG, ERROR_INTERNAL, ERROR_REMOTE, HostApi, Manifest,
    OwnedBuf, PluginError, PluginVtable, RETRYABLE_UNREACHABLE, ReaderHandle, STATUS_END,
    STATUS_ERROR, STATUS_OK, SourceHandle, StaticStr,
};
use futures::StreamExt as _;

use crate::{logging, wire};

/// The one connector this library exports, and its vtable.
struct Exported {
    factory: Arc<dyn ConnectorFactory>,
    name: String,
    vtable: PluginVtable,
}

static EXPORTED: OnceLock<Exported> = OnceLock::new();
static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

fn exported() -> Result<&'static Exported, ConnectorError> {
    EXPORTED
        .get()
        .ok_or_else(|| ConnectorError::internal("the plugin was called before its entry point"))
}

fn runtime() -> Result<&'static tokio::runtime::Runtime, ConnectorError> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("dossier-plugin")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ConnectorError::internal(format!("the plugin cannot start its runtime: {e}")))
}

fn leak_str(s: String) -> StaticStr {
    let s: &'static str = Box::leak(s.into_boxed_str());
    StaticStr {
        ptr: s.as_ptr(),
        len: s.len(),
    }
}

/// The entry point's body (see [`export_connector!`](crate::export_connector)): builds the
/// manifest and vtable once, from the erased connector `make` returns.
///
/// # Safety
///
/// `host` is null or points to a valid [`HostApi`] that outlives the process.
pub unsafe fn entry(
    host: *const HostApi,
    make: fn() -> Arc<dyn ConnectorFactory>,
) -> *const PluginVtable {
    let built = catch_unwind(|| {
        // SAFETY: per this function's contract.
        unsafe { logging::install(host) };
        let exported = EXPORTED.get_or_init(|| {
            let factory = make();
            let spec = factory.spec();
            let manifest: &'static Manifest = Box::leak(Box::new(Manifest {
                name: leak_str(spec.name.clone()),
                version: leak_str(spec.version),
                abi_major: ABI_MAJOR,
                abi_minor: ABI_MINOR,
                config_schema: leak_str(spec.config_schema.to_string()),
                stream_schema: leak_str(spec.stream_schema.to_string()),
            }));
            Exported {
                factory,
                name: spec.name,
                vtable: vtable(manifest),
            }
        });
        &exported.vtable as *const PluginVtable
    });
    built.unwrap_or(std::ptr::null())
}

/// This major's vtable over the functions below.
fn vtable(manifest: &'static Manifest) -> PluginVtable {
    PluginVtable {
        struct_size: std::mem::size_of::<PluginVtable>(),
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        manifest,
        free_buf,
        validate_stream,
        open,
        check,
        discover,
        describe,
        read_open,
        read_next,
        read_close,
        close,
    }
}

fn to_buf(bytes: Vec<u8>) -> OwnedBuf {
    let mut bytes = std::mem::ManuallyDrop::new(bytes);
    OwnedBuf {
        ptr: bytes.as_mut_ptr(),
        len: bytes.len(),
        cap: bytes.capacity(),
    }
}

/// Frees a buffer this plugin allocated.
///
/// # Safety
///
/// `buf` came from this plugin and is freed once.
unsafe extern "C" fn free_buf(buf: OwnedBuf) {
    if !buf.ptr.is_null() {
        // SAFETY: `to_buf` made it from a Vec<u8> with exactly these parts.
        drop(unsafe { Vec::from_raw_parts(buf.ptr, buf.len, buf.cap) });
    }
}

/// The bytes of a borrowed host buffer.
///
/// # Safety
///
/// `b` is valid for the call, per the ABI.
unsafe fn bytes<'a>(b: Bytes) -> &'a [u8] {
    if b.ptr.is_null() || b.len == 0 {
        &[]
    } else {
        // SAFETY: the host guarantees `len` readable bytes at `ptr` for the call.
        unsafe { std::slice::from_raw_parts(b.ptr, b.len) }
    }
}

fn write_error(err: *mut PluginError, e: &ConnectorError) {
    let (kind, retryable, message) = match e {
        ConnectorError::Config(m) => (ERROR_CONFIG, 0, m.clone()),
        ConnectorError::Remote {
            message,
            unreachable: true,
            ..
        } => (ERROR_REMOTE, RETRYABLE_UNREACHABLE, message.clone()),
        ConnectorError::Remote {
            message, retryable, ..
        } => (ERROR_REMOTE, u8::from(*retryable), message.clone()),
        ConnectorError::Internal(m) => (ERROR_INTERNAL, 0, m.clone()),
    };
    if err.is_null() {
        return;
    }
    // SAFETY: a non-null `err` points to a slot the host owns for the call.
    unsafe {
        err.write(PluginError {
            kind,
            retryable,
            message: to_buf(message.into_bytes()),
        });
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".into())
}

/// Runs `body`, turning its error or its panic into a status and an error.
fn guarded(
    call: &str,
    err: *mut PluginError,
    body: impl FnOnce() -> Result<u32, ConnectorError>,
) -> u32 {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            write_error(err, &e);
            STATUS_ERROR
        }
        Err(payload) => {
            let name = EXPORTED.get().map_or("?", |e| e.name.as_str());
            let message = panic_message(payload.as_ref());
            tracing::error!(call, panic = %message, "connector panicked");
            write_error(
                err,
                &ConnectorError::internal(format!(
                    "the {name} plugin panicked in {call}: {message}"
                )),
            );
            // Dropping a payload can itself panic: forget it.
            std::mem::forget(payload);
            STATUS_ERROR
        }
    }
}

fn wire_err(e: crate::WireError) -> ConnectorError {
    ConnectorError::internal(e.to_string())
}

fn put(out: *mut OwnedBuf, bytes: Vec<u8>) -> Result<u32, ConnectorError> {
    if out.is_null() {
        return Err(ConnectorError::internal("the host passed no output slot"));
    }
    // SAFETY: a non-null `out` points to a slot the host owns for the call.
    unsafe { out.write(to_buf(bytes)) };
    Ok(STATUS_OK)
}

/// A connected source, behind a [`SourceHandle`].
struct GuestSource(Box<dyn Source>);

/// # Safety
///
/// `handle` is a live handle `open` returned.
unsafe fn source<'a>(handle: SourceHandle) -> Result<&'a GuestSource, ConnectorError> {
    if handle.is_null() {
        return Err(ConnectorError::internal("null source handle"));
    }
    // SAFETY: `open` made it from a Box<GuestSource>, and it is not closed yet.
    Ok(unsafe { &*handle.cast::<GuestSource>() })
}

unsafe extern "C" fn validate_stream(settings: Bytes, err: *mut PluginError) -> u32 {
    guarded("validate_stream", err, || {
        // SAFETY: borrowed for the call, per the ABI.
        let text = unsafe { bytes(settings) };
        let settings = serde_json::from_slice(text)
            .map_err(|e| ConnectorError::internal(format!("stream settings are not JSON: {e}")))?;
        let stream = dossier_connector::StreamConfig {
            name: String::new(),
            settings,
        };
        exported()?.factory.validate_stream(&stream)?;
        Ok(STATUS_OK)
    })
}

unsafe extern "C" fn open(config: Bytes, out: *mut SourceHandle, err: *mut PluginError) -> u32 {
    guarded("open", err, || {
        // SAFETY: borrowed for the call, per the ABI.
        let config = serde_json::from_slice(unsafe { bytes(config) })
            .map_err(|e| ConnectorError::internal(format!("the config is not JSON: {e}")))?;
        let factory = &exported()?.factory;
        let source = runtime()?.block_on(factory.connect(config))?;
        if out.is_null() {
            return Err(ConnectorError::internal("the host passed no output slot"));
        }
        let handle = Box::into_raw(Box::new(GuestSource(source)));
        // SAFETY: a non-null `out` points to a slot the host owns for the call.
        unsafe { out.write(handle.cast::<c_void>()) };
        Ok(STATUS_OK)
    })
}

unsafe extern "C" fn check(
    handle: SourceHandle,
    streams: Bytes,
    out: *mut OwnedBuf,
    err: *mut PluginError,
) -> u32 {
    guarded("check", err, || {
        // SAFETY: per the ABI, a live handle and a buffer borrowed for the call.
        let (source, streams) = unsafe { (source(handle)?, bytes(streams)) };
        let streams: Vec<wire::StreamRef> = wire::decode("streams", streams).map_err(wire_err)?;
        let streams = streams
            .iter()
            .map(wire::StreamRef::to_config)
            .collect::<Result<Vec<_>, _>>()
            .map_err(wire_err)?;
        let problems = runtime()?.block_on(source.0.check(&streams));
        put(out, wire::encode("problems", &problems).map_err(wire_err)?)
    })
}

unsafe extern "C" fn discover(
    handle: SourceHandle,
    out: *mut OwnedBuf,
    err: *mut PluginError,
) -> u32 {
    guarded("discover", err, || {
        // SAFETY: per the ABI, a live handle.
        let source = unsafe { source(handle)? };
        let catalog = runtime()?.block_on(source.0.discover())?;
        put(out, wire::encode("catalog", &catalog).map_err(wire_err)?)
    })
}

unsafe extern "C" fn describe(
    handle: SourceHandle,
    stream: Bytes,
    out: *mut OwnedBuf,
    err: *mut PluginError,
) -> u32 {
    guarded("describe", err, || {
        // SAFETY: per the ABI, a live handle and a buffer borrowed for the call.
        let (source, stream) = unsafe { (source(handle)?, bytes(stream)) };
        let stream: wire::StreamRef = wire::decode("stream", stream).map_err(wire_err)?;
        let stream = stream.to_config().map_err(wire_err)?;
        let info = runtime()?.block_on(source.0.describe(&stream))?;
        put(out, wire::encode("stream info", &info).map_err(wire_err)?)
    })
}

/// An open read, behind a [`ReaderHandle`]: `None` once it ended, failed or panicked.
struct GuestReader {
    stream: Option<BatchStream>,
    name: String,
    records: u64,
}

impl Drop for GuestReader {
    fn drop(&mut self) {
        // The stream may hold runtime resources (timers, connections): drop it inside.
        if let Ok(rt) = runtime() {
            let _entered = rt.enter();
            self.stream.take();
        }
    }
}

unsafe extern "C" fn read_open(
    handle: SourceHandle,
    request: Bytes,
    out: *mut ReaderHandle,
    err: *mut PluginError,
) -> u32 {
    guarded("read_open", err, || {
        // SAFETY: per the ABI, a live handle and a buffer borrowed for the call.
        let (source, request) = unsafe { (source(handle)?, bytes(request)) };
        let request: wire::ReadRequest = wire::decode("read request", request).map_err(wire_err)?;
        let stream = request.stream.to_config().map_err(wire_err)?;
        let _entered = runtime()?.enter();
        let batches = source.0.read(
            &stream,
            request.state.map(StreamState),
            usize::try_from(request.batch_size).unwrap_or(usize::MAX),
        )?;
        if out.is_null() {
            return Err(ConnectorError::internal("the host passed no output slot"));
        }
        let reader = Box::into_raw(Box::new(GuestReader {
            stream: Some(batches),
            name: stream.name,
            records: 0,
        }));
        // SAFETY: a non-null `out` points to a slot the host owns for the call.
        unsafe { out.write(reader.cast::<c_void>()) };
        Ok(STATUS_OK)
    })
}

unsafe extern "C" fn read_next(
    reader: ReaderHandle,
    out: *mut OwnedBuf,
    err: *mut PluginError,
) -> u32 {
    if reader.is_null() {
        write_error(err, &ConnectorError::internal("null reader handle"));
        return STATUS_ERROR;
    }
    let reader = reader.cast::<GuestReader>();
    let status = guarded("read_next", err, || {
        // SAFETY: `read_open` made it from a Box<GuestReader>; one thread at a time uses it.
        let reader = unsafe { &mut *reader };
        let Some(stream) = reader.stream.as_mut() else {
            return Ok(STATUS_END);
        };
        match runtime()?.block_on(stream.next()) {
            None => {
                reader.stream = None;
                Ok(STATUS_END)
            }
            Some(Err(e)) => {
                reader.stream = None;
                Err(e)
            }
            Some(Ok(batch)) => {
                reader.records += batch.rows.len() as u64;
                logging::progress(&reader.name, reader.records);
                put(out, wire::encode_batch(&batch).map_err(wire_err)?)
            }
        }
    });
    if status == STATUS_ERROR {
        // After an error, or a panic that left the stream in an unknown state: the end.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: as above; the guarded call has returned.
            let reader = unsafe { &mut *reader };
            drop(reader.stream.take());
        }));
    }
    status
}

unsafe extern "C" fn read_close(reader: ReaderHandle) {
    if reader.is_null() {
        return;
    }
    let _ = catch_unwind(|| {
        // SAFETY: `read_open` made it from a Box<GuestReader>; the host closes it once.
        drop(unsafe { Box::from_raw(reader.cast::<GuestReader>()) });
    });
}

unsafe extern "C" fn close(handle: SourceHandle) {
    if handle.is_null() {
        return;
    }
    let _ = catch_unwind(|| {
        let _entered = runtime().map(|rt| rt.enter());
        // SAFETY: `open` made it from a Box<GuestSource>; the host closes it once.
        drop(unsafe { Box::from_raw(handle.cast::<GuestSource>()) });
    });
}
