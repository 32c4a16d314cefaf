//! The connectors the server knows, and installing and removing them over the API.

use std::time::Duration;

use async_graphql::{Context, Enum, Error, Json, Object, Result};

use crate::Role;
use crate::auth::RoleGuard;
use crate::context::gateway;

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

    /// Installs a package, `airbyte:source-<name>==<version>` or `singer:tap-<name>==<version>`,
    /// as `dossier connectors install` does, and returns its connector once installed. An
    /// install outlives a caller that stops waiting for it; asking for the same package again
    /// waits for that install. Err is a user-facing message.
    async fn install_package(&self, spec: &str) -> Result<ConnectorInfo, String> {
        let _ = spec;
        Err("installing packages is not available in this process".to_string())
    }

    /// Removes the installed plugin or package `name` (its library or virtual environment),
    /// as `dossier connectors remove` does; returns what was removed. Err is a user-facing
    /// message.
    async fn remove(&self, name: &str) -> Result<ConnectorInfo, String> {
        let _ = name;
        Err("removing connectors is not available in this process".to_string())
    }
}

/// The connectors of this process, or an error saying there are none.
pub(crate) fn connector_admin<'a>(ctx: &Context<'a>) -> Result<&'a dyn ConnectorAdmin> {
    gateway(ctx)?
        .connectors
        .as_deref()
        .ok_or_else(|| Error::new("connectors are not available in this process"))
}

/// How much sooner than the request's own time bound an install or a removal stops waiting,
/// so that its answer says what goes on rather than the bound's generic error.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// How long a request may wait for work that goes on in the server when it stops waiting.
fn answer_within(ctx: &Context<'_>) -> Result<Duration> {
    let limit = gateway(ctx)?.config.request_timeout;
    Ok(limit.saturating_sub(ANSWER_MARGIN).max(limit / 2))
}

/// Installing and removing connectors (admin role).
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnectorMutation;

#[Object]
impl ConnectorMutation {
    /// Installs a connector and returns it (admin role). Give one of:
    /// `file`, a plugin library in the plugin directory (a file name there), checked against
    /// `sha256` when given; or `package`, an Airbyte source or a Singer tap from PyPI
    /// (`airbyte:source-faker==7.2.1`, `singer:tap-postgres==0.1.0`; the version pinned),
    /// installed with pip into a virtual environment of its own as `dossier connectors
    /// install` does: the answer comes once pip is done, or says what failed. An install
    /// that takes longer than the request may run goes on in the server: ask again with the
    /// same package to wait for it and get its outcome. Refused unless the server's config
    /// sets `server.allow_plugin_install = true` (either lets an admin key run code of its
    /// choosing in the server).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn install_connector(
        &self,
        ctx: &Context<'_>,
        file: Option<String>,
        sha256: Option<String>,
        package: Option<String>,
    ) -> Result<Connector> {
        let gw = gateway(ctx)?;
        if !gw.config.allow_plugin_install {
            return Err(Error::new(
                "installing plugins over the API is disabled; set `server.allow_plugin_install = true` \
                 in the config to allow it (an admin key could then load code into the server), or \
                 use `dossier connectors install`",
            ));
        }
        let admin = connector_admin(ctx)?;
        match (file, package) {
            (Some(file), None) => admin
                .install(&file, sha256.as_deref())
                .await
                .map(Connector)
                .map_err(Error::new),
            (None, Some(package)) => {
                if sha256.is_some() {
                    return Err(Error::new(
                        "`sha256` pins a plugin library; pip checks the packages it installs (their hashes are recorded)",
                    ));
                }
                let wait = answer_within(ctx)?;
                match tokio::time::timeout(wait, admin.install_package(&package)).await {
                    Ok(done) => done.map(Connector).map_err(Error::new),
                    Err(_) => Err(Error::new(format!(
                        "{package}: pip is still installing it after {} s, as long as a request may run \
                         (`server.request_timeout`); the install goes on in the server: ask again with \
                         the same package to wait for it and get its outcome",
                        wait.as_secs_f32().round()
                    ))),
                }
            }
            _ => Err(Error::new(
                "give one of `file` (a plugin library in the plugin directory) and `package` \
                 (airbyte:source-<name>==<version> or singer:tap-<name>==<version>)",
            )),
        }
    }

    /// Removes an installed plugin or package (`dossier connectors remove`): forgets it and
    /// deletes its library or virtual environment, and returns it (admin role). Deleting a
    /// large virtual environment that outlasts the request goes on in the server. This server
    /// keeps listing and running what it loaded until it restarts.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn remove_connector(&self, ctx: &Context<'_>, name: String) -> Result<Connector> {
        let wait = answer_within(ctx)?;
        match tokio::time::timeout(wait, connector_admin(ctx)?.remove(&name)).await {
            Ok(done) => done.map(Connector).map_err(Error::new),
            Err(_) => Err(Error::new(format!(
                "{name}: still removing it after {} s, as long as a request may run \
                 (`server.request_timeout`); the removal goes on in the server \
                 (`dossier connectors list` shows when it is done)",
                wait.as_secs_f32().round()
            ))),
        }
    }
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
