//! Demo-size sync benchmark: throughput (rows/s) and peak memory of `dossier sync` on the
//! sample shop, full then incremental after 1% of the rows change.
//!
//! Run: `cargo bench --bench demo_sync` (DOSSIER_BENCH_CUSTOMERS=10000 by default: 10k
//! customers, 50k orders, 30k conversations).

use std::process::{Command, Stdio};

mod common;
use common::{dossier, timed_sync};

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would too: only run when benching.
    if !common::benching() {
        return;
    }
    let customers: u32 = std::env::var("DOSSIER_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let st = dossier()
        .args([
            "demo",
            "--no-serve",
            "--dir",
            d.to_str().unwrap(),
            "--customers",
            &customers.to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .expect("demo runs");
    assert!(st.success());
    for f in ["dossier.db", "dossier.db-wal", "dossier.db-shm"] {
        let _ = std::fs::remove_file(d.join(f));
    }
    let config = d.join("dossier.toml");
    let full = timed_sync(&config, "shop", "warn").expect("full sync");
    println!("full sync:        {}", full.summary());

    let st = Command::new("sqlite3")
        .arg(d.join("shop.db"))
        .arg(
            "UPDATE customers SET updated_at = '2031-01-01 00:00:00' WHERE id % 100 = 0; \
             UPDATE orders SET total = total + 1, updated_at = '2031-01-01 00:00:00' WHERE id % 100 = 0; \
             UPDATE conversations SET updated_at = '2031-01-01 00:00:00' WHERE id % 100 = 0;",
        )
        .status();
    if !matches!(st, Ok(s) if s.success()) {
        println!(
            "incremental sync: skipped (the sqlite3 command line tool is needed to change 1% of rows)"
        );
        return;
    }
    let inc = timed_sync(&config, "shop", "warn").expect("incremental sync");
    println!(
        "incremental sync: {}, {:.1}% of the full sync's time",
        inc.summary(),
        100.0 * inc.secs / full.secs
    );
}
