//! MongoDB source (issue #4): sync throughput from the test server for 100,000 documents.
//!
//! Generates a shop in a fresh database (`dossier_bench_<pid>`, dropped at the end, also when
//! a step fails): customers and orders shaped like `examples/mongodb`, 1 customer per 4 orders
//! (seeded, deterministic). Then, in the same run:
//!
//! 1. the server's limit: every document of both collections read with the driver alone, in
//!    the connector's order (`updated_at`, `_id`) and batch size, without converting anything;
//! 2. `dossier sync shop` (examples/mongodb/dossier.toml) as a child process into a fresh
//!    embedded store: documents/s, peak RSS, and from the connector's `read finished` log
//!    lines the time spent waiting on the server versus inside the connector;
//! 3. the incremental sync after 1% of the orders changed.
//!
//! Run: `cargo bench --bench mongo_sync` (with the NX-27017 server `./scripts/test.sh`
//! starts). Settings: `DOSSIER_MONGO_BENCH_DOCUMENTS` (default 100000, customers and orders
//! together); `DOSSIER_BENCH_MONGODB_URI` (default
//! `mongodb://127.0.0.1:27217/?directConnection=true`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, ensure};

mod common;
use futures::TryStreamExt as _;
use mongodb::bson::{Bson, DateTime, Document, RawDocumentBuf, doc, oid::ObjectId};
use mongodb::{Client, Database};

const BATCH: u32 = 2000;

/// The bench database, dropped when this goes out of scope.
struct BenchDb {
    uri: String,
    db: Database,
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        let (uri, name) = (self.uri.clone(), self.db.name().to_string());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                Client::with_uri_str(&uri)
                    .await?
                    .database(&name)
                    .drop()
                    .await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => println!("dropped database {}", self.db.name()),
            other => eprintln!("could not drop database {}: {other:?}", self.db.name()),
        }
    }
}

/// splitmix64: the same scale always gives the same documents.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

fn at(minutes: u64) -> DateTime {
    DateTime::from_millis(1_704_067_200_000 + minutes as i64 * 60_000)
}

async fn generate(db: &Database, documents: u64) -> anyhow::Result<(u64, u64)> {
    let customers = documents / 5;
    let orders = documents - customers;
    let mut rng = Rng(42);
    let first = [
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken",
    ];
    let cities = [
        ("Paris", "FR"),
        ("Berlin", "DE"),
        ("Boston", "US"),
        ("Leeds", "GB"),
    ];
    let ids: Vec<ObjectId> = (0..customers).map(|_| ObjectId::new()).collect();
    let mut batch = vec![];
    for (i, id) in ids.iter().enumerate() {
        let name = first[rng.below(first.len() as u64) as usize];
        let (city, country) = cities[rng.below(cities.len() as u64) as usize];
        batch.push(doc! {
            "_id": *id, "username": format!("{}{i}", name.to_lowercase()),
            "name": format!("{name} Example"), "email": format!("{}{i}@example.com", name.to_lowercase()),
            "address": { "street": format!("{} Main Street", rng.below(300)), "city": city, "country": country },
            "birthdate": at(rng.below(10_000_000)), "active": rng.below(4) > 0,
            "accounts": [rng.below(1_000_000) as i32],
            "updated_at": at(rng.below(500_000)),
        });
        if batch.len() == 1000 {
            db.collection("customers")
                .insert_many(std::mem::take(&mut batch))
                .await?;
        }
    }
    if !batch.is_empty() {
        db.collection("customers")
            .insert_many(std::mem::take(&mut batch))
            .await?;
    }
    for n in 0..orders {
        let cents = 500 + rng.below(30_000);
        let created = rng.below(500_000);
        batch.push(doc! {
            "_id": ObjectId::new(), "customer_id": ids[rng.below(customers) as usize],
            "total": Bson::Double(cents as f64 / 100.0), "currency": "EUR",
            "status": if rng.below(5) == 0 { "refunded" } else { "paid" },
            "item_count": 1 + (n % 4) as i32,
            "created_at": at(created), "updated_at": at(created + rng.below(5000)),
        });
        if batch.len() == 1000 {
            db.collection("orders")
                .insert_many(std::mem::take(&mut batch))
                .await?;
        }
    }
    if !batch.is_empty() {
        db.collection("orders").insert_many(batch).await?;
    }
    for c in ["customers", "orders"] {
        // MongoDB would take (updated_at, _id); NX-27017 refuses `_id` in a compound index.
        for keys in [doc! { "updated_at": 1, "_id": 1 }, doc! { "updated_at": 1 }] {
            let index = mongodb::IndexModel::builder().keys(keys.clone()).build();
            match db.collection::<Document>(c).create_index(index).await {
                Ok(_) => {
                    println!("  index {keys} on {c}");
                    break;
                }
                Err(_) => println!("  the server refused the index {keys} on {c}"),
            }
        }
    }
    Ok((customers, orders))
}

/// The server alone: every document read with the driver in the connector's order.
async fn limit(db: &Database) -> anyhow::Result<(f64, u64)> {
    let start = Instant::now();
    let mut n = 0;
    for c in ["customers", "orders"] {
        let mut cursor = db
            .collection::<RawDocumentBuf>(c)
            .find(doc! { "updated_at": { "$nin": [Bson::Null] } })
            .sort(doc! { "updated_at": 1, "_id": 1 })
            .batch_size(BATCH)
            .await?;
        while cursor.try_next().await?.is_some() {
            n += 1;
        }
    }
    Ok((start.elapsed().as_secs_f64(), n))
}

/// What one `dossier sync` did: seconds, documents read, peak RSS (MiB), and per stream the
/// connector's (server wait ms, connector ms, sampling ms).
struct Sync {
    secs: f64,
    read: u64,
    rss_mib: f64,
    streams: HashMap<String, (u64, u64, u64)>,
}

/// `s` without terminal colour codes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn timed_sync(config: &Path) -> anyhow::Result<Sync> {
    let run = common::timed_sync(config, "shop", "warn,dossier_connector_mongodb=info")?;
    let stderr = strip_ansi(&run.stderr);
    // `... read finished stream=orders collection=orders documents=80000 ... server_wait_ms=1 connector_ms=2`
    // and `... sampled stream=orders ... elapsed_ms=3`
    let mut streams: HashMap<String, (u64, u64, u64)> = HashMap::new();
    for line in stderr
        .lines()
        .filter(|l| l.contains("read finished") || l.contains(" sampled "))
    {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .map(|v| v.trim_matches('"').to_string())
        };
        let num = |k: &str| field(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        if let Some(s) = field("stream") {
            let e = streams.entry(s).or_default();
            if line.contains("read finished") {
                e.0 += num("server_wait_ms");
                e.1 += num("connector_ms");
            } else {
                e.2 += num("elapsed_ms");
            }
        }
    }
    Ok(Sync {
        secs: run.secs,
        read: run.rows,
        rss_mib: run.rss_mib,
        streams,
    })
}

fn report(label: &str, s: &Sync) {
    println!(
        "{label}: {} documents in {:.2}s = {:.0} documents/s, peak RSS {:.1} MiB",
        s.read,
        s.secs,
        s.read as f64 / s.secs,
        s.rss_mib
    );
    let (mut wait, mut conn, mut sampling) = (0, 0, 0);
    let mut streams: Vec<_> = s.streams.iter().collect();
    streams.sort();
    for (stream, (w, c, sm)) in streams {
        println!(
            "  {stream}: sampling {sm} ms; reading: waiting on the server {w} ms, inside the connector {c} ms"
        );
        wait += w;
        conn += c;
        sampling += sm;
    }
    println!(
        "  total: sampling {sampling} ms, waiting on the server {wait} ms, inside the connector \
         {conn} ms ({:.1}% of the read), the rest of the sync (process start, mapping, store) \
         {:.0} ms",
        100.0 * conn as f64 / (wait + conn).max(1) as f64,
        s.secs * 1000.0 - (wait + conn + sampling) as f64
    );
}

async fn run(uri: &str, documents: u64) -> anyhow::Result<()> {
    let client = Client::with_uri_str(uri).await?;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .with_context(|| format!("no MongoDB server at {uri} (run ./scripts/test.sh first)"))?;
    let bench = BenchDb {
        uri: uri.to_string(),
        db: client.database(&format!("dossier_bench_{}", std::process::id())),
    };
    bench.db.drop().await?;
    println!(
        "mongo_sync: {documents} documents in database {}",
        bench.db.name()
    );
    let t = Instant::now();
    let (customers, orders) = generate(&bench.db, documents).await?;
    println!(
        "generated {customers} customers and {orders} orders in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let (limit_s, limit_n) = limit(&bench.db).await?;
    ensure!(limit_n == documents, "the limit read {limit_n} documents");
    println!(
        "limit (driver alone, no conversion): {limit_n} documents in {limit_s:.2}s = {:.0} documents/s",
        limit_n as f64 / limit_s
    );

    let dir = tempfile::tempdir()?;
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mongodb/dossier.toml"),
    )?;
    let config = dir.path().join("dossier.toml");
    std::fs::write(
        &config,
        example
            .replace("${MONGODB_URI}", uri)
            .replace("${MONGODB_DB}", bench.db.name()),
    )?;
    let full = timed_sync(&config)?;
    ensure!(
        full.read == documents,
        "the full sync read {} documents",
        full.read
    );
    report("full sync", &full);

    println!("changing 1% of the orders ...");
    let orders_coll = bench.db.collection::<Document>("orders");
    let ids: Vec<Document> = orders_coll
        .find(doc! {})
        .projection(doc! { "_id": 1 })
        .limit((orders / 100) as i64)
        .await?
        .try_collect()
        .await?;
    for d in &ids {
        orders_coll
            .update_one(
                doc! { "_id": d.get_object_id("_id")? },
                doc! { "$set": { "updated_at": DateTime::now() }, "$inc": { "total": 1.0 } },
            )
            .await?;
    }
    let inc = timed_sync(&config)?;
    report("incremental sync", &inc);
    println!(
        "incremental / full (time): {:.1}%",
        100.0 * inc.secs / full.secs
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` would too: only run when benching.
    if !common::benching() {
        return Ok(());
    }
    let documents = common::env_count("DOSSIER_MONGO_BENCH_DOCUMENTS", 100_000);
    let uri = std::env::var("DOSSIER_BENCH_MONGODB_URI")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27217/?directConnection=true".to_string());
    tokio::runtime::Runtime::new()?.block_on(run(&uri, documents))
}
