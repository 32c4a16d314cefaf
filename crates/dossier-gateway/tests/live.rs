//! Live progress and metrics: the `syncProgress` subscription over a real WebSocket client
//! (graphql-transport-ws), its keys and workspace isolation, and `/metrics`. The router is
//! served in-process over in-memory pipes (no port); progress comes from a test feed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{WS, batch, customer, fan_out};
use dossier_gateway::{
    GatewayConfig, ProgressChannel, ProgressEvent, ProgressKind, Role, SyncTrigger,
};
use dossier_store::{SourceRow, SqlStore};
use futures::{SinkExt as _, StreamExt as _};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tower::ServiceExt as _;

/// Another workspace, whose events must never reach [`WS`].
const OTHER: &str = "globex";

const PROGRESS: &str = "subscription($source: String) { syncProgress(source: $source) { kind source runId trigger stream rows streamRows read written rejected deleted error elapsedSeconds } }";

/// Serves a router over in-memory pipes: each [`Pipes::connect`] is a new connection.
struct Pipes(mpsc::UnboundedReceiver<DuplexStream>);

impl axum::serve::Listener for Pipes {
    type Io = DuplexStream;
    type Addr = ();

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.0.recv().await {
            Some(io) => (io, ()),
            // No more clients: wait for the test to end.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(())
    }
}

/// The client side of [`Pipes`].
#[derive(Clone)]
struct Connector(mpsc::UnboundedSender<DuplexStream>);

impl Connector {
    fn serve(app: axum::Router) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move { axum::serve(Pipes(rx), app).await });
        Self(tx)
    }

    /// Opens a WebSocket to `/graphql` offering graphql-transport-ws (or `protocol`), with
    /// an `Authorization` header when `key` is given.
    async fn websocket(
        &self,
        key: Option<&str>,
        protocol: &str,
    ) -> Result<WebSocketStream<DuplexStream>, WsError> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        self.0.send(server).unwrap();
        let mut request = "ws://gateway/graphql".into_client_request().unwrap();
        request
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, protocol.parse().unwrap());
        if let Some(key) = key {
            request.headers_mut().insert(
                header::AUTHORIZATION,
                format!("Bearer {key}").parse().unwrap(),
            );
        }
        let (ws, _) = tokio_tungstenite::client_async(request, client).await?;
        Ok(ws)
    }
}

/// One graphql-transport-ws client.
struct Client(WebSocketStream<DuplexStream>);

impl Client {
    async fn send(&mut self, message: Value) {
        self.0
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// The next message: `Ok(json)` for text, `Err((code, reason))` for a close.
    async fn next(&mut self) -> Result<Value, (u16, String)> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.0.next())
                .await
                .expect("no message within 10s")
                .expect("the socket ended without a close frame")
                .expect("a WebSocket error");
            match message {
                Message::Text(text) => return Ok(serde_json::from_str(&text).unwrap()),
                Message::Close(Some(frame)) => {
                    return Err((u16::from(frame.code), frame.reason.to_string()));
                }
                Message::Close(None) => return Err((1005, String::new())),
                _ => {}
            }
        }
    }

    /// `connection_init` with `payload`; the answer.
    async fn init(&mut self, payload: Value) -> Result<Value, (u16, String)> {
        self.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        self.next().await
    }

    async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next message, which must be `next` for `id`; its `payload`.
    async fn next_payload(&mut self, id: &str) -> Value {
        let m = self.next().await.unwrap();
        assert_eq!(m["type"], "next", "{m}");
        assert_eq!(m["id"], id, "{m}");
        m["payload"].clone()
    }
}

/// A gateway behind keys over a store with two workspaces, each with sources; progress
/// comes from the returned channel.
struct Live {
    store: SqlStore,
    schema: dossier_gateway::DossierSchema,
    app: axum::Router,
    feed: Arc<ProgressChannel>,
    connector: Connector,
    /// A read key of [`WS`].
    key: String,
    _dir: tempfile::TempDir,
}

/// Triggers "run" a sync of `shop` in [`WS`] by sending its events to the feed.
struct FakeSync {
    store: SqlStore,
    feed: Arc<ProgressChannel>,
}

#[async_trait::async_trait]
impl SyncTrigger for FakeSync {
    async fn trigger(&self, workspace: &str, source: &str) -> Result<i64, String> {
        if source != "shop" {
            return Err(format!("unknown source {source:?}"));
        }
        let run = self
            .store
            .start_run(workspace, source, "api")
            .await
            .unwrap();
        for e in run_events(workspace, source, run) {
            self.feed.send(e);
        }
        self.store
            .finish_run(run, None, &Default::default())
            .await
            .unwrap();
        Ok(run)
    }
}

/// The events of a successful run over one stream of two batches.
fn run_events(ws: &str, source: &str, run: i64) -> Vec<ProgressEvent> {
    let ev = |kind| ProgressEvent::new(kind, ws, source, run);
    let batch = |rows, stream_rows| ProgressEvent {
        stream: Some("customers".into()),
        rows: Some(rows),
        stream_rows: Some(stream_rows),
        ..ev(ProgressKind::BatchCommitted)
    };
    vec![
        ProgressEvent {
            trigger: Some("api".into()),
            ..ev(ProgressKind::RunStarted)
        },
        ProgressEvent {
            stream: Some("customers".into()),
            ..ev(ProgressKind::StreamStarted)
        },
        batch(500, 500),
        batch(20, 520),
        ProgressEvent {
            stream: Some("customers".into()),
            read: Some(520),
            written: Some(519),
            rejected: Some(1),
            deleted: Some(0),
            ..ev(ProgressKind::StreamFinished)
        },
        ProgressEvent {
            elapsed: Some(Duration::from_millis(1500)),
            ..ev(ProgressKind::RunFinished)
        },
    ]
}

async fn live(config: GatewayConfig) -> Live {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = SqlStore::open(&url).await.unwrap();
    for ws in [WS, OTHER] {
        store.ensure_workspace(ws).await.unwrap();
        store.set_rules(ws, &common::rules()).await.unwrap();
        store
            .apply_batch(
                ws,
                &batch(
                    "customers",
                    vec![customer(1, &format!("a@{ws}.example"), "FR", "pro")],
                ),
            )
            .await
            .unwrap();
        for source in ["shop", "crm"] {
            store
                .upsert_source(
                    ws,
                    &SourceRow {
                        name: source.into(),
                        connector: "sqlite".into(),
                        config: json!({}),
                        streams: vec!["customers".into()],
                        stream_configs: vec![],
                        schedule: None,
                    },
                )
                .await
                .unwrap();
        }
    }
    let feed = Arc::new(ProgressChannel::new(64));
    let sync = Arc::new(FakeSync {
        store: store.clone(),
        feed: feed.clone(),
    });
    let schema =
        dossier_gateway::build_schema(store.clone(), Some(sync), None, Some(feed.clone()), config);
    let app = dossier_gateway::router(schema.clone(), store.clone());
    let key = store
        .create_key(WS, "ui", Role::Read, None)
        .await
        .unwrap()
        .1;
    let connector = Connector::serve(app.clone());
    Live {
        store,
        schema,
        app,
        feed,
        connector,
        key,
        _dir: dir,
    }
}

impl Live {
    /// A client whose connection was initialised with the read key in `connection_init`.
    async fn client(&self) -> Client {
        self.client_with(&self.key).await
    }

    /// A client whose connection was initialised with key `raw` in `connection_init`.
    async fn client_with(&self, raw: &str) -> Client {
        let mut c = Client(
            self.connector
                .websocket(None, "graphql-transport-ws")
                .await
                .unwrap(),
        );
        let ack = c
            .init(json!({ "Authorization": format!("Bearer {raw}") }))
            .await
            .unwrap();
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        c
    }

    /// Waits until `n` subscriptions listen to the feed.
    async fn listening(&self, n: usize) {
        for _ in 0..500 {
            if self.feed.receiver_count() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{} subscriptions listen, expected {n}",
            self.feed.receiver_count()
        );
    }

    async fn post(&self, key: Option<&str>, query: &str) -> (StatusCode, Value) {
        let mut req = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        let req = req
            .body(Body::from(json!({ "query": query }).to_string()))
            .unwrap();
        let (status, _, body) = self.send(req).await;
        (status, serde_json::from_str(&body).unwrap())
    }

    /// Sends a request to the router; returns the status, content type and body.
    async fn send(&self, req: Request<Body>) -> (StatusCode, String, String) {
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

    async fn metrics(&self) -> String {
        let (status, ctype, body) = self
            .send(Request::get("/metrics").body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        body
    }
}

/// The value of the series `series` (name and labels, exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_subscription_streams_its_workspaces_progress_in_order() {
    let live = live(GatewayConfig::default()).await;
    let mut c = live.client().await;
    c.subscribe("all", PROGRESS, json!({})).await;
    c.subscribe("crm", PROGRESS, json!({ "source": "crm" }))
        .await;
    live.listening(2).await;

    // Another workspace syncs a source of the same name first, then both of ours run.
    for e in run_events(OTHER, "shop", 99) {
        live.feed.send(e);
    }
    for e in run_events(WS, "shop", 7) {
        live.feed.send(e);
    }
    for e in run_events(OTHER, "crm", 98) {
        live.feed.send(e);
    }
    let mut failed = run_events(WS, "crm", 8);
    failed.truncate(1);
    failed.push(ProgressEvent {
        error: Some("cannot connect to the source".into()),
        elapsed: Some(Duration::from_millis(250)),
        ..ProgressEvent::new(ProgressKind::RunFinished, WS, "crm", 8)
    });
    for e in failed {
        live.feed.send(e);
    }

    // Both subscriptions' messages interleave on the socket: split them by id.
    let mut all = vec![];
    let mut crm = vec![];
    while all.len() < 8 || crm.len() < 2 {
        let m = c.next().await.unwrap();
        assert_eq!(m["type"], "next", "{m}");
        assert!(m["payload"].get("errors").is_none(), "{m}");
        let event = m["payload"]["data"]["syncProgress"].clone();
        match m["id"].as_str().unwrap() {
            "all" => all.push(event),
            "crm" => crm.push(event),
            other => panic!("unexpected id {other}"),
        }
    }
    let kinds: Vec<(&str, &str, &str)> = all
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap(),
                e["runId"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("shop", "7", "RUN_STARTED"),
            ("shop", "7", "STREAM_STARTED"),
            ("shop", "7", "BATCH_COMMITTED"),
            ("shop", "7", "BATCH_COMMITTED"),
            ("shop", "7", "STREAM_FINISHED"),
            ("shop", "7", "RUN_FINISHED"),
            ("crm", "8", "RUN_STARTED"),
            ("crm", "8", "RUN_FINISHED"),
        ]
    );
    assert_eq!(
        all[0],
        json!({ "kind": "RUN_STARTED", "source": "shop", "runId": "7", "trigger": "api",
                "stream": null, "rows": null, "streamRows": null, "read": null, "written": null,
                "rejected": null, "deleted": null, "error": null, "elapsedSeconds": null })
    );
    assert_eq!(
        (&all[3]["stream"], &all[3]["rows"], &all[3]["streamRows"]),
        (&json!("customers"), &json!(20), &json!(520))
    );
    assert_eq!(
        [
            &all[4]["read"],
            &all[4]["written"],
            &all[4]["rejected"],
            &all[4]["deleted"]
        ],
        [&json!(520), &json!(519), &json!(1), &json!(0)]
    );
    assert_eq!(
        (&all[5]["error"], &all[5]["elapsedSeconds"]),
        (&Value::Null, &json!(1.5))
    );
    assert_eq!(all[7]["error"], "cannot connect to the source");
    // The filtered subscription saw only its source's run.
    assert_eq!(crm, all[6..]);
    // No other message (another workspace's) is waiting.
    c.send(json!({ "type": "ping" })).await;
    assert_eq!(c.next().await.unwrap()["type"], "pong");

    // Completing one subscription leaves the other running.
    c.send(json!({ "type": "complete", "id": "crm" })).await;
    live.listening(1).await;
}

#[tokio::test]
async fn trigger_sync_over_http_streams_to_a_subscriber() {
    let live = live(GatewayConfig::default()).await;
    let writer = live
        .store
        .create_key(WS, "ops", Role::Write, None)
        .await
        .unwrap()
        .1;
    // The key in the upgrade request's header: connection_init needs no payload.
    let mut c = Client(
        live.connector
            .websocket(Some(&writer), "graphql-transport-ws")
            .await
            .unwrap(),
    );
    assert_eq!(c.init(json!({})).await.unwrap()["type"], "connection_ack");
    c.subscribe("1", PROGRESS, json!({ "source": "shop" }))
        .await;
    live.listening(1).await;
    let (status, out) = live
        .post(
            Some(&writer),
            r#"mutation { triggerSync(source: "shop") { id status } }"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let run = out["data"]["triggerSync"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut kinds = vec![];
    for _ in 0..6 {
        let e = c.next_payload("1").await["data"]["syncProgress"].clone();
        assert_eq!(e["runId"], run.as_str());
        kinds.push(e["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(
        kinds,
        [
            "RUN_STARTED",
            "STREAM_STARTED",
            "BATCH_COMMITTED",
            "BATCH_COMMITTED",
            "STREAM_FINISHED",
            "RUN_FINISHED"
        ]
    );
}

#[tokio::test]
async fn a_websocket_needs_a_valid_key() {
    let live = live(GatewayConfig::default()).await;
    let ws = &live.connector;

    // A bad key in the upgrade request: 401, no socket.
    match ws.websocket(Some("dsk_nope"), "graphql-transport-ws").await {
        Err(WsError::Http(r)) => assert_eq!(r.status(), StatusCode::UNAUTHORIZED),
        Err(e) => panic!("expected a 401, got {e}"),
        Ok(_) => panic!("expected a 401, got a socket"),
    }
    // No key anywhere: connection_init is refused with 4403.
    let mut c = Client(ws.websocket(None, "graphql-transport-ws").await.unwrap());
    let (code, reason) = c.init(json!({})).await.unwrap_err();
    assert_eq!(code, 4403);
    assert!(reason.starts_with("no API key"), "{reason}");
    // A bad key in the payload: 4403 too.
    let mut c = Client(ws.websocket(None, "graphql-transport-ws").await.unwrap());
    let (code, reason) = c
        .init(json!({ "Authorization": "Bearer dsk_nope" }))
        .await
        .unwrap_err();
    assert_eq!(code, 4403, "{reason}");
    // A revoked key.
    let (revoked, raw) = live
        .store
        .create_key(WS, "old", Role::Read, None)
        .await
        .unwrap();
    live.store.revoke_key(&revoked.id).await.unwrap();
    let mut c = Client(ws.websocket(None, "graphql-transport-ws").await.unwrap());
    let (code, _) = c
        .init(json!({ "Authorization": format!("Bearer {raw}") }))
        .await
        .unwrap_err();
    assert_eq!(code, 4403);
    // Subscribing before connection_init: 4401.
    let mut c = Client(ws.websocket(None, "graphql-transport-ws").await.unwrap());
    c.subscribe("1", PROGRESS, json!({})).await;
    assert_eq!(c.next().await.unwrap_err().0, 4401);
    // The legacy subprotocol is not served.
    match ws.websocket(Some(&live.key), "graphql-ws").await {
        Err(WsError::Http(r)) => assert_eq!(r.status(), StatusCode::BAD_REQUEST),
        Err(e) => panic!("expected a 400, got {e}"),
        Ok(_) => panic!("expected a 400, got a socket"),
    }
    // Nothing subscribed along the way.
    assert_eq!(live.feed.receiver_count(), 0);
}

#[tokio::test]
async fn a_websocket_runs_subscriptions_only() {
    let live = live(GatewayConfig::default()).await;
    let mut c = live.client().await;
    c.subscribe("q", "{ contacts(first: 1) { totalCount } }", json!({}))
        .await;
    let out = c.next_payload("q").await;
    assert_eq!(
        out["errors"][0]["message"],
        "this WebSocket serves subscriptions; send queries and mutations with POST /graphql"
    );
    assert_eq!(c.next().await.unwrap()["type"], "complete");
    // An unknown source is an error, not a silent stream.
    c.subscribe("s", PROGRESS, json!({ "source": "nope" }))
        .await;
    let out = c.next_payload("s").await;
    assert_eq!(out["errors"][0]["message"], "unknown source \"nope\"");
    assert_eq!(c.next().await.unwrap()["type"], "complete");
    // Over HTTP, a subscription is refused with a pointer to the WebSocket.
    let (status, out) = live.post(Some(&live.key), PROGRESS).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        out["errors"][0]["message"],
        "subscriptions are served over WebSocket (graphql-transport-ws) at /graphql"
    );
    // At most MAX_SUBSCRIPTIONS at once on a connection.
    for i in 0..dossier_gateway::MAX_SUBSCRIPTIONS {
        c.subscribe(&format!("n{i}"), PROGRESS, json!({})).await;
    }
    c.subscribe("over", PROGRESS, json!({})).await;
    let out = c.next_payload("over").await;
    assert_eq!(out["errors"][0]["extensions"]["code"], "LIMIT", "{out}");
}

#[tokio::test]
async fn without_a_feed_the_subscription_says_so() {
    let t = common::seeded().await;
    let connector = Connector::serve(t.app.clone());
    let mut c = Client(
        connector
            .websocket(None, "graphql-transport-ws")
            .await
            .unwrap(),
    );
    // An open gateway needs no key.
    assert_eq!(c.init(json!({})).await.unwrap()["type"], "connection_ack");
    c.subscribe("1", PROGRESS, json!({})).await;
    let out = c.next_payload("1").await;
    assert_eq!(
        out["errors"][0]["message"],
        "live sync progress is not available in this process"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_operation_and_status() {
    let live = live(GatewayConfig::default()).await;
    let extra = prometheus_client::metrics::counter::Counter::<u64>::default();
    dossier_gateway::metrics(&live.schema).register("dossier_test_things", "Things", extra.clone());
    extra.inc_by(3);

    let q = "{ contacts(first: 1) { totalCount } }";
    for _ in 0..3 {
        let (status, out) = live.post(Some(&live.key), q).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        assert!(out.get("errors").is_none(), "{out}");
    }
    // A read key cannot write: the mutation runs and answers with an error.
    let (_, out) = live
        .post(
            Some(&live.key),
            r#"mutation { triggerSync(source: "shop") { id } }"#,
        )
        .await;
    assert!(
        out["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("write role")
    );
    // No key: refused before running.
    let (status, _) = live.post(None, q).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A running subscription.
    let mut c = live.client().await;
    c.subscribe("1", PROGRESS, json!({})).await;
    live.listening(1).await;

    let text = live.metrics().await;
    let at =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(
        at(r#"dossier_graphql_requests_total{operation_type="query",status="ok"}"#),
        3.0
    );
    assert_eq!(
        at(r#"dossier_graphql_requests_total{operation_type="mutation",status="error"}"#),
        1.0
    );
    assert_eq!(
        at(r#"dossier_graphql_requests_total{operation_type="unknown",status="rejected"}"#),
        1.0
    );
    assert_eq!(
        at(r#"dossier_graphql_request_duration_seconds_count{operation_type="query"}"#),
        3.0
    );
    assert_eq!(
        at(r#"dossier_graphql_request_duration_seconds_bucket{operation_type="query",le="+Inf"}"#),
        3.0
    );
    assert!(at(r#"dossier_graphql_request_duration_seconds_sum{operation_type="query"}"#) > 0.0);
    assert_eq!(at("dossier_graphql_subscriptions_active"), 1.0);
    assert_eq!(at("dossier_test_things_total"), 3.0);
    assert!(text.contains("# TYPE dossier_graphql_request_duration_seconds histogram"));
    // Nothing about who asked: no workspace, key or customer data.
    for secret in [WS, OTHER, &live.key, "a@default.example"] {
        assert!(!text.contains(secret), "{secret} in\n{text}");
    }

    // The subscription, once completed, counts as a subscription request.
    c.send(json!({ "type": "complete", "id": "1" })).await;
    live.listening(0).await;
    for _ in 0..100 {
        let text = live.metrics().await;
        if sample(&text, "dossier_graphql_subscriptions_active") == Some(0.0) {
            assert_eq!(
                sample(
                    &text,
                    r#"dossier_graphql_requests_total{operation_type="subscription",status="ok"}"#
                ),
                Some(1.0)
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the subscription still counts as active");
}

#[tokio::test]
async fn subscriptions_count_against_the_keys_rate_limit() {
    let live = live(GatewayConfig {
        rate_limit: Some(dossier_gateway::RateLimit {
            per_second: 1,
            burst: 2,
        }),
        ..GatewayConfig::default()
    })
    .await;
    let mut c = live.client().await;
    c.subscribe("1", PROGRESS, json!({})).await;
    c.subscribe("2", PROGRESS, json!({})).await;
    c.subscribe("3", PROGRESS, json!({})).await;
    let out = c.next_payload("3").await;
    assert_eq!(
        out["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{out}"
    );
    live.listening(2).await;
}

#[tokio::test]
async fn a_connection_that_never_initialises_is_closed() {
    let live = live(GatewayConfig::default()).await;
    let mut c = Client(
        live.connector
            .websocket(None, "graphql-transport-ws")
            .await
            .unwrap(),
    );
    let started = std::time::Instant::now();
    // The gateway closes it 10 s after the upgrade.
    let message = tokio::time::timeout(Duration::from_secs(15), c.0.next())
        .await
        .expect("still open after 15s")
        .unwrap()
        .unwrap();
    match message {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4408),
        other => panic!("expected a close, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(9));
}

/// Waits for the socket to close (skipping messages); its code and reason, and how long it
/// took.
async fn closed(c: &mut Client) -> ((u16, String), Duration) {
    let start = std::time::Instant::now();
    loop {
        if let Err(close) = c.next().await {
            return (close, start.elapsed());
        }
    }
}

#[tokio::test]
async fn a_revoked_key_closes_its_open_socket_with_4403() {
    let live = live(GatewayConfig::default()).await;
    // Authenticated by connection_init's payload.
    let (key, raw) = live
        .store
        .create_key(WS, "soon revoked", Role::Read, None)
        .await
        .unwrap();
    let mut c = live.client_with(&raw).await;
    // Authenticated by the upgrade's header.
    let (header_key, header_raw) = live
        .store
        .create_key(WS, "header", Role::Read, None)
        .await
        .unwrap();
    let mut h = Client(
        live.connector
            .websocket(Some(&header_raw), "graphql-transport-ws")
            .await
            .unwrap(),
    );
    assert_eq!(h.init(json!({})).await.unwrap()["type"], "connection_ack");
    c.subscribe("1", PROGRESS, json!({})).await;
    h.subscribe("1", PROGRESS, json!({})).await;
    live.listening(2).await;
    // Events flow while the keys are good.
    for e in run_events(WS, "shop", 1).into_iter().take(1) {
        live.feed.send(e);
    }
    assert_eq!(
        c.next_payload("1").await["data"]["syncProgress"]["kind"],
        "RUN_STARTED"
    );
    assert_eq!(
        h.next_payload("1").await["data"]["syncProgress"]["kind"],
        "RUN_STARTED"
    );

    live.store.revoke_key(&key.id).await.unwrap();
    live.store.revoke_key(&header_key.id).await.unwrap();
    for client in [&mut c, &mut h] {
        let ((code, reason), took) = closed(client).await;
        assert_eq!(code, 4403, "{reason}");
        assert!(reason.contains("revoked"), "{reason}");
        assert!(took <= Duration::from_millis(1500), "closed after {took:?}");
    }
    // The subscriptions ended with their sockets.
    live.listening(0).await;
}

#[tokio::test]
async fn a_subscribe_with_a_revoked_key_is_refused_and_the_socket_closed() {
    let live = live(GatewayConfig::default()).await;
    let (key, raw) = live
        .store
        .create_key(WS, "soon revoked", Role::Read, None)
        .await
        .unwrap();
    let mut c = live.client_with(&raw).await;
    live.store.revoke_key(&key.id).await.unwrap();
    // At once: the subscribe itself checks the key (unless the periodic check closed the
    // socket first, which the send then finds closed).
    let subscribe = json!({ "type": "subscribe", "id": "1", "payload": { "query": PROGRESS } });
    let _ = c.0.send(Message::text(subscribe.to_string())).await;
    let first = c.next().await;
    if let Ok(m) = &first {
        assert_eq!(
            m["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{m}"
        );
    }
    let ((code, _), _) = match first {
        Err(close) => (close, Duration::ZERO),
        Ok(_) => closed(&mut c).await,
    };
    assert_eq!(code, 4403);
    assert_eq!(live.feed.receiver_count(), 0, "nothing subscribed");
}

#[tokio::test]
async fn an_expired_key_closes_its_open_socket_with_4403() {
    let live = live(GatewayConfig::default()).await;
    let expires = chrono::Utc::now().timestamp_micros() + 1_200_000;
    let (_, raw) = live
        .store
        .create_key(WS, "short-lived", Role::Read, Some(expires))
        .await
        .unwrap();
    let mut c = live.client_with(&raw).await;
    c.subscribe("1", PROGRESS, json!({})).await;
    live.listening(1).await;
    let ((code, reason), _) = closed(&mut c).await;
    let late = chrono::Utc::now().timestamp_micros() - expires;
    assert_eq!(code, 4403, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
    // Within the re-check period (500 ms) plus the key cache's second.
    assert!(
        (0..=1_600_000).contains(&late),
        "closed {late} µs after the expiry"
    );
    live.listening(0).await;
}

#[tokio::test]
async fn hostile_subscribes_are_refused_by_the_same_admission() {
    let live = live(GatewayConfig::default()).await;
    let mut c = live.client().await;
    let deep = format!(
        "subscription {{ syncProgress(source: {}\"shop\"{}) {{ kind }} }}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let fan = format!(
        "subscription {{ syncProgress {{ ...F20 }} }} {}",
        fan_out(20, 3, "SyncProgressEvent", "kind")
    );
    for (id, q, code) in [
        ("deep", deep.as_str(), "DOCUMENT_TOO_DEEP"),
        ("fan", fan.as_str(), "TOO_MANY_SELECTIONS"),
    ] {
        let start = std::time::Instant::now();
        c.subscribe(id, q, json!({})).await;
        let out = c.next_payload(id).await;
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(out["errors"][0]["extensions"]["code"], code, "{out}");
        assert!(out["errors"][0].get("locations").is_none(), "{out}");
        assert_eq!(c.next().await.unwrap()["type"], "complete");
    }
    // The socket still serves.
    c.subscribe("ok", PROGRESS, json!({})).await;
    live.listening(1).await;
}
