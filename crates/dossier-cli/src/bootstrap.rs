//! Starting from a config file: load the installed plugins and the config, open the store,
//! and register the config's sources and rules there. Every command that works from a config
//! starts here.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use dossier_plugin_host::PluginDir;
use dossier_store::SqlStore;
use dossier_sync::{Config, Engine};

/// Loads the installed plugins and the config, opens the store, and registers the config's
/// sources and rules there.
pub async fn engine(config: &Path, plugins: &PluginDir) -> anyhow::Result<Arc<Engine>> {
    let (store, registry, loaded) = open(config, plugins, false).await?;
    Ok(Engine::new(store, registry, loaded).await?)
}

/// The engine of a command that only reads the store (`runs`, `sources`, `query`, `keys
/// list`): it writes nothing there, and needs no source's connection variables.
pub async fn engine_read_only(config: &Path, plugins: &PluginDir) -> anyhow::Result<Arc<Engine>> {
    let (store, registry, loaded) = open(config, plugins, true).await?;
    Ok(Engine::read_only(store, registry, loaded))
}

async fn open(
    config: &Path,
    plugins: &PluginDir,
    offline: bool,
) -> anyhow::Result<(
    SqlStore,
    dossier_connector::Registry,
    dossier_sync::config::Loaded,
)> {
    if !config.exists() {
        anyhow::bail!(
            "config file {} not found; pass --config <file>, set DOSSIER_CONFIG, or run `dossier demo` to create a sample",
            config.display()
        );
    }
    let registry = crate::connectors::registry(plugins);
    let loaded = if offline {
        Config::load_offline(config, &registry)?
    } else {
        Config::load(config, &registry)?
    };
    let url = loaded.config.store.url.clone();
    let store = SqlStore::open(&url)
        .await
        .with_context(|| "opening the store (check `store.url` in the config)")?;
    Ok((store, registry, loaded))
}
