//! HTTP, as the GraphQL-over-HTTP specification describes it: `POST /graphql` (JSON), `GET
//! /graphql` for queries only, `application/graphql-response+json` or `application/json` as
//! the client accepts; API keys, a per-key rate limit, a body size limit and a per-request
//! timeout in front; `/healthz` (the process answers) and `/readyz` (the store answers).
//! The console (GraphiQL included) is another crate's router, merged beside this one. A WebSocket upgrade of `GET /graphql` serves subscriptions (see
//! [`crate::subscription`]); `/metrics` the Prometheus metrics.

// An early answer is an `Err(Response)`, built at most once per request: boxing it would buy
// nothing.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Request, Response, ServerError};
use axum::body::Body;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use dossier_store::SqlStore;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::admission::{self, operation_type_in, request_error};
use crate::app::{App, AppState, Refusal, who};
use crate::metrics::{self, Outcome, Status};
use crate::persisted;
use crate::{Caller, DossierSchema, Gateway, prepare_operation};

/// The HTTP app. Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so that
/// an open gateway rate-limits per client address (otherwise all clients share one budget).
pub fn router(schema: DossierSchema, store: SqlStore) -> Router {
    let (config, metrics) = schema
        .data::<Gateway>()
        .map(|g| (g.config.clone(), g.metrics.clone()))
        .unwrap_or_default();
    let cors = cors(&config.cors_origins);
    let app = Arc::new(App::new(schema, store, config, metrics.clone()));
    let router = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app);
    match cors {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .max_age(Duration::from_secs(600)),
    )
}

/// The response media type the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    /// `application/graphql-response+json`: status codes tell request errors apart.
    GraphqlResponse,
    /// `application/json`: 200 for every well-formed request.
    Json,
}

impl Media {
    fn content_type(self) -> &'static str {
        match self {
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json => "application/json; charset=utf-8",
        }
    }
}

/// The media type to answer a GraphQL request in, or the refusal (406) when the client
/// accepts none that [`negotiate`] offers.
fn acceptable(headers: &HeaderMap) -> Result<Media, axum::response::Response> {
    negotiate(headers).ok_or_else(|| {
        refuse(
            StatusCode::NOT_ACCEPTABLE,
            Media::Json,
            "accept application/graphql-response+json or application/json",
            "BAD_REQUEST",
        )
    })
}

/// The first media type of `Accept` that we serve; no `Accept` means `application/json`.
fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Media::Json);
    };
    if accept.trim().is_empty() {
        return Some(Media::Json);
    }
    accept.split(',').find_map(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        // `q=0` means "not acceptable".
        if parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000")) {
            return None;
        }
        match media.as_str() {
            "application/graphql-response+json" => Some(Media::GraphqlResponse),
            "application/json" | "application/*" | "*/*" => Some(Media::Json),
            _ => None,
        }
    })
}

/// An error answered before (or instead of) execution.
fn refuse(
    status: StatusCode,
    media: Media,
    message: impl Into<String>,
    code: &str,
) -> axum::response::Response {
    let body = serde_json::json!({ "errors": [request_error(message, code)] });
    (
        status,
        [(header::CONTENT_TYPE, media.content_type())],
        body.to_string(),
    )
        .into_response()
}

/// Request errors: nothing ran, so the response has no `data` entry.
fn request_errors(media: Media, errors: &[ServerError]) -> axum::response::Response {
    let status = match media {
        Media::GraphqlResponse => StatusCode::BAD_REQUEST,
        Media::Json => StatusCode::OK,
    };
    let body = serde_json::json!({ "errors": errors });
    (
        status,
        [(header::CONTENT_TYPE, media.content_type())],
        body.to_string(),
    )
        .into_response()
}

fn respond(media: Media, response: Response) -> axum::response::Response {
    // Errors without a path come from parsing or validation: the document did not run.
    let not_run = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    if not_run {
        return request_errors(media, &response.errors);
    }
    match serde_json::to_string(&response) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, media.content_type())],
            body,
        )
            .into_response(),
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            media,
            format!("cannot encode the response: {e}"),
            "INTERNAL",
        ),
    }
}

impl Refusal {
    /// The answer refusing the caller, in the media type it accepts.
    fn respond(self, media: Media) -> axum::response::Response {
        let mut r = refuse(self.status, media, self.message, self.code);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl App {
    /// The caller of a request, or the answer refusing it.
    async fn caller(
        &self,
        headers: &HeaderMap,
        media: Media,
    ) -> Result<(Caller, String), axum::response::Response> {
        self.identify(headers.get(header::AUTHORIZATION))
            .await
            .map_err(|r| r.respond(media))
    }

    /// `Err` with a 429 answer when `who` is over its rate.
    fn rate_limit(&self, who: &str, media: Media) -> Result<(), axum::response::Response> {
        let Some(secs) = self.over_rate(who) else {
            return Ok(());
        };
        let mut r = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            media,
            format!("too many requests for this key; retry in {secs}s"),
            "RATE_LIMITED",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        Err(r)
    }

    async fn run(
        &self,
        media: Media,
        headers: &HeaderMap,
        client: Option<SocketAddr>,
        parse: impl FnOnce() -> Result<Request, axum::response::Response>,
        queries_only: bool,
    ) -> axum::response::Response {
        let (caller, key_id) = match self.caller(headers, media).await {
            Ok(c) => c,
            Err(r) => return r,
        };
        let who = who(key_id, client);
        if let Err(r) = self.rate_limit(&who, media) {
            return r;
        }
        let mut request = match parse() {
            Ok(r) => r,
            Err(r) => return r,
        };
        let outcome = |operation_type, status, mut r: axum::response::Response| {
            r.extensions_mut().insert(Outcome {
                operation_type,
                status,
            });
            r
        };
        if request.query.trim().is_empty() && !request.extensions.contains_key("persistedQuery") {
            let r = refuse(
                StatusCode::BAD_REQUEST,
                media,
                "the request has no query; send {\"query\": \"...\"}",
                "BAD_REQUEST",
            );
            return outcome("unknown", Status::Rejected, r);
        }
        let unadmitted = match persisted::resolve(
            &self.config.persisted_queries,
            &self.persisted,
            &caller.workspace,
            &mut request,
        ) {
            Ok(unadmitted) => unadmitted,
            Err(e) => return outcome("unknown", Status::Error, request_errors(media, &[e])),
        };
        // The timeout covers admission, validation and execution alike. Admission (scan,
        // parse, measure) runs on the blocking pool: bounded as it is, a 256 KiB document
        // still takes milliseconds that belong to no async worker.
        let limit = self.config.request_timeout;
        let started = Instant::now();
        let limits = self.limits;
        let operation = request.operation_name.clone();
        let admitted = tokio::task::spawn_blocking(move || {
            let kinds = admission::admit(&limits, &mut request).map(|doc| {
                (
                    operation_type_in(doc, operation.as_deref()),
                    is_read_only(doc, operation.as_deref()),
                )
            });
            (request, kinds)
        });
        let timed_out = |operation_type| {
            outcome(
                operation_type,
                Status::Timeout,
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    media,
                    format!(
                        "the request ran longer than {} ms and was stopped; ask for less (smaller pages, fewer fields)",
                        limit.as_millis()
                    ),
                    "TIMEOUT",
                ),
            )
        };
        let (request, (ty, read_only)) = match tokio::time::timeout(limit, admitted).await {
            Err(_) => return timed_out("unknown"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the admission of a request failed");
                return outcome(
                    "unknown",
                    Status::Error,
                    refuse(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        media,
                        "the request could not be read",
                        "INTERNAL",
                    ),
                );
            }
            Ok(Ok((_, Err(e)))) => {
                return outcome("unknown", Status::Error, request_errors(media, &[e]));
            }
            Ok(Ok((request, Ok(kinds)))) => (request, kinds),
        };
        if let Some(doc) = unadmitted {
            doc.admitted(&self.persisted);
        }
        let operation_type = metrics::operation_label(ty);
        if queries_only && !read_only {
            let mut r = refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                media,
                "only queries can be sent with GET; send mutations with POST",
                "BAD_REQUEST",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return outcome(operation_type, Status::Rejected, r);
        }
        if operation_type == "subscription" {
            let error = request_error(
                "subscriptions are served over WebSocket (graphql-transport-ws) at /graphql",
                "BAD_REQUEST",
            );
            return outcome(
                operation_type,
                Status::Rejected,
                request_errors(media, &[error]),
            );
        }
        let request = prepare_operation(request, &self.store, caller);
        let remaining = limit.saturating_sub(started.elapsed());
        // Its own task: validation is synchronous (no await in it for a timeout to act on),
        // so the answer waits on the task, not on the work; the work is aborted at its next
        // await past the deadline.
        let schema = self.schema.clone();
        let mut task = tokio::spawn(async move { schema.execute(request).await });
        match tokio::time::timeout(remaining, &mut task).await {
            Ok(Ok(response)) => {
                let status = if response.errors.is_empty() {
                    Status::Ok
                } else {
                    Status::Error
                };
                outcome(operation_type, status, respond(media, response))
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a request's execution failed");
                outcome(
                    operation_type,
                    Status::Error,
                    refuse(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        media,
                        "the request failed inside the gateway",
                        "INTERNAL",
                    ),
                )
            }
            Err(_) => {
                task.abort();
                timed_out(operation_type)
            }
        }
    }
}

async fn graphql_post(
    State(app): State<AppState>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> axum::response::Response {
    let media = match acceptable(&headers) {
        Ok(media) => media,
        Err(refused) => return refused,
    };
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if ctype != "application/json" {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            "send the request as JSON with `Content-Type: application/json`",
            "BAD_REQUEST",
        );
    }
    let max = app.config.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                media,
                format!("the request body is larger than {max} bytes"),
                "BAD_REQUEST",
            );
        }
    };
    let parse = || {
        let request: Request = serde_json::from_slice(&bytes).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                media,
                format!(
                    "the body is not a GraphQL request ({e}); send {{\"query\": \"...\", \"variables\": {{...}}}}"
                ),
                "BAD_REQUEST",
            )
        })?;
        Ok(request)
    };
    app.run(media, &headers, client.map(|c| c.0.0), parse, false)
        .await
}

async fn graphql_get(
    State(app): State<AppState>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> axum::response::Response {
    let wants_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if wants_upgrade {
        return match upgrade {
            Ok(upgrade) => {
                crate::subscription::upgrade(app, upgrade, &headers, client.map(|c| c.0.0)).await
            }
            Err(rejection) => rejection.into_response(),
        };
    }
    let media = match acceptable(&headers) {
        Ok(media) => media,
        Err(refused) => return refused,
    };
    let parse = || {
        let qs = query.unwrap_or_default();
        async_graphql::http::parse_query_string(&qs).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                media,
                format!("the URL is not a GraphQL request ({e}); pass ?query=..."),
                "BAD_REQUEST",
            )
        })
    };
    app.run(media, &headers, client.map(|c| c.0.0), parse, true)
        .await
}

/// Does the operation a GET would run only read?
fn is_read_only(doc: &ExecutableDocument, operation: Option<&str>) -> bool {
    doc.operations
        .iter()
        .filter(|(name, _)| operation.is_none() || name.map(|n| n.as_str()) == operation)
        .all(|(_, op)| op.node.ty == OperationType::Query)
}

async fn metrics_text(State(app): State<AppState>) -> axum::response::Response {
    metrics::exposition(&app.metrics)
}

async fn healthz() -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok")
}

async fn readyz(State(app): State<AppState>) -> (StatusCode, String) {
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
