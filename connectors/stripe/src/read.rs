//! Reading: update events since the last run, then a listing of new objects, one batch per page.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use dossier_connector::{
    Batch, BatchReader, BatchStream, ConnectorError, ReadRequest, StreamState, Value, batch_stream,
};
use dossier_http_source::ApiResource as _;
use serde::{Deserialize, Serialize};

use crate::{Resource, Stream, StripeConnector, fields};

/// Events are kept this long by Stripe.
const EVENTS_RETENTION_SECS: i64 = 30 * 24 * 3600;
/// The first listing reads updates from this long before it started (clock skew).
const EVENTS_OVERLAP_SECS: i64 = 300;

/// Where a stream's reads stand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// New objects: the newest `created` (Unix seconds) read; the next run lists from it.
    #[serde(default)]
    pub created_gte: Option<i64>,
    /// The ids read with exactly `created_gte`, not read again.
    #[serde(default)]
    pub created_ids: Vec<String>,
    /// Updates: events created from this time on are read next run (set by the first
    /// complete listing).
    #[serde(default)]
    pub events_gte: Option<i64>,
    /// The events applied with exactly `events_gte`.
    #[serde(default)]
    pub event_ids: Vec<String>,
    /// A listing in progress, to resume after its last committed page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<Listing>,
}

/// A listing in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    /// The id of the last object read (`starting_after` of the next page).
    pub starting_after: Option<String>,
    /// The newest `created` read so far, and the ids read with it.
    pub newest: Option<i64>,
    pub newest_ids: Vec<String>,
    /// Where update events start once this (first) listing completes.
    pub events_from: i64,
}

enum Phase {
    Events,
    List,
    Done,
}

struct Reader {
    connector: Arc<StripeConnector>,
    resource: Resource,
    limit: usize,
    batch_size: usize,
    fields: Arc<Vec<String>>,
    checkpoint: Checkpoint,
    /// What the stored state is: a batch is emitted when rows came, or the state moved.
    stored: Checkpoint,
    phase: Phase,
    /// Rows of updated objects, waiting to go out in batches; the events checkpoint to
    /// store with the last of them.
    updates: VecDeque<Vec<Value>>,
    events_after: Option<(Option<i64>, Vec<String>)>,
}

fn gte(key: &str, at: i64) -> (String, String) {
    (format!("{key}[gte]"), at.to_string())
}

impl Reader {
    fn batch(&mut self, rows: Vec<Vec<Value>>) -> Batch {
        self.stored = self.checkpoint.clone();
        Batch {
            fields: self.fields.clone(),
            rows,
            state: StreamState(serde_json::to_value(&self.checkpoint).unwrap_or_default()),
        }
    }

    /// Reads every update event since the checkpoint; keeps the newest per object.
    async fn collect_updates(&mut self, since: i64) -> Result<(), ConnectorError> {
        let now = chrono::Utc::now().timestamp();
        if now - since > EVENTS_RETENTION_SECS {
            tracing::warn!(
                resource = self.resource.name(),
                since,
                "the last sync is older than the 30 days Stripe keeps events: updates made in between may be missed"
            );
        }
        let mut starting_after: Option<String> = None;
        let mut seen_objects = HashSet::new();
        let mut newest: Option<i64> = None;
        let mut newest_ids: Vec<String> = vec![];
        loop {
            let mut params = vec![
                ("limit".to_string(), self.limit.to_string()),
                gte("created", since),
            ];
            for t in self.resource.update_events() {
                params.push(("types[]".to_string(), t.to_string()));
            }
            if let Some(id) = &starting_after {
                params.push(("starting_after".into(), id.clone()));
            }
            let page = self.connector.list("events", &params).await?;
            for event in &page.data {
                let (Some(id), Some(created)) = (event["id"].as_str(), event["created"].as_i64())
                else {
                    return Err(ConnectorError::remote(
                        "stripe returned an event without id or created",
                        false,
                    ));
                };
                starting_after = Some(id.to_string());
                if created == since && self.checkpoint.event_ids.iter().any(|e| e == id) {
                    continue;
                }
                match newest {
                    Some(n) if created < n => {}
                    Some(n) if created == n => newest_ids.push(id.to_string()),
                    _ => {
                        newest = Some(created);
                        newest_ids = vec![id.to_string()];
                    }
                }
                let object = &event["data"]["object"];
                if object["object"].as_str() != Some(self.resource.object()) {
                    continue;
                }
                // Events come newest first: the first one of an object is its latest state.
                let record = fields::row(self.resource, object)?;
                if seen_objects.insert(record.id) {
                    self.updates.push_back(record.row);
                }
            }
            if !page.has_more || page.data.is_empty() {
                break;
            }
        }
        if let Some(n) = newest {
            if Some(n) == self.checkpoint.events_gte {
                newest_ids.extend(self.checkpoint.event_ids.iter().cloned());
            }
            self.events_after = Some((Some(n), newest_ids));
        }
        Ok(())
    }

    /// The next batch of updates, the last one with the new events checkpoint.
    fn next_updates(&mut self) -> Option<Batch> {
        let n = self.batch_size.min(self.updates.len());
        let rows: Vec<_> = self.updates.drain(..n).collect();
        if self.updates.is_empty()
            && let Some((gte, ids)) = self.events_after.take()
        {
            self.checkpoint.events_gte = gte;
            self.checkpoint.event_ids = ids;
        }
        (!rows.is_empty()).then(|| self.batch(rows))
    }

    /// The next page of new objects.
    async fn next_page(&mut self) -> Result<Option<Batch>, ConnectorError> {
        let listing = self.checkpoint.listing.get_or_insert_with(|| Listing {
            starting_after: None,
            newest: None,
            newest_ids: vec![],
            events_from: chrono::Utc::now().timestamp() - EVENTS_OVERLAP_SECS,
        });
        let mut params = vec![("limit".to_string(), self.limit.to_string())];
        if let Some(w) = self.checkpoint.created_gte {
            params.push(gte("created", w));
        }
        if let Some(id) = &listing.starting_after {
            params.push(("starting_after".into(), id.clone()));
        }
        let page = self.connector.list(self.resource.name(), &params).await?;
        let listing = self.checkpoint.listing.as_mut().expect("listing set above");
        let mut rows = Vec::with_capacity(page.data.len());
        for object in &page.data {
            let fields::Record { row, id, created } = fields::row(self.resource, object)?;
            listing.starting_after = Some(id.clone());
            let read_before = self.checkpoint.created_gte == Some(created)
                && self.checkpoint.created_ids.contains(&id);
            if read_before {
                continue;
            }
            match listing.newest {
                Some(n) if created < n => {}
                Some(n) if created == n => listing.newest_ids.push(id),
                _ => {
                    listing.newest = Some(created);
                    listing.newest_ids = vec![id];
                }
            }
            rows.push(row);
        }
        let last = !page.has_more || page.data.is_empty();
        if last {
            let listing = self.checkpoint.listing.take().expect("listing set above");
            let cp = &mut self.checkpoint;
            match (cp.created_gte, listing.newest) {
                (_, None) => {}
                (Some(w), Some(n)) if n == w => cp.created_ids.extend(listing.newest_ids),
                (Some(w), Some(n)) if n < w => {}
                (_, Some(n)) => {
                    cp.created_gte = Some(n);
                    cp.created_ids = listing.newest_ids;
                }
            }
            if cp.events_gte.is_none() {
                cp.events_gte = Some(listing.events_from);
            }
            self.phase = Phase::Done;
        }
        if rows.is_empty() && !(last && self.checkpoint != self.stored) {
            return Ok(None);
        }
        Ok(Some(self.batch(rows)))
    }
}

#[async_trait::async_trait]
impl BatchReader for Reader {
    async fn next_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
        loop {
            match self.phase {
                Phase::Done => return Ok(None),
                Phase::Events => {
                    if self.updates.is_empty() && self.events_after.is_none() {
                        let since = self
                            .checkpoint
                            .events_gte
                            .expect("events phase has a start");
                        self.collect_updates(since).await?;
                    }
                    if let Some(b) = self.next_updates() {
                        return Ok(Some(b));
                    }
                    self.phase = Phase::List;
                }
                Phase::List => {
                    if let Some(b) = self.next_page().await? {
                        return Ok(Some(b));
                    }
                }
            }
        }
    }
}

pub(crate) fn read(connector: Arc<StripeConnector>, request: ReadRequest<Stream>) -> BatchStream {
    let resource = request.stream.resource;
    let checkpoint = match request.state.as_ref().filter(|s| !s.0.is_null()) {
        Some(s) => serde_json::from_value::<Checkpoint>(s.0.clone()).map_err(|e| {
            ConnectorError::internal(format!(
                "stored stream state is not a stripe checkpoint ({e}); reset the stream's state to read it again"
            ))
        }),
        None => Ok(Checkpoint::default()),
    };
    let fields = fields::names(resource).iter().map(|(n, _)| n.to_string());
    batch_stream(checkpoint.map(|checkpoint| Reader {
        phase: if checkpoint.events_gte.is_some() {
            Phase::Events
        } else {
            Phase::List
        },
        limit: request.batch_size.clamp(1, connector.page_size),
        batch_size: request.batch_size.max(1),
        connector,
        resource,
        fields: Arc::new(fields.collect()),
        stored: checkpoint.clone(),
        checkpoint,
        updates: VecDeque::new(),
        events_after: None,
    }))
}
