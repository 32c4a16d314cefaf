//! Reading: pages of `(updatedAt, id)`-ordered records, one batch per page.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use dossier_connector::{
    Batch, BatchReader, BatchStream, ConnectorError, ReadRequest, StreamState, Value, batch_stream,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::bulk::Download;
use crate::{Resource, ShopifyConnector, Stream, fields, queries};

/// Where an incremental read stopped: the last record's `updatedAt` and id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub updated_at: DateTime<Utc>,
    pub last_id: i64,
}

impl Checkpoint {
    fn from_state(state: &StreamState) -> Result<Self, ConnectorError> {
        serde_json::from_value(state.0.clone()).map_err(|e| {
            ConnectorError::internal(format!(
                "stored stream state is not a shopify checkpoint ({e}); reset the stream's state to read it again"
            ))
        })
    }
}

/// One page as read.
pub(crate) struct Page {
    pub nodes: Vec<Json>,
    pub end_cursor: Option<String>,
    pub has_next: bool,
}

impl ShopifyConnector {
    /// One page of `resource` updated at or after `since`.
    pub(crate) async fn fetch_page(
        &self,
        resource: Resource,
        first: usize,
        after: Option<&str>,
        since: Option<(DateTime<Utc>, i64)>,
    ) -> Result<Page, ConnectorError> {
        // Past the checkpoint (time, id), the id tie-break in the request itself: records
        // sharing the checkpoint's second are not sent again, so a run without changes costs
        // one page however many records share that second.
        let query = since.map(|(t, id)| {
            let t = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            format!("updated_at:>'{t}' OR (updated_at:>='{t}' AND id:>{id})")
        });
        let (document, root) = match resource {
            Resource::Customers => (queries::CUSTOMERS, "customers"),
            Resource::Orders => (queries::ORDERS, "orders"),
        };
        let data = self
            .client
            .query(
                document,
                json!({ "first": first, "after": after, "query": query }),
                resource.scope(),
            )
            .await?;
        let connection = &data[root];
        let nodes = connection["nodes"].as_array().cloned().ok_or_else(|| {
            ConnectorError::remote(format!("shopify answered without {root}.nodes"), false)
        })?;
        let info = &connection["pageInfo"];
        Ok(Page {
            nodes,
            end_cursor: info["endCursor"].as_str().map(str::to_string),
            has_next: info["hasNextPage"].as_bool().unwrap_or(false),
        })
    }
}

struct Reader {
    connector: Arc<ShopifyConnector>,
    name: String,
    resource: Resource,
    first: usize,
    fields: Arc<Vec<String>>,
    /// Records at or before this position were read before.
    after: Option<(DateTime<Utc>, i64)>,
    /// The query's filter: past this checkpoint, fixed for the whole read.
    since: Option<(DateTime<Utc>, i64)>,
    cursor: Option<String>,
    done: bool,
    /// Records per batch of a bulk read.
    batch_size: usize,
    /// Whether the read pages or uses a bulk operation is decided.
    decided: bool,
    download: Option<Download>,
    pending: Vec<Vec<Value>>,
    bulk_eof: bool,
}

impl Reader {
    fn batch(&self, rows: Vec<Vec<Value>>, checkpoint: Checkpoint) -> Batch {
        Batch {
            fields: self.fields.clone(),
            rows,
            state: StreamState(json!(checkpoint)),
        }
    }

    /// The next batch of a bulk result. Its records are in no useful order: every batch but
    /// the last carries a checkpoint at the epoch (a resumed read pages through everything);
    /// the last one the operation's creation time.
    async fn next_bulk_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
        loop {
            if self.pending.len() > self.batch_size {
                let rest = self.pending.split_off(self.batch_size);
                let rows = std::mem::replace(&mut self.pending, rest);
                let start = Checkpoint {
                    updated_at: DateTime::<Utc>::UNIX_EPOCH,
                    last_id: 0,
                };
                return Ok(Some(self.batch(rows, start)));
            }
            let Some(download) = self.download.as_mut() else {
                return Ok(None);
            };
            if self.bulk_eof {
                let end = Checkpoint {
                    updated_at: download.created_at,
                    last_id: 0,
                };
                self.done = true;
                self.download = None;
                let rows = std::mem::take(&mut self.pending);
                return Ok((!rows.is_empty()).then(|| self.batch(rows, end)));
            }
            match download.next_rows(self.resource).await? {
                Some(rows) => self.pending.extend(rows),
                None => self.bulk_eof = true,
            }
        }
    }

    async fn next_page_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let page = self
                .connector
                .fetch_page(
                    self.resource,
                    self.first,
                    self.cursor.as_deref(),
                    self.since,
                )
                .await?;
            if !page.has_next || page.end_cursor.is_none() {
                self.done = true;
            }
            self.cursor = page.end_cursor;
            let mut rows = Vec::with_capacity(page.nodes.len());
            let mut last = None;
            for node in &page.nodes {
                let (row, updated, id) = fields::row(self.resource, node)?;
                if self.after.is_some_and(|a| (updated, id) <= a) {
                    continue;
                }
                rows.push(row);
                last = Some((updated, id));
            }
            let Some((updated_at, last_id)) = last else {
                continue;
            };
            self.after = Some((updated_at, last_id));
            tracing::debug!(stream = %self.name, rows = rows.len(), "shopify: page read");
            return Ok(Some(self.batch(
                rows,
                Checkpoint {
                    updated_at,
                    last_id,
                },
            )));
        }
    }
}

#[async_trait::async_trait]
impl BatchReader for Reader {
    async fn next_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
        if !self.decided {
            self.decided = true;
            if self.after.is_none() && self.connector.use_bulk(self.resource).await? {
                match self.connector.bulk_download(self.resource).await? {
                    Some(d) => self.download = Some(d),
                    None => {
                        self.done = true;
                        return Ok(None);
                    }
                }
            }
        }
        if self.download.is_some() {
            return self.next_bulk_batch().await;
        }
        self.next_page_batch().await
    }
}

pub(crate) fn read(connector: Arc<ShopifyConnector>, request: ReadRequest<Stream>) -> BatchStream {
    let resource = request.stream.resource;
    let start = match request.state.as_ref().filter(|s| !s.0.is_null()) {
        Some(s) => Checkpoint::from_state(s).map(Some),
        None => Ok(None),
    };
    let first = request
        .batch_size
        .clamp(1, connector.page_size.min(crate::MAX_PAGE_SIZE));
    let fields = fields::names(resource).iter().map(|(n, _)| n.to_string());
    batch_stream(start.map(|start| Reader {
        connector,
        name: request.name,
        resource,
        first,
        fields: Arc::new(fields.collect()),
        after: start.as_ref().map(|c| (c.updated_at, c.last_id)),
        since: start.map(|c| (c.updated_at, c.last_id)),
        cursor: None,
        done: false,
        batch_size: request.batch_size.max(1),
        decided: false,
        download: None,
        pending: vec![],
        bulk_eof: false,
    }))
}
