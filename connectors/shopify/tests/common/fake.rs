//! A fake Shopify GraphQL Admin API following the documented behaviour: cursor pagination
//! (`first`/`after`, `pageInfo`), the `updated_at` search filter, `sortKey: UPDATED_AT`, the
//! calculated-cost leaky bucket with `THROTTLED` answers, HTTP 401 for a bad token, and
//! injected 429s and 5xx. It refuses every query that does not validate against the real
//! Admin schema (and counts them).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::schema;

pub const TOKEN: &str = "shpat_test_token";
pub const PATH: &str = "/admin/api/2025-01/graphql.json";

pub struct State {
    pub customers: Vec<Json>,
    pub orders: Vec<Json>,
    pub revoked: bool,
    pub deny_orders: bool,
    /// Cost bucket.
    pub maximum: f64,
    pub restore_rate: f64,
    available: f64,
    at: Instant,
    pub throttled: usize,
    pub requests: usize,
    pub served: usize,
    pub invalid: Vec<String>,
    /// Answers to give before anything else: (status, Retry-After).
    pub inject: VecDeque<(u16, Option<&'static str>)>,
    /// GraphQL `INTERNAL_SERVER_ERROR` answers (HTTP 200) to give first.
    pub internal_errors: usize,
    /// After this many served pages, answer 503 to everything.
    pub storm_after: Option<usize>,
    /// The `query` filters seen, in order.
    pub filters: Vec<Option<String>>,
    /// The base URL of the fake (for bulk result URLs).
    pub uri: String,
    /// The running bulk operation: the root field it reads, and the polls so far.
    pub bulk: Option<(String, usize)>,
    pub bulk_runs: usize,
    pub count_queries: usize,
}

#[derive(Clone)]
pub struct Fake {
    pub server: Arc<MockServer>,
    pub state: Arc<Mutex<State>>,
}

struct Responder(Arc<Mutex<State>>);

impl Fake {
    pub async fn start() -> Fake {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            customers: vec![],
            orders: vec![],
            revoked: false,
            deny_orders: false,
            maximum: 1000.0,
            restore_rate: 50.0,
            available: 1000.0,
            at: Instant::now(),
            throttled: 0,
            requests: 0,
            served: 0,
            invalid: vec![],
            inject: VecDeque::new(),
            internal_errors: 0,
            storm_after: None,
            filters: vec![],
            uri: server.uri(),
            bulk: None,
            bulk_runs: 0,
            count_queries: 0,
        }));
        Mock::given(method("GET"))
            .and(path("/bulk/result.jsonl"))
            .respond_with(BulkResult(state.clone()))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(PATH))
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        Fake {
            server: Arc::new(server),
            state,
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Sets the cost bucket (full).
    pub fn bucket(&self, maximum: f64, restore_rate: f64) {
        let mut s = self.state();
        s.maximum = maximum;
        s.restore_rate = restore_rate;
        s.available = maximum;
        s.at = Instant::now();
    }
}

pub fn customer(id: i64, updated_at: &str) -> Json {
    json!({
        "id": format!("gid://shopify/Customer/{id}"),
        "email": format!("customer{id}@example.com"),
        "phone": format!("+1613555{id:04}"),
        "firstName": "Ada",
        "lastName": format!("Lovelace {id}"),
        "defaultAddress": { "countryCodeV2": "CA" },
        "tags": ["vip", "newsletter"],
        "numberOfOrders": "3",
        "amountSpent": { "amount": "120.50", "currencyCode": "CAD" },
        "createdAt": "2024-01-01T09:00:00Z",
        "updatedAt": updated_at,
    })
}

pub fn order(id: i64, customer: Option<i64>, updated_at: &str) -> Json {
    json!({
        "id": format!("gid://shopify/Order/{id}"),
        "email": customer.map(|c| format!("customer{c}@example.com")),
        "customer": customer.map(|c| json!({ "id": format!("gid://shopify/Customer/{c}") })),
        "totalPriceSet": { "shopMoney": { "amount": "29.99", "currencyCode": "CAD" } },
        "createdAt": "2024-02-01T10:00:00Z",
        "updatedAt": updated_at,
        "displayFinancialStatus": "PAID",
        "displayFulfillmentStatus": "UNFULFILLED",
        "subtotalLineItemsQuantity": 2,
    })
}

fn position(n: &Json) -> (DateTime<Utc>, i64) {
    let t = DateTime::parse_from_rfc3339(n["updatedAt"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let id = n["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (t, id)
}

/// The search syntax the connector uses, in the search grammar's terms (terms joined by `OR`
/// and `AND`, a group in parentheses, quoted dates): records past a position,
/// `updated_at:>'<t>' OR (updated_at:>='<t>' AND id:><n>)`. Anything else is refused, so a
/// change in what the connector sends shows here.
fn filter(query: &str) -> Result<(DateTime<Utc>, i64), String> {
    let unknown = || format!("the fake does not know the filter {query:?}");
    let (later, group) = query.split_once(" OR ").ok_or_else(unknown)?;
    let t = quoted_time(later.strip_prefix("updated_at:>").ok_or_else(unknown)?)?;
    let group = group
        .strip_prefix('(')
        .and_then(|g| g.strip_suffix(')'))
        .ok_or_else(unknown)?;
    let (same, id) = group.split_once(" AND ").ok_or_else(unknown)?;
    if quoted_time(same.strip_prefix("updated_at:>=").ok_or_else(unknown)?)? != t {
        return Err(unknown());
    }
    let id = id
        .strip_prefix("id:>")
        .and_then(|n| n.parse().ok())
        .ok_or_else(unknown)?;
    Ok((t, id))
}

fn quoted_time(value: &str) -> Result<DateTime<Utc>, String> {
    let ts = value
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .ok_or("unquoted time: only the date would be honoured")?;
    let t = DateTime::parse_from_rfc3339(ts).map_err(|e| e.to_string())?;
    Ok(t.with_timezone(&Utc))
}

fn error(message: &str, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    }))
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        s.requests += 1;
        let token = request
            .headers
            .get("x-shopify-access-token")
            .and_then(|v| v.to_str().ok());
        if s.revoked || token != Some(TOKEN) {
            return ResponseTemplate::new(401).set_body_json(json!({
                "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
            }));
        }
        if let Some((status, retry_after)) = s.inject.pop_front() {
            let mut r =
                ResponseTemplate::new(status).set_body_string("<html><title>busy</title></html>");
            if let Some(ra) = retry_after {
                r = r.insert_header("retry-after", ra);
            }
            return r;
        }
        if s.internal_errors > 0 {
            s.internal_errors -= 1;
            return error(
                "Internal error. Looks like something went wrong on our end.",
                "INTERNAL_SERVER_ERROR",
            );
        }
        if s.storm_after.is_some_and(|n| s.served >= n) {
            return ResponseTemplate::new(503)
                .set_body_string("<html>503 Service Unavailable</html>");
        }
        let body: Json = match serde_json::from_slice(&request.body) {
            Ok(b) => b,
            Err(e) => return ResponseTemplate::new(400).set_body_string(e.to_string()),
        };
        let query = body["query"].as_str().unwrap_or_default();
        let validated = match schema::admin().validate(query) {
            Ok(v) => v,
            Err(e) => {
                s.invalid.push(e.clone());
                return error(&e, "GRAPHQL_VALIDATION_FAILED");
            }
        };
        let vars = &body["variables"];
        let root = validated.root_fields.first().cloned().unwrap_or_default();
        let first = vars["first"].as_i64();
        if first.is_some_and(|f| !(1..=250).contains(&f)) {
            return error("first must be between 1 and 250", "BAD_REQUEST");
        }
        // The leaky bucket: a connection costs about `first` plus 2, anything else 1 (10 for
        // a mutation).
        let requested = match (first, root.as_str()) {
            (Some(f), _) => f as f64 + 2.0,
            (None, "bulkOperationRunQuery") => 10.0,
            (None, _) => 1.0,
        };
        let now = Instant::now();
        s.available =
            (s.available + now.duration_since(s.at).as_secs_f64() * s.restore_rate).min(s.maximum);
        s.at = now;
        let status = |s: &State| {
            json!({
                "maximumAvailable": s.maximum,
                "currentlyAvailable": s.available.floor(),
                "restoreRate": s.restore_rate,
            })
        };
        if s.available < requested {
            s.throttled += 1;
            return ResponseTemplate::new(200).set_body_json(json!({
                "errors": [{ "message": "Throttled", "extensions": {
                    "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits" } }],
                "extensions": { "cost": { "requestedQueryCost": requested, "actualQueryCost": null,
                    "throttleStatus": status(&s) } }
            }));
        }
        if root == "orders" && s.deny_orders {
            return error(
                "Access denied for orders field. Required access: `read_orders` access scope.",
                "ACCESS_DENIED",
            );
        }
        if first.is_none() {
            s.available -= requested;
            let data = match self.other(&mut s, &root, vars) {
                Ok(data) => data,
                Err(e) => return error(&e, "BAD_REQUEST"),
            };
            return ResponseTemplate::new(200).set_body_json(json!({
                "data": data,
                "extensions": { "cost": { "requestedQueryCost": requested, "actualQueryCost": requested,
                    "throttleStatus": status(&s) } }
            }));
        }
        let filter_text = vars["query"].as_str().map(str::to_string);
        s.filters.push(filter_text.clone());
        let since = match filter_text.as_deref().map(filter).transpose() {
            Ok(f) => f,
            Err(e) => return error(&e, "BAD_REQUEST"),
        };
        let mut records: Vec<Json> = match root.as_str() {
            "customers" => s.customers.clone(),
            "orders" => s.orders.clone(),
            other => return error(&format!("the fake does not serve {other}"), "BAD_REQUEST"),
        };
        records.retain(|r| since.is_none_or(|after| position(r) > after));
        records.sort_by_key(position);
        let offset = vars["after"]
            .as_str()
            .map(|c| c.trim_start_matches("cursor:").parse::<usize>().unwrap())
            .unwrap_or(0);
        let page: Vec<Json> = records
            .iter()
            .skip(offset)
            .take(first.unwrap_or(0) as usize)
            .cloned()
            .collect();
        let end = offset + page.len();
        let actual = page.len() as f64 + 1.0;
        s.available -= actual;
        s.served += 1;
        ResponseTemplate::new(200).set_body_json(json!({
            "data": { root.clone(): {
                "nodes": page,
                "pageInfo": {
                    "hasNextPage": end < records.len(),
                    "endCursor": if end > offset { Some(format!("cursor:{end}")) } else { None },
                }
            } },
            "extensions": { "cost": { "requestedQueryCost": requested, "actualQueryCost": actual,
                "throttleStatus": status(&s) } }
        }))
    }
}

impl Responder {
    /// Counts, bulk operations.
    fn other(&self, s: &mut State, root: &str, vars: &Json) -> Result<Json, String> {
        Ok(match root {
            "customersCount" | "ordersCount" => {
                s.count_queries += 1;
                let n = if root == "customersCount" {
                    s.customers.len()
                } else {
                    s.orders.len()
                };
                let limit = vars["limit"].as_u64().map_or(usize::MAX, |l| l as usize);
                json!({ root: {
                    "count": n.min(limit),
                    "precision": if n > limit { "AT_LEAST" } else { "EXACT" },
                } })
            }
            "bulkOperationRunQuery" => {
                let inner = vars["query"].as_str().unwrap_or_default();
                let user_errors = match schema::admin().validate(inner) {
                    Err(e) => {
                        s.invalid.push(format!("bulk query: {e}"));
                        vec![
                            json!({ "field": ["query"], "message": format!("Invalid bulk query: {e}") }),
                        ]
                    }
                    Ok(_) if s.bulk.is_some() => vec![json!({ "field": null,
                        "message": "A bulk query operation for this app and shop is already in progress" })],
                    Ok(v) => {
                        s.bulk = Some((v.root_fields[0].clone(), 0));
                        s.bulk_runs += 1;
                        vec![]
                    }
                };
                let op = user_errors.is_empty().then(|| {
                    json!({
                        "id": "gid://shopify/BulkOperation/1", "status": "CREATED",
                        "createdAt": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    })
                });
                json!({ "bulkOperationRunQuery": { "bulkOperation": op, "userErrors": user_errors } })
            }
            "node" => {
                let Some((_, polls)) = s.bulk.as_mut() else {
                    return Ok(json!({ "node": null }));
                };
                *polls += 1;
                let done = *polls >= 2;
                json!({ "node": {
                    "id": vars["id"],
                    "status": if done { "COMPLETED" } else { "RUNNING" },
                    "errorCode": null,
                    "objectCount": "0",
                    "createdAt": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "url": done.then(|| format!("{}/bulk/result.jsonl", s.uri)),
                    "partialDataUrl": null,
                } })
            }
            other => return Err(format!("the fake does not serve {other}")),
        })
    }
}

/// The JSONL result of the bulk operation: its records in no particular order, each followed
/// by a child line linked by `__parentId`, as Shopify writes nested connections.
struct BulkResult(Arc<Mutex<State>>);

impl Respond for BulkResult {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        let Some((root, _)) = s.bulk.take() else {
            return ResponseTemplate::new(404);
        };
        let mut records = if root == "customers" {
            s.customers.clone()
        } else {
            s.orders.clone()
        };
        records.reverse();
        let mut body = String::new();
        for (i, r) in records.iter().enumerate() {
            body.push_str(&r.to_string());
            body.push('\n');
            body.push_str(
                &json!({ "id": format!("gid://shopify/LineItem/{i}"), "__parentId": r["id"] })
                    .to_string(),
            );
            body.push('\n');
        }
        ResponseTemplate::new(200).set_body_string(body)
    }
}
