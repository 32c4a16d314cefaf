//! Prometheus metrics, served at `/metrics` in the text exposition format (0.0.4).
//!
//! The gateway records its own requests here (`dossier_graphql_requests_total`,
//! `dossier_graphql_request_duration_seconds`, `dossier_graphql_subscriptions_active`);
//! whoever runs syncs registers its metrics in the same [`Metrics`] (the CLI registers the
//! sync engine's). Labels carry operation types, statuses, source and stream names: never a
//! workspace, a key or customer data, so `/metrics` answers without a key.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// How a GraphQL request ended, as the `status` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// It ran and its response has no errors.
    Ok,
    /// It ran, or its document did not parse or validate: the response has errors.
    Error,
    /// Refused before running: no or a bad key, over the rate limit, a malformed request.
    Rejected,
    /// Stopped at the request timeout.
    Timeout,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Rejected => "rejected",
            Status::Timeout => "timeout",
        }
    }
}

/// The `operation_type` label of an operation.
pub(crate) fn operation_label(
    ty: Option<async_graphql::parser::types::OperationType>,
) -> &'static str {
    use async_graphql::parser::types::OperationType;
    match ty {
        Some(OperationType::Query) => "query",
        Some(OperationType::Mutation) => "mutation",
        Some(OperationType::Subscription) => "subscription",
        None => "unknown",
    }
}

/// What a `/graphql` handler tells the metrics layer about the request it answered, in the
/// response's extensions. A response without it was refused before its document was read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) operation_type: &'static str,
    pub(crate) status: Status,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation_type: &'static str,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation_type: &'static str,
}

fn request_histogram() -> Histogram {
    // 1 ms to about 16 s: past the default request timeout.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

struct Inner {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<OperationLabels, Histogram, fn() -> Histogram>,
    subscriptions: Gauge,
}

/// The metrics `/metrics` serves: the gateway's own, and whatever else is registered here.
/// Cloning shares them.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the gateway's request metrics.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "dossier_graphql_requests",
            "GraphQL requests answered, by operation type and status (ok, error, rejected, timeout)",
            requests.clone(),
        );
        let durations =
            Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                request_histogram,
            );
        registry.register(
            "dossier_graphql_request_duration_seconds",
            "Time to answer a GraphQL request over HTTP, by operation type",
            durations.clone(),
        );
        let subscriptions = Gauge::default();
        registry.register(
            "dossier_graphql_subscriptions_active",
            "GraphQL subscriptions running over WebSocket",
            subscriptions.clone(),
        );
        Self(Arc::new(Inner {
            registry: Mutex::new(registry),
            requests,
            durations,
            subscriptions,
        }))
    }

    /// Adds a metric. Counters are registered without their `_total` suffix (the encoder adds
    /// it). Label values must never carry customer data: `/metrics` needs no key.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.0
            .registry
            .lock()
            .expect("metrics registry")
            .register(name, help, metric);
    }

    /// Adds metrics computed at each scrape.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.0
            .registry
            .lock()
            .expect("metrics registry")
            .register_collector(collector);
    }

    /// Everything registered, in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.0.registry.lock().expect("metrics registry");
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }

    /// Counts a request and, when it came over HTTP, how long it took.
    pub(crate) fn request(
        &self,
        operation_type: &'static str,
        status: Status,
        elapsed: Option<Duration>,
    ) {
        self.0
            .requests
            .get_or_create(&RequestLabels {
                operation_type,
                status: status.as_str(),
            })
            .inc();
        if let Some(elapsed) = elapsed {
            self.0
                .durations
                .get_or_create(&OperationLabels { operation_type })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// One more running subscription until the guard drops.
    pub(crate) fn subscription(&self) -> SubscriptionGuard {
        self.0.subscriptions.inc();
        SubscriptionGuard {
            metrics: self.clone(),
            errors: false,
        }
    }
}

/// A running subscription: counted as a request, with its status, when it ends.
pub(crate) struct SubscriptionGuard {
    metrics: Metrics,
    errors: bool,
}

impl SubscriptionGuard {
    /// Notes a response of the subscription.
    pub(crate) fn saw(&mut self, response: &async_graphql::Response) {
        self.errors |= !response.errors.is_empty();
    }
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.metrics.0.subscriptions.dec();
        let status = if self.errors {
            Status::Error
        } else {
            Status::Ok
        };
        self.metrics.request("subscription", status, None);
    }
}

/// Times `/graphql` requests and counts them by the [`Outcome`] their handler reported.
/// WebSocket upgrades are left out: their subscriptions count themselves.
pub(crate) async fn track(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return response;
    }
    let elapsed = started.elapsed();
    let outcome = response.extensions().get::<Outcome>().copied();
    let (operation_type, status) = outcome.map_or(("unknown", Status::Rejected), |o| {
        (o.operation_type, o.status)
    });
    metrics.request(operation_type, status, Some(elapsed));
    tracing::info!(
        target: "dossier_gateway::request",
        operation_type,
        status = status.as_str(),
        http_status = response.status().as_u16(),
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
        "graphql request"
    );
    response
}

/// The answer to `GET /metrics`.
pub(crate) fn exposition(metrics: &Metrics) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        metrics.encode(),
    )
        .into_response()
}
