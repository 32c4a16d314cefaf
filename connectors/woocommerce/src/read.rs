//! Reading: customers whole, orders by modification time, one batch per page.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use dossier_connector::{Batch, BatchStream, ConnectorError, ReadRequest, StreamState};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Resource, Stream, WooConnector, fields};

/// Where an incremental read of orders stopped: the last `date_modified_gmt` read, and the
/// ids read with exactly that time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub modified_after: DateTime<Utc>,
    pub ids: Vec<i64>,
}

impl Checkpoint {
    fn read_before(&self, id: i64, modified: DateTime<Utc>) -> bool {
        modified < self.modified_after
            || (modified == self.modified_after && self.ids.contains(&id))
    }

    fn advance(&mut self, id: i64, modified: DateTime<Utc>) {
        if modified > self.modified_after {
            self.modified_after = modified;
            self.ids = vec![id];
        } else if modified == self.modified_after && !self.ids.contains(&id) {
            self.ids.push(id);
        }
    }
}

struct Reader {
    connector: Arc<WooConnector>,
    resource: Resource,
    per_page: usize,
    fields: Arc<Vec<String>>,
    page: u64,
    /// Orders: the checkpoint; customers: unused.
    checkpoint: Option<Checkpoint>,
    /// Customers: the largest `date_modified_gmt` seen.
    max_modified: Option<DateTime<Utc>>,
    done: bool,
    /// Orders: whether each request is anchored on the last checkpoint (false once the store
    /// shows it ignores `modified_after`).
    reanchor: bool,
}

fn gmt_param(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

impl Reader {
    async fn next_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let mut params = vec![
                ("per_page", self.per_page.to_string()),
                ("page", self.page.to_string()),
                ("order", "asc".to_string()),
            ];
            match self.resource {
                Resource::Customers => params.push(("orderby", "id".into())),
                Resource::Orders => {
                    params.push(("orderby", "modified".into()));
                    params.push(("dates_are_gmt", "true".into()));
                    if let Some(cp) = &self.checkpoint {
                        // `modified_after` is strict: start a second early, skip what was read.
                        let after = cp.modified_after - TimeDelta::seconds(1);
                        params.push(("modified_after", gmt_param(after)));
                    }
                }
            }
            let Some(page) = self.connector.get_page(self.resource, &params).await? else {
                self.done = true;
                return Ok(None);
            };
            let last_page = page.records.len() < self.per_page
                || page.total_pages.is_some_and(|t| self.page >= t);
            if last_page {
                self.done = true;
            }
            let start = self.checkpoint.clone();
            let mut rows = vec![];
            for r in &page.records {
                let fields::Record { row, id, modified } = fields::row(self.resource, r)?;
                match self.resource {
                    Resource::Customers => {
                        self.max_modified = self.max_modified.max(modified);
                    }
                    Resource::Orders => {
                        let modified = modified.ok_or_else(|| {
                            ConnectorError::remote(
                                format!(
                                    "woocommerce returned order {id} without date_modified_gmt"
                                ),
                                false,
                            )
                        })?;
                        // An order at or before the anchor: this store ignores `modified_after`
                        // (older than WooCommerce 5.x); page on instead of re-anchoring.
                        if start
                            .as_ref()
                            .is_some_and(|cp| modified <= cp.modified_after - TimeDelta::seconds(1))
                        {
                            self.reanchor = false;
                        }
                        if start
                            .as_ref()
                            .is_some_and(|cp| cp.read_before(id, modified))
                        {
                            continue;
                        }
                        match &mut self.checkpoint {
                            Some(cp) => cp.advance(id, modified),
                            None => {
                                self.checkpoint = Some(Checkpoint {
                                    modified_after: modified,
                                    ids: vec![id],
                                })
                            }
                        }
                    }
                }
                rows.push(row);
            }
            let state = match self.resource {
                Resource::Customers => {
                    self.page += 1;
                    StreamState(json!({ "max_date_modified_gmt": self.max_modified }))
                }
                Resource::Orders if rows.is_empty() => {
                    // Everything on this page was read before (many orders share a second):
                    // the next page, with the same anchor.
                    self.page += 1;
                    continue;
                }
                Resource::Orders => {
                    // Re-anchor on the new checkpoint: orders modified meanwhile move past it
                    // instead of shifting the pages.
                    if self.reanchor {
                        self.page = 1;
                    } else {
                        self.page += 1;
                    }
                    StreamState(json!(self.checkpoint))
                }
            };
            if rows.is_empty() {
                continue;
            }
            return Ok(Some(Batch {
                fields: self.fields.clone(),
                rows,
                state,
            }));
        }
    }
}

pub(crate) fn read(connector: Arc<WooConnector>, request: ReadRequest<Stream>) -> BatchStream {
    let resource = request.stream.resource;
    let checkpoint = match (resource, request.state.as_ref().filter(|s| !s.0.is_null())) {
        (Resource::Orders, Some(s)) => {
            serde_json::from_value::<Checkpoint>(s.0.clone()).map(Some).map_err(|e| {
                ConnectorError::internal(format!(
                    "stored stream state is not a woocommerce checkpoint ({e}); reset the stream's state to read it again"
                ))
            })
        }
        _ => Ok(None),
    };
    let (checkpoint, error) = match checkpoint {
        Ok(c) => (c, None),
        Err(e) => (None, Some(e)),
    };
    let per_page = request.batch_size.clamp(1, connector.per_page);
    let fields = fields::names(resource).iter().map(|(n, _)| n.to_string());
    let reader = Reader {
        connector,
        resource,
        per_page,
        fields: Arc::new(fields.collect()),
        page: 1,
        checkpoint,
        max_modified: None,
        done: false,
        reanchor: true,
    };
    futures::stream::unfold((reader, error), |(mut reader, error)| async move {
        if let Some(e) = error {
            reader.done = true;
            return Some((Err(e), (reader, None)));
        }
        match reader.next_batch().await {
            Ok(Some(batch)) => Some((Ok(batch), (reader, None))),
            Ok(None) => None,
            Err(e) => {
                reader.done = true;
                Some((Err(e), (reader, None)))
            }
        }
    })
    .boxed()
}
