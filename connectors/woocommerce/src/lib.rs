//! WooCommerce source connector for Dossier, over the REST API v3 (`/wp-json/wc/v3`).
//!
//! ```toml
//! [[sources]]
//! name = "woo"
//! connector = "woocommerce"
//! config = { url = "${WOO_URL}", consumer_key = "${WOO_KEY}", consumer_secret = "${WOO_SECRET}" }
//!
//! [[sources.streams]]
//! name = "orders"
//! read = { resource = "orders" }
//! ```
//!
//! # Rules
//!
//! - **Auth**: HTTP Basic with the consumer key and secret (both [`SecretString`]s, never logged
//!   nor printed), over HTTPS; plain HTTP is refused except to a loopback address.
//! - **customers** are scanned whole on every run (`orderby=id&order=asc`, `page`/`per_page`):
//!   WooCommerce ignores `modified_after` on `/customers`. Only customers whose
//!   `date_modified_gmt` is after the checkpoint (ids of its last second kept, as for orders)
//!   are emitted, plus the customers of orders modified since the last run (an order changes
//!   `is_paying_customer` without touching the customer's `date_modified_gmt`), found with the
//!   same incremental order read. The scan goes by id, not time, so the checkpoint moves only
//!   with the scan's last batch: a run stopped midway scans again from the start (the store's
//!   upserts absorb the repeats). Customers deleted in WooCommerce are not detected.
//! - **orders** are read incrementally: `modified_after=<checkpoint - 1s>&dates_are_gmt=true&
//!   orderby=modified&order=asc`. Every request is anchored on the last checkpoint and starts at
//!   page 1, so an order modified during the read moves past the anchor and is read again
//!   rather than shifting the pages and being lost; the checkpoint keeps the ids already read in
//!   its last second, so records sharing a `date_modified_gmt` are neither lost nor duplicated.
//!   A page whose records were all read before moves on to the next page number. A store that
//!   ignores `modified_after` (older than WooCommerce 5.x) is detected (it returns orders before
//!   the anchor) and paged through instead; one that refuses `orderby=modified` is a config
//!   error.
//! - **Guest orders** (`customer_id: 0`) have a null `customer_id` and carry `billing_email`.
//! - **Dates** are the `*_gmt` fields (WooCommerce writes them without a zone), read as UTC.
//! - **Errors**: 429, 5xx and network errors are retried with backoff (`retry`); 401/403 are
//!   config errors; 404 `rest_no_route` is a config error pointing at the URL and permalinks;
//!   an answer that is not JSON (a WordPress or proxy error page) is a source error quoting it.

mod fields;
mod read;

use std::sync::Arc;

use dossier_connector::{
    BatchStream, Catalog, Connector, ConnectorError, Problem, ReadRequest, StreamInfo,
};
use dossier_http_source::{
    ApiResource, HttpClient, HttpResponse, ResourceStream, RetryConfig, catalog,
    check_by_one_record, check_page_size, secret_setting,
};
use schemars::JsonSchema;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::Value as Json;

/// The most records WooCommerce serves per page.
pub const MAX_PER_PAGE: usize = 100;

/// Connection settings of a WooCommerce store.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The store's base URL, e.g. `https://shop.example.com` (the API is under `/wp-json/wc/v3`).
    pub url: String,
    /// The REST API consumer key (`ck_...`); write `${WOO_KEY}`.
    #[schemars(with = "String")]
    pub consumer_key: SecretString,
    /// The REST API consumer secret (`cs_...`); write `${WOO_SECRET}`. Set this or
    /// `consumer_secret_env`.
    #[schemars(with = "Option<String>")]
    pub consumer_secret: Option<SecretString>,
    /// The name of the environment variable holding the consumer secret.
    pub consumer_secret_env: Option<String>,
    /// Records per request (at most 100); the batch size applies when smaller.
    #[serde(default = "default_per_page")]
    pub per_page: usize,
    /// How failed requests are retried.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_per_page() -> usize {
    MAX_PER_PAGE
}

/// What one stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Customers (registered users with the `customer` role), scanned on every run; only the
    /// changed ones are emitted.
    Customers,
    /// Orders, read incrementally by modification time.
    Orders,
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

/// Reads a WooCommerce store. See the [crate docs](crate) for the rules it follows.
pub struct WooConnector {
    http: HttpClient,
    base: String,
    key: SecretString,
    secret: SecretString,
    per_page: usize,
}

impl std::fmt::Debug for WooConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WooConnector")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn base_url(url: &str) -> Result<String, ConnectorError> {
    let url = dossier_http_source::secure_base_url(url)?;
    let url = url.strip_suffix("/wp-json/wc/v3").unwrap_or(&url);
    Ok(format!("{url}/wp-json/wc/v3"))
}

fn secret(config: &Config) -> Result<SecretString, ConnectorError> {
    secret_setting(
        "consumer_secret",
        config.consumer_secret.as_ref(),
        config.consumer_secret_env.as_deref(),
        "no consumer secret: set `consumer_secret = \"${WOO_SECRET}\"` or `consumer_secret_env`",
    )
}

/// A WooCommerce error body: `{"code": ..., "message": ..., "data": {"status": ...}}`.
fn wc_error(r: &HttpResponse) -> (String, String) {
    match serde_json::from_slice::<Json>(&r.body) {
        Ok(j) => (
            j["code"].as_str().unwrap_or_default().to_string(),
            j["message"].as_str().unwrap_or_default().to_string(),
        ),
        Err(_) => (String::new(), r.snippet()),
    }
}

/// One page as read.
pub(crate) struct Page {
    pub records: Vec<Json>,
    pub total_pages: Option<u64>,
}

impl WooConnector {
    /// GET `{base}/{resource}` with `params`; `None` past the last page.
    pub(crate) async fn get_page(
        &self,
        resource: Resource,
        params: &[(&str, String)],
    ) -> Result<Option<Page>, ConnectorError> {
        let url = format!("{}/{}", self.base, resource.name());
        let response = self
            .http
            .send(|c| {
                c.get(&url)
                    .basic_auth(self.key.expose_secret(), Some(self.secret.expose_secret()))
                    .query(params)
            })
            .await?;
        let status = response.status.as_u16();
        if !response.status.is_success() {
            let (code, message) = wc_error(&response);
            let detail = if code.is_empty() {
                message
            } else {
                format!("{code}: {message}")
            };
            return Err(match status {
                400 if code == "rest_post_invalid_page_number" => return Ok(None),
                400 if code == "rest_invalid_param" && detail.contains("orderby") => {
                    ConnectorError::config(format!(
                        "woocommerce refused orderby=modified ({detail}); incremental order reads \
                         need a WooCommerce with `modified_after` and `orderby=modified` (5.x or later)"
                    ))
                }
                401 | 403 => ConnectorError::config(format!(
                    "woocommerce refused the consumer key (HTTP {status}, {detail}); check the key \
                     and secret and that the key has read permission"
                )),
                404 => ConnectorError::config(format!(
                    "woocommerce has no {url} (HTTP 404, {detail}); check `url` and that the site \
                     uses pretty permalinks"
                )),
                _ => ConnectorError::remote(
                    format!("woocommerce answered HTTP {status} ({detail})"),
                    false,
                ),
            });
        }
        let json = response.json("woocommerce")?;
        let Json::Array(records) = json else {
            return Err(ConnectorError::remote(
                format!("woocommerce answered {url} with JSON that is not a list"),
                false,
            ));
        };
        Ok(Some(Page {
            records,
            total_pages: response
                .header("x-wp-totalpages")
                .and_then(|v| v.trim().parse().ok()),
        }))
    }
}

#[async_trait::async_trait]
impl Connector for WooConnector {
    type Config = Config;
    type Stream = Stream;

    const NAME: &'static str = "woocommerce";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    async fn connect(config: Config) -> Result<Self, ConnectorError> {
        let base = base_url(&config.url)?;
        let secret = secret(&config)?;
        check_page_size("per_page", config.per_page, MAX_PER_PAGE)?;
        Ok(Self {
            http: HttpClient::new("woocommerce", config.retry)?,
            base,
            key: config.consumer_key,
            secret,
            per_page: config.per_page,
        })
    }

    async fn check(&self, streams: &[(String, Stream)]) -> Vec<Problem> {
        check_by_one_record(streams, |stream| async move {
            self.get_page(stream.resource, &[("per_page", "1".to_string())])
                .await
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
        self.http.retries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url("https://shop.example.com/").unwrap(),
            "https://shop.example.com/wp-json/wc/v3"
        );
        assert_eq!(
            base_url("https://shop.example.com/wp-json/wc/v3").unwrap(),
            "https://shop.example.com/wp-json/wc/v3"
        );
        assert!(base_url("http://127.0.0.1:8080").is_ok());
        assert!(base_url("http://shop.example.com").is_err());
        assert!(base_url("shop.example.com").is_err());
    }

    #[test]
    fn secrets_are_never_printed() {
        let config: Config = serde_json::from_value(serde_json::json!({
            "url": "https://s", "consumer_key": "ck_abc", "consumer_secret": "cs_xyz"
        }))
        .unwrap();
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("ck_abc") && !shown.contains("cs_xyz"),
            "{shown}"
        );
    }
}
