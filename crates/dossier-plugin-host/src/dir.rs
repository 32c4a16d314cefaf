//! The plugin directory: installed libraries and the record of them, `plugins.toml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dossier_connector::{ConnectorKind, Registry};
use serde::{Deserialize, Serialize};

use crate::{Plugin, PluginConnector, PluginError, load};

/// The record of installed plugins, in the plugin directory.
pub const RECORD_FILE: &str = "plugins.toml";

/// `plugins.toml`: what `dossier connectors install` recorded.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// The installed plugins, in installation order.
    #[serde(default)]
    plugins: Vec<InstalledPlugin>,
}

/// One installed plugin, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledPlugin {
    /// The connector's name, as configs write it.
    pub name: String,
    /// The connector's version when installed.
    pub version: String,
    /// The library's file name, in the plugin directory.
    pub file: String,
    /// The library's sha256 (lowercase hex), checked at every load.
    pub sha256: String,
    /// The plugin ABI it was built for, `major.minor`.
    pub abi: String,
    /// When it was installed (RFC 3339).
    pub installed_at: String,
}

/// What an install did.
#[derive(Debug)]
pub struct Installation {
    /// The new record.
    pub record: InstalledPlugin,
    /// The plugin of the same name it replaced, if any.
    pub replaced: Option<InstalledPlugin>,
    /// Whether the registry uses it now; false when another version of the plugin is already
    /// loaded in this process (the new one is used from the next start).
    pub active: bool,
}

/// The outcome of loading one installed plugin at start.
#[derive(Debug)]
pub struct LoadOutcome {
    pub record: InstalledPlugin,
    pub result: Result<Arc<Plugin>, PluginError>,
}

/// A directory of installed plugins.
#[derive(Debug, Clone)]
pub struct PluginDir {
    dir: PathBuf,
}

impl PluginDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn dir_err(&self, message: String) -> PluginError {
        PluginError::Dir {
            path: self.dir.clone(),
            message,
        }
    }

    /// The installed plugins; none when the directory or its record does not exist.
    pub fn installed(&self) -> Result<Vec<InstalledPlugin>, PluginError> {
        let path = self.dir.join(RECORD_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.dir_err(format!("cannot read {RECORD_FILE}: {e}"))),
        };
        let record: Record = toml::from_str(&text)
            .map_err(|e| self.dir_err(format!("{RECORD_FILE} is invalid: {e}")))?;
        Ok(record.plugins)
    }

    fn save(&self, plugins: Vec<InstalledPlugin>) -> Result<(), PluginError> {
        let text = toml::to_string_pretty(&Record { plugins })
            .map_err(|e| self.dir_err(format!("cannot write {RECORD_FILE}: {e}")))?;
        let tmp = self
            .dir
            .join(format!(".{RECORD_FILE}.{}", std::process::id()));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, self.dir.join(RECORD_FILE)))
            .map_err(|e| self.dir_err(format!("cannot write {RECORD_FILE}: {e}")))
    }

    /// Installs the library at `file`: checks `pinned` (sha256 hex) when given, copies the
    /// file into the directory, loads and validates the copy, records it, and registers it in
    /// `registry`. A plugin of the same name is replaced; a built-in's name is refused.
    pub fn install(
        &self,
        file: &Path,
        pinned: Option<&str>,
        registry: &Registry,
    ) -> Result<Installation, PluginError> {
        let bytes = std::fs::read(file).map_err(|e| PluginError::Read {
            path: file.to_path_buf(),
            message: e.to_string(),
        })?;
        let sha256 = crate::sha256_hex(&bytes);
        if let Some(expected) = pinned {
            let expected = expected.trim().to_ascii_lowercase();
            if expected != sha256 {
                return Err(PluginError::Sha256Mismatch {
                    path: file.to_path_buf(),
                    expected,
                    actual: sha256,
                });
            }
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| self.dir_err(format!("cannot create it: {e}")))?;
        // Copy first, then load the copy with the hash just computed: what is validated is
        // exactly what will be loaded at the next start.
        let tmp = self
            .dir
            .join(format!(".installing-{}-{}", std::process::id(), sha256));
        std::fs::write(&tmp, &bytes)
            .map_err(|e| self.dir_err(format!("cannot copy the plugin into it: {e}")))?;
        let result = self.install_copy(&tmp, &sha256, registry);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Installs `file_name`, a library already in the plugin directory (the admin mutation:
    /// no path from outside the directory is accepted).
    pub fn install_from_dir(
        &self,
        file_name: &str,
        pinned: Option<&str>,
        registry: &Registry,
    ) -> Result<Installation, PluginError> {
        let plain = Path::new(file_name)
            .file_name()
            .is_some_and(|n| n == file_name)
            && !file_name.starts_with('.');
        if !plain {
            return Err(PluginError::NotInPluginDir {
                file: file_name.to_string(),
            });
        }
        self.install(&self.dir.join(file_name), pinned, registry)
    }

    fn install_copy(
        &self,
        tmp: &Path,
        sha256: &str,
        registry: &Registry,
    ) -> Result<Installation, PluginError> {
        let plugin = load(tmp, Some(sha256))?;
        let name = plugin.name.clone();
        let registered = registry.get(&name).ok().map(|f| f.spec().kind);
        if registered == Some(ConnectorKind::Builtin) {
            return Err(PluginError::Conflict {
                name,
                message: "a built-in connector has this name; rename the plugin".into(),
            });
        }
        let file = format!("{name}.{}", std::env::consts::DLL_EXTENSION);
        std::fs::rename(tmp, self.dir.join(&file))
            .map_err(|e| self.dir_err(format!("cannot move the plugin into place: {e}")))?;
        let record = InstalledPlugin {
            name: name.clone(),
            version: plugin.version.clone(),
            file,
            sha256: sha256.to_string(),
            abi: format!("{}.{}", plugin.abi.0, plugin.abi.1),
            installed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let mut plugins = self.installed()?;
        let replaced = plugins
            .iter()
            .position(|p| p.name == name)
            .map(|i| plugins.remove(i));
        plugins.push(record.clone());
        self.save(plugins)?;
        let active = registered.is_none() && register(registry, Arc::new(plugin)).is_ok();
        tracing::info!(plugin = %record.name, version = %record.version, file = %record.file, active, "plugin installed");
        Ok(Installation {
            record,
            replaced,
            active,
        })
    }

    /// Forgets the plugin `name` and deletes its library. A process that loaded it keeps it
    /// until it exits.
    pub fn remove(&self, name: &str) -> Result<InstalledPlugin, PluginError> {
        let mut plugins = self.installed()?;
        let Some(i) = plugins.iter().position(|p| p.name == name) else {
            let installed: Vec<_> = plugins.iter().map(|p| p.name.as_str()).collect();
            return Err(PluginError::NotInstalled {
                name: name.to_string(),
                installed: if installed.is_empty() {
                    "none".into()
                } else {
                    installed.join(", ")
                },
            });
        };
        let removed = plugins.remove(i);
        self.save(plugins)?;
        match std::fs::remove_file(self.dir.join(&removed.file)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(self.dir_err(format!("cannot delete {}: {e}", removed.file)));
            }
        }
        Ok(removed)
    }

    /// Loads every installed plugin (checking the recorded sha256) into `registry`. A plugin
    /// that fails is logged and skipped; every outcome is returned for the caller to report.
    pub fn load_all(&self, registry: &Registry) -> Result<Vec<LoadOutcome>, PluginError> {
        let mut outcomes = vec![];
        for record in self.installed()? {
            let result =
                load(&self.dir.join(&record.file), Some(&record.sha256)).and_then(|plugin| {
                    if plugin.name != record.name {
                        return Err(PluginError::Conflict {
                            name: record.name.clone(),
                            message: format!(
                                "its file now holds the connector {:?}; reinstall it",
                                plugin.name
                            ),
                        });
                    }
                    let plugin = Arc::new(plugin);
                    register(registry, plugin.clone())?;
                    Ok(plugin)
                });
            match &result {
                Ok(p) => {
                    tracing::info!(plugin = %p.name, version = %p.version, "plugin loaded")
                }
                Err(e) => {
                    tracing::warn!(plugin = %record.name, error = %e, "plugin not loaded; skipped")
                }
            }
            outcomes.push(LoadOutcome { record, result });
        }
        Ok(outcomes)
    }
}

/// Registers a loaded plugin beside the built-ins.
fn register(registry: &Registry, plugin: Arc<Plugin>) -> Result<(), PluginError> {
    let name = plugin.name.clone();
    registry
        .register_factory(&name, Arc::new(PluginConnector::new(plugin)))
        .map_err(|e| PluginError::Conflict {
            name,
            message: match e {
                dossier_connector::ConnectorError::Config(m) => m,
                e => e.to_string(),
            },
        })
}
