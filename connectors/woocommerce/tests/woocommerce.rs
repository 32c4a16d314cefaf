//! The WooCommerce connector against a fake REST API v3 built from the documentation's sample
//! responses (`fixtures/`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use dossier_connector::{
    Batch, Connector, ConnectorError, ErrorOrigin, ReadRequest, StreamState, Value, read_to_end,
};
use dossier_connector_woocommerce::{Config, Resource, Stream, WooConnector};
use dossier_http_source::ApiResource as _;
use serde_json::{Value as Json, json};
use wiremock::matchers::{basic_auth, method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "ck_test";
const SECRET: &str = "cs_test";

fn fixture(name: &str) -> Json {
    let p = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The site's timezone is UTC-3, as in the samples (`date_created` 16:28, `_gmt` 19:28).
fn local(gmt: &str) -> String {
    let t = NaiveDateTime::parse_from_str(gmt, "%Y-%m-%dT%H:%M:%S").unwrap();
    (t - TimeDelta::hours(3))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

fn gmt(t: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S")
        .unwrap()
        .and_utc()
}

/// A customer shaped like the sample, with another id, email and modification time.
fn customer(id: i64, modified_gmt: &str) -> Json {
    let mut c = fixture("customers-list.json")[0].clone();
    c["id"] = json!(id);
    c["email"] = json!(format!("customer{id}@example.com"));
    c["date_modified_gmt"] = json!(modified_gmt);
    c["date_modified"] = json!(local(modified_gmt));
    c
}

/// An order shaped like the samples: 723 has a customer, 727 is a guest order.
fn order(id: i64, customer_id: i64, modified_gmt: &str) -> Json {
    let sample = if customer_id == 0 { 0 } else { 1 };
    let mut o = fixture("orders-list.json")[sample].clone();
    o["id"] = json!(id);
    o["number"] = json!(id.to_string());
    o["customer_id"] = json!(customer_id);
    o["date_modified_gmt"] = json!(modified_gmt);
    o["date_modified"] = json!(local(modified_gmt));
    o
}

#[derive(Default)]
struct State {
    customers: Vec<Json>,
    orders: Vec<Json>,
    requests: usize,
    served: usize,
    queries: Vec<Vec<(String, String)>>,
    inject: VecDeque<ResponseTemplate>,
    storm_after: Option<usize>,
    /// After the first page of orders is served, this order gets this modification time.
    modify_after_first: Option<(i64, String)>,
    /// Behave like a WooCommerce older than `modified_after`.
    ignore_modified_after: bool,
}

struct Responder(Arc<Mutex<State>>);

fn wc_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "code": code, "message": message, "data": { "status": status }
    }))
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        s.requests += 1;
        if let Some(r) = s.inject.pop_front() {
            return r;
        }
        if s.storm_after.is_some_and(|n| s.served >= n) {
            return ResponseTemplate::new(502)
                .set_body_string("<html><title>502 Bad Gateway</title></html>");
        }
        let q: Vec<(String, String)> = request
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        s.queries.push(q.clone());
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let per_page: usize = get("per_page").map_or(10, |v| v.parse().unwrap());
        if !(1..=100).contains(&per_page) {
            return wc_error(400, "rest_invalid_param", "Invalid parameter(s): per_page");
        }
        let page: usize = get("page").map_or(1, |v| v.parse().unwrap());
        let desc = get("order") != Some("asc");
        let resource = request.url.path().rsplit('/').next().unwrap().to_string();
        let mut records = match resource.as_str() {
            "customers" => {
                // `modified_after` is not a customers parameter: WooCommerce ignores it.
                match get("orderby") {
                    Some("id") => {}
                    other => panic!("customers must be read in a stable order, got {other:?}"),
                }
                let mut c = s.customers.clone();
                c.sort_by_key(|c| c["id"].as_i64());
                c
            }
            "orders" => {
                let key = match get("orderby") {
                    None | Some("date") => "date_created_gmt",
                    Some("modified") => "date_modified_gmt",
                    Some("id" | "include" | "title" | "slug") => "id",
                    Some(_) => {
                        return wc_error(
                            400,
                            "rest_invalid_param",
                            "Invalid parameter(s): orderby",
                        );
                    }
                };
                let gmt_dates = get("dates_are_gmt") == Some("true");
                let mut o = s.orders.clone();
                if let Some(after) = get("modified_after").filter(|_| !s.ignore_modified_after) {
                    let after = gmt(after);
                    // Without dates_are_gmt the value is taken in the site's timezone.
                    let after = if gmt_dates {
                        after
                    } else {
                        after + TimeDelta::hours(3)
                    };
                    o.retain(|r| gmt(r["date_modified_gmt"].as_str().unwrap()) > after);
                }
                // Ties come in an order of the database's choosing: here, highest id first.
                o.sort_by(|a, b| {
                    let ka = a[key]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{:020}", a["id"]));
                    let kb = b[key]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{:020}", b["id"]));
                    ka.cmp(&kb).then(b["id"].as_i64().cmp(&a["id"].as_i64()))
                });
                o
            }
            _ => {
                return wc_error(
                    404,
                    "rest_no_route",
                    "No route was found matching the URL and request method",
                );
            }
        };
        if desc {
            records.reverse();
        }
        let total = records.len();
        let pages = total.div_ceil(per_page);
        if resource == "orders" && page > pages.max(1) {
            return wc_error(
                400,
                "rest_post_invalid_page_number",
                "The page number requested is larger than the number of pages available.",
            );
        }
        let body: Vec<Json> = records
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        s.served += 1;
        if resource == "orders"
            && let Some((id, t)) = s.modify_after_first.take()
        {
            let o = s.orders.iter_mut().find(|o| o["id"] == id).unwrap();
            o["date_modified_gmt"] = json!(t);
        }
        ResponseTemplate::new(200)
            .insert_header("X-WP-Total", total.to_string())
            .insert_header("X-WP-TotalPages", pages.to_string())
            .set_body_json(body)
    }
}

struct Fake {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

impl Fake {
    async fn start() -> Fake {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(method("GET"))
            .and(path_regex("^/wp-json/wc/v3/"))
            .and(basic_auth(KEY, SECRET))
            .respond_with(Responder(state.clone()))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(wc_error(
                401,
                "woocommerce_rest_cannot_view",
                "Sorry, you cannot list resources.",
            ))
            .with_priority(10)
            .mount(&server)
            .await;
        Fake { server, state }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    async fn connect(&self, per_page: usize, secret: &str) -> Arc<WooConnector> {
        let config: Config = serde_json::from_value(json!({
            "url": self.server.uri(),
            "consumer_key": KEY,
            "consumer_secret": secret,
            "per_page": per_page,
            "retry": { "max_retries": 3, "base_delay_ms": 1, "max_delay_ms": 10, "timeout_secs": 5 },
        }))
        .unwrap();
        Arc::new(WooConnector::connect(config).await.unwrap())
    }
}

async fn read(
    c: &Arc<WooConnector>,
    resource: Resource,
    state: Option<StreamState>,
) -> (Vec<Batch>, Option<ConnectorError>) {
    read_to_end(
        c,
        ReadRequest {
            name: resource.name().to_string(),
            stream: Stream { resource },
            state,
            batch_size: 1000,
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

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort();
    v
}

#[tokio::test]
async fn customers_are_scanned_and_only_changes_emitted() {
    let fake = Fake::start().await;
    {
        let mut s = fake.state();
        s.customers = (1..=25)
            .map(|i| customer(i, &format!("2024-05-01T10:{i:02}:00")))
            .collect();
        s.orders = vec![order(500, 3, "2024-05-02T08:00:00")];
    }
    let c = fake.connect(10, SECRET).await;
    let (batches, err) = read(&c, Resource::Customers, None).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(batches.len(), 3);
    assert_eq!(ids(&batches), (1..=25).collect::<Vec<_>>());
    let b = &batches[0];
    assert_eq!(
        field(b, 0, "email"),
        &Value::Text("customer1@example.com".into())
    );
    assert_eq!(field(b, 0, "first_name"), &Value::Text("João".into()));
    assert_eq!(field(b, 0, "country"), &Value::Text("BR".into()));
    // The checkpoint moves only with the last batch: a run stopped midway scans again.
    assert_eq!(batches[0].state.0, Json::Null);
    let state = batches.last().unwrap().state.clone();
    assert_eq!(
        state.0,
        json!({
            "customers": { "modified_after": "2024-05-01T10:25:00Z", "ids": [25] },
            "orders": { "modified_after": "2024-05-02T08:00:00Z", "ids": [] },
        })
    );
    // One request for the latest order, three pages of customers (X-WP-TotalPages says when
    // to stop).
    assert_eq!(fake.state().requests, 4);

    // Nothing changed. The order of the anchor's second is looked at again (the first run did
    // not record its id): its customer comes again, harmlessly, once.
    let (again, err) = read(&c, Resource::Customers, Some(state.clone())).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ids(&again), vec![3]);
    let state = again.last().unwrap().state.clone();
    assert_eq!(state.0["orders"]["ids"], json!([500]));
    // Then nothing at all: one empty batch, which keeps the checkpoint.
    let (none, err) = read(&c, Resource::Customers, Some(state.clone())).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(none.len(), 1);
    assert!(ids(&none).is_empty());
    assert_eq!(none[0].state, state);

    // A customer modified, one created in the checkpoint's own second, and an order paid by
    // another customer (WooCommerce leaves that customer's date_modified_gmt alone).
    {
        let mut s = fake.state();
        s.customers[6] = customer(7, "2024-05-03T09:00:00");
        s.customers.push(customer(26, "2024-05-01T10:25:00"));
        s.orders.push(order(501, 12, "2024-05-03T09:30:00"));
        s.orders.push(order(502, 0, "2024-05-03T09:30:00"));
    }
    let (changed, err) = read(&c, Resource::Customers, Some(state)).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ids(&changed), vec![7, 12, 26]);
    let state = changed.last().unwrap().state.clone();
    assert_eq!(
        state.0,
        json!({
            "customers": { "modified_after": "2024-05-03T09:00:00Z", "ids": [7] },
            "orders": { "modified_after": "2024-05-03T09:30:00Z", "ids": [502, 501] },
        })
    );
    let (none, _) = read(&c, Resource::Customers, Some(state)).await;
    assert!(ids(&none).is_empty());
}

#[tokio::test]
async fn a_state_from_before_incremental_customers_reads_them_all_once() {
    let fake = Fake::start().await;
    fake.state().customers = (1..=5)
        .map(|i| customer(i, "2024-05-01T10:00:00"))
        .collect();
    let c = fake.connect(10, SECRET).await;
    let old = StreamState(json!({ "max_date_modified_gmt": "2024-05-01T10:00:00Z" }));
    let (batches, err) = read(&c, Resource::Customers, Some(old)).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ids(&batches), vec![1, 2, 3, 4, 5]);
    // No orders at all: the order anchor is the epoch, so the first order made counts.
    let state = batches.last().unwrap().state.clone();
    assert_eq!(
        state.0["orders"],
        json!({ "modified_after": "1970-01-01T00:00:00Z", "ids": [] })
    );
    fake.state()
        .orders
        .push(order(900, 4, "2024-06-01T00:00:00"));
    let (batches, _) = read(&c, Resource::Customers, Some(state)).await;
    assert_eq!(ids(&batches), vec![4]);
}

#[tokio::test]
async fn a_customer_scan_failing_midway_keeps_the_previous_checkpoint() {
    let fake = Fake::start().await;
    fake.state().customers = (1..=25)
        .map(|i| customer(i, &format!("2024-05-01T10:{i:02}:00")))
        .collect();
    let c = fake.connect(10, SECRET).await;
    let (first, _) = read(&c, Resource::Customers, None).await;
    let state = first.last().unwrap().state.clone();
    {
        let mut s = fake.state();
        for i in [3, 18] {
            s.customers[i - 1] = customer(i as i64, "2024-05-09T00:00:00");
        }
        // The anchor's orders and the first page answer, then the store goes down.
        s.served = 0;
        s.storm_after = Some(2);
    }
    let (partial, err) = read(&c, Resource::Customers, Some(state.clone())).await;
    assert!(err.is_some_and(|e| e.is_retryable()));
    assert_eq!(ids(&partial), vec![3]);
    assert!(partial.iter().all(|b| b.state == state), "{partial:?}");
    fake.state().storm_after = None;
    let (rest, err) = read(&c, Resource::Customers, Some(state)).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ids(&rest), vec![3, 18]);
}

#[tokio::test]
async fn orders_full_then_incremental_with_a_guest_order() {
    let fake = Fake::start().await;
    {
        let mut s = fake.state();
        s.orders = fixture("orders-list.json").as_array().unwrap().clone();
        s.orders
            .extend((1..=8).map(|i| order(1000 + i, 26, &format!("2024-05-01T10:{i:02}:00"))));
    }
    let c = fake.connect(4, SECRET).await;
    let (batches, err) = read(&c, Resource::Orders, None).await;
    assert!(err.is_none(), "{err:?}");
    let all = ids(&batches);
    assert_eq!(all[..2], [723, 727]);
    assert_eq!(
        sorted(all.clone()),
        sorted([723, 727].into_iter().chain(1001..=1008).collect())
    );

    // The guest order (727) from the sample: no customer id, its billing email to link by.
    let b = &batches[0];
    let guest = b.rows.iter().position(|r| r[0] == Value::Int(727)).unwrap();
    assert_eq!(field(b, guest, "customer_id"), &Value::Null);
    assert_eq!(
        field(b, guest, "billing_email"),
        &Value::Text("john.doe@example.com".into())
    );
    assert_eq!(field(b, guest, "total"), &Value::Decimal("29.35".into()));
    assert_eq!(field(b, guest, "line_items_count"), &Value::Int(2));
    assert_eq!(
        field(b, guest, "date_created"),
        &Value::DateTime(gmt("2017-03-22T19:28:02"))
    );
    let member = b.rows.iter().position(|r| r[0] == Value::Int(723)).unwrap();
    assert_eq!(field(b, member, "customer_id"), &Value::Int(26));

    // Two orders change: the next run reads only them, from the GMT checkpoint.
    let state = batches.last().unwrap().state.clone();
    assert_eq!(
        state.0,
        json!({ "modified_after": "2024-05-01T10:08:00Z", "ids": [1008] })
    );
    {
        let mut s = fake.state();
        for o in s
            .orders
            .iter_mut()
            .filter(|o| o["id"] == 727 || o["id"] == 1003)
        {
            o["date_modified_gmt"] = json!("2024-06-01T00:00:00");
        }
        s.queries.clear();
    }
    let (batches, err) = read(&c, Resource::Orders, Some(state)).await;
    assert!(err.is_none());
    assert_eq!(sorted(ids(&batches)), vec![727, 1003]);
    let q = &fake.state().queries[0];
    for (k, v) in [
        ("modified_after", "2024-05-01T10:07:59"),
        ("dates_are_gmt", "true"),
        ("orderby", "modified"),
        ("order", "asc"),
    ] {
        assert!(
            q.contains(&(k.to_string(), v.to_string())),
            "{k}={v} missing from {q:?}"
        );
    }
}

#[tokio::test]
async fn orders_sharing_a_modification_second_across_pages() {
    let fake = Fake::start().await;
    {
        let mut s = fake.state();
        s.orders = (1..=3)
            .map(|i| order(i, 26, &format!("2024-05-01T09:00:0{i}")))
            .collect();
        s.orders
            .extend((10..22).map(|i| order(i, 26, "2024-05-01T10:00:00")));
        s.orders.push(order(30, 0, "2024-05-01T11:00:00"));
    }
    let c = fake.connect(5, SECRET).await;
    let (batches, err) = read(&c, Resource::Orders, None).await;
    assert!(err.is_none(), "{err:?}");
    let all = ids(&batches);
    assert_eq!(
        sorted(all.clone()),
        sorted((1..=3).chain(10..22).chain([30]).collect())
    );
    // Resume from each batch's checkpoint, as after a crash: the rest, each order once.
    for (i, b) in batches.iter().enumerate() {
        let (rest, err) = read(&c, Resource::Orders, Some(b.state.clone())).await;
        assert!(err.is_none());
        let seen: usize = batches[..=i].iter().map(|b| b.rows.len()).sum();
        assert_eq!(
            sorted(ids(&rest)),
            sorted(all[seen..].to_vec()),
            "resuming after batch {i}"
        );
    }
}

#[tokio::test]
async fn many_orders_in_one_second_cost_linear_requests_and_a_rerun_two_pages() {
    let fake = Fake::start().await;
    fake.state().orders = (1..=100)
        .map(|i| order(i, 26, "2024-05-01T10:00:00"))
        .collect();
    let c = fake.connect(10, SECRET).await;
    let (batches, err) = read(&c, Resource::Orders, None).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(sorted(ids(&batches)), (1..=100).collect::<Vec<_>>());
    // About two requests a page (each anchored page overlaps the last), not 1 + 2 + ... + 10.
    let first = fake.state().requests;
    assert!(first <= 22, "{first} requests for 10 pages");
    // Nothing changed: the next run looks at the last pages of that second only.
    fake.state().requests = 0;
    let (rest, err) = read(
        &c,
        Resource::Orders,
        Some(batches.last().unwrap().state.clone()),
    )
    .await;
    assert!(err.is_none(), "{err:?}");
    assert!(rest.iter().all(|b| b.rows.is_empty()), "{rest:?}");
    assert!(
        fake.state().requests <= 2,
        "{} requests",
        fake.state().requests
    );
}

#[tokio::test]
async fn an_order_modified_during_the_read_is_not_lost() {
    let fake = Fake::start().await;
    {
        let mut s = fake.state();
        s.orders = (1..=12)
            .map(|i| order(i, 26, &format!("2024-05-01T10:{i:02}:00")))
            .collect();
        // Order 2, already read, changes while page 1 is processed: every order after it
        // moves one place up. Page-number paging would skip order 5.
        s.modify_after_first = Some((2, "2024-05-02T00:00:00".into()));
    }
    let c = fake.connect(4, SECRET).await;
    let (batches, err) = read(&c, Resource::Orders, None).await;
    assert!(err.is_none());
    let mut all = ids(&batches);
    all.sort();
    all.dedup();
    assert_eq!(all, (1..=12).collect::<Vec<_>>());
}

#[tokio::test]
async fn retries_then_a_clean_retryable_error_with_the_state_kept() {
    let fake = Fake::start().await;
    fake.state().orders = (1..=10)
        .map(|i| order(i, 26, &format!("2024-05-01T10:{i:02}:00")))
        .collect();
    {
        let mut s = fake.state();
        s.inject
            .push_back(ResponseTemplate::new(429).insert_header("Retry-After", "0"));
        s.inject.push_back(ResponseTemplate::new(503));
        s.storm_after = Some(2);
    }
    let c = fake.connect(3, SECRET).await;
    let (batches, err) = read(&c, Resource::Orders, None).await;
    // Each request is anchored a second before the checkpoint: the second page holds 3 again.
    assert_eq!(ids(&batches), vec![1, 2, 3, 4, 5]);
    let err = err.unwrap();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("HTTP 502"), "{err}");
    // 2 injected + 2 pages + 1 attempt and 3 retries.
    assert_eq!(fake.state().requests, 8);

    fake.state().storm_after = None;
    let (rest, err) = read(
        &c,
        Resource::Orders,
        Some(batches.last().unwrap().state.clone()),
    )
    .await;
    assert!(err.is_none());
    assert_eq!(ids(&rest), vec![6, 7, 8, 9, 10]);
}

#[tokio::test]
async fn an_html_answer_is_a_clear_error() {
    let fake = Fake::start().await;
    fake.state().inject.push_back(
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/html")
            .set_body_string("<!DOCTYPE html><html><head><title>WordPress &rsaquo; Error</title></head><body>There has been a critical error on this website.</body></html>"),
    );
    let c = fake.connect(10, SECRET).await;
    let (_, err) = read(&c, Resource::Orders, None).await;
    let err = err.unwrap().to_string();
    assert!(
        err.contains("not JSON") && err.contains("WordPress"),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_a_config_error() {
    let fake = Fake::start().await;
    let c = fake.connect(10, "cs_revoked").await;
    let (_, err) = read(&c, Resource::Customers, None).await;
    let err = err.unwrap();
    assert_eq!(err.origin(), ErrorOrigin::Config, "{err}");
    assert!(
        err.to_string().contains("woocommerce_rest_cannot_view"),
        "{err}"
    );
    assert!(!err.to_string().contains("cs_revoked"));
    let problems = c
        .check(&[(
            "orders".into(),
            Stream {
                resource: Resource::Orders,
            },
        )])
        .await;
    assert_eq!(problems.len(), 1);
}

#[tokio::test]
async fn the_sample_error_bodies_are_understood() {
    let fake = Fake::start().await;
    let body = fixture("error-wp-rest-no-route.json");
    fake.state()
        .inject
        .push_back(ResponseTemplate::new(404).set_body_json(body));
    let c = fake.connect(10, SECRET).await;
    let (_, err) = read(&c, Resource::Orders, None).await;
    let err = err.unwrap();
    assert_eq!(err.origin(), ErrorOrigin::Config);
    assert!(
        err.to_string().contains("rest_no_route") && err.to_string().contains("permalinks"),
        "{err}"
    );
}

/// The example config's mappings compile against the streams' fields and map the samples.
#[tokio::test]
async fn the_example_mappings_fit_the_streams() {
    let fake = Fake::start().await;
    {
        let mut s = fake.state();
        s.customers = fixture("customers-list.json").as_array().unwrap().clone();
        s.orders = fixture("orders-list.json").as_array().unwrap().clone();
    }
    let c = fake.connect(10, SECRET).await;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/woocommerce/dossier.toml"
    );
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let source = &config["sources"][0];
    assert_eq!(source["connector"].as_str(), Some("woocommerce"));
    for stream in source["streams"].as_array().unwrap() {
        let name = stream["name"].as_str().unwrap();
        let settings: Stream = stream["read"].clone().try_into().unwrap();
        let mapping: dossier_core::mapping::MappingConfig =
            stream["mapping"].clone().try_into().unwrap();
        let info = c.describe(name, &settings).await.unwrap();
        let compiled = mapping.compile("woo", name, &info.fields).unwrap();
        let (batches, err) = read(&c, settings.resource, None).await;
        assert!(err.is_none());
        let mut mapped = 0;
        for b in &batches {
            let bound = compiled.bind(&b.fields).unwrap();
            for row in &b.rows {
                let guest = name == "orders" && row[2] == Value::Null;
                match bound.apply(row) {
                    Ok(_) => mapped += 1,
                    Err(e) if guest => eprintln!("guest order skipped: {e}"),
                    Err(e) => panic!("{name}: {e}"),
                }
            }
        }
        assert!(mapped >= 1, "{name}");
    }
}

#[tokio::test]
async fn a_store_ignoring_modified_after_is_paged_through() {
    let fake = Fake::start().await;
    fake.state().orders = (1..=9)
        .map(|i| order(i, 26, &format!("2024-05-01T10:{i:02}:00")))
        .collect();
    let c = fake.connect(2, SECRET).await;
    let (batches, _) = read(&c, Resource::Orders, None).await;
    let state = batches.last().unwrap().state.clone();
    // An old WooCommerce: modified_after is dropped before it reaches the fake.
    {
        let mut s = fake.state();
        s.ignore_modified_after = true;
        for o in s.orders.iter_mut().filter(|o| o["id"] == 3 || o["id"] == 4) {
            o["date_modified_gmt"] = json!("2024-06-01T00:00:00");
        }
        s.requests = 0;
    }
    let (batches, err) = read(&c, Resource::Orders, Some(state)).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(sorted(ids(&batches)), vec![3, 4]);
    // Five pages of two, each read once: no quadratic re-reading.
    assert!(
        fake.state().requests <= 6,
        "{} requests",
        fake.state().requests
    );
}

#[tokio::test]
async fn a_store_refusing_orderby_modified_is_a_config_error() {
    let fake = Fake::start().await;
    fake.state().inject.push_back(wc_error(
        400,
        "rest_invalid_param",
        "Invalid parameter(s): orderby",
    ));
    let c = fake.connect(10, SECRET).await;
    let (_, err) = read(&c, Resource::Orders, None).await;
    let err = err.unwrap();
    assert_eq!(err.origin(), ErrorOrigin::Config, "{err}");
    assert!(err.to_string().contains("orderby=modified"), "{err}");
}

/// The example config, end to end: the registry, the engine and the store, over the fake.
#[tokio::test]
async fn the_example_config_syncs_end_to_end() {
    let fake = Fake::start().await;
    {
        let mut s = fake.state();
        s.customers = fixture("customers-list.json").as_array().unwrap().clone();
        s.orders = fixture("orders-list.json").as_array().unwrap().clone();
        s.orders.push(order(800, 26, "2024-05-01T10:00:00"));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/woocommerce/dossier.toml"
    );
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("${WOO_URL}", &fake.server.uri())
        .replace("${WOO_KEY}", KEY)
        .replace("${WOO_SECRET}", SECRET);
    let mut registry = dossier_connector::Registry::new();
    registry.register::<dossier_connector_woocommerce::WooConnector>();
    let loaded =
        dossier_sync::Config::parse(&text, "example", dir.path().to_path_buf(), &registry).unwrap();
    let store = dossier_store::SqlStore::open(&loaded.config.store.url)
        .await
        .unwrap();
    let engine = dossier_sync::Engine::new(store, registry, loaded)
        .await
        .unwrap();
    let run = engine
        .sync("woo", None, "test", &dossier_sync::NoProgress)
        .await
        .unwrap();
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.rows_read(), 5);
    let ws = engine.workspace().to_string();
    let joao = engine
        .store()
        .contact_by_email(&ws, "joao.silva@example.com")
        .await
        .unwrap()
        .unwrap();
    let aggs = engine.store().aggregates(&ws, &[joao.id]).await.unwrap();
    let a = &aggs[&joao.id];
    assert_eq!(a["transactions"].to_json(), json!(2));
    assert_eq!(a["total_spent"].to_json(), json!(78));
    assert_eq!(a["avg_basket"].to_json(), json!(39));
    assert!(a.contains_key("last_order_at"), "{a:?}");
    // The guest order carries John's billing email: it attaches to his contact.
    let john = engine
        .store()
        .contact_by_email(&ws, "john.doe@example.com")
        .await
        .unwrap()
        .unwrap();
    let aggs = engine.store().aggregates(&ws, &[john.id]).await.unwrap();
    assert_eq!(aggs[&john.id]["transactions"].to_json(), json!(1));

    // A second run reads no order, and only the customer of the order of the anchor's second
    // (order 800, customer 26: looked at again once, harmlessly).
    let run = engine
        .sync("woo", None, "test", &dossier_sync::NoProgress)
        .await
        .unwrap();
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.streams["orders"].read, 0);
    assert_eq!(run.streams["customers"].read, 1);
    // A third run reads nothing at all.
    let run = engine
        .sync("woo", None, "test", &dossier_sync::NoProgress)
        .await
        .unwrap();
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.streams["orders"].read, 0);
    assert_eq!(run.streams["customers"].read, 0);
}
