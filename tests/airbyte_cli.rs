//! End-to-end: `dossier sync` of examples/airbyte-demo, whose source is the Airbyte connector's
//! test source run by `python3` (offline).

mod common;

use std::path::Path;

use common::*;

/// The example config in `dir`, its source's script named by absolute path.
fn example_in(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/airbyte-demo/dossier.toml")).unwrap();
    let script = "connectors/airbyte/tests/sources/fake_source.py";
    assert!(text.contains(script), "the example runs {script}");
    let text = text.replace(script, root.join(script).to_str().unwrap());
    std::fs::write(config(dir), text).unwrap();
}

fn sync(dir: &Path) -> String {
    let o = run(&["sync", "demo", "--config", config(dir).to_str().unwrap()]);
    assert!(
        o.status.success(),
        "sync failed: {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

#[test]
fn the_airbyte_example_syncs_contacts_sessions_and_aggregates_then_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    example_in(dir.path());
    let out = sync(dir.path());
    // 50 users, 3 purchases each.
    assert!(out.contains("synced demo: 200 rows read"), "{out}");

    // User 7's purchases cost 10.5, 20.5 and 30.5 (see the source's read_purchases).
    let q = query(
        dir.path(),
        r#"{ contact(email: "user7@example.com") { email city country aggregates } }"#,
    );
    let c = &q["data"]["contact"];
    assert_eq!(c["email"], "user7@example.com", "{q}");
    assert_eq!(c["city"], "Lyon", "{q}");
    assert_eq!(c["country"], "FR", "{q}");
    assert_eq!(c["aggregates"]["purchases"].as_f64(), Some(3.0), "{q}");
    assert_eq!(c["aggregates"]["total_spent"].as_f64(), Some(61.5), "{q}");
    assert_eq!(c["aggregates"]["avg_basket"].as_f64(), Some(20.5), "{q}");

    // Again: no user is new (incremental from the stored state); purchases are read in full.
    let out = sync(dir.path());
    assert!(out.contains("synced demo: 150 rows read"), "{out}");
}
