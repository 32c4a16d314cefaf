use std::collections::BTreeMap;

use dossier_core::{DataValue, MappedRecord};
use serde::Serialize;

/// A contact's native fields as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactRow {
    pub id: i64,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub locale: Option<String>,
    /// Epoch microseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRow {
    pub id: i64,
    pub contact_id: Option<i64>,
    pub source: String,
    pub stream: String,
    pub external_id: String,
    pub kind: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub data: BTreeMap<String, DataValue>,
    pub updated_at: i64,
}

/// An identity of a contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentityRow {
    pub kind: String,
    pub value: String,
}

/// A source as registered from config (its config with secrets redacted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceRow {
    pub name: String,
    pub connector: String,
    pub config: serde_json::Value,
    pub streams: Vec<String>,
    /// Each stream as configured (what it reads, its mapping), secrets masked; empty for a
    /// source registered before the store kept them.
    pub stream_configs: Vec<serde_json::Value>,
    pub schedule: Option<String>,
}

/// One batch to commit atomically with its stream's new state.
#[derive(Debug, Clone)]
pub struct BatchWrite {
    pub source: String,
    pub stream: String,
    pub records: Vec<MappedRecord>,
    /// Records the mapping refused: (record id if known, why).
    pub rejected: Vec<(Option<String>, String)>,
    /// The connector's checkpoint after this batch.
    pub state: serde_json::Value,
    pub run_id: Option<i64>,
    /// The scheduler that must still hold the source's lease for this batch to commit
    /// (fencing: a scheduler that lost its lease cannot overwrite its successor's checkpoint).
    pub lease_owner: Option<String>,
    /// A full-refresh read: mark every session seen by this run, so that those it did not
    /// see can be marked deleted when the read completes.
    pub mark_seen: bool,
    /// A bulk load (a stream's first read): leave aggregates and session data of the
    /// contacts touched to [`SqlStore::settle_deferred`](crate::SqlStore::settle_deferred),
    /// which computes each once, instead of maintaining them batch by batch.
    pub defer_derived: bool,
}

/// What committing a batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchOutcome {
    /// Records that created or changed a contact or session.
    pub written: u64,
    /// Records identical to what was stored (a re-applied batch).
    pub unchanged: u64,
    pub merges: u64,
    /// Merges the identity policy's merge limit refused (kept in the merge log).
    pub refused_merges: u64,
}

/// Per-stream counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StreamStats {
    pub read: u64,
    pub written: u64,
    pub rejected: u64,
    /// Records a full-refresh read no longer found, marked deleted.
    #[serde(default)]
    pub deleted: u64,
    /// Times a retryable error made the stream wait and read again from its checkpoint.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u64,
    /// The errors retried (the first few).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_errors: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One sync run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub source: String,
    pub trigger: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub rows_read: i64,
    pub rows_written: i64,
    pub rows_rejected: i64,
    pub error: Option<String>,
    pub streams: BTreeMap<String, StreamStats>,
    /// The schedule slot it served (epoch microseconds), for scheduled runs.
    pub due_at: Option<i64>,
    /// The scheduler that ran it.
    pub owner: Option<String>,
    /// The stream states (checkpoints) it ended at.
    pub end_state: Option<serde_json::Value>,
}

/// A page of rows and whether more follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
}

impl<T> Page<T> {
    /// The first `first` of `items`, which were read with one more than a page holds so
    /// that one more tells another page follows.
    pub(crate) fn cut(mut items: Vec<T>, first: usize) -> Self {
        let has_next = items.len() > first;
        items.truncate(first);
        Page { items, has_next }
    }
}

/// One entry of the merge log: a merge made, or refused by the identity policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergeRow {
    pub survivor: i64,
    pub merged: i64,
    /// `merged` or `refused`.
    pub outcome: String,
    /// Why, in words: the identities the record carried, or the rule that refused.
    pub reason: String,
    /// The record that tied the contacts together (absent for merges logged before 0003).
    pub source: Option<String>,
    pub stream: Option<String>,
    pub record_id: Option<String>,
    /// The identity through which the record named the merged contact.
    pub identity: Option<String>,
    pub at: i64,
}

/// Where one value of a contact came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueOrigin {
    /// A profile field (`email`) or a data key as `data.<key>`.
    pub field: String,
    pub source: String,
    pub stream: String,
    pub record_id: String,
    /// Epoch microseconds: the source's update time, or when it was written.
    pub at: i64,
}
