//! Test servers, fresh databases and generated documents for the MongoDB connector's tests.
//!
//! The server is `DOSSIER_TEST_MONGODB_URI` (default NX-27017 at
//! `mongodb://127.0.0.1:27217/?directConnection=true`, which `./scripts/test.sh` installs and
//! starts); a test whose server is missing fails. When `MONGODB_URI` is set (a real MongoDB),
//! the tests that take a [`Server`] list run against it too. Each test uses a database of its
//! own, dropped when the test ends (even when it fails).

#![allow(dead_code)] // each test binary uses its own part

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dossier_connector::{Batch, StreamState, Value};
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

pub const DEFAULT_URI: &str = "mongodb://127.0.0.1:27217/?directConnection=true";

/// The servers the tests run against: the test server, and a real MongoDB when
/// `MONGODB_URI` names one.
pub fn servers() -> Vec<String> {
    let mut out = vec![std::env::var("DOSSIER_TEST_MONGODB_URI").unwrap_or(DEFAULT_URI.into())];
    if let Ok(real) = std::env::var("MONGODB_URI")
        && !real.trim().is_empty()
        && !out.contains(&real)
    {
        out.push(real);
    }
    out
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub async fn client(uri: &str) -> Client {
    let mut options = ClientOptions::parse(uri)
        .await
        .unwrap_or_else(|e| panic!("invalid test server URI {uri}: {e}"));
    options.server_selection_timeout = Some(Duration::from_secs(5));
    Client::with_options(options).unwrap()
}

/// A database of its own for one test, dropped at the end.
pub struct TestDb {
    pub uri: String,
    pub name: String,
    pub db: Database,
}

impl TestDb {
    pub async fn new(uri: &str) -> TestDb {
        // Only [A-Za-z0-9_]: NX-27017 refuses other names.
        let name = format!(
            "dossier_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let client = client(uri).await;
        client
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "MongoDB is not reachable at {uri} (run ./scripts/test.sh, which starts \
                     NX-27017, or set DOSSIER_TEST_MONGODB_URI): {e}"
                )
            });
        let db = client.database(&name);
        TestDb {
            uri: uri.to_string(),
            name,
            db,
        }
    }

    pub async fn insert(&self, collection: &str, docs: Vec<Document>) {
        for chunk in docs.chunks(1000) {
            self.db
                .collection::<Document>(collection)
                .insert_many(chunk.to_vec())
                .await
                .unwrap_or_else(|e| panic!("inserting into {collection}: {e}"));
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (uri, name) = (self.uri.clone(), self.name.clone());
        // A runtime of its own: the test's may be shutting down.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async { client(&uri).await.database(&name).drop().await })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// An NX-27017 of the test's own, on a free port, to kill and restart.
pub struct OwnServer {
    pub uri: String,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnServer {
    pub fn start() -> OwnServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = OwnServer {
            uri: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        s.restart();
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Starts the server (again, on the same port and data).
    pub fn restart(&mut self) {
        let python = std::env::var("DOSSIER_TEST_NX_PYTHON").map_or_else(
            |_| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../.cache/nx-27017/venv/bin/python")
            },
            PathBuf::from,
        );
        assert!(
            python.exists(),
            "no NX-27017 Python at {} (run ./scripts/test.sh, or set DOSSIER_TEST_NX_PYTHON)",
            python.display()
        );
        let launcher = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/nx27017.py");
        let dir = self.dir.path();
        let child = Command::new(&python)
            .arg(&launcher)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--pid-file")
            .arg(dir.join("server.pid"))
            .arg("--log-file")
            .arg(dir.join("server.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "NX-27017 did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server by its PID (SIGKILL), without warning.
    pub fn kill(&mut self) {
        let pid = self.pid();
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -9 {pid} failed");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A deterministic pseudo-random generator (splitmix64): the same seed, the same documents.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Frances", "Radia",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson",
];
const CITIES: &[(&str, &str)] = &[
    ("Paris", "FR"),
    ("Lyon", "FR"),
    ("Berlin", "DE"),
    ("Boston", "US"),
    ("Leeds", "GB"),
];
const TIERS: &[&str] = &["Bronze", "Silver", "Gold", "Platinum"];
const BENEFITS: &[&str] = &[
    "concierge services",
    "airline lounge access",
    "sports tickets",
];

/// A point in time `minutes` after 2024-01-01 00:00 UTC.
pub fn at(minutes: i64) -> DateTime {
    DateTime::from_millis(1_704_067_200_000 + minutes * 60_000)
}

/// A generated order: its customer, total (a double with cents, or a whole Int32), status.
#[derive(Debug, Clone)]
pub struct Order {
    pub id: ObjectId,
    pub customer: usize,
    pub total: f64,
    pub status: &'static str,
}

/// Customers shaped like MongoDB's `sample_analytics.customers` (username, name, a nested
/// address, birthdate, email, sometimes `active`, account numbers, and `tier_and_details`
/// keyed by random ids), each with an `updated_at`, and their orders.
pub struct Shop {
    pub customers: Vec<Document>,
    pub customer_ids: Vec<ObjectId>,
    pub emails: Vec<String>,
    pub orders: Vec<Order>,
}

impl Shop {
    pub fn generate(customers: usize, orders_per_customer: u64, seed: u64) -> Shop {
        let mut rng = Rng::new(seed);
        let mut shop = Shop {
            customers: vec![],
            customer_ids: vec![],
            emails: vec![],
            orders: vec![],
        };
        for i in 0..customers {
            let id = ObjectId::new();
            let (first, last) = (rng.pick(FIRST), rng.pick(LAST));
            let (city, country) = CITIES[rng.below(CITIES.len() as u64) as usize];
            let email = format!(
                "{}.{}{i}@example.com",
                first.to_lowercase(),
                last.to_lowercase()
            );
            let mut tiers = Document::new();
            for _ in 0..=rng.below(3) {
                let key = format!(
                    "{:032x}",
                    u128::from(rng.next()) << 64 | u128::from(rng.next())
                );
                tiers.insert(
                    key.clone(),
                    doc! {
                        "tier": rng.pick(TIERS), "id": key, "active": rng.below(4) > 0,
                        "benefits": [rng.pick(BENEFITS)],
                    },
                );
            }
            let mut d = doc! {
                "_id": id,
                "username": format!("{}{}", first.to_lowercase(), rng.below(1000)),
                "name": format!("{first} {last}"),
                "address": {
                    "street": format!("{} Rue de la Paix", 1 + rng.below(200)),
                    "city": city, "zip": format!("{:05}", rng.below(99999)), "country": country,
                },
                "birthdate": at(-(20 * 365 * 1440) - rng.below(40 * 365 * 1440) as i64),
                "email": email.clone(),
                "accounts": (0..=rng.below(3)).map(|_| (100_000 + rng.below(900_000)) as i32).collect::<Vec<_>>(),
                "tier_and_details": tiers,
                "updated_at": at(rng.below(10_000) as i64),
            };
            if i % 7 == 0 {
                d.insert("active", i % 2 == 0);
            }
            shop.customers.push(d);
            shop.customer_ids.push(id);
            shop.emails.push(email);
            for _ in 0..rng.below(orders_per_customer + 1) {
                let cents = 500 + rng.below(30_000);
                let total = if cents.is_multiple_of(5) {
                    (cents / 100) as f64
                } else {
                    cents as f64 / 100.0
                };
                shop.orders.push(Order {
                    id: ObjectId::new(),
                    customer: i,
                    total,
                    status: if rng.below(5) == 0 {
                        "refunded"
                    } else {
                        "paid"
                    },
                });
            }
        }
        shop
    }

    /// The orders as documents of an `orders` collection.
    pub fn order_docs(&self) -> Vec<Document> {
        self.orders
            .iter()
            .enumerate()
            .map(|(n, o)| order_doc(o, self.customer_ids[o.customer], n as i64))
            .collect()
    }

    /// Per customer email: (orders, sum of totals).
    pub fn expected(&self) -> std::collections::HashMap<String, (u64, f64)> {
        let mut out: std::collections::HashMap<String, (u64, f64)> =
            self.emails.iter().map(|e| (e.clone(), (0, 0.0))).collect();
        for o in &self.orders {
            let e = out.get_mut(&self.emails[o.customer]).unwrap();
            e.0 += 1;
            e.1 += o.total;
        }
        out
    }
}

/// An order document; whole totals are stored as Int32, others as doubles.
pub fn order_doc(o: &Order, customer: ObjectId, n: i64) -> Document {
    let total = if o.total.fract() == 0.0 {
        mongodb::bson::Bson::Int32(o.total as i32)
    } else {
        mongodb::bson::Bson::Double(o.total)
    };
    doc! {
        "_id": o.id, "customer_id": customer, "total": total, "currency": "EUR",
        "status": o.status, "item_count": 1 + (n % 4) as i32,
        "created_at": at(n), "updated_at": at(10_000 + n),
    }
}

/// The values of `field` in every row, in read order.
pub fn values(batches: &[Batch], field: &str) -> Vec<Value> {
    batches
        .iter()
        .flat_map(|b| {
            let i = b
                .fields
                .iter()
                .position(|f| f == field)
                .unwrap_or_else(|| panic!("no field {field} in {:?}", b.fields));
            b.rows.iter().map(move |r| r[i].clone())
        })
        .collect()
}

/// The text values of `field` (ids), in read order.
pub fn texts(batches: &[Batch], field: &str) -> Vec<String> {
    values(batches, field)
        .into_iter()
        .map(|v| match v {
            Value::Text(s) => s,
            other => panic!("{field} is {other:?}"),
        })
        .collect()
}

/// The state as the framework stores and reloads it.
pub fn stored(batch: &Batch) -> StreamState {
    serde_json::from_str(&serde_json::to_string(&batch.state).unwrap()).unwrap()
}
