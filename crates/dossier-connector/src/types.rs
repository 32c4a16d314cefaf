use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{FieldInfo, Value};

/// Where a connector comes from. The engine and the API use both kinds alike; this is only
/// shown (`dossier connectors list`, the `connectors` query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorKind {
    /// Compiled into Dossier.
    Builtin,
    /// A dynamic library installed at run time (`dossier connectors install`).
    Plugin,
}

impl ConnectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Builtin => "builtin",
            ConnectorKind::Plugin => "plugin",
        }
    }
}

/// What a connector is and how to configure it.
#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    pub name: String,
    pub version: String,
    pub kind: ConnectorKind,
    /// JSON Schema of the connection config.
    pub config_schema: serde_json::Value,
    /// JSON Schema of one stream's settings.
    pub stream_schema: serde_json::Value,
}

/// One readable stream of a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub name: String,
    pub fields: Vec<FieldInfo>,
    pub primary_key: Vec<String>,
    /// Fields fit to be an incremental cursor (update timestamps, monotonic keys).
    pub cursor_candidates: Vec<String>,
    /// The fields are those a sample of the records held (a schemaless source): a mapping
    /// may name others, which read as missing where absent instead of being refused.
    #[serde(default)]
    pub sampled: bool,
}

impl StreamInfo {
    /// A stream whose fields are a fixed table of `(name, source type)`, as an API's
    /// documented objects are.
    pub fn from_table(
        name: &str,
        fields: &[(&str, &str)],
        primary_key: &[&str],
        cursor_candidates: &[&str],
    ) -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Self {
            name: name.to_string(),
            fields: fields
                .iter()
                .map(|(n, t)| FieldInfo {
                    name: n.to_string(),
                    source_type: t.to_string(),
                    unsupported: None,
                })
                .collect(),
            primary_key: strings(primary_key),
            cursor_candidates: strings(cursor_candidates),
            sampled: false,
        }
    }
}

/// Everything a source offers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub streams: Vec<StreamInfo>,
}

/// One thing `check` found wrong; `stream` is `None` for the connection itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub stream: Option<String>,
    pub message: String,
}

/// An opaque checkpoint: only the connector that wrote it reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamState(pub serde_json::Value);

/// Records read together, and the checkpoint to resume after them.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Field names; every row has one value per field, in this order.
    pub fields: Arc<Vec<String>>,
    pub rows: Vec<Vec<Value>>,
    /// The state to store once these rows are committed.
    pub state: StreamState,
}

impl StreamState {
    /// The state every batch of a full-refresh read carries (a stream without a cursor):
    /// there is nothing to resume from, and once such a read completes the framework marks
    /// the records it did not see as deleted.
    pub fn full_refresh() -> Self {
        StreamState(serde_json::json!({ "full_refresh": true }))
    }

    pub fn is_full_refresh(&self) -> bool {
        self.0.get("full_refresh") == Some(&serde_json::Value::Bool(true))
    }
}
