//! `dossier connectors list|install|remove`, loading installed plugins at start, and the
//! gateway's view of the connectors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use dossier_connector::{ConnectorKind, Registry};
use dossier_connector_airbyte::{
    InstalledPackage, PackageDir, PackageInstallation, Requirement, package_factory,
};
use dossier_gateway::{ConnectorAdmin, ConnectorInfo};
use dossier_plugin_host::{InstalledPlugin, PluginDir};
use serde::Serialize;
use tokio::sync::watch;

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

/// The package `target` (`airbyte:source-faker==7.2.1`) asks for, refused when its spec is
/// invalid or a built-in or a plugin has its name: what is checked before any install, from
/// the command line or the API.
fn requirement(plugins: &PluginDir, target: &str) -> anyhow::Result<Requirement> {
    let req = Requirement::parse(target)?;
    let registry = builtin_registry();
    let taken_by_plugin = plugins.installed()?.iter().any(|p| p.name == req.command);
    if registry.contains(&req.command) || taken_by_plugin {
        anyhow::bail!(
            "{target:?}: a connector named {:?} exists already (`dossier connectors list`)",
            req.command
        );
    }
    Ok(req)
}

/// Installs the package `req` with pip, `progress` getting pip's output: the one install of
/// the command line and the API.
fn install_requirement(
    plugins: &PluginDir,
    target: &str,
    req: &Requirement,
    python: &str,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<PackageInstallation> {
    packages(plugins)
        .install(req, python, progress)
        .with_context(|| format!("{target} not installed"))
}

/// Installs an Airbyte source or a Singer tap from PyPI into a virtual environment of its own.
fn install_package(plugins: &PluginDir, target: &str, python: &str) -> anyhow::Result<ExitCode> {
    let req = requirement(plugins, target)?;
    let started = std::time::Instant::now();
    let done = install_requirement(plugins, target, &req, python, &mut |line| {
        eprintln!("  {line}")
    })?;
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
    let (what, version) = remove_connector(plugins, name)?;
    println!("removed {what} {version}");
    Ok(ExitCode::SUCCESS)
}

/// Forgets the package or plugin `name` and deletes its virtual environment or library:
/// the one removal of the command line and the API. Returns what was removed (the package,
/// or the plugin's name) and its version.
fn remove_connector(plugins: &PluginDir, name: &str) -> anyhow::Result<(String, String)> {
    if let Some(removed) = packages(plugins).remove(name)? {
        return Ok((removed.package, removed.version));
    }
    let removed = plugins.remove(name)?;
    Ok((removed.name, removed.version))
}

/// The Python the API's installs create virtual environments with (`--python` of
/// `dossier connectors install` chooses another).
const API_PYTHON: &str = "python3";

/// What an install started by the API ends with.
type Outcome = Option<Result<ConnectorInfo, String>>;

/// Package installs the API started, by plugin directory and package spec, until a request
/// gets their outcome. pip may run longer than a request may: the install goes on in the
/// server when its request stops waiting, and the next request for the same package waits
/// for that install (or gets its outcome) instead of starting pip again.
type Installs = std::collections::HashMap<(PathBuf, String), watch::Receiver<Outcome>>;

static API_INSTALLS: std::sync::LazyLock<std::sync::Mutex<Installs>> =
    std::sync::LazyLock::new(Default::default);

fn api_installs() -> std::sync::MutexGuard<'static, Installs> {
    API_INSTALLS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    async fn install_package(&self, spec: &str) -> Result<ConnectorInfo, String> {
        let spec = spec.trim().to_string();
        let key = (self.dir.path().to_path_buf(), spec.clone());
        let running = api_installs().get(&key).cloned();
        let mut outcome = match running {
            Some(rx) => rx,
            None => {
                // Refused at once (an invalid spec, a name taken), before any pip.
                let req = requirement(&self.dir, &spec).map_err(|e| format!("{e:#}"))?;
                let (tx, rx) = watch::channel(None);
                let (dir, registry) = (self.dir.clone(), self.registry.clone());
                let mut installs = api_installs();
                if let Some(rx) = installs.get(&key) {
                    rx.clone()
                } else {
                    installs.insert(key.clone(), rx.clone());
                    drop(installs);
                    tokio::task::spawn_blocking(move || {
                        let done = install_and_register(&dir, &registry, &spec, &req);
                        let _ = tx.send(Some(done));
                    });
                    rx
                }
            }
        };
        let done = outcome
            .wait_for(Option::is_some)
            .await
            .map(|o| o.clone().expect("waited for it"))
            .unwrap_or_else(|_| Err("the install stopped inside the server".to_string()));
        // Delivered: the next request for this package installs it again.
        api_installs().remove(&key);
        done
    }

    async fn remove(&self, name: &str) -> Result<ConnectorInfo, String> {
        let listed = self.connectors().into_iter().find(|c| c.name == name);
        let dir = self.dir.clone();
        let name = name.to_string();
        let (what, version) = tokio::task::spawn_blocking(move || remove_connector(&dir, &name))
            .await
            .map_err(|e| format!("the removal did not complete: {e}"))?
            .map_err(|e| format!("{e:#}"))?;
        let mut info = listed.unwrap_or_else(|| ConnectorInfo {
            name: what.clone(),
            kind: dossier_gateway::ConnectorKind::Plugin,
            version: version.clone(),
            config_schema: serde_json::json!({}),
            stream_schema: serde_json::json!({}),
            file: None,
            sha256: None,
        });
        // This process keeps what it loaded until it restarts.
        info.version = format!("{version} (removed; still listed until the server restarts)");
        Ok(info)
    }
}

/// Installs `req` for the API, pip's output to the log, and registers the new connector in
/// the server's registry (when no connector has its name there yet: a new version of one
/// already loaded is used from the next start).
fn install_and_register(
    plugins: &PluginDir,
    registry: &Registry,
    target: &str,
    req: &Requirement,
) -> Result<ConnectorInfo, String> {
    let started = std::time::Instant::now();
    let done = install_requirement(
        plugins,
        target,
        req,
        API_PYTHON,
        &mut |line| tracing::info!(package = %target, "{line}"),
    )
    .map_err(|e| format!("{e:#}"))?;
    let packages = packages(plugins);
    let r = &done.record;
    tracing::info!(
        package = %r.package,
        version = %r.version,
        connector = %r.name,
        secs = started.elapsed().as_secs(),
        "installed through the API"
    );
    let active = registry
        .register_factory(
            &r.name,
            package_factory(r.clone(), packages.command_path(r)),
        )
        .is_ok();
    let installed = plugins.installed().unwrap_or_default();
    let installed_packages = packages.installed().unwrap_or_default();
    let mut info = match registry.get(&r.name) {
        Ok(f) => info(f.spec(), &installed, &packages, &installed_packages),
        Err(e) => return Err(e.to_string()),
    };
    if !active {
        info.version = format!(
            "{} (installed {}; active after a restart)",
            info.version, r.version
        );
    }
    Ok(info)
}
