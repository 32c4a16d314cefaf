//! The Stripe connector against a local fake that follows Stripe's documented behaviour and
//! serves objects built from Stripe's own fixtures; parameters and fields checked against
//! Stripe's OpenAPI spec (a subset, see fixtures/SOURCE.md).

use std::collections::BTreeSet;
use std::sync::Arc;

use dossier_connector::{
    Batch, Connector, ConnectorError, ErrorOrigin, ReadRequest, StreamState, Value, read_all,
};
use dossier_connector_stripe::{
    CHARGE_FIELDS, CUSTOMER_FIELDS, Checkpoint, Resource, Stream, StripeConnector,
};
use dossier_http_source::ApiResource as _;
use dossier_stripe_fake::{API_KEY, FakeStripe};
use futures::StreamExt as _;
use serde_json::{Value as Json, json};

const T0: i64 = 1_600_000_000;

async fn connect(fake: &FakeStripe, page_size: usize) -> Arc<StripeConnector> {
    let config = serde_json::from_value(json!({
        "api_key": API_KEY,
        "base_url": fake.uri(),
        "page_size": page_size,
        "retry": { "max_retries": 3, "base_delay_ms": 1, "max_delay_ms": 5, "timeout_secs": 5 }
    }))
    .unwrap();
    Arc::new(StripeConnector::connect(config).await.unwrap())
}

async fn read(
    c: &Arc<StripeConnector>,
    resource: Resource,
    state: Option<StreamState>,
) -> Result<Vec<Batch>, ConnectorError> {
    read_all(
        c,
        ReadRequest {
            name: resource.name().into(),
            stream: Stream { resource },
            state,
            batch_size: 1000,
        },
    )
    .await
}

fn ids(batches: &[Batch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| b.rows.iter())
        .map(|r| match &r[0] {
            Value::Text(s) => s.clone(),
            v => panic!("id {v:?}"),
        })
        .collect()
}

fn last_state(batches: &[Batch]) -> StreamState {
    batches.last().unwrap().state.clone()
}

#[tokio::test]
async fn full_read_pages_with_starting_after_and_maps_fields() {
    let fake = FakeStripe::start().await;
    fake.seed(250, T0);
    let c = connect(&fake, 100).await;
    let batches = read(&c, Resource::Customers, None).await.unwrap();
    let got = ids(&batches);
    assert_eq!(got.len(), 250);
    assert_eq!(
        got.iter().collect::<BTreeSet<_>>().len(),
        250,
        "no duplicates"
    );
    assert_eq!(batches.len(), 3, "three pages of at most 100");
    let reqs: Vec<_> = fake.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[1].1.iter().any(|(k, _)| k == "starting_after"));
    // The newest customer comes first; fields in order.
    let fields = &batches[0].fields;
    assert_eq!(fields.len(), CUSTOMER_FIELDS.len());
    let row = &batches[0].rows[0];
    let at = |name: &str| &row[fields.iter().position(|f| f == name).unwrap()];
    assert_eq!(at("id"), &Value::Text("cus_00000249".into()));
    assert_eq!(at("email"), &Value::Text("Customer249@Example.com".into()));
    assert_eq!(at("first_name"), &Value::Text("First249".into()));
    assert_eq!(at("last_name"), &Value::Text("Last249".into()));
    assert_eq!(at("country"), &Value::Text("FR".into()));
    assert_eq!(at("locale"), &Value::Text("fr".into()));
    assert!(matches!(at("created"), Value::DateTime(_)));
    let cp: Checkpoint = serde_json::from_value(last_state(&batches).0).unwrap();
    assert_eq!(cp.created_gte, Some(T0 + 124 * 60));
    assert_eq!(
        cp.created_ids.len(),
        2,
        "both customers of the newest second"
    );
    assert!(cp.events_gte.is_some() && cp.listing.is_none());
}

#[tokio::test]
async fn charges_carry_amount_and_currency() {
    let fake = FakeStripe::start().await;
    fake.seed(40, T0);
    let c = connect(&fake, 100).await;
    let batches = read(&c, Resource::Charges, None).await.unwrap();
    let fields = &batches[0].fields;
    assert_eq!(fields.len(), CHARGE_FIELDS.len());
    let col = |name: &str| fields.iter().position(|f| f == name).unwrap();
    let rows: Vec<_> = batches.iter().flat_map(|b| b.rows.iter()).collect();
    assert_eq!(rows.len(), fake.counts().1);
    let jpy = rows
        .iter()
        .find(|r| r[col("currency")] == Value::Text("jpy".into()))
        .unwrap();
    let Value::Int(amount) = jpy[col("amount")] else {
        panic!()
    };
    assert_eq!(
        jpy[col("amount_decimal")],
        Value::Decimal(amount.to_string())
    );
    let usd = rows
        .iter()
        .find(|r| r[col("currency")] == Value::Text("usd".into()))
        .unwrap();
    let Value::Int(amount) = usd[col("amount")] else {
        panic!()
    };
    assert_eq!(
        usd[col("amount_decimal")],
        Value::Decimal(format!("{}.{:02}", amount / 100, amount % 100))
    );
    let guest = rows
        .iter()
        .find(|r| r[col("customer")] == Value::Null)
        .unwrap();
    assert!(matches!(&guest[col("email")], Value::Text(e) if e.starts_with("guest")));
}

#[tokio::test]
async fn incremental_reads_new_objects_and_updates_from_events() {
    let fake = FakeStripe::start().await;
    fake.seed(30, T0);
    let c = connect(&fake, 7).await;
    let first = read(&c, Resource::Customers, None).await.unwrap();
    assert_eq!(ids(&first).len(), 30);
    let state = last_state(&first);

    // Nothing changed: no batch, the state stays.
    let none = read(&c, Resource::Customers, Some(state.clone()))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    // Two new customers (one sharing the newest second), one update, one unrelated event.
    let now = chrono_now();
    fake.seed(3, T0 + 14 * 60);
    fake.update_customer("cus_00000004", now, |c| {
        c["email"] = json!("changed@example.com")
    });
    fake.update_customer("cus_00000004", now, |c| c["name"] = json!("Changed Twice"));
    fake.other_event("plan.created", dossier_stripe_fake::fixture("plan"), now);
    let second = read(&c, Resource::Customers, Some(state)).await.unwrap();
    let got = ids(&second);
    assert_eq!(
        got.iter().collect::<BTreeSet<_>>(),
        [
            "cus_00000004",
            "cus_00000030",
            "cus_00000031",
            "cus_00000032"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<BTreeSet<_>>()
        .iter()
        .collect(),
    );
    let updated = second
        .iter()
        .flat_map(|b| b.rows.iter())
        .find(|r| r[0] == Value::Text("cus_00000004".into()))
        .unwrap();
    assert_eq!(updated[1], Value::Text("changed@example.com".into()));
    assert_eq!(
        updated[2],
        Value::Text("Changed Twice".into()),
        "the newest event wins"
    );
    let events = fake
        .requests()
        .into_iter()
        .filter(|(p, _)| p == "/v1/events")
        .collect::<Vec<_>>();
    assert!(
        events[0]
            .1
            .contains(&("types[]".into(), "customer.updated".into()))
    );

    // And again: nothing new.
    let third = read(&c, Resource::Customers, Some(last_state(&second)))
        .await
        .unwrap();
    assert!(third.is_empty(), "{third:?}");
}

#[tokio::test]
async fn refunds_arrive_through_charge_events() {
    let fake = FakeStripe::start().await;
    fake.seed(10, T0);
    let c = connect(&fake, 100).await;
    let first = read(&c, Resource::Charges, None).await.unwrap();
    fake.refund_charge("ch_00000002", chrono_now());
    let second = read(&c, Resource::Charges, Some(last_state(&first)))
        .await
        .unwrap();
    assert_eq!(ids(&second), vec!["ch_00000002".to_string()]);
    let col = CHARGE_FIELDS
        .iter()
        .position(|(f, _)| *f == "refunded")
        .unwrap();
    assert_eq!(second[0].rows[0][col], Value::Bool(true));
}

#[tokio::test]
async fn a_listing_resumes_after_its_last_committed_page() {
    let fake = FakeStripe::start().await;
    fake.seed(25, T0);
    let c = connect(&fake, 10).await;
    let mut s = c.clone().read(ReadRequest {
        name: "customers".into(),
        stream: Stream {
            resource: Resource::Customers,
        },
        state: None,
        batch_size: 10,
    });
    let first = s.next().await.unwrap().unwrap();
    drop(s); // a crash after the first page was committed
    let rest = read(&c, Resource::Customers, Some(first.state.clone()))
        .await
        .unwrap();
    let mut all = ids(std::slice::from_ref(&first));
    all.extend(ids(&rest));
    assert_eq!(all.len(), 25);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 25);
}

#[tokio::test]
async fn throttling_is_waited_out() {
    let fake = FakeStripe::start().await;
    fake.seed(5, T0);
    fake.throttle(&[None, Some("0")]);
    let c = connect(&fake, 100).await;
    let batches = read(&c, Resource::Customers, None).await.unwrap();
    assert_eq!(ids(&batches).len(), 5);
    assert_eq!(fake.requests().len(), 3, "two 429s, then the page");
    // The run history counts them (issue 23: HTTP-level retries are retries).
    assert_eq!(c.retries(), 2);

    fake.throttle(&[Some("0"); 10]);
    let e = read(&c, Resource::Customers, None).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("HTTP 429"), "{e}");
}

#[tokio::test]
async fn a_wrong_key_is_a_config_error_that_never_shows_the_key() {
    let fake = FakeStripe::start().await;
    let config = serde_json::from_value(json!({
        "api_key": "sk_test_wrong_secret", "base_url": fake.uri()
    }))
    .unwrap();
    let c = Arc::new(StripeConnector::connect(config).await.unwrap());
    let e = read(&c, Resource::Customers, None).await.unwrap_err();
    assert_eq!(e.origin(), ErrorOrigin::Config, "{e}");
    assert!(e.to_string().contains("HTTP 401"), "{e}");
    assert!(!e.to_string().contains("sk_test_wrong_secret"), "{e}");

    let config =
        serde_json::from_value(json!({ "api_key_env": "DOSSIER_TEST_STRIPE_UNSET" })).unwrap();
    let e = StripeConnector::connect(config).await.unwrap_err();
    assert!(e.to_string().contains("DOSSIER_TEST_STRIPE_UNSET"), "{e}");

    let config =
        serde_json::from_value(json!({ "base_url": "http://api.example.com", "api_key": API_KEY }))
            .unwrap();
    let e = StripeConnector::connect(config).await.unwrap_err();
    assert!(e.to_string().contains("plain http"), "{e}");
}

/// Every parameter the connector sends exists in Stripe's spec for that path, and every
/// field it reads exists in the object's schema.
#[tokio::test]
async fn requests_and_fields_follow_the_openapi_spec() {
    let spec: Json = serde_json::from_str(include_str!("../fixtures/spec-subset.json")).unwrap();
    let fake = FakeStripe::start().await;
    fake.seed(12, T0);
    let c = connect(&fake, 5).await;
    for resource in [Resource::Customers, Resource::Charges] {
        let first = read(&c, resource, None).await.unwrap();
        read(&c, resource, Some(last_state(&first))).await.unwrap();
    }
    for (path, query) in fake.requests() {
        let allowed: Vec<&str> = spec["paths"][&path]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} is not in the spec"))
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        for (k, _) in query {
            let base = k.split('[').next().unwrap();
            assert!(
                allowed.contains(&base),
                "{path}: parameter {k} is not in the spec"
            );
        }
    }
    let read_fields: &[(&str, &[&str])] = &[
        (
            "customer",
            &[
                "id",
                "object",
                "created",
                "email",
                "name",
                "phone",
                "description",
                "currency",
                "balance",
                "delinquent",
                "address",
                "preferred_locales",
                "livemode",
                "metadata",
            ],
        ),
        ("address", &["country", "city"]),
        (
            "charge",
            &[
                "id",
                "object",
                "created",
                "customer",
                "billing_details",
                "receipt_email",
                "amount",
                "currency",
                "amount_captured",
                "amount_refunded",
                "status",
                "paid",
                "refunded",
                "description",
                "payment_method_details",
                "livemode",
                "metadata",
            ],
        ),
        ("billing_details", &["email"]),
        ("payment_method_details", &["type"]),
        ("event", &["id", "created", "type", "data"]),
        ("notification_event_data", &["object"]),
    ];
    for (schema, fields) in read_fields {
        let props: Vec<&str> = spec["schemas"][schema]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        for f in *fields {
            assert!(props.contains(f), "{schema}.{f} is not in the spec");
        }
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
