//! The Singer connector against real child processes: `tests/taps/fake_tap.py`, a tap written
//! as singer-python taps write, well-behaved or misbehaving in one way while reading (its
//! `behaviour`). Offline; needs `python3`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dossier_connector::{Connector, ConnectorError, Registry, StreamState, Value, read_to_end};
use dossier_connector_airbyte::{Config, SingerConnector, Stream, SyncMode};
use dossier_sync::{Engine, NoProgress};
use serde_json::{Value as Json, json};

mod common;

use common::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/taps/fake_tap.py")
}

fn config(tap_config: Json) -> Config {
    script_config(&script(), tap_config)
}

async fn connect(cfg: Config) -> Arc<SingerConnector> {
    Arc::new(
        SingerConnector::connect(cfg)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn bookmark(state: &StreamState) -> &str {
    state.0["singer"]["bookmarks"]["public-users"]["updated_at"]
        .as_str()
        .unwrap_or_else(|| panic!("{:?}", state.0))
}

#[tokio::test]
async fn discover_reads_a_catalog_written_over_many_lines() {
    let c = connect(config(json!({}))).await;
    let catalog = c.discover().await.unwrap();
    let names: Vec<&str> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["public-users", "events"]);
    let users = &catalog.streams[0];
    let fields: Vec<&str> = users.fields.iter().map(|f| f.name.as_str()).collect();
    for f in ["id", "email", "updated_at", "address", "address.city"] {
        assert!(fields.contains(&f), "{fields:?}");
    }
    assert_eq!(users.primary_key, ["id"]);
    assert_eq!(users.cursor_candidates, ["updated_at"]);
    assert!(catalog.streams[1].cursor_candidates.is_empty());
    // check is that discover, and each stream resolved against it.
    let problems = c
        .check(&[
            ("users".into(), Stream::default()),
            (
                "events".into(),
                Stream {
                    sync_mode: Some(SyncMode::Incremental),
                    ..Default::default()
                },
            ),
            ("orders".into(), Stream::default()),
        ])
        .await;
    let problems: Vec<String> = problems.into_iter().map(|p| p.message).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("the tap reads \"events\" in full only"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains(
            "the tap has no stream \"orders\" (set `stream`); it has: public-users, events"
        ),
        "{problems:?}"
    );
}

#[tokio::test]
async fn batches_end_at_states_and_a_read_resumes_from_the_stored_state() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let c = connect(config(
        json!({"users": 10, "state_every": 3, "report_to": report.to_str().unwrap()}),
    ))
    .await;
    // The Dossier stream `users` reads the tap's stream named users (id public-users).
    let (batches, e) = read_to_end(&c, request("users", None, 4)).await;
    assert!(e.is_none(), "{e:?}");
    assert_eq!(ids(&batches), [vec![1, 2, 3, 4, 5, 6], vec![7, 8, 9, 10]]);
    assert_eq!(bookmark(&batches[0].state), updated_at(6));
    assert_eq!(bookmark(&batches[1].state), updated_at(10));
    // The tap was given a catalog of that stream alone, selected, with its method and key.
    let seen: Json = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let argv: Vec<&str> = seen["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(argv[0], "--config");
    assert_eq!(argv[2], "--catalog");
    assert_eq!(argv.len(), 4, "no state on a first read: {argv:?}");
    let streams = seen["catalog"]["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1);
    let top = &streams[0]["metadata"][0]["metadata"];
    assert_eq!(top["selected"], true, "{top}");
    assert_eq!(top["replication-method"], "INCREMENTAL", "{top}");
    assert_eq!(top["replication-key"], "updated_at", "{top}");
    assert_eq!(streams[0]["metadata"][1]["metadata"]["selected"], true);

    // From the first batch's state, with 2 more users: the rest, and the tap got the state.
    let c = connect(config(
        json!({"users": 12, "state_every": 3, "report_to": report.to_str().unwrap()}),
    ))
    .await;
    let (batches, e) = read_to_end(&c, request("users", Some(batches[0].state.clone()), 100)).await;
    assert!(e.is_none(), "{e:?}");
    assert_eq!(ids(&batches), [vec![7, 8, 9, 10, 11, 12]]);
    let seen: Json = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(
        seen["state"]["bookmarks"]["public-users"]["updated_at"],
        updated_at(6)
    );

    // A tap that reads `--properties` is given the catalog there.
    let mut cfg = config(json!({"users": 3, "report_to": report.to_str().unwrap()}));
    cfg.catalog_option = Some(dossier_connector_airbyte::CatalogOption::Properties);
    let c = connect(cfg).await;
    let (batches, e) = read_to_end(&c, request("users", None, 100)).await;
    assert!(e.is_none(), "{e:?}");
    assert_eq!(ids(&batches), [vec![1, 2, 3]]);
    let seen: Json = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(seen["argv"][2], "--properties", "{seen}");
    // From the last state with nothing new: no batch.
    let (batches, e) = read_to_end(&c, request("users", Some(batches[0].state.clone()), 100)).await;
    assert!(e.is_none(), "{e:?}");
    assert!(batches.is_empty(), "{:?}", ids(&batches));
}

#[tokio::test]
async fn a_full_table_stream_is_read_whole_in_batches_by_size() {
    let c = connect(config(json!({"users": 3}))).await;
    let (batches, e) = read_to_end(&c, request("events", None, 4)).await;
    assert!(e.is_none(), "{e:?}");
    assert_eq!(ids(&batches), [vec![1, 2, 3, 4], vec![5, 6]]);
    assert!(batches.iter().all(|b| b.state.is_full_refresh()));
}

/// Reads `users` with a misbehaving tap: the covered records (1-3, with their state) come
/// first, then the error.
async fn hostile(behaviour: Json, tweak: impl FnOnce(&mut Config)) -> ConnectorError {
    let mut cfg = config(json!({"users": 10, "state_every": 3}));
    for (k, v) in behaviour.as_object().unwrap() {
        cfg.config[k] = v.clone();
    }
    tweak(&mut cfg);
    let c = connect(cfg).await;
    let started = Instant::now();
    let (batches, e) = read_to_end(&c, request("users", None, 100)).await;
    let e = e.unwrap_or_else(|| panic!("{behaviour}: no error; {:?}", ids(&batches)));
    assert_eq!(ids(&batches), [vec![1, 2, 3]], "{behaviour}: {e}");
    assert_eq!(bookmark(&batches[0].state), updated_at(3), "{behaviour}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{behaviour}: {:?}",
        started.elapsed()
    );
    e
}

#[tokio::test]
async fn hostile_taps_fail_the_read_after_the_records_their_last_state_covers() {
    let e = hostile(json!({"behaviour": "garbage"}), |_| {}).await;
    assert!(!e.is_retryable());
    let msg = e.to_string();
    assert!(
        msg.contains("singer tap `python3` (read of stream \"users\"): line 7")
            && msg.contains("is not a JSON message")
            && msg.contains("\"this is not json\""),
        "{msg}"
    );

    let e = hostile(json!({"behaviour": "other_stream"}), |_| {}).await;
    assert!(
        e.to_string()
            .contains("a record for stream \"secrets\", which is not in the catalog"),
        "{e}"
    );

    let e = hostile(json!({"behaviour": "huge", "huge_bytes": 3_000_000}), |c| {
        c.max_line_bytes = Some(1024 * 1024)
    })
    .await;
    assert!(
        e.to_string()
            .contains("is longer than 1048576 bytes (`max_line_bytes`)"),
        "{e}"
    );

    let e = hostile(json!({"behaviour": "hang"}), |c| {
        c.idle_timeout_secs = Some(1)
    })
    .await;
    assert!(e.is_retryable(), "{e}");
    assert!(
        e.to_string()
            .contains("wrote nothing for 1 s (`idle_timeout_secs`) and was stopped"),
        "{e}"
    );

    let e = hostile(json!({"behaviour": "exit_half"}), |_| {}).await;
    assert!(e.is_retryable(), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("exited with status 1 after"), "{msg}");
    assert!(msg.contains("tap-fake: lost the connection"), "{msg}");
}

#[tokio::test]
async fn a_tap_that_cannot_discover_says_why() {
    let mut cfg = config(json!({}));
    cfg.command = vec![
        python().into(),
        "-c".into(),
        "import sys; sys.exit('no credentials')".into(),
    ];
    let c = connect(cfg).await;
    let e = c.discover().await.unwrap_err().to_string();
    assert!(e.contains("singer tap `python3"), "{e}");
    assert!(e.contains("(discover): exited with status 1"), "{e}");
    assert!(e.contains("no credentials"), "{e}");
}

const TOML: &str = r#"
[store]
url = "sqlite://unused.db"

[[sources]]
name = "tap"
connector = "singer"
batch_size = 4
bulk_commit_rows = 1
retry = { attempts = 0 }
config = { command = ["PYTHON", "SCRIPT"], config = { users = 10, state_every = 3, behaviour = "BEHAVIOUR" } }

[[sources.streams]]
name = "users"
read = {}

[sources.streams.mapping]
target = "contact"
id = "id"
identities = { email = "email" }
profile = { city = "address.city" }

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
"#;

async fn engine(dir: &Path, behaviour: &str) -> Arc<Engine> {
    let mut registry = Registry::new();
    registry.register::<SingerConnector>();
    let text = TOML
        .replace("SCRIPT", script().to_str().unwrap())
        .replace("PYTHON", python())
        .replace("BEHAVIOUR", behaviour);
    engine_over(dir, &text, registry).await
}

async fn stored(engine: &Engine) -> StreamState {
    StreamState(
        engine
            .store()
            .stream_state(engine.workspace(), "tap", "users")
            .await
            .unwrap()
            .unwrap(),
    )
}

#[tokio::test]
async fn a_sync_that_fails_mid_read_keeps_what_the_last_state_covers_and_the_next_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), "exit_half").await;
    let err = e
        .sync("tap", None, "test", &NoProgress)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("exited with status 1"), "{err}");
    assert_eq!(bookmark(&stored(&e).await), updated_at(3));
    assert_eq!(e.store().counts(e.workspace()).await.unwrap().0, 3);

    let e = engine(dir.path(), "ok").await;
    let s = e
        .sync("tap", None, "test", &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.streams["users"].read, 7, "users 4 to 10, once");
    assert_eq!(s.streams["events"].read, 20);
    assert_eq!(e.store().counts(e.workspace()).await.unwrap(), (10, 20));
    assert_eq!(bookmark(&stored(&e).await), updated_at(10));

    // Nothing new: no user read, events read in full again.
    let s = e.sync("tap", None, "test", &NoProgress).await.unwrap();
    assert_eq!(s.streams["users"].read, 0);
    assert_eq!(s.streams["events"].read, 20);
}

#[tokio::test]
async fn a_lookup_joins_the_fields_of_another_stream_read_in_full_table() {
    let c = connect(config(json!({"users": 3}))).await;
    let stream: Stream = serde_json::from_value(json!({"lookups": [{
        "stream": "public-users", "on": "user_id", "fields": ["email"], "into": "user"
    }]}))
    .unwrap();
    let info = c.describe("events", &stream).await.unwrap();
    assert!(
        info.fields.iter().any(|f| f.name == "user.email"),
        "{:?}",
        info.fields
    );
    let mut request = request("events", None, 100);
    request.stream = stream;
    let (batches, e) = read_to_end(&c, request).await;
    assert!(e.is_none(), "{e:?}");
    let b = &batches[0];
    let at = |f: &str| b.fields.iter().position(|n| n == f).unwrap();
    assert_eq!(b.rows.len(), 6);
    for row in &b.rows {
        let Value::Int(user) = row[at("user_id")] else {
            panic!("{row:?}")
        };
        assert_eq!(
            row[at("user.email")],
            Value::Text(format!("user{user}@example.com"))
        );
    }

    // The stream is the same whether named by its tap_stream_id or its name: no lookup of
    // itself.
    let stream: Stream = serde_json::from_value(json!({"lookups": [{
        "stream": "users", "on": "id", "fields": ["email"], "into": "again"
    }]}))
    .unwrap();
    let e = c
        .describe("public-users", &stream)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "(stream \"public-users\"): `lookups[0]` (\"users\"): a stream cannot look itself up"
        ),
        "{e}"
    );
}
