//! Bulk operations for first reads of large shops: start a bulk query, poll it until it
//! completes, then read its JSONL result piece by piece.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dossier_connector::{ConnectorError, Value};
use dossier_http_source::ApiResource as _;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{Resource, ShopifyConnector, fields, queries};

/// When a first read (no checkpoint yet) uses a bulk operation instead of paging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkMode {
    /// When the stream holds at least `bulk_threshold` records (one count query decides).
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never: page through every record.
    Never,
}

/// A completed bulk operation's result, being read.
pub(crate) struct Download {
    response: reqwest::Response,
    buffer: Vec<u8>,
    eof: bool,
    /// When the operation was created: the checkpoint once the whole result is read.
    pub created_at: DateTime<Utc>,
}

impl Download {
    /// The next records, at most a chunk's worth; `None` at the end. Lines of nested
    /// connections (`__parentId`) are skipped: the queries select none.
    pub async fn next_rows(
        &mut self,
        resource: Resource,
    ) -> Result<Option<Vec<Vec<Value>>>, ConnectorError> {
        loop {
            if let Some(end) = self.buffer.iter().rposition(|b| *b == b'\n') {
                let rest = self.buffer.split_off(end + 1);
                let lines = std::mem::replace(&mut self.buffer, rest);
                let rows = parse_lines(resource, &lines)?;
                if !rows.is_empty() {
                    return Ok(Some(rows));
                }
            }
            if self.eof {
                let last = std::mem::take(&mut self.buffer);
                let rows = parse_lines(resource, &last)?;
                return Ok((!rows.is_empty()).then_some(rows));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => self.eof = true,
                Err(e) => {
                    return Err(ConnectorError::remote(
                        format!("cannot read the bulk operation result: {}", e.without_url()),
                        true,
                    ));
                }
            }
        }
    }
}

fn parse_lines(resource: Resource, lines: &[u8]) -> Result<Vec<Vec<Value>>, ConnectorError> {
    let mut rows = vec![];
    for line in lines.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let node: Json = serde_json::from_slice(line).map_err(|e| {
            ConnectorError::remote(
                format!("the bulk operation result has a line that is not JSON: {e}"),
                true,
            )
        })?;
        if node.get("__parentId").is_some() {
            continue;
        }
        rows.push(fields::row(resource, &node)?.0);
    }
    Ok(rows)
}

impl ShopifyConnector {
    /// Whether a first read of `resource` uses a bulk operation.
    pub(crate) async fn use_bulk(&self, resource: Resource) -> Result<bool, ConnectorError> {
        match self.bulk {
            BulkMode::Always => return Ok(true),
            BulkMode::Never => return Ok(false),
            BulkMode::Auto => {}
        }
        let (query, variables, root) = match resource {
            Resource::Customers => (queries::CUSTOMERS_COUNT, json!({}), "customersCount"),
            Resource::Orders => (
                queries::ORDERS_COUNT,
                json!({ "limit": self.bulk_threshold }),
                "ordersCount",
            ),
        };
        let data = self
            .client
            .query(query, variables, resource.scope())
            .await?;
        let count = data[root]["count"].as_u64().unwrap_or(0);
        tracing::info!(stream = resource.name(), count, "shopify: counted records");
        Ok(count >= self.bulk_threshold)
    }

    /// Runs a bulk query for every record of `resource` and opens its result.
    pub(crate) async fn bulk_download(
        &self,
        resource: Resource,
    ) -> Result<Option<Download>, ConnectorError> {
        let scope = resource.scope();
        let inner = match resource {
            Resource::Customers => queries::BULK_CUSTOMERS,
            Resource::Orders => queries::BULK_ORDERS,
        };
        let data = self
            .client
            .query(queries::BULK_RUN, json!({ "query": inner }), scope)
            .await?;
        let payload = &data["bulkOperationRunQuery"];
        if let Some(errors) = payload["userErrors"].as_array().filter(|e| !e.is_empty()) {
            let messages: Vec<&str> = errors
                .iter()
                .filter_map(|e| e["message"].as_str())
                .collect();
            let messages = messages.join("; ");
            // One bulk query at a time per shop: another one running passes.
            let retryable = messages.contains("already in progress");
            return Err(ConnectorError::remote(
                format!("shopify refused the bulk operation: {messages}"),
                retryable,
            ));
        }
        let id = payload["bulkOperation"]["id"]
            .as_str()
            .ok_or_else(|| ConnectorError::remote("shopify started no bulk operation", true))?
            .to_string();
        tracing::info!(stream = resource.name(), %id, "shopify: bulk operation started");
        loop {
            tokio::time::sleep(Duration::from_millis(self.bulk_poll_ms)).await;
            let data = self
                .client
                .query(queries::BULK_STATUS, json!({ "id": id }), scope)
                .await?;
            let op = &data["node"];
            let status = op["status"].as_str().unwrap_or_default();
            match status {
                "COMPLETED" => {
                    let created_at = op["createdAt"]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc))
                        .ok_or_else(|| {
                            ConnectorError::remote("the bulk operation has no createdAt", true)
                        })?;
                    // No url: the query matched nothing.
                    let Some(url) = op["url"].as_str().map(str::to_string) else {
                        return Ok(None);
                    };
                    let response = self.client.http.open(|c| c.get(&url)).await?;
                    if !response.status().is_success() {
                        return Err(ConnectorError::remote(
                            format!(
                                "cannot download the bulk operation result (HTTP {})",
                                response.status().as_u16()
                            ),
                            true,
                        ));
                    }
                    return Ok(Some(Download {
                        response,
                        buffer: vec![],
                        eof: false,
                        created_at,
                    }));
                }
                "FAILED" if op["errorCode"] == "ACCESS_DENIED" => {
                    return Err(ConnectorError::config(format!(
                        "the shopify bulk operation was denied access; the app needs the {scope} access scope"
                    )));
                }
                "FAILED" | "CANCELED" | "EXPIRED" => {
                    return Err(ConnectorError::remote(
                        format!(
                            "the shopify bulk operation {id} ended {status} ({})",
                            op["errorCode"].as_str().unwrap_or("no error code")
                        ),
                        true,
                    ));
                }
                _ => tracing::debug!(%id, status, "shopify: bulk operation running"),
            }
        }
    }
}
