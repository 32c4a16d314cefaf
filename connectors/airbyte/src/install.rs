//! Installed packages: an Airbyte source or a Singer tap from PyPI, pinned, in a virtual
//! environment of its own under the plugin directory, recorded in `packages.toml`, and
//! registered as a connector named after its command (`source-faker`, `tap-postgres`).
//!
//! `pip` does the installing, with the user's own pip settings (`PIP_INDEX_URL`,
//! `PIP_FIND_LINKS`, `PIP_NO_INDEX`, `pip.conf`), so a private index or a local wheelhouse
//! works as it does for pip. Its `--report` gives the version and sha256 of every package it
//! installed, which the record keeps.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use dossier_connector::{
    ConnectorError, ConnectorFactory, ConnectorKind, Source, Spec, StreamConfig,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::AirbyteError;

/// The record of installed packages, in the plugin directory.
pub const PACKAGES_FILE: &str = "packages.toml";
/// Where the virtual environments go, in the plugin directory.
const VENVS: &str = "venvs";
/// Held (an exclusive file lock) while `packages.toml` is read and rewritten, so that two
/// installs at once (the command line and the API, two API requests) keep both records.
const LOCK_FILE: &str = ".packages.lock";
/// Lines of pip's output an error quotes.
const PIP_TAIL: usize = 12;

/// The protocol an installed package speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Airbyte,
    Singer,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Airbyte => "airbyte",
            Protocol::Singer => "singer",
        }
    }
}

/// What `dossier connectors install airbyte:source-faker==7.2.1` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub protocol: Protocol,
    /// The PyPI package, e.g. `airbyte-source-faker`.
    pub package: String,
    /// The pinned version.
    pub version: String,
    /// The command the package installs, which is also the connector's name.
    pub command: String,
}

/// Whether `s` is a package name as PyPI has them (PEP 508): letters, digits, `.`, `_`, `-`,
/// starting and ending with a letter or digit.
fn is_package_name(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric();
    s.chars().next().is_some_and(ok)
        && s.chars().last().is_some_and(ok)
        && s.chars().all(|c| ok(c) || matches!(c, '.' | '_' | '-'))
}

/// Whether `s` is one exact version (PEP 440 spelling, no wildcard).
fn is_exact_version(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '_' | '-'))
}

impl Requirement {
    /// Parses `airbyte:<package>==<version>` or `singer:<package>==<version>`. An Airbyte
    /// package may be written with or without its `airbyte-` prefix.
    pub fn parse(spec: &str) -> Result<Requirement, AirbyteError> {
        let bad = |m: String| AirbyteError::Install(format!("{spec:?}: {m}"));
        let (protocol, rest) = match spec.split_once(':') {
            Some(("airbyte", rest)) => (Protocol::Airbyte, rest),
            Some(("singer", rest)) => (Protocol::Singer, rest),
            _ => {
                return Err(bad(
                    "write airbyte:<package>==<version> or singer:<package>==<version>".into(),
                ));
            }
        };
        let Some((name, version)) = rest.split_once("==") else {
            return Err(bad(format!(
                "the version is not pinned: write {}:{}==<version> (`pip index versions <package>` lists them)",
                protocol.as_str(),
                rest.split(['<', '>', '=', '!', '~', ' ', ';', '[', '@'])
                    .next()
                    .unwrap_or(rest)
            )));
        };
        let name = name.trim();
        let version = version.trim();
        if !is_package_name(name) {
            return Err(bad(format!(
                "{name:?} is not a package name (letters, digits, `.`, `_` and `-`)"
            )));
        }
        if !is_exact_version(version) {
            return Err(bad(format!(
                "{version:?} is not one exact version (e.g. 7.2.1); ranges and wildcards are refused so that every install is the same"
            )));
        }
        let lower = name.to_ascii_lowercase().replace(['_', '.'], "-");
        let (package, command) = match protocol {
            Protocol::Airbyte => {
                let command = lower.strip_prefix("airbyte-").unwrap_or(&lower).to_string();
                if !command.starts_with("source-") {
                    return Err(bad(
                        "an Airbyte source's package is airbyte-source-<name>; write airbyte:source-<name>==<version>".into(),
                    ));
                }
                (format!("airbyte-{command}"), command)
            }
            Protocol::Singer => {
                // Taps are published under an author's prefix too (meltanolabs-tap-postgres)
                // and install the command tap-<name>.
                let at = if lower.starts_with("tap-") {
                    Some(0)
                } else {
                    lower.find("-tap-").map(|i| i + 1)
                };
                let Some(at) = at else {
                    return Err(bad(
                        "a Singer tap's package is named tap-<name> (or <author>-tap-<name>)"
                            .into(),
                    ));
                };
                (lower.clone(), lower[at..].to_string())
            }
        };
        Ok(Requirement {
            protocol,
            package,
            version: version.to_string(),
            command,
        })
    }
}

/// A package pip installed, with the sha256 of its archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageHash {
    /// The package's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The sha256 of the wheel or archive pip installed it from (lowercase hex); empty when
    /// pip reported none (a package installed from a directory).
    pub sha256: String,
}

/// One installed package, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledPackage {
    /// The connector's name, as configs write it: the command, e.g. `source-faker`.
    pub name: String,
    /// The protocol it speaks.
    pub protocol: Protocol,
    /// The PyPI package.
    pub package: String,
    /// The installed version.
    pub version: String,
    /// The sha256 of the package's own archive.
    pub sha256: String,
    /// The virtual environment's directory, under `venvs/` in the plugin directory.
    pub venv: String,
    /// The command, in the virtual environment's `bin`.
    pub command: String,
    /// When it was installed (RFC 3339).
    pub installed_at: String,
    /// Every package installed with it, its dependencies included.
    pub packages: Vec<PackageHash>,
}

/// `packages.toml`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// The installed packages, in installation order.
    #[serde(default)]
    packages: Vec<InstalledPackage>,
}

/// What an install did.
#[derive(Debug)]
pub struct PackageInstallation {
    pub record: InstalledPackage,
    /// The version it replaced, if any.
    pub replaced: Option<InstalledPackage>,
}

/// A connector and its name, to register.
pub type Named = (String, Arc<dyn ConnectorFactory>);

/// The installed packages of a plugin directory.
#[derive(Debug, Clone)]
pub struct PackageDir {
    dir: PathBuf,
}

impl PackageDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn err(&self, m: impl std::fmt::Display) -> AirbyteError {
        AirbyteError::Install(format!("plugin directory {}: {m}", self.dir.display()))
    }

    /// The installed packages; none when the directory or its record does not exist.
    pub fn installed(&self) -> Result<Vec<InstalledPackage>, AirbyteError> {
        let text = match std::fs::read_to_string(self.dir.join(PACKAGES_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.err(format!("cannot read {PACKAGES_FILE}: {e}"))),
        };
        let record: Record = toml::from_str(&text)
            .map_err(|e| self.err(format!("{PACKAGES_FILE} is invalid: {e}")))?;
        Ok(record.packages)
    }

    /// Locks the record until the returned file is dropped.
    fn lock(&self) -> Result<std::fs::File, AirbyteError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(LOCK_FILE))
            .map_err(|e| self.err(format!("cannot open {LOCK_FILE}: {e}")))?;
        file.lock()
            .map_err(|e| self.err(format!("cannot lock {LOCK_FILE}: {e}")))?;
        Ok(file)
    }

    fn save(&self, packages: Vec<InstalledPackage>) -> Result<(), AirbyteError> {
        let text = toml::to_string_pretty(&Record { packages })
            .map_err(|e| self.err(format!("cannot write {PACKAGES_FILE}: {e}")))?;
        let tmp = self
            .dir
            .join(format!(".{PACKAGES_FILE}.{}", std::process::id()));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, self.dir.join(PACKAGES_FILE)))
            .map_err(|e| self.err(format!("cannot write {PACKAGES_FILE}: {e}")))
    }

    /// The command of an installed package, as a path.
    pub fn command_path(&self, p: &InstalledPackage) -> PathBuf {
        self.dir
            .join(VENVS)
            .join(&p.venv)
            .join("bin")
            .join(&p.command)
    }

    /// Creates a virtual environment with `python` (`python3`), installs the package into it
    /// with its pip, and records it; `progress` gets pip's output line by line. A package of
    /// the same name is replaced once the new one is installed; a failed install leaves
    /// nothing behind.
    pub fn install(
        &self,
        req: &Requirement,
        python: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<PackageInstallation, AirbyteError> {
        std::fs::create_dir_all(self.dir.join(VENVS))
            .map_err(|e| self.err(format!("cannot create it: {e}")))?;
        // Scripts in a virtual environment name its python by absolute path: it is created
        // where it stays.
        let dir = std::fs::canonicalize(&self.dir)
            .map_err(|e| self.err(format!("cannot resolve its path: {e}")))?;
        let venv_name = format!(
            "{}-{}-{}",
            req.command,
            req.version,
            chrono::Utc::now().format("%Y%m%d%H%M%S%f")
        );
        let venv = dir.join(VENVS).join(&venv_name);
        let result = self.install_into(req, python, &venv, &venv_name, progress);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&venv);
        }
        result
    }

    fn install_into(
        &self,
        req: &Requirement,
        python: &str,
        venv: &Path,
        venv_name: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<PackageInstallation, AirbyteError> {
        let pinned = format!("{}=={}", req.package, req.version);
        progress(&format!(
            "creating a virtual environment in {}",
            venv.display()
        ));
        run_tool(
            Command::new(python).args(["-m", "venv"]).arg(venv),
            &format!("`{python} -m venv`"),
            &mut |_| {},
        )?;
        progress(&format!("installing {pinned} with pip"));
        let report = venv.join("pip-report.json");
        run_tool(
            Command::new(venv.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--progress-bar",
                    "off",
                    "--report",
                ])
                .arg(&report)
                .arg(&pinned),
            &format!("pip install {pinned}"),
            progress,
        )?;
        let packages = read_report(&report)
            .map_err(|m| AirbyteError::Install(format!("pip install {pinned}: {m}")))?;
        let _ = std::fs::remove_file(&report);
        let normalized = |s: &str| s.to_ascii_lowercase().replace(['_', '.'], "-");
        let Some(own) = packages.iter().find(|p| normalized(&p.name) == req.package) else {
            return Err(AirbyteError::Install(format!(
                "pip install {pinned}: pip's report does not list {}",
                req.package
            )));
        };
        let command = venv.join("bin").join(&req.command);
        if !command.is_file() {
            return Err(AirbyteError::Install(format!(
                "{pinned} installed no `{}` command; is it an {} {}?",
                req.command,
                req.protocol.as_str(),
                match req.protocol {
                    Protocol::Airbyte => "source",
                    Protocol::Singer => "tap",
                }
            )));
        }
        let record = InstalledPackage {
            name: req.command.clone(),
            protocol: req.protocol,
            package: req.package.clone(),
            version: own.version.clone(),
            sha256: own.sha256.clone(),
            venv: venv_name.to_string(),
            command: req.command.clone(),
            installed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            packages,
        };
        let lock = self.lock()?;
        let mut all = self.installed()?;
        let replaced = all
            .iter()
            .position(|p| p.name == record.name)
            .map(|i| all.remove(i));
        all.push(record.clone());
        self.save(all)?;
        drop(lock);
        if let Some(old) = &replaced {
            let _ = std::fs::remove_dir_all(self.dir.join(VENVS).join(&old.venv));
        }
        tracing::info!(connector = %record.name, package = %record.package, version = %record.version, "package installed");
        Ok(PackageInstallation { record, replaced })
    }

    /// Forgets the package `name` and deletes its virtual environment; `None` when no package
    /// has that name.
    pub fn remove(&self, name: &str) -> Result<Option<InstalledPackage>, AirbyteError> {
        if !self.dir.join(PACKAGES_FILE).exists() {
            return Ok(None);
        }
        let _lock = self.lock()?;
        let mut all = self.installed()?;
        let Some(i) = all.iter().position(|p| p.name == name) else {
            return Ok(None);
        };
        let removed = all.remove(i);
        self.save(all)?;
        match std::fs::remove_dir_all(self.dir.join(VENVS).join(&removed.venv)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.err(format!("cannot delete {}: {e}", removed.venv))),
        }
        Ok(Some(removed))
    }

    /// A connector for each installed package, to register beside the built-ins.
    pub fn factories(&self) -> Result<Vec<Named>, AirbyteError> {
        Ok(self
            .installed()?
            .into_iter()
            .map(|p| {
                let command = self.command_path(&p);
                (p.name.clone(), package_factory(p, command))
            })
            .collect())
    }
}

/// The connector of an installed package: the `airbyte` (or `singer`) connector running the
/// package's `command`, named after it; configs give everything but `command`.
pub fn package_factory(record: InstalledPackage, command: PathBuf) -> Arc<dyn ConnectorFactory> {
    let inner = match record.protocol {
        Protocol::Airbyte => dossier_connector::erase::<crate::AirbyteConnector>(),
        Protocol::Singer => dossier_connector::erase::<crate::SingerConnector>(),
    };
    Arc::new(InstalledFactory {
        inner,
        record,
        command,
    })
}

/// Runs a tool to its end, handing its stdout to `progress` line by line; when it fails, the
/// error quotes its last lines (stderr, where pip says what went wrong, else stdout).
fn run_tool(
    cmd: &mut Command,
    what: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(), AirbyteError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| AirbyteError::Install(format!("{what}: cannot start it: {e}")))?;
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut tail = VecDeque::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.trim().is_empty() {
                continue;
            }
            if tail.len() == PIP_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        tail
    });
    let mut out_tail = VecDeque::new();
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        if line.trim().is_empty() {
            continue;
        }
        progress(&line);
        if out_tail.len() == PIP_TAIL {
            out_tail.pop_front();
        }
        out_tail.push_back(line);
    }
    let status = child
        .wait()
        .map_err(|e| AirbyteError::Install(format!("{what}: {e}")))?;
    let err_tail = errors.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let tail = if err_tail.is_empty() {
        out_tail
    } else {
        err_tail
    };
    Err(AirbyteError::Install(format!(
        "{what} failed ({status}); its last lines:\n  {}",
        Vec::from(tail).join("\n  ")
    )))
}

/// The packages of pip's `--report`, with their archives' sha256.
fn read_report(path: &Path) -> Result<Vec<PackageHash>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("no report: {e}"))?;
    let report: Json = serde_json::from_str(&text).map_err(|e| format!("invalid report: {e}"))?;
    let items = report["install"]
        .as_array()
        .ok_or("the report lists no installed packages")?;
    let mut packages: Vec<PackageHash> = items
        .iter()
        .map(|i| {
            let archive = &i["download_info"]["archive_info"];
            let sha256 = archive["hashes"]["sha256"]
                .as_str()
                .or_else(|| archive["hash"].as_str()?.strip_prefix("sha256="))
                .unwrap_or("")
                .to_string();
            PackageHash {
                name: i["metadata"]["name"].as_str().unwrap_or("").to_string(),
                version: i["metadata"]["version"].as_str().unwrap_or("").to_string(),
                sha256,
            }
        })
        .collect();
    packages.sort_by(|a, b| {
        a.name
            .to_ascii_lowercase()
            .cmp(&b.name.to_ascii_lowercase())
    });
    Ok(packages)
}

/// An installed package as a connector: the `airbyte` or `singer` connector with the
/// package's command, named after it.
struct InstalledFactory {
    inner: Arc<dyn ConnectorFactory>,
    record: InstalledPackage,
    command: PathBuf,
}

#[async_trait::async_trait]
impl ConnectorFactory for InstalledFactory {
    fn spec(&self) -> Spec {
        let mut spec = self.inner.spec();
        spec.name = self.record.name.clone();
        spec.version = self.record.version.clone();
        spec.kind = ConnectorKind::Plugin;
        // The package's command is fixed: configs give everything else.
        if let Some(props) = spec.config_schema["properties"].as_object_mut() {
            props.remove("command");
        }
        if let Some(required) = spec.config_schema["required"].as_array_mut() {
            required.retain(|r| r != "command");
        }
        spec
    }

    fn validate_stream(&self, stream: &StreamConfig) -> Result<(), ConnectorError> {
        self.inner.validate_stream(stream)
    }

    async fn connect(&self, mut config: Json) -> Result<Box<dyn Source>, ConnectorError> {
        let Some(map) = config.as_object_mut() else {
            return Err(ConnectorError::config(format!(
                "connector config of {:?} must be a table",
                self.record.name
            )));
        };
        if map.contains_key("command") {
            return Err(ConnectorError::config(format!(
                "the installed connector {:?} runs its own command; remove `command` (or use connector = {:?} to run another program)",
                self.record.name,
                self.record.protocol.as_str()
            )));
        }
        map.insert(
            "command".into(),
            Json::Array(vec![Json::String(self.command.to_string_lossy().into())]),
        );
        self.inner.connect(config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_are_pinned_package_names() {
        let r = Requirement::parse("airbyte:source-faker==7.2.1").unwrap();
        assert_eq!(r.package, "airbyte-source-faker");
        assert_eq!(r.command, "source-faker");
        assert_eq!(r.version, "7.2.1");
        let r = Requirement::parse("airbyte:airbyte-source-faker==7.2.1").unwrap();
        assert_eq!(r.command, "source-faker");
        let r = Requirement::parse("singer:meltanolabs-tap-postgres==0.1.0").unwrap();
        assert_eq!(
            (r.package.as_str(), r.command.as_str()),
            ("meltanolabs-tap-postgres", "tap-postgres")
        );
        let e = |s: &str| Requirement::parse(s).unwrap_err().to_string();
        assert!(
            e("airbyte:source-faker").contains("not pinned"),
            "{}",
            e("airbyte:source-faker")
        );
        assert!(e("airbyte:source-faker>=7").contains("not pinned"));
        assert!(e("airbyte:source-faker==7.*").contains("not one exact version"));
        assert!(e("airbyte:source-faker==").contains("not one exact version"));
        assert!(e("airbyte:source faker==1.0").contains("not a package name"));
        assert!(e("airbyte:../evil==1.0").contains("not a package name"));
        assert!(e("airbyte:source-faker;rm -rf==1").contains("not a package name"));
        assert!(e("airbyte:faker==1.0").contains("airbyte-source-<name>"));
        assert!(e("singer:postgres==1.0").contains("tap-<name>"));
        assert!(e("pypi:source-faker==1.0").contains("airbyte:<package>"));
    }

    #[test]
    fn a_report_gives_each_package_and_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(
            &path,
            r#"{"install": [
              {"metadata": {"name": "zeta", "version": "1.0"}, "download_info": {"archive_info": {"hash": "sha256=ab12"}}},
              {"metadata": {"name": "Alpha", "version": "2.0"}, "download_info": {"archive_info": {"hashes": {"sha256": "cd34"}}}}
            ]}"#,
        )
        .unwrap();
        let p = read_report(&path).unwrap();
        assert_eq!(
            p,
            vec![
                PackageHash {
                    name: "Alpha".into(),
                    version: "2.0".into(),
                    sha256: "cd34".into()
                },
                PackageHash {
                    name: "zeta".into(),
                    version: "1.0".into(),
                    sha256: "ab12".into()
                },
            ]
        );
    }

    #[test]
    fn a_failed_pip_says_what_failed() {
        let e = run_tool(
            Command::new("sh").args([
                "-c",
                "echo Collecting nothing; echo 'ERROR: No matching distribution found for x==9' >&2; exit 1",
            ]),
            "pip install x==9",
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("pip install x==9 failed"), "{e}");
        assert!(e.contains("No matching distribution found for x==9"), "{e}");
    }
}
