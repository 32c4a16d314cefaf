//! Writing: one transaction per batch (or group of batches) resolves identities, upserts
//! contacts and sessions, maintains session data on contacts and aggregates incrementally,
//! and stores the stream's new state.
//!
//! # The write protocol
//!
//! Writers of one workspace are kept apart by [`locks`]:
//!
//! - **a sync batch** (or group of batches) on PostgreSQL holds the workspace's lock
//!   *shared* (a transaction-scoped advisory lock, `pg_advisory_xact_lock_shared`), then
//!   locks, in id order, the stored contacts its records name through their identities and
//!   their stored sessions (`FOR NO KEY UPDATE`), and only then reads them;
//! - **settling a bulk load** does the same, a few hundred pending contacts at a time, locked
//!   with the query that selects them ([`write::begin_shared`]);
//! - **every other write** (a full refresh's deletion pass, a window sweep, an API mutation, a
//!   rule's backfill, a segment refresh) opens through [`write::begin_write`], which holds the
//!   workspace's lock *exclusively*;
//! - on SQLite, every write transaction begins with `BEGIN IMMEDIATE`, which takes the
//!   database's write lock at once (waiting up to the busy timeout) instead of at the first
//!   write on a possibly stale snapshot: one writer at a time.
//!
//! **Invariant:** every committed write transaction leaves the store as it would have
//! running alone, so any number of writers (sources, `dossier worker` processes, the window
//! sweep, the segment refresh, the API) leave the store exactly as one writer applying the
//! same transactions one after the other would. A batch beside others may change only what
//! it locked: the contacts it named (their profile, identities, data, aggregates, and the
//! sessions that reach them through it), its own source's sessions (a source is read by one
//! scheduler at a time: its lease), and contacts it creates (invisible to others until it
//! commits). Two things can still meet, and both make the batch a **conflict**: a stored
//! contact found after locking that it did not lock (a concurrent merge moved an identity or a
//! session), and a new identity another writer attached meanwhile (the insert finds it). A
//! deadlock reported by PostgreSQL is one too. A conflicting batch rolls back and is written
//! again holding the workspace alone, with the batches of its group before it; so sources
//! whose people do not overlap write in parallel, and overlapping ones fall back to turns.
//!
//! A transaction waits for contact locks only while it holds none: a group's later batch
//! takes the free ones (`SKIP LOCKED`), and if some are held, commits the group first and
//! waits in a new transaction. Sorted waits and no waiting while holding rule out deadlocks
//! between batches, except on new identities (the conflict above). What may also run in
//! parallel is everything before the write: reading the sources and mapping their rows (the
//! engine's read-ahead), and every read of the gateway. Workspaces do not wait for each
//! other. A sync holds its locks for one group of batches at a time (at most
//! `bulk_commit_rows` rows or 2 s, and never while its source has nothing read ahead), so
//! another writer waits at most that long.
//!
//! Within a transaction, a batch applies in this order:
//!
//! 1. [`locks`]: the contacts the batch names (PostgreSQL, beside other batches);
//! 2. [`prefetch`]: the batch's identities, stored sessions, aggregate states and profiles,
//!    in a few packed queries;
//! 3. each record in order ([`Ingest::apply`]): identities resolved ([`identities`]), contacts
//!    merged where a record ties several ([`merge`], fields chosen by [`survivorship`]),
//!    contact records upserted ([`contacts`]), session records queued ([`sessions`]) and their
//!    effects on aggregates and session data computed ([`derived`]);
//! 4. queued rows are flushed, many per statement, before anything reads them back (a merge, a
//!    recompute) and at [`Ingest::finish`]: changed sessions, new sessions, new contacts,
//!    identities and own values, then recomputed session data and aggregate states;
//! 5. rejected records and the stream's new state ([`write`]);
//! 6. the lease: a sync's transaction commits only if its scheduler still holds the source's
//!    lease, checked just before the commit, in the same transaction.

mod api;
mod claims;
mod contacts;
mod derived;
mod identities;
mod locks;
mod maintenance;
mod merge;
mod prefetch;
mod rules;
mod sessions;
mod sql;
mod survivorship;
mod write;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use dossier_core::{
    AggState, AggregateRule, DataKey, DataValue, Identity, IdentityPolicy, MappedRecord, Provenance,
};
use sqlx::AnyConnection;

pub use write::WriteGroup;
pub(crate) use write::{begin_shared, begin_write};

use crate::aggregate_rules::load_rules;
use crate::backend::now_micros;
use crate::encoding::{decode_data, decode_provenance, encode, encode_state, projections};
use crate::error::{Result, StoreError};
use crate::identity::load_policy;
use crate::{Backend, BatchOutcome};
use derived::*;
use sql::*;

/// A live session as aggregates and session data need it: (id, kind, start, data).
type LiveSession = (i64, String, i64, BTreeMap<String, DataValue>);

/// A live session as a packed read returns it: (contact, id, kind, start, data).
type PackedSession = (i64, i64, String, i64, BTreeMap<String, DataValue>);
/// A stored session as a batch's lookup packs it: external id, id, contact, kind, start, end,
/// data (the stored JSON text), deleted.
type PackedStored = (
    String,
    i64,
    Option<i64>,
    String,
    i64,
    Option<i64>,
    String,
    i64,
);

/// A session value waiting to show on its contact: (session start, session id, value).
type PendingValue = (i64, i64, DataValue);

/// A new contact's profile as its record sets it: (column, value) pairs, the source's update
/// time, and where each field came from.
type NewProfile<'r> = (&'r [(&'static str, &'r str)], Option<i64>, Provenance);

/// A stored contact's profile fields by name, their origins, and the source's latest update.
type StoredProfile = (BTreeMap<String, String>, Provenance, Option<i64>);

/// A contact as a contact record is compared with: what the record repeats unchanged is
/// not written again.
#[derive(Debug, Clone, Default)]
struct KnownProfile {
    /// The source's latest update.
    source_updated_at: Option<i64>,
    created_at: i64,
    /// Where each profile field and own value came from.
    provenance: Provenance,
    /// Profile fields by column.
    fields: HashMap<String, String>,
    /// Own values by key, encoded as stored.
    own: HashMap<String, String>,
}

/// A new contact waiting for its multi-row insert, its id already reserved.
struct NewContact {
    id: i64,
    created_at: i64,
    source_updated_at: Option<i64>,
    provenance: Option<String>,
    /// Profile columns the record sets, each once.
    fields: Vec<(&'static str, String)>,
}

/// A stored session's new values, waiting for their multi-row update.
struct ChangedSession {
    /// Its contact, kind or start changed (the columns the session indexes hold): only then
    /// are they written, so an update of data alone leaves the indexes' pages untouched.
    moved: bool,
    contact: Option<i64>,
    kind: String,
    started_at: i64,
    ended_at: Option<i64>,
    data_json: String,
}

/// A new session waiting for its multi-row insert.
struct NewSession {
    key: (String, String, String),
    kind: String,
    contact: Option<i64>,
    started_at: i64,
    ended_at: Option<i64>,
    data: BTreeMap<String, DataValue>,
    data_json: String,
}

#[derive(Debug, Clone)]
struct StoredSession {
    id: i64,
    contact_id: Option<i64>,
    kind: String,
    started_at: i64,
    ended_at: Option<i64>,
    data_json: String,
    data: BTreeMap<String, DataValue>,
    deleted: bool,
}

/// The state of one batch's transaction.
pub(crate) struct Ingest<'c> {
    conn: &'c mut AnyConnection,
    ws: &'c str,
    now: i64,
    rules: Vec<AggregateRule>,
    idents: HashMap<Identity, i64>,
    /// Identities known to be absent (prefetched), so they are not looked up one by one.
    missing: HashSet<Identity>,
    /// Sessions of this batch as stored, by (source, stream, external id); `None` if new.
    sessions: HashMap<(String, String, String), Option<StoredSession>>,
    /// Session data to show on contacts, the latest per (contact, key), written at `finish`.
    pending_data: HashMap<(i64, String), PendingValue>,
    /// Aggregate states of contacts touched by this batch, by rule name.
    aggs: HashMap<i64, HashMap<String, AggState>>,
    /// New sessions of this batch, inserted many per statement before their effects apply.
    new_sessions: Vec<NewSession>,
    /// Stored sessions this batch changed, by id (the last change wins), written many per
    /// statement before anything reads sessions back (recomputes, merges) and at `finish`.
    changed_sessions: HashMap<i64, ChangedSession>,
    /// Unchanged sessions a full-refresh read saw, marked seen with `changed_sessions`.
    seen_sessions: Vec<i64>,
    /// The keys of `new_sessions`, to find a record repeated within the batch.
    new_session_keys: HashSet<(String, String, String)>,
    /// Contacts whose aggregate states changed and must be written.
    dirty_aggs: HashSet<i64>,
    /// Aggregate states as loaded, serialized, by (contact, rule): a state that comes out the
    /// same is not written again (nor its row's indexes touched).
    stored_aggs: HashMap<(i64, String), String>,
    recompute_aggs: BTreeSet<i64>,
    recompute_data: BTreeSet<i64>,
    pub(crate) outcome: BatchOutcome,
    /// The run to record on every session written (full-refresh deletion detection).
    seen_run: Option<i64>,
    sqlite: bool,
    policy: IdentityPolicy,
    /// The record being applied (source, stream, id), for merge explanations and provenance.
    current: Option<(String, String, String)>,
    /// A bulk load: session changes only note their contacts in `deferred`, whose aggregates
    /// and session data are computed once by [`SqlStore::settle_deferred`].
    defer: bool,
    deferred: BTreeSet<i64>,
    /// Identities found missing and attached to a contact, inserted many per statement
    /// before anything reads the identities table (merges) and at `finish`.
    new_idents: Vec<(i64, Identity)>,
    /// The emails and phones records of the batch assert now, by claimant ([`claims`]),
    /// where that differs from `stored_claims`; written with `new_idents`.
    claims: HashMap<String, BTreeSet<Identity>>,
    /// The claimants in `claims`.
    dirty_claims: HashSet<String>,
    /// Claims as stored (or last written), by claimant.
    stored_claims: HashMap<String, BTreeSet<Identity>>,
    /// Identities known to be retired: no record asserts them ([`claims`]).
    retired: HashSet<Identity>,
    /// Identities some record of the batch stopped asserting: retired at the next flush
    /// unless another record claims them.
    unclaimed: BTreeSet<Identity>,
    /// Own values of contact records, the last per (contact, key), written with `new_idents`.
    own_data: HashMap<(i64, DataKey), DataValue>,
    /// What this batch knows of the contacts its contact records name, loaded once (or
    /// known since the batch created or wrote them).
    profiles: HashMap<i64, KnownProfile>,
    /// New contacts, inserted many per statement before anything reads or updates the
    /// contacts table, and at `finish`; their ids are in `new_contact_ids`.
    new_contacts: Vec<NewContact>,
    new_contact_ids: HashSet<i64>,
    /// Every contact this batch created (kept after they are inserted): invisible to other
    /// writers until the commit, so the batch may change them without having locked them.
    created: HashSet<i64>,
    /// Contact ids reserved for this batch and not used yet, the smallest last.
    reserved_ids: Vec<i64>,
    /// The largest contact id reserved so far.
    last_contact_id: Option<i64>,
    /// PostgreSQL, a batch sharing its workspace with other writers: the stored contacts it
    /// locked ([`locks`]). Finding any other stored contact means a concurrent writer moved
    /// an identity or a session meanwhile, and the batch is retried alone.
    locked: Option<&'c HashSet<i64>>,
}

impl<'c> Ingest<'c> {
    pub(crate) async fn new(
        conn: &'c mut AnyConnection,
        ws: &'c str,
        backend: Backend,
    ) -> Result<Self> {
        let rules = load_rules(conn, ws).await?;
        let policy = load_policy(conn, ws).await?;
        Ok(Self {
            conn,
            ws,
            now: now_micros(),
            rules,
            idents: HashMap::new(),
            missing: HashSet::new(),
            sessions: HashMap::new(),
            pending_data: HashMap::new(),
            aggs: HashMap::new(),
            dirty_aggs: HashSet::new(),
            stored_aggs: HashMap::new(),
            new_sessions: Vec::new(),
            new_session_keys: HashSet::new(),
            changed_sessions: HashMap::new(),
            seen_sessions: Vec::new(),
            recompute_aggs: BTreeSet::new(),
            recompute_data: BTreeSet::new(),
            outcome: BatchOutcome::default(),
            seen_run: None,
            sqlite: backend == Backend::Sqlite,
            policy,
            current: None,
            defer: false,
            deferred: BTreeSet::new(),
            new_idents: Vec::new(),
            claims: HashMap::new(),
            dirty_claims: HashSet::new(),
            stored_claims: HashMap::new(),
            retired: HashSet::new(),
            unclaimed: BTreeSet::new(),
            own_data: HashMap::new(),
            profiles: HashMap::new(),
            new_contacts: Vec::new(),
            new_contact_ids: HashSet::new(),
            created: HashSet::new(),
            reserved_ids: Vec::new(),
            last_contact_id: None,
            locked: None,
        })
    }

    /// Refuses a stored contact the batch did not lock, when it shares its workspace.
    fn guard(&self, contact: i64) -> Result<()> {
        match &self.locked {
            Some(locked) if !locked.contains(&contact) && !self.created.contains(&contact) => {
                Err(StoreError::Conflict(format!(
                    "contact {contact} was not locked by the batch that found it"
                )))
            }
            _ => Ok(()),
        }
    }

    pub(crate) async fn apply(
        &mut self,
        source: &str,
        stream: &str,
        rec: &MappedRecord,
    ) -> Result<()> {
        self.current = Some((
            source.to_string(),
            stream.to_string(),
            rec.external_id().to_string(),
        ));
        let changed = match rec {
            MappedRecord::Contact(c) => self.upsert_contact(c).await?,
            MappedRecord::Session(s) => self.upsert_session(source, stream, s).await?,
        };
        self.current = None;
        if changed {
            self.outcome.written += 1;
        } else {
            self.outcome.unchanged += 1;
        }
        Ok(())
    }
}
