//! The plugin boundary's cost: 1M records read through a plugin (the C ABI, MessagePack,
//! `spawn_blocking` per batch) versus the same connector compiled in, both as a bare read
//! and as a full sync into the embedded store; and MessagePack versus JSON for the batches.
//!
//! Run: `cargo bench --bench plugin_boundary` (DOSSIER_PLUGIN_BENCH_RECORDS=1000000 by
//! default). It builds the plugin libraries in release first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dossier_cli::builtin_registry;
use dossier_connector::{BatchStream, Registry, StreamConfig};
use dossier_plugin_host::testing::{generator_config, plugin_library};
use dossier_plugin_host::{PluginConnector, load};
use dossier_plugin_sdk::wire;
use dossier_store::SqlStore;
use dossier_sync::{Config, Engine, NoProgress};
use futures::StreamExt as _;

const BATCH: usize = 2000;

fn compiled_in() -> Registry {
    let mut r = builtin_registry();
    r.register::<dossier_test_generator::GeneratorConnector>();
    r
}

fn through_plugin() -> Registry {
    let r = builtin_registry();
    let plugin =
        load(&plugin_library("dossier_test_generator_plugin"), None).expect("plugin loads");
    r.register_factory(
        "generator",
        Arc::new(PluginConnector::new(Arc::new(plugin))),
    )
    .expect("registers");
    r
}

/// The generator's customers, read through `registry`'s `generator` connector.
async fn generated(registry: &Registry, records: u64) -> BatchStream {
    let source = registry
        .get("generator")
        .unwrap()
        .connect(serde_json::json!({ "customers": records }))
        .await
        .unwrap();
    let stream = StreamConfig {
        name: "customers".into(),
        settings: serde_json::json!({ "entity": "customers" }),
    };
    source.read(&stream, None, BATCH).unwrap()
}

/// Reads every record of the stream without storing them; returns (time, records).
async fn drain(registry: &Registry, records: u64) -> (Duration, u64) {
    let start = Instant::now();
    let mut batches = generated(registry, records).await;
    let mut n = 0;
    while let Some(b) = batches.next().await {
        n += b.unwrap().rows.len() as u64;
    }
    (start.elapsed(), n)
}

/// A full sync into a fresh embedded store; returns (time, records).
async fn sync(registry: Registry, records: u64) -> (Duration, u64) {
    let dir = tempfile::tempdir().unwrap();
    let loaded = Config::parse(
        &generator_config(records, BATCH, None),
        "bench",
        dir.path().to_path_buf(),
        &registry,
    )
    .unwrap();
    let store = SqlStore::open(&loaded.config.store.url).await.unwrap();
    let engine = Engine::new(store, registry, loaded).await.unwrap();
    let start = Instant::now();
    let s = engine
        .sync("gen", None, "bench", &NoProgress)
        .await
        .unwrap();
    (start.elapsed(), s.rows_read())
}

async fn encodings(records: u64) {
    let mut batches = generated(&compiled_in(), records).await;
    let (mut mp, mut js) = ((Duration::ZERO, 0usize), (Duration::ZERO, 0usize));
    while let Some(b) = batches.next().await {
        let b = b.unwrap();
        let t = Instant::now();
        let bytes = wire::encode_batch(&b).unwrap();
        let back = wire::decode_batch(&bytes, Some(&b.fields)).unwrap();
        mp.0 += t.elapsed();
        mp.1 += bytes.len();
        assert_eq!(back.rows.len(), b.rows.len());
        let t = Instant::now();
        let bytes = wire::encode_batch_json(&b).unwrap();
        let back = wire::decode_batch_json(&bytes).unwrap();
        js.0 += t.elapsed();
        js.1 += bytes.len();
        assert_eq!(back.rows, b.rows);
    }
    println!(
        "| MessagePack (rmp-serde, named) | {:.2} s | {:.0} MiB | {:.0} ns |",
        mp.0.as_secs_f64(),
        mp.1 as f64 / 1048576.0,
        mp.0.as_nanos() as f64 / records as f64
    );
    println!(
        "| JSON (serde_json) | {:.2} s | {:.0} MiB | {:.0} ns |",
        js.0.as_secs_f64(),
        js.1 as f64 / 1048576.0,
        js.0.as_nanos() as f64 / records as f64
    );
}

fn main() {
    let records: u64 = std::env::var("DOSSIER_PLUGIN_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // Build the plugin first, outside the timings.
    let _ = plugin_library("dossier_test_generator_plugin");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let plugin = through_plugin();
        let direct = compiled_in();
        println!("records: {records}, batch size {BATCH}");
        println!("\nencoding one batch at a time, encode + decode, all batches:");
        println!("| encoding | time | bytes | per record |\n| --- | --- | --- | --- |");
        encodings(records).await;

        println!("\nbare read (no store), best of 3:");
        let best = |v: Vec<(Duration, u64)>| v.into_iter().min().unwrap();
        let mut d = vec![];
        let mut p = vec![];
        for _ in 0..3 {
            d.push(drain(&direct, records).await);
            p.push(drain(&plugin, records).await);
        }
        let (d, dn) = best(d);
        let (p, pn) = best(p);
        assert_eq!((dn, pn), (records, records));
        println!("| compiled in | {:.2} s | {:.0} records/s |", d.as_secs_f64(), records as f64 / d.as_secs_f64());
        println!("| plugin | {:.2} s | {:.0} records/s |", p.as_secs_f64(), records as f64 / p.as_secs_f64());

        println!("\nfull sync into SQLite (mapping, identities, one transaction per batch):");
        let (sd, n1) = sync(direct, records).await;
        let (sp, n2) = sync(plugin, records).await;
        assert_eq!((n1, n2), (records, records));
        println!("| compiled in | {:.1} s | {:.0} records/s |", sd.as_secs_f64(), records as f64 / sd.as_secs_f64());
        println!("| plugin | {:.1} s | {:.0} records/s |", sp.as_secs_f64(), records as f64 / sp.as_secs_f64());

        let boundary = p.saturating_sub(d);
        let share = boundary.as_secs_f64() / sp.as_secs_f64() * 100.0;
        let sync_diff = (sp.as_secs_f64() - sd.as_secs_f64()) / sp.as_secs_f64() * 100.0;
        println!(
            "\nboundary cost (bare plugin read - bare compiled-in read): {:.2} s = {share:.1}% of the plugin sync's time",
            boundary.as_secs_f64()
        );
        println!("sync time difference (plugin - compiled in): {sync_diff:.1}% of the plugin sync's time");
        println!(
            "target: boundary < 15% of sync time: {}",
            if share < 15.0 { "met" } else { "NOT MET" }
        );
    });
}
