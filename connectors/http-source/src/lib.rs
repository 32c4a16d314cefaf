//! HTTP plumbing shared by Dossier's API connectors (Shopify, WooCommerce, Stripe), and the
//! shape they share ([`api`]: streams that are the API's objects, checks, page sizes).
//!
//! - [`HttpClient::send`] sends one request with retries: network errors, HTTP 429 and 5xx are
//!   retried with exponential backoff and jitter ([`backon`]); a 429 or 503 with `Retry-After`
//!   waits as told (capped by [`MAX_RETRY_AFTER`]). Any other answer (2xx, 4xx) is returned for
//!   the connector to classify. When the retries run out the error is a retryable source error.
//! - [`parse_retry_after`] reads both `Retry-After` forms (seconds, HTTP date).
//! - [`HttpResponse::json`] parses a JSON body, and turns a non-JSON answer (an HTML error page
//!   of a proxy or of WordPress) into a clear error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use dossier_connector::ConnectorError;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use schemars::JsonSchema;
use serde::Deserialize;

mod api;
mod secret;

pub use api::{ApiResource, ResourceStream, catalog, check_by_one_record, check_page_size};
pub use reqwest;
pub use secret::{env_secret, secret_setting};

/// The longest `Retry-After` honoured; a server asking for more is waited on this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How failed requests are retried.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first attempt before giving up (network errors, HTTP 429 and 5xx).
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// The first backoff delay, in milliseconds; each retry doubles it, with jitter.
    #[serde(default = "default_base_delay_ms")]
    pub base_delay_ms: u64,
    /// The longest backoff delay between two attempts, in milliseconds.
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
    /// How long one request may take, in seconds, before it counts as a network error.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_max_retries() -> usize {
    6
}
fn default_base_delay_ms() -> u64 {
    500
}
fn default_max_delay_ms() -> u64 {
    30_000
}
fn default_timeout_secs() -> u64 {
    60
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            base_delay_ms: default_base_delay_ms(),
            max_delay_ms: default_max_delay_ms(),
            timeout_secs: default_timeout_secs(),
        }
    }
}

impl RetryConfig {
    /// The backoff delays, one per allowed retry: exponential with jitter.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.base_delay_ms))
            .with_max_delay(Duration::from_millis(
                self.max_delay_ms.max(self.base_delay_ms),
            ))
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_retries)
            .build()
    }
}

/// A response read whole.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; `what` names the API in messages. A body that is not JSON (an HTML
    /// error page) is a source error quoting the start of the page.
    pub fn json(&self, what: &str) -> Result<serde_json::Value, ConnectorError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let content_type = self.header(CONTENT_TYPE.as_str()).unwrap_or("none");
            ConnectorError::remote(
                format!(
                    "{what} answered HTTP {} with a body that is not JSON (content type {content_type}: {e}); \
                     is the URL right? the answer starts with: {}",
                    self.status.as_u16(),
                    snippet(&self.body)
                ),
                self.status.is_server_error(),
            )
        })
    }

    /// The start of the body, for messages: an HTML page's `<title>` if it has one.
    pub fn snippet(&self) -> String {
        snippet(&self.body)
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    if let (Some(a), Some(b)) = (lower.find("<title>"), lower.find("</title>"))
        && a + 7 <= b
    {
        return format!("{:?}", text[a + 7..b].trim());
    }
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = flat.chars().take(160).collect();
    format!("{cut:?}")
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks an API base URL that credentials will be sent to: `https`, or plain `http` to a
/// loopback address only (a local fake or proxy), since a secret sent over plain http travels
/// in clear. Returns it trimmed, without a trailing slash.
pub fn secure_base_url(url: &str) -> Result<String, ConnectorError> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        ConnectorError::config(format!(
            "url {url:?} is not a URL such as \"https://example.com\""
        ))
    })?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(authority, |(h, _)| h);
    match scheme {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => {
            return Err(ConnectorError::config(format!(
                "url {url:?} is plain http: the credentials would travel in clear; use https"
            )));
        }
        _ => {
            return Err(ConnectorError::config(format!(
                "url {url:?} is not an http(s) URL"
            )));
        }
    }
    if host.is_empty() {
        return Err(ConnectorError::config(format!("url {url:?} has no host")));
    }
    Ok(url.to_string())
}

/// Reads `Retry-After`: delay seconds (`"120"`, `"1.5"`) or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// An HTTP client with retries, shared by the API connectors.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    retry: RetryConfig,
    what: String,
    /// Requests sent again so far, by this client and its clones (for the run history).
    retries: Arc<AtomicU64>,
}

impl HttpClient {
    /// A client for the API `what` (named in messages, e.g. `"shopify"`).
    pub fn new(what: &str, retry: RetryConfig) -> Result<Self, ConnectorError> {
        // reqwest is built without a default crypto provider: use ring, as the rest of Dossier.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(retry.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(retry.timeout_secs.clamp(1, 30)))
            .user_agent(concat!("dossier/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConnectorError::internal(format!("cannot build the http client: {e}")))?;
        Ok(Self {
            client,
            retry,
            what: what.to_string(),
            retries: Arc::default(),
        })
    }

    pub fn retry(&self) -> &RetryConfig {
        &self.retry
    }

    /// How many requests this client (and its clones) sent again after an error so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request `build` makes, again on network errors, 429 and 5xx (with backoff,
    /// honouring `Retry-After`). Returns any other answer whole; fails with a retryable source
    /// error once the retries are spent.
    pub async fn send<F>(&self, build: F) -> Result<HttpResponse, ConnectorError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        self.retrying(|| async {
            let response = build(&self.client).send().await.map_err(describe)?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(describe)?.to_vec();
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        })
        .await
    }

    /// Like [`send`](Self::send), but returns the response before reading its body, to read a
    /// large body piece by piece (`Response::chunk`). Retries cover the status, not the body.
    pub async fn open<F>(&self, build: F) -> Result<reqwest::Response, ConnectorError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        self.retrying(|| async { build(&self.client).send().await.map_err(describe) })
            .await
    }

    async fn retrying<R, A, Fut>(&self, attempt: A) -> Result<R, ConnectorError>
    where
        R: Answer,
        A: Fn() -> Fut,
        Fut: Future<Output = Result<R, Failure>>,
    {
        let mut delays = self.retry.delays();
        let mut attempts = 0usize;
        loop {
            attempts += 1;
            let (reason, retry_after) = match attempt().await {
                Ok(r)
                    if r.status() == StatusCode::TOO_MANY_REQUESTS
                        || r.status().is_server_error() =>
                {
                    let retry_after = r
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    (format!("HTTP {}", r.status().as_u16()), retry_after)
                }
                Ok(r) => return Ok(r),
                // No one answers at that address (refused, unknown host): waiting does not
                // change that within a request's retries; the run's own retries, bounded,
                // try again later.
                Err(Failure::Unreachable(e)) => {
                    return Err(ConnectorError::unreachable(&self.what, &e));
                }
                // A certificate or protocol mismatch does not pass by waiting either, and it
                // is not that nothing answers: say what to check.
                Err(Failure::Tls(e)) => {
                    return Err(ConnectorError::remote(
                        format!(
                            "{}: {e}; check that the URL's scheme and host are right and that the server's certificate is valid for that host",
                            self.what
                        ),
                        false,
                    ));
                }
                Err(Failure::Other(e)) => (e, None),
            };
            let Some(backoff) = delays.next() else {
                return Err(ConnectorError::remote(
                    format!(
                        "{} request failed after {attempts} attempts, the last with {reason}",
                        self.what
                    ),
                    true,
                ));
            };
            let wait = retry_after.map_or(backoff, |d| d.min(MAX_RETRY_AFTER));
            tracing::warn!(api = %self.what, %reason, attempt = attempts, wait_ms = wait.as_millis() as u64, "retrying");
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }
}

/// What the retry loop looks at in an answer.
trait Answer {
    fn status(&self) -> StatusCode;
    fn headers(&self) -> &HeaderMap;
}

impl Answer for HttpResponse {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

impl Answer for reqwest::Response {
    fn status(&self) -> StatusCode {
        self.status()
    }
    fn headers(&self) -> &HeaderMap {
        self.headers()
    }
}

/// Why a request got no answer.
enum Failure {
    /// Nothing listens at the address, or the host name resolves to nothing.
    Unreachable(String),
    /// The TLS handshake failed: a certificate the client refuses, or no TLS at all.
    Tls(String),
    Other(String),
}

/// Whether `e` or one of its causes is a TLS error. rustls' errors reach here inside
/// `io::Error`s (nested), whose `source()` skips the error they wrap: step into those.
fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>() {
            return true;
        }
        cause = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    false
}

/// A network error, naming the host and port but not the whole URL (it may carry
/// credentials in a query string).
fn describe(e: reqwest::Error) -> Failure {
    let at = e
        .url()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_else(|| "the server".into());
    // reqwest's own message ("error sending request") says nothing; the root cause does.
    let mut cause: &dyn std::error::Error = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let cause = cause.to_string();
    if is_tls(&e) {
        return Failure::Tls(format!("TLS with {at} failed: {cause}"));
    }
    if e.is_connect() && !e.is_timeout() {
        return Failure::Unreachable(format!("cannot connect to {at}: {cause}"));
    }
    let kind = if e.is_timeout() {
        "a timeout"
    } else if e.is_body() || e.is_decode() {
        "an error reading the answer"
    } else {
        "a network error"
    };
    Failure::Other(format!("{kind} talking to {at} ({cause})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn fast(max_retries: usize) -> RetryConfig {
        RetryConfig {
            max_retries,
            base_delay_ms: 1,
            max_delay_ms: 5,
            timeout_secs: 5,
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn base_urls_must_be_secure() {
        assert_eq!(
            secure_base_url(" https://api.example.com/ ").unwrap(),
            "https://api.example.com"
        );
        assert!(secure_base_url("http://127.0.0.1:8080").is_ok());
        assert!(secure_base_url("http://localhost/x").is_ok());
        assert!(secure_base_url("http://[::1]:9").is_ok());
        let e = secure_base_url("http://api.example.com").unwrap_err();
        assert!(e.to_string().contains("plain http"), "{e}");
        assert!(secure_base_url("api.example.com").is_err());
        assert!(secure_base_url("ftp://x").is_err());
        assert!(secure_base_url("https://").is_err());
    }

    #[test]
    fn delays_are_bounded() {
        let d: Vec<_> = fast(4).delays().collect();
        assert_eq!(d.len(), 4);
        assert!(d.iter().all(|d| *d <= Duration::from_millis(10)));
    }

    #[test]
    fn html_is_a_clear_error() {
        let r = HttpResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: b"<html><head><title>Database Error</title></head><body>..</body></html>"
                .to_vec(),
        };
        let e = r.json("woocommerce").unwrap_err().to_string();
        assert!(
            e.contains("not JSON") && e.contains("Database Error"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn retries_5xx_then_succeeds() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string("{\"ok\":true}"))
            .mount(&server)
            .await;
        let c = HttpClient::new("test", fast(3)).unwrap();
        let url = server.uri();
        let r = c.send(|c| c.get(&url)).await.unwrap();
        assert_eq!(r.json("test").unwrap()["ok"], true);
    }

    /// HTTPS to a server that speaks plain HTTP: someone answers, so it is not unreachable,
    /// and no retry changes a handshake, so it fails at once saying what to check.
    #[tokio::test]
    async fn a_failed_tls_handshake_is_not_unreachable_and_says_what_to_check() {
        let server = MockServer::start().await;
        let c = HttpClient::new("test", fast(5)).unwrap();
        let url = server.uri().replace("http://", "https://");
        let e = c.send(|c| c.get(&url)).await.unwrap_err();
        assert!(!e.is_unreachable() && !e.is_retryable(), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("TLS with 127.0.0.1:"), "{msg}");
        assert!(msg.contains("certificate is valid"), "{msg}");
        assert_eq!(c.retries(), 0, "{msg}");
    }

    #[tokio::test]
    async fn an_address_nobody_listens_on_fails_at_once_naming_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = HttpClient::new("test", fast(5)).unwrap();
        let url = format!("http://127.0.0.1:{port}/orders?token=secret");
        let started = std::time::Instant::now();
        let e = c.send(|c| c.get(&url)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{e}");
        assert!(e.is_unreachable() && e.is_retryable(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("cannot connect to 127.0.0.1:{port}")),
            "{msg}"
        );
        assert!(!msg.contains("secret"), "{msg}");
        assert_eq!(msg.matches("refused").count(), 1, "{msg}");
    }

    #[tokio::test]
    async fn gives_up_with_a_retryable_error() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
            .mount(&server)
            .await;
        let c = HttpClient::new("test", fast(2)).unwrap();
        let url = server.uri();
        let e = c.send(|c| c.get(&url)).await.unwrap_err();
        assert!(e.is_retryable());
        assert!(e.to_string().contains("after 3 attempts"), "{e}");
        assert_eq!(server.received_requests().await.unwrap().len(), 3);
        assert_eq!(c.clone().retries(), 2, "clones share the count");
    }

    #[tokio::test]
    async fn client_errors_are_returned() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        let c = HttpClient::new("test", fast(2)).unwrap();
        let url = server.uri();
        let r = c.send(|c| c.get(&url)).await.unwrap();
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }
}
