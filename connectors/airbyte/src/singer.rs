//! Any Singer tap as a Dossier connector, on the machinery of the Airbyte connector (the child
//! process, its files, bounded lines, batches that end at a state).
//!
//! `discover` runs `<tap> --config <file> --discover` and reads its catalog (one JSON
//! document, however many lines); `check` is that discover, as taps have no check command.
//! `read` runs `<tap> --config <file> --catalog <file> [--state <file>]` (`--properties` with
//! `catalog_option = "properties"`) with a catalog of the
//! one stream read, selected, its replication method and key set in its metadata. Messages:
//! RECORD (of that stream, else an error), STATE (its `value`, the tap's whole state, covers
//! the records before it and is stored with them), SCHEMA and ACTIVATE_VERSION (logged).

use std::sync::Arc;

use dossier_connector::{
    BatchStream, Catalog, Connector, ConnectorError, Problem, ReadRequest, StreamInfo, batch_stream,
};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use tokio::sync::OnceCell;

use crate::error::AirbyteError;
use crate::lookup::SourceStream;
use crate::process::{Program, Run};
use crate::read::{self, Event, Plan};
use crate::schema::Layout;
use crate::{CatalogOption, Config, Stream, SyncMode};

/// The key under which a stored state holds the tap's state.
const STORED_KEY: &str = "singer";

/// A Singer tap, connected.
pub struct SingerConnector {
    program: Program,
    catalog_option: CatalogOption,
    config: Json,
    catalog: OnceCell<Vec<TapStream>>,
}

/// One stream of the tap's catalog, as discovered.
#[derive(Debug, Clone)]
struct TapStream {
    tap_stream_id: String,
    /// The stream's name (`stream`), which RECORD messages carry; often the id.
    name: String,
    layout: Layout,
    key_properties: Vec<String>,
    valid_replication_keys: Vec<String>,
    forced_method: Option<String>,
    /// The catalog entry as the tap wrote it, written back for a read.
    raw: Json,
}

/// The stream-level metadata entry (`breadcrumb: []`) of a catalog entry.
fn stream_metadata(raw: &Json) -> Option<&Map<String, Json>> {
    raw["metadata"].as_array()?.iter().find_map(|m| {
        let top = m["breadcrumb"].as_array().is_some_and(Vec::is_empty);
        if top { m["metadata"].as_object() } else { None }
    })
}

fn strings(v: Option<&Json>) -> Vec<String> {
    match v {
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

impl TapStream {
    fn parse(raw: Json) -> Result<TapStream, String> {
        let id = raw["tap_stream_id"]
            .as_str()
            .or_else(|| raw["stream"].as_str())
            .ok_or("a catalog stream has no `tap_stream_id`")?
            .to_string();
        let name = raw["stream"].as_str().unwrap_or(&id).to_string();
        if !raw["schema"].is_object() {
            return Err(format!("the catalog stream {id:?} has no `schema`"));
        }
        let meta = stream_metadata(&raw);
        let mut key_properties = strings(raw.get("key_properties"));
        if key_properties.is_empty() {
            key_properties = strings(meta.and_then(|m| m.get("table-key-properties")));
        }
        let mut valid_replication_keys =
            strings(meta.and_then(|m| m.get("valid-replication-keys")));
        for k in strings(raw.get("replication_key"))
            .into_iter()
            .chain(strings(meta.and_then(|m| m.get("replication-key"))))
        {
            if !valid_replication_keys.contains(&k) {
                valid_replication_keys.push(k);
            }
        }
        Ok(TapStream {
            layout: Layout::from_schema(&raw["schema"]),
            forced_method: meta
                .and_then(|m| m.get("forced-replication-method"))
                .and_then(Json::as_str)
                // Taps of the Meltano SDK write "" for "none forced".
                .filter(|m| !m.is_empty())
                .map(str::to_ascii_uppercase),
            tap_stream_id: id,
            name,
            key_properties,
            valid_replication_keys,
            raw,
        })
    }

    fn info(&self) -> StreamInfo {
        StreamInfo {
            name: self.tap_stream_id.clone(),
            fields: self.layout.info().to_vec(),
            primary_key: self.key_properties.clone(),
            cursor_candidates: self.valid_replication_keys.clone(),
            sampled: false,
        }
    }

    /// A catalog of this stream alone, selected (with all its properties the tap can give),
    /// read with `method` and `key`.
    fn selected_catalog(&self, method: &str, key: Option<&str>) -> Json {
        let mut entry = self.raw.clone();
        // Taps of the first Singer libraries look for `selected` in the schema.
        entry["schema"]["selected"] = Json::Bool(true);
        let mut metadata = entry["metadata"].as_array().cloned().unwrap_or_default();
        let mut has_top = false;
        for m in &mut metadata {
            let top = m["breadcrumb"].as_array().is_some_and(Vec::is_empty);
            let Some(inner) = m["metadata"].as_object_mut() else {
                continue;
            };
            if top {
                has_top = true;
                inner.insert("selected".into(), Json::Bool(true));
                inner.insert("replication-method".into(), json!(method));
                match key {
                    Some(k) => inner.insert("replication-key".into(), json!(k)),
                    None => inner.remove("replication-key"),
                };
            } else if inner.get("inclusion").and_then(Json::as_str) != Some("unsupported") {
                inner.insert("selected".into(), Json::Bool(true));
            }
        }
        if !has_top {
            let mut inner = json!({"selected": true, "replication-method": method});
            if let Some(k) = key {
                inner["replication-key"] = json!(k);
            }
            metadata.push(json!({"breadcrumb": [], "metadata": inner}));
        }
        entry["metadata"] = Json::Array(metadata);
        if let Some(k) = key {
            entry["replication_key"] = json!(k);
        }
        entry["replication_method"] = json!(method);
        json!({ "streams": [entry] })
    }
}

/// How one configured stream is read.
struct Resolved {
    stream: TapStream,
    incremental: bool,
    key: Option<String>,
}

/// One line of a tap's output.
#[derive(Debug, Deserialize)]
struct SingerMessage {
    #[serde(rename = "type")]
    kind: String,
    stream: Option<String>,
    record: Option<Map<String, Json>>,
    value: Option<Json>,
    version: Option<Json>,
}

impl SingerConnector {
    fn at(&self, what: &str) -> String {
        self.program.at(what)
    }

    fn start(
        &self,
        args: &[&str],
        extra: &[(&str, &Json)],
        at: String,
    ) -> Result<Run, AirbyteError> {
        let mut files = vec![("--config", &self.config)];
        files.extend_from_slice(extra);
        self.program.start(args, &files, at)
    }

    async fn tap_catalog(&self) -> Result<&[TapStream], AirbyteError> {
        self.catalog
            .get_or_try_init(|| async {
                let at = self.at("discover");
                let mut run = self.start(&["--discover"], &[], at.clone())?;
                let doc: Json = run.read_document().await?;
                let streams = doc["streams"].as_array().ok_or_else(|| {
                    AirbyteError::Config(format!("{at}: the catalog has no `streams` list"))
                })?;
                streams
                    .iter()
                    .cloned()
                    .map(|s| {
                        TapStream::parse(s).map_err(|m| AirbyteError::Config(format!("{at}: {m}")))
                    })
                    .collect()
            })
            .await
            .map(Vec::as_slice)
    }

    async fn resolve(&self, name: &str, s: &Stream) -> Result<Resolved, AirbyteError> {
        let at = || self.at(&format!("stream {name:?}"));
        let config_error = |m: String| AirbyteError::Config(format!("{}: {m}", at()));
        s.validate().map_err(config_error)?;
        if s.namespace.is_some() {
            return Err(config_error(
                "Singer streams have no namespace; remove `namespace`".into(),
            ));
        }
        let wanted = s.source_stream(name);
        let catalog = self.tap_catalog().await?;
        let Some(stream) = catalog
            .iter()
            .find(|t| t.tap_stream_id == wanted)
            .or_else(|| catalog.iter().find(|t| t.name == wanted))
        else {
            let known: Vec<&str> = catalog.iter().map(|t| t.tap_stream_id.as_str()).collect();
            return Err(config_error(format!(
                "the tap has no stream {wanted:?} (set `stream`); it has: {}",
                known.join(", ")
            )));
        };
        if let Some(pk) = &s.primary_key
            && let Some(f) = pk.iter().find(|f| !stream.layout.contains(f))
        {
            return Err(config_error(format!(
                "`primary_key` names {f:?}, which is not a field of {wanted:?}"
            )));
        }
        let key = match &s.cursor_field {
            Some(c) if !stream.layout.contains(c) => {
                return Err(config_error(format!(
                    "`cursor_field` {c:?} is not a field of {wanted:?}; its fields are: {}",
                    stream.layout.names().join(", ")
                )));
            }
            Some(c) => Some(c.clone()),
            None => stream.valid_replication_keys.first().cloned(),
        };
        let forced = stream.forced_method.as_deref();
        let incremental = match s.sync_mode {
            Some(SyncMode::Incremental) if forced == Some("FULL_TABLE") => {
                return Err(config_error(format!(
                    "the tap reads {wanted:?} in full only; remove `sync_mode` or set it to \"full_refresh\""
                )));
            }
            Some(SyncMode::Incremental) if key.is_none() && forced.is_none() => {
                return Err(config_error(format!(
                    "the tap names no replication key for {wanted:?}; set `cursor_field` to read it incrementally"
                )));
            }
            Some(SyncMode::Incremental) => true,
            Some(SyncMode::FullRefresh) => false,
            None => {
                forced != Some("FULL_TABLE")
                    && (key.is_some() || matches!(forced, Some("INCREMENTAL" | "LOG_BASED")))
            }
        };
        Ok(Resolved {
            stream: stream.clone(),
            incremental,
            key: if incremental { key } else { None },
        })
    }
}

#[async_trait::async_trait]
impl Connector for SingerConnector {
    type Config = Config;
    type Stream = Stream;

    const NAME: &'static str = "singer";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    async fn connect(config: Config) -> Result<Self, ConnectorError> {
        config
            .validate()
            .map_err(|e| ConnectorError::config(format!("singer tap: {e}")))?;
        Ok(SingerConnector {
            program: Program {
                stderr_is_log: true,
                ..Program::from_config(&config, "singer tap")
            },
            catalog_option: config.catalog_option.unwrap_or(CatalogOption::Catalog),
            config: config.config.clone(),
            catalog: OnceCell::new(),
        })
    }

    async fn check(&self, streams: &[(String, Stream)]) -> Vec<Problem> {
        if let Err(e) = self.tap_catalog().await {
            return vec![Problem {
                stream: None,
                message: ConnectorError::from(e).to_string(),
            }];
        }
        dossier_connector::problems_per_stream(streams, |name, s| async move {
            self.describe(name, s).await.map(|_| vec![])
        })
        .await
    }

    async fn discover(&self) -> Result<Catalog, ConnectorError> {
        Ok(Catalog {
            streams: self
                .tap_catalog()
                .await?
                .iter()
                .map(TapStream::info)
                .collect(),
        })
    }

    async fn describe(&self, name: &str, stream: &Stream) -> Result<StreamInfo, ConnectorError> {
        let r = self.resolve(name, stream).await?;
        let mut info = r.stream.info();
        if let Some(pk) = &stream.primary_key {
            info.primary_key = pk.clone();
        }
        info.cursor_candidates = r.key.into_iter().collect();
        info.fields = read::fields_with_lookups(self, name, stream, info.fields).await?;
        Ok(info)
    }

    fn read(self: Arc<Self>, request: ReadRequest<Stream>) -> BatchStream {
        batch_stream(Ok(read::Reader::new(self, request)))
    }
}

#[async_trait::async_trait]
impl read::Protocol for SingerConnector {
    fn program(&self) -> &Program {
        &self.program
    }

    async fn source_stream(
        &self,
        name: &str,
        stream: &Stream,
    ) -> Result<SourceStream, AirbyteError> {
        let r = self.resolve(name, stream).await?;
        Ok(SourceStream {
            id: r.stream.tap_stream_id,
            schema: r.stream.raw["schema"].clone(),
            primary_key: stream
                .primary_key
                .clone()
                .unwrap_or(r.stream.key_properties),
        })
    }

    async fn start_read(&self, request: &ReadRequest<Stream>) -> Result<(Run, Plan), AirbyteError> {
        let r = self.resolve(&request.name, &request.stream).await?;
        let method = if r.incremental {
            "INCREMENTAL"
        } else {
            "FULL_TABLE"
        };
        let catalog = r.stream.selected_catalog(method, r.key.as_deref());
        let initial = request
            .state
            .as_ref()
            .filter(|_| r.incremental)
            .and_then(|s| s.0.get(STORED_KEY).cloned());
        let mut files: Vec<(&str, &Json)> = vec![(self.catalog_option.flag(), &catalog)];
        if let Some(s) = &initial {
            files.push(("--state", s));
        }
        tracing::info!(
            source_process = %self.program.label,
            stream = %request.name,
            tap_stream = %r.stream.tap_stream_id,
            replication_method = method,
            from_state = initial.is_some(),
            "reading"
        );
        let at = self.at(&format!("read of stream {:?}", request.name));
        let run = self.start(&[], &files, at)?;
        Ok((
            run,
            Plan {
                stream: r.stream.name.clone(),
                namespace: None,
                layout: r.stream.layout,
                incremental: r.incremental,
                initial: initial.map(|s| json!({ STORED_KEY: s })),
            },
        ))
    }

    async fn next_event(&self, run: &mut Run, plan: &Plan) -> Result<Option<Event>, AirbyteError> {
        let label = run.label().to_string();
        loop {
            let Some(msg) = run.next_json::<SingerMessage>().await? else {
                return Ok(None);
            };
            match msg.kind.as_str() {
                "RECORD" => {
                    let stream = msg.stream.unwrap_or_default();
                    if stream != plan.stream {
                        return Err(run.protocol(format!(
                            "a record for stream {stream:?}, which is not in the catalog (only {:?} is read)",
                            plan.stream
                        )));
                    }
                    let Some(record) = msg.record else {
                        return Err(run.protocol("a RECORD message without `record`"));
                    };
                    return Ok(Some(Event::Record(record)));
                }
                "STATE" => {
                    let Some(value) = msg.value else {
                        return Err(run.protocol("a STATE message without `value`"));
                    };
                    return Ok(Some(Event::State(json!({ STORED_KEY: value }))));
                }
                "SCHEMA" => {
                    tracing::debug!(source_process = %label, stream = ?msg.stream, "schema message");
                }
                "ACTIVATE_VERSION" => {
                    tracing::debug!(source_process = %label, stream = ?msg.stream, version = ?msg.version, "activate version");
                }
                "BATCH" => {
                    return Err(run.protocol(
                        "a BATCH message (records in files): not supported; turn the tap's batch mode off",
                    ));
                }
                other => {
                    tracing::debug!(source_process = %label, kind = other, "message ignored while reading");
                }
            }
        }
    }
}
