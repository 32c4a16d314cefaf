//! For tests and benchmarks: builds the workspace's plugin libraries (the Stripe plugin, the
//! generator, and the deliberately bad ones) with cargo, into the same target directory and
//! profile as the running test, once per process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace packages built as plugin libraries.
pub const PLUGIN_PACKAGES: &[&str] = &[
    "dossier-connector-stripe-plugin",
    "dossier-test-generator-plugin",
    "dossier-test-plugin-wrong-abi",
    "dossier-test-plugin-no-entry",
];

/// The path of the library `name` (crate name, e.g. `dossier_stripe_plugin`), built first.
pub fn plugin_library(name: &str) -> PathBuf {
    built_dir().join(format!(
        "{}{name}.{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_EXTENSION
    ))
}

fn built_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // target/<profile>/deps/<test binary>, or target/<profile>/<binary>.
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut dir = exe.parent().expect("a directory").to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let profile = dir
            .file_name()
            .and_then(|p| p.to_str())
            .unwrap_or("debug")
            .to_string();
        let target = dir.parent().expect("the target directory").to_path_buf();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // Not the variables cargo sets for the running test (CARGO_PKG_*, LD_LIBRARY_PATH, ...):
        // they would change the build's fingerprints and rebuild the libraries every run.
        cmd.env_clear();
        for (k, v) in std::env::vars_os() {
            let keep = [
                "PATH",
                "HOME",
                "CARGO_HOME",
                "RUSTUP_HOME",
                "RUSTUP_TOOLCHAIN",
                "TMPDIR",
            ];
            if k.to_str().is_some_and(|k| keep.contains(&k)) {
                cmd.env(k, v);
            }
        }
        cmd.current_dir(&workspace)
            .args(["build", "--locked", "--target-dir"])
            .arg(&target);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        for p in PLUGIN_PACKAGES {
            cmd.args(["-p", p]);
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building the plugin libraries failed");
        dir
    })
}

/// A config syncing `customers` generated customers (source `gen`, `batch_size` per batch) to
/// contacts in an embedded store beside the config; with `panic_at_batch`, the generator
/// panics at that batch.
pub fn generator_config(customers: u64, batch_size: usize, panic_at_batch: Option<u64>) -> String {
    let panic = panic_at_batch.map_or(String::new(), |n| format!(", panic_at_batch = {n}"));
    format!(
        r#"
[store]
url = "sqlite://dossier.db"

[[sources]]
name = "gen"
connector = "generator"
config = {{ customers = {customers}{panic} }}
batch_size = {batch_size}

[[sources.streams]]
name = "customers"
read = {{ entity = "customers" }}
[sources.streams.mapping]
target = "contact"
id = "id"
identities = {{ email = "email" }}
profile = {{ first_name = "first_name", country = "country" }}
data = {{ plan = "plan" }}
updated_at = "updated_at"
"#
    )
}
