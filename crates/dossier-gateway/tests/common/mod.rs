//! A real SQLite store in a tempdir, seeded through the store's ingest API, and helpers that
//! call the router in-process (no port).

#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use dossier_core::model::{ContactLink, SessionRecord};
use dossier_core::{AggOp, AggregateRule, DataValue, Identity, MappedRecord, ProfileField};
use dossier_gateway::{Caller, DossierSchema, GatewayConfig, SyncTrigger};
use dossier_store::{BatchWrite, SqlStore};
use dossier_test_support::shop::{self, key};
pub use dossier_test_support::shop::{WS, order};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Customers seeded by [`seeded`].
pub const CUSTOMERS: u32 = 30;

pub struct TestApp {
    pub store: SqlStore,
    pub schema: DossierSchema,
    pub app: Router,
    _dir: tempfile::TempDir,
}

/// The shop's customer, with the first name (`User{id}`) the gateway's tests read.
pub fn customer(id: u32, email: &str, country: &str, plan: &str) -> MappedRecord {
    let mut record = shop::customer(id, email, country, plan);
    if let MappedRecord::Contact(c) = &mut record {
        c.profile
            .push((ProfileField::FirstName, format!("User{id}")));
    }
    record
}

fn visit(id: u32, customer: u32, at: i64) -> MappedRecord {
    MappedRecord::Session(SessionRecord {
        external_id: format!("v{id}"),
        kind: "visit".into(),
        contact: Some(ContactLink::Identity(Identity::external(
            "shop",
            "customers",
            &customer.to_string(),
        ))),
        started_at: Some(at),
        ended_at: Some(at + 60_000_000),
        data: vec![(key("page"), DataValue::String("/pricing".into()))],
    })
}

pub fn batch(stream: &str, records: Vec<MappedRecord>) -> BatchWrite {
    shop::batch(stream, records, 1)
}

pub fn rules() -> Vec<AggregateRule> {
    vec![
        AggregateRule::new("transactions", AggOp::Count, "order", None).unwrap(),
        AggregateRule::new("total_spent", AggOp::Sum, "order", Some("total")).unwrap(),
        AggregateRule::new("avg_basket", AggOp::Avg, "order", Some("total")).unwrap(),
    ]
}

/// The expected page of `contacts(where: fr_basic_big)`: customers `i` with `i % 6 == 0`
/// (FR, basic plan) and an average basket over 50 (`i * 10`).
pub fn fr_basic_big() -> Vec<u32> {
    (1..=CUSTOMERS)
        .filter(|i| i % 6 == 0 && i * 10 > 50)
        .collect()
}

/// A store with [`CUSTOMERS`] customers: customer `i` lives in FR when `i % 3 == 0` (else DE),
/// is on the `basic` plan when `i` is even (else `pro`) and has one order of `i * 10`.
/// Customer 1 (`user1@example.com`) also has three older orders and two visits.
pub async fn seeded() -> TestApp {
    seeded_with(GatewayConfig::open(WS), |_| None).await
}

/// [`seeded`] with a config, and a sync trigger made over the seeded store.
pub async fn seeded_with(
    config: GatewayConfig,
    sync: impl FnOnce(SqlStore) -> Option<Arc<dyn SyncTrigger>>,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = SqlStore::open(&url).await.unwrap();
    store.ensure_workspace(WS).await.unwrap();
    store.set_rules(WS, &rules()).await.unwrap();
    let customers = (1..=CUSTOMERS)
        .map(|i| {
            let country = if i % 3 == 0 { "FR" } else { "DE" };
            let plan = if i % 2 == 0 { "basic" } else { "pro" };
            customer(i, &format!("user{i}@example.com"), country, plan)
        })
        .collect();
    store
        .apply_batch(WS, &batch("customers", customers))
        .await
        .unwrap();
    let mut orders: Vec<_> = (1..=CUSTOMERS)
        .map(|i| order(i, i, f64::from(i) * 10.0, 1_000_000 + i64::from(i)))
        .collect();
    orders.extend((0..3).map(|k| order(100 + k, 1, 5.0, 500 + i64::from(k))));
    store
        .apply_batch(WS, &batch("orders", orders))
        .await
        .unwrap();
    store
        .apply_batch(
            WS,
            &batch("visits", vec![visit(1, 1, 700), visit(2, 1, 800)]),
        )
        .await
        .unwrap();
    let schema =
        dossier_gateway::build_schema(store.clone(), sync(store.clone()), None, None, config);
    let app = dossier_gateway::router(schema.clone(), store.clone());
    TestApp {
        store,
        schema,
        app,
        _dir: dir,
    }
}

/// Fragments `F0` (selecting `leaf`) to `F<levels>` on type `on`, each spreading the one
/// below `fan` times: `...F<levels>` selects `leaf` fan^levels times once expanded.
pub fn fan_out(levels: usize, fan: usize, on: &str, leaf: &str) -> String {
    let mut q = format!("fragment F0 on {on} {{ {leaf} }}");
    for i in 1..=levels {
        let spreads = vec![format!("...F{}", i - 1); fan].join(" ");
        q.push_str(&format!(" fragment F{i} on {on} {{ {spreads} }}"));
    }
    q
}

/// Percent-encodes a URL query value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl TestApp {
    /// Runs a document in-process (no HTTP) as an admin of [`WS`].
    pub async fn exec(&self, query: &str, variables: Option<Value>) -> Value {
        dossier_gateway::execute(
            &self.schema,
            &self.store,
            Caller::admin(WS),
            query,
            variables,
        )
        .await
    }

    /// Sends a request to the router; returns the status, content type and body.
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, String, String) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, String, String) {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    /// POSTs a document to `/graphql`; returns the status and the JSON response.
    pub async fn post(&self, query: &str, variables: Value) -> (StatusCode, Value) {
        let body = json!({ "query": query, "variables": variables }).to_string();
        let req = Request::post("/graphql")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let (status, _, body) = self.send(req).await;
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
        (status, json)
    }

    /// POSTs a document that must succeed; returns its `data`.
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        let (status, out) = self.post(query, variables).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        assert!(out.get("errors").is_none(), "unexpected errors: {out:#}");
        out["data"].clone()
    }

    /// POSTs a document that must fail; returns its first error message.
    pub async fn error(&self, query: &str, variables: Value) -> String {
        let (status, out) = self.post(query, variables).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        out["errors"][0]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error: {out:#}"))
            .to_string()
    }

    /// The store id of customer `i` (seeded as `user{i}@example.com`).
    pub async fn id_of(&self, i: u32) -> i64 {
        self.store
            .contact_by_email(WS, &format!("user{i}@example.com"))
            .await
            .unwrap()
            .unwrap()
            .id
    }
}
