//! End-to-end: connector plugins through the real binary — install, list, remove, a Stripe
//! sync through the plugin with the key from the environment, and a server that reports and
//! skips a broken plugin and keeps serving.

mod common;

use std::path::Path;

use common::*;
use dossier_plugin_host::testing::plugin_library;
use dossier_stripe_fake::{API_KEY, FakeStripe};

fn lib(name: &str) -> String {
    plugin_library(name).to_str().unwrap().to_string()
}

fn connectors(plugins: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["connectors"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--plugin-dir", plugins.to_str().unwrap()]);
    run(&all)
}

#[test]
fn install_list_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");

    let o = connectors(&plugins, &["install", &lib("dossier_stripe_plugin")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("installed stripe 0.1.0 (plugin ABI 1.0)"),
        "{}",
        stdout(&o)
    );

    // Each bad plugin is refused with its own message, and nothing is recorded.
    let o = connectors(
        &plugins,
        &["install", &lib("dossier_test_plugin_wrong_abi")],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("built for plugin ABI 99.0"),
        "{}",
        stderr(&o)
    );
    let o = connectors(&plugins, &["install", &lib("dossier_test_plugin_no_entry")]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("missing entry symbol"),
        "{}",
        stderr(&o)
    );
    let wrong = "0".repeat(64);
    let o = connectors(
        &plugins,
        &[
            "install",
            &lib("dossier_test_generator_plugin"),
            "--sha256",
            &wrong,
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("sha256 mismatch"), "{}", stderr(&o));

    // The right pin installs.
    let bytes = std::fs::read(plugin_library("dossier_test_generator_plugin")).unwrap();
    let pin = dossier_plugin_host::sha256_hex(&bytes);
    let o = connectors(
        &plugins,
        &[
            "install",
            &lib("dossier_test_generator_plugin"),
            "--sha256",
            &pin,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let o = connectors(&plugins, &["list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let find = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {listed}"))
            .clone()
    };
    assert_eq!(find("sqlite")["kind"], "builtin");
    assert_eq!(find("stripe")["kind"], "plugin");
    assert_eq!(find("stripe")["version"], "0.1.0");
    assert_eq!(find("generator")["sha256"], pin.as_str());

    let o = connectors(&plugins, &["remove", "stripe"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = connectors(&plugins, &["list"]);
    assert!(!stdout(&o).contains("stripe"), "{}", stdout(&o));
    let o = connectors(&plugins, &["remove", "stripe"]);
    assert!(
        stderr(&o).contains("no plugin named \"stripe\" is installed"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_syncs_through_the_plugin_with_the_key_from_the_environment() {
    let fake = FakeStripe::start().await;
    fake.seed(40, 1_600_000_000);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Installed into the default plugin directory: `plugins` beside the config.
    let o = run(&[
        "connectors",
        "install",
        &lib("dossier_stripe_plugin"),
        "--config",
        d.join("dossier.toml").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/stripe/dossier.toml"
    ))
    .unwrap()
    .replace(
        "# base_url = \"https://api.stripe.com\"",
        &format!("base_url = \"{}\"", fake.uri()),
    );
    std::fs::write(d.join("dossier.toml"), config).unwrap();
    let out = tokio::task::spawn_blocking({
        let cfg = d.join("dossier.toml");
        move || {
            bin()
                .args([
                    "sync",
                    "stripe",
                    "--json",
                    "--config",
                    cfg.to_str().unwrap(),
                ])
                .env("STRIPE_API_KEY", API_KEY)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(!stderr(&out).contains(API_KEY), "the key was printed");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (customers, charges) = fake.counts();
    assert_eq!(summary["streams"]["customers"]["read"], customers as u64);
    assert_eq!(summary["streams"]["charges"]["read"], charges as u64);

    let q = query(
        d,
        r#"{ contact(email: "customer7@example.com") { aggregates sessions(kind: "payment") { edges { node { data } } } } }"#,
    );
    let c = &q["data"]["contact"];
    assert_eq!(c["aggregates"]["payments"], 3, "{q}");
    let payment = &c["sessions"]["edges"][0]["node"]["data"];
    assert!(
        payment["amount"].is_number() && payment["currency"].is_string(),
        "{q}"
    );
}

#[test]
fn serve_reports_and_skips_a_broken_plugin_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 50);
    let plugins = d.join("plugins");
    for name in ["dossier_stripe_plugin", "dossier_test_generator_plugin"] {
        let o = connectors(&plugins, &["install", &lib(name)]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // The generator's installed file is replaced by something else.
    let file = plugins.join(format!("generator.{}", std::env::consts::DLL_EXTENSION));
    std::fs::write(plugins.join("junk"), b"not the library that was installed").unwrap();
    std::fs::rename(plugins.join("junk"), &file).unwrap();

    let key = api_key(&config(d), "admin");
    let (mut child, addr) = serve(&["--config", config(d).to_str().unwrap()]);
    let resp = post_graphql(
        &addr,
        &key,
        r#"{"query":"{ connectors { name kind version } contacts(first: 1) { totalCount } }"}"#,
    );
    let install = post_graphql(
        &addr,
        &key,
        r#"{"query":"mutation { installConnector(file: \"generator.so\") { name } }"}"#,
    );
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains(r#"{"name":"stripe","kind":"PLUGIN","version":"0.1.0"}"#),
        "{resp}"
    );
    assert!(
        resp.contains(r#"{"name":"sqlite","kind":"BUILTIN""#),
        "{resp}"
    );
    assert!(!resp.contains("\"generator\""), "{resp}");
    assert!(resp.contains("\"totalCount\":50"), "{resp}");
    assert!(install.contains("server.allow_plugin_install"), "{install}");
    let err = stderr(&out);
    assert!(
        err.contains("plugin \"generator\" not loaded, skipped") && err.contains("sha256 mismatch"),
        "{err}"
    );
}
