//! One GraphQL call: pacing by the cost budget, THROTTLED retries, error classification.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dossier_connector::ConnectorError;
use dossier_http_source::HttpClient;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value as Json, json};

/// THROTTLED answers tolerated for one call before giving up (with a retryable error).
const MAX_THROTTLED: usize = 20;

/// The cost budget as Shopify last reported it (`extensions.cost.throttleStatus`).
#[derive(Debug, Clone, Copy)]
struct Budget {
    available: f64,
    maximum: f64,
    restore_rate: f64,
    at: Instant,
    /// `requestedQueryCost` of the last query: what the next one will likely ask for.
    last_cost: f64,
}

impl Budget {
    /// The points available now, counting what was restored since the report.
    fn available_now(&self) -> f64 {
        (self.available + self.at.elapsed().as_secs_f64() * self.restore_rate).min(self.maximum)
    }

    /// How long until `cost` points are available.
    fn wait_for(&self, cost: f64) -> Duration {
        let missing = cost.min(self.maximum) - self.available_now();
        if missing <= 0.0 || self.restore_rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.restore_rate)
        }
    }
}

pub(crate) struct GraphqlClient {
    pub(crate) http: HttpClient,
    pub(crate) url: String,
    pub(crate) token: SecretString,
    budget: Mutex<Option<Budget>>,
}

impl std::fmt::Debug for GraphqlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphqlClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl GraphqlClient {
    pub(crate) fn new(http: HttpClient, url: String, token: SecretString) -> Self {
        Self {
            http,
            url,
            token,
            budget: Mutex::new(None),
        }
    }

    fn budget(&self) -> Option<Budget> {
        *self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record_cost(&self, body: &Json) {
        let cost = &body["extensions"]["cost"];
        let status = &cost["throttleStatus"];
        let (Some(available), Some(maximum), Some(restore_rate)) = (
            status["currentlyAvailable"].as_f64(),
            status["maximumAvailable"].as_f64(),
            status["restoreRate"].as_f64(),
        ) else {
            return;
        };
        let last_cost = cost["requestedQueryCost"].as_f64().unwrap_or(0.0);
        *self.budget.lock().unwrap_or_else(|e| e.into_inner()) = Some(Budget {
            available,
            maximum,
            restore_rate,
            at: Instant::now(),
            last_cost,
        });
    }

    /// Runs one query and returns its `data`. `scope` is the access scope the query needs,
    /// named in permission errors.
    pub(crate) async fn query(
        &self,
        query: &str,
        variables: Json,
        scope: &str,
    ) -> Result<Json, ConnectorError> {
        let body = json!({ "query": query, "variables": variables });
        let mut throttled = 0usize;
        // Backoff for errors Shopify reports inside a 200 answer (INTERNAL_SERVER_ERROR).
        let mut delays = self.http.retry().delays();
        loop {
            // Pace: wait until the budget holds what the last query asked for.
            if let Some(b) = self.budget() {
                let wait = b.wait_for(b.last_cost);
                if !wait.is_zero() {
                    tracing::debug!(wait_ms = wait.as_millis() as u64, "shopify: pacing");
                    tokio::time::sleep(wait).await;
                }
            }
            let response = self
                .http
                .send(|c| {
                    c.post(&self.url)
                        .header("X-Shopify-Access-Token", self.token.expose_secret())
                        .json(&body)
                })
                .await?;
            let status = response.status.as_u16();
            if status == 401 || status == 403 {
                return Err(denied(status, scope));
            }
            if status == 404 {
                return Err(ConnectorError::config(format!(
                    "shopify has no Admin API at {} (HTTP 404); check `shop`, `endpoint` and `api_version`",
                    self.url
                )));
            }
            if !response.status.is_success() {
                return Err(ConnectorError::remote(
                    format!("shopify answered HTTP {status}: {}", response.snippet()),
                    false,
                ));
            }
            let json = response.json("shopify")?;
            self.record_cost(&json);
            let Some(errors) = json["errors"].as_array().filter(|e| !e.is_empty()) else {
                return Ok(json["data"].clone());
            };
            let code = |c: &str| {
                errors
                    .iter()
                    .any(|e| e["extensions"]["code"].as_str() == Some(c))
            };
            if code("THROTTLED") {
                throttled += 1;
                if throttled > MAX_THROTTLED {
                    return Err(ConnectorError::remote(
                        format!("shopify kept throttling the query ({throttled} times)"),
                        true,
                    ));
                }
                let requested = json["extensions"]["cost"]["requestedQueryCost"]
                    .as_f64()
                    .unwrap_or(0.0);
                let wait = self
                    .budget()
                    .map(|b| b.wait_for(requested.max(b.last_cost)))
                    .unwrap_or_default()
                    .max(Duration::from_millis(self.http.retry().base_delay_ms));
                tracing::info!(wait_ms = wait.as_millis() as u64, "shopify: throttled");
                tokio::time::sleep(wait).await;
                continue;
            }
            let messages: Vec<&str> = errors
                .iter()
                .map(|e| e["message"].as_str().unwrap_or("unknown error"))
                .collect();
            let messages = messages.join("; ");
            if code("ACCESS_DENIED") {
                return Err(ConnectorError::config(format!(
                    "shopify denied access ({messages}); the app needs the {scope} access scope"
                )));
            }
            let retryable = code("INTERNAL_SERVER_ERROR");
            if retryable && let Some(wait) = delays.next() {
                tracing::warn!(%messages, wait_ms = wait.as_millis() as u64, "shopify: retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(ConnectorError::remote(
                format!("shopify refused the query: {messages}"),
                retryable,
            ));
        }
    }
}

fn denied(status: u16, scope: &str) -> ConnectorError {
    let what = if status == 401 {
        "rejected the access token (HTTP 401: invalid, expired or revoked)"
    } else {
        "denied access (HTTP 403)"
    };
    ConnectorError::config(format!(
        "shopify {what}; set a valid admin API access token for an app with the {scope} access scope"
    ))
}
