//! The MongoDB connector against a real wire-protocol server (NX-27017 from
//! `./scripts/test.sh`, and a real MongoDB when `MONGODB_URI` is set), each test in a
//! database of its own.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use common::{OwnServer, Shop, TestDb, at, order_doc, servers, stored, texts, values};
use dossier_connector::{
    Batch, Connector, ConnectorError, ErrorOrigin, ReadRequest, Registry, StreamConfig,
    StreamState, Value, read_all,
};
use dossier_connector_mongodb::{Config, MongoConnector, Stream};
use dossier_store::SqlStore;
use dossier_sync::{Config as SyncConfig, Engine, NoProgress, RunSummary};
use futures::StreamExt as _;
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use serde_json::json;
use sqlx::sqlite::SqlitePoolOptions;

/// The registry the engine syncs the example with: this connector alone.
fn registry() -> dossier_connector::Registry {
    let mut registry = dossier_connector::Registry::new();
    registry.register::<dossier_connector_mongodb::MongoConnector>();
    registry
}

async fn connect(db: &TestDb) -> Arc<MongoConnector> {
    Arc::new(
        MongoConnector::connect(Config::new(&db.uri, &db.name))
            .await
            .unwrap(),
    )
}

async fn read(
    c: &Arc<MongoConnector>,
    stream: Stream,
    state: Option<StreamState>,
    batch_size: usize,
) -> Result<Vec<Batch>, ConnectorError> {
    read_all(
        c,
        ReadRequest {
            name: "s".into(),
            stream,
            state,
            batch_size,
        },
    )
    .await
}

/// A store in a temp dir and an engine over `config` (TOML with `{uri}` and `{db}`).
async fn engine(db: &TestDb, toml: &str, dir: &Path) -> Arc<Engine> {
    let text = toml
        .replace("${MONGODB_URI}", &db.uri)
        .replace("${MONGODB_DB}", &db.name);
    let mut loaded = SyncConfig::parse(&text, "dossier.toml", dir.to_path_buf(), &registry())
        .unwrap_or_else(|e| panic!("{e}"));
    loaded.config.store.url = format!("sqlite://{}", dir.join("dossier.db").display());
    let store = SqlStore::open(&loaded.config.store.url).await.unwrap();
    Engine::new(store, registry(), loaded).await.unwrap()
}

async fn sync(engine: &Engine) -> RunSummary {
    let summary = engine
        .sync("shop", None, "test", &NoProgress)
        .await
        .unwrap();
    assert_eq!(summary.error, None);
    summary
}

/// Per contact email, aggregate name → number, as the store holds them.
async fn aggregates(dir: &Path) -> HashMap<String, HashMap<String, f64>> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!(
            "sqlite://{}?mode=ro",
            dir.join("dossier.db").display()
        ))
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<f64>)> = sqlx::query_as(
        "SELECT i.value, a.name, a.num FROM identities i
         JOIN contact_aggregates a ON a.contact_id = i.contact_id
         WHERE i.kind = 'email'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut out: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for (email, name, num) in rows {
        if let Some(n) = num {
            out.entry(email).or_default().insert(name, n);
        }
    }
    out
}

fn assert_aggregates(
    want: &HashMap<String, (u64, f64)>,
    got: &HashMap<String, HashMap<String, f64>>,
) {
    for (email, (count, sum)) in want {
        let agg = got.get(email).cloned().unwrap_or_default();
        let get = |n: &str| agg.get(n).copied();
        if *count == 0 {
            assert!(
                get("transactions").unwrap_or(0.0) == 0.0,
                "{email}: {agg:?}"
            );
            continue;
        }
        assert_eq!(
            get("transactions"),
            Some(*count as f64),
            "{email}: transactions"
        );
        let total = get("total_spent").unwrap_or(f64::NAN);
        assert!(
            (total - sum).abs() < 1e-6,
            "{email}: total_spent {total} != {sum}"
        );
        let avg = get("avg_basket").unwrap_or(f64::NAN);
        assert!(
            (avg - sum / *count as f64).abs() < 1e-6,
            "{email}: avg_basket {avg} != {}",
            sum / *count as f64
        );
    }
}

fn example() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mongodb/dossier.toml"),
    )
    .unwrap()
}

#[tokio::test]
async fn example_syncs_customers_and_orders_with_aggregates_then_incrementally() {
    for uri in servers() {
        let db = TestDb::new(&uri).await;
        let shop = Shop::generate(150, 4, 7);
        db.insert("customers", shop.customers.clone()).await;
        db.insert("orders", shop.order_docs()).await;
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&db, &example(), dir.path()).await;
        let problems = engine.check("shop").await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");

        let summary = sync(&engine).await;
        assert_eq!(summary.rows_read(), (150 + shop.orders.len()) as u64);
        assert_eq!(summary.rows_rejected(), 0);
        assert_aggregates(&shop.expected(), &aggregates(dir.path()).await);

        // Nested fields, dates and booleans land where the mapping says.
        let c = engine
            .store()
            .contact_by_email(engine.workspace(), &shop.emails[0])
            .await
            .unwrap()
            .expect("the first customer is a contact");
        let address = shop.customers[0].get_document("address").unwrap();
        assert_eq!(c.city.as_deref(), address.get_str("city").ok());
        assert_eq!(c.country.as_deref(), address.get_str("country").ok());

        // Incremental: two orders change total (and updated_at), one is new; only they are
        // read, and the aggregates follow.
        let orders = db.db.collection::<Document>("orders");
        let mut shop = shop;
        for i in [0, 1] {
            shop.orders[i].total += 10.0;
            orders
                .update_one(
                    doc! { "_id": shop.orders[i].id },
                    doc! { "$set": { "total": shop.orders[i].total, "updated_at": at(50_000 + i as i64) } },
                )
                .await
                .unwrap();
        }
        let new = common::Order {
            id: ObjectId::new(),
            customer: 3,
            total: 42.5,
            status: "paid",
        };
        let mut d = order_doc(&new, shop.customer_ids[3], 60_000);
        d.insert("updated_at", at(60_000));
        orders.insert_one(d).await.unwrap();
        shop.orders.push(new);
        let summary = sync(&engine).await;
        assert_eq!(summary.rows_read(), 3);
        assert_aggregates(&shop.expected(), &aggregates(dir.path()).await);
        // Nothing new: nothing read.
        assert_eq!(sync(&engine).await.rows_read(), 0);
    }
}

/// A schemaless collection: a mapping may name a field none of the sampled documents holds
/// (`loyalty_tier`, set on no customer yet). `check` notes it, and the sync keeps every
/// record with the field read as missing, instead of refusing the whole source.
#[tokio::test]
async fn a_mapped_field_absent_from_the_sample_reads_as_missing() {
    for uri in servers() {
        let db = TestDb::new(&uri).await;
        let shop = Shop::generate(20, 2, 11);
        db.insert("customers", shop.customers.clone()).await;
        db.insert("orders", shop.order_docs()).await;
        let dir = tempfile::tempdir().unwrap();
        let toml = example().replace(
            r#"data = { name = "name","#,
            r#"data = { loyalty = "loyalty_tier", name = "name","#,
        );
        assert!(
            toml.contains("loyalty_tier"),
            "the example's customers mapping moved"
        );
        let engine = engine(&db, &toml, dir.path()).await;
        let report = engine.check_report("shop").await.unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("loyalty_tier") && n.contains("read as missing")),
            "{:?}",
            report.notes
        );
        let summary = sync(&engine).await;
        assert_eq!(summary.rows_rejected(), 0);
        assert_eq!(summary.rows_read(), (20 + shop.orders.len()) as u64);
        let c = engine
            .store()
            .contact_by_email(engine.workspace(), &shop.emails[0])
            .await
            .unwrap()
            .expect("the first customer is a contact");
        let data = engine.store().contact_data(&[c.id]).await.unwrap();
        assert!(!data[&c.id].contains_key("loyalty"), "{:?}", data[&c.id]);
        assert!(data[&c.id].contains_key("name"), "{:?}", data[&c.id]);
    }
}

#[tokio::test]
async fn discovers_nested_fields_types_frequencies_and_cursors() {
    for uri in servers() {
        let db = TestDb::new(&uri).await;
        let shop = Shop::generate(40, 2, 11);
        db.insert("customers", shop.customers.clone()).await;
        db.insert("orders", shop.order_docs()).await;
        let c = connect(&db).await;
        let catalog = c.discover().await.unwrap();
        let names: Vec<&str> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["customers", "orders"]);
        let customers = &catalog.streams[0];
        let field = |n: &str| {
            customers
                .fields
                .iter()
                .find(|f| f.name == n)
                .unwrap_or_else(|| panic!("no {n} in {:?}", customers.fields))
        };
        assert_eq!(customers.fields[0].name, "_id");
        assert_eq!(field("_id").source_type, "objectId");
        assert_eq!(field("address").source_type, "object");
        assert_eq!(field("address.city").source_type, "string");
        assert_eq!(field("birthdate").source_type, "date");
        assert_eq!(field("accounts").source_type, "array");
        // `active` is in 1 of 7 customers.
        assert!(
            field("active").source_type.starts_with("bool (in 6 of 40"),
            "{}",
            field("active").source_type
        );
        // tier_and_details is keyed by random ids: a map, read whole, its keys not listed.
        assert!(field("tier_and_details").source_type.contains("a map"));
        assert!(
            !customers
                .fields
                .iter()
                .any(|f| f.name.starts_with("tier_and_details."))
        );
        assert_eq!(customers.primary_key, ["_id"]);
        assert_eq!(
            customers.cursor_candidates,
            ["updated_at", "birthdate", "_id"]
        );
        assert_eq!(catalog.streams[1].cursor_candidates[0], "updated_at");
    }
}

#[tokio::test]
async fn documents_sharing_a_cursor_value_across_batch_boundaries() {
    for uri in servers() {
        let db = TestDb::new(&uri).await;
        // 7 documents at minute 1, 5 at minute 2, 1 at minute 0, inserted out of order.
        let mut docs = vec![];
        for (i, minute) in [1, 2, 1, 1, 0, 2, 1, 1, 2, 1, 2, 1, 2].iter().enumerate() {
            docs.push(doc! { "_id": ObjectId::new(), "n": i as i32, "updated_at": at(*minute) });
        }
        db.insert("events", docs.clone()).await;
        let c = connect(&db).await;
        let stream = Stream::collection("events").with_cursor("updated_at");
        let all = read(&c, stream.clone(), None, 3).await.unwrap();
        assert_eq!(all.len(), 5);
        let mut want: Vec<(i64, String)> = docs
            .iter()
            .map(|d| {
                (
                    d.get_datetime("updated_at").unwrap().timestamp_millis(),
                    d.get_object_id("_id").unwrap().to_hex(),
                )
            })
            .collect();
        want.sort();
        let ids: Vec<String> = want.into_iter().map(|(_, id)| id).collect();
        assert_eq!(texts(&all, "_id"), ids, "in (cursor, _id) order, each once");
        // Resuming from any batch's checkpoint reads exactly the documents after it.
        for (i, batch) in all.iter().enumerate() {
            let rest = read(&c, stream.clone(), Some(stored(batch)), 3)
                .await
                .unwrap();
            assert_eq!(
                texts(&rest, "_id"),
                ids[(3 * (i + 1)).min(ids.len())..],
                "after batch {i}"
            );
        }
        // An empty read yields no batch: the stored state is never reset.
        let last = stored(all.last().unwrap());
        assert!(read(&c, stream, Some(last), 3).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn incremental_reads_see_updates_and_inserts_and_nulls_come_first() {
    for uri in servers() {
        let db = TestDb::new(&uri).await;
        let coll = db.db.collection::<Document>("customers");
        let ids: Vec<ObjectId> = (0..20).map(|_| ObjectId::new()).collect();
        let mut docs: Vec<Document> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| doc! { "_id": *id, "n": i as i32, "updated_at": at(i as i64) })
            .collect();
        // No cursor value: read first, by a full read only.
        docs[5].remove("updated_at");
        docs[6].insert("updated_at", Bson::Null);
        db.insert("customers", docs).await;
        let c = connect(&db).await;
        let stream = Stream::collection("customers").with_cursor("updated_at");
        let first = read(&c, stream.clone(), None, 4).await.unwrap();
        let n: Vec<Value> = values(&first, "n");
        assert_eq!(n.len(), 20);
        assert_eq!(&n[..2], [Value::Int(5), Value::Int(6)]);
        let checks = c.check(&[("customers".to_string(), stream.clone())]).await;
        assert_eq!(checks.len(), 1, "{checks:?}");
        assert!(
            checks[0].message.contains("no cursor \"updated_at\""),
            "{checks:?}"
        );

        coll.update_one(
            doc! { "_id": ids[3] },
            doc! { "$set": { "updated_at": at(100), "n": 33 } },
        )
        .await
        .unwrap();
        coll.update_one(
            doc! { "_id": ids[6] },
            doc! { "$set": { "updated_at": at(101) } },
        )
        .await
        .unwrap();
        coll.insert_one(doc! { "_id": ObjectId::new(), "n": 20, "updated_at": at(102) })
            .await
            .unwrap();
        let next = read(&c, stream, Some(stored(first.last().unwrap())), 4)
            .await
            .unwrap();
        assert_eq!(
            values(&next, "n"),
            [Value::Int(33), Value::Int(6), Value::Int(20)]
        );
    }
}

#[tokio::test]
async fn a_field_changing_type_is_reported_and_mapped_by_its_rule() {
    for uri in servers() {
        let db = TestDb::new(&uri).await;
        let shop = Shop::generate(6, 0, 3);
        db.insert("customers", shop.customers.clone()).await;
        let mut orders = vec![];
        let totals: Vec<Bson> = vec![
            Bson::Int32(10),
            Bson::Double(12.5),
            Bson::String("7.25".into()),
            Bson::Int64(3_000_000_000),
            Bson::String("n/a".into()),
            Bson::Document(doc! { "amount": 4 }),
        ];
        for (i, total) in totals.into_iter().enumerate() {
            orders.push(doc! {
                "_id": ObjectId::new(), "customer_id": shop.customer_ids[i], "total": total,
                "currency": "EUR", "status": "paid", "item_count": 1,
                "created_at": at(i as i64), "updated_at": at(i as i64),
            });
        }
        db.insert("orders", orders).await;
        let c = connect(&db).await;
        let info = c
            .describe("orders", &Stream::collection("orders"))
            .await
            .unwrap();
        let total = info.fields.iter().find(|f| f.name == "total").unwrap();
        // Reported with each type's frequency; every type but binary & co. can be mapped.
        assert_eq!(
            total.source_type,
            "string 2, double 1, int 1, long 1, object 1"
        );
        assert!(total.unsupported.is_none());

        // The rule: each document's value is read as its own type; `| number` makes numbers of
        // numeric text; a value that is not a number rejects its record, with the reason.
        let dir = tempfile::tempdir().unwrap();
        // Two of six orders are rejected: past the default share (10%) that fails a run.
        let config = example().replacen(
            "connector = \"mongodb\"",
            "connector = \"mongodb\"\nmax_rejected = 0.5",
            1,
        );
        let engine = engine(&db, &config, dir.path()).await;
        let summary = sync(&engine).await;
        assert_eq!(summary.rows_read(), 6 + 6);
        assert_eq!(summary.rows_rejected(), 2, "\"n/a\" and the document");
        let stats = &summary.streams["orders"];
        assert_eq!((stats.read, stats.written, stats.rejected), (6, 4, 2));
        let agg = aggregates(dir.path()).await;
        let total_of = |i: usize| agg[&shop.emails[i]]["total_spent"];
        assert_eq!(total_of(0), 10.0);
        assert_eq!(total_of(1), 12.5);
        assert_eq!(total_of(2), 7.25);
        assert_eq!(total_of(3), 3_000_000_000.0);
        let rejected = engine
            .store()
            .rejected(engine.workspace(), "shop", 10)
            .await
            .unwrap();
        let reasons: BTreeSet<String> = rejected.into_iter().map(|(_, _, e)| e).collect();
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("\"n/a\" is not a number")),
            "{reasons:?}"
        );
        assert!(reasons.iter().any(|r| r.contains("total")), "{reasons:?}");
    }
}

#[tokio::test]
async fn embedded_orders_unwind_into_sessions() {
    for uri in servers() {
        let db = TestDb::new(&uri).await;
        let shop = Shop::generate(30, 3, 5);
        let mut customers = shop.customers.clone();
        for (i, c) in customers.iter_mut().enumerate() {
            let orders: Vec<Bson> = shop
                .orders
                .iter()
                .filter(|o| o.customer == i)
                .enumerate()
                .map(|(n, o)| {
                    Bson::Document(doc! {
                        "total": o.total, "status": o.status, "ordered_at": at(n as i64),
                    })
                })
                .collect();
            c.insert("orders", orders);
        }
        db.insert("customers", customers).await;
        let toml = r#"
[store]
url = "sqlite://dossier.db"

[[sources]]
name = "shop"
connector = "mongodb"
config = { uri = "${MONGODB_URI}", database = "${MONGODB_DB}" }

[[sources.streams]]
name = "customers"
read = { collection = "customers", cursor = "updated_at", projection = ["email", "updated_at"] }

[sources.streams.mapping]
target = "contact"
id = "_id"
identities = { email = "email" }

[[sources.streams]]
name = "orders"
read = { collection = "customers", unwind = "orders", batch_size = 7 }

[sources.streams.mapping]
target = "session"
id = ["_id", "orders.$index"]
kind = "order"
started_at = "orders.ordered_at"
contact = { stream = "customers", field = "_id" }
data = { total = "orders.total", status = "orders.status" }

[[aggregates]]
name = "transactions"
op = "count"
kind = "order"

[[aggregates]]
name = "total_spent"
op = "sum"
kind = "order"
field = "total"

[[aggregates]]
name = "avg_basket"
op = "avg"
kind = "order"
field = "total"
"#;
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&db, toml, dir.path()).await;
        assert!(engine.check("shop").await.unwrap().is_empty());
        let summary = sync(&engine).await;
        assert_eq!(summary.streams["orders"].read, shop.orders.len() as u64);
        assert_eq!(summary.rows_rejected(), 0);
        assert_aggregates(&shop.expected(), &aggregates(dir.path()).await);

        // Without a cursor the stream is a full refresh: an order removed from its array is
        // detected as deleted, and leaves the aggregates.
        let (i, o) = shop
            .orders
            .iter()
            .enumerate()
            .find(|(_, o)| {
                shop.orders
                    .iter()
                    .filter(|x| x.customer == o.customer)
                    .count()
                    == 1
            })
            .map(|(i, o)| (i, o.clone()))
            .expect("a customer with one order");
        db.db
            .collection::<Document>("customers")
            .update_one(
                doc! { "_id": shop.customer_ids[o.customer] },
                doc! { "$set": { "orders": [] } },
            )
            .await
            .unwrap();
        let summary = sync(&engine).await;
        assert_eq!(summary.streams["orders"].deleted, 1);
        let mut shop = shop;
        shop.orders.remove(i);
        assert_aggregates(&shop.expected(), &aggregates(dir.path()).await);
    }
}

#[tokio::test]
async fn a_server_killed_mid_read_fails_cleanly_and_the_read_resumes_without_loss() {
    let mut server = OwnServer::start();
    let db = TestDb::new(&server.uri).await;
    let docs: Vec<Document> = (0..2000)
        .map(|i| doc! { "_id": ObjectId::new(), "n": i, "updated_at": at(i64::from(i / 3)) })
        .collect();
    db.insert("orders", docs).await;
    let c = Arc::new(
        MongoConnector::connect(Config {
            connect_timeout_secs: Some(2),
            ..Config::new(&server.uri, &db.name)
        })
        .await
        .unwrap(),
    );
    let stream = Stream::collection("orders").with_cursor("updated_at");
    let mut reading = c.clone().read(ReadRequest {
        name: "orders".into(),
        stream: stream.clone(),
        state: None,
        batch_size: 300,
    });
    let mut got = vec![];
    for _ in 0..2 {
        got.push(reading.next().await.unwrap().unwrap());
    }
    server.kill();
    let e = reading.next().await.unwrap().unwrap_err();
    assert_eq!(e.origin(), ErrorOrigin::Remote, "{e}");
    assert!(e.is_retryable(), "{e}");
    assert!(
        e.to_string()
            .starts_with("source error: stream \"orders\": cannot read collection"),
        "{e}"
    );
    assert!(
        reading.next().await.is_none(),
        "the stream ends after an error"
    );

    // Back again (same data): reading from the last committed state completes the stream.
    server.restart();
    let rest = read(&c, stream, Some(stored(got.last().unwrap())), 300)
        .await
        .unwrap();
    let mut n: Vec<Value> = values(&got, "n");
    n.extend(values(&rest, "n"));
    assert_eq!(n.len(), 2000, "nothing lost or duplicated");
    assert_eq!(n, (0..2000).map(Value::Int).collect::<Vec<_>>());
    drop(db);
}

/// Kills the test's own server once the first batch of `stream` is committed.
struct KillAfterFirstBatch<'a> {
    server: &'a std::sync::Mutex<OwnServer>,
    stream: &'static str,
    committed: std::sync::atomic::AtomicU64,
}

impl dossier_sync::Progress for KillAfterFirstBatch<'_> {
    fn batch_committed(&self, stream: &str, rows: u64) {
        if stream == self.stream
            && self
                .committed
                .fetch_add(rows, std::sync::atomic::Ordering::SeqCst)
                == 0
        {
            self.server.lock().unwrap().kill();
        }
    }
}

#[tokio::test]
async fn a_server_killed_mid_sync_fails_the_run_and_the_next_run_completes_it() {
    let server = std::sync::Mutex::new(OwnServer::start());
    let uri = server.lock().unwrap().uri.clone();
    let db = TestDb::new(&uri).await;
    let shop = Shop::generate(60, 5, 13);
    db.insert("customers", shop.customers.clone()).await;
    db.insert("orders", shop.order_docs()).await;
    // Every batch of the first load commits on its own, so the kill lands between two.
    let toml = example().replace(
        "connector = \"mongodb\"\n",
        "connector = \"mongodb\"\nbatch_size = 25\nbulk_commit_rows = 25\n",
    );
    assert!(toml.contains("batch_size = 25"));
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&db, &toml, dir.path()).await;
    let progress = KillAfterFirstBatch {
        server: &server,
        stream: "orders",
        committed: Default::default(),
    };
    let e = engine
        .sync("shop", None, "test", &progress)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("stream \"orders\""), "{e}");
    // The batches the engine had read ahead before the kill are committed too; then the
    // next read fails the run.
    let committed = progress.committed.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        committed.is_multiple_of(25) && (25..=75).contains(&committed),
        "whole batches of orders, at most two read ahead, were committed: {committed}"
    );

    server.lock().unwrap().restart();
    let summary = sync(&engine).await;
    // Customers were all read by the failed run; the orders resume after the committed batch.
    assert_eq!(summary.streams["customers"].read, 0);
    assert_eq!(
        summary.streams["orders"].read,
        shop.orders.len() as u64 - committed
    );
    assert_eq!(summary.rows_rejected(), 0);
    assert_aggregates(&shop.expected(), &aggregates(dir.path()).await);
    let (_, sessions) = engine.store().counts(engine.workspace()).await.unwrap();
    assert_eq!(sessions, shop.orders.len() as i64, "every order once");
    drop(db);
}

#[tokio::test]
async fn a_cursor_of_another_type_stops_the_read_and_check_reports_problems() {
    for uri in servers() {
        let db = TestDb::new(&uri).await;
        let mut docs: Vec<Document> = (0..5)
            .map(|i| doc! { "_id": ObjectId::new(), "n": i, "updated_at": at(i64::from(i)) })
            .collect();
        docs[2].insert("updated_at", "2024-01-01");
        db.insert("events", docs).await;
        let c = connect(&db).await;
        let stream = Stream::collection("events").with_cursor("updated_at");
        let e = read(&c, stream.clone(), None, 100).await.unwrap_err();
        assert_eq!(e.origin(), ErrorOrigin::Config, "{e}");
        assert!(
            e.to_string().contains("the cursor \"updated_at\" is date"),
            "{e}"
        );

        let checks = c
            .check(&[
                ("events".to_string(), stream),
                ("missing".to_string(), Stream::collection("nope")),
                ("fine".to_string(), Stream::collection("events")),
            ])
            .await;
        assert_eq!(checks.len(), 2, "{checks:?}");
        assert_eq!(checks[0].stream.as_deref(), Some("events"));
        assert!(checks[0].message.contains("holds"), "{checks:?}");
        assert_eq!(checks[1].stream.as_deref(), Some("missing"));
        assert!(
            checks[1].message.contains("no collection \"nope\"")
                && checks[1].message.contains("events"),
            "{checks:?}"
        );
        let e = c
            .describe("missing", &Stream::collection("nope"))
            .await
            .unwrap_err();
        assert_eq!(e.origin(), ErrorOrigin::Config);
    }
}

#[tokio::test]
async fn filters_and_projections_select_documents_and_fields() {
    for uri in servers() {
        let db = TestDb::new(&uri).await;
        let docs: Vec<Document> = (0..10)
            .map(|i| {
                doc! {
                    "_id": ObjectId::new(), "n": i, "status": if i % 2 == 0 { "paid" } else { "open" },
                    "note": "x", "address": { "city": "Paris", "zip": "75001" }, "updated_at": at(i64::from(i)),
                }
            })
            .collect();
        db.insert("orders", docs).await;
        let c = connect(&db).await;
        let stream: Stream = serde_json::from_value(json!({
            "collection": "orders",
            "cursor": "updated_at",
            "filter": r#"{"status": "paid", "updated_at": {"$gte": {"$date": "2024-01-01T00:04:00Z"}}}"#,
            "projection": ["n", "address.city"],
        }))
        .unwrap();
        let info = c.describe("orders", &stream).await.unwrap();
        let names: Vec<&str> = info.fields.iter().map(|f| f.name.as_str()).collect();
        assert!(
            names.contains(&"address.city") && !names.contains(&"note"),
            "{names:?}"
        );
        let batches = read(&c, stream, None, 100).await.unwrap();
        assert_eq!(
            values(&batches, "n"),
            [Value::Int(4), Value::Int(6), Value::Int(8)]
        );
        assert_eq!(
            values(&batches, "address.city")[0],
            Value::Text("Paris".into())
        );
    }
}

#[tokio::test]
async fn secrets_stay_out_of_messages_and_the_spec_documents_every_setting() {
    let mut registry = Registry::new();
    registry.register::<MongoConnector>();
    let factory = registry.get("mongodb").unwrap();
    let spec = factory.spec();
    assert_eq!(spec.config_schema["additionalProperties"], json!(false));
    assert_eq!(spec.stream_schema["additionalProperties"], json!(false));
    for field in ["uri", "database", "connect_timeout_secs", "sample_size"] {
        assert!(
            spec.config_schema["properties"][field]["description"].is_string(),
            "{field}: {}",
            spec.config_schema
        );
    }
    for field in [
        "collection",
        "filter",
        "projection",
        "cursor",
        "unwind",
        "batch_size",
    ] {
        assert!(
            spec.stream_schema["properties"][field]["description"].is_string(),
            "{field}: {}",
            spec.stream_schema
        );
    }
    let e = factory
        .validate_stream(&StreamConfig {
            name: "s".into(),
            settings: json!({"collection": "c", "filter": {"$where": "1"}}),
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("runs JavaScript"), "{e}");

    // Nothing listens on port 9: the error names the host, never the password.
    let config = json!({
        "uri": "mongodb://ada:s3cret-pw@127.0.0.1:9/?directConnection=true",
        "database": "shop",
        "connect_timeout_secs": 1,
    });
    let e = factory.connect(config.clone()).await.err().unwrap();
    assert!(e.is_retryable(), "{e}");
    assert!(e.is_unreachable(), "{e}");
    // A refused port fails at once, not after the driver's 10 s of server selection.
    let started = std::time::Instant::now();
    let e = factory
        .connect(json!({"uri": "mongodb://127.0.0.1:9", "database": "shop"}))
        .await
        .err()
        .unwrap();
    assert!(e.is_unreachable(), "{e}");
    assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    let shown = e.to_string();
    assert!(shown.contains("127.0.0.1:9/shop"), "{shown}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    let parsed: Config = serde_json::from_value(config).unwrap();
    assert!(!format!("{parsed:?}").contains("s3cret-pw"));
    let e = factory
        .connect(json!({
            "uri": "mongodb://ada:s3cret-pw@127.0.0.1:9/?connectTimeoutMS=soon",
            "database": "d",
            "connect_timeout_secs": 1,
        }))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(!e.contains("s3cret-pw"), "{e}");
    let e = factory
        .connect(json!({"uri": "http://h", "database": "d"}))
        .await
        .err()
        .unwrap();
    assert_eq!(e.origin(), ErrorOrigin::Config);
}
