//! A local fake of the Stripe list API, for tests: `GET /v1/customers`, `/v1/charges` and
//! `/v1/events`, following Stripe's documented behaviour (see `../fixtures/NOTES.md`):
//!
//! - bearer auth with [`API_KEY`], else HTTP 401 with Stripe's error body;
//! - lists newest first (`created` descending, then id), `limit` 1..=100 (default 10),
//!   `starting_after` (an unknown id is a 400 `resource_missing`), `created[gte|gt|lte|lt]`,
//!   and for events `types[]`; any other query parameter is a 400 `parameter_unknown`, as
//!   stripe-mock validates parameters against the spec;
//! - the envelope `{"object": "list", "url", "has_more", "data"}`;
//! - [`FakeStripe::throttle`] answers the next requests with HTTP 429 (with or without
//!   `Retry-After`, which Stripe does not promise).
//!
//! Objects are Stripe's own examples (`fixtures3.json`, copied into `../fixtures` with its
//! SOURCE.md and license) with ids, emails, amounts and times varied.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value as Json, json};
use wiremock::{MockServer, Request, Respond, ResponseTemplate};

/// The API key the fake accepts.
pub const API_KEY: &str = "sk_test_dossier_fake_key";

const FIXTURES: &str = include_str!("../../fixtures/fixtures3.json");

/// Stripe's example object of `resource` (`customer`, `charge`, `event`).
pub fn fixture(resource: &str) -> Json {
    let all: Json = serde_json::from_str(FIXTURES).expect("fixtures3.json is JSON");
    all["resources"][resource].clone()
}

#[derive(Default)]
struct State {
    customers: Vec<Json>,
    charges: Vec<Json>,
    events: Vec<Json>,
    throttle: Vec<Option<String>>,
    requests: Vec<(String, Vec<(String, String)>)>,
    next_event: u64,
}

/// The fake server and its data.
#[derive(Clone)]
pub struct FakeStripe {
    server: Arc<MockServer>,
    state: Arc<Mutex<State>>,
}

fn error(status: u16, kind: &str, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": { "type": kind, "code": code, "message": message }
    }))
}

struct Responder(Arc<Mutex<State>>);

const LIST_PARAMS: &[&str] = &["limit", "starting_after", "ending_before"];

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let path = req.url.path().to_string();
        let query: Vec<(String, String)> = req
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        st.requests.push((path.clone(), query.clone()));
        if !st.throttle.is_empty() {
            let retry_after = st.throttle.remove(0);
            let mut r = error(
                429,
                "invalid_request_error",
                "rate_limit",
                "Too many requests hit the API too quickly.",
            );
            if let Some(s) = retry_after {
                r = r.insert_header("Retry-After", s.as_str());
            }
            return r;
        }
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if auth != format!("Bearer {API_KEY}") {
            return error(
                401,
                "invalid_request_error",
                "api_key_invalid",
                "Invalid API Key provided: sk_****",
            );
        }
        let (objects, extra): (&Vec<Json>, &[&str]) = match path.as_str() {
            "/v1/customers" => (
                &st.customers,
                &[
                    "created[gte]",
                    "created[gt]",
                    "created[lte]",
                    "created[lt]",
                    "email",
                ],
            ),
            "/v1/charges" => (
                &st.charges,
                &[
                    "created[gte]",
                    "created[gt]",
                    "created[lte]",
                    "created[lt]",
                    "customer",
                ],
            ),
            "/v1/events" => (
                &st.events,
                &[
                    "created[gte]",
                    "created[gt]",
                    "created[lte]",
                    "created[lt]",
                    "types[]",
                    "type",
                ],
            ),
            _ => {
                return error(
                    404,
                    "invalid_request_error",
                    "resource_missing",
                    &format!("Unrecognized request URL (GET: {path})."),
                );
            }
        };
        if let Some((k, _)) = query
            .iter()
            .find(|(k, _)| !LIST_PARAMS.contains(&k.as_str()) && !extra.contains(&k.as_str()))
        {
            return error(
                400,
                "invalid_request_error",
                "parameter_unknown",
                &format!("Received unknown parameter: {k}"),
            );
        }
        let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str());
        let limit = match get("limit").map(str::parse::<usize>) {
            None => 10,
            Some(Ok(n)) if (1..=100).contains(&n) => n,
            _ => {
                return error(
                    400,
                    "invalid_request_error",
                    "parameter_invalid_integer",
                    "Invalid limit: must be between 1 and 100",
                );
            }
        };
        let bound = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
        let types: Vec<&str> = query
            .iter()
            .filter(|(k, _)| k == "types[]")
            .map(|(_, v)| v.as_str())
            .collect();
        let mut list: Vec<&Json> = objects
            .iter()
            .filter(|o| {
                let c = o["created"].as_i64().unwrap_or_default();
                bound("created[gte]").is_none_or(|b| c >= b)
                    && bound("created[gt]").is_none_or(|b| c > b)
                    && bound("created[lte]").is_none_or(|b| c <= b)
                    && bound("created[lt]").is_none_or(|b| c < b)
                    && (types.is_empty() || types.contains(&o["type"].as_str().unwrap_or_default()))
            })
            .collect();
        // Newest first.
        list.sort_by(|a, b| {
            (b["created"].as_i64(), b["id"].as_str())
                .cmp(&(a["created"].as_i64(), a["id"].as_str()))
        });
        let start = match get("starting_after") {
            None => 0,
            Some(id) => match list.iter().position(|o| o["id"].as_str() == Some(id)) {
                Some(i) => i + 1,
                None => {
                    return error(
                        400,
                        "invalid_request_error",
                        "resource_missing",
                        &format!("No such object: '{id}'"),
                    );
                }
            },
        };
        let page: Vec<Json> = list
            .iter()
            .skip(start)
            .take(limit)
            .map(|o| (*o).clone())
            .collect();
        let has_more = start + page.len() < list.len();
        ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "url": path,
            "has_more": has_more,
            "data": page,
        }))
    }
}

/// A customer built from Stripe's example: number `n`, created at `created` (Unix seconds).
pub fn customer(n: u64, created: i64) -> Json {
    let mut c = fixture("customer");
    c["id"] = json!(format!("cus_{n:08}"));
    c["created"] = json!(created);
    c["email"] = json!(format!("Customer{n}@Example.com"));
    c["name"] = if n % 10 == 7 {
        Json::Null
    } else {
        json!(format!("First{n} Last{n}"))
    };
    c["phone"] = json!(format!("+3361234{:04}", n % 10_000));
    let i = (n % 4) as usize;
    let (city, country, locale) = (
        ["Paris", "Lyon", "Berlin", "Austin"][i],
        ["FR", "FR", "DE", "US"][i],
        ["fr", "fr", "de", "en"][i],
    );
    c["address"] = json!({
        "city": city,
        "country": country,
        "line1": "1 rue de la Paix", "line2": null, "postal_code": "75002", "state": null
    });
    c["preferred_locales"] = json!([locale]);
    c["metadata"] = json!({ "n": n.to_string() });
    c
}

/// A charge built from Stripe's example: number `m`, of customer `customer` (a guest paying
/// with `billing_details.email` when `None`).
pub fn charge(m: u64, customer: Option<u64>, created: i64) -> Json {
    let mut c = fixture("charge");
    let currency = ["usd", "eur", "jpy"][(m % 3) as usize];
    let amount = 500 + (m * 137) % 9_000;
    let failed = m % 11 == 5;
    c["id"] = json!(format!("ch_{m:08}"));
    c["created"] = json!(created);
    c["customer"] = customer.map_or(Json::Null, |n| json!(format!("cus_{n:08}")));
    c["billing_details"]["email"] = match customer {
        Some(_) => Json::Null,
        None => json!(format!("guest{m}@example.com")),
    };
    c["amount"] = json!(amount);
    c["amount_captured"] = json!(if failed { 0 } else { amount });
    c["captured"] = json!(!failed);
    c["currency"] = json!(currency);
    c["status"] = json!(if failed { "failed" } else { "succeeded" });
    c["paid"] = json!(!failed);
    c
}

impl FakeStripe {
    /// Starts an empty fake on a free local port.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        Self {
            server: Arc::new(server),
            state,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The base URL to configure (`base_url`).
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Adds `customers` customers (two per created second, to exercise ties) and 0 to 3
    /// charges each, plus a guest charge every tenth customer. Times start at `t0`.
    pub fn seed(&self, customers: u64, t0: i64) {
        let mut st = self.state();
        let mut m = st.charges.len() as u64;
        let first = st.customers.len() as u64;
        for n in first..first + customers {
            let created = t0 + (n / 2) as i64 * 60;
            st.customers.push(customer(n, created));
            for k in 0..(n % 4) {
                st.charges.push(charge(m, Some(n), created + 10 + k as i64));
                m += 1;
            }
            if n % 10 == 3 {
                st.charges.push(charge(m, None, created + 30));
                m += 1;
            }
        }
    }

    fn push_event(st: &mut State, kind: &str, object: Json, created: i64) {
        st.next_event += 1;
        let mut e = fixture("event");
        e["id"] = json!(format!("evt_{:08}", st.next_event));
        e["type"] = json!(kind);
        e["created"] = json!(created);
        e["data"] = json!({ "object": object });
        st.events.push(e);
    }

    /// Changes a customer and records a `customer.updated` event at `at`.
    pub fn update_customer(&self, id: &str, at: i64, change: impl FnOnce(&mut Json)) {
        let mut st = self.state();
        let c = st
            .customers
            .iter_mut()
            .find(|c| c["id"] == id)
            .expect("customer exists");
        change(c);
        let snapshot = c.clone();
        Self::push_event(&mut st, "customer.updated", snapshot, at);
    }

    /// Refunds a charge and records a `charge.refunded` event at `at`.
    pub fn refund_charge(&self, id: &str, at: i64) {
        let mut st = self.state();
        let c = st
            .charges
            .iter_mut()
            .find(|c| c["id"] == id)
            .expect("charge exists");
        c["refunded"] = json!(true);
        c["amount_refunded"] = c["amount"].clone();
        let snapshot = c.clone();
        Self::push_event(&mut st, "charge.refunded", snapshot, at);
    }

    /// Records an event of another kind (to check it is ignored).
    pub fn other_event(&self, kind: &str, object: Json, at: i64) {
        let mut st = self.state();
        Self::push_event(&mut st, kind, object, at);
    }

    /// Answers the next requests with HTTP 429, one per entry: with `Retry-After: <s>`, or
    /// without the header for `None`.
    pub fn throttle(&self, answers: &[Option<&str>]) {
        self.state()
            .throttle
            .extend(answers.iter().map(|a| a.map(str::to_string)));
    }

    /// Every request so far: path and decoded query pairs.
    pub fn requests(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.state().requests.clone()
    }

    /// How many customers and charges it holds.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.state();
        (st.customers.len(), st.charges.len())
    }
}
