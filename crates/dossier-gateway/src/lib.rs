//! Dossier's GraphQL gateway (async-graphql on axum): a thin layer over the store.
//!
//! [`build_schema`] assembles the GraphQL schema over a [`SqlStore`]; [`router`] serves it
//! over HTTP (`/graphql`, `/healthz`, `/readyz`, `/metrics`) behind API
//! keys, roles and limits, and its subscriptions over WebSocket (graphql-transport-ws, same
//! path); [`execute`] runs one document without HTTP (the CLI's `query` command); [`sdl`]
//! prints the schema for the checked-in `schema/dossier.graphql`.
//!
//! Every request carries a [`Caller`]: the one workspace it sees and its [`Role`]. Roots
//! read and write only that workspace; nested fields hang off what the roots returned.
//!
//! Every list is a keyset-paginated connection, and the per-contact fields of a page
//! (`data`, `aggregates`, `identities`, `sessions`) load through data loaders: one store call
//! per field for the whole page, whatever its size.

#![warn(missing_docs)]

mod admission;
mod app;
mod auth;
mod card;
mod connectors;
mod contact;
mod context;
mod cursor;
mod dashboards;
mod filter;
mod http;
mod identity;
mod keys;
mod limits;
mod loaders;
mod metrics;
mod nulls;
mod persisted;
mod schema;
mod segments;
mod shortcuts;
mod subscription;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::Schema;
use dossier_store::SqlStore;

pub use admission::NESTING_CEILING;
pub use connectors::{ConnectorAdmin, ConnectorInfo, ConnectorKind};
pub use dossier_store::Role;
pub use http::router;
pub use metrics::Metrics;
pub use schema::{Mutation, Query};
pub use subscription::{
    MAX_SUBSCRIPTIONS, ProgressChannel, ProgressEvent, ProgressFeed, ProgressKind, Subscription,
};

/// Starts syncs for the gateway (implemented by the sync engine; the gateway does not know it).
#[async_trait::async_trait]
pub trait SyncTrigger: Send + Sync {
    /// Runs (or starts) a sync of `source` in `workspace`; returns the run id. Err is a
    /// user-facing message (a source of another workspace is reported as unknown).
    async fn trigger(&self, workspace: &str, source: &str) -> Result<i64, String>;

    /// Checks `source`'s connection, streams and mappings without writing anything (as
    /// `dossier check` does). Err is a user-facing message, as for [`Self::trigger`].
    async fn check(&self, workspace: &str, source: &str) -> Result<SourceCheck, String> {
        let _ = (workspace, source);
        Err("checking sources is not available in this process".to_string())
    }
}

/// What checking a source found.
#[derive(Debug, Clone, Default, async_graphql::SimpleObject)]
pub struct SourceCheck {
    /// Everything to fix (the connection, a stream, a mapping), each naming where; empty when
    /// the source is ready to sync.
    pub problems: Vec<String>,
    /// What a sample of each stream showed (fields that qualify as cursors, ...).
    pub notes: Vec<String>,
}

/// Who may call the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Every request presents an API key (`Authorization: Bearer dsk_...`); it sees the key's
    /// workspace with the key's role.
    Keys,
    /// No key: every request is an admin of this workspace. For local use on loopback only.
    Open {
        /// The workspace every request sees.
        workspace: String,
    },
}

/// How many requests one key may send: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
}

/// Which documents the gateway runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PersistedQueries {
    /// Any document; clients may also send only its sha256 once the gateway has seen it
    /// (automatic persisted queries).
    #[default]
    Automatic,
    /// Only the documents of this list, sha256 (hex) to document; by hash or in full.
    AllowList(Arc<HashMap<String, String>>),
}

impl PersistedQueries {
    /// Allow-list mode over these documents (each runs when sent in full or by its sha256).
    pub fn allow_list(documents: impl IntoIterator<Item = String>) -> Self {
        Self::AllowList(Arc::new(
            documents
                .into_iter()
                .map(|d| (dossier_core::sha256_hex(&d), d))
                .collect(),
        ))
    }
}

/// What the gateway serves and how much one request may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Who may call.
    pub access: Access,
    /// The largest `first` a connection accepts.
    pub max_page_size: usize,
    /// The page size when `first` is not given.
    pub default_page_size: usize,
    /// The deepest selection nesting a document may have.
    pub max_depth: usize,
    /// The largest complexity (number of selected fields) a document may have.
    pub max_complexity: usize,
    /// Whether the `installConnector` mutation (admin role) may install plugins. Off by
    /// default: it lets an admin key load code into the server.
    pub allow_plugin_install: bool,
    /// The most aliased fields a document may have.
    pub max_aliases: usize,
    /// The most fields an operation may select at its root.
    pub max_root_fields: usize,
    /// The most tokens (names, punctuation, values, strings) a document may have, counted
    /// before it is parsed.
    pub max_tokens: usize,
    /// The deepest nesting of braces, brackets and parentheses a document may have (selection
    /// sets, argument lists, lists and input objects alike), checked before it is parsed; also
    /// the deepest nesting of selections once fragments are expanded. At most
    /// [`NESTING_CEILING`], whatever is configured: the parser recurses once per level.
    pub max_nesting: usize,
    /// The most fields a document may select once its fragments are expanded (counted
    /// without expanding them).
    pub max_selections: usize,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How long one request may run before it is stopped.
    pub request_timeout: Duration,
    /// Requests per key (or per client address without keys); `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Whether `__schema` and `__type` answer.
    pub introspection: bool,
    /// Which documents run.
    pub persisted_queries: PersistedQueries,
    /// Origins allowed to call from a browser (`*` for any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// The most buckets a breakdown returns (`contactStats(first:)`), and the most intervals
    /// and (interval, group) buckets a time series or a segment's history may hold.
    pub max_buckets: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            access: Access::Keys,
            max_page_size: 100,
            default_page_size: 20,
            max_depth: 12,
            max_complexity: 5000,
            allow_plugin_install: false,
            max_aliases: 30,
            max_root_fields: 10,
            max_tokens: 15_000,
            max_nesting: 128,
            max_selections: 10_000,
            max_body_bytes: 256 * 1024,
            request_timeout: Duration::from_secs(10),
            rate_limit: Some(RateLimit {
                per_second: 50,
                burst: 100,
            }),
            introspection: true,
            persisted_queries: PersistedQueries::Automatic,
            cors_origins: vec![],
            max_buckets: 1000,
        }
    }
}

impl GatewayConfig {
    /// The defaults, open to everyone as admin of `workspace` (local use).
    pub fn open(workspace: &str) -> Self {
        Self {
            access: Access::Open {
                workspace: workspace.to_string(),
            },
            ..Self::default()
        }
    }
}

/// Who is asking: the workspace a request sees and what it may do there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The only workspace the request reads and writes.
    pub workspace: String,
    /// What the request may do.
    pub role: Role,
}

impl Caller {
    /// An admin of `workspace` (the CLI, or an open gateway).
    pub fn admin(workspace: &str) -> Self {
        Self {
            workspace: workspace.to_string(),
            role: Role::Admin,
        }
    }
}

/// The gateway's GraphQL schema.
pub type DossierSchema = Schema<Query, Mutation, Subscription>;

/// What resolvers reach through the schema data.
pub(crate) struct Gateway {
    pub(crate) store: SqlStore,
    pub(crate) config: GatewayConfig,
    pub(crate) sync: Option<Arc<dyn SyncTrigger>>,
    pub(crate) connectors: Option<Arc<dyn ConnectorAdmin>>,
    pub(crate) progress: Option<Arc<dyn ProgressFeed>>,
    pub(crate) metrics: Metrics,
}

/// Builds the schema over `store`; `sync` enables the `triggerSync` mutation, `connectors`
/// the `connectors` query and (with `allow_plugin_install`) the `installConnector` mutation,
/// `progress` the `syncProgress` subscription.
pub fn build_schema(
    store: SqlStore,
    sync: Option<Arc<dyn SyncTrigger>>,
    connectors: Option<Arc<dyn ConnectorAdmin>>,
    progress: Option<Arc<dyn ProgressFeed>>,
    config: GatewayConfig,
) -> DossierSchema {
    let mut builder = Schema::build(Query::default(), Mutation::default(), Subscription)
        .limit_depth(config.max_depth)
        .limit_complexity(config.max_complexity)
        .extension(limits::Validation {
            introspection: config.introspection,
        })
        .extension(async_graphql::extensions::Tracing);
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    builder
        .data(Gateway {
            store,
            config,
            sync,
            connectors,
            progress,
            metrics: Metrics::new(),
        })
        .finish()
}

/// The metrics the [`router`] of `schema` serves at `/metrics`: register more there.
pub fn metrics(schema: &DossierSchema) -> Metrics {
    schema
        .data::<Gateway>()
        .map(|g| g.metrics.clone())
        .unwrap_or_default()
}

/// The config `schema` was built with (what the console needs to know of access).
pub fn config(schema: &DossierSchema) -> GatewayConfig {
    schema
        .data::<Gateway>()
        .map(|g| g.config.clone())
        .unwrap_or_default()
}

/// The schema in SDL, as checked in at `schema/dossier.graphql`.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), Subscription)
        .finish()
        .sdl()
}

/// A query or mutation as `caller`: [`prepare`], and errored fields made `null` as the
/// specification says ([`nulls`]; its errors are handed back when execution ends, which a
/// subscription's events never do, so subscriptions go without it).
pub(crate) fn prepare_operation(
    request: async_graphql::Request,
    store: &SqlStore,
    caller: Caller,
) -> async_graphql::Request {
    prepare(request, store, caller).data(nulls::Sink::default())
}

/// A request as `caller`: the caller and this request's data loaders travel with it.
pub(crate) fn prepare(
    request: async_graphql::Request,
    store: &SqlStore,
    caller: Caller,
) -> async_graphql::Request {
    let loaders = loaders::Loaders::new(store, &caller.workspace);
    request.data(loaders).data(caller)
}

/// Runs one GraphQL document without HTTP as `caller`, through the same admission as HTTP;
/// returns the full JSON response (`data`, and `errors` when there are any).
pub async fn execute(
    schema: &DossierSchema,
    store: &SqlStore,
    caller: Caller,
    query: &str,
    variables: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut request = async_graphql::Request::new(query);
    if let Some(v) = variables {
        request = request.variables(async_graphql::Variables::from_json(v));
    }
    let default = GatewayConfig::default();
    let config = schema.data::<Gateway>().map_or(&default, |g| &g.config);
    let limits = admission::Limits::of(config);
    let limit = config.request_timeout;
    let response = match admission::admit(&limits, &mut request) {
        Ok(_) => {
            let run = schema.execute(prepare_operation(request, store, caller));
            // The same bound as over HTTP, so the console and `dossier query` cannot run a
            // document longer than the API would.
            match tokio::time::timeout(limit, run).await {
                Ok(response) => response,
                Err(_) => {
                    use async_graphql::ErrorExtensions as _;
                    let error = async_graphql::Error::new(format!(
                        "the request ran longer than {} ms and was stopped; ask for less (smaller pages, fewer fields)",
                        limit.as_millis()
                    ))
                    .extend_with(|_, e| e.set("code", "TIMEOUT"));
                    async_graphql::Response::from_errors(vec![
                        error.into_server_error(async_graphql::Pos::default()),
                    ])
                }
            }
        }
        Err(e) => async_graphql::Response::from_errors(vec![e]),
    };
    serde_json::to_value(&response).unwrap_or_else(|e| {
        serde_json::json!({ "data": null, "errors": [{ "message": format!("cannot encode the response: {e}") }] })
    })
}

/// Runs one subscription document without a socket as `caller`, through the same admission
/// as HTTP: each event as a JSON response (`data`, or `errors`); a refused document gives one
/// response with its error and ends.
pub fn subscribe(
    schema: &DossierSchema,
    store: &SqlStore,
    caller: Caller,
    query: &str,
    variables: Option<serde_json::Value>,
) -> futures::stream::BoxStream<'static, serde_json::Value> {
    use futures::StreamExt as _;
    let mut request = async_graphql::Request::new(query);
    if let Some(v) = variables {
        request = request.variables(async_graphql::Variables::from_json(v));
    }
    let default = GatewayConfig::default();
    let config = schema.data::<Gateway>().map_or(&default, |g| &g.config);
    let responses = match admission::admit(&admission::Limits::of(config), &mut request) {
        Ok(_) => schema
            .execute_stream(prepare_operation(request, store, caller))
            .boxed(),
        Err(e) => {
            futures::stream::once(async move { async_graphql::Response::from_errors(vec![e]) })
                .boxed()
        }
    };
    responses
        .map(|response| {
            serde_json::to_value(&response).unwrap_or_else(|e| {
                serde_json::json!({ "data": null, "errors": [{ "message": format!("cannot encode the response: {e}") }] })
            })
        })
        .boxed()
}

#[cfg(test)]
mod tests;
