//! Hostile documents, as issue 22's audit sent them and well past: deep nesting of every kind
//! (values, lists, input objects, selections, directive arguments, variables), fragment
//! expansion, token floods. Each is refused by its own limit before async-graphql parses or
//! validates it, within a second, and the process stays up and keeps serving. A real SQLite
//! store; the router called in-process on a multi-threaded runtime (as in production).

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{TestApp, WS, fan_out, seeded_with};
use dossier_gateway::{GatewayConfig, PersistedQueries};
use proptest::prelude::*;
use serde_json::{Value, json};

/// An open gateway with the default limits and no rate limit (the suite sends many
/// requests from one address).
fn config() -> GatewayConfig {
    GatewayConfig {
        rate_limit: None,
        ..GatewayConfig::open(WS)
    }
}

async fn app() -> TestApp {
    seeded_with(config(), |_| None).await
}

/// The codes of admission's refusals: request errors about the whole document.
const ADMISSION: [&str; 5] = [
    "DOCUMENT_TOO_DEEP",
    "DOCUMENT_TOO_LARGE",
    "TOO_MANY_SELECTIONS",
    "FRAGMENT_CYCLE",
    "TOO_MANY_ROOT_FIELDS",
];

/// POSTs `query`; asserts it was answered within a second; the status and first error.
async fn refused(t: &TestApp, query: &str, variables: Value) -> (StatusCode, String, String) {
    let start = Instant::now();
    let (status, out) = t.post(query, variables).await;
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "answered in {took:?}: {}",
        &query[..query.len().min(200)]
    );
    let message = out["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {out:#}"))
        .to_string();
    let code = out["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if ADMISSION.contains(&code.as_str()) {
        assert!(
            out["errors"][0].get("locations").is_none(),
            "a request error has no locations: {out}"
        );
    }
    (status, message, code)
}

/// `open` repeated `n` times, `middle`, then `close` repeated `n` times.
fn nest(open: &str, middle: &str, close: &str, n: usize) -> String {
    format!("{}{middle}{}", open.repeat(n), close.repeat(n))
}

/// The documents the audit crashed the server with, at `n` levels.
fn deep_documents(n: usize) -> Vec<(&'static str, String)> {
    vec![
        (
            "list argument",
            format!("{{ __typename(x: {}) }}", nest("[", "1", "]", n)),
        ),
        (
            "where input objects",
            format!(
                "{{ contacts(where: {}) {{ totalCount }} }}",
                nest("{and: [", "{country: {eq: \"FR\"}}", "]}", n / 2)
            ),
        ),
        (
            "in list",
            format!(
                "{{ contacts(where: {{country: {{in: [{}]}}}}) {{ totalCount }} }}",
                nest("[", "\"FR\"", "]", n)
            ),
        ),
        (
            "eq object",
            format!(
                "{{ contacts(where: {{country: {{eq: {}}}}}) {{ totalCount }} }}",
                nest("{a: ", "1", "}", n)
            ),
        ),
        (
            "setContactData value",
            format!(
                "mutation {{ setContactData(id: 1, key: \"k\", value: {}) {{ id }} }}",
                nest("[", "1", "]", n)
            ),
        ),
        (
            "directive argument",
            format!(
                "{{ __typename @include(if: {}) }}",
                nest("[", "true", "]", n)
            ),
        ),
        (
            "selections",
            format!("{{ {} }}", nest("contacts { ", "totalCount", " }", n)),
        ),
        (
            "inline fragments",
            format!("{{ {} }}", nest("... on Query { ", "__typename", " }", n)),
        ),
        ("unclosed", format!("{{ __typename(x: {}", "[".repeat(n))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_of_every_kind_is_refused_before_parsing() {
    let t = app().await;
    let max = GatewayConfig::default().max_nesting;
    for n in [max + 1, 1_600, 10_000, 100_000] {
        for (what, q) in deep_documents(n) {
            // 100,000 levels of some families is past the body limit, which would answer
            // first: those are skipped.
            if q.len() > GatewayConfig::default().max_body_bytes {
                continue;
            }
            let (status, message, code) = refused(&t, &q, json!({})).await;
            assert_eq!(status, StatusCode::OK, "{what} at {n}");
            assert_eq!(code, "DOCUMENT_TOO_DEEP", "{what} at {n}: {message}");
            assert_eq!(
                message,
                format!(
                    "the document nests more than {max} levels of braces, brackets and parentheses; at most {max} are allowed"
                ),
                "{what} at {n}"
            );
        }
    }
    // Just under the limit, the parser runs and the usual checks answer.
    let q = format!("{{ __typename(x: {}) }}", nest("[", "1", "]", max - 2));
    let (_, message, _) = refused(&t, &q, json!({})).await;
    assert_eq!(message, "unknown argument \"x\" on field \"__typename\"");
    let q = format!(
        "{{ contacts(where: {{country: {{in: [{}]}}}}) {{ totalCount }} }}",
        nest("[", "\"FR\"", "]", max - 6)
    );
    let (_, message, _) = refused(&t, &q, json!({})).await;
    assert!(!message.contains("nests more than"), "{message}");
    // The server is still up.
    let data = t.data("{ contacts { totalCount } }", json!({})).await;
    assert_eq!(data["contacts"]["totalCount"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_over_get_and_in_variables_is_refused() {
    let t = app().await;
    let q = format!("{{ __typename(x: {}) }}", nest("[", "1", "]", 10_000));
    let start = Instant::now();
    let (status, _, body) = t
        .get(&format!("/graphql?query={}", common::url_encode(&q)))
        .await;
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("DOCUMENT_TOO_DEEP"), "{body}");
    // Variables are JSON: serde_json refuses nesting past 128 itself.
    let v: Value = serde_json::from_str(&nest("[", "1", "]", 100)).unwrap();
    let (status, out) = t
        .post(
            "mutation($v: JSON!) { setContactData(id: 1, key: \"k\", value: $v) { id } }",
            json!({ "v": v }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let body = format!(
        r#"{{"query": "{{ __typename }}", "variables": {{"v": {}}}}}"#,
        nest("[", "1", "]", 10_000)
    );
    let req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let (status, _, body) = t.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("recursion limit exceeded"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_expansion_is_bounded_without_expanding() {
    let t = app().await;
    let max = GatewayConfig::default().max_selections;
    // The audit's 759 bytes that grew the server to 22 GB (3^16), and 3^20.
    for levels in [9, 16, 20] {
        let q = format!(
            "{{ ...F{levels} }} {}",
            fan_out(levels, 3, "Query", "__typename")
        );
        let (_, message, code) = refused(&t, &q, json!({})).await;
        assert_eq!(code, "TOO_MANY_SELECTIONS", "{message}");
        assert!(
            message.starts_with(&format!(
                "the document selects more than {max} fields once its fragments are expanded"
            )),
            "{message}"
        );
    }
    // 27 levels of double spreads on Contact (26 s of CPU before).
    let q = format!(
        "{{ contacts {{ edges {{ node {{ ...F27 }} }} }} }} {}",
        fan_out(27, 2, "Contact", "id email")
    );
    let (_, _, code) = refused(&t, &q, json!({})).await;
    assert_eq!(code, "TOO_MANY_SELECTIONS");
    // An unused fragment is measured too: validation walks it.
    let q = format!("{{ __typename }} {}", fan_out(20, 3, "Query", "__typename"));
    let (_, _, code) = refused(&t, &q, json!({})).await;
    assert_eq!(code, "TOO_MANY_SELECTIONS");
    // Under the limit, the later checks answer (3^8 = 6,561 fields are too complex).
    let q = format!(
        "{{ contacts {{ edges {{ node {{ ...F8 }} }} }} }} {}",
        fan_out(8, 3, "Contact", "id")
    );
    let (_, message, _) = refused(&t, &q, json!({})).await;
    assert_eq!(message, "Query is too complex.");
    // Around a small limit: 81 fields run, 85 do not.
    let small = seeded_with(
        GatewayConfig {
            max_selections: 84,
            max_root_fields: 100,
            ..config()
        },
        |_| None,
    )
    .await;
    let q = format!("{{ ...F4 }} {}", fan_out(4, 3, "Query", "__typename"));
    let (status, out) = small.post(&q, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["data"]["__typename"], "Query", "{out}");
    let q = format!(
        "{{ ...F4 a: __typename b: __typename c: __typename d: __typename }} {}",
        fan_out(4, 3, "Query", "__typename")
    );
    let (_, message, _) = refused(&small, &q, json!({})).await;
    assert_eq!(
        message,
        "the document selects more than 84 fields once its fragments are expanded (85); at most 84 are allowed"
    );
    // Cycles are refused by name, whatever their length.
    let (_, message, code) = refused(
        &t,
        "{ ...A } fragment A on Query { ...B } fragment B on Query { ...C } fragment C on Query { ...A }",
        json!({}),
    )
    .await;
    assert_eq!(code, "FRAGMENT_CYCLE");
    assert_eq!(
        message,
        "fragment A spreads itself; fragments cannot form cycles"
    );
    // A chain of fragments deeper than the nesting limit.
    let mut q = String::from("{ ...F0 }");
    for i in 0..1000 {
        q.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
    }
    q.push_str(" fragment F1000 on Query { __typename }");
    let (_, message, code) = refused(&t, &q, json!({})).await;
    assert_eq!(code, "DOCUMENT_TOO_DEEP", "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_flood_is_refused_by_count() {
    let t = app().await;
    let max = GatewayConfig::default().max_tokens;
    let q = format!("{{ {} }}", "__typename ".repeat(max));
    let (_, message, code) = refused(&t, &q, json!({})).await;
    assert_eq!(code, "DOCUMENT_TOO_LARGE");
    assert_eq!(
        message,
        format!("the document has more than {max} tokens; at most {max} are allowed")
    );
    // Directives count as tokens, however many a field carries.
    let q = format!("{{ __typename {} }}", "@include(if: true) ".repeat(max / 5));
    let (_, _, code) = refused(&t, &q, json!({})).await;
    assert_eq!(code, "DOCUMENT_TOO_LARGE");
    // A long string is one token.
    let long = "x".repeat(100_000);
    let q = format!("{{ contact(email: \"{long}\") {{ id }} }}");
    let (status, out) = t.post(&q, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out, json!({ "data": { "contact": null } }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_and_allow_listed_documents_pass_the_same_admission() {
    let deep = format!("{{ __typename(x: {}) }}", nest("[", "1", "]", 10_000));
    // An allow-list that holds a hostile document (an operator's mistake) does not let it
    // crash the server.
    let t = seeded_with(
        GatewayConfig {
            persisted_queries: PersistedQueries::allow_list([deep.clone()]),
            ..config()
        },
        |_| None,
    )
    .await;
    let (_, _, code) = refused(&t, &deep, json!({})).await;
    assert_eq!(code, "DOCUMENT_TOO_DEEP");
    // Automatic persisted queries: refused when registered, and never remembered.
    let t = app().await;
    let hash = dossier_core::sha256_hex(&deep);
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    for (body, want) in [
        (
            json!({ "query": deep, "extensions": ext }),
            "DOCUMENT_TOO_DEEP",
        ),
        (json!({ "extensions": ext }), "PersistedQueryNotFound"),
    ] {
        let req = Request::post("/graphql")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, _, body) = t.send(req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains(want), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_documents_do_not_starve_healthz() {
    let t = app().await;
    let deep = format!("{{ __typename(x: {}) }}", nest("[", "1", "]", 10_000));
    let fan = format!("{{ ...F20 }} {}", fan_out(20, 3, "Query", "__typename"));
    let big = format!("{{ ...F8 }} {}", fan_out(8, 3, "Query", "__typename"));
    let floods = (0..16).map(|i| {
        let q = [&deep, &fan, &big][i % 3].clone();
        let app = t.app.clone();
        tokio::spawn(async move {
            let body = json!({ "query": q }).to_string();
            let req = Request::post("/graphql")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap();
            tower::ServiceExt::oneshot(app, req).await.unwrap().status()
        })
    });
    let floods: Vec<_> = floods.collect();
    for _ in 0..5 {
        let start = Instant::now();
        let (status, _, body) = t.get("/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        assert!(
            start.elapsed() < Duration::from_millis(250),
            "{:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for f in floods {
        assert_eq!(f.await.unwrap(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_path_admits_the_same_way() {
    let t = app().await;
    let deep = format!("{{ __typename(x: {}) }}", nest("[", "1", "]", 10_000));
    let out = t.exec(&deep, None).await;
    assert_eq!(
        out["errors"][0]["extensions"]["code"], "DOCUMENT_TOO_DEEP",
        "{out}"
    );
}

/// Pieces of GraphQL put together at random: brackets, strings, spreads, names, junk.
fn document() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("...F".to_string()),
        Just("fragment F on Query".to_string()),
        Just("\"".to_string()),
        Just("\"\"\"".to_string()),
        Just("#".to_string()),
        Just("\n".to_string()),
        Just("__typename".to_string()),
        Just("contacts".to_string()),
        Just("x:".to_string()),
        Just("@include(if: true)".to_string()),
        "[a-z$@!:=|&.0-9\\\\ -]{0,4}",
    ];
    proptest::collection::vec((piece, 1usize..400), 0..12).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(p, n)| p.repeat(n))
            .collect::<String>()
    })
}

/// One runtime and app for every case of the property test (seeding a store per case would
/// spend the test's time budget on SQLite).
static SHARED: std::sync::LazyLock<(tokio::runtime::Runtime, TestApp)> =
    std::sync::LazyLock::new(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let t = rt.block_on(app());
        (rt, t)
    });

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    })]

    /// Whatever the text, the request path answers (no panic, no stack overflow) quickly.
    #[test]
    fn any_document_gets_an_answer(q in document()) {
        let (rt, t) = &*SHARED;
        rt.block_on(async {
            let start = Instant::now();
            let (status, out) = t.post(&q, json!({})).await;
            prop_assert!(start.elapsed() < Duration::from_secs(1));
            prop_assert!(status == StatusCode::OK || status == StatusCode::BAD_REQUEST, "{status}: {out}");
            Ok(())
        })?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_errors_reach_clients_as_our_own_messages() {
    let t = app().await;
    // SQLite refuses LIKE patterns over 50,000 bytes with `LIKE or GLOB pattern too complex`.
    let long = "x".repeat(60_000);
    let q = format!(
        r#"{{ contacts(where: {{field: "email", contains: "{long}"}}) {{ totalCount }} }}"#
    );
    let (status, out) = t.post(&q, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let message = out["errors"][0]["message"].as_str().unwrap_or_default();
    assert_eq!(
        message, "a filter's pattern is too long for the store; use a shorter `contains` value",
        "{out}"
    );
    assert!(!out.to_string().contains("GLOB"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errored_fields_are_null_as_the_specification_says() {
    let t = app().await;
    // A nullable field that errors is null in data, beside the fields that worked.
    let (status, out) = t
        .post(
            r#"{ contact(id: "nope") { id } contacts { totalCount } }"#,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        out["data"],
        json!({ "contact": null, "contacts": { "totalCount": 30 } }),
        "{out}"
    );
    assert_eq!(out["errors"].as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(out["errors"][0]["path"], json!(["contact"]), "{out}");
    // A non-null root field that errors makes data null.
    let (_, out) = t
        .post(r#"{ contacts(after: "forged") { totalCount } }"#, json!({}))
        .await;
    assert_eq!(out["data"], Value::Null, "{out}");
    assert_eq!(out["errors"].as_array().map(Vec::len), Some(1), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_bounds_validation_and_healthz_is_served_meanwhile() {
    // Limits raised far past the defaults so that a document costly to validate and run
    // (3^13 fields once expanded) gets past admission.
    let t = seeded_with(
        GatewayConfig {
            max_selections: 10_000_000,
            max_complexity: 10_000_000,
            max_root_fields: 10_000_000,
            request_timeout: Duration::from_millis(300),
            ..config()
        },
        |_| None,
    )
    .await;
    let q = format!("{{ ...F13 }} {}", fan_out(13, 3, "Query", "__typename"));
    let app = t.app.clone();
    let slow = tokio::spawn(async move {
        let start = Instant::now();
        let req = Request::post("/graphql")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "query": q }).to_string()))
            .unwrap();
        let status = tower::ServiceExt::oneshot(app, req).await.unwrap().status();
        (status, start.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    let (status, _, _) = t.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        start.elapsed() < Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    let (status, took) = slow.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < Duration::from_millis(800), "answered after {took:?}");
}

/// The console and `dossier query` run documents without HTTP: the same time bound applies.
#[tokio::test]
async fn execute_without_http_is_bounded_by_the_request_timeout_too() {
    let doc = "{ contacts(first: 5) { totalCount } }";
    let t = seeded_with(
        GatewayConfig {
            request_timeout: Duration::ZERO,
            ..config()
        },
        |_| None,
    )
    .await;
    let caller = dossier_gateway::Caller::admin(WS);
    let out = dossier_gateway::execute(&t.schema, &t.store, caller.clone(), doc, None).await;
    assert_eq!(out["errors"][0]["extensions"]["code"], "TIMEOUT", "{out}");
    assert!(
        out["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ran longer than 0 ms")),
        "{out}"
    );
    // Given its time, the same document answers.
    let t = seeded_with(config(), |_| None).await;
    let out = dossier_gateway::execute(&t.schema, &t.store, caller, doc, None).await;
    assert!(
        out["data"]["contacts"]["totalCount"].as_i64().is_some(),
        "{out}"
    );
}
