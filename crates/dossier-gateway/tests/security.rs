//! The gateway as the outside world meets it: API keys and roles, workspace isolation over
//! every root field and mutation, each limit hit by a hostile request, persisted queries,
//! CORS, readiness, and a property test of the filter and cursor inputs. A real SQLite
//! store; the router called in-process.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{TestApp, WS, batch, customer, order, seeded_with};
use dossier_gateway::{GatewayConfig, PersistedQueries, RateLimit, Role, SyncTrigger};
use dossier_store::SqlStore;
use serde_json::{Value, json};

/// The second workspace: one customer, one order, one source, one run.
const OTHER: &str = "globex";
const OTHER_EMAIL: &str = "ceo@globex.example";

/// Triggers succeed for `shop` in [`WS`] only, after `delay`.
struct SlowSync {
    store: SqlStore,
    delay: Duration,
}

#[async_trait::async_trait]
impl SyncTrigger for SlowSync {
    async fn trigger(&self, workspace: &str, source: &str) -> Result<i64, String> {
        if workspace != WS || source != "shop" {
            return Err(format!("unknown source {source:?}"));
        }
        tokio::time::sleep(self.delay).await;
        let run = self.store.start_run(WS, source, "api").await.unwrap();
        self.store
            .finish_run(run, None, &Default::default())
            .await
            .unwrap();
        Ok(run)
    }
}

/// [`common::seeded`] behind keys, plus a second workspace.
async fn app(config: GatewayConfig) -> TestApp {
    let t = seeded_with(config, |store| {
        Some(Arc::new(SlowSync {
            store,
            delay: Duration::from_millis(1500),
        }))
    })
    .await;
    let s = &t.store;
    s.ensure_workspace(OTHER).await.unwrap();
    s.set_rules(OTHER, &common::rules()).await.unwrap();
    s.apply_batch(
        OTHER,
        &batch("customers", vec![customer(1, OTHER_EMAIL, "US", "gold")]),
    )
    .await
    .unwrap();
    s.apply_batch(OTHER, &batch("orders", vec![order(1, 1, 999.0, 5)]))
        .await
        .unwrap();
    for ws in [WS, OTHER] {
        s.upsert_source(
            ws,
            &dossier_store::SourceRow {
                name: format!("{ws}_shop"),
                connector: "sqlite".into(),
                config: json!({ "path": "shop.db", "password": "***" }),
                streams: vec!["customers".into()],
                stream_configs: vec![],
                schedule: None,
            },
        )
        .await
        .unwrap();
        let run = s
            .start_run(ws, &format!("{ws}_shop"), "manual")
            .await
            .unwrap();
        s.finish_run(run, None, &Default::default()).await.unwrap();
    }
    t
}

async fn key(t: &TestApp, ws: &str, role: Role) -> String {
    t.store.create_key(ws, "test", role, None).await.unwrap().1
}

/// POSTs as `key`; returns the status and the JSON body.
async fn post_as(
    t: &TestApp,
    key: Option<&str>,
    query: &str,
    variables: Value,
) -> (StatusCode, Value) {
    let mut req = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let body = json!({ "query": query, "variables": variables }).to_string();
    let (status, _, body) = t.send(req.body(Body::from(body)).unwrap()).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status, json)
}

fn first_error(out: &Value) -> String {
    out["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {out:#}"))
        .to_string()
}

#[tokio::test]
async fn requests_without_a_valid_key_get_401() {
    let t = app(GatewayConfig::default()).await;
    let q = "{ contacts { totalCount } }";
    let (status, out) = post_as(&t, None, q, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    insta::assert_snapshot!(first_error(&out), @"no API key: send `Authorization: Bearer <key>` (an admin creates keys with `dossier keys create`)");
    assert_eq!(out["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let (status, out) = post_as(&t, Some("dsk_0123456789ab_nope"), q, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    insta::assert_snapshot!(first_error(&out), @"invalid API key");
    let k = key(&t, WS, Role::Read).await;
    let (status, out) = post_as(&t, Some(&k), q, json!({})).await;
    assert_eq!(
        (status, &out["data"]["contacts"]["totalCount"]),
        (StatusCode::OK, &json!(30))
    );
    t.store.revoke_key(&k).await.unwrap();
    let (status, out) = post_as(&t, Some(&k), q, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    insta::assert_snapshot!(first_error(&out), @"this API key was revoked");
    let (_, expired) = t
        .store
        .create_key(WS, "old", Role::Admin, Some(1))
        .await
        .unwrap();
    let (status, out) = post_as(&t, Some(&expired), q, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    insta::assert_snapshot!(first_error(&out), @"this API key has expired");
    // A GET is no way around it.
    let (status, _, _) = t
        .get("/graphql?query=%7B%20sources%20%7B%20name%20%7D%20%7D")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Keys are cached for a second (a request then needs no store read to check its key); what
/// the cache may never do is let a wrong secret, a revoked key or an expired key through.
#[tokio::test]
async fn a_cached_key_refuses_a_wrong_secret_and_a_revocation_at_once() {
    let t = app(GatewayConfig::default()).await;
    let q = "{ contacts { totalCount } }";
    let k = key(&t, WS, Role::Read).await;
    let ok = |(status, out): (StatusCode, Value)| {
        assert_eq!(status, StatusCode::OK, "{out:#}");
        assert_eq!(out["data"]["contacts"]["totalCount"], json!(30));
    };
    ok(post_as(&t, Some(&k), q, json!({})).await);
    // The same id, another secret: refused although the id's row is cached.
    let last = if k.ends_with('0') { "1" } else { "0" };
    let wrong = format!("{}{last}", &k[..k.len() - 1]);
    let (status, out) = post_as(&t, Some(&wrong), q, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(first_error(&out), "invalid API key");
    ok(post_as(&t, Some(&k), q, json!({})).await);
    // A key expiring while cached is refused from then on.
    let soon = chrono::Utc::now().timestamp_micros() + 1_500_000;
    let (_, expiring) = t
        .store
        .create_key(WS, "soon", Role::Read, Some(soon))
        .await
        .unwrap();
    ok(post_as(&t, Some(&expiring), q, json!({})).await);
    let left = soon - chrono::Utc::now().timestamp_micros();
    tokio::time::sleep(Duration::from_micros(left.max(0) as u64 + 50_000)).await;
    let (status, out) = post_as(&t, Some(&expiring), q, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(first_error(&out), "this API key has expired");
    // Revoked through the store the gateway serves: the very next request is refused.
    ok(post_as(&t, Some(&k), q, json!({})).await);
    t.store.revoke_key(&k).await.unwrap();
    let (status, out) = post_as(&t, Some(&k), q, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(first_error(&out), "this API key was revoked");
}

#[tokio::test]
async fn a_role_too_low_gets_an_error_naming_the_role() {
    let t = app(GatewayConfig::default()).await;
    let read = key(&t, WS, Role::Read).await;
    let write = key(&t, WS, Role::Write).await;
    let admin = key(&t, WS, Role::Admin).await;
    let id = t.id_of(1).await;
    let set =
        format!(r#"mutation {{ setContactData(id: "{id}", key: "vip", value: true) {{ id }} }}"#);
    let cases: [(&str, &str, Role); 4] = [
        ("{ sources { name } }", "sources", Role::Admin),
        (
            "{ syncRuns { edges { node { id } } } }",
            "syncRuns",
            Role::Write,
        ),
        (set.as_str(), "setContactData", Role::Write),
        (
            r#"mutation { triggerSync(source: "shop") { id } }"#,
            "triggerSync",
            Role::Write,
        ),
    ];
    for (q, field, needs) in cases {
        let (status, out) = post_as(&t, Some(&read), q, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        assert_eq!(
            first_error(&out),
            format!("`{field}` needs the {needs} role; this key has the read role")
        );
        assert_eq!(out["errors"][0]["extensions"]["code"], "FORBIDDEN");
    }
    assert!(!t.store.contact_data(&[id]).await.unwrap()[&id].contains_key("vip"));
    let (_, out) = post_as(&t, Some(&write), &set, json!({})).await;
    assert!(out.get("errors").is_none(), "{out}");
    let (_, out) = post_as(&t, Some(&write), "{ sources { name } }", json!({})).await;
    insta::assert_snapshot!(first_error(&out), @"`sources` needs the admin role; this key has the write role");
    let (_, out) = post_as(&t, Some(&admin), "{ sources { name config } }", json!({})).await;
    // Secrets come back redacted, and only this workspace's source.
    assert_eq!(
        out["data"]["sources"],
        json!([{ "name": "default_shop", "config": { "path": "shop.db", "password": "***" } }])
    );
}

/// Every root field and mutation, with the ids and cursors of the other workspace.
#[tokio::test]
async fn a_key_sees_only_its_workspace() {
    let t = app(GatewayConfig::default()).await;
    let theirs = key(&t, OTHER, Role::Admin).await;
    let ours = key(&t, WS, Role::Admin).await;
    let acme_contact = t.id_of(1).await;
    let acme_email = "user1@example.com";
    let acme_session: i64 = {
        let (_, out) = post_as(
            &t,
            Some(&ours),
            r#"{ contact(email: "user1@example.com") { sessions(first: 1) { edges { node { id } } } } }"#,
            json!({}),
        )
        .await;
        out["data"]["contact"]["sessions"]["edges"][0]["node"]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let acme_run: i64 = {
        let (_, out) = post_as(
            &t,
            Some(&ours),
            "{ syncRuns { edges { node { id } } } }",
            json!({}),
        )
        .await;
        out["data"]["syncRuns"]["edges"][0]["node"]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let b64 = |s: String| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let q = |q: &str| q.to_string();
    let reads = [
        (
            q("query($id: ID) { contact(id: $id) { id } }"),
            json!({ "id": acme_contact.to_string() }),
            json!({ "contact": null }),
        ),
        (
            q("query($e: String) { contact(email: $e) { id } }"),
            json!({ "e": acme_email }),
            json!({ "contact": null }),
        ),
        (
            q("query($id: ID!) { session(id: $id) { id } }"),
            json!({ "id": acme_session.to_string() }),
            json!({ "session": null }),
        ),
        (
            q("query($a: String) { contacts(after: $a) { totalCount edges { node { email } } } }"),
            json!({ "a": b64(format!("contact:{}", acme_contact - 1)) }),
            json!({ "contacts": { "totalCount": 1, "edges": [{ "node": { "email": OTHER_EMAIL } }] } }),
        ),
        (
            q(r#"{ contacts(where: {field: "email", eq: "user1@example.com"}) { totalCount } }"#),
            json!({}),
            json!({ "contacts": { "totalCount": 0 } }),
        ),
        (
            q("{ contacts { edges { node { email aggregates } } } }"),
            json!({}),
            json!({ "contacts": { "edges": [{ "node": { "email": OTHER_EMAIL, "aggregates": { "transactions": 1, "total_spent": 999, "avg_basket": 999 } } }] } }),
        ),
        (
            q(
                r#"{ contacts(orderBy: [{field: "agg.total_spent", direction: DESC}], first: 5) { edges { node { email } } } }"#,
            ),
            json!({}),
            json!({ "contacts": { "edges": [{ "node": { "email": OTHER_EMAIL } }] } }),
        ),
        (
            q(
                r#"{ sessions(kind: "order", filter: "data.total > 0") { edges { node { data contact { email } } } } }"#,
            ),
            json!({}),
            json!({ "sessions": { "edges": [{ "node": { "data": { "status": "paid", "total": 999 }, "contact": { "email": OTHER_EMAIL } } }] } }),
        ),
        (
            q(
                r#"{ contactStats(groupBy: ["country"], metrics: [{op: SUM, field: "agg.total_spent"}]) { buckets { keys count metrics } totals { count metrics } } }"#,
            ),
            json!({}),
            json!({ "contactStats": { "buckets": [{ "keys": ["US"], "count": 1, "metrics": ["999"] }], "totals": { "count": 1, "metrics": ["999"] } } }),
        ),
        (
            q(
                r#"{ sessionStats(interval: MONTH, from: "1970-01-01T00:00:00Z", to: "1970-01-02T00:00:00Z", metrics: [{op: AVG, field: "data.total"}]) { points { totals { count metrics } } } }"#,
            ),
            json!({}),
            json!({ "sessionStats": { "points": [{ "totals": { "count": 1, "metrics": ["999"] } }] } }),
        ),
        (
            q("{ sources { name } }"),
            json!({}),
            json!({ "sources": [{ "name": "globex_shop" }] }),
        ),
        (
            q("query($a: String) { syncRuns(after: $a) { edges { node { source } } } }"),
            json!({ "a": b64(format!("run:{}", acme_run + 1000)) }),
            json!({ "syncRuns": { "edges": [{ "node": { "source": "globex_shop" } }] } }),
        ),
    ];
    for (query, vars, want) in reads {
        let (status, out) = post_as(&t, Some(&theirs), &query, vars).await;
        assert_eq!(status, StatusCode::OK, "{query}: {out}");
        assert_eq!(out["data"], want, "{query}: {out}");
        assert!(!out.to_string().contains("example.com"), "{query}: {out}");
    }
    let writes = [
        (
            format!(
                r#"mutation {{ setContactData(id: "{acme_contact}", key: "vip", value: true) {{ id }} }}"#
            ),
            format!("contact {acme_contact} not found"),
        ),
        (
            format!(
                r#"mutation {{ setSessionData(id: "{acme_session}", key: "vip", value: true) {{ id }} }}"#
            ),
            format!("session {acme_session} not found"),
        ),
        (
            r#"mutation { triggerSync(source: "shop") { id } }"#.to_string(),
            r#"unknown source "shop""#.to_string(),
        ),
    ];
    for (m, want) in writes {
        let (_, out) = post_as(&t, Some(&theirs), &m, json!({})).await;
        assert_eq!(first_error(&out), want, "{m}");
    }
    // Nothing of ours changed.
    assert!(
        !t.store.contact_data(&[acme_contact]).await.unwrap()[&acme_contact].contains_key("vip")
    );
    let (_, out) = post_as(
        &t,
        Some(&ours),
        &format!(r#"{{ session(id: "{acme_session}") {{ data }} }}"#),
        json!({}),
    )
    .await;
    assert!(out["data"]["session"]["data"].get("vip").is_none(), "{out}");
}

#[tokio::test]
async fn hostile_documents_hit_their_own_limits() {
    let config = GatewayConfig {
        max_depth: 6,
        max_aliases: 5,
        max_root_fields: 3,
        max_page_size: 50,
        ..GatewayConfig::default()
    };
    let t = app(config).await;
    let k = key(&t, WS, Role::Read).await;
    let deep = r#"{ contact(email: "user1@example.com") { sessions { edges { node { contact { sessions { edges { node { id } } } } } } } } }"#;
    let aliases = format!(
        "{{ contacts {{ {} }} }}",
        (0..6)
            .map(|i| format!("a{i}: totalCount"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let roots = "{ a: contacts { totalCount } b: contacts { totalCount } contact(id: 1) { id } session(id: 1) { id } }";
    let fragment_roots = "{ ...F } fragment F on Query { contacts { totalCount } contact(id: 1) { id } session(id: 1) { id } c: contact(id: 2) { id } }";
    let cases = [
        (deep.to_string(), "Query is nested too deep."),
        (aliases, "the document has 6 aliases; at most 5 are allowed"),
        (
            roots.to_string(),
            "the operation selects 4 root fields; at most 3 are allowed in one request",
        ),
        (
            fragment_roots.to_string(),
            "the operation selects 4 root fields; at most 3 are allowed in one request",
        ),
        (
            "{ contacts(first: 10000) { totalCount } }".to_string(),
            "first must be between 1 and 50 (got 10000)",
        ),
    ];
    for (q, want) in cases {
        let (status, out) = post_as(&t, Some(&k), &q, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{q}: {out}");
        assert_eq!(first_error(&out), want, "{q}");
    }
    // Well-behaved clients are still served.
    let (_, out) = post_as(&t, Some(&k), "{ contacts { totalCount } }", json!({})).await;
    assert_eq!(out["data"]["contacts"]["totalCount"], 30);
}

#[tokio::test]
async fn a_huge_body_is_refused_before_parsing() {
    let t = app(GatewayConfig {
        max_body_bytes: 4096,
        ..GatewayConfig::default()
    })
    .await;
    let k = key(&t, WS, Role::Read).await;
    let padding = " ".repeat(5000);
    let (status, out) = post_as(
        &t,
        Some(&k),
        &format!("{{ contacts {{ totalCount }} }}{padding}"),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    insta::assert_snapshot!(first_error(&out), @"the request body is larger than 4096 bytes");
    let (status, _) = post_as(&t, Some(&k), "{ contacts { totalCount } }", json!({})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_request_is_stopped_while_others_are_served() {
    let t = app(GatewayConfig {
        request_timeout: Duration::from_millis(300),
        ..GatewayConfig::default()
    })
    .await;
    let k = key(&t, WS, Role::Write).await;
    // The trigger takes 1.5 s: the mutation is cut at 300 ms.
    let slow = post_as(
        &t,
        Some(&k),
        r#"mutation { triggerSync(source: "shop") { id } }"#,
        json!({}),
    );
    let fast = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        post_as(&t, Some(&k), "{ contacts { totalCount } }", json!({})).await
    };
    let ((slow_status, slow_out), (fast_status, fast_out)) = tokio::join!(slow, fast);
    assert_eq!(slow_status, StatusCode::SERVICE_UNAVAILABLE, "{slow_out}");
    insta::assert_snapshot!(first_error(&slow_out), @"the request ran longer than 300 ms and was stopped; ask for less (smaller pages, fewer fields)");
    assert_eq!(
        (fast_status, &fast_out["data"]["contacts"]["totalCount"]),
        (StatusCode::OK, &json!(30))
    );
}

#[tokio::test]
async fn a_request_flood_gets_429_with_retry_after_per_key() {
    let t = app(GatewayConfig {
        rate_limit: Some(RateLimit {
            per_second: 1,
            burst: 5,
        }),
        ..GatewayConfig::default()
    })
    .await;
    let flooder = key(&t, WS, Role::Read).await;
    let other = key(&t, WS, Role::Read).await;
    let q = "{ contacts { totalCount } }";
    let mut statuses = vec![];
    for _ in 0..8 {
        statuses.push(post_as(&t, Some(&flooder), q, json!({})).await.0);
    }
    assert_eq!(&statuses[..5], &[StatusCode::OK; 5]);
    assert_eq!(&statuses[5..], &[StatusCode::TOO_MANY_REQUESTS; 3]);
    let req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {flooder}"))
        .body(Body::from(json!({ "query": q }).to_string()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(t.app.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Another key has its own budget.
    assert_eq!(
        post_as(&t, Some(&other), q, json!({})).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn introspection_can_be_turned_off() {
    let t = app(GatewayConfig {
        introspection: false,
        ..GatewayConfig::default()
    })
    .await;
    let k = key(&t, WS, Role::Read).await;
    // An error, not a silent null, however the introspection is reached.
    for q in [
        r#"{ __schema { queryType { name } } }"#,
        r#"{ __type(name: "Contact") { name } }"#,
        r#"{ ...I } fragment I on Query { __type(name: "Contact") { name } }"#,
        r#"{ ... on Query { __schema { types { name } } } }"#,
    ] {
        let (_, out) = post_as(&t, Some(&k), q, json!({})).await;
        assert_eq!(
            out,
            json!({ "errors": [{
                "message": "introspection is disabled on this gateway",
                "extensions": { "code": "INTROSPECTION_DISABLED" },
            }] }),
            "{q}"
        );
    }
    // Typos get no suggestions that would spell the schema out.
    for q in [
        "{ contactz { id } }",
        "{ contacts(frist: 1) { totalCount } }",
        "{ contacts { totalCont } }",
    ] {
        let (_, out) = post_as(&t, Some(&k), q, json!({})).await;
        let message = first_error(&out);
        assert!(!message.contains("Did you mean"), "{q}: {message}");
        assert!(message.starts_with("Unknown"), "{q}: {message}");
    }
    // __typename still answers: clients need it.
    let (_, out) = post_as(&t, Some(&k), "{ __typename }", json!({})).await;
    assert_eq!(out, json!({ "data": { "__typename": "Query" } }));
    let on = app(GatewayConfig::default()).await;
    let k = key(&on, WS, Role::Read).await;
    let (_, out) = post_as(
        &on,
        Some(&k),
        r#"{ __type(name: "Contact") { name } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        out["data"],
        json!({ "__type": { "name": "Contact" } }),
        "{out}"
    );
    // With introspection on, suggestions are kept: the schema is public anyway.
    let (_, out) = post_as(&on, Some(&k), "{ contactz { id } }", json!({})).await;
    assert!(first_error(&out).contains("Did you mean"), "{out}");
}

fn sha256(s: &str) -> String {
    dossier_core::sha256_hex(s)
}

async fn post_persisted(t: &TestApp, key: &str, query: Option<&str>, hash: &str) -> Value {
    let mut body =
        json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
    if let Some(q) = query {
        body["query"] = json!(q);
    }
    let req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let (_, _, body) = t.send(req).await;
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn automatic_persisted_queries_over_http() {
    let t = app(GatewayConfig::default()).await;
    let k = key(&t, WS, Role::Read).await;
    let q = "{ contacts { totalCount } }";
    let h = sha256(q);
    let out = post_persisted(&t, &k, None, &h).await;
    assert_eq!(first_error(&out), "PersistedQueryNotFound");
    assert_eq!(
        out["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    let out = post_persisted(&t, &k, Some(q), &h).await;
    assert_eq!(out["data"]["contacts"]["totalCount"], 30);
    let out = post_persisted(&t, &k, None, &h).await;
    assert_eq!(out["data"]["contacts"]["totalCount"], 30);
    // A hash that is not the document's is refused (no cache poisoning).
    let out = post_persisted(&t, &k, Some("{ sources { name } }"), &h).await;
    assert!(
        first_error(&out).contains("but the query's sha256 is"),
        "{out}"
    );
    // Another workspace's key never saw the document: the cache is per workspace.
    let other = key(&t, OTHER, Role::Read).await;
    let out = post_persisted(&t, &other, None, &h).await;
    assert_eq!(first_error(&out), "PersistedQueryNotFound");
    // A key of the same workspace did.
    let same = key(&t, WS, Role::Read).await;
    let out = post_persisted(&t, &same, None, &h).await;
    assert_eq!(out["data"]["contacts"]["totalCount"], 30);
}

#[tokio::test]
async fn allow_list_mode_runs_only_listed_documents() {
    let listed = "{ contacts { totalCount } }";
    let t = app(GatewayConfig {
        persisted_queries: PersistedQueries::allow_list([listed.to_string()]),
        ..GatewayConfig::default()
    })
    .await;
    let k = key(&t, WS, Role::Read).await;
    let (_, out) = post_as(&t, Some(&k), listed, json!({})).await;
    assert_eq!(out["data"]["contacts"]["totalCount"], 30);
    let out = post_persisted(&t, &k, None, &sha256(listed)).await;
    assert_eq!(out["data"]["contacts"]["totalCount"], 30);
    let other = "{ contacts { edges { node { email } } } }";
    let (_, out) = post_as(&t, Some(&k), other, json!({})).await;
    assert_eq!(
        first_error(&out),
        format!(
            "this gateway runs only allow-listed documents, and {} is not on its list",
            sha256(other)
        )
    );
}

#[tokio::test]
async fn cors_and_readiness() {
    let t = app(GatewayConfig {
        cors_origins: vec!["https://app.example.com".into()],
        ..GatewayConfig::default()
    })
    .await;
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/graphql")
        .header(header::ORIGIN, "https://app.example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .body(Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(t.app.clone(), preflight)
        .await
        .unwrap();
    assert_eq!(
        resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    let foreign = Request::builder()
        .method(Method::OPTIONS)
        .uri("/graphql")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(t.app.clone(), foreign)
        .await
        .unwrap();
    assert!(
        resp.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
    assert_eq!(t.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(
        t.get("/readyz").await,
        (
            StatusCode::OK,
            "text/plain; charset=utf-8".into(),
            "ok".into()
        )
    );
}

/// Random filters and cursors: never a panic, never a 500, always a GraphQL JSON answer.
#[test]
fn filters_and_cursors_never_break_the_gateway() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (t, k) = rt.block_on(async {
        let t = app(GatewayConfig {
            rate_limit: None,
            ..GatewayConfig::default()
        })
        .await;
        let k = key(&t, WS, Role::Read).await;
        (t, k)
    });
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z_.]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "country",
            "email",
            "data.price_plan",
            "agg.avg_basket",
            "created_at",
            "data.",
            "agg.",
            "eq",
            "ne",
            "gt",
            "in",
            "contains",
            "exists",
            "and",
            "or",
            "not",
            "field",
        ])
        .prop_map(Value::from),
    ];
    let json = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "field", "eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists",
                    "and", "or", "not", "x",
                ]),
                inner,
                0..4,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    });
    let cursor = prop_oneof![
        Just(None),
        "[A-Za-z0-9_-]{0,24}".prop_map(Some),
        (any::<i64>(), "(contact|run|session)").prop_map(|(n, kind)| {
            use base64::Engine as _;
            Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{n}")))
        }),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(json, cursor, -3i32..200), |(filter, after, first)| {
            let (status, out) = rt.block_on(post_as(
                &t,
                Some(&k),
                "query($w: ContactFilter, $a: String, $f: Int) { contacts(where: $w, after: $a, first: $f) { totalCount edges { cursor } } }",
                json!({ "w": filter, "a": after, "f": first }),
            ));
            prop_assert!(status == StatusCode::OK, "status {} for {}", status, out);
            prop_assert!(out.get("data").is_some() || out.get("errors").is_some(), "{}", out);
            Ok(())
        })
        .unwrap();
}
