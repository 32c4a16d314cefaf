//! End-to-end: a Singer tap installed through `dossier connectors install singer:...` (a wheel
//! of the singer connector's test tap, built here, installed by pip from a local directory:
//! no network), listed, synced into contacts and sessions, and removed.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

/// Writes `tap_fake-0.1.0-py3-none-any.whl` into `dir`: the test tap as module `tap_fake`,
/// with a `tap-fake` console script.
fn build_wheel(dir: &Path) {
    let tap =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors/airbyte/tests/taps/fake_tap.py");
    let script = r#"
import sys, zipfile
src, out = sys.argv[1], sys.argv[2]
info = "tap_fake-0.1.0.dist-info"
files = {
    "tap_fake.py": open(src).read(),
    f"{info}/METADATA": "Metadata-Version: 2.1\nName: tap-fake\nVersion: 0.1.0\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: dossier-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    f"{info}/entry_points.txt": "[console_scripts]\ntap-fake = tap_fake:main\n",
}
files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
with zipfile.ZipFile(out + "/tap_fake-0.1.0-py3-none-any.whl", "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&tap)
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn dossier(dir: &Path, wheels: &Path, args: &[&str]) -> Output {
    bin()
        .args(args)
        .arg("--config")
        .arg(config(dir))
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", wheels)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .output()
        .expect("the dossier binary runs")
}

const CONFIG: &str = r#"
[store]
url = "sqlite://dossier.db"

[[sources]]
name = "tap"
connector = "tap-fake"
config = { config = { users = 10, state_every = 3 } }

[[sources.streams]]
name = "users"
read = {}
mapping = { target = "contact", id = "id", identities = { email = "email" } }

[[sources.streams]]
name = "events"
read = {}

[sources.streams.mapping]
target = "session"
id = "id"
kind = "event"
started_at = "created_at"
contact = { stream = "users", field = "user_id" }
data = { amount = "amount" }

[[aggregates]]
name = "spent"
op = "sum"
kind = "event"
field = "amount"
"#;

#[test]
fn a_singer_tap_installs_with_pip_syncs_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let wheels = dir.join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    build_wheel(&wheels);
    std::fs::write(config(dir), CONFIG).unwrap();

    let o = dossier(
        dir,
        &wheels,
        &["connectors", "install", "singer:tap-fake==0.1.0"],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("installed tap-fake 0.1.0 (1 packages"),
        "{}",
        stdout(&o)
    );
    // pip's progress was shown as it ran.
    assert!(
        stderr(&o).contains("Successfully installed tap-fake-0.1.0"),
        "{}",
        stderr(&o)
    );

    let o = dossier(dir, &wheels, &["connectors", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tap = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tap-fake")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(tap["kind"], "singer", "{tap}");
    assert_eq!(tap["sha256"].as_str().unwrap().len(), 64, "{tap}");
    // The API lists it too.
    let o = dossier(
        dir,
        &wheels,
        &["query", "{ connectors { name kind version } }"],
    );
    let q: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        q["data"]["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "tap-fake" && c["version"] == "0.1.0" && c["kind"] == "PLUGIN"),
        "{q}"
    );

    let o = dossier(dir, &wheels, &["sync", "tap"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("synced tap: 30 rows read"),
        "{}",
        stdout(&o)
    );
    // User 2's events are 3 and 4: 4.5 + 6.0.
    let o = dossier(
        dir,
        &wheels,
        &[
            "query",
            r#"{ contact(email: "user2@example.com") { aggregates } }"#,
        ],
    );
    let q: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        q["data"]["contact"]["aggregates"]["spent"].as_f64(),
        Some(10.5),
        "{q}"
    );
    // Incremental: no user is new; events are read in full.
    let o = dossier(dir, &wheels, &["sync", "tap"]);
    assert!(
        stdout(&o).contains("synced tap: 20 rows read"),
        "{}",
        stdout(&o)
    );

    let o = dossier(dir, &wheels, &["connectors", "remove", "tap-fake"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("removed tap-fake 0.1.0"),
        "{}",
        stdout(&o)
    );
    assert!(!dir.join("plugins/venvs").read_dir().unwrap().any(|_| true));
    let o = dossier(dir, &wheels, &["sync", "tap"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown connector \"tap-fake\""),
        "{}",
        stderr(&o)
    );
}
