//! Any Airbyte-protocol source as a Dossier connector: a pip-installed `source-<name>`, or
//! any executable speaking the protocol, run as a child process.
//!
//! `connect` runs `spec` and checks the user's config against the source's JSON Schema;
//! `check` runs `check` (CONNECTION_STATUS); `discover` runs `discover` (CATALOG, kept for the
//! connector's life); `read` runs `read` for one stream with a configured catalog of that
//! stream alone and the state Dossier stored for it. Records commit only in the batch of the
//! STATE message that covers them ([`read`]).
//!
//! Each run gets its files (config, catalog, state: 0600) in a private directory removed when
//! it ends, an environment of `PATH`, `HOME`, locale, certificate and proxy variables plus
//! the config's `env`, and is killed when the read is dropped (a cancel, an error).
//!
//! Logs: the source's LOG messages at their level and its stderr as `warn`, each with the
//! field `source_process` (the program's file name); a CONTROL message that updates the
//! source's config `warn`s with the keys it changed.
//!
//! [`SingerConnector`] runs a Singer tap on the same machinery (process, files, lines, batches
//! ending at states: `process` and `read` serve both protocols). [`PackageDir`] installs a
//! source or a tap from PyPI into a virtual environment of its own, as a connector named
//! after its command.

mod config;
mod error;
mod install;
mod lookup;
mod process;
mod protocol;
mod read;
mod schema;
mod singer;

use std::sync::{Arc, Mutex, PoisonError};

use dossier_connector::{
    BatchStream, Catalog, Connector, ConnectorError, Problem, ReadRequest, StreamInfo, batch_stream,
};
use serde_json::Value as Json;
use tokio::sync::OnceCell;

pub use config::{
    CatalogOption, Config, DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_LOOKUP_MAX_ROWS,
    DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_RECORDS_PER_STATE, Lookup, MAX_LOOKUP_MAX_ROWS, Stream,
    SyncMode,
};
pub use error::AirbyteError;
pub use install::{
    InstalledPackage, PACKAGES_FILE, PackageDir, PackageHash, PackageInstallation, Protocol,
    Requirement, package_factory,
};
pub use singer::SingerConnector;

use process::{Program, Run};
use protocol::{AirbyteStream, Message, MessageType, State};
use schema::Layout;

/// An Airbyte source, connected: its spec checked, its catalog read once when first needed.
pub struct AirbyteConnector {
    program: Program,
    /// The source's config; a CONTROL message may replace it for the rest of the run.
    source_config: Mutex<Json>,
    catalog: OnceCell<Vec<AirbyteStream>>,
}

/// A configured stream resolved against the catalog: what to ask the source for.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub airbyte: AirbyteStream,
    pub layout: Layout,
    pub mode: SyncMode,
    pub cursor: Vec<String>,
    pub primary_key: Vec<Vec<String>>,
}

impl AirbyteConnector {
    fn at(&self, what: &str) -> String {
        self.program.at(what)
    }

    /// Starts `verb`, with the source's config unless it is `spec`.
    fn start(&self, verb: &str, extra: &[(&str, &Json)], at: String) -> Result<Run, AirbyteError> {
        let config = self
            .source_config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut files = vec![];
        if verb != "spec" {
            files.push(("--config", &config));
        }
        files.extend_from_slice(extra);
        self.program.start(&[verb], &files, at)
    }

    /// LOG, TRACE and CONTROL, which any command may write: logged, a TRACE error returned as
    /// the error, a config update applied. Other messages are given back.
    pub(crate) fn handle(&self, run: &Run, msg: Message) -> Result<Option<Message>, AirbyteError> {
        let label = run.label();
        match msg.kind {
            MessageType::Log => {
                if let Some(log) = &msg.log {
                    process::log(label, &log.level, &log.message, log.stack_trace.as_deref());
                }
                Ok(None)
            }
            MessageType::Trace => {
                let Some(trace) = msg.trace else {
                    return Err(run.protocol("a TRACE message without `trace`"));
                };
                match trace.kind.as_str() {
                    "ERROR" => {
                        let Some(e) = trace.error else {
                            return Err(run.protocol("a TRACE ERROR without `error`"));
                        };
                        tracing::debug!(source_process = %label, internal = ?e.internal_message, stack_trace = ?e.stack_trace, "source error");
                        Err(AirbyteError::Trace {
                            at: run.at().to_string(),
                            failure_type: e
                                .failure_type
                                .clone()
                                .unwrap_or_else(|| "system_error".into()),
                            message: e.message.trim_end_matches('.').to_string(),
                        })
                    }
                    "STREAM_STATUS" => {
                        tracing::debug!(source_process = %label, status = ?trace.stream_status, "stream status");
                        Ok(None)
                    }
                    "ESTIMATE" => {
                        tracing::debug!(source_process = %label, estimate = ?trace.estimate, "estimate");
                        Ok(None)
                    }
                    other => {
                        tracing::debug!(source_process = %label, kind = other, "trace message ignored");
                        Ok(None)
                    }
                }
            }
            MessageType::Control => {
                match msg.control {
                    Some(c) if c.kind == "CONNECTOR_CONFIG" => match c.connector_config {
                        Some(update) => self.update_config(label, update.config),
                        None => {
                            return Err(run.protocol(
                                "a CONNECTOR_CONFIG control message without `connectorConfig`",
                            ));
                        }
                    },
                    other => {
                        tracing::debug!(source_process = %label, kind = ?other.map(|c| c.kind), "control message ignored");
                    }
                }
                Ok(None)
            }
            _ => Ok(Some(msg)),
        }
    }

    /// A source that rotates a credential (an OAuth refresh token) asks for its new config
    /// to be kept. It is used for the rest of this connector's life; dossier.toml, whose
    /// values may come from the environment, is not rewritten: the warning says which keys to
    /// update there.
    fn update_config(&self, label: &str, new: serde_json::Map<String, Json>) {
        let mut config = self
            .source_config
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = config.as_object().cloned().unwrap_or_default();
        let changed: Vec<&str> = new
            .iter()
            .filter(|(k, v)| old.get(*k) != Some(v))
            .map(|(k, _)| k.as_str())
            .chain(
                old.keys()
                    .filter(|k| !new.contains_key(*k))
                    .map(String::as_str),
            )
            .collect();
        tracing::warn!(
            source_process = %label,
            changed = ?changed,
            "the source updated its config (CONTROL message): this run goes on with the new values, but dossier.toml is not rewritten; put the new values of these keys in the config or its environment, or the next run may fail"
        );
        *config = Json::Object(new);
    }

    /// Runs `verb` to its end and returns its first message of type `want`.
    async fn ask(
        &self,
        verb: &str,
        want: MessageType,
        at: String,
    ) -> Result<Message, AirbyteError> {
        let mut run = self.start(verb, &[], at)?;
        let mut found = None;
        while let Some(msg) = run.next_message().await? {
            if let Some(msg) = self.handle(&run, msg)?
                && msg.kind == want
                && found.is_none()
            {
                found = Some(msg);
            }
        }
        found.ok_or_else(|| {
            run.protocol(format!(
                "the source exited without writing a {} message",
                want.as_str()
            ))
        })
    }

    /// The source's streams, as `discover` wrote them the first time it was asked.
    async fn airbyte_catalog(&self) -> Result<&[AirbyteStream], AirbyteError> {
        self.catalog
            .get_or_try_init(|| async {
                let msg = self
                    .ask("discover", MessageType::Catalog, self.at("discover"))
                    .await?;
                let catalog = msg.catalog.ok_or_else(|| {
                    AirbyteError::Config(format!(
                        "{}: the CATALOG message has no `catalog`",
                        self.at("discover")
                    ))
                })?;
                Ok(catalog.streams)
            })
            .await
            .map(Vec::as_slice)
    }

    /// The configured stream `name` against the catalog: the source's stream, its fields,
    /// and the sync mode, cursor and primary key to read it with.
    pub(crate) async fn resolve(&self, name: &str, s: &Stream) -> Result<Resolved, AirbyteError> {
        let at = || self.at(&format!("stream {name:?}"));
        s.validate()
            .map_err(|e| AirbyteError::Config(format!("{}: {e}", at())))?;
        let wanted = s.source_stream(name);
        let catalog = self.airbyte_catalog().await?;
        let Some(airbyte) = catalog
            .iter()
            .find(|a| a.is(wanted, s.namespace.as_deref()))
        else {
            let known: Vec<String> = catalog
                .iter()
                .map(|a| protocol::qualified(&a.name, a.namespace.as_deref()))
                .collect();
            return Err(AirbyteError::Config(format!(
                "{}: the source has no stream {:?} (set `stream`); it has: {}",
                at(),
                protocol::qualified(wanted, s.namespace.as_deref()),
                known.join(", ")
            )));
        };
        let layout = Layout::from_schema(&airbyte.json_schema);
        let config_error = |m: String| AirbyteError::Config(format!("{}: {m}", at()));
        let cursor = match (&s.cursor_field, airbyte.source_defined_cursor) {
            (Some(c), true) if schema::path_of(c) != airbyte.default_cursor_field => {
                return Err(config_error(format!(
                    "the source defines the cursor of {:?} ({}); remove `cursor_field`",
                    airbyte.name,
                    airbyte.default_cursor_field.join(".")
                )));
            }
            (Some(c), _) => {
                if !layout.contains(c) {
                    return Err(config_error(format!(
                        "`cursor_field` {c:?} is not a field of {:?}; its fields are: {}",
                        airbyte.name,
                        layout.names().join(", ")
                    )));
                }
                schema::path_of(c)
            }
            (None, _) => airbyte.default_cursor_field.clone(),
        };
        let mode = match s.sync_mode {
            Some(SyncMode::Incremental) if !airbyte.supports_incremental() => {
                return Err(config_error(format!(
                    "the source reads {:?} in full only; remove `sync_mode` or set it to \"full_refresh\"",
                    airbyte.name
                )));
            }
            Some(SyncMode::Incremental) if cursor.is_empty() => {
                return Err(config_error(format!(
                    "the source defines no cursor for {:?}; set `cursor_field` to read it incrementally",
                    airbyte.name
                )));
            }
            Some(mode) => mode,
            None if airbyte.supports_incremental() && !cursor.is_empty() => SyncMode::Incremental,
            None => SyncMode::FullRefresh,
        };
        let primary_key = match &s.primary_key {
            Some(pk) => {
                if let Some(f) = pk.iter().find(|f| !layout.contains(f)) {
                    return Err(config_error(format!(
                        "`primary_key` names {f:?}, which is not a field of {:?}",
                        airbyte.name
                    )));
                }
                pk.iter().map(|f| schema::path_of(f)).collect()
            }
            None => airbyte.source_defined_primary_key.clone(),
        };
        Ok(Resolved {
            airbyte: airbyte.clone(),
            layout,
            mode,
            cursor,
            primary_key,
        })
    }
}

/// Checks the source's config against its spec's `connectionSpecification`; the error names
/// each field that does not fit, never its value (it may be a secret).
fn check_against_spec(at: &str, spec: &Json, config: &Json) -> Result<(), AirbyteError> {
    let validator = match jsonschema::validator_for(spec) {
        Ok(v) => v,
        Err(e) => {
            // The source checks its config itself when it runs.
            tracing::warn!(at, error = %e, "the source's spec is not a JSON Schema Dossier can check configs with");
            return Ok(());
        }
    };
    let problems: Vec<String> = validator
        .iter_errors(config)
        .map(|e| {
            let pointer = e.instance_path().to_string();
            let field = if pointer.is_empty() {
                "config".to_string()
            } else {
                format!("config{}", pointer.replace('/', "."))
            };
            let mut message = e.to_string();
            let instance = e.instance();
            if !instance.is_object() && !instance.is_array() {
                message = message.replacen(&instance.to_string(), "the value", 1);
            }
            format!("`{field}`: {message}")
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AirbyteError::Config(format!(
            "{at}: the config does not fit the source's spec: {}",
            problems.join("; ")
        )))
    }
}

#[async_trait::async_trait]
impl Connector for AirbyteConnector {
    type Config = Config;
    type Stream = Stream;

    const NAME: &'static str = "airbyte";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    async fn connect(config: Config) -> Result<Self, ConnectorError> {
        config
            .validate()
            .map_err(|e| ConnectorError::config(format!("airbyte source: {e}")))?;
        if config.catalog_option.is_some() {
            return Err(ConnectorError::config(
                "airbyte source: `catalog_option` is for Singer taps; remove it",
            ));
        }
        let conn = AirbyteConnector {
            program: Program::from_config(&config, "airbyte source"),
            source_config: Mutex::new(config.config.clone()),
            catalog: OnceCell::new(),
        };
        let at = conn.at("spec");
        let spec = conn.ask("spec", MessageType::Spec, at.clone()).await?;
        let schema = spec
            .spec
            .map(|s| s.connection_specification)
            .ok_or_else(|| AirbyteError::Config(format!("{at}: the SPEC message has no `spec`")))?;
        check_against_spec(&at, &schema, &config.config)?;
        Ok(conn)
    }

    async fn check(&self, streams: &[(String, Stream)]) -> Vec<Problem> {
        let status = self
            .ask("check", MessageType::ConnectionStatus, self.at("check"))
            .await;
        let failed = match status {
            Err(e) => Some(ConnectorError::from(e).to_string()),
            Ok(msg) => match msg.connection_status {
                Some(s) if s.status == "SUCCEEDED" => None,
                Some(s) => Some(format!(
                    "{}: the connection check failed: {}",
                    self.at("check"),
                    s.message.as_deref().unwrap_or("no reason given")
                )),
                None => Some(format!(
                    "{}: the CONNECTION_STATUS message has no `connectionStatus`",
                    self.at("check")
                )),
            },
        };
        if let Some(message) = failed {
            return vec![Problem {
                stream: None,
                message,
            }];
        }
        dossier_connector::problems_per_stream(streams, |name, s| async move {
            self.describe(name, s).await.map(|_| vec![])
        })
        .await
    }

    async fn discover(&self) -> Result<Catalog, ConnectorError> {
        let streams = self.airbyte_catalog().await?;
        Ok(Catalog {
            streams: streams.iter().map(stream_info).collect(),
        })
    }

    async fn describe(&self, name: &str, stream: &Stream) -> Result<StreamInfo, ConnectorError> {
        let r = self.resolve(name, stream).await?;
        let mut info = stream_info(&r.airbyte);
        info.primary_key = r.primary_key.iter().map(|p| p.join(".")).collect();
        if r.mode == SyncMode::Incremental {
            info.cursor_candidates = vec![r.cursor.join(".")];
        }
        info.fields = read::fields_with_lookups(self, name, stream, info.fields).await?;
        Ok(info)
    }

    fn read(self: Arc<Self>, request: ReadRequest<Stream>) -> BatchStream {
        batch_stream(Ok(read::Reader::new(self, request)))
    }
}

#[async_trait::async_trait]
impl read::Protocol for AirbyteConnector {
    fn program(&self) -> &Program {
        &self.program
    }

    async fn source_stream(
        &self,
        name: &str,
        stream: &Stream,
    ) -> Result<lookup::SourceStream, AirbyteError> {
        let r = self.resolve(name, stream).await?;
        Ok(lookup::SourceStream {
            id: protocol::qualified(&r.airbyte.name, r.airbyte.namespace.as_deref()),
            schema: r.airbyte.json_schema,
            primary_key: r.primary_key.iter().map(|p| p.join(".")).collect(),
        })
    }

    async fn start_read(
        &self,
        request: &ReadRequest<Stream>,
    ) -> Result<(Run, read::Plan), AirbyteError> {
        let r = self.resolve(&request.name, &request.stream).await?;
        let incremental = r.mode == SyncMode::Incremental;
        let initial = request
            .state
            .as_ref()
            .filter(|_| incremental)
            .and_then(|s| State::from_stored(&s.0));
        let catalog =
            protocol::configured_catalog(&r.airbyte, r.mode.as_str(), &r.cursor, &r.primary_key);
        let state_file = initial.as_ref().map(State::to_state_file);
        let mut files: Vec<(&str, &Json)> = vec![("--catalog", &catalog)];
        if let Some(s) = &state_file {
            files.push(("--state", s));
        }
        tracing::info!(
            source_process = %self.program.label,
            stream = %request.name,
            source_stream = %r.airbyte.name,
            sync_mode = r.mode.as_str(),
            from_state = initial.is_some(),
            "reading"
        );
        let at = self.at(&format!("read of stream {:?}", request.name));
        let run = self.start("read", &files, at)?;
        Ok((
            run,
            read::Plan {
                stream: r.airbyte.name.clone(),
                namespace: r.airbyte.namespace.clone(),
                layout: r.layout,
                incremental,
                initial: initial.as_ref().map(State::to_stored),
            },
        ))
    }

    async fn next_event(
        &self,
        run: &mut Run,
        plan: &read::Plan,
    ) -> Result<Option<read::Event>, AirbyteError> {
        let (name, namespace) = (plan.stream.as_str(), plan.namespace.as_deref());
        loop {
            let Some(msg) = run.next_message().await? else {
                return Ok(None);
            };
            let Some(msg) = self.handle(run, msg)? else {
                continue;
            };
            match msg.kind {
                MessageType::Record => {
                    let Some(record) = msg.record else {
                        return Err(run.protocol("a RECORD message without `record`"));
                    };
                    let ns_ok = namespace.is_none()
                        || record.namespace.is_none()
                        || record.namespace.as_deref() == namespace;
                    if record.stream != name || !ns_ok {
                        return Err(run.protocol(format!(
                            "a record for stream {:?}, which is not in the configured catalog (only {name:?} is read)",
                            protocol::qualified(&record.stream, record.namespace.as_deref())
                        )));
                    }
                    return Ok(Some(read::Event::Record(record.data)));
                }
                MessageType::State => {
                    let Some(state) = msg.state else {
                        return Err(run.protocol("a STATE message without `state`"));
                    };
                    let state =
                        State::parse(state, name, namespace).map_err(|m| run.protocol(m))?;
                    return Ok(Some(read::Event::State(state.to_stored())));
                }
                other => {
                    tracing::debug!(source_process = %run.label(), kind = other.as_str(), "message ignored while reading");
                }
            }
        }
    }
}

/// A discovered stream as Dossier shows it.
fn stream_info(a: &AirbyteStream) -> StreamInfo {
    let layout = Layout::from_schema(&a.json_schema);
    let mut cursor_candidates = vec![];
    if !a.default_cursor_field.is_empty() {
        cursor_candidates.push(a.default_cursor_field.join("."));
    }
    StreamInfo {
        name: protocol::qualified(&a.name, a.namespace.as_deref()),
        fields: layout.info().to_vec(),
        primary_key: a
            .source_defined_primary_key
            .iter()
            .map(|p| p.join("."))
            .collect(),
        cursor_candidates,
        sampled: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_config_that_does_not_fit_the_spec_names_its_fields_not_their_values() {
        let spec = json!({
            "type": "object",
            "required": ["api_key", "count"],
            "properties": {
                "api_key": {"type": "string", "airbyte_secret": true},
                "count": {"type": "integer", "minimum": 1},
                "nested": {"type": "object", "properties": {"port": {"type": "integer"}}}
            }
        });
        assert!(check_against_spec("s", &spec, &json!({"api_key": "k", "count": 3})).is_ok());
        let e = check_against_spec(
            "s",
            &spec,
            &json!({"count": "hunter2-secret", "nested": {"port": "x"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`config`: \"api_key\" is a required property"),
            "{e}"
        );
        assert!(
            e.contains("`config.count`: the value is not of type \"integer\""),
            "{e}"
        );
        assert!(e.contains("`config.nested.port`"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
