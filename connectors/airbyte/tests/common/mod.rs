//! What the connector's suites share: the interpreter their scripts run with, configs running
//! a script, requests, an engine over a config, and the columns of batches.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use dossier_connector::{Batch, ReadRequest, Registry, StreamState, Value};
use dossier_connector_airbyte::{Config, Stream};
use dossier_store::SqlStore;
use dossier_sync::{Config as SyncConfig, Engine};
use serde_json::Value as Json;

/// The interpreter itself, not a wrapper on `PATH` (pyenv's shims set variables of their own,
/// which would hide what the connector passes).
pub fn python() -> &'static str {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs the test sources and taps");
        assert!(out.status.success(), "python3: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

/// A config running `script` with `python3` and the program's own config, 20 s of silence at
/// most.
pub fn script_config(script: &Path, program_config: Json) -> Config {
    let mut c = Config::new(&[python(), script.to_str().unwrap()], program_config);
    c.idle_timeout_secs = Some(20);
    c
}

pub fn request(name: &str, state: Option<StreamState>, batch_size: usize) -> ReadRequest<Stream> {
    ReadRequest {
        name: name.into(),
        stream: Stream::default(),
        state,
        batch_size,
    }
}

/// The values of `field` in each row of `batches`.
pub fn column(batches: &[Batch], field: &str) -> Vec<Value> {
    batches
        .iter()
        .flat_map(|b| {
            let at = b
                .fields
                .iter()
                .position(|f| f == field)
                .unwrap_or_else(|| panic!("no field {field} in {:?}", b.fields));
            b.rows.iter().map(move |r| r[at].clone())
        })
        .collect()
}

/// The `id` column of each batch.
pub fn ids(batches: &[Batch]) -> Vec<Vec<i64>> {
    batches
        .iter()
        .map(|b| {
            column(std::slice::from_ref(b), "id")
                .into_iter()
                .map(|v| match v {
                    Value::Int(i) => i,
                    other => panic!("id {other:?}"),
                })
                .collect()
        })
        .collect()
}

/// `updated_at` of user `i` of the test source and tap.
pub fn updated_at(i: i64) -> String {
    chrono::DateTime::from_timestamp(1_700_000_000 + 60 * i, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// An engine over the config `text` with its store in `dir`.
pub async fn engine_over(dir: &Path, text: &str, registry: Registry) -> Arc<Engine> {
    let mut loaded = SyncConfig::parse(text, "dossier.toml", dir.to_path_buf(), &registry)
        .unwrap_or_else(|e| panic!("{e}"));
    loaded.config.store.url = format!("sqlite://{}", dir.join("dossier.db").display());
    let store = SqlStore::open(&loaded.config.store.url).await.unwrap();
    Engine::new(store, registry, loaded).await.unwrap()
}
