//! The connectors the server knows, and installing plugins over the API.

use async_graphql::{Enum, Json, Object};

/// Where a connector comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ConnectorKind {
    /// Compiled into Dossier.
    Builtin,
    /// A dynamic library installed at run time.
    Plugin,
}

/// A connector, as the `connectors` query lists it.
#[derive(Debug, Clone)]
pub struct ConnectorInfo {
    /// The name configs refer to (`connector = "..."`).
    pub name: String,
    /// Built in, or a plugin.
    pub kind: ConnectorKind,
    /// The connector's version.
    pub version: String,
    /// JSON Schema of its connection config.
    pub config_schema: serde_json::Value,
    /// JSON Schema of one stream's settings.
    pub stream_schema: serde_json::Value,
    /// A plugin's library file, in the plugin directory.
    pub file: Option<String>,
    /// A plugin's library sha256 (hex), checked at every load.
    pub sha256: Option<String>,
}

/// Lists connectors and installs plugins for the gateway (implemented beside the engine; the
/// gateway does not load libraries itself).
#[async_trait::async_trait]
pub trait ConnectorAdmin: Send + Sync {
    /// Every registered connector: built-ins and loaded plugins.
    fn connectors(&self) -> Vec<ConnectorInfo>;
    /// Installs the library `file` (a file name in the plugin directory), optionally pinned to
    /// a sha256; returns the installed connector. Err is a user-facing message.
    async fn install(&self, file: &str, sha256: Option<&str>) -> Result<ConnectorInfo, String>;
}

/// A connector: built in or an installed plugin.
pub(crate) struct Connector(pub(crate) ConnectorInfo);

/// A connector: built in or an installed plugin.
#[Object]
impl Connector {
    /// The name configs refer to (`connector = "..."`).
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Built in, or a plugin.
    async fn kind(&self) -> ConnectorKind {
        self.0.kind
    }

    /// The connector's version.
    async fn version(&self) -> &str {
        &self.0.version
    }

    /// JSON Schema of its connection config.
    async fn config_schema(&self) -> Json<&serde_json::Value> {
        Json(&self.0.config_schema)
    }

    /// JSON Schema of one stream's settings.
    async fn stream_schema(&self) -> Json<&serde_json::Value> {
        Json(&self.0.stream_schema)
    }

    /// A plugin's library file, in the plugin directory.
    async fn file(&self) -> Option<&str> {
        self.0.file.as_deref()
    }

    /// A plugin's library sha256 (hex), checked at every load.
    async fn sha256(&self) -> Option<&str> {
        self.0.sha256.as_deref()
    }
}
