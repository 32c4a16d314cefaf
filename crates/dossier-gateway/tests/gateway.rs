//! The gateway end to end: a real SQLite store, the router called in-process.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{CUSTOMERS, TestApp, WS, fr_basic_big, seeded, seeded_with, url_encode};
use dossier_gateway::{GatewayConfig, SyncTrigger};
use dossier_store::{SqlStore, StreamStats};
use serde_json::{Value, json};

const CONTACT_BY_EMAIL: &str = r#"
query($email: String!, $kind: String, $first: Int, $after: String) {
  contact(email: $email) {
    id email country firstName createdAt updatedAt
    data aggregates
    identities { kind value }
    sessions(kind: $kind, first: $first, after: $after) {
      edges { cursor node { id kind source stream externalId startedAt endedAt data contact { email } } }
      pageInfo { hasNextPage endCursor }
    }
  }
}"#;

#[tokio::test]
async fn contact_by_email_with_data_aggregates_identities_sessions() {
    let t = seeded().await;
    let d = t
        .data(
            CONTACT_BY_EMAIL,
            json!({ "email": " USER1@example.com", "first": 2 }),
        )
        .await;
    let c = &d["contact"];
    assert_eq!(c["id"], json!(t.id_of(1).await.to_string()));
    assert_eq!(c["email"], "user1@example.com");
    assert_eq!(c["country"], "DE");
    assert_eq!(c["firstName"], "User1");
    assert_eq!(c["createdAt"], "1970-01-01T00:00:00.001+00:00");
    // The store's time of the last change.
    let updated = c["updatedAt"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(updated).is_ok(),
        "{updated}"
    );
    // Own data, and the latest sessions' data.
    assert_eq!(c["data"]["price_plan"], "pro");
    assert_eq!(c["data"]["total"], json!(10));
    assert_eq!(c["data"]["page"], "/pricing");
    assert_eq!(
        c["aggregates"],
        json!({ "transactions": 4, "total_spent": 25, "avg_basket": 6.25 })
    );
    assert_eq!(
        c["identities"],
        json!([
            { "kind": "email", "value": "user1@example.com" },
            { "kind": "external", "value": "shop:customers:1" },
        ])
    );

    // Sessions, newest first, paged by cursor.
    let page = &c["sessions"];
    let first = &page["edges"][0]["node"];
    assert_eq!(first["kind"], "order");
    assert_eq!(first["source"], "shop");
    assert_eq!(first["stream"], "orders");
    assert_eq!(first["externalId"], "1");
    assert_eq!(first["startedAt"], "1970-01-01T00:00:01.000001+00:00");
    assert_eq!(first["endedAt"], Value::Null);
    assert_eq!(first["data"], json!({ "status": "paid", "total": 10 }));
    assert_eq!(first["contact"]["email"], "user1@example.com");
    assert_eq!(page["edges"][1]["node"]["externalId"], "v2");
    assert_eq!(
        page["edges"][1]["node"]["endedAt"],
        "1970-01-01T00:01:00.000800+00:00"
    );
    let mut seen = external_ids(page);
    let mut page = page.clone();
    while page["pageInfo"]["hasNextPage"] == json!(true) {
        let after = page["pageInfo"]["endCursor"].clone();
        let d = t
            .data(
                CONTACT_BY_EMAIL,
                json!({ "email": "user1@example.com", "first": 2, "after": after }),
            )
            .await;
        page = d["contact"]["sessions"].clone();
        seen.extend(external_ids(&page));
    }
    assert_eq!(seen, ["1", "v2", "v1", "102", "101", "100"]);

    let d = t
        .data(
            CONTACT_BY_EMAIL,
            json!({ "email": "user1@example.com", "kind": "visit" }),
        )
        .await;
    assert_eq!(external_ids(&d["contact"]["sessions"]), ["v2", "v1"]);

    // Unknown email: null, not an error.
    let d = t
        .data(CONTACT_BY_EMAIL, json!({ "email": "nobody@example.com" }))
        .await;
    assert_eq!(d["contact"], Value::Null);
}

/// A root lookup reads the parts it can with the contact (fragments included); aliased
/// `sessions` with different arguments, and everything else, are read by their own resolvers.
/// Both ways give what a contact on a page gives.
#[tokio::test]
async fn a_root_lookup_and_a_listed_contact_agree() {
    const PARTS: &str = r#"
        fragment Parts on Contact {
            data aggregates
            sessions(first: 3) { edges { node { externalId data } } pageInfo { hasNextPage } }
        }"#;
    let t = seeded().await;
    let listed = t
        .data(
            &format!(
                "{{ contacts(first: 50) {{ edges {{ node {{ email ...Parts }} }} }} }} {PARTS}"
            ),
            json!({}),
        )
        .await;
    let listed = listed["contacts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .find(|n| n["email"] == "user1@example.com")
        .unwrap();
    let single = t
        .data(
            &format!("query($e: String!) {{ contact(email: $e) {{ ...Parts }} }} {PARTS}"),
            json!({ "e": "user1@example.com" }),
        )
        .await;
    let aliased = t
        .data(
            &format!(
                r#"query($e: String!) {{ contact(email: $e) {{
                    ...Parts
                    newest: sessions(first: 1) {{ edges {{ node {{ externalId }} }} }}
                    visits: sessions(kind: "visit") {{ edges {{ node {{ externalId }} }} }}
                }} }} {PARTS}"#
            ),
            json!({ "e": "user1@example.com" }),
        )
        .await;
    for root in [&single["contact"], &aliased["contact"]] {
        for part in ["data", "aggregates", "sessions"] {
            assert_eq!(root[part], listed[part], "{part}");
        }
    }
    assert_eq!(external_ids(&listed["sessions"]), ["1", "v2", "v1"]);
    assert_eq!(listed["sessions"]["pageInfo"]["hasNextPage"], json!(true));
    assert_eq!(external_ids(&aliased["contact"]["newest"]), ["1"]);
    assert_eq!(external_ids(&aliased["contact"]["visits"]), ["v2", "v1"]);
}

fn external_ids(sessions: &Value) -> Vec<String> {
    sessions["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["externalId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn contact_by_id_and_argument_errors() {
    let t = seeded().await;
    let id = t.id_of(3).await;
    let d = t
        .data(
            "query($id: ID!) { contact(id: $id) { id email } }",
            json!({ "id": id.to_string() }),
        )
        .await;
    assert_eq!(d["contact"]["email"], "user3@example.com");
    let d = t
        .data(r#"{ contact(id: "999999") { id } }"#, json!({}))
        .await;
    assert_eq!(d["contact"], Value::Null);

    let both = t
        .error(
            r#"{ contact(id: "1", email: "user1@example.com") { id } }"#,
            json!({}),
        )
        .await;
    insta::assert_snapshot!(both, @"give either id or email");
    let neither = t.error("{ contact { id } }", json!({})).await;
    insta::assert_snapshot!(neither, @"give either id or email");
    let bad_id = t.error(r#"{ contact(id: "abc") { id } }"#, json!({})).await;
    insta::assert_snapshot!(bad_id, @"invalid contact id");
}

const CONTACTS: &str = r#"
query($where: ContactFilter, $first: Int, $after: String) {
  contacts(where: $where, first: $first, after: $after) {
    edges { cursor node { id email } }
    pageInfo { hasNextPage endCursor }
  }
}"#;

/// Reads every page of `contacts(where)`; returns the ids in order and the page count.
async fn all_pages(t: &TestApp, filter: Value, first: usize) -> (Vec<i64>, usize) {
    let mut ids = vec![];
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let d = t
            .data(
                CONTACTS,
                json!({ "where": filter, "first": first, "after": after }),
            )
            .await;
        let conn = &d["contacts"];
        pages += 1;
        let edges = conn["edges"].as_array().unwrap();
        assert!(edges.len() <= first);
        for e in edges {
            ids.push(e["node"]["id"].as_str().unwrap().parse().unwrap());
        }
        if let Some(last) = edges.last() {
            assert_eq!(conn["pageInfo"]["endCursor"], last["cursor"]);
        }
        if conn["pageInfo"]["hasNextPage"] != json!(true) {
            return (ids, pages);
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
}

#[tokio::test]
async fn contacts_filter_and_cursor_pagination() {
    let t = seeded().await;
    let filter = json!({
        "and": [
            { "field": "country", "eq": "fr" },
            { "field": "data.price_plan", "eq": "basic" },
            { "field": "agg.avg_basket", "gt": 50 },
        ]
    });
    let (ids, pages) = all_pages(&t, filter, 2).await;
    let mut want = vec![];
    for i in fr_basic_big() {
        want.push(t.id_of(i).await);
    }
    assert_eq!(want.len(), 5);
    assert_eq!(ids, want, "every match exactly once, in id order");
    assert_eq!(pages, 3);

    // Keys of one object are ANDed, like the explicit `and`.
    let (same, _) = all_pages(
        &t,
        json!({
            "field": "agg.avg_basket", "gt": 50,
            "and": [{ "field": "country", "in": ["FR"] }],
            "not": { "field": "data.price_plan", "eq": "pro" },
        }),
        100,
    )
    .await;
    assert_eq!(same, want);

    // No filter: all contacts, each once.
    let (mut all, pages) = all_pages(&t, Value::Null, 7).await;
    assert_eq!(pages, 5);
    assert_eq!(all.len(), CUSTOMERS as usize);
    all.dedup();
    assert_eq!(all.len(), CUSTOMERS as usize);
    assert!(all.windows(2).all(|w| w[0] < w[1]));

    // Literal arguments work as well as variables.
    let d = t
        .data(
            r#"{ contacts(where: {or: [{field: "email", contains: "USER2"}, {field: "created_at", gt: "2000-01-01T00:00:00Z"}]}, first: 50) { edges { node { email } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(d["contacts"]["edges"].as_array().unwrap().len(), 11); // 2, 20..29
}

#[tokio::test]
async fn total_count() {
    let t = seeded().await;
    let q = r#"query($where: ContactFilter) { contacts(where: $where, first: 1) { totalCount edges { node { id } } } }"#;
    let d = t.data(q, json!({})).await;
    assert_eq!(d["contacts"]["totalCount"], json!(CUSTOMERS));
    assert_eq!(d["contacts"]["edges"].as_array().unwrap().len(), 1);
    let d = t
        .data(q, json!({ "where": { "field": "country", "eq": "FR" } }))
        .await;
    assert_eq!(d["contacts"]["totalCount"], json!(10));
    let d = t
        .data(
            q,
            json!({ "where": { "field": "data.price_plan", "exists": false } }),
        )
        .await;
    assert_eq!(d["contacts"]["totalCount"], json!(0));
}

#[tokio::test]
async fn healthz_ok() {
    let t = seeded().await;
    let (status, _, body) = t.get("/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
}

#[tokio::test]
async fn the_root_is_left_to_the_console() {
    // GraphiQL and the pages at `/` are the console's router (dossier-console), merged
    // beside this one: a route here would make that merge panic.
    let t = seeded().await;
    let (status, _, _) = t.get("/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn get_graphql_runs_queries_only() {
    let t = seeded().await;
    let q = url_encode(r#"{ contact(email: "user2@example.com") { email country } }"#);
    // No Accept header: application/json, as the GraphQL-over-HTTP spec says.
    let (status, ctype, body) = t.get(&format!("/graphql?query={q}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/json; charset=utf-8");
    let out: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        out,
        json!({ "data": { "contact": { "email": "user2@example.com", "country": "DE" } } })
    );

    let vars = url_encode(r#"{"e":"user3@example.com"}"#);
    let q = url_encode("query($e: String) { contact(email: $e) { country } }");
    let (status, _, body) = t.get(&format!("/graphql?query={q}&variables={vars}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["data"]["contact"]["country"],
        "FR"
    );

    let id = t.id_of(1).await;
    let m = url_encode(&format!(
        r#"mutation {{ setContactData(id: "{id}", key: "vip", value: true) {{ id }} }}"#
    ));
    let (status, _, body) = t.get(&format!("/graphql?query={m}")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let out: Value = serde_json::from_str(&body).unwrap();
    insta::assert_snapshot!(out["errors"][0]["message"].as_str().unwrap(), @"only queries can be sent with GET; send mutations with POST");
    let data = t.store.contact_data(&[id]).await.unwrap();
    assert!(!data[&id].contains_key("vip"), "the mutation did not run");
}

const SET_CONTACT_DATA: &str = r#"
mutation($id: ID!, $key: String!, $value: JSON!) {
  setContactData(id: $id, key: $key, value: $value) { id data aggregates }
}"#;

#[tokio::test]
async fn set_contact_data_happy_path() {
    let t = seeded().await;
    let id = t.id_of(2).await.to_string();
    let d = t
        .data(
            SET_CONTACT_DATA,
            json!({ "id": id, "key": "vip", "value": true }),
        )
        .await;
    assert_eq!(d["setContactData"]["id"], json!(id));
    assert_eq!(d["setContactData"]["data"]["vip"], json!(true));
    // Own values win over session values.
    let d = t
        .data(
            SET_CONTACT_DATA,
            json!({ "id": id, "key": "total", "value": 99 }),
        )
        .await;
    assert_eq!(d["setContactData"]["data"]["total"], json!(99));
    // And are filterable at once.
    let d = t
        .data(
            r#"{ contacts(where: {field: "data.vip", eq: true}) { totalCount edges { node { id } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(d["contacts"]["totalCount"], json!(1));
    assert_eq!(d["contacts"]["edges"][0]["node"]["id"], json!(id));
}

#[tokio::test]
async fn set_contact_data_invalid_key() {
    let t = seeded().await;
    let id = t.id_of(2).await.to_string();
    let bad_key = t
        .error(
            SET_CONTACT_DATA,
            json!({ "id": id, "key": "Bad Key", "value": 1 }),
        )
        .await;
    insta::assert_snapshot!(bad_key, @r#"invalid data key "Bad Key": character 'B' is not allowed (use lowercase a-z, 0-9, '_' or '-')"#);
    let bad_value = t
        .error(
            SET_CONTACT_DATA,
            json!({ "id": id, "key": "tags", "value": ["a"] }),
        )
        .await;
    insta::assert_snapshot!(bad_value, @r#"invalid value for "tags": values are scalars: a string, a number, a boolean or a date-time"#);
    let missing = t
        .error(
            SET_CONTACT_DATA,
            json!({ "id": "424242", "key": "vip", "value": true }),
        )
        .await;
    insta::assert_snapshot!(missing, @"contact 424242 not found");
}

#[tokio::test]
async fn set_session_data_and_session() {
    let t = seeded().await;
    let id = t.id_of(1).await;
    let sessions = t
        .store
        .sessions_of(&[id], Some("order"), 1, None)
        .await
        .unwrap();
    let sid = sessions[&id].items[0].id.to_string();
    let d = t
        .data(
            r#"mutation($id: ID!) { setSessionData(id: $id, key: "total", value: 40) { id data contact { aggregates } } }"#,
            json!({ "id": sid }),
        )
        .await;
    let s = &d["setSessionData"];
    assert_eq!(s["id"], json!(sid));
    assert_eq!(s["data"]["total"], json!(40));
    assert_eq!(s["contact"]["aggregates"]["total_spent"], json!(55));
    let d = t
        .data(
            "query($id: ID!) { session(id: $id) { kind data } }",
            json!({ "id": sid }),
        )
        .await;
    assert_eq!(d["session"]["data"]["total"], json!(40));
    let bad = t.error(r#"{ session(id: "x") { id } }"#, json!({})).await;
    insta::assert_snapshot!(bad, @"invalid session id");
}

#[tokio::test]
async fn page_size_over_the_max() {
    let t = seeded().await;
    let over = t
        .error("{ contacts(first: 101) { totalCount } }", json!({}))
        .await;
    insta::assert_snapshot!(over, @"first must be between 1 and 100 (got 101)");
    let zero = t
        .error("{ contacts(first: 0) { totalCount } }", json!({}))
        .await;
    insta::assert_snapshot!(zero, @"first must be between 1 and 100 (got 0)");
    let sessions = t
        .error(
            r#"{ contact(email: "user1@example.com") { sessions(first: 500) { pageInfo { hasNextPage } } } }"#,
            json!({}),
        )
        .await;
    insta::assert_snapshot!(sessions, @"first must be between 1 and 100 (got 500)");
    let runs = t
        .error(
            "{ syncRuns(first: -1) { pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await;
    insta::assert_snapshot!(runs, @"first must be between 1 and 100 (got -1)");
}

#[tokio::test]
async fn default_and_configured_page_sizes() {
    let config = GatewayConfig {
        max_page_size: 5,
        default_page_size: 3,
        ..GatewayConfig::open(WS)
    };
    let t = seeded_with(config, |_| None).await;
    let d = t
        .data("{ contacts { edges { node { id } } } }", json!({}))
        .await;
    assert_eq!(d["contacts"]["edges"].as_array().unwrap().len(), 3);
    let over = t
        .error("{ contacts(first: 6) { totalCount } }", json!({}))
        .await;
    insta::assert_snapshot!(over, @"first must be between 1 and 5 (got 6)");
}

#[tokio::test]
async fn malformed_query_is_a_json_error() {
    let t = seeded().await;
    let post = |accept: &str| {
        Request::post("/graphql")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, accept)
            .body(Body::from(r#"{"query": "{ contacts { edges "}"#))
            .unwrap()
    };
    // application/graphql-response+json: a document that cannot run is a 400, without `data`.
    let (status, ctype, body) = t
        .send(post("application/graphql-response+json, application/json"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(ctype, "application/graphql-response+json; charset=utf-8");
    let out: Value = serde_json::from_str(&body).unwrap();
    assert!(out.get("data").is_none(), "{out}");
    insta::assert_snapshot!(out["errors"][0]["message"].as_str().unwrap(), @r#"
     --> 1:20
      |
    1 | { contacts { edges 
      |                    ^---
      |
      = expected selection_set, selection, directive, or arguments
    "#);
    // application/json: 200 for any well-formed request.
    let (status, ctype, body) = t.send(post("application/json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/json; charset=utf-8");
    assert!(body.contains("expected selection_set"), "{body}");
    // Nothing we can produce.
    let (status, _, _) = t.send(post("text/html")).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);

    // Not GraphQL at all: refused before execution.
    for (ctype, body, want) in [
        ("application/json", "not json", StatusCode::BAD_REQUEST),
        (
            "application/json",
            r#"{"query": 42}"#,
            StatusCode::BAD_REQUEST,
        ),
        // A body without a query is malformed whatever the media type (GraphQL over HTTP).
        ("application/json", "{}", StatusCode::BAD_REQUEST),
        (
            "text/plain",
            "{ contacts { totalCount } }",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let req = Request::post("/graphql")
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::from(body))
            .unwrap();
        let (status, _, out) = t.send(req).await;
        assert_eq!(status, want, "{ctype} {body}: {out}");
        let out: Value = serde_json::from_str(&out).unwrap();
        assert!(out["errors"][0]["message"].is_string(), "{out}");
    }
}

#[tokio::test]
async fn unknown_filter_field() {
    let t = seeded().await;
    let colour = t
        .error(
            r#"{ contacts(where: {field: "colour", eq: "red"}) { totalCount } }"#,
            json!({}),
        )
        .await;
    insta::assert_snapshot!(colour, @r#"invalid filter at field "colour": unknown profile field "colour", expected one of: email, phone, first_name, last_name, company, country, city, locale, created_at, updated_at, data.<key> or agg.<name>"#);
    let no_cmp = t
        .error(
            r#"{ contacts(where: {and: [{field: "country"}]}) { totalCount } }"#,
            json!({}),
        )
        .await;
    insta::assert_snapshot!(no_cmp, @r#"invalid filter at field "country": no comparison given; add one of eq, ne, gt, gte, lt, lte, in, contains or exists"#);
    let no_field = t
        .error(
            r#"{ contacts(where: {or: [{field: "country", eq: "FR"}, {gt: 3}]}) { totalCount } }"#,
            json!({}),
        )
        .await;
    insta::assert_snapshot!(no_field, @r#"invalid filter at where.or[1]: "gt" needs a "field""#);
    let bad_key = t
        .error(
            r#"{ contacts(where: {field: "data.Plan", eq: "x"}) { totalCount } }"#,
            json!({}),
        )
        .await;
    insta::assert_snapshot!(bad_key, @r#"invalid filter at field "data.Plan": invalid data key "Plan": character 'P' is not allowed (use lowercase a-z, 0-9, '_' or '-')"#);
}

#[tokio::test]
async fn forged_cursor() {
    let t = seeded().await;
    for cursor in ["nope", "Y29udGFjdDp4", "cnVuOjE"] {
        // "contact:x", and a run cursor handed to contacts.
        let msg = t
            .error(
                "query($c: String) { contacts(after: $c) { totalCount } }",
                json!({ "c": cursor }),
            )
            .await;
        insta::allow_duplicates! {
            insta::assert_snapshot!(msg, @"invalid cursor");
        }
    }
    let msg = t
        .error(
            r#"{ contact(email: "user1@example.com") { sessions(after: "Y29udGFjdDox") { pageInfo { hasNextPage } } } }"#,
            json!({}),
        )
        .await;
    insta::assert_snapshot!(msg, @"invalid cursor");
}

#[tokio::test]
async fn limits_refuse_deep_documents() {
    let config = GatewayConfig {
        max_depth: 4,
        ..GatewayConfig::open(WS)
    };
    let t = seeded_with(config, |_| None).await;
    let msg = t
        .error(
            r#"{ contact(email: "user1@example.com") { sessions { edges { node { contact { id } } } } } }"#,
            json!({}),
        )
        .await;
    insta::assert_snapshot!(msg, @"Query is nested too deep.");
}

struct FakeSync(SqlStore);

#[async_trait::async_trait]
impl SyncTrigger for FakeSync {
    async fn trigger(&self, workspace: &str, source: &str) -> Result<i64, String> {
        if workspace != WS || source != "shop" {
            return Err(format!("unknown source {source:?}"));
        }
        let run = self.0.start_run(WS, source, "api").await.unwrap();
        let stats = [(
            "orders".to_string(),
            StreamStats {
                read: 3,
                written: 2,
                rejected: 1,
                ..StreamStats::default()
            },
        )];
        self.0
            .finish_run(run, None, &stats.into_iter().collect())
            .await
            .unwrap();
        Ok(run)
    }
}

const TRIGGER: &str = r#"
mutation($source: String!) {
  triggerSync(source: $source) { id source trigger status rowsRead rowsWritten rowsRejected error streams finishedAt }
}"#;

#[tokio::test]
async fn trigger_sync_and_runs() {
    let t = seeded_with(GatewayConfig::open(WS), |store| {
        Some(Arc::new(FakeSync(store)))
    })
    .await;
    let run = |s: &str| t.exec(TRIGGER, Some(json!({ "source": s })));
    let out = run("shop").await;
    let r = &out["data"]["triggerSync"];
    assert_eq!(out.get("errors"), None, "{out}");
    assert_eq!(
        (&r["source"], &r["trigger"], &r["status"], &r["error"]),
        (
            &json!("shop"),
            &json!("api"),
            &json!("succeeded"),
            &Value::Null
        )
    );
    assert_eq!(
        (&r["rowsRead"], &r["rowsWritten"], &r["rowsRejected"]),
        (&json!(3), &json!(2), &json!(1))
    );
    let orders = &r["streams"]["orders"];
    assert_eq!(
        (&orders["read"], &orders["written"], &orders["rejected"]),
        (&json!(3), &json!(2), &json!(1))
    );
    let out = run("nope").await;
    insta::assert_snapshot!(out["errors"][0]["message"].as_str().unwrap(), @r#"unknown source "nope""#);

    // Runs, newest first, paged by cursor.
    for _ in 0..2 {
        run("shop").await;
    }
    let q = r#"query($after: String) { syncRuns(source: "shop", first: 2, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } }"#;
    let first = t.exec(q, None).await;
    let page = &first["data"]["syncRuns"];
    assert_eq!(page["pageInfo"]["hasNextPage"], json!(true));
    let after = page["pageInfo"]["endCursor"].clone();
    let second = t.exec(q, Some(json!({ "after": after }))).await;
    let ids: Vec<i64> = [page, &second["data"]["syncRuns"]]
        .iter()
        .flat_map(|p| p["edges"].as_array().unwrap().clone())
        .map(|e| e["node"]["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert_eq!(
        second["data"]["syncRuns"]["pageInfo"]["hasNextPage"],
        json!(false)
    );
}

#[tokio::test]
async fn trigger_sync_without_an_engine() {
    let t = seeded().await;
    let out = t.exec(TRIGGER, Some(json!({ "source": "shop" }))).await;
    insta::assert_snapshot!(out["errors"][0]["message"].as_str().unwrap(), @"syncing is not available in this process");
}

#[tokio::test]
async fn sources_are_listed() {
    let t = seeded().await;
    t.store
        .upsert_source(
            WS,
            &dossier_store::SourceRow {
                name: "shop".into(),
                connector: "sqlite".into(),
                config: json!({ "path": "shop.db", "password": "***" }),
                streams: vec!["customers".into(), "orders".into()],
                stream_configs: vec![],
                schedule: Some("every 15m".into()),
            },
        )
        .await
        .unwrap();
    let d = t
        .data(
            "{ sources { name connector config streams schedule } }",
            json!({}),
        )
        .await;
    assert_eq!(
        d["sources"],
        json!([{
            "name": "shop",
            "connector": "sqlite",
            "config": { "path": "shop.db", "password": "***" },
            "streams": ["customers", "orders"],
            "schedule": "every 15m",
        }])
    );
}
