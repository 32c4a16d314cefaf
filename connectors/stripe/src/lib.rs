//! Stripe source connector for Dossier: customers and charges over the REST API
//! (`/v1/customers`, `/v1/charges`, `/v1/events`). It ships as a plugin
//! (`connectors/stripe-plugin`, a `cdylib` installed with `dossier connectors install`); this
//! crate is the connector itself, also linked in directly by tests and benchmarks.
//!
//! ```toml
//! [[sources]]
//! name = "stripe"
//! connector = "stripe"
//! config = { api_key = "${STRIPE_API_KEY}" }
//!
//! [[sources.streams]]
//! name = "charges"
//! read = { resource = "charges" }
//! ```
//!
//! # Rules
//!
//! - **Auth**: the secret (or restricted, read-only) key comes from the environment: `api_key =
//!   "${STRIPE_API_KEY}"` in the config, or the variable named by `api_key_env` (default
//!   `STRIPE_API_KEY`). It is sent as a bearer token, and never logged nor printed. `Stripe-Version` is pinned (`api_version`, default `2023-08-16`).
//! - **Listing**: `limit` ≤ 100, `starting_after=<last id of the page>` while `has_more`.
//!   Stripe lists newest first. A listing in progress is checkpointed after every page, so a
//!   crash resumes after the last committed page.
//! - **New objects**: the first run lists everything; later runs list `created[gte]=W`, where
//!   `W` is the newest `created` read, and skip the ids already read at exactly `W`.
//! - **Updates**: Stripe objects have no update time, so changes are read from `/v1/events`
//!   (`types[]=customer.updated`, or the `charge.*` types that change a charge), from the time
//!   the first listing started, newest event per object wins. Stripe keeps events 30 days: a
//!   source not synced for longer misses the updates in between (a warning says so).
//! - **Errors**: 429, 5xx and network errors are retried with backoff, honouring `Retry-After`
//!   when sent (`retry`); 401 and 403 are config errors; other 4xx are source errors quoting
//!   Stripe's `error.message`.
//! - **Amounts**: `amount` is in the currency's smallest unit, as Stripe sends it;
//!   `amount_decimal` is the same amount in the currency's unit, exact (zero-decimal currencies
//!   such as JPY are not divided).

mod fields;
mod read;

use std::sync::Arc;

use dossier_connector::{
    BatchStream, Catalog, Connector, ConnectorError, Problem, ReadRequest, StreamInfo,
};
use dossier_http_source::{
    ApiResource, HttpClient, HttpResponse, ResourceStream, RetryConfig, catalog,
    check_by_one_record, check_page_size, env_secret,
};
use schemars::JsonSchema;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::Value as Json;

pub use fields::{CHARGE_FIELDS, CUSTOMER_FIELDS};
pub use read::Checkpoint;

/// The most objects Stripe serves per list request.
pub const MAX_PAGE_SIZE: usize = 100;

/// Connection settings of a Stripe account.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API key (`sk_...`, or a restricted `rk_...` with read access to customers, charges
    /// and events). Write `${STRIPE_API_KEY}` to keep it out of the file. Set this or
    /// `api_key_env`.
    #[schemars(with = "Option<String>")]
    pub api_key: Option<SecretString>,
    /// The environment variable holding the API key, read when `api_key` is not set
    /// (default `STRIPE_API_KEY`).
    pub api_key_env: Option<String>,
    /// The API's base URL; change it only for a proxy or a local fake (plain http is accepted
    /// on loopback only).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The Stripe API version sent as `Stripe-Version`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Objects per list request (1 to 100); the batch size applies when smaller.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// How failed requests are retried.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// The variable the API key is read from by default.
pub const DEFAULT_API_KEY_ENV: &str = "STRIPE_API_KEY";
fn default_base_url() -> String {
    "https://api.stripe.com".into()
}
fn default_api_version() -> String {
    "2023-08-16".into()
}
fn default_page_size() -> usize {
    MAX_PAGE_SIZE
}

/// What one stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Customers (`/v1/customers`): map them to contacts.
    Customers,
    /// Charges (`/v1/charges`): map them to sessions, e.g. of kind `payment`.
    Charges,
}

impl ApiResource for Resource {
    const ALL: &'static [(Self, &'static str)] = &[
        (Resource::Customers, "customers"),
        (Resource::Charges, "charges"),
    ];

    fn info(self, name: &str) -> StreamInfo {
        fields::info(name, self)
    }
}

impl Resource {
    /// The `object` field of its objects.
    pub fn object(self) -> &'static str {
        match self {
            Resource::Customers => "customer",
            Resource::Charges => "charge",
        }
    }

    /// The event types whose `data.object` is an updated object of this resource.
    pub fn update_events(self) -> &'static [&'static str] {
        match self {
            Resource::Customers => &["customer.updated"],
            Resource::Charges => &[
                "charge.captured",
                "charge.expired",
                "charge.failed",
                "charge.pending",
                "charge.refunded",
                "charge.succeeded",
                "charge.updated",
            ],
        }
    }
}

/// One stream: which resource it reads.
pub type Stream = ResourceStream<Resource>;

/// Reads a Stripe account. See the [crate docs](crate) for the rules it follows.
pub struct StripeConnector {
    http: HttpClient,
    base: String,
    key: SecretString,
    api_version: String,
    page_size: usize,
}

impl std::fmt::Debug for StripeConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConnector")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// One page of a list: `{"object": "list", "data": [...], "has_more": bool}`.
pub(crate) struct Page {
    pub data: Vec<Json>,
    pub has_more: bool,
}

/// The API key: `api_key`, or the variable `api_key_env` names.
fn api_key(config: &Config) -> Result<SecretString, ConnectorError> {
    match (&config.api_key, &config.api_key_env) {
        (Some(_), Some(_)) => Err(ConnectorError::config(
            "set either `api_key` or `api_key_env`, not both",
        )),
        (Some(key), None) if key.expose_secret().trim().is_empty() => {
            Err(ConnectorError::config("`api_key` is empty"))
        }
        (Some(key), None) => Ok(SecretString::from(key.expose_secret().trim().to_string())),
        (None, var) => {
            let var = var.as_deref().unwrap_or(DEFAULT_API_KEY_ENV).trim();
            env_secret(var).ok_or_else(|| {
                ConnectorError::config(format!(
                    "no API key: environment variable {var} is not set or empty; set it, or write `api_key = \"${{STRIPE_API_KEY}}\"`"
                ))
            })
        }
    }
}

/// Stripe's error body: `{"error": {"type", "code", "message", ...}}`.
fn stripe_error(r: &HttpResponse) -> String {
    match serde_json::from_slice::<Json>(&r.body) {
        Ok(j) => {
            let e = &j["error"];
            let message = e["message"].as_str().unwrap_or_default();
            match e["code"].as_str().or(e["type"].as_str()) {
                Some(code) => format!("{code}: {message}"),
                None => message.to_string(),
            }
        }
        Err(_) => r.snippet(),
    }
}

impl StripeConnector {
    /// GET `{base}/v1/{path}` with `params`, one list page.
    pub(crate) async fn list(
        &self,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Page, ConnectorError> {
        let url = format!("{}/v1/{path}", self.base);
        let response = self
            .http
            .send(|c| {
                c.get(&url)
                    .bearer_auth(self.key.expose_secret())
                    .header("Stripe-Version", &self.api_version)
                    .query(params)
            })
            .await?;
        let status = response.status.as_u16();
        if !response.status.is_success() {
            let detail = stripe_error(&response);
            return Err(match status {
                401 => ConnectorError::config(format!(
                    "stripe refused the API key (HTTP 401, {detail}); check the key in the variable named by `api_key_env`"
                )),
                403 => ConnectorError::config(format!(
                    "the API key may not read /v1/{path} (HTTP 403, {detail}); give the restricted key read access to customers, charges and events"
                )),
                _ => ConnectorError::remote(
                    format!("stripe answered HTTP {status} for /v1/{path} ({detail})"),
                    false,
                ),
            });
        }
        let json = response.json("stripe")?;
        let Some(Json::Array(data)) = json.get("data").cloned() else {
            return Err(ConnectorError::remote(
                format!("stripe answered /v1/{path} with JSON that is not a list object"),
                false,
            ));
        };
        Ok(Page {
            data,
            has_more: json["has_more"].as_bool().unwrap_or(false),
        })
    }
}

#[async_trait::async_trait]
impl Connector for StripeConnector {
    type Config = Config;
    type Stream = Stream;

    const NAME: &'static str = "stripe";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    async fn connect(config: Config) -> Result<Self, ConnectorError> {
        let base = dossier_http_source::secure_base_url(&config.base_url)?;
        let key = api_key(&config)?;
        check_page_size("page_size", config.page_size, MAX_PAGE_SIZE)?;
        Ok(Self {
            http: HttpClient::new("stripe", config.retry)?,
            base,
            key,
            api_version: config.api_version,
            page_size: config.page_size,
        })
    }

    async fn check(&self, streams: &[(String, Stream)]) -> Vec<Problem> {
        check_by_one_record(streams, |stream| async move {
            self.list(
                stream.resource.name(),
                &[("limit".to_string(), "1".to_string())],
            )
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
    fn secrets_are_never_printed() {
        let config: Config =
            serde_json::from_value(serde_json::json!({ "api_key": "sk_test_secret" })).unwrap();
        assert!(!format!("{config:?}").contains("sk_test_secret"));
        assert!(api_key(&config).is_ok());
        let c = StripeConnector {
            http: HttpClient::new("stripe", RetryConfig::default()).unwrap(),
            base: "https://api.stripe.com".into(),
            key: SecretString::from("sk_test_secret".to_string()),
            api_version: default_api_version(),
            page_size: 10,
        };
        assert!(!format!("{c:?}").contains("sk_test_secret"));
    }
}
