//! Reading: orders by modification time, customers by a full scan that emits only what changed;
//! one batch per page.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use dossier_connector::{
    Batch, BatchReader, BatchStream, ConnectorError, ReadRequest, StreamState, Value, batch_stream,
};
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

/// Where an incremental read of customers stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomersCheckpoint {
    /// The last customer modification read: customers modified after it are emitted.
    pub customers: Option<Checkpoint>,
    /// The last order modification looked at: the customers of orders modified after it are
    /// emitted (an order changes a customer's `is_paying_customer` without touching its
    /// `date_modified_gmt`).
    pub orders: Checkpoint,
}

/// Reads orders by modification time.
struct OrderReader {
    connector: Arc<WooConnector>,
    per_page: usize,
    fields: Arc<Vec<String>>,
    page: u64,
    checkpoint: Option<Checkpoint>,
    done: bool,
    /// Whether each request is anchored on the last checkpoint (false once the store shows it
    /// ignores `modified_after`).
    reanchor: bool,
}

/// The page to ask for after anchoring on `cp`: the orders of the anchor's second come first
/// and `cp.ids` of them are read, so the page holding the next one, less one page for orders
/// that moved up meanwhile (an order read before was modified again). Starting at page 1
/// instead re-reads every order of a busy second once per page: quadratic in them, and a run
/// that changed nothing would read them all.
fn anchored_page(cp: &Checkpoint, per_page: usize) -> u64 {
    (cp.ids.len() / per_page.max(1)).max(1) as u64
}

fn gmt_param(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn field_names(resource: Resource) -> Arc<Vec<String>> {
    Arc::new(
        fields::names(resource)
            .iter()
            .map(|(n, _)| n.to_string())
            .collect(),
    )
}

impl OrderReader {
    fn new(connector: Arc<WooConnector>, per_page: usize, checkpoint: Option<Checkpoint>) -> Self {
        Self {
            connector,
            per_page,
            fields: field_names(Resource::Orders),
            page: checkpoint
                .as_ref()
                .map_or(1, |cp| anchored_page(cp, per_page)),
            checkpoint,
            done: false,
            reanchor: true,
        }
    }
}

#[async_trait::async_trait]
impl BatchReader for OrderReader {
    async fn next_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let mut params = vec![
                ("per_page", self.per_page.to_string()),
                ("page", self.page.to_string()),
                ("order", "asc".to_string()),
                ("orderby", "modified".into()),
                ("dates_are_gmt", "true".into()),
            ];
            if let Some(cp) = &self.checkpoint {
                // `modified_after` is strict: start a second early, skip what was read.
                let after = cp.modified_after - TimeDelta::seconds(1);
                params.push(("modified_after", gmt_param(after)));
            }
            let Some(page) = self.connector.get_page(Resource::Orders, &params).await? else {
                self.done = true;
                return Ok(None);
            };
            if page.records.len() < self.per_page
                || page.total_pages.is_some_and(|t| self.page >= t)
            {
                self.done = true;
            }
            let start = self.checkpoint.clone();
            let mut rows = vec![];
            for r in &page.records {
                let fields::Record { row, id, modified } = fields::row(Resource::Orders, r)?;
                let modified = modified.ok_or_else(|| {
                    ConnectorError::remote(
                        format!("woocommerce returned order {id} without date_modified_gmt"),
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
                rows.push(row);
            }
            if rows.is_empty() {
                // Everything on this page was read before (many orders share a second): the
                // next page, with the same anchor.
                self.page += 1;
                continue;
            }
            // Re-anchor on the new checkpoint: orders modified meanwhile move past it instead
            // of shifting the pages.
            if self.reanchor
                && let Some(cp) = &self.checkpoint
            {
                self.page = anchored_page(cp, self.per_page);
            } else {
                self.page += 1;
            }
            return Ok(Some(Batch {
                fields: self.fields.clone(),
                rows,
                state: StreamState(json!(self.checkpoint)),
            }));
        }
    }
}

/// Reads customers: WooCommerce ignores `modified_after` on `/customers`, so every run scans
/// them by id and emits those modified after the checkpoint, plus the customers of orders
/// modified since the last run. The checkpoint only moves at the end of the scan (the scan is
/// in id order, not time order): until then every batch carries the previous one, so a run
/// that stops midway scans again from the start, and the store's upserts absorb the repeats.
struct CustomerReader {
    connector: Arc<WooConnector>,
    per_page: usize,
    fields: Arc<Vec<String>>,
    page: u64,
    previous: Option<CustomersCheckpoint>,
    /// The customers of orders modified since the previous run; `None` until looked up.
    changed: Option<HashSet<i64>>,
    next: Option<CustomersCheckpoint>,
    done: bool,
}

impl CustomerReader {
    /// The customers of orders modified after the previous run's order checkpoint, and the new
    /// order checkpoint. On a first run (every customer is emitted anyway) only the anchor:
    /// the latest order's modification time.
    async fn changed_by_orders(&self) -> Result<(HashSet<i64>, Checkpoint), ConnectorError> {
        let Some(previous) = &self.previous else {
            let params = [
                ("per_page", "1".to_string()),
                ("order", "desc".to_string()),
                ("orderby", "modified".to_string()),
                ("dates_are_gmt", "true".to_string()),
            ];
            let latest = self
                .connector
                .get_page(Resource::Orders, &params)
                .await?
                .and_then(|p| {
                    p.records
                        .first()
                        .and_then(|r| fields::gmt(&r["date_modified_gmt"]))
                });
            // No ids: orders of that very second are looked at again next time, harmlessly.
            let anchor = Checkpoint {
                modified_after: latest.unwrap_or(DateTime::UNIX_EPOCH),
                ids: vec![],
            };
            return Ok((HashSet::new(), anchor));
        };
        let mut orders = OrderReader::new(
            self.connector.clone(),
            self.connector.per_page,
            Some(previous.orders.clone()),
        );
        let customer_id = orders
            .fields
            .iter()
            .position(|f| f == "customer_id")
            .expect("orders have a customer_id field");
        let mut changed = HashSet::new();
        while let Some(batch) = orders.next_batch().await? {
            changed.extend(batch.rows.iter().filter_map(|r| match r[customer_id] {
                Value::Int(id) => Some(id),
                _ => None,
            }));
        }
        let checkpoint = orders.checkpoint.unwrap_or_else(|| previous.orders.clone());
        Ok((changed, checkpoint))
    }
}

#[async_trait::async_trait]
impl BatchReader for CustomerReader {
    async fn next_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
        if self.changed.is_none() {
            let (changed, orders) = self.changed_by_orders().await?;
            tracing::debug!(
                customers = changed.len(),
                "woocommerce customers with orders modified since the last run"
            );
            self.changed = Some(changed);
            self.next = Some(CustomersCheckpoint {
                customers: self.previous.as_ref().and_then(|p| p.customers.clone()),
                orders,
            });
        }
        loop {
            if self.done {
                return Ok(None);
            }
            let params = [
                ("per_page", self.per_page.to_string()),
                ("page", self.page.to_string()),
                ("order", "asc".to_string()),
                ("orderby", "id".to_string()),
            ];
            let page = self
                .connector
                .get_page(Resource::Customers, &params)
                .await?;
            let records = page.as_ref().map_or(&[][..], |p| &p.records[..]);
            self.done = page.as_ref().is_none_or(|p| {
                p.records.len() < self.per_page || p.total_pages.is_some_and(|t| self.page >= t)
            });
            self.page += 1;
            let next = self.next.as_mut().expect("set above");
            let changed = self.changed.as_ref().expect("set above");
            let mut rows = vec![];
            for r in records {
                let fields::Record { row, id, modified } = fields::row(Resource::Customers, r)?;
                let emit = match (&self.previous, modified) {
                    (None, _) | (_, None) => true,
                    (Some(p), Some(m)) => {
                        changed.contains(&id)
                            || !p.customers.as_ref().is_some_and(|cp| cp.read_before(id, m))
                    }
                };
                if let Some(m) = modified {
                    match &mut next.customers {
                        Some(cp) => cp.advance(id, m),
                        None => {
                            next.customers = Some(Checkpoint {
                                modified_after: m,
                                ids: vec![id],
                            })
                        }
                    }
                }
                if emit {
                    rows.push(row);
                }
            }
            if rows.is_empty() && !self.done {
                continue;
            }
            // The last batch (even an empty one) commits the new checkpoint.
            let state = if self.done {
                json!(self.next)
            } else {
                json!(self.previous)
            };
            return Ok(Some(Batch {
                fields: self.fields.clone(),
                rows,
                state: StreamState(state),
            }));
        }
    }
}

fn stored<T: serde::de::DeserializeOwned>(
    state: Option<&StreamState>,
) -> Result<Option<T>, ConnectorError> {
    let Some(state) = state.filter(|s| !s.0.is_null()) else {
        return Ok(None);
    };
    serde_json::from_value::<T>(state.0.clone()).map(Some).map_err(|e| {
        ConnectorError::internal(format!(
            "stored stream state is not a woocommerce checkpoint ({e}); reset the stream's state to read it again"
        ))
    })
}

pub(crate) fn read(connector: Arc<WooConnector>, request: ReadRequest<Stream>) -> BatchStream {
    let per_page = request.batch_size.clamp(1, connector.per_page);
    let state = request.state.as_ref();
    match request.stream.resource {
        Resource::Orders => batch_stream(
            stored::<Checkpoint>(state).map(|cp| OrderReader::new(connector, per_page, cp)),
        ),
        Resource::Customers => {
            // A state written before customers were read incrementally holds only
            // `max_date_modified_gmt`: read everything once more.
            let previous = if state.is_some_and(|s| s.0.get("max_date_modified_gmt").is_some()) {
                Ok(None)
            } else {
                stored::<CustomersCheckpoint>(state)
            };
            batch_stream(previous.map(|previous| CustomerReader {
                connector,
                per_page,
                fields: field_names(Resource::Customers),
                page: 1,
                previous,
                changed: None,
                next: None,
                done: false,
            }))
        }
    }
}
