//! `dossier connectors list|install|remove`, loading installed plugins at start, and the
//! gateway's view of the connectors.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use dossier_connector::{ConnectorKind, Registry};
use dossier_connector_airbyte::{InstalledPackage, PackageDir, Requirement};
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

/// The installed Airbyte sources and Singer taps, beside the plugins.
fn packages(plugins: &PluginDir) -> PackageDir {
    PackageDir::new(plugins.path())
}

/// The built-in connectors, the installed plugins that load and the installed packages; one
/// that fails is reported on stderr and skipped.
pub fn registry(plugins: &PluginDir) -> Registry {
    let registry = builtin_registry();
    match packages(plugins).factories() {
        Ok(factories) => {
            for (name, factory) in factories {
                if let Err(e) = registry.register_factory(&name, factory) {
                    eprintln!("warning: package {name:?} not loaded, skipped: {e}");
                }
            }
        }
        Err(e) => eprintln!("warning: no package loaded: {e}"),
    }
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
    /// An installed package's PyPI name.
    #[serde(skip_serializing_if = "Option::is_none")]
    package: Option<String>,
    /// An installed package's command.
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    /// Every package installed with an installed package, with their hashes.
    #[serde(skip_serializing_if = "Option::is_none")]
    packages: Option<Vec<dossier_connector_airbyte::PackageHash>>,
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
                package: None,
                command: None,
                packages: None,
                error: None,
            }
        })
        .collect();
    let dir = packages(plugins);
    rows.extend(dir.installed()?.into_iter().map(|p| Listed {
        kind: p.protocol.as_str(),
        command: Some(dir.command_path(&p).display().to_string()),
        file: None,
        sha256: Some(p.sha256),
        package: Some(p.package),
        packages: Some(p.packages),
        name: p.name,
        version: p.version,
        error: None,
    }));
    rows.extend(outcomes.into_iter().filter_map(|o| {
        let e = o.result.err()?;
        Some(Listed {
            name: o.record.name,
            kind: ConnectorKind::Plugin.as_str(),
            version: o.record.version,
            file: Some(o.record.file),
            sha256: Some(o.record.sha256),
            package: None,
            command: None,
            packages: None,
            error: Some(e.to_string()),
        })
    }));
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<14} {:<8} {:<10} details", "name", "kind", "version");
    for r in &rows {
        let details = match (&r.error, &r.file, &r.sha256, &r.command) {
            (Some(e), ..) => format!("NOT LOADED: {e}"),
            (None, Some(f), Some(h), _) => format!("{f} sha256 {}", &h[..h.len().min(16)]),
            (None, None, Some(h), Some(c)) => format!(
                "{} {c} sha256 {} ({} packages)",
                r.package.as_deref().unwrap_or(""),
                &h[..h.len().min(16)],
                r.packages.as_ref().map_or(0, Vec::len)
            ),
            _ => String::new(),
        };
        println!("{:<14} {:<8} {:<10} {details}", r.name, r.kind, r.version);
    }
    println!("plugin directory: {}", plugins.path().display());
    Ok(ExitCode::SUCCESS)
}

pub fn install(
    plugins: &PluginDir,
    path: &Path,
    sha256: Option<&str>,
    python: &str,
) -> anyhow::Result<ExitCode> {
    let target = path.to_string_lossy();
    if target.starts_with("airbyte:") || target.starts_with("singer:") {
        if sha256.is_some() {
            anyhow::bail!(
                "--sha256 pins a plugin library; pip checks the packages it installs (their hashes are recorded)"
            );
        }
        return install_package(plugins, &target, python);
    }
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

/// Installs an Airbyte source or a Singer tap from PyPI into a virtual environment of its own.
fn install_package(plugins: &PluginDir, target: &str, python: &str) -> anyhow::Result<ExitCode> {
    let req = Requirement::parse(target)?;
    let registry = builtin_registry();
    let taken_by_plugin = plugins.installed()?.iter().any(|p| p.name == req.command);
    if registry.contains(&req.command) || taken_by_plugin {
        anyhow::bail!(
            "{target:?}: a connector named {:?} exists already (`dossier connectors list`)",
            req.command
        );
    }
    let started = std::time::Instant::now();
    let done = packages(plugins)
        .install(&req, python, &mut |line| eprintln!("  {line}"))
        .with_context(|| format!("{target} not installed"))?;
    let r: &InstalledPackage = &done.record;
    println!(
        "installed {} {} ({} packages, {} s) as connector {:?}: {}, sha256 {}",
        r.package,
        r.version,
        r.packages.len(),
        started.elapsed().as_secs(),
        r.name,
        packages(plugins).command_path(r).display(),
        r.sha256
    );
    if let Some(old) = done.replaced {
        println!("replaced {} {}", old.package, old.version);
    }
    println!(
        "use it with connector = {:?}; a running `dossier serve` loads it when it next starts",
        r.name
    );
    Ok(ExitCode::SUCCESS)
}

pub fn remove(plugins: &PluginDir, name: &str) -> anyhow::Result<ExitCode> {
    if let Some(removed) = packages(plugins).remove(name)? {
        println!("removed {} {}", removed.package, removed.version);
        return Ok(ExitCode::SUCCESS);
    }
    let removed = plugins.remove(name)?;
    println!("removed {} {}", removed.name, removed.version);
    Ok(ExitCode::SUCCESS)
}

/// The gateway's connector list and plugin installs, over the engine's registry.
pub struct PluginAdmin {
    pub registry: Registry,
    pub dir: PluginDir,
}

fn info(
    spec: dossier_connector::Spec,
    installed: &[InstalledPlugin],
    packages: &PackageDir,
    installed_packages: &[InstalledPackage],
) -> ConnectorInfo {
    let record = installed
        .iter()
        .find(|r| r.name == spec.name && spec.kind == ConnectorKind::Plugin);
    let package = installed_packages
        .iter()
        .find(|p| p.name == spec.name && spec.kind == ConnectorKind::Plugin);
    ConnectorInfo {
        kind: match spec.kind {
            ConnectorKind::Builtin => dossier_gateway::ConnectorKind::Builtin,
            ConnectorKind::Plugin => dossier_gateway::ConnectorKind::Plugin,
        },
        name: spec.name,
        version: spec.version,
        config_schema: spec.config_schema,
        stream_schema: spec.stream_schema,
        file: record
            .map(|r| r.file.clone())
            .or_else(|| package.map(|p| packages.command_path(p).display().to_string())),
        sha256: record
            .map(|r| r.sha256.clone())
            .or_else(|| package.map(|p| p.sha256.clone())),
    }
}

#[async_trait::async_trait]
impl ConnectorAdmin for PluginAdmin {
    fn connectors(&self) -> Vec<ConnectorInfo> {
        let installed = self.dir.installed().unwrap_or_default();
        let packages = packages(&self.dir);
        let installed_packages = packages.installed().unwrap_or_default();
        self.registry
            .specs()
            .into_iter()
            .map(|s| info(s, &installed, &packages, &installed_packages))
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
        let packages = packages(&self.dir);
        let installed_packages = packages.installed().unwrap_or_default();
        let spec = self
            .registry
            .get(&done.record.name)
            .map_err(|e| e.to_string())?
            .spec();
        let mut info = info(spec, &installed, &packages, &installed_packages);
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
