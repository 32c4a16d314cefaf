//! The Shopify connector against a fake GraphQL Admin API that validates every query
//! against Shopify's real Admin schema (2025-01).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake::{self, Fake, customer, order};
use common::schema;
use dossier_connector::{
    Batch, Connector, ConnectorError, ErrorOrigin, ReadRequest, StreamState, Value, read_to_end,
};
use dossier_connector_shopify::{Config, Resource, ShopifyConnector, Stream, queries};
use dossier_http_source::ApiResource as _;
use serde_json::json;

async fn connect(fake: &Fake, page_size: usize, max_retries: usize) -> Arc<ShopifyConnector> {
    connect_with(fake, page_size, max_retries, json!({ "bulk": "never" })).await
}

async fn connect_with(
    fake: &Fake,
    page_size: usize,
    max_retries: usize,
    extra: serde_json::Value,
) -> Arc<ShopifyConnector> {
    let mut config = json!({
        "shop": "dossier-test",
        "token": fake::TOKEN,
        "endpoint": fake.server.uri(),
        "page_size": page_size,
        "retry": { "max_retries": max_retries, "base_delay_ms": 1, "max_delay_ms": 10, "timeout_secs": 5 },
        "bulk_poll_ms": 5,
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let config: Config = serde_json::from_value(config).unwrap();
    Arc::new(ShopifyConnector::connect(config).await.unwrap())
}

/// Reads until the end or the first error: the batches, and the error if any.
async fn read(
    c: &Arc<ShopifyConnector>,
    resource: Resource,
    state: Option<StreamState>,
) -> (Vec<Batch>, Option<ConnectorError>) {
    read_batches(c, resource, state, 1000).await
}

async fn read_batches(
    c: &Arc<ShopifyConnector>,
    resource: Resource,
    state: Option<StreamState>,
    batch_size: usize,
) -> (Vec<Batch>, Option<ConnectorError>) {
    read_to_end(
        c,
        ReadRequest {
            name: resource.name().to_string(),
            stream: Stream { resource },
            state,
            batch_size,
        },
    )
    .await
}

fn ids(batches: &[Batch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.rows.iter())
        .map(|r| match r[0] {
            Value::Int(i) => i,
            ref v => panic!("id {v:?}"),
        })
        .collect()
}

fn field<'a>(b: &'a Batch, row: usize, name: &str) -> &'a Value {
    let i = b.fields.iter().position(|f| f == name).unwrap();
    &b.rows[row][i]
}

fn ts(minute: u32, second: u32) -> String {
    format!("2024-05-01T10:{minute:02}:{second:02}Z")
}

#[test]
fn every_query_validates_against_the_admin_schema() {
    let schema = schema::admin();
    for (name, q) in queries::ALL {
        let v = schema
            .validate(q)
            .unwrap_or_else(|e| panic!("query {name} does not validate:\n{e}"));
        assert_eq!(v.root_fields, vec![name.to_string()]);
        // Only `Customer.email` is deprecated (its replacement exists from 2025-04 only).
        for d in &v.deprecated {
            assert!(
                d.ends_with(".email") && *name == "customers",
                "{name}: {d} is deprecated"
            );
        }
    }
}

#[test]
fn the_validator_refuses_what_shopify_refuses() {
    let schema = schema::admin();
    for bad in [
        "{ customers(first: 1) { nodes { nope } } }",
        "{ customers(first: 1, sortKey: WHENEVER) { nodes { id } } }",
        "{ customers(first: 1, since: \"x\") { nodes { id } } }",
        "{ customers(first: 1) { nodes { defaultAddress } } }",
        "{ customers(first: 1) { nodes { id { x } } } }",
        "query Q($first: String) { customers(first: $first) { nodes { id } } }",
        "{ orders(first: 1) { nodes { customer { id } lineItemsCount } } }",
        "{ customers(first: 1) { nodes { id } }",
    ] {
        assert!(schema.validate(bad).is_err(), "accepted: {bad}");
    }
}

#[tokio::test]
async fn full_then_incremental_read() {
    let fake = Fake::start().await;
    {
        let mut s = fake.state();
        s.customers = (1..=12).map(|i| customer(i, &ts(i as u32, 0))).collect();
        s.orders = vec![order(100, Some(1), &ts(1, 0)), order(101, None, &ts(2, 0))];
    }
    let c = connect(&fake, 5, 2).await;

    let (batches, err) = read(&c, Resource::Customers, None).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(batches.len(), 3);
    assert_eq!(ids(&batches), (1..=12).collect::<Vec<_>>());
    let b = &batches[0];
    assert_eq!(
        field(b, 0, "email"),
        &Value::Text("customer1@example.com".into())
    );
    assert_eq!(field(b, 0, "tags"), &Value::Text("vip, newsletter".into()));
    assert_eq!(field(b, 0, "country"), &Value::Text("CA".into()));
    assert_eq!(field(b, 0, "number_of_orders"), &Value::Int(3));
    assert_eq!(
        field(b, 0, "amount_spent"),
        &Value::Decimal("120.50".into())
    );
    assert_eq!(
        field(b, 0, "gid"),
        &Value::Text("gid://shopify/Customer/1".into())
    );
    let state = batches.last().unwrap().state.clone();
    assert_eq!(state.0, json!({ "updated_at": ts(12, 0), "last_id": 12 }));
    assert_eq!(fake.state().filters, vec![None, None, None]);

    // Two customers change, one is created; nothing else is read again.
    {
        let mut s = fake.state();
        s.customers[2] = customer(3, &ts(30, 0));
        s.customers[6] = customer(7, &ts(31, 0));
        s.customers.push(customer(13, &ts(31, 0)));
        s.filters.clear();
    }
    let (batches, err) = read(&c, Resource::Customers, Some(state)).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ids(&batches), vec![3, 7, 13]);
    assert_eq!(
        fake.state().filters,
        vec![Some(format!(
            "updated_at:>'{t}' OR (updated_at:>='{t}' AND id:>12)",
            t = ts(12, 0)
        ))]
    );
    let (again, _) = read(
        &c,
        Resource::Customers,
        Some(batches.last().unwrap().state.clone()),
    )
    .await;
    assert!(
        again.is_empty(),
        "an incremental read without changes yields no batch"
    );

    // Orders: the customer id is the number of the customer's GID; a guest order has none.
    let (orders, err) = read(&c, Resource::Orders, None).await;
    assert!(err.is_none(), "{err:?}");
    let b = &orders[0];
    assert_eq!(field(b, 0, "customer_id"), &Value::Int(1));
    assert_eq!(field(b, 1, "customer_id"), &Value::Null);
    assert_eq!(field(b, 0, "total_price"), &Value::Decimal("29.99".into()));
    assert_eq!(field(b, 0, "currency"), &Value::Text("CAD".into()));
    assert_eq!(field(b, 0, "line_items_quantity"), &Value::Int(2));
    assert!(fake.state().invalid.is_empty());
    assert_eq!(fake.state().throttled, 0);
}

#[tokio::test]
async fn records_sharing_updated_at_across_pages() {
    let fake = Fake::start().await;
    {
        let mut s = fake.state();
        s.customers = (1..=3).map(|i| customer(i, &ts(0, i as u32))).collect();
        // Seven customers updated in the same second, spread over three pages.
        s.customers.extend((10..17).map(|i| customer(i, &ts(5, 0))));
        s.customers.push(customer(20, &ts(6, 0)));
    }
    let c = connect(&fake, 3, 2).await;
    let (batches, err) = read(&c, Resource::Customers, None).await;
    assert!(err.is_none());
    let all = ids(&batches);
    assert_eq!(all, vec![1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 20]);

    // Resume from each batch's checkpoint, as after a crash: the rest, each record once.
    for (i, b) in batches.iter().enumerate() {
        let (rest, err) = read(&c, Resource::Customers, Some(b.state.clone())).await;
        assert!(err.is_none());
        let seen: usize = batches[..=i].iter().map(|b| b.rows.len()).sum();
        assert_eq!(ids(&rest), all[seen..].to_vec(), "resuming after batch {i}");
    }
}

/// The last records share one second over several pages: a run without changes still
/// costs one request, as the id tie-break is in the query rather than applied after
/// reading every page of that second again.
#[tokio::test]
async fn a_run_without_changes_costs_one_request_whatever_shares_the_checkpoint_second() {
    let fake = Fake::start().await;
    fake.state().customers = (10..17).map(|i| customer(i, &ts(5, 0))).collect();
    let c = connect(&fake, 3, 2).await;
    let (batches, err) = read(&c, Resource::Customers, None).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ids(&batches).len(), 7);
    let before = fake.state().served;
    let last = batches.last().unwrap().state.clone();
    let (none, err) = read(&c, Resource::Customers, Some(last)).await;
    assert!(err.is_none() && none.is_empty(), "{err:?}");
    assert_eq!(fake.state().served - before, 1);
    assert!(fake.state().invalid.is_empty());
}

#[tokio::test]
async fn throttling_slows_down_but_completes() {
    let fake = Fake::start().await;
    fake.bucket(50.0, 400.0);
    fake.state().customers = (1..=200).map(|i| customer(i, &ts(0, 0))).collect();
    // One 429 with Retry-After on the way.
    fake.state().inject.push_back((429, Some("1")));
    let c = connect(&fake, 20, 3).await;
    let started = Instant::now();
    let (batches, err) = read(&c, Resource::Customers, None).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ids(&batches), (1..=200).collect::<Vec<_>>());
    let s = fake.state();
    // Each page costs 22 of a 50-point bucket restored at 400/s: pacing must wait between
    // pages; the first answer tells the budget, so THROTTLED stays rare.
    assert!(s.throttled <= 1, "{} THROTTLED answers", s.throttled);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert!(s.invalid.is_empty());
}

#[tokio::test]
async fn throttled_answers_are_waited_out() {
    let fake = Fake::start().await;
    // A bucket smaller than two pages, restored slowly: without pacing every other request
    // would be throttled.
    fake.bucket(25.0, 200.0);
    fake.state().customers = (1..=60).map(|i| customer(i, &ts(0, 0))).collect();
    let c = connect(&fake, 20, 0).await;
    let (batches, err) = read(&c, Resource::Customers, None).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ids(&batches).len(), 60);
    assert!(fake.state().throttled <= 1);
}

#[tokio::test]
async fn a_5xx_storm_fails_cleanly_and_resumes() {
    let fake = Fake::start().await;
    fake.state().customers = (1..=10).map(|i| customer(i, &ts(i as u32, 0))).collect();
    fake.state().storm_after = Some(2);
    let c = connect(&fake, 3, 3).await;
    let (batches, err) = read(&c, Resource::Customers, None).await;
    assert_eq!(ids(&batches), vec![1, 2, 3, 4, 5, 6]);
    let err = err.expect("the storm fails the read");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.origin(), ErrorOrigin::Remote);
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    // 2 pages + 1 attempt and 3 retries.
    assert_eq!(fake.state().requests, 6);

    // The last emitted state is where the next run resumes.
    fake.state().storm_after = None;
    let resume = batches.last().unwrap().state.clone();
    let (rest, err) = read(&c, Resource::Customers, Some(resume)).await;
    assert!(err.is_none());
    assert_eq!(ids(&rest), vec![7, 8, 9, 10]);
}

#[tokio::test]
async fn a_revoked_token_is_a_config_error_naming_the_scope() {
    let fake = Fake::start().await;
    fake.state().customers = vec![customer(1, &ts(0, 0))];
    fake.state().revoked = true;
    let c = connect(&fake, 10, 5).await;
    let (batches, err) = read(&c, Resource::Customers, None).await;
    assert!(batches.is_empty());
    let err = err.unwrap();
    assert_eq!(err.origin(), ErrorOrigin::Config, "{err}");
    assert!(err.to_string().contains("read_customers"), "{err}");
    assert!(!err.to_string().contains(fake::TOKEN));
    assert_eq!(fake.state().requests, 1, "a 401 is not retried");

    let problems = c
        .check(&[(
            "orders".into(),
            Stream {
                resource: Resource::Orders,
            },
        )])
        .await;
    assert_eq!(problems.len(), 1);
    assert!(problems[0].message.contains("read_orders"), "{problems:?}");
}

#[tokio::test]
async fn a_missing_scope_is_a_config_error() {
    let fake = Fake::start().await;
    fake.state().deny_orders = true;
    let c = connect(&fake, 10, 5).await;
    let (_, err) = read(&c, Resource::Orders, None).await;
    let err = err.unwrap();
    assert_eq!(err.origin(), ErrorOrigin::Config);
    assert!(err.to_string().contains("read_orders"), "{err}");
}

#[tokio::test]
async fn config_errors() {
    let bad = |v: serde_json::Value| async move {
        let config: Config = serde_json::from_value(v).unwrap();
        ShopifyConnector::connect(config).await.unwrap_err()
    };
    let e = bad(json!({ "shop": "s" })).await;
    assert!(e.to_string().contains("token"), "{e}");
    let e = bad(json!({ "shop": "s", "token_env": "DOSSIER_TEST_SURELY_UNSET_VAR" })).await;
    assert!(
        e.to_string().contains("DOSSIER_TEST_SURELY_UNSET_VAR"),
        "{e}"
    );
    let e = bad(json!({ "shop": "s", "token": "t", "page_size": 500 })).await;
    assert!(e.to_string().contains("page_size"), "{e}");
    let e = bad(json!({ "shop": "s", "token": "t", "api_version": "latest" })).await;
    assert!(e.to_string().contains("api_version"), "{e}");
    assert!(
        serde_json::from_value::<Config>(json!({ "shop": "s", "tokn": "t" })).is_err(),
        "unknown keys are refused"
    );
}

/// The example config's mappings compile against the streams' fields and map real rows.
#[tokio::test]
async fn the_example_mappings_fit_the_streams() {
    let fake = Fake::start().await;
    {
        let mut s = fake.state();
        s.customers = (1..=3).map(|i| customer(i, &ts(i as u32, 0))).collect();
        s.orders = vec![order(100, Some(1), &ts(1, 0)), order(101, None, &ts(2, 0))];
    }
    let c = connect(&fake, 50, 1).await;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/shopify/dossier.toml"
    );
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let source = &config["sources"][0];
    assert_eq!(source["connector"].as_str(), Some("shopify"));
    for stream in source["streams"].as_array().unwrap() {
        let name = stream["name"].as_str().unwrap();
        let settings: Stream = stream["read"].clone().try_into().unwrap();
        let mapping: dossier_core::mapping::MappingConfig =
            stream["mapping"].clone().try_into().unwrap();
        let info = c.describe(name, &settings).await.unwrap();
        let compiled = mapping.compile("shopify", name, &info.fields).unwrap();
        let (batches, err) = read(&c, settings.resource, None).await;
        assert!(err.is_none());
        for b in &batches {
            let bound = compiled.bind(&b.fields).unwrap();
            for row in &b.rows {
                let mapped = bound.apply(row);
                // A guest order (no customer) cannot link by customer id.
                if row[2] != Value::Null || name == "customers" {
                    mapped.unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
        }
    }
}

#[tokio::test]
async fn a_bulk_operation_reads_a_first_load() {
    let fake = Fake::start().await;
    fake.state().customers = (1..=7).map(|i| customer(i, &ts(i as u32, 0))).collect();
    let c = connect_with(&fake, 50, 2, json!({ "bulk": "always" })).await;
    let (batches, err) = read_batches(&c, Resource::Customers, None, 3).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        batches.iter().map(|b| b.rows.len()).collect::<Vec<_>>(),
        vec![3, 3, 1]
    );
    let mut all = ids(&batches);
    all.sort();
    assert_eq!(
        all,
        (1..=7).collect::<Vec<_>>(),
        "every record once, child lines skipped"
    );
    assert_eq!(
        field(&batches[0], 0, "tags"),
        &Value::Text("vip, newsletter".into())
    );
    // Unordered results: only the last batch moves the checkpoint, to the operation's start.
    let epoch = json!({ "updated_at": "1970-01-01T00:00:00Z", "last_id": 0 });
    assert_eq!(batches[0].state.0, epoch);
    assert_eq!(batches[1].state.0, epoch);
    let last = batches[2].state.clone();
    assert_ne!(last.0, epoch);
    {
        let s = fake.state();
        assert!(s.invalid.is_empty(), "{:?}", s.invalid);
        assert_eq!(s.bulk_runs, 1);
    }

    // Resuming from a mid-bulk checkpoint pages through everything.
    let (paged, err) = read(&c, Resource::Customers, Some(batches[0].state.clone())).await;
    assert!(err.is_none());
    assert_eq!(ids(&paged), (1..=7).collect::<Vec<_>>());

    // After the bulk read, reads are incremental from the operation's start.
    fake.state()
        .customers
        .push(customer(8, "2099-01-01T00:00:00Z"));
    let (next, err) = read(&c, Resource::Customers, Some(last)).await;
    assert!(err.is_none());
    assert_eq!(ids(&next), vec![8]);
    assert_eq!(fake.state().bulk_runs, 1);
}

#[tokio::test]
async fn auto_mode_counts_before_choosing() {
    let fake = Fake::start().await;
    fake.state().orders = (1..=6)
        .map(|i| order(i, Some(1), &ts(i as u32, 0)))
        .collect();
    let small = connect_with(&fake, 50, 2, json!({ "bulk_threshold": 100 })).await;
    let (batches, err) = read(&small, Resource::Orders, None).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ids(&batches).len(), 6);
    assert_eq!(fake.state().bulk_runs, 0);
    assert_eq!(fake.state().count_queries, 1);

    let large = connect_with(&fake, 50, 2, json!({ "bulk_threshold": 5 })).await;
    let (batches, err) = read(&large, Resource::Orders, None).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ids(&batches).len(), 6);
    let s = fake.state();
    assert_eq!((s.bulk_runs, s.count_queries), (1, 2));
    assert!(s.invalid.is_empty(), "{:?}", s.invalid);
}

/// The example config, end to end: the registry, the engine and the store, over the fake.
#[tokio::test]
async fn the_example_config_syncs_end_to_end() {
    let fake = Fake::start().await;
    {
        let mut s = fake.state();
        s.customers = (1..=3).map(|i| customer(i, &ts(i as u32, 0))).collect();
        s.orders = vec![
            order(100, Some(1), &ts(1, 0)),
            order(101, Some(1), &ts(2, 0)),
            order(102, None, &ts(3, 0)),
        ];
    }
    let dir = tempfile::tempdir().unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/shopify/dossier.toml"
    );
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("${SHOPIFY_SHOP}", "dossier-test")
        .replace("${SHOPIFY_TOKEN}", fake::TOKEN)
        .replace("${SHOPIFY_ENDPOINT:-}", &fake.server.uri())
        .replace(
            "api_version = \"2025-01\"",
            "api_version = \"2025-01\", bulk = \"never\"",
        );
    let mut registry = dossier_connector::Registry::new();
    registry.register::<dossier_connector_shopify::ShopifyConnector>();
    let loaded =
        dossier_sync::Config::parse(&text, "example", dir.path().to_path_buf(), &registry).unwrap();
    let store = dossier_store::SqlStore::open(&loaded.config.store.url)
        .await
        .unwrap();
    let engine = dossier_sync::Engine::new(store, registry, loaded)
        .await
        .unwrap();
    let run = engine
        .sync("shopify", None, "test", &dossier_sync::NoProgress)
        .await
        .unwrap();
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.rows_read(), 6);
    assert_eq!(run.rows_rejected(), 0);
    let ws = engine.workspace().to_string();
    let ada = engine
        .store()
        .contact_by_email(&ws, "customer1@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ada.country.as_deref(), Some("CA"));
    let aggs = engine.store().aggregates(&ws, &[ada.id]).await.unwrap();
    let a = &aggs[&ada.id];
    assert_eq!(a["transactions"].to_json(), json!(2));
    assert_eq!(a["total_spent"].to_json(), json!(59.98));
    assert_eq!(a["avg_basket"].to_json(), json!(29.99));
    assert!(a.contains_key("last_order_at"), "{a:?}");
    assert!(fake.state().invalid.is_empty());

    // Nothing changed: the next run reads nothing.
    let run = engine
        .sync("shopify", None, "test", &dossier_sync::NoProgress)
        .await
        .unwrap();
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.rows_read(), 0);

    // Requests the HTTP client sent again count in the run history's retries.
    fake.state().inject.push_back((503, None));
    fake.state().inject.push_back((503, None));
    let run = engine
        .sync("shopify", None, "test", &dossier_sync::NoProgress)
        .await
        .unwrap();
    assert_eq!(run.streams["customers"].retries, 2, "{:?}", run.streams);
    let history = engine
        .store()
        .runs(&ws, Some("shopify"), 1, None)
        .await
        .unwrap();
    assert_eq!(history.items[0].streams["customers"].retries, 2);
}

#[tokio::test]
async fn internal_server_errors_in_a_200_answer_are_retried() {
    let fake = Fake::start().await;
    fake.state().customers = (1..=3).map(|i| customer(i, &ts(i as u32, 0))).collect();
    fake.state().internal_errors = 2;
    let c = connect(&fake, 10, 3).await;
    let (batches, err) = read(&c, Resource::Customers, None).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ids(&batches), vec![1, 2, 3]);

    fake.state().internal_errors = 10;
    let (_, err) = read(&c, Resource::Customers, None).await;
    let err = err.unwrap();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("Internal error"), "{err}");
}
