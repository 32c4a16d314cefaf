//! The adapter's own cost (issue 25): a recorded Airbyte message stream replayed through the
//! connector by a child that `cat`s the file.
//!
//! 1. Writes a stream of `DOSSIER_AIRBYTE_BENCH_RECORDS` (default 1,000,000) RECORD messages of
//!    one stream `users` (shaped like source-faker's users, ~330 bytes a line), a STREAM state
//!    every 1,000, as a source writes them, into a temporary file.
//! 2. **pipe floor**: `cat` of the file read through a pipe, lines counted, nothing parsed.
//! 3. **adapter alone**: the connector's read of `users` (the child `cat`s the file), every
//!    line parsed, typed into rows, batched up to states; batches counted and dropped.
//! 4. **full sync**: the engine syncs the same replay into a fresh SQLite store (users to
//!    contacts with an email identity, profile and data fields), as `dossier sync` does.
//! 5. **source-faker itself**, when `DOSSIER_BENCH_FAKER` names its command (e.g. the one
//!    `dossier connectors install airbyte:source-faker==7.2.1` installed): its records/s
//!    writing `DOSSIER_BENCH_FAKER_USERS` (default 20,000) users to a pipe read by nothing else.
//!
//! Run: `cargo bench -p dossier-connector-airbyte --bench replay`.

use std::io::{BufRead as _, BufWriter, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dossier_connector::{Connector, ReadRequest, Registry};
use dossier_connector_airbyte::{AirbyteConnector, Config, Stream};
use dossier_store::SqlStore;
use dossier_sync::{Config as SyncConfig, Engine, NoProgress};
use futures::StreamExt as _;
use serde_json::json;

const STATE_EVERY: u64 = 1000;
const BATCH: usize = 2000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn iso(i: u64) -> String {
    chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string()
}

/// The recorded stream, and the source script that replays it.
fn record(dir: &Path, n: u64) -> std::path::PathBuf {
    let schema = json!({
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": "string"},
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "occupation": {"type": "string"},
            "updated_at": {"type": "string", "format": "date-time"},
            "address": {"type": "object", "properties": {
                "city": {"type": "string"}, "country_code": {"type": "string"},
                "postal_code": {"type": "string"}
            }}
        }
    });
    let spec = json!({"type": "SPEC", "spec": {"connectionSpecification": {"type": "object"}}});
    let catalog = json!({"type": "CATALOG", "catalog": {"streams": [{
        "name": "users", "json_schema": schema,
        "supported_sync_modes": ["full_refresh", "incremental"],
        "source_defined_cursor": true, "default_cursor_field": ["updated_at"],
        "source_defined_primary_key": [["id"]]
    }]}});
    std::fs::write(dir.join("spec.jsonl"), format!("{spec}\n")).unwrap();
    std::fs::write(dir.join("catalog.jsonl"), format!("{catalog}\n")).unwrap();
    let mut w = BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(dir.join("read.jsonl")).unwrap(),
    );
    let cities = ["Lyon", "Paris", "Berlin", "Osaka", "Lima", "Quito", "Perth"];
    for i in 1..=n {
        let data = json!({
            "id": i,
            "email": format!("user{i}@example.com"),
            "name": format!("User Number {i}"),
            "age": 18 + i % 60,
            "occupation": "Software Engineer",
            "updated_at": iso(i),
            "address": {"city": cities[(i % 7) as usize], "country_code": "FR", "postal_code": format!("{:05}", i % 100_000)}
        });
        writeln!(
            w,
            "{}",
            json!({"type": "RECORD", "record": {"stream": "users", "data": data, "emitted_at": 1_700_000_000_000u64 + i}})
        )
        .unwrap();
        if i % STATE_EVERY == 0 || i == n {
            writeln!(
                w,
                "{}",
                json!({"type": "STATE", "state": {"type": "STREAM", "stream": {
                    "stream_descriptor": {"name": "users"},
                    "stream_state": {"updated_at": iso(i)}
                }, "sourceStats": {"recordCount": STATE_EVERY}}})
            )
            .unwrap();
        }
    }
    w.flush().unwrap();
    let script = dir.join("replay.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  spec) exec cat {d}/spec.jsonl ;;\n  discover) exec cat {d}/catalog.jsonl ;;\n  check) echo '{{\"type\":\"CONNECTION_STATUS\",\"connectionStatus\":{{\"status\":\"SUCCEEDED\"}}}}' ;;\n  read) exec cat {d}/read.jsonl ;;\nesac\n",
            d = dir.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn pipe_floor(dir: &Path) -> (f64, u64) {
    let start = Instant::now();
    let mut child = std::process::Command::new("cat")
        .arg(dir.join("read.jsonl"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut r = std::io::BufReader::with_capacity(256 * 1024, child.stdout.take().unwrap());
    let mut lines = 0;
    let mut buf = Vec::new();
    while r.read_until(b'\n', &mut buf).unwrap() > 0 {
        lines += 1;
        buf.clear();
    }
    child.wait().unwrap();
    (start.elapsed().as_secs_f64(), lines)
}

async fn adapter_alone(script: &Path) -> (f64, u64) {
    let c = Arc::new(
        AirbyteConnector::connect(Config::new(&[script.to_str().unwrap()], json!({})))
            .await
            .unwrap(),
    );
    // The catalog is read once per connection; the read alone is timed.
    c.discover().await.unwrap();
    let start = Instant::now();
    let mut stream = c.read(ReadRequest {
        name: "users".into(),
        stream: Stream::default(),
        state: None,
        batch_size: BATCH,
    });
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch.unwrap().rows.len() as u64;
    }
    (start.elapsed().as_secs_f64(), rows)
}

async fn full_sync(dir: &Path, script: &Path) -> (f64, u64) {
    let text = format!(
        r#"
[store]
url = "sqlite://unused.db"

[[sources]]
name = "replay"
connector = "airbyte"
batch_size = {BATCH}
config = {{ command = ["{}"] }}

[[sources.streams]]
name = "users"
read = {{}}

[sources.streams.mapping]
target = "contact"
id = "id"
identities = {{ email = "email" }}
profile = {{ city = "address.city" }}
data = {{ name = "name", age = "age", occupation = "occupation" }}
updated_at = "updated_at"
"#,
        script.display()
    );
    let mut registry = Registry::new();
    registry.register::<AirbyteConnector>();
    let mut loaded =
        SyncConfig::parse(&text, "dossier.toml", dir.to_path_buf(), &registry).unwrap();
    loaded.config.store.url = format!("sqlite://{}", dir.join("dossier.db").display());
    let store = SqlStore::open(&loaded.config.store.url).await.unwrap();
    let engine = Engine::new(store, registry, loaded).await.unwrap();
    let start = Instant::now();
    let summary = engine
        .sync("replay", None, "bench", &NoProgress)
        .await
        .unwrap();
    (start.elapsed().as_secs_f64(), summary.streams["users"].read)
}

fn faker(command: &str, users: u64) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        json!({"count": users, "seed": 1, "records_per_slice": 1000, "parallelism": 1}).to_string(),
    )
    .unwrap();
    let catalog = dir.path().join("catalog.json");
    std::fs::write(
        &catalog,
        json!({"streams": [{"stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
            "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}]})
        .to_string(),
    )
    .unwrap();
    let start = Instant::now();
    let out = std::process::Command::new(command)
        .args(["read", "--config"])
        .arg(&cfg)
        .arg("--catalog")
        .arg(&catalog)
        .output()
        .unwrap();
    assert!(out.status.success(), "{command} read failed");
    let records = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| {
            l.starts_with(b"{\"type\": \"RECORD\"") || l.starts_with(b"{\"type\":\"RECORD\"")
        })
        .count() as u64;
    (start.elapsed().as_secs_f64(), records)
}

fn main() {
    let n = env_u64("DOSSIER_AIRBYTE_BENCH_RECORDS", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let script = record(dir.path(), n);
    let bytes = std::fs::metadata(dir.path().join("read.jsonl"))
        .unwrap()
        .len();
    println!(
        "recorded {n} records ({:.0} MiB, {:.0} bytes a line) in {:.1} s",
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / n as f64,
        t.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let (floor, lines) = pipe_floor(dir.path());
    println!(
        "pipe floor (cat | count lines): {floor:.2} s, {:.0} lines/s",
        lines as f64 / floor
    );
    let (alone, rows) = rt.block_on(adapter_alone(&script));
    assert_eq!(rows, n);
    println!(
        "adapter alone (parse, rows, batches): {alone:.2} s, {:.0} records/s, {:.2} µs a record",
        n as f64 / alone,
        alone * 1e6 / n as f64
    );
    let (sync, read) = rt.block_on(full_sync(dir.path(), &script));
    assert_eq!(read, n);
    println!(
        "full sync into SQLite: {sync:.1} s, {:.0} rows/s; the adapter is {:.1}% of it",
        n as f64 / sync,
        100.0 * alone / sync
    );
    match std::env::var("DOSSIER_BENCH_FAKER") {
        Ok(command) => {
            let users = env_u64("DOSSIER_BENCH_FAKER_USERS", 20_000);
            let (secs, records) = faker(&command, users);
            assert_eq!(records, users);
            println!(
                "source-faker alone ({users} users, parallelism 1): {secs:.1} s, {:.0} records/s",
                records as f64 / secs
            );
        }
        Err(_) => println!("source-faker: not measured (set DOSSIER_BENCH_FAKER to its command)"),
    }
}
