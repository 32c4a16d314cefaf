//! `dossier connectors list|install|remove`, loading installed plugins at start, and the
//! gateway's view of the connectors.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use dossier_connector::{ConnectorKind, Registry};
use dossier_gateway::{ConnectorAdmin, ConnectorInfo};
use dossier_plugin_host::{InstalledPlugin, PluginDir};
use serde::Serialize;

use crate::builtins::builtin_registry;

/// The plugin directory: `--plugin-dir` / `DOSSIER_PLUGIN_DIR`, else `plugins` beside the
/// config file.
pub fn plugin_dir(flag: Option<&Path>, config: &Path) -> PluginDir {
    PluginDir::new(flag.map_or_else(
        || {
            config
                .parent()
                .unwrap_or_else(|| Path::new(""))
                .join("plugins")
        },
        Path::to_path_buf,
    ))
}

/// The built-in connectors and the installed plugins that load; a plugin that fails is
/// reported on stderr and skipped.
pub fn registry(plugins: &PluginDir) -> Registry {
    let registry = builtin_registry();
    match plugins.load_all(&registry) {
        Ok(outcomes) => {
            for o in outcomes {
                if let Err(e) = o.result {
                    eprintln!(
                        "warning: plugin {:?} not loaded, skipped: {e}",
                        o.record.name
                    );
                }
            }
        }
        Err(e) => eprintln!("warning: no plugin loaded: {e}"),
    }
    registry
}

/// One line of `dossier connectors list`.
#[derive(Debug, Serialize)]
struct Listed {
    name: String,
    kind: &'static str,
    version: String,
    file: Option<String>,
    sha256: Option<String>,
    /// Why an installed plugin did not load.
    error: Option<String>,
}

pub fn list(plugins: &PluginDir, json: bool) -> anyhow::Result<ExitCode> {
    let registry = builtin_registry();
    let outcomes = plugins.load_all(&registry)?;
    let mut rows: Vec<Listed> = registry
        .specs()
        .into_iter()
        .map(|s| {
            let record = outcomes
                .iter()
                .find(|o| o.record.name == s.name && s.kind == ConnectorKind::Plugin)
                .map(|o| &o.record);
            Listed {
                name: s.name,
                kind: s.kind.as_str(),
                version: s.version,
                file: record.map(|r| r.file.clone()),
                sha256: record.map(|r| r.sha256.clone()),
                error: None,
            }
        })
        .collect();
    rows.extend(outcomes.into_iter().filter_map(|o| {
        let e = o.result.err()?;
        Some(Listed {
            name: o.record.name,
            kind: ConnectorKind::Plugin.as_str(),
            version: o.record.version,
            file: Some(o.record.file),
            sha256: Some(o.record.sha256),
            error: Some(e.to_string()),
        })
    }));
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<14} {:<8} {:<10} details", "name", "kind", "version");
    for r in &rows {
        let details = match (&r.error, &r.file, &r.sha256) {
            (Some(e), _, _) => format!("NOT LOADED: {e}"),
            (None, Some(f), Some(h)) => format!("{f} sha256 {}", &h[..h.len().min(16)]),
            _ => String::new(),
        };
        println!("{:<14} {:<8} {:<10} {details}", r.name, r.kind, r.version);
    }
    println!("plugin directory: {}", plugins.path().display());
    Ok(ExitCode::SUCCESS)
}

pub fn install(plugins: &PluginDir, path: &Path, sha256: Option<&str>) -> anyhow::Result<ExitCode> {
    let registry = builtin_registry();
    let done = plugins
        .install(path, sha256, &registry)
        .with_context(|| format!("plugin {} not installed", path.display()))?;
    let r = &done.record;
    println!(
        "installed {} {} (plugin ABI {}) as {}, sha256 {}",
        r.name,
        r.version,
        r.abi,
        plugins.path().join(&r.file).display(),
        r.sha256
    );
    if let Some(old) = done.replaced {
        println!("replaced {} {}", old.name, old.version);
    }
    println!("a running `dossier serve` loads it when it next starts");
    Ok(ExitCode::SUCCESS)
}

pub fn remove(plugins: &PluginDir, name: &str) -> anyhow::Result<ExitCode> {
    let removed = plugins.remove(name)?;
    println!("removed {} {}", removed.name, removed.version);
    Ok(ExitCode::SUCCESS)
}

/// The gateway's connector list and plugin installs, over the engine's registry.
pub struct PluginAdmin {
    pub registry: Registry,
    pub dir: PluginDir,
}

fn info(spec: dossier_connector::Spec, installed: &[InstalledPlugin]) -> ConnectorInfo {
    let record = installed
        .iter()
        .find(|r| r.name == spec.name && spec.kind == ConnectorKind::Plugin);
    ConnectorInfo {
        kind: match spec.kind {
            ConnectorKind::Builtin => dossier_gateway::ConnectorKind::Builtin,
            ConnectorKind::Plugin => dossier_gateway::ConnectorKind::Plugin,
        },
        name: spec.name,
        version: spec.version,
        config_schema: spec.config_schema,
        stream_schema: spec.stream_schema,
        file: record.map(|r| r.file.clone()),
        sha256: record.map(|r| r.sha256.clone()),
    }
}

#[async_trait::async_trait]
impl ConnectorAdmin for PluginAdmin {
    fn connectors(&self) -> Vec<ConnectorInfo> {
        let installed = self.dir.installed().unwrap_or_default();
        self.registry
            .specs()
            .into_iter()
            .map(|s| info(s, &installed))
            .collect()
    }

    async fn install(&self, file: &str, sha256: Option<&str>) -> Result<ConnectorInfo, String> {
        let (dir, registry) = (self.dir.clone(), self.registry.clone());
        let (file, sha256) = (file.to_string(), sha256.map(str::to_string));
        let done = tokio::task::spawn_blocking(move || {
            dir.install_from_dir(&file, sha256.as_deref(), &registry)
        })
        .await
        .map_err(|e| format!("the install did not complete: {e}"))?
        .map_err(|e| e.to_string())?;
        let installed = self.dir.installed().unwrap_or_default();
        let spec = self
            .registry
            .get(&done.record.name)
            .map_err(|e| e.to_string())?
            .spec();
        let mut info = info(spec, &installed);
        if !done.active {
            // Another version is loaded in this process: the new one is used from the next start.
            info.version = format!(
                "{} (installed {}; active after a restart)",
                info.version, done.record.version
            );
        }
        Ok(info)
    }
}
