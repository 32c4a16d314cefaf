//! A loaded plugin as a connector: the host half of every ABI call.

use std::ffi::c_void;
use std::sync::Arc;

use dossier_connector::{
    Batch, BatchStream, Catalog, ConnectorError, ConnectorFactory, ConnectorKind, Problem, Source,
    Spec, StreamConfig, StreamInfo, StreamState,
};
use dossier_plugin_abi::{
    self as abi, Bytes, ERROR_CONFIG, ERROR_REMOTE, OwnedBuf, STATUS_END, STATUS_ERROR, STATUS_OK,
};
use dossier_plugin_sdk::wire;
use futures::StreamExt as _;

use crate::Plugin;

/// A loaded plugin, registered as a connector factory.
#[derive(Debug, Clone)]
pub struct PluginConnector(Arc<Plugin>);

impl PluginConnector {
    pub fn new(plugin: Arc<Plugin>) -> Self {
        Self(plugin)
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.0
    }
}

fn borrowed(bytes: &[u8]) -> Bytes {
    Bytes {
        ptr: bytes.as_ptr(),
        len: bytes.len(),
    }
}

fn wire_err(e: dossier_plugin_sdk::WireError) -> ConnectorError {
    ConnectorError::internal(e.to_string())
}

impl Plugin {
    /// Reads a plugin buffer and gives it back to the plugin to free.
    fn take<T>(&self, buf: OwnedBuf, read: impl FnOnce(&[u8]) -> T) -> T {
        let bytes = if buf.ptr.is_null() || buf.len == 0 {
            &[][..]
        } else {
            // SAFETY: the plugin handed over `len` readable bytes, ours until `free_buf`.
            unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }
        };
        let out = read(bytes);
        // SAFETY: the buffer came from this plugin and is freed once, by it.
        unsafe { (self.vtable.free_buf)(buf) };
        out
    }

    /// Runs one ABI call with an error slot; an error or an unknown status becomes a
    /// [`ConnectorError`] like a built-in connector's.
    fn call(&self, f: impl FnOnce(*mut abi::PluginError) -> u32) -> Result<u32, ConnectorError> {
        let mut err = abi::PluginError::NONE;
        match f(&mut err) {
            status @ (STATUS_OK | STATUS_END) => Ok(status),
            STATUS_ERROR => {
                let message = self.take(err.message, |b| String::from_utf8_lossy(b).into_owned());
                Err(match err.kind {
                    ERROR_CONFIG => ConnectorError::config(message),
                    // The message already says what is unreachable and why.
                    ERROR_REMOTE if err.retryable == abi::RETRYABLE_UNREACHABLE => {
                        ConnectorError::Remote {
                            message,
                            retryable: true,
                            unreachable: true,
                        }
                    }
                    ERROR_REMOTE => ConnectorError::remote(message, err.retryable != 0),
                    _ => ConnectorError::internal(message),
                })
            }
            other => Err(ConnectorError::internal(format!(
                "the {} plugin answered with an unknown status {other}",
                self.name
            ))),
        }
    }

    /// A call whose result is a buffer, decoded with `decode`.
    fn call_for<T>(
        &self,
        f: impl FnOnce(*mut OwnedBuf, *mut abi::PluginError) -> u32,
        decode: impl FnOnce(&[u8]) -> Result<T, dossier_plugin_sdk::WireError>,
    ) -> Result<T, ConnectorError> {
        let mut out = OwnedBuf::EMPTY;
        self.call(|err| f(&mut out, err))?;
        self.take(out, decode).map_err(wire_err)
    }
}

/// Runs a blocking plugin call on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConnectorError::internal(format!("a plugin call did not complete: {e}")))?
}

#[async_trait::async_trait]
impl ConnectorFactory for PluginConnector {
    fn spec(&self) -> Spec {
        Spec {
            name: self.0.name.clone(),
            version: self.0.version.clone(),
            kind: ConnectorKind::Plugin,
            config_schema: self.0.config_schema.clone(),
            stream_schema: self.0.stream_schema.clone(),
        }
    }

    fn validate_stream(&self, stream: &StreamConfig) -> Result<(), ConnectorError> {
        // Parsing settings only: quick enough to call in place.
        let settings = stream.settings.to_string();
        self.0
            .call(|err| {
                // SAFETY: a borrowed buffer and an error slot, valid for the call.
                unsafe { (self.0.vtable.validate_stream)(borrowed(settings.as_bytes()), err) }
            })
            .map_err(|e| match e {
                // Say which stream, as the built-in adapter does.
                ConnectorError::Config(m) => {
                    ConnectorError::config(format!("stream {:?}{}", stream.name, strip_stream(&m)))
                }
                e => e,
            })?;
        Ok(())
    }

    async fn connect(&self, config: serde_json::Value) -> Result<Box<dyn Source>, ConnectorError> {
        let plugin = self.0.clone();
        let handle = blocking(move || {
            let config = config.to_string();
            let mut handle: abi::SourceHandle = std::ptr::null_mut();
            plugin.call(|err| {
                // SAFETY: borrowed config, an output slot and an error slot, valid for the call.
                unsafe { (plugin.vtable.open)(borrowed(config.as_bytes()), &mut handle, err) }
            })?;
            if handle.is_null() {
                return Err(ConnectorError::internal(format!(
                    "the {} plugin opened no source",
                    plugin.name
                )));
            }
            Ok(Arc::new(Handle {
                plugin,
                ptr: handle,
            }))
        })
        .await?;
        Ok(Box::new(PluginSource(handle)))
    }
}

/// The guest adapter reports a stream's settings error as `stream "": ...` (it has no name):
/// keep what follows.
fn strip_stream(message: &str) -> &str {
    message.strip_prefix("stream \"\"").unwrap_or(message)
}

/// A plugin's source handle; closed when the last user lets go.
struct Handle {
    plugin: Arc<Plugin>,
    ptr: abi::SourceHandle,
}

// SAFETY: per the ABI, a source handle may be used from any thread, by several at once.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from `open` and is closed once, here.
        unsafe { (self.plugin.vtable.close)(self.ptr) };
    }
}

struct PluginSource(Arc<Handle>);

#[async_trait::async_trait]
impl Source for PluginSource {
    async fn check(&self, streams: &[StreamConfig]) -> Vec<Problem> {
        let h = self.0.clone();
        let refs: Vec<_> = streams.iter().map(wire::StreamRef::from_config).collect();
        let result = blocking(move || {
            let request = wire::encode("streams", &refs).map_err(wire_err)?;
            h.plugin.call_for(
                |out, err| {
                    // SAFETY: a live handle, a borrowed request, output and error slots.
                    unsafe { (h.plugin.vtable.check)(h.ptr, borrowed(&request), out, err) }
                },
                |b| wire::decode::<Vec<Problem>>("problems", b),
            )
        })
        .await;
        result.unwrap_or_else(|e| {
            vec![Problem {
                stream: None,
                message: e.to_string(),
            }]
        })
    }

    async fn discover(&self) -> Result<Catalog, ConnectorError> {
        let h = self.0.clone();
        blocking(move || {
            h.plugin.call_for(
                |out, err| {
                    // SAFETY: a live handle, output and error slots.
                    unsafe { (h.plugin.vtable.discover)(h.ptr, out, err) }
                },
                |b| wire::decode("catalog", b),
            )
        })
        .await
    }

    async fn describe(&self, stream: &StreamConfig) -> Result<StreamInfo, ConnectorError> {
        let h = self.0.clone();
        let stream = wire::StreamRef::from_config(stream);
        blocking(move || {
            let request = wire::encode("stream", &stream).map_err(wire_err)?;
            h.plugin.call_for(
                |out, err| {
                    // SAFETY: a live handle, a borrowed request, output and error slots.
                    unsafe { (h.plugin.vtable.describe)(h.ptr, borrowed(&request), out, err) }
                },
                |b| wire::decode("stream info", b),
            )
        })
        .await
    }

    fn read(
        &self,
        stream: &StreamConfig,
        state: Option<StreamState>,
        batch_size: usize,
    ) -> Result<BatchStream, ConnectorError> {
        let request = wire::encode(
            "read request",
            &wire::ReadRequest {
                stream: wire::StreamRef::from_config(stream),
                state: state.map(|s| s.0),
                batch_size: batch_size as u64,
            },
        )
        .map_err(wire_err)?;
        let start = Read::Pending {
            source: self.0.clone(),
            request,
        };
        Ok(futures::stream::unfold(start, |read| async move {
            if matches!(read, Read::Done) {
                return None;
            }
            // Opening and every `read_next` block: off the async runtime.
            match tokio::task::spawn_blocking(move || read.step()).await {
                Ok((Some(item), next)) => Some((item, next)),
                Ok((None, _)) => None,
                Err(e) => Some((
                    Err(ConnectorError::internal(format!(
                        "a plugin read did not complete: {e}"
                    ))),
                    Read::Done,
                )),
            }
        })
        .boxed())
    }
}

/// An open plugin read; closed on drop.
struct Reader {
    source: Arc<Handle>,
    ptr: abi::ReaderHandle,
    fields: Option<Arc<Vec<String>>>,
}

// SAFETY: per the ABI a reader is used by one thread at a time; `Reader` is owned by one
// step at a time, which moves between threads.
unsafe impl Send for Reader {}

impl Drop for Reader {
    fn drop(&mut self) {
        // SAFETY: the reader came from `read_open` and is closed once, here.
        unsafe { (self.source.plugin.vtable.read_close)(self.ptr) };
    }
}

enum Read {
    Pending {
        source: Arc<Handle>,
        request: Vec<u8>,
    },
    Open(Reader),
    Done,
}

impl Read {
    /// Opens the read if needed and fetches the next batch (blocking).
    fn step(self) -> (Option<Result<Batch, ConnectorError>>, Read) {
        let mut reader = match self {
            Read::Done => return (None, Read::Done),
            Read::Open(r) => r,
            Read::Pending { source, request } => {
                let mut ptr: *mut c_void = std::ptr::null_mut();
                let opened = source.plugin.call(|err| {
                    // SAFETY: a live handle, a borrowed request, output and error slots.
                    unsafe {
                        (source.plugin.vtable.read_open)(
                            source.ptr,
                            borrowed(&request),
                            &mut ptr,
                            err,
                        )
                    }
                });
                match opened {
                    Err(e) => return (Some(Err(e)), Read::Done),
                    Ok(_) if ptr.is_null() => {
                        let e = ConnectorError::internal(format!(
                            "the {} plugin opened no reader",
                            source.plugin.name
                        ));
                        return (Some(Err(e)), Read::Done);
                    }
                    Ok(_) => Reader {
                        source,
                        ptr,
                        fields: None,
                    },
                }
            }
        };
        let plugin = reader.source.plugin.clone();
        let mut out = OwnedBuf::EMPTY;
        let status = plugin.call(|err| {
            // SAFETY: a live reader used by this thread only, output and error slots.
            unsafe { (plugin.vtable.read_next)(reader.ptr, &mut out, err) }
        });
        match status {
            Err(e) => (Some(Err(e)), Read::Done),
            Ok(STATUS_END) => (None, Read::Done),
            Ok(_) => {
                let batch = plugin
                    .take(out, |b| wire::decode_batch(b, reader.fields.as_ref()))
                    .map_err(wire_err);
                match batch {
                    Ok(batch) => {
                        reader.fields = Some(batch.fields.clone());
                        (Some(Ok(batch)), Read::Open(reader))
                    }
                    Err(e) => (Some(Err(e)), Read::Done),
                }
            }
        }
    }
}
