//! Live sync progress: the `syncProgress` subscription, served over WebSocket with the
//! graphql-transport-ws protocol at `/graphql`, behind the same API keys as HTTP.
//!
//! The gateway does not know the sync engine: whoever runs syncs hands [`build_schema`] a
//! [`ProgressFeed`] of [`ProgressEvent`]s (the CLI adapts the engine's run events). A
//! subscription sees the events of its caller's workspace only.
//!
//! A connection authenticates with the upgrade request's `Authorization` header (a bad key is
//! refused with 401 before any socket exists), or else with `connection_init`'s payload
//! `{"Authorization": "Bearer dsk_..."}` (a bad or missing key closes the socket with 4403).
//! The key is checked again at every `subscribe` and every [`RECHECK_EVERY`] on an open
//! socket: once revoked or expired, the socket is closed with 4403. Any role may subscribe.
//! Every `subscribe` goes through the same admission as HTTP ([`crate::admission`]). The socket serves subscriptions only (queries and mutations
//! go over HTTP, where the timeouts apply), at most [`MAX_SUBSCRIPTIONS`] at once, each
//! counted against the key's rate limit.
//!
//! [`build_schema`]: crate::build_schema

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_graphql::http::{WebSocketProtocols, WsMessage};
use async_graphql::parser::types::OperationType;
use async_graphql::{
    Context, Data, Enum, Error, Executor, ID, Object, Response, Result, ServerError,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse as _;
use futures::stream::{BoxStream, StreamExt as _};
use tokio::sync::broadcast;

use crate::admission::operation_type_in;
use crate::app::{AppState, Refusal, who};
use crate::auth::RoleGuard;
use crate::context::gateway;
use crate::{Caller, Role, admission, persisted, prepare};

/// The graphql-transport-ws subprotocol, the only one served.
const PROTOCOL: &str = "graphql-transport-ws";

/// How long a connection may take to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an open socket's key is checked again. Keys are read through the process's key
/// cache (trusted for [`dossier_store::KeyCache::TTL`]), so a revocation by another process
/// closes the socket within this plus that; one made through this process, within this.
pub const RECHECK_EVERY: Duration = Duration::from_millis(500);

/// Subscriptions one connection may run at once.
pub const MAX_SUBSCRIPTIONS: usize = 16;

/// What a step of a sync run is.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[graphql(name = "SyncProgressKind")]
pub enum ProgressKind {
    /// A run began (`trigger` says why).
    RunStarted,
    /// A stream began reading (`stream`).
    StreamStarted,
    /// A batch of `rows` committed; `streamRows` read by the stream so far this run.
    BatchCommitted,
    /// A stream finished (`read`, `written`, `rejected`, `deleted`).
    StreamFinished,
    /// The run ended: `error` is null when it succeeded; `elapsedSeconds` is its duration.
    RunFinished,
}

/// One step of a sync run, as the syncing side reports it. Fields that do not apply to the
/// kind are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressEvent {
    /// What happened.
    pub kind: ProgressKind,
    /// The workspace of the source (never sent to clients; it picks who sees the event).
    pub workspace: String,
    /// The source being synced.
    pub source: String,
    /// The run's id (as `syncRuns` lists it).
    pub run_id: i64,
    /// What started the run (`RunStarted`): `manual`, `schedule` or `api`.
    pub trigger: Option<String>,
    /// The stream (stream and batch events).
    pub stream: Option<String>,
    /// Records in the batch (`BatchCommitted`).
    pub rows: Option<u64>,
    /// Records the stream read so far this run (`BatchCommitted`).
    pub stream_rows: Option<u64>,
    /// Records the stream read (`StreamFinished`).
    pub read: Option<u64>,
    /// Records that created or changed a contact or session (`StreamFinished`).
    pub written: Option<u64>,
    /// Records their mapping refused (`StreamFinished`).
    pub rejected: Option<u64>,
    /// Records no longer found by a full refresh, marked deleted (`StreamFinished`).
    pub deleted: Option<u64>,
    /// Why the run failed (`RunFinished`; `None` when it succeeded).
    pub error: Option<String>,
    /// How long the run took (`RunFinished`).
    pub elapsed: Option<Duration>,
}

impl ProgressEvent {
    /// An event of `kind` with no detail: set the fields that apply.
    pub fn new(kind: ProgressKind, workspace: &str, source: &str, run_id: i64) -> Self {
        Self {
            kind,
            workspace: workspace.to_string(),
            source: source.to_string(),
            run_id,
            trigger: None,
            stream: None,
            rows: None,
            stream_rows: None,
            read: None,
            written: None,
            rejected: None,
            deleted: None,
            error: None,
            elapsed: None,
        }
    }
}

/// Where the gateway hears about running syncs (implemented by whoever runs them).
pub trait ProgressFeed: Send + Sync {
    /// Events from now on. A receiver that falls behind skips ahead (its subscriptions miss
    /// the events in between).
    fn subscribe(&self) -> broadcast::Receiver<ProgressEvent>;
}

/// A [`ProgressFeed`] to [`send`](ProgressChannel::send) events into.
#[derive(Debug, Clone)]
pub struct ProgressChannel(broadcast::Sender<ProgressEvent>);

impl ProgressChannel {
    /// A channel keeping up to `capacity` events for its slowest subscriber.
    pub fn new(capacity: usize) -> Self {
        Self(broadcast::channel(capacity.max(1)).0)
    }

    /// Sends an event to every subscription listening now (none listening is fine).
    pub fn send(&self, event: ProgressEvent) {
        let _ = self.0.send(event);
    }

    /// How many receivers listen (one per running subscription, plus the feed's own users).
    pub fn receiver_count(&self) -> usize {
        self.0.receiver_count()
    }
}

impl ProgressFeed for ProgressChannel {
    fn subscribe(&self) -> broadcast::Receiver<ProgressEvent> {
        self.0.subscribe()
    }
}

/// A step of a sync run.
pub(crate) struct SyncProgressEvent(ProgressEvent);

fn int(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// A step of a sync run; the fields that do not apply to its `kind` are null.
#[Object]
impl SyncProgressEvent {
    async fn kind(&self) -> ProgressKind {
        self.0.kind
    }

    /// The source being synced.
    async fn source(&self) -> &str {
        &self.0.source
    }

    /// The run (as `syncRuns` lists it).
    async fn run_id(&self) -> ID {
        ID(self.0.run_id.to_string())
    }

    /// What started the run: `manual`, `schedule` or `api` (`RUN_STARTED`).
    async fn trigger(&self) -> Option<&str> {
        self.0.trigger.as_deref()
    }

    /// The stream (stream and batch events).
    async fn stream(&self) -> Option<&str> {
        self.0.stream.as_deref()
    }

    /// Records in the batch (`BATCH_COMMITTED`).
    async fn rows(&self) -> Option<i64> {
        int(self.0.rows)
    }

    /// Records the stream read so far this run (`BATCH_COMMITTED`).
    async fn stream_rows(&self) -> Option<i64> {
        int(self.0.stream_rows)
    }

    /// Records the stream read (`STREAM_FINISHED`).
    async fn read(&self) -> Option<i64> {
        int(self.0.read)
    }

    /// Records that created or changed a contact or session (`STREAM_FINISHED`).
    async fn written(&self) -> Option<i64> {
        int(self.0.written)
    }

    /// Records their mapping refused (`STREAM_FINISHED`).
    async fn rejected(&self) -> Option<i64> {
        int(self.0.rejected)
    }

    /// Records a full refresh no longer found, marked deleted (`STREAM_FINISHED`).
    async fn deleted(&self) -> Option<i64> {
        int(self.0.deleted)
    }

    /// Why the run failed; null when it succeeded (`RUN_FINISHED`).
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }

    /// How long the run took, in seconds (`RUN_FINISHED`).
    async fn elapsed_seconds(&self) -> Option<f64> {
        self.0.elapsed.map(|d| d.as_secs_f64())
    }
}

/// Live updates, over WebSocket (graphql-transport-ws) at `/graphql`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Subscription;

#[async_graphql::Subscription]
impl Subscription {
    /// The steps of the syncs of this workspace as they run, of one source or of all; a
    /// subscriber that falls far behind skips events (read role).
    #[graphql(guard = "RoleGuard(Role::Read)")]
    async fn sync_progress(
        &self,
        ctx: &Context<'_>,
        source: Option<String>,
    ) -> Result<impl futures::Stream<Item = SyncProgressEvent> + use<>> {
        let gw = gateway(ctx)?;
        let workspace = ctx.data::<Caller>()?.workspace.clone();
        let feed = gw
            .progress
            .as_ref()
            .ok_or_else(|| Error::new("live sync progress is not available in this process"))?;
        if let Some(name) = &source
            && !gw
                .store
                .sources(&workspace)
                .await?
                .iter()
                .any(|s| &s.name == name)
        {
            return Err(Error::new(format!("unknown source {name:?}")));
        }
        let events = feed.subscribe();
        Ok(futures::stream::unfold(events, move |mut events| {
            let workspace = workspace.clone();
            let source = source.clone();
            async move {
                loop {
                    match events.recv().await {
                        Ok(e)
                            if e.workspace == workspace
                                && source.as_ref().is_none_or(|s| *s == e.source) =>
                        {
                            return Some((SyncProgressEvent(e), events));
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::debug!(missed, "a syncProgress subscriber fell behind");
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        }))
    }
}

/// One WebSocket connection: who it is, once known, and its running subscriptions.
#[derive(Clone)]
struct Connection {
    app: AppState,
    client: Option<SocketAddr>,
    /// The caller and its key id, set by the upgrade's header or by `connection_init`.
    caller: Arc<OnceLock<(Caller, String)>>,
    /// The `Authorization` the caller was identified with (none on an open gateway), to
    /// check the key again while the socket lives.
    authorization: Arc<OnceLock<HeaderValue>>,
    /// Set when the key was found revoked or expired at a `subscribe`: the socket closes.
    revoked: Arc<tokio::sync::Notify>,
    /// `connection_init` was accepted.
    acked: Arc<AtomicBool>,
    /// `connection_init` was refused (its close is a 4403).
    refused: Arc<AtomicBool>,
    running: Arc<AtomicUsize>,
}

/// A response made of one error.
fn refusal(message: impl Into<String>, code: &str) -> BoxStream<'static, Response> {
    let error = admission::request_error(message, code);
    futures::stream::once(async move { Response::from_errors(vec![error]) }).boxed()
}

/// Releases a subscription slot of its connection.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Executor for Connection {
    async fn execute(&self, _request: async_graphql::Request) -> Response {
        Response::from_errors(vec![ServerError::new(
            "send queries and mutations with POST /graphql",
            None,
        )])
    }

    /// A `subscribe`: the rate limit, persisted queries, admission and the connection's
    /// slots, in the order the messages came; then, asynchronously, the key checked again
    /// and the subscription. Admission runs here, on the connection's task: its limits bound
    /// it to about a millisecond, and running it in order keeps the refusals in order.
    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let metrics = &self.app.metrics;
        let rejected = |message: String, code: &str| {
            metrics.request("subscription", crate::metrics::Status::Rejected, None);
            refusal(message, code)
        };
        let Some((caller, key_id)) = self.caller.get().cloned() else {
            return rejected("no API key".into(), "UNAUTHENTICATED");
        };
        if let Some(secs) = self.app.over_rate(&who(key_id, self.client)) {
            return rejected(
                format!("too many requests for this key; retry in {secs}s"),
                "RATE_LIMITED",
            );
        }
        let mut request = request;
        let operation = request.operation_name.clone();
        let admitted = persisted::resolve(
            &self.app.config.persisted_queries,
            &self.app.persisted,
            &caller.workspace,
            &mut request,
        )
        .and_then(|unadmitted| {
            let ty = admission::admit(&self.app.limits, &mut request)
                .map(|doc| operation_type_in(doc, operation.as_deref()))?;
            if let Some(doc) = unadmitted {
                doc.admitted(&self.app.persisted);
            }
            Ok(ty)
        });
        let ty = match admitted {
            Ok(ty) => ty,
            Err(e) => {
                metrics.request("unknown", crate::metrics::Status::Error, None);
                return futures::stream::once(async move { Response::from_errors(vec![e]) })
                    .boxed();
            }
        };
        if ty.is_some_and(|t| t != OperationType::Subscription) {
            return rejected(
                "this WebSocket serves subscriptions; send queries and mutations with POST /graphql"
                    .into(),
                "BAD_REQUEST",
            );
        }
        if self.running.fetch_add(1, Ordering::SeqCst) >= MAX_SUBSCRIPTIONS {
            self.running.fetch_sub(1, Ordering::SeqCst);
            return rejected(
                format!(
                    "at most {MAX_SUBSCRIPTIONS} subscriptions run at once on one connection; complete one first"
                ),
                "LIMIT",
            );
        }
        let slot = Slot(self.running.clone());
        let connection = self.clone();
        futures::stream::once(async move {
            if let Err(reason) = connection.key_still_valid().await {
                connection.revoked.notify_one();
                connection.app.metrics.request(
                    "subscription",
                    crate::metrics::Status::Rejected,
                    None,
                );
                return refusal(reason, "UNAUTHENTICATED");
            }
            let mut guard = connection.app.metrics.subscription();
            let request = prepare(request, &connection.app.store, caller);
            connection
                .app
                .schema
                .execute_stream_with_session_data(request, session_data.unwrap_or_default())
                .map(move |response| {
                    let _ = &slot;
                    guard.saw(&response);
                    response
                })
                .boxed()
        })
        .flatten()
        .boxed()
    }
}

impl Connection {
    /// Is the connection's key still good? `Err` with the reason when it was revoked or
    /// expired (or is otherwise refused); a store that does not answer keeps the socket.
    async fn key_still_valid(&self) -> std::result::Result<(), String> {
        let Some(authorization) = self.authorization.get() else {
            return Ok(());
        };
        match self.app.identify(Some(authorization)).await {
            Ok(_) => Ok(()),
            Err(r) if r.status == axum::http::StatusCode::UNAUTHORIZED => Err(r.message),
            Err(r) => {
                tracing::warn!(reason = %r.message, "cannot check a WebSocket's key again");
                Ok(())
            }
        }
    }
}

/// Answers a WebSocket upgrade of `/graphql`: checks a key sent with it, then serves the
/// connection.
pub(crate) async fn upgrade(
    app: AppState,
    upgrade: WebSocketUpgrade,
    headers: &HeaderMap,
    client: Option<SocketAddr>,
) -> axum::response::Response {
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case(PROTOCOL))
        });
    if !offered {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            format!("subscriptions use the {PROTOCOL} WebSocket subprotocol; offer it in Sec-WebSocket-Protocol"),
        )
            .into_response();
    }
    let connection = Connection {
        caller: Arc::new(OnceLock::new()),
        acked: Arc::new(AtomicBool::new(false)),
        refused: Arc::new(AtomicBool::new(false)),
        running: Arc::new(AtomicUsize::new(0)),
        authorization: Arc::new(OnceLock::new()),
        revoked: Arc::new(tokio::sync::Notify::new()),
        client,
        app: app.clone(),
    };
    let authorization = headers.get(header::AUTHORIZATION);
    if authorization.is_some() || matches!(app.config.access, crate::Access::Open { .. }) {
        match app.identify(authorization).await {
            Ok(caller) => {
                let _ = connection.caller.set(caller);
                if let Some(value) = authorization {
                    let _ = connection.authorization.set(value.clone());
                }
            }
            Err(refusal) => {
                let status = refusal.status;
                let mut r = (status, refusal.message).into_response();
                if status == axum::http::StatusCode::UNAUTHORIZED {
                    r.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                return r;
            }
        }
    }
    upgrade
        .protocols([PROTOCOL])
        .max_message_size(app.config.max_body_bytes)
        .on_upgrade(move |socket| serve(connection, socket))
}

/// `connection_init`: the connection's caller, from the upgrade's header or the payload's
/// `Authorization`.
async fn init(connection: Connection, payload: serde_json::Value) -> Result<Data> {
    if connection.caller.get().is_none() {
        let token = ["Authorization", "authorization"]
            .iter()
            .find_map(|k| payload.get(*k))
            .and_then(serde_json::Value::as_str);
        let Some(token) = token else {
            connection.refused.store(true, Ordering::SeqCst);
            return Err(Error::new(
                "no API key: send {\"Authorization\": \"Bearer <key>\"} as the connection_init payload",
            ));
        };
        let value = HeaderValue::from_str(token).map_err(|_| {
            connection.refused.store(true, Ordering::SeqCst);
            Error::new("the API key is not valid")
        })?;
        match connection.app.identify(Some(&value)).await {
            Ok(caller) => {
                let _ = connection.caller.set(caller);
                let _ = connection.authorization.set(value);
            }
            Err(Refusal { message, .. }) => {
                connection.refused.store(true, Ordering::SeqCst);
                return Err(Error::new(message));
            }
        }
    }
    connection.acked.store(true, Ordering::SeqCst);
    Ok(Data::default())
}

/// Runs the graphql-transport-ws protocol over `socket` until either side closes.
async fn serve(connection: Connection, socket: WebSocket) {
    use futures::SinkExt as _;

    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|m| futures::future::ready(m.is_ok()))
        .filter_map(|m| {
            futures::future::ready(match m {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => Some(m.into_data()),
                _ => None,
            })
        });
    let init_connection = connection.clone();
    let messages = async_graphql::http::WebSocket::new(
        connection.clone(),
        input,
        WebSocketProtocols::GraphQLWS,
    )
    .on_connection_init(move |payload| init(init_connection, payload));
    futures::pin_mut!(messages);
    let deadline = tokio::time::sleep(INIT_TIMEOUT);
    tokio::pin!(deadline);
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            m = messages.next() => m,
            () = &mut deadline, if !connection.acked.load(Ordering::SeqCst) => {
                Some(WsMessage::Close(4408, "connection initialisation timeout".into()))
            }
            () = connection.revoked.notified() => {
                Some(WsMessage::Close(4403, "the API key was revoked or has expired".into()))
            }
            _ = recheck.tick(), if connection.authorization.get().is_some() => {
                match connection.key_still_valid().await {
                    Ok(()) => continue,
                    Err(reason) => Some(WsMessage::Close(4403, reason)),
                }
            }
        };
        let out = match message {
            None => break,
            Some(WsMessage::Text(text)) => Message::Text(text.into()),
            Some(WsMessage::Close(code, reason)) => {
                // The protocol's codes: 4403 for a refused key, 4401 for a subscribe before
                // the connection was acknowledged.
                let code = match code {
                    1002 if connection.refused.load(Ordering::SeqCst) => 4403,
                    1011 if !connection.acked.load(Ordering::SeqCst) => 4401,
                    c => c,
                };
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })))
                    .await;
                break;
            }
        };
        if sink.send(out).await.is_err() {
            break;
        }
    }
}
