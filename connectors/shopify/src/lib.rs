//! Shopify source connector for Dossier, over the GraphQL Admin API (no SDK).
//!
//! ```toml
//! [[sources]]
//! name = "shopify"
//! connector = "shopify"
//! config = { shop = "${SHOPIFY_SHOP}", token = "${SHOPIFY_TOKEN}" }
//!
//! [[sources.streams]]
//! name = "customers"
//! read = { resource = "customers" }
//! ```
//!
//! # Rules
//!
//! - **Endpoint**: `POST {endpoint}/admin/api/{api_version}/graphql.json` with the header
//!   `X-Shopify-Access-Token`; `endpoint` defaults to `https://{shop}.myshopify.com`. The token
//!   comes from `token` (write `${SHOPIFY_TOKEN}`) or from the variable `token_env` names; it is
//!   a [`SecretString`], never logged nor printed.
//! - **Streams**: `customers` and `orders`, with flat snake_case fields (see [`fields`]); `id`
//!   is the numeric part of the GID (`gid://shopify/Customer/42` → 42), `tags` are joined with
//!   `", "`, money amounts are exact decimals.
//! - **Incremental**: every read asks for what follows the checkpoint `(updated_at, last_id)`,
//!   `updated_at:>'<time>' OR (updated_at:>='<time>' AND id:><last_id>)`, with
//!   `sortKey: UPDATED_AT`, pages with `first`/`after`, and still skips any record at or
//!   before the checkpoint: records sharing an `updatedAt` are neither lost nor duplicated,
//!   and a run without changes costs one request. Each page is one batch, with the
//!   checkpoint of its last record.
//! - **Rate limits**: the cost budget of each answer (`extensions.cost.throttleStatus`) paces
//!   the next request so that it fits; a `THROTTLED` answer waits until the budget holds the
//!   requested cost, then retries. HTTP 429 (honouring `Retry-After`), 5xx and network errors
//!   are retried with exponential backoff and jitter (`retry`).
//! - **Bulk operations**: a first read (no checkpoint) of a large stream runs a bulk query
//!   (`bulkOperationRunQuery`), polls it (`node(id:)`) until it completes and reads its JSONL
//!   result piece by piece (lines of nested connections, with `__parentId`, are skipped: the
//!   queries select none). `bulk = "auto"` does so from `bulk_threshold` records on (a count
//!   query decides), `always` always, `never` never. The result is not in `updatedAt` order:
//!   its batches carry a checkpoint at the epoch (resuming pages through everything) until the
//!   last, whose checkpoint is the operation's creation time.
//! - **Errors**: HTTP 401/403 and `ACCESS_DENIED` are config errors naming the scope the stream
//!   needs (`read_customers`, `read_orders`); spent retries are retryable source errors.

mod bulk;
mod client;
pub mod fields;
pub mod queries;
mod read;

use std::sync::Arc;

use dossier_connector::{
    BatchStream, Catalog, Connector, ConnectorError, Problem, ReadRequest, StreamInfo,
};
use dossier_http_source::{
    ApiResource, HttpClient, ResourceStream, RetryConfig, catalog, check_by_one_record,
    check_page_size, secret_setting,
};
use schemars::JsonSchema;
use secrecy::SecretString;
use serde::Deserialize;

pub use crate::bulk::BulkMode;
use crate::client::GraphqlClient;

/// The Admin API version used unless the config names another.
pub const DEFAULT_API_VERSION: &str = "2025-01";

/// The largest page Shopify serves.
pub const MAX_PAGE_SIZE: usize = 250;

/// Connection settings of a Shopify store.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The shop: its `myshopify.com` name (`my-shop`) or full domain (`my-shop.myshopify.com`).
    pub shop: String,
    /// The Admin API version, e.g. `2025-01`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// The admin API access token; write `${SHOPIFY_TOKEN}` rather than the token itself.
    /// Set this or `token_env`.
    #[schemars(with = "Option<String>")]
    pub token: Option<SecretString>,
    /// The name of the environment variable holding the admin API access token.
    pub token_env: Option<String>,
    /// Another base URL than `https://{shop}.myshopify.com` (a proxy, a test server).
    pub endpoint: Option<String>,
    /// Records per request (at most 250); the batch size applies when smaller.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// When a first read uses a bulk operation: `auto` (from `bulk_threshold` records on),
    /// `always` or `never`.
    #[serde(default)]
    pub bulk: BulkMode,
    /// The number of records from which `bulk = "auto"` reads a stream with a bulk operation
    /// the first time (paging stops at 25,000 records).
    #[serde(default = "default_bulk_threshold")]
    pub bulk_threshold: u64,
    /// Milliseconds between two polls of a running bulk operation.
    #[serde(default = "default_bulk_poll_ms")]
    pub bulk_poll_ms: u64,
    /// How failed requests are retried.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_bulk_threshold() -> u64 {
    20_000
}

fn default_bulk_poll_ms() -> u64 {
    2_000
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_string()
}

fn default_page_size() -> usize {
    100
}

/// What one stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Customers (needs the `read_customers` scope).
    Customers,
    /// Orders (needs `read_orders`; orders older than 60 days also need `read_all_orders`).
    Orders,
}

impl Resource {
    pub fn scope(self) -> &'static str {
        match self {
            Resource::Customers => "read_customers",
            Resource::Orders => "read_orders",
        }
    }
}

impl ApiResource for Resource {
    const ALL: &'static [(Self, &'static str)] = &[
        (Resource::Customers, "customers"),
        (Resource::Orders, "orders"),
    ];

    fn info(self, name: &str) -> StreamInfo {
        fields::info(name, self)
    }
}

/// One stream: which resource it reads.
pub type Stream = ResourceStream<Resource>;

/// Reads a Shopify store. See the [crate docs](crate) for the rules it follows.
#[derive(Debug)]
pub struct ShopifyConnector {
    client: GraphqlClient,
    page_size: usize,
    bulk: BulkMode,
    bulk_threshold: u64,
    bulk_poll_ms: u64,
}

fn shop_domain(shop: &str) -> Result<String, ConnectorError> {
    let shop = shop
        .trim()
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let ok = !shop.is_empty()
        && shop
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !ok {
        return Err(ConnectorError::config(format!(
            "shop {shop:?} is not a shop name such as \"my-shop\" or \"my-shop.myshopify.com\""
        )));
    }
    Ok(if shop.contains('.') {
        shop.to_string()
    } else {
        format!("{shop}.myshopify.com")
    })
}

fn token(config: &Config) -> Result<SecretString, ConnectorError> {
    secret_setting(
        "token",
        config.token.as_ref(),
        config.token_env.as_deref(),
        "no access token: set `token = \"${SHOPIFY_TOKEN}\"` or `token_env = \"SHOPIFY_TOKEN\"`",
    )
}

#[async_trait::async_trait]
impl Connector for ShopifyConnector {
    type Config = Config;
    type Stream = Stream;

    const NAME: &'static str = "shopify";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    async fn connect(config: Config) -> Result<Self, ConnectorError> {
        let token = token(&config)?;
        let version = config.api_version.trim();
        if version.len() != 7
            || !version
                .chars()
                .enumerate()
                .all(|(i, c)| if i == 4 { c == '-' } else { c.is_ascii_digit() })
        {
            return Err(ConnectorError::config(format!(
                "api_version {version:?} is not a version such as \"{DEFAULT_API_VERSION}\""
            )));
        }
        let base = match &config.endpoint {
            Some(e) if !e.trim().is_empty() => {
                let e = e.trim().trim_end_matches('/');
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err(ConnectorError::config(format!(
                        "endpoint {e:?} is not an http(s) URL"
                    )));
                }
                e.to_string()
            }
            _ => format!("https://{}", shop_domain(&config.shop)?),
        };
        check_page_size("page_size", config.page_size, MAX_PAGE_SIZE)?;
        let url = format!("{base}/admin/api/{version}/graphql.json");
        let http = HttpClient::new("shopify", config.retry)?;
        Ok(Self {
            client: GraphqlClient::new(http, url, token),
            page_size: config.page_size,
            bulk: config.bulk,
            bulk_threshold: config.bulk_threshold,
            bulk_poll_ms: config.bulk_poll_ms.max(1),
        })
    }

    async fn check(&self, streams: &[(String, Stream)]) -> Vec<Problem> {
        check_by_one_record(streams, |stream| {
            self.fetch_page(stream.resource, 1, None, None)
        })
        .await
    }

    async fn discover(&self) -> Result<Catalog, ConnectorError> {
        Ok(catalog::<Resource>())
    }

    async fn describe(&self, name: &str, stream: &Stream) -> Result<StreamInfo, ConnectorError> {
        Ok(stream.resource.info(name))
    }

    fn read(self: Arc<Self>, request: ReadRequest<Stream>) -> BatchStream {
        read::read(self, request)
    }

    fn retries(&self) -> u64 {
        self.client.http.retries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shop_domains() {
        assert_eq!(shop_domain("my-shop").unwrap(), "my-shop.myshopify.com");
        assert_eq!(
            shop_domain("https://x.myshopify.com/").unwrap(),
            "x.myshopify.com"
        );
        assert!(shop_domain("a b").is_err());
    }

    #[test]
    fn the_token_is_never_printed() {
        let config: Config = serde_json::from_value(serde_json::json!({
            "shop": "s", "token": "shpat_secret123"
        }))
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("shpat_secret123"), "{shown}");
    }
}
