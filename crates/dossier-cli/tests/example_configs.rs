//! Every example config in the repository parses and validates.

use std::path::{Path, PathBuf};

use dossier_cli::builtin_registry;
use dossier_sync::Config;

fn configs(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            configs(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_example_config_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut found = vec![];
    configs(&root, &mut found);
    assert!(
        !found.is_empty(),
        "no example configs under {}",
        root.display()
    );
    for p in found {
        let text = std::fs::read_to_string(&p).unwrap();
        // Examples reference their servers through ${VAR}: give every referenced variable a value.
        let text = expand_all(&text);
        // Stripe is a plugin: validate its example against the same connector compiled in.
        let mut registry = builtin_registry();
        registry.register::<dossier_connector_stripe::StripeConnector>();
        // The faker example's source is an installed package: registered as an install does.
        registry
            .register_factory("source-faker", faker_package())
            .unwrap();
        if let Err(e) = Config::parse(
            &text,
            &p.display().to_string(),
            p.parent().unwrap().to_path_buf(),
            &registry,
        ) {
            panic!("{e}");
        }
    }
}

fn faker_package() -> std::sync::Arc<dyn dossier_connector::ConnectorFactory> {
    let record = dossier_connector_airbyte::InstalledPackage {
        name: "source-faker".into(),
        protocol: dossier_connector_airbyte::Protocol::Airbyte,
        package: "airbyte-source-faker".into(),
        version: "7.2.1".into(),
        sha256: String::new(),
        venv: "source-faker".into(),
        command: "source-faker".into(),
        installed_at: String::new(),
        packages: vec![],
    };
    dossier_connector_airbyte::package_factory(record, "source-faker".into())
}

fn expand_all(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').map(|e| i + e + 1).unwrap_or(rest.len());
        out.push_str("example-value");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
