//! No connector's config shows a secret through the API: every string setting of every
//! built-in connector's config schema, given a URL carrying secrets in each component that
//! can hold one, comes out of `mask_secrets` without them.

use dossier_cli::builtin_registry;
use dossier_sync::config::mask_secrets;
use serde_json::{Map, Value, json};

/// A URL with a secret in its userinfo and in every kind of secret query parameter.
const SECRET_URL: &str = "postgres://ada:hunter2-userinfo@db.example:5432/shop?sslmode=require&password=hunter2-password&pass=hunter2-pass&pwd=hunter2-pwd&sslpassword=hunter2-ssl&token=hunter2-token&access_token=hunter2-access&api_key=hunter2-api&key=hunter2-key&client_secret=hunter2-client";

/// The string settings named by `schema` (its properties, and those of its definitions).
fn string_settings(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                for (name, prop) in props {
                    let types = match &prop["type"] {
                        Value::String(t) => vec![t.clone()],
                        Value::Array(ts) => ts
                            .iter()
                            .filter_map(|t| t.as_str().map(String::from))
                            .collect(),
                        _ => vec![],
                    };
                    // A setting of no declared type ($ref, anyOf) may hold a string too.
                    if types.is_empty() || types.iter().any(|t| t == "string") {
                        out.push(name.clone());
                    }
                }
            }
            for v in m.values() {
                string_settings(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| string_settings(v, out)),
        _ => {}
    }
}

#[test]
fn no_connector_config_shows_a_secret_of_a_url() {
    let registry = builtin_registry();
    let specs = registry.specs();
    assert!(specs.len() >= 5, "{} connectors", specs.len());
    for spec in specs {
        let mut names = vec![];
        string_settings(&spec.config_schema, &mut names);
        names.sort();
        names.dedup();
        let config: Map<String, Value> = names
            .iter()
            .map(|n| (n.clone(), json!(SECRET_URL)))
            .collect();
        // Nested too: a table or a list of settings.
        let config = json!({ "nested": config.clone(), "list": [config.clone()], "top": config });
        let shown = mask_secrets(&config).to_string();
        assert!(
            !shown.contains("hunter2"),
            "connector {} shows a secret: {shown}",
            spec.name
        );
        // What is not secret stays readable.
        if !names.is_empty() {
            assert!(
                shown.contains("db.example:5432/shop"),
                "{}: {shown}",
                spec.name
            );
        }
    }
}
