//! Dossier's GraphQL gateway (async-graphql on axum): a thin layer over the store.
//!
//! [`build_schema`] assembles the GraphQL schema over a [`SqlStore`]; [`router`] serves it
//! over HTTP (`/graphql`, GraphiQL at `/`, `/healthz`); [`execute`] runs one document without
//! HTTP (the CLI's `query` command); [`sdl`] prints the schema for the checked-in
//! `schema/dossier.graphql`.
//!
//! Every list is a keyset-paginated connection, and the per-contact fields of a page
//! (`data`, `aggregates`, `identities`, `sessions`) load through data loaders: one store call
//! per field for the whole page, whatever its size.

#![warn(missing_docs)]

mod connectors;
mod cursor;
mod filter;
mod http;
mod loaders;
mod schema;

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{EmptySubscription, Schema};
use dossier_store::SqlStore;

pub use connectors::{ConnectorAdmin, ConnectorInfo, ConnectorKind};
pub use http::router;
pub use schema::{Mutation, Query};

/// Starts syncs for the gateway (implemented by the sync engine; the gateway does not know it).
#[async_trait::async_trait]
pub trait SyncTrigger: Send + Sync {
    /// Runs (or starts) a sync of `source`; returns the run id. Err is a user-facing message.
    async fn trigger(&self, source: &str) -> Result<i64, String>;
}

/// What the gateway serves and how much one request may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The workspace every query reads and every mutation writes.
    pub workspace: String,
    /// The largest `first` a connection accepts.
    pub max_page_size: usize,
    /// The page size when `first` is not given.
    pub default_page_size: usize,
    /// The deepest selection nesting a document may have.
    pub max_depth: usize,
    /// The largest complexity (number of selected fields) a document may have.
    pub max_complexity: usize,
    /// Whether the `installConnector` mutation may install plugins. Off by default: there are
    /// no API keys yet, so anyone who can reach the server could load code into it.
    pub allow_plugin_install: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            workspace: "default".into(),
            max_page_size: 100,
            default_page_size: 20,
            max_depth: 12,
            max_complexity: 5000,
            allow_plugin_install: false,
        }
    }
}

/// The gateway's GraphQL schema.
pub type DossierSchema = Schema<Query, Mutation, EmptySubscription>;

/// What resolvers reach through the schema data.
pub(crate) struct Gateway {
    pub(crate) store: SqlStore,
    pub(crate) config: GatewayConfig,
    pub(crate) sync: Option<Arc<dyn SyncTrigger>>,
    pub(crate) connectors: Option<Arc<dyn ConnectorAdmin>>,
}

/// Builds the schema over `store`; `sync` enables the `triggerSync` mutation, `connectors`
/// the `connectors` query and (with `allow_plugin_install`) the `installConnector` mutation.
pub fn build_schema(
    store: SqlStore,
    sync: Option<Arc<dyn SyncTrigger>>,
    connectors: Option<Arc<dyn ConnectorAdmin>>,
    config: GatewayConfig,
) -> DossierSchema {
    let ws = config.workspace.clone();
    let spawn = |fut| {
        tokio::spawn(fut);
    };
    Schema::build(Query, Mutation, EmptySubscription)
        .limit_depth(config.max_depth)
        .limit_complexity(config.max_complexity)
        .extension(async_graphql::extensions::Tracing)
        .data(DataLoader::new(
            loaders::ContactDataLoader::new(store.clone()),
            spawn,
        ))
        .data(DataLoader::new(
            loaders::AggregatesLoader::new(store.clone(), ws.clone()),
            spawn,
        ))
        .data(DataLoader::new(
            loaders::IdentitiesLoader::new(store.clone()),
            spawn,
        ))
        .data(DataLoader::new(
            loaders::SessionsLoader::new(store.clone()),
            spawn,
        ))
        .data(DataLoader::new(
            loaders::ContactLoader::new(store.clone(), ws),
            spawn,
        ))
        .data(Gateway {
            store,
            config,
            sync,
            connectors,
        })
        .finish()
}

/// The schema in SDL, as checked in at `schema/dossier.graphql`.
pub fn sdl() -> String {
    Schema::build(Query, Mutation, EmptySubscription)
        .finish()
        .sdl()
}

/// Runs one GraphQL document without HTTP; returns the full JSON response
/// (`data`, and `errors` when there are any).
pub async fn execute(
    schema: &DossierSchema,
    query: &str,
    variables: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut request = async_graphql::Request::new(query);
    if let Some(v) = variables {
        request = request.variables(async_graphql::Variables::from_json(v));
    }
    let response = schema.execute(request).await;
    serde_json::to_value(&response).unwrap_or_else(|e| {
        serde_json::json!({ "data": null, "errors": [{ "message": format!("cannot encode the response: {e}") }] })
    })
}

#[cfg(test)]
mod tests;
