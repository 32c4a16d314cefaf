//! The Airbyte protocol's messages (version 0.x, as the Python CDK writes them), the catalog,
//! and states as Dossier stores them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

/// One line a source writes on stdout. Only the part of the message its type names is read;
/// the others are absent.
#[derive(Debug, Deserialize)]
pub struct Message {
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub record: Option<Record>,
    pub state: Option<Json>,
    pub log: Option<Log>,
    pub trace: Option<Trace>,
    pub control: Option<Control>,
    #[serde(rename = "connectionStatus")]
    pub connection_status: Option<ConnectionStatus>,
    pub catalog: Option<Catalog>,
    pub spec: Option<Spec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageType {
    Record,
    State,
    Log,
    Spec,
    ConnectionStatus,
    Catalog,
    Trace,
    Control,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Record => "RECORD",
            MessageType::State => "STATE",
            MessageType::Log => "LOG",
            MessageType::Spec => "SPEC",
            MessageType::ConnectionStatus => "CONNECTION_STATUS",
            MessageType::Catalog => "CATALOG",
            MessageType::Trace => "TRACE",
            MessageType::Control => "CONTROL",
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Record {
    pub stream: String,
    pub namespace: Option<String>,
    pub data: Map<String, Json>,
}

#[derive(Debug, Deserialize)]
pub struct Log {
    pub level: String,
    pub message: String,
    pub stack_trace: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Trace {
    #[serde(rename = "type")]
    pub kind: String,
    pub error: Option<TraceError>,
    pub stream_status: Option<Json>,
    pub estimate: Option<Json>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TraceError {
    pub message: String,
    pub internal_message: Option<String>,
    pub stack_trace: Option<String>,
    /// `config_error`, `transient_error` or `system_error` (the default).
    pub failure_type: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Control {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "connectorConfig")]
    pub connector_config: Option<ConnectorConfig>,
}

#[derive(Debug, Deserialize)]
pub struct ConnectorConfig {
    pub config: Map<String, Json>,
}

#[derive(Debug, Deserialize)]
pub struct ConnectionStatus {
    pub status: String,
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Spec {
    #[serde(rename = "connectionSpecification")]
    pub connection_specification: Json,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDescriptor {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What `discover` found.
#[derive(Debug, Clone, Deserialize)]
pub struct Catalog {
    pub streams: Vec<AirbyteStream>,
}

/// One stream as the source describes it. Kept whole (`raw`) as the configured catalog hands
/// it back to the source.
#[derive(Debug, Clone)]
pub struct AirbyteStream {
    pub name: String,
    pub namespace: Option<String>,
    pub json_schema: Json,
    pub supported_sync_modes: Vec<String>,
    pub source_defined_cursor: bool,
    pub default_cursor_field: Vec<String>,
    pub source_defined_primary_key: Vec<Vec<String>>,
    pub raw: Json,
}

impl<'de> Deserialize<'de> for AirbyteStream {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            name: String,
            namespace: Option<String>,
            json_schema: Json,
            #[serde(default)]
            supported_sync_modes: Vec<String>,
            #[serde(default)]
            source_defined_cursor: Option<bool>,
            #[serde(default)]
            default_cursor_field: Option<Vec<String>>,
            #[serde(default)]
            source_defined_primary_key: Option<Vec<Vec<String>>>,
        }
        let raw = Json::deserialize(d)?;
        let f = Fields::deserialize(&raw).map_err(serde::de::Error::custom)?;
        Ok(AirbyteStream {
            name: f.name,
            namespace: f.namespace,
            json_schema: f.json_schema,
            supported_sync_modes: f.supported_sync_modes,
            source_defined_cursor: f.source_defined_cursor.unwrap_or(false),
            default_cursor_field: f.default_cursor_field.unwrap_or_default(),
            source_defined_primary_key: f.source_defined_primary_key.unwrap_or_default(),
            raw,
        })
    }
}

impl AirbyteStream {
    pub fn supports_incremental(&self) -> bool {
        self.supported_sync_modes.iter().any(|m| m == "incremental")
    }

    pub fn is(&self, name: &str, namespace: Option<&str>) -> bool {
        self.name == name && (namespace.is_none() || self.namespace.as_deref() == namespace)
    }
}

/// The configured catalog of a read of `stream`: this one stream, in `sync_mode`.
pub fn configured_catalog(
    stream: &AirbyteStream,
    sync_mode: &str,
    cursor_field: &[String],
    primary_key: &[Vec<String>],
) -> Json {
    json!({
        "streams": [{
            "stream": stream.raw,
            "sync_mode": sync_mode,
            "cursor_field": cursor_field,
            "primary_key": primary_key,
            "destination_sync_mode": if sync_mode == "incremental" { "append_dedup" } else { "overwrite" },
        }]
    })
}

/// A STATE message as Dossier stores it (`{"airbyte": <message>}`) and hands back.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// `type = STREAM`: one stream's state.
    Stream(Json),
    /// `type = GLOBAL`: state shared by the streams of one read, and theirs.
    Global(Json),
    /// No `type` (or `LEGACY`): the `data` blob of protocol versions before per-stream state.
    Legacy(Json),
}

/// The key under which a stored state holds the source's STATE message.
const STORED_KEY: &str = "airbyte";

impl State {
    /// The state of a STATE message, checked against the stream read (`name`, `namespace`):
    /// `Err` says what is wrong.
    pub fn parse(mut msg: Json, name: &str, namespace: Option<&str>) -> Result<State, String> {
        let Some(obj) = msg.as_object_mut() else {
            return Err("the STATE message's `state` is not an object".into());
        };
        // Counts for the platform's bookkeeping, not part of what the source resumes from.
        obj.remove("sourceStats");
        obj.remove("destinationStats");
        let kind = obj.get("type").and_then(Json::as_str).unwrap_or("LEGACY");
        let check = |d: &Json, what: &str| -> Result<(), String> {
            let d: StreamDescriptor = serde_json::from_value(d.clone())
                .map_err(|e| format!("{what} has no valid stream_descriptor: {e}"))?;
            let ns_ok =
                namespace.is_none() || d.namespace.is_none() || d.namespace.as_deref() == namespace;
            if d.name == name && ns_ok {
                Ok(())
            } else {
                Err(format!(
                    "{what} is for stream {:?}, which is not in the configured catalog (only {name:?} is read)",
                    qualified(&d.name, d.namespace.as_deref())
                ))
            }
        };
        match kind {
            "STREAM" => {
                let stream = obj.get("stream").ok_or("a STREAM state has no `stream`")?;
                check(
                    stream.get("stream_descriptor").unwrap_or(&Json::Null),
                    "a STREAM state",
                )?;
                Ok(State::Stream(msg))
            }
            "GLOBAL" => {
                let states = obj
                    .get("global")
                    .and_then(|g| g.get("stream_states"))
                    .and_then(Json::as_array)
                    .ok_or("a GLOBAL state has no `global.stream_states`")?;
                for s in states {
                    check(
                        s.get("stream_descriptor").unwrap_or(&Json::Null),
                        "a GLOBAL state's stream state",
                    )?;
                }
                Ok(State::Global(msg))
            }
            "LEGACY" => {
                if obj.get("data").is_none() {
                    return Err("a LEGACY state has no `data`".into());
                }
                Ok(State::Legacy(msg))
            }
            other => Err(format!("unknown state type {other:?}")),
        }
    }

    /// As Dossier stores it.
    pub fn to_stored(&self) -> Json {
        let (State::Stream(m) | State::Global(m) | State::Legacy(m)) = self;
        json!({ STORED_KEY: m })
    }

    /// A stored state; `None` for one that is not an Airbyte state (a full refresh's).
    pub fn from_stored(stored: &Json) -> Option<State> {
        let msg = stored.get(STORED_KEY)?.clone();
        Some(match msg.get("type").and_then(Json::as_str) {
            Some("STREAM") => State::Stream(msg),
            Some("GLOBAL") => State::Global(msg),
            _ => State::Legacy(msg),
        })
    }

    /// What `--state` hands the source: the list of state messages, or a legacy blob.
    pub fn to_state_file(&self) -> Json {
        match self {
            State::Stream(m) | State::Global(m) => Json::Array(vec![m.clone()]),
            State::Legacy(m) => m.get("data").cloned().unwrap_or(Json::Null),
        }
    }
}

/// `namespace.name`, or `name`.
pub fn qualified(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{ns}.{name}"),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_name_their_stream_and_round_trip() {
        let s = json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"updated_at": "2024"}}, "sourceStats": {"recordCount": 3.0}});
        let state = State::parse(s, "users", None).unwrap();
        let stored = state.to_stored();
        assert!(stored["airbyte"].get("sourceStats").is_none());
        let back = State::from_stored(&stored).unwrap();
        assert_eq!(back, state);
        assert_eq!(
            back.to_state_file()[0]["stream"]["stream_state"]["updated_at"],
            "2024"
        );

        let other = json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "orders"}}});
        let e = State::parse(other, "users", None).unwrap_err();
        assert!(
            e.contains("\"orders\", which is not in the configured catalog"),
            "{e}"
        );

        let global = json!({"type": "GLOBAL", "global": {"shared_state": {"lsn": 7}, "stream_states": [{"stream_descriptor": {"name": "users"}, "stream_state": {}}]}});
        assert!(matches!(
            State::parse(global, "users", None),
            Ok(State::Global(_))
        ));
        let global = json!({"type": "GLOBAL", "global": {"stream_states": [{"stream_descriptor": {"name": "x"}, "stream_state": {}}]}});
        assert!(State::parse(global, "users", None).is_err());

        let legacy = json!({"data": {"users": {"cursor": 5}}});
        let state = State::parse(legacy, "users", None).unwrap();
        assert_eq!(state.to_state_file(), json!({"users": {"cursor": 5}}));
        assert_eq!(State::from_stored(&state.to_stored()), Some(state));
        assert_eq!(State::from_stored(&json!({"full_refresh": true})), None);
    }
}
