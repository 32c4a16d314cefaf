//! The Airbyte connector against real child processes: `tests/sources/fake_source.py`, a
//! source written as the Python CDK writes, well-behaved or misbehaving in one way while
//! reading (see its `behaviour`). Offline; needs `python3`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dossier_connector::{
    Connector, ConnectorError, ErrorOrigin, ReadRequest, Registry, StreamState, Value, read_all,
    read_to_end,
};
use dossier_connector_airbyte::{AirbyteConnector, Config, Stream, SyncMode};
use dossier_sync::{Engine, NoProgress, RunSummary};
use futures::StreamExt as _;
use serde_json::{Value as Json, json};

mod common;

use common::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sources/fake_source.py")
}

fn config(source_config: Json) -> Config {
    script_config(&script(), source_config)
}

async fn connect(source_config: Json) -> Arc<AirbyteConnector> {
    Arc::new(
        AirbyteConnector::connect(config(source_config))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// The `updated_at` a stored users state resumes after.
fn cursor_of(state: &StreamState) -> String {
    let m = &state.0["airbyte"];
    let s = match m["type"].as_str() {
        Some("STREAM") => &m["stream"]["stream_state"],
        Some("GLOBAL") => &m["global"]["stream_states"][0]["stream_state"],
        _ => &m["data"]["users"],
    };
    s["updated_at"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn discover_lists_streams_with_typed_fields_keys_and_cursors() {
    let c = connect(json!({"users": 3})).await;
    let catalog = c.discover().await.unwrap();
    let names: Vec<&str> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["users", "purchases"]);
    let users = &catalog.streams[0];
    let fields: Vec<(&str, &str)> = users
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.source_type.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("address", "object"),
            ("address.city", "string"),
            ("address.country", "string"),
            ("blob", "string"),
            ("email", "string"),
            ("id", "integer"),
            ("name", "string"),
            ("updated_at", "string(date-time)"),
        ]
    );
    assert_eq!(users.primary_key, ["id"]);
    assert_eq!(users.cursor_candidates, ["updated_at"]);
    assert!(catalog.streams[1].cursor_candidates.is_empty());

    let info = c.describe("users", &Stream::default()).await.unwrap();
    assert_eq!(info.cursor_candidates, ["updated_at"]);
    let e = c
        .describe(
            "clients",
            &Stream {
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.origin(), ErrorOrigin::Config);
    assert!(
        e.to_string().contains(
            "the source has no stream \"clients\" (set `stream`); it has: users, purchases"
        ),
        "{e}"
    );
    let e = c
        .describe(
            "purchases",
            &Stream {
                sync_mode: Some(SyncMode::Incremental),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("reads \"purchases\" in full only"),
        "{e}"
    );
}

#[tokio::test]
async fn the_config_is_checked_against_the_spec_naming_fields_not_values() {
    let e = AirbyteConnector::connect(config(
        json!({"users": "ten", "api_token": 5, "colour": "s3cret-value"}),
    ))
    .await
    .err()
    .unwrap();
    assert_eq!(e.origin(), ErrorOrigin::Config);
    let e = e.to_string();
    assert!(
        e.contains("(spec): the config does not fit the source's spec"),
        "{e}"
    );
    assert!(
        e.contains("`config.users`: the value is not of type \"integer\""),
        "{e}"
    );
    assert!(e.contains("`config.api_token`"), "{e}");
    assert!(e.contains("'colour' was unexpected"), "{e}");
    assert!(!e.contains("s3cret-value") && !e.contains("ten\""), "{e}");

    let mut missing = Config::new(&["/nonexistent/source-nothing"], json!({}));
    missing.idle_timeout_secs = Some(5);
    let e = AirbyteConnector::connect(missing).await.err().unwrap();
    assert_eq!(e.origin(), ErrorOrigin::Config);
    assert!(
        e.to_string()
            .contains("cannot start `/nonexistent/source-nothing`"),
        "{e}"
    );
}

#[tokio::test]
async fn check_reports_a_failed_connection_and_streams_that_do_not_fit() {
    let c = connect(json!({"users": 3})).await;
    let streams = vec![
        ("users".to_string(), Stream::default()),
        (
            "people".to_string(),
            Stream {
                stream: Some("users".into()),
                cursor_field: Some("email".into()),
                ..Default::default()
            },
        ),
    ];
    let problems = c.check(&streams).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].stream.as_deref(), Some("people"));
    assert!(
        problems[0].message.contains(
            "the source defines the cursor of \"users\" (updated_at); remove `cursor_field`"
        ),
        "{problems:?}"
    );

    let c = connect(json!({"users": 3, "behaviour": "check_fails"})).await;
    let problems = c.check(&streams).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].stream, None);
    assert!(
        problems[0]
            .message
            .contains("the connection check failed: 401 Unauthorized"),
        "{problems:?}"
    );
}

#[tokio::test]
async fn batches_end_at_states_and_a_read_resumes_from_each_kind_of_state() {
    for kind in ["STREAM", "GLOBAL", "LEGACY"] {
        let c = connect(json!({"users": 10, "state_every": 3, "state_type": kind})).await;
        // States after users 3, 6, 9 and 10; batches of at least 4 records end at a state.
        let (batches, e) = read_to_end(&c, request("users", None, 4)).await;
        assert!(e.is_none(), "{kind}: {e:?}");
        assert_eq!(
            ids(&batches),
            [vec![1, 2, 3, 4, 5, 6], vec![7, 8, 9, 10]],
            "{kind}"
        );
        assert_eq!(cursor_of(&batches[0].state), updated_at(6), "{kind}");
        assert_eq!(cursor_of(&batches[1].state), updated_at(10), "{kind}");
        assert_eq!(
            batches[1].state.0["airbyte"]["type"].as_str(),
            (kind != "LEGACY").then_some(kind),
            "{kind}"
        );

        // Resuming from the first batch's state reads the rest, with 2 more users.
        let c = connect(json!({"users": 12, "state_every": 3, "state_type": kind})).await;
        let (batches, e) =
            read_to_end(&c, request("users", Some(batches[0].state.clone()), 100)).await;
        assert!(e.is_none(), "{kind}: {e:?}");
        assert_eq!(ids(&batches), [vec![7, 8, 9, 10, 11, 12]], "{kind}");

        // From the last state with nothing new: no batch, the stored state stays.
        let last = batches[0].state.clone();
        let (batches, e) = read_to_end(&c, request("users", Some(last), 100)).await;
        assert!(e.is_none(), "{kind}: {e:?}");
        assert!(batches.is_empty(), "{kind}: {:?}", ids(&batches));
    }
}

#[tokio::test]
async fn a_full_refresh_stream_ignores_states_and_batches_by_size() {
    let c = connect(json!({"users": 4})).await;
    let (batches, e) = read_to_end(&c, request("purchases", None, 5)).await;
    assert!(e.is_none(), "{e:?}");
    assert_eq!(
        ids(&batches),
        [vec![1, 2, 3, 4, 5], vec![6, 7, 8, 9, 10], vec![11, 12]]
    );
    assert!(batches.iter().all(|b| b.state.is_full_refresh()));
    // Users read in full on request, whatever state is stored.
    let stream = Stream {
        sync_mode: Some(SyncMode::FullRefresh),
        ..Default::default()
    };
    let stored =
        StreamState(json!({"airbyte": {"data": {"users": {"updated_at": updated_at(4)}}}}));
    let (batches, e) = read_to_end(
        &c,
        ReadRequest {
            name: "users".into(),
            stream,
            state: Some(stored),
            batch_size: 100,
        },
    )
    .await;
    assert!(e.is_none(), "{e:?}");
    assert_eq!(ids(&batches), [vec![1, 2, 3, 4]]);
}

#[tokio::test]
async fn records_after_the_last_state_are_never_handed_over() {
    // 5 users, states after 3 only: users 4 and 5 are not covered.
    let c = connect(json!({"users": 5, "behaviour": "no_final_state"})).await;
    let (batches, e) = read_to_end(&c, request("users", None, 100)).await;
    assert!(e.is_none(), "{e:?}");
    assert_eq!(ids(&batches), [vec![1, 2, 3]]);
    assert_eq!(cursor_of(&batches[0].state), updated_at(3));
    // A state before any record, repeating the stored one, changes nothing by itself.
    let c = connect(json!({"users": 3, "behaviour": "state_first"})).await;
    let (batches, e) = read_to_end(&c, request("users", None, 100)).await;
    assert!(e.is_none(), "{e:?}");
    assert_eq!(ids(&batches), [vec![1, 2, 3]]);
}

/// Reads `users` with a misbehaving source: the covered records (1-3, with their state) come
/// first, then the error.
async fn hostile(behaviour: Json, tweak: impl FnOnce(&mut Config)) -> ConnectorError {
    let mut cfg = config(json!({"users": 10}));
    for (k, v) in behaviour.as_object().unwrap() {
        cfg.config[k] = v.clone();
    }
    tweak(&mut cfg);
    let c = Arc::new(AirbyteConnector::connect(cfg).await.unwrap());
    let started = Instant::now();
    let (batches, e) = read_to_end(&c, request("users", None, 100)).await;
    let e = e.unwrap_or_else(|| panic!("{behaviour}: no error; {:?}", ids(&batches)));
    assert_eq!(ids(&batches), [vec![1, 2, 3]], "{behaviour}: {e}");
    assert_eq!(cursor_of(&batches[0].state), updated_at(3), "{behaviour}");
    // The child was stopped, not waited for (each misbehaviour then sleeps 30 s or more).
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{behaviour}: {:?}",
        started.elapsed()
    );
    e
}

#[tokio::test]
async fn a_garbage_line_fails_the_read_naming_the_line() {
    let e = hostile(json!({"behaviour": "garbage"}), |_| {}).await;
    assert!(!e.is_retryable());
    let e = e.to_string();
    assert!(
        e.contains("read of stream \"users\")") && e.contains("line 8 is not a JSON message"),
        "{e}"
    );
    assert!(e.contains("\"this is not json\""), "{e}");
}

#[tokio::test]
async fn a_state_or_record_of_a_stream_not_in_the_catalog_fails_the_read() {
    let e = hostile(json!({"behaviour": "foreign_state"}), |_| {}).await;
    assert!(!e.is_retryable());
    assert!(
        e.to_string().contains(
            "a STREAM state is for stream \"orders\", which is not in the configured catalog"
        ),
        "{e}"
    );
    let e = hostile(json!({"behaviour": "foreign_record"}), |_| {}).await;
    assert!(
        e.to_string()
            .contains("a record for stream \"orders\", which is not in the configured catalog"),
        "{e}"
    );
}

#[tokio::test]
async fn a_line_over_the_limit_fails_the_read() {
    let e = hostile(
        json!({"behaviour": "huge_line", "huge_bytes": 5_000_000}),
        |c| c.max_line_bytes = Some(1024 * 1024),
    )
    .await;
    assert!(!e.is_retryable());
    assert!(
        e.to_string()
            .contains("line 8 is longer than 1048576 bytes (`max_line_bytes`)"),
        "{e}"
    );
}

#[tokio::test]
async fn a_silent_child_times_out_and_is_killed() {
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
}

#[tokio::test]
async fn trace_errors_keep_their_failure_type() {
    for (failure_type, origin, retryable) in [
        ("config_error", ErrorOrigin::Config, false),
        ("transient_error", ErrorOrigin::Remote, true),
        ("system_error", ErrorOrigin::Remote, false),
    ] {
        let e = hostile(
            json!({"behaviour": "trace_error", "failure_type": failure_type}),
            |_| {},
        )
        .await;
        assert_eq!(e.origin(), origin, "{e}");
        assert_eq!(e.is_retryable(), retryable, "{e}");
        assert!(
            e.to_string().contains(&format!(
                "the source failed ({failure_type}): The API refused the request"
            )),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_child_that_exits_non_zero_fails_with_its_stderr() {
    let c = connect(json!({"users": 10, "behaviour": "exit_half"})).await;
    let (batches, e) = read_to_end(&c, request("users", None, 100)).await;
    // States after 3 only; users 4 and 5 were read, then the exit.
    assert_eq!(ids(&batches), [vec![1, 2, 3]]);
    let e = e.unwrap();
    assert!(e.is_retryable(), "{e}");
    let e = e.to_string();
    assert!(e.contains("exited with status 1 after"), "{e}");
    assert!(e.contains("ConnectionResetError: peer gone"), "{e}");
}

#[derive(serde::Deserialize)]
struct Report {
    env: Vec<String>,
    pid: i32,
    api_token: Option<String>,
    files: std::collections::BTreeMap<String, FileSeen>,
}

#[derive(serde::Deserialize)]
struct FileSeen {
    path: PathBuf,
    mode: u32,
    dir_mode: u32,
}

fn report(path: &Path) -> Report {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn files_are_private_and_removed_and_the_environment_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("report.json");
    let mut cfg = config(json!({"users": 3, "report_to": to, "api_token": "tok"}));
    cfg.env.insert("SOURCE_ONLY".into(), "1".into());
    let c = Arc::new(AirbyteConnector::connect(cfg).await.unwrap());
    let (batches, e) = read_to_end(&c, request("users", None, 100)).await;
    assert!(e.is_none(), "{e:?}");
    assert_eq!(ids(&batches), [vec![1, 2, 3]]);
    let seen = report(&to);
    for var in &seen.env {
        assert!(
            ["PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SOURCE_ONLY"]
                .contains(&var.as_str())
                || var.starts_with("SSL_")
                || var.to_lowercase().contains("proxy")
                || var == "REQUESTS_CA_BUNDLE"
                // Set by the interpreter itself.
                || var == "LC_CTYPE",
            "{var} leaked into the source's environment: {:?}",
            seen.env
        );
    }
    assert!(seen.env.contains(&"PATH".to_string()));
    assert!(seen.env.contains(&"SOURCE_ONLY".to_string()));
    assert!(!seen.env.iter().any(|v| v == "CARGO_MANIFEST_DIR"));
    assert_eq!(
        seen.files.keys().collect::<Vec<_>>(),
        ["catalog", "config"],
        "no state on a first read"
    );
    for (what, f) in &seen.files {
        assert_eq!(f.mode, 0o600, "{what}");
        assert_eq!(f.dir_mode, 0o700, "{what}");
        assert!(!f.path.exists(), "{what} left at {}", f.path.display());
        assert!(
            !f.path.parent().unwrap().exists(),
            "{what}'s directory left"
        );
    }
    // The second read hands the state over in a file too.
    let (_, e) = read_to_end(&c, request("users", Some(batches[0].state.clone()), 100)).await;
    assert!(e.is_none(), "{e:?}");
    let seen = report(&to);
    assert_eq!(seen.files["state"].mode, 0o600);
    assert!(!seen.files["state"].path.exists());
}

#[tokio::test]
async fn dropping_a_read_kills_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("report.json");
    let c =
        connect(json!({"users": 10, "behaviour": "hang", "state_every": 1, "report_to": to})).await;
    let mut stream = c.clone().read(request("users", None, 1));
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(ids(&[first]), [vec![1]]);
    let pid = report(&to).pid;
    let alive = |pid: i32| Path::new(&format!("/proc/{pid}")).exists() && !zombie(pid);
    assert!(alive(pid), "the source runs while the read is held");
    drop(stream);
    let until = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(pid), "the source {pid} outlived its read");
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[tokio::test]
async fn a_control_message_updates_the_config_for_the_next_runs() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("report.json");
    let c =
        connect(json!({"users": 3, "behaviour": "control", "api_token": "old", "report_to": to}))
            .await;
    let (_, e) = read_to_end(&c, request("users", None, 100)).await;
    assert!(e.is_none(), "{e:?}");
    let seen = report(&to);
    assert_eq!(seen.api_token.as_deref(), Some("old"));
    assert!(!seen.files["config"].path.exists());
    // The next run of the same connector is handed the rotated token.
    let (_, e) = read_to_end(&c, request("purchases", None, 100)).await;
    assert!(e.is_none(), "{e:?}");
    assert_eq!(report(&to).api_token.as_deref(), Some("rotated-token"));
}

// ---- Through the engine and the store ----

const TOML: &str = r#"
[store]
url = "sqlite://dossier.db"

[[sources]]
name = "fake"
connector = "airbyte"
batch_size = 4
bulk_commit_rows = 1
retry = { attempts = 0 }
config = { command = ["PYTHON", "SCRIPT"], config = { users = USERS, state_every = 3, behaviour = "BEHAVIOUR" } }

[[sources.streams]]
name = "users"
read = {}

[sources.streams.mapping]
target = "contact"
id = "id"
identities = { email = "email" }
profile = { city = "address.city", country = "address.country" }
data = { name = "name" }
updated_at = "updated_at"

[[sources.streams]]
name = "purchases"
read = {}

[sources.streams.mapping]
target = "session"
id = "id"
kind = "order"
started_at = "created_at"
contact = { stream = "users", field = "user_id" }
data = { price = "price" }

[[aggregates]]
name = "transactions"
op = "count"
kind = "order"

[[aggregates]]
name = "total_spent"
op = "sum"
kind = "order"
field = "price"
"#;

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<AirbyteConnector>();
    r
}

async fn engine(dir: &Path, users: u32, behaviour: &str) -> Arc<Engine> {
    let text = TOML
        .replace("SCRIPT", script().to_str().unwrap())
        .replace("PYTHON", python())
        .replace("USERS", &users.to_string())
        .replace("BEHAVIOUR", behaviour);
    engine_over(dir, &text, registry()).await
}

async fn state(engine: &Engine, stream: &str) -> Option<Json> {
    engine
        .store()
        .stream_state(engine.workspace(), "fake", stream)
        .await
        .unwrap()
}

async fn sync(engine: &Engine) -> RunSummary {
    engine
        .sync("fake", None, "test", &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_sync_commits_records_with_their_state_then_reads_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), 10, "good").await;
    let s = sync(&e).await;
    assert_eq!(s.streams["users"].read, 10);
    assert_eq!(s.streams["purchases"].read, 30);
    assert_eq!(s.rows_rejected(), 0);
    assert_eq!(e.store().counts(e.workspace()).await.unwrap(), (10, 30));
    let users = state(&e, "users").await.unwrap();
    assert_eq!(cursor_of(&StreamState(users.clone())), updated_at(10));
    assert_eq!(
        state(&e, "purchases").await,
        Some(json!({"full_refresh": true}))
    );

    // Nothing new: no user read; purchases are read in full again.
    let s = sync(&e).await;
    assert_eq!(s.streams["users"].read, 0);
    assert_eq!(s.streams["purchases"].read, 30);
    assert_eq!(state(&e, "users").await, Some(users));

    // Two more users: only they are read.
    let e = engine(dir.path(), 12, "good").await;
    let s = sync(&e).await;
    assert_eq!(s.streams["users"].read, 2);
    assert_eq!(e.store().counts(e.workspace()).await.unwrap(), (12, 36));
}

#[tokio::test]
async fn a_source_that_fails_mid_read_keeps_what_its_last_state_covers_and_the_next_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    // Exits 1 after 5 of 10 users: states after 3 only.
    let e = engine(dir.path(), 10, "exit_half").await;
    let err = e
        .sync("fake", None, "test", &NoProgress)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("exited with status 1"), "{err}");
    assert_eq!(
        cursor_of(&StreamState(state(&e, "users").await.unwrap())),
        updated_at(3)
    );
    let (contacts, _) = e.store().counts(e.workspace()).await.unwrap();
    assert_eq!(
        contacts, 3,
        "users 4 and 5 were read but not covered by a state"
    );

    let e = engine(dir.path(), 10, "good").await;
    let s = sync(&e).await;
    assert_eq!(s.streams["users"].read, 7, "users 4 to 10, once");
    assert_eq!(e.store().counts(e.workspace()).await.unwrap(), (10, 30));
    assert_eq!(
        cursor_of(&StreamState(state(&e, "users").await.unwrap())),
        updated_at(10)
    );
}

#[tokio::test]
async fn a_garbage_line_fails_the_sync_and_commits_nothing_past_the_last_state() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), 10, "garbage").await;
    let err = e
        .sync("fake", None, "test", &NoProgress)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 8 is not a JSON message"), "{err}");
    assert_eq!(
        cursor_of(&StreamState(state(&e, "users").await.unwrap())),
        updated_at(3)
    );
    assert_eq!(e.store().counts(e.workspace()).await.unwrap().0, 3);
}

fn with_lookups(lookups: Json) -> Stream {
    serde_json::from_value(json!({ "lookups": lookups })).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_lookup_joins_the_fields_of_another_stream_by_key() {
    let c = connect(json!({"users": 4})).await;
    let stream = with_lookups(json!([{
        "stream": "users", "on": "user_id", "fields": ["email", "address"], "into": "buyer"
    }]));
    // The looked-up fields are fields of the stream, with the lookup stream's types.
    let info = c.describe("purchases", &stream).await.unwrap();
    let fields: Vec<(&str, &str)> = info
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.source_type.as_str()))
        .filter(|(n, _)| n.starts_with("buyer"))
        .collect();
    assert_eq!(
        fields,
        [
            ("buyer", "object"),
            ("buyer.address", "object"),
            ("buyer.address.city", "string"),
            ("buyer.address.country", "string"),
            ("buyer.email", "string"),
        ]
    );
    assert!(
        c.check(&[("purchases".into(), stream.clone())])
            .await
            .is_empty()
    );

    let mut request = request("purchases", None, 5);
    request.stream = stream;
    let batches = read_all(&c, request).await.unwrap();
    let users = column(&batches, "user_id");
    let emails = column(&batches, "buyer.email");
    assert_eq!(users.len(), 12);
    for (user, email) in users.iter().zip(&emails) {
        let Value::Int(u) = user else {
            panic!("{user:?}")
        };
        assert_eq!(email, &Value::Text(format!("user{u}@example.com")));
    }
    assert!(
        column(&batches, "buyer.address.city")
            .iter()
            .all(|c| c == &Value::Text("Lyon".into()))
    );

    // An incremental read from a state still reads its lookup in full: users 3 and 4 get
    // their last purchase (the later record of a key is kept), looked up by `key`.
    let stream = with_lookups(json!([{
        "stream": "purchases", "key": "user_id", "on": "id", "fields": ["price", "id"], "into": "last_purchase"
    }]));
    let stored =
        StreamState(json!({"airbyte": {"data": {"users": {"updated_at": updated_at(2)}}}}));
    let batches = read_all(
        &c,
        ReadRequest {
            name: "users".into(),
            stream,
            state: Some(stored),
            batch_size: 100,
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&batches), [vec![3, 4]]);
    assert_eq!(
        column(&batches, "last_purchase.price"),
        [Value::Float(30.5), Value::Float(30.5)]
    );
    assert_eq!(
        column(&batches, "last_purchase.id"),
        [Value::Int(9), Value::Int(12)]
    );
}

#[tokio::test]
async fn lookups_that_cannot_be_read_are_refused_naming_the_stream() {
    let c = connect(json!({"users": 4})).await;
    let refused = |lookups: Json| {
        let c = c.clone();
        async move {
            let stream = with_lookups(lookups);
            let e = c.describe("purchases", &stream).await.unwrap_err();
            assert_eq!(e.origin(), ErrorOrigin::Config, "{e}");
            // `check` says the same, for the stream.
            let problems = c.check(&[("purchases".into(), stream)]).await;
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].stream.as_deref(), Some("purchases"));
            e.to_string()
        }
    };
    let e = refused(json!([{"stream": "clients", "on": "user_id", "fields": ["email"]}])).await;
    assert!(
        e.contains(
            "(stream \"purchases (lookup of clients)\"): the source has no stream \"clients\""
        ),
        "{e}"
    );
    let e = refused(json!([{"stream": "purchases", "on": "user_id", "fields": ["price"]}])).await;
    assert!(
        e.contains(
            "(stream \"purchases\"): `lookups[0]` (\"purchases\"): a stream cannot look itself up"
        ),
        "{e}"
    );
    let e = refused(json!([{"stream": "users", "on": "user_id", "fields": ["phone"]}])).await;
    assert!(
        e.contains("`fields` names \"phone\", which is not a field of \"users\""),
        "{e}"
    );
    let e = refused(json!([{"stream": "users", "on": "user_id", "fields": ["email.x"]}])).await;
    assert!(
        e.contains("`lookups[0]` (\"users\"): `fields` names \"email.x\""),
        "{e}"
    );

    // A lookup stream with more records than `max_rows` fails the read, naming both.
    let mut request = request("purchases", None, 5);
    request.stream = with_lookups(json!([{
        "stream": "users", "on": "user_id", "fields": ["email"], "max_rows": 3
    }]));
    let (batches, e) = read_to_end(&c, request).await;
    assert!(batches.is_empty());
    let e = e.expect("refused");
    assert_eq!(e.origin(), ErrorOrigin::Config, "{e}");
    let e = e.to_string();
    assert!(
        e.contains("(read of stream \"purchases (lookup of users)\"): the lookup stream \"users\" has more than 3 records (`max_rows` of the lookup)"),
        "{e}"
    );
}
