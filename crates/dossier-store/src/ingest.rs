//! Writing: one transaction per batch resolves identities, upserts contacts and sessions,
//! maintains session data on contacts and aggregates incrementally, and stores the
//! stream's new state.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use dossier_core::model::{ContactLink, ContactRecord, SessionRecord};
use dossier_core::{
    AggState, AggregateRule, DataKey, DataValue, FieldOrigin, Identity, IdentityKind,
    IdentityPolicy, MappedRecord, ProfileField, Provenance,
};
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::backend::now_micros;
use crate::error::{Result, StoreError};
use crate::json_sql::{Json, parse_json, strings_param};
use crate::{Backend, BatchOutcome, BatchWrite, SqlStore};

/// The workspace's identity policy (the default where none was registered).
pub(crate) async fn load_policy(conn: &mut AnyConnection, ws: &str) -> Result<IdentityPolicy> {
    let row = sqlx::query(
        "SELECT value FROM workspace_settings WHERE workspace = $1 AND name = 'identity'",
    )
    .bind(ws)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok(IdentityPolicy::default()),
        Some(r) => serde_json::from_str(&r.try_get::<String, _>(0)?)
            .map_err(|e| StoreError::corrupt("identity policy", e)),
    }
}

pub(crate) fn decode_provenance(json: Option<String>) -> Result<Provenance> {
    json.map_or_else(
        || Ok(Provenance::new()),
        |j| serde_json::from_str(&j).map_err(|e| StoreError::corrupt("provenance", e)),
    )
}

pub(crate) async fn load_rules(conn: &mut AnyConnection, ws: &str) -> Result<Vec<AggregateRule>> {
    let rows =
        sqlx::query("SELECT definition FROM aggregate_rules WHERE workspace = $1 ORDER BY name")
            .bind(ws)
            .fetch_all(&mut *conn)
            .await?;
    rows.iter()
        .map(|r| {
            let d: String = r.try_get("definition")?;
            serde_json::from_str(&d).map_err(|e| StoreError::corrupt("aggregate rule", e))
        })
        .collect()
}

/// The two projections of a value used by filters: a number and a text.
///
/// A number is always bound as a non-null `f64` with a separate "present" flag: sqlx's Any
/// driver types a NULL float parameter differently on PostgreSQL, which breaks the cached
/// prepared statement for the next non-null value.
pub(crate) fn projections(v: &DataValue) -> (Option<f64>, Option<String>) {
    (v.as_sort_number(), v.as_text().map(str::to_string))
}

pub(crate) fn encode(v: &DataValue) -> String {
    serde_json::to_string(v).expect("data values serialize")
}

pub(crate) fn decode_data(s: &str) -> Result<BTreeMap<String, DataValue>> {
    serde_json::from_str(s).map_err(|e| StoreError::corrupt("session data", e))
}

/// Rows per multi-row statement: well under SQLite's and PostgreSQL's parameter limits.
const CHUNK: usize = 200;

/// Keys looked up per statement when they go as one JSON parameter (see [`Json::strings`]).
const KEYS_CHUNK: usize = 1000;

/// Contacts whose sessions a rule backfill reads at once.
const BACKFILL_CONTACTS: i64 = 2_000;

/// `($1, $2, ...), (...)` for `rows` rows of `cols` parameters, numbered from `first`;
/// on SQLite plain `?`, so templates must use each row's parameters in order.
///
/// Why `?` there: sqlx-sqlite asks SQLite for every parameter's name, a linear search over
/// the named parameters, which makes a statement with n `$N` parameters cost O(n²).
fn placeholders(
    sqlite: bool,
    rows: usize,
    cols: usize,
    first: usize,
    row: impl Fn(&[String]) -> String,
) -> String {
    if sqlite {
        // Every row reads the same: built once, not once per row and parameter (a bulk
        // load builds thousands of these statements).
        let one = row(&vec![param(true, 0); cols]);
        return std::iter::repeat_n(one.as_str(), rows)
            .collect::<Vec<_>>()
            .join(", ");
    }
    (0..rows)
        .map(|r| {
            let ps: Vec<String> = (0..cols)
                .map(|c| param(sqlite, first + r * cols + c))
                .collect();
            row(&ps)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `n`th parameter (from 1): `$n`, or `?` on SQLite (see [`placeholders`]).
fn param(sqlite: bool, n: usize) -> String {
    if sqlite {
        "?".to_string()
    } else {
        format!("${n}")
    }
}

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
    /// Own values of contact records, the last per (contact, key), written with `new_idents`.
    own_data: HashMap<(i64, DataKey), DataValue>,
    /// What this batch knows of contacts it wrote: the source's latest update and where
    /// each field came from, so a contact written twice (or just created) is not read back.
    profiles: HashMap<i64, (Option<i64>, Provenance)>,
    /// New contacts, inserted many per statement before anything reads or updates the
    /// contacts table, and at `finish`; their ids are in `new_contact_ids`.
    new_contacts: Vec<NewContact>,
    new_contact_ids: HashSet<i64>,
    /// Contact ids reserved for this batch and not used yet, the smallest last.
    reserved_ids: Vec<i64>,
    /// The largest contact id reserved so far.
    last_contact_id: Option<i64>,
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
            own_data: HashMap::new(),
            profiles: HashMap::new(),
            new_contacts: Vec::new(),
            new_contact_ids: HashSet::new(),
            reserved_ids: Vec::new(),
            last_contact_id: None,
        })
    }

    async fn lookup(&mut self, ident: &Identity) -> Result<Option<i64>> {
        if let Some(id) = self.idents.get(ident) {
            return Ok(Some(*id));
        }
        if self.missing.contains(ident) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT contact_id FROM identities WHERE workspace = $1 AND kind = $2 AND value = $3",
        )
        .bind(self.ws)
        .bind(ident.kind.as_str())
        .bind(&ident.value)
        .fetch_optional(&mut *self.conn)
        .await?;
        let id = row.map(|r| r.try_get::<i64, _>(0)).transpose()?;
        if let Some(id) = id {
            self.idents.insert(ident.clone(), id);
        }
        Ok(id)
    }

    /// Creates a contact, with its record's profile when a contact record creates it. The row
    /// is queued and inserted with others by [`Self::flush_contact_writes`]; its id is
    /// reserved now, so what refers to it can be queued too.
    async fn new_contact(
        &mut self,
        created_at: Option<i64>,
        profile: Option<NewProfile<'_>>,
    ) -> Result<i64> {
        let (fields, source_updated_at, provenance) = match profile {
            Some((fields, at, provenance)) => (fields, at, provenance),
            None => (&[][..], None, Provenance::default()),
        };
        let id = self.reserve_contact_id().await?;
        self.new_contacts.push(NewContact {
            id,
            created_at: created_at.unwrap_or(self.now),
            source_updated_at,
            provenance: (!provenance.is_empty())
                .then(|| serde_json::to_string(&provenance).expect("provenance serializes")),
            fields: fields.iter().map(|(n, v)| (*n, (*v).to_string())).collect(),
        });
        self.new_contact_ids.insert(id);
        // A new contact has no aggregate state yet: nothing to load.
        self.aggs.insert(id, HashMap::new());
        self.profiles.insert(id, (source_updated_at, provenance));
        Ok(id)
    }

    /// An id no contact has and no other writer will take, from ids reserved as many at a
    /// time as the batch has identities no contact holds (each new contact takes at least
    /// one), up to [`CHUNK`].
    async fn reserve_contact_id(&mut self) -> Result<i64> {
        if self.reserved_ids.is_empty() {
            let n = self.missing.len().clamp(1, CHUNK);
            // Ids handed out but still queued are not in the table yet: count from them.
            let ids = self
                .reserve_ids("contacts", n, self.last_contact_id)
                .await?;
            self.last_contact_id = ids.last().copied();
            // Popped from the end: the smallest first.
            self.reserved_ids = ids.into_iter().rev().collect();
        }
        self.reserved_ids
            .pop()
            .ok_or_else(|| StoreError::corrupt("contact ids", "the sequence gave no ids"))
    }

    /// `n` ids for new rows of `table` that no other writer will take, smallest first.
    ///
    /// PostgreSQL: drawn from the table's sequence; an unused one is a gap, as after a
    /// rollback. SQLite: the ids after `after`, or after the largest stored one. That read is
    /// safe because SQLite has one writer: if another connection commits rows after this
    /// transaction read, this transaction's first write fails with `SQLITE_BUSY` (its snapshot
    /// is stale) instead of reusing their ids.
    async fn reserve_ids(
        &mut self,
        table: &'static str,
        n: usize,
        after: Option<i64>,
    ) -> Result<Vec<i64>> {
        if self.sqlite {
            let last = match after {
                Some(last) => last,
                None => sqlx::query(AssertSqlSafe(format!(
                    "SELECT COALESCE(MAX(id), 0) FROM {table}"
                )))
                .fetch_one(&mut *self.conn)
                .await?
                .try_get(0)?,
            };
            return Ok((last + 1..=last + n as i64).collect());
        }
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, $1) ORDER BY 1"
        )))
        .bind(n as i64)
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter().map(|r| Ok(r.try_get::<i64, _>(0)?)).collect()
    }

    /// Inserts the queued new contacts, many per statement.
    async fn flush_new_contacts(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.new_contacts);
        self.new_contact_ids.clear();
        for chunk in pending.chunks(CHUNK) {
            // The profile columns some row of the chunk sets; a row without one gets NULL.
            let columns: Vec<&'static str> = ProfileField::ALL
                .iter()
                .map(|f| f.name())
                .filter(|name| {
                    chunk
                        .iter()
                        .any(|c| c.fields.iter().any(|(f, _)| f == name))
                })
                .collect();
            let values = placeholders(self.sqlite, chunk.len(), 6 + columns.len(), 1, |p| {
                format!("({})", p.join(", "))
            });
            let names: String = columns.iter().map(|c| format!(", {c}")).collect();
            let mut q = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO contacts (id, workspace, created_at, updated_at, source_updated_at, provenance{names}) \
                 VALUES {values}"
            )));
            for c in chunk {
                q = q
                    .bind(c.id)
                    .bind(self.ws)
                    .bind(c.created_at)
                    .bind(self.now)
                    .bind(c.source_updated_at)
                    .bind(c.provenance.clone());
                for column in &columns {
                    let value = c.fields.iter().find(|(f, _)| f == column);
                    q = q.bind(value.map(|(_, v)| v.clone()));
                }
            }
            q.execute(&mut *self.conn).await?;
        }
        Ok(())
    }

    fn attach(&mut self, contact: i64, ident: &Identity) {
        self.missing.remove(ident);
        self.idents.insert(ident.clone(), contact);
        self.new_idents.push((contact, ident.clone()));
    }

    /// Writes the contacts, identities and own values this batch queued (before a merge reads
    /// or moves them, before a queued contact is updated, and at `finish`).
    async fn flush_contact_writes(&mut self) -> Result<()> {
        self.flush_new_contacts().await?;
        let idents = std::mem::take(&mut self.new_idents);
        for chunk in idents.chunks(CHUNK) {
            let values = placeholders(self.sqlite, chunk.len(), 5, 1, |p| {
                format!("({})", p.join(", "))
            });
            let mut q = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO identities (workspace, kind, value, contact_id, created_at) VALUES {values} \
                 ON CONFLICT (workspace, kind, value) DO NOTHING"
            )));
            for (contact, ident) in chunk {
                q = q
                    .bind(self.ws)
                    .bind(ident.kind.as_str())
                    .bind(ident.value.clone())
                    .bind(*contact)
                    .bind(self.now);
            }
            q.execute(&mut *self.conn).await?;
        }
        let own: Vec<_> = self.own_data.drain().collect();
        for chunk in own.chunks(CHUNK) {
            let values = placeholders(self.sqlite, chunk.len(), 7, 1, |p| {
                format!(
                    "({}, {}, {}, CASE WHEN {} = 1 THEN CAST({} AS DOUBLE PRECISION) END, {}, 1, NULL, NULL, {})",
                    p[0], p[1], p[2], p[3], p[4], p[5], p[6]
                )
            });
            let mut q = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO contact_data (contact_id, key, value, num, txt, own, session_id, session_at, updated_at) \
                 VALUES {values} ON CONFLICT (contact_id, key) DO UPDATE SET \
                 value = excluded.value, num = excluded.num, txt = excluded.txt, own = 1, session_id = NULL, \
                 session_at = NULL, updated_at = excluded.updated_at"
            )));
            for ((contact, key), v) in chunk {
                let (num, txt) = projections(v);
                q = q
                    .bind(*contact)
                    .bind(key.as_str().to_string())
                    .bind(encode(v))
                    .bind(i64::from(num.is_some()))
                    .bind(num.unwrap_or_default())
                    .bind(txt)
                    .bind(self.now);
            }
            q.execute(&mut *self.conn).await?;
        }
        Ok(())
    }

    /// Finds or creates the contact a set of identities belongs to, merging contacts that
    /// the identities tie together (within the workspace's identity policy).
    async fn resolve(&mut self, idents: &[Identity], created_at: Option<i64>) -> Result<i64> {
        let (found, missing) = self.find(idents).await?;
        self.resolve_found(&found, &missing, created_at).await
    }

    /// The contact that what [`Self::find`] found resolves to: a new one when none was
    /// found, the merge of several; the missing identities are attached to it.
    async fn resolve_found(
        &mut self,
        found: &[(i64, Identity)],
        missing: &[Identity],
        created_at: Option<i64>,
    ) -> Result<i64> {
        let contact = match found.len() {
            0 => self.new_contact(created_at, None).await?,
            1 => found[0].0,
            _ => self.merge_or_refuse(found).await?,
        };
        for ident in missing {
            self.attach(contact, ident);
        }
        Ok(contact)
    }

    /// The contacts a record's identities name, each with the first identity naming it, and
    /// the identities no contact holds yet (blocked identities are neither).
    #[allow(clippy::type_complexity)]
    async fn find(&mut self, idents: &[Identity]) -> Result<(Vec<(i64, Identity)>, Vec<Identity>)> {
        let mut found: Vec<(i64, Identity)> = vec![];
        let mut missing = vec![];
        for ident in idents {
            if self.policy.is_blocked(ident) {
                continue;
            }
            match self.lookup(ident).await? {
                Some(id) if found.iter().any(|(c, _)| *c == id) => {}
                Some(id) => found.push((id, ident.clone())),
                None => missing.push(ident.clone()),
            }
        }
        Ok((found, missing))
    }

    /// Merges the contacts a record tied together, unless an identity involved has already
    /// merged as many contacts as the policy allows; then the record stays with the first
    /// contact it named and the refusal is logged.
    async fn merge_or_refuse(&mut self, found: &[(i64, Identity)]) -> Result<i64> {
        self.flush_contact_writes().await?;
        let extra = (found.len() - 1) as i64;
        let mut over_limit = None;
        for (_, ident) in found {
            let row = sqlx::query(
                "SELECT merges FROM identities WHERE workspace = $1 AND kind = $2 AND value = $3",
            )
            .bind(self.ws)
            .bind(ident.kind.as_str())
            .bind(&ident.value)
            .fetch_optional(&mut *self.conn)
            .await?;
            let merges: i64 = row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
            if merges + extra > i64::from(self.policy.merge_limit) {
                over_limit = Some(ident.clone());
                break;
            }
        }
        if let Some(ident) = over_limit {
            let kept = found[0].0;
            for (other, matched) in &found[1..] {
                let reason = format!(
                    "refused: {ident} has already merged {} contacts (identity.merge_limit)",
                    self.policy.merge_limit
                );
                self.log_merge(kept, *other, "refused", matched, &reason)
                    .await?;
            }
            self.outcome.refused_merges += extra as u64;
            return Ok(kept);
        }
        // The survivor is the contact created first (by the source's own creation time where
        // known), so the result does not depend on the order records arrive in.
        let mut ranked = vec![];
        for (id, ident) in found {
            let row = sqlx::query("SELECT created_at FROM contacts WHERE id = $1")
                .bind(*id)
                .fetch_one(&mut *self.conn)
                .await?;
            ranked.push((row.try_get::<i64, _>(0)?, *id, ident.clone()));
        }
        ranked.sort();
        for (_, ident) in found {
            sqlx::query(
                "UPDATE identities SET merges = merges + $1 WHERE workspace = $2 AND kind = $3 AND value = $4",
            )
            .bind(extra)
            .bind(self.ws)
            .bind(ident.kind.as_str())
            .bind(&ident.value)
            .execute(&mut *self.conn)
            .await?;
        }
        let survivor = ranked[0].1;
        let losers: Vec<(i64, Identity)> = ranked[1..]
            .iter()
            .map(|(_, id, ident)| (*id, ident.clone()))
            .collect();
        let names: Vec<String> = found
            .iter()
            .map(|(c, i)| format!("{i} (contact {c})"))
            .collect();
        let reason = format!("one record carries {}", names.join(" and "));
        self.merge(survivor, &losers, &reason).await?;
        Ok(survivor)
    }

    async fn log_merge(
        &mut self,
        survivor: i64,
        merged: i64,
        outcome: &str,
        identity: &Identity,
        reason: &str,
    ) -> Result<()> {
        let (source, stream, record) = match &self.current {
            Some((a, b, c)) => (Some(a.clone()), Some(b.clone()), Some(c.clone())),
            None => (None, None, None),
        };
        sqlx::query(
            "INSERT INTO contact_merges (workspace, survivor, merged, reason, at, outcome, source, stream, record_id, identity) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(self.ws)
        .bind(survivor)
        .bind(merged)
        .bind(reason)
        .bind(self.now)
        .bind(outcome)
        .bind(source)
        .bind(stream)
        .bind(record)
        .bind(identity.to_string())
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    /// Merges contacts into the survivor; the others keep resolving to it. Profile fields and
    /// their origins follow the survivorship rule across all of them.
    async fn merge(
        &mut self,
        survivor: i64,
        losers: &[(i64, Identity)],
        reason: &str,
    ) -> Result<()> {
        // Pending sessions, identities and values must exist before their contact can move.
        self.flush_changed_sessions().await?;
        self.flush_new_sessions().await?;
        self.flush_contact_writes().await?;
        self.profiles.remove(&survivor);
        for (loser, _) in losers {
            self.profiles.remove(loser);
        }
        for (loser, matched) in losers {
            let loser = *loser;
            let c = &mut *self.conn;
            for sql in [
                "UPDATE identities SET contact_id = $1 WHERE contact_id = $2",
                "UPDATE sessions SET contact_id = $1 WHERE contact_id = $2",
                "UPDATE contacts SET merged_into = $1 WHERE merged_into = $2",
                "INSERT INTO contact_data (contact_id, key, value, num, txt, own, session_id, session_at, updated_at) \
                 SELECT $1, key, value, num, txt, own, session_id, session_at, updated_at FROM contact_data \
                 WHERE contact_id = $2 AND own = 1 ON CONFLICT (contact_id, key) DO NOTHING",
            ] {
                sqlx::query(sql)
                    .bind(survivor)
                    .bind(loser)
                    .execute(&mut *c)
                    .await?;
            }
            self.merge_profiles(survivor, loser).await?;
            let c = &mut *self.conn;
            sqlx::query("UPDATE contacts SET merged_into = $1, updated_at = $2 WHERE id = $3")
                .bind(survivor)
                .bind(self.now)
                .bind(loser)
                .execute(&mut *c)
                .await?;
            for sql in [
                "DELETE FROM contact_data WHERE contact_id = $1",
                "DELETE FROM contact_aggregates WHERE contact_id = $1",
            ] {
                sqlx::query(sql).bind(loser).execute(&mut *c).await?;
            }
            self.log_merge(survivor, loser, "merged", matched, reason)
                .await?;
            self.aggs.remove(&loser);
            self.dirty_aggs.remove(&loser);
            self.pending_data.retain(|(c, _), _| *c != loser);
            self.recompute_aggs.remove(&loser);
            self.recompute_data.remove(&loser);
            for v in self.idents.values_mut() {
                if *v == loser {
                    *v = survivor;
                }
            }
        }
        self.recompute_aggs.insert(survivor);
        self.recompute_data.insert(survivor);
        self.outcome.merges += losers.len() as u64;
        Ok(())
    }

    /// Each profile field of the survivor takes the winning value of the two contacts.
    async fn merge_profiles(&mut self, survivor: i64, loser: i64) -> Result<()> {
        let (mut keep, mut keep_origin) = self.profile_of(survivor).await?;
        let (other, other_origin) = self.profile_of(loser).await?;
        for (field, value) in other {
            let origin = other_origin.get(&field);
            let wins = match (keep.get(&field), origin) {
                (None, _) => true,
                (Some(_), Some(o)) => self.policy.wins(o, keep_origin.get(&field)),
                (Some(_), None) => false,
            };
            if wins {
                keep.insert(field.clone(), value);
                match origin {
                    Some(o) => keep_origin.insert(field, o.clone()),
                    None => keep_origin.remove(&field),
                };
            }
        }
        for (key, origin) in other_origin.iter().filter(|(k, _)| k.starts_with("data.")) {
            keep_origin
                .entry(key.clone())
                .or_insert_with(|| origin.clone());
        }
        let sets: Vec<String> = ProfileField::ALL
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{} = ${}", f.name(), i + 2))
            .collect();
        let sql = format!(
            "UPDATE contacts SET {}, provenance = ${} WHERE id = $1",
            sets.join(", "),
            ProfileField::ALL.len() + 2
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(survivor);
        for f in ProfileField::ALL {
            q = q.bind(keep.get(f.name()).cloned());
        }
        q.bind(serde_json::to_string(&keep_origin).expect("provenance serializes"))
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    /// A contact's profile fields (by name) and their origins.
    async fn profile_of(&mut self, id: i64) -> Result<(BTreeMap<String, String>, Provenance)> {
        let cols: Vec<&str> = ProfileField::ALL.iter().map(|f| f.name()).collect();
        let sql = format!(
            "SELECT {}, provenance FROM contacts WHERE id = $1",
            cols.join(", ")
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(&mut *self.conn)
            .await?;
        let mut fields = BTreeMap::new();
        for f in ProfileField::ALL {
            if let Some(v) = row.try_get::<Option<String>, _>(f.name())? {
                fields.insert(f.name().to_string(), v);
            }
        }
        let provenance = decode_provenance(row.try_get("provenance")?)?;
        Ok((fields, provenance))
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

    /// Writes the fields of a contact record that win against what the contact holds (source
    /// priority, then the latest update), recording where each value came from.
    async fn upsert_contact(&mut self, rec: &ContactRecord) -> Result<bool> {
        let mut idents = vec![rec.external.clone()];
        idents.extend(rec.identities.iter().cloned());
        let (found, missing) = self.find(&idents).await?;
        let (source, stream, record) = self.current.clone().unwrap_or_default();
        let origin = FieldOrigin {
            source,
            stream,
            record,
            at: rec.updated_at.unwrap_or(self.now),
        };
        if found.is_empty() {
            let mut provenance = Provenance::default();
            let (fields, data) = self.winning(rec, &origin, &mut provenance);
            let id = self
                .new_contact(rec.created_at, Some((&fields, rec.updated_at, provenance)))
                .await?;
            for ident in &missing {
                self.attach(id, ident);
            }
            for (k, v) in data {
                self.set_own_data(id, k, v);
            }
            return Ok(true);
        }
        let id = self.resolve_found(&found, &missing, rec.created_at).await?;
        if self.new_contact_ids.contains(&id) {
            // Created earlier in this batch and still queued: insert it before updating it.
            self.flush_contact_writes().await?;
        }
        if !self.profiles.contains_key(&id) {
            // Not prefetched: a contact a merge in this batch left, or one found later.
            self.load_profiles(&[id]).await?;
        }
        let (stored_at, mut provenance) = self
            .profiles
            .remove(&id)
            .ok_or_else(|| StoreError::corrupt("contact", format!("contact {id} has no row")))?;
        let (fields, data) = self.winning(rec, &origin, &mut provenance);
        let sets: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(i, (name, _))| format!("{name} = ${}", i + 2))
            .collect();
        let n = fields.len();
        let sql = format!(
            "UPDATE contacts SET {}{}source_updated_at = ${}, updated_at = ${}, created_at = COALESCE(${}, created_at), provenance = ${} WHERE id = $1",
            sets.join(", "),
            if sets.is_empty() { "" } else { ", " },
            n + 2,
            n + 3,
            n + 4,
            n + 5
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(id);
        for (_, v) in &fields {
            q = q.bind(*v);
        }
        let unchanged = stored_at.is_some() && stored_at == rec.updated_at;
        let latest = match (rec.updated_at, stored_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        q.bind(latest)
            .bind(self.now)
            .bind(rec.created_at)
            .bind(serde_json::to_string(&provenance).expect("provenance serializes"))
            .execute(&mut *self.conn)
            .await?;
        self.profiles.insert(id, (latest, provenance));
        for (k, v) in data {
            self.set_own_data(id, k, v);
        }
        Ok(!unchanged)
    }

    /// The profile fields and own values of a record that win against what the contact
    /// holds (source priority, then the latest update); their origin goes in `provenance`.
    #[allow(clippy::type_complexity)]
    fn winning<'r>(
        &self,
        rec: &'r ContactRecord,
        origin: &FieldOrigin,
        provenance: &mut Provenance,
    ) -> (
        Vec<(&'static str, &'r str)>,
        Vec<(&'r DataKey, &'r DataValue)>,
    ) {
        let mut fields = vec![];
        for (field, value) in &rec.profile {
            if self.policy.wins(origin, provenance.get(field.name())) {
                provenance.insert(field.name().to_string(), origin.clone());
                // A column named twice is an error in an insert: the last value wins.
                fields.retain(|(name, _)| *name != field.name());
                fields.push((field.name(), value.as_str()));
            }
        }
        let mut data = vec![];
        for (k, v) in &rec.data {
            let key = format!("data.{k}");
            if self.policy.wins(origin, provenance.get(&key)) {
                provenance.insert(key, origin.clone());
                data.push((k, v));
            }
        }
        (fields, data)
    }

    /// A value set on the contact itself: it takes precedence over session data.
    pub(crate) fn set_own_data(&mut self, contact: i64, key: &DataKey, v: &DataValue) {
        // Written many per statement by `flush_contact_writes`; the last value per key wins.
        self.own_data.insert((contact, key.clone()), v.clone());
    }

    /// A session's value shows on its contact unless the contact has its own, or a later
    /// session set it (latest start wins, then the highest session id). Collected per batch
    /// and written once per (contact, key) by `finish`.
    fn set_session_data(&mut self, contact: i64, session: i64, at: i64, key: &str, v: &DataValue) {
        match self.pending_data.entry((contact, key.to_string())) {
            Entry::Occupied(o) if (o.get().0, o.get().1) > (at, session) => {}
            Entry::Occupied(mut o) => {
                o.insert((at, session, v.clone()));
            }
            Entry::Vacant(e) => {
                e.insert((at, session, v.clone()));
            }
        }
    }

    async fn flush_session_data(&mut self) -> Result<()> {
        let rows: Vec<_> = self.pending_data.drain().collect();
        for chunk in rows.chunks(CHUNK) {
            let values = placeholders(self.sqlite, chunk.len(), 9, 1, |p| {
                format!(
                    "({}, {}, {}, CASE WHEN {} = 1 THEN CAST({} AS DOUBLE PRECISION) END, {}, 0, {}, {}, {})",
                    p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]
                )
            });
            let sql = format!(
                "INSERT INTO contact_data (contact_id, key, value, num, txt, own, session_id, session_at, updated_at) \
                 VALUES {values} ON CONFLICT (contact_id, key) DO UPDATE SET \
                 value = excluded.value, num = excluded.num, txt = excluded.txt, session_id = excluded.session_id, \
                 session_at = excluded.session_at, updated_at = excluded.updated_at \
                 WHERE contact_data.own = 0 AND (contact_data.session_at < excluded.session_at OR \
                 (contact_data.session_at = excluded.session_at AND contact_data.session_id <= excluded.session_id))"
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for ((contact, key), (at, session, v)) in chunk {
                let (num, txt) = projections(v);
                q = q
                    .bind(*contact)
                    .bind(key.clone())
                    .bind(encode(v))
                    .bind(i64::from(num.is_some()))
                    .bind(num.unwrap_or_default())
                    .bind(txt)
                    .bind(*session)
                    .bind(*at)
                    .bind(self.now);
            }
            q.execute(&mut *self.conn).await?;
        }
        Ok(())
    }

    /// Loads in a few queries what the batch's records will look up one by one: their
    /// identities, their stored sessions, and the aggregate states of their contacts.
    async fn prefetch(
        &mut self,
        source: &str,
        stream: &str,
        records: &[MappedRecord],
    ) -> Result<()> {
        let mut by_kind: BTreeMap<IdentityKind, BTreeSet<&str>> = BTreeMap::new();
        let mut external_ids: Vec<&str> = vec![];
        let mut linked: HashSet<&Identity> = HashSet::new();
        for rec in records {
            match rec {
                MappedRecord::Contact(c) => {
                    for i in std::iter::once(&c.external).chain(&c.identities) {
                        by_kind.entry(i.kind).or_default().insert(&i.value);
                    }
                }
                MappedRecord::Session(sr) => {
                    if let Some(ContactLink::Identity(i)) = &sr.contact {
                        by_kind.entry(i.kind).or_default().insert(&i.value);
                        linked.insert(i);
                    }
                    external_ids.push(&sr.external_id);
                }
            }
        }
        let mut contacts: BTreeSet<i64> = BTreeSet::new();
        // Every record of a bulk load looks its contact up: packed, not a row each.
        let json = Json::new(self.sqlite);
        let (agg, array, as_text) = (json.agg, json.array, json.as_text);
        for (kind, values) in by_kind {
            let values: Vec<&str> = values.into_iter().collect();
            for chunk in values.chunks(KEYS_CHUNK) {
                let (p1, p2, p3) = (
                    param(self.sqlite, 1),
                    param(self.sqlite, 2),
                    param(self.sqlite, 3),
                );
                let keys = json.strings(&p1);
                let sql = format!(
                    "SELECT {agg}({array}(i.value, i.contact_id)){as_text} AS packed \
                     FROM {keys} CROSS JOIN identities i \
                     WHERE i.workspace = {p2} AND i.kind = {p3} AND i.value = j.value"
                );
                let packed: Option<String> = sqlx::query(AssertSqlSafe(sql))
                    .bind(strings_param(chunk))
                    .bind(self.ws)
                    .bind(kind.as_str())
                    .fetch_one(&mut *self.conn)
                    .await?
                    .try_get("packed")?;
                let found: HashMap<String, i64> =
                    parse_json::<(String, i64)>("identities", packed)?
                        .into_iter()
                        .collect();
                for v in chunk {
                    let ident = Identity {
                        kind,
                        value: v.to_string(),
                    };
                    match found.get(*v) {
                        Some(id) => {
                            // Only sessions touch aggregates: load states for their contacts.
                            if linked.contains(&ident) {
                                contacts.insert(*id);
                            }
                            self.idents.insert(ident, *id);
                        }
                        None => {
                            self.missing.insert(ident);
                        }
                    }
                }
            }
        }
        for chunk in external_ids.chunks(KEYS_CHUNK) {
            contacts.extend(self.load_stored_sessions(source, stream, chunk).await?);
        }
        if !self.rules.is_empty() && !self.defer {
            let ids: Vec<i64> = contacts.into_iter().collect();
            self.load_agg_states(&ids).await?;
        }
        // The stored profiles of the contacts the batch's contact records name: each record
        // then compares against its contact's without a query of its own.
        let named: BTreeSet<i64> = records
            .iter()
            .filter_map(|r| match r {
                MappedRecord::Contact(c) => Some(c),
                MappedRecord::Session(_) => None,
            })
            .flat_map(|c| std::iter::once(&c.external).chain(&c.identities))
            .filter_map(|i| self.idents.get(i).copied())
            .collect();
        self.load_profiles(&named.into_iter().collect::<Vec<_>>())
            .await
    }

    /// Loads the stored profiles (the source's latest update, each field's origin) of
    /// `contacts` into `profiles`, many per query.
    async fn load_profiles(&mut self, contacts: &[i64]) -> Result<()> {
        for chunk in contacts.chunks(CHUNK) {
            let list = placeholders(self.sqlite, chunk.len(), 1, 1, |p| p[0].clone());
            let mut q = sqlx::query(AssertSqlSafe(format!(
                "SELECT id, source_updated_at, provenance FROM contacts WHERE id IN ({list})"
            )));
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&mut *self.conn).await? {
                let id: i64 = r.try_get(0)?;
                let provenance = decode_provenance(r.try_get(2)?)?;
                self.profiles.insert(id, (r.try_get(1)?, provenance));
            }
        }
        Ok(())
    }

    async fn stored_session(
        &mut self,
        source: &str,
        stream: &str,
        external_id: &str,
    ) -> Result<Option<StoredSession>> {
        let key = (
            source.to_string(),
            stream.to_string(),
            external_id.to_string(),
        );
        if !self.sessions.contains_key(&key) {
            self.load_stored_sessions(source, stream, &[external_id])
                .await?;
        }
        Ok(self.sessions.get(&key).cloned().flatten())
    }

    /// Looks `external_ids` of a stream up in `sessions` (as stored, or `None`), returning the
    /// contacts of those found. An incremental read finds most of its sessions stored: packed
    /// too. `data` stays a JSON string, the stored text itself, which a rewrite is compared
    /// against.
    async fn load_stored_sessions(
        &mut self,
        source: &str,
        stream: &str,
        external_ids: &[&str],
    ) -> Result<Vec<i64>> {
        let json = Json::new(self.sqlite);
        let (agg, array, as_text) = (json.agg, json.array, json.as_text);
        let (p1, p2, p3, p4) = (
            param(self.sqlite, 1),
            param(self.sqlite, 2),
            param(self.sqlite, 3),
            param(self.sqlite, 4),
        );
        let keys = json.strings(&p1);
        let sql = format!(
            "SELECT {agg}({array}(s.external_id, s.id, s.contact_id, s.kind, s.started_at, \
             s.ended_at, s.data, s.deleted)){as_text} AS packed \
             FROM {keys} CROSS JOIN sessions s \
             WHERE s.workspace = {p2} AND s.source = {p3} AND s.stream = {p4} \
             AND s.external_id = j.value"
        );
        let packed: Option<String> = sqlx::query(AssertSqlSafe(sql))
            .bind(strings_param(external_ids))
            .bind(self.ws)
            .bind(source)
            .bind(stream)
            .fetch_one(&mut *self.conn)
            .await?
            .try_get("packed")?;
        for ext in external_ids {
            self.sessions.insert(
                (source.to_string(), stream.to_string(), ext.to_string()),
                None,
            );
        }
        let mut contacts = vec![];
        for (external_id, id, contact_id, kind, started_at, ended_at, data_json, deleted) in
            parse_json::<PackedStored>("sessions", packed)?
        {
            contacts.extend(contact_id);
            let stored = StoredSession {
                id,
                contact_id,
                kind,
                started_at,
                ended_at,
                data: decode_data(&data_json)?,
                data_json,
                deleted: deleted != 0,
            };
            self.sessions.insert(
                (source.to_string(), stream.to_string(), external_id),
                Some(stored),
            );
        }
        Ok(contacts)
    }

    async fn upsert_session(
        &mut self,
        source: &str,
        stream: &str,
        rec: &SessionRecord,
    ) -> Result<bool> {
        let contact = match &rec.contact {
            Some(ContactLink::Identity(ident)) => Some(match self.lookup(ident).await? {
                Some(id) => id,
                // The contact's own record has not arrived yet: hold its place, it lands here.
                None => self.resolve(std::slice::from_ref(ident), None).await?,
            }),
            None => None,
        };
        let started_at = rec.started_at.unwrap_or(self.now);
        let data: BTreeMap<String, DataValue> = rec
            .data
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let data_json = serde_json::to_string(&data).expect("data serializes");
        let key = (
            source.to_string(),
            stream.to_string(),
            rec.external_id.clone(),
        );
        let mut old = self
            .stored_session(source, stream, &rec.external_id)
            .await?;
        if old.is_none() {
            if self.new_session_keys.insert(key.clone()) {
                self.new_sessions.push(NewSession {
                    key,
                    kind: rec.kind.clone(),
                    contact,
                    started_at,
                    ended_at: rec.ended_at,
                    data,
                    data_json,
                });
                return Ok(true);
            }
            // The same new record twice in a batch: insert the first, update it with the second.
            self.flush_new_sessions().await?;
            old = self
                .stored_session(source, stream, &rec.external_id)
                .await?;
        }
        if let Some(o) = &old
            && !o.deleted
            && o.contact_id == contact
            && o.kind == rec.kind
            && o.started_at == started_at
            && o.ended_at == rec.ended_at
            && o.data_json == data_json
        {
            if self.seen_run.is_some() {
                self.seen_sessions.push(o.id);
            }
            return Ok(false);
        }
        let Some(o) = &old else {
            return Err(StoreError::corrupt(
                "session insert",
                "a flushed session was not found",
            ));
        };
        let moved = o.contact_id != contact
            || o.kind != rec.kind
            || o.started_at != started_at
            // Changed earlier in this batch: moved if either change moved it.
            || self.changed_sessions.get(&o.id).is_some_and(|c| c.moved);
        self.changed_sessions.insert(
            o.id,
            ChangedSession {
                moved,
                contact,
                kind: rec.kind.clone(),
                started_at,
                ended_at: rec.ended_at,
                data_json: data_json.clone(),
            },
        );
        let id = o.id;
        let old_view = old
            .as_ref()
            .filter(|o| !o.deleted)
            .map(|o| (o.contact_id, o.kind.clone(), o.started_at, o.data.clone()));
        // The same record may come again later in this batch.
        self.sessions.insert(
            (
                source.to_string(),
                stream.to_string(),
                rec.external_id.clone(),
            ),
            Some(StoredSession {
                id,
                contact_id: contact,
                kind: rec.kind.clone(),
                started_at,
                ended_at: rec.ended_at,
                data_json,
                data: data.clone(),
                deleted: false,
            }),
        );
        self.session_changed(
            id,
            old_view,
            Some((contact, rec.kind.clone(), started_at, data)),
        )
        .await?;
        Ok(true)
    }

    /// Moves a session's contributions from what it was to what it is now: aggregates
    /// incrementally, session data on the contact.
    #[allow(clippy::type_complexity)]
    pub(crate) async fn session_changed(
        &mut self,
        id: i64,
        old: Option<(Option<i64>, String, i64, BTreeMap<String, DataValue>)>,
        new: Option<(Option<i64>, String, i64, BTreeMap<String, DataValue>)>,
    ) -> Result<()> {
        if self.defer {
            let contacts = [&old, &new].into_iter().flatten().filter_map(|s| s.0);
            self.deferred.extend(contacts);
            return Ok(());
        }
        let rules = std::mem::take(&mut self.rules);
        for rule in &rules {
            // The session's part in the rule, with the contact it counts for.
            let part = |s: &Option<(Option<i64>, String, i64, BTreeMap<String, DataValue>)>| {
                s.as_ref().and_then(|(cid, kind, at, data)| {
                    Some(((*cid)?, rule.contribution(id, kind, *at, data, self.now)?))
                })
            };
            let (before, after) = (part(&old), part(&new));
            // The same part before and after (a change to fields the rule does not read):
            // nothing to move, and a max or min need not be folded again for it.
            if before == after {
                continue;
            }
            if let Some((cid, c)) = before
                && !self.recompute_aggs.contains(&cid)
            {
                let state = self.agg_state(cid, rule).await?;
                if state.remove(rule.op, &c).is_err() {
                    self.recompute_aggs.insert(cid);
                }
            }
            if let Some((cid, c)) = after
                && !self.recompute_aggs.contains(&cid)
            {
                self.agg_state(cid, rule).await?.add_for(rule, &c);
            }
        }
        self.rules = rules;
        if let Some((Some(cid), _, at, data)) = &new {
            // A value the session already had, on the same contact at the same start, is on
            // the contact already if it is to be (it is the latest there or it is not).
            let before = old
                .as_ref()
                .filter(|(c, _, old_at, _)| *c == Some(*cid) && old_at == at)
                .map(|o| &o.3);
            for (k, v) in data {
                if before.is_some_and(|b| b.get(k) == Some(v)) {
                    continue;
                }
                self.set_session_data(*cid, id, *at, k, v);
            }
        }
        if let Some((Some(old_cid), _, old_at, old_data)) = &old {
            let same_contact = new.as_ref().is_some_and(|n| n.0 == Some(*old_cid));
            let still_there = |k: &String| {
                new.as_ref()
                    .is_some_and(|n| same_contact && n.3.contains_key(k) && n.2 >= *old_at)
            };
            if old_data.keys().any(|k| !still_there(k)) {
                self.recompute_data.insert(*old_cid);
            }
        }
        Ok(())
    }

    async fn agg_state(&mut self, contact: i64, rule: &AggregateRule) -> Result<&mut AggState> {
        self.dirty_aggs.insert(contact);
        self.load_agg_states(&[contact]).await?;
        Ok(self
            .aggs
            .get_mut(&contact)
            .expect("loaded")
            .entry(rule.name.to_string())
            .or_default())
    }

    /// Loads the stored aggregate states of the `contacts` not loaded yet, many per query.
    /// A contact with an expired state is folded again at finish: a session may have left a
    /// window since it was stored.
    async fn load_agg_states(&mut self, contacts: &[i64]) -> Result<()> {
        let ids: Vec<i64> = contacts
            .iter()
            .copied()
            .filter(|c| !self.aggs.contains_key(c))
            .collect();
        let json = Json::new(self.sqlite);
        let (agg, array, as_text) = (json.agg, json.array, json.as_text);
        for chunk in ids.chunks(CHUNK) {
            let list = placeholders(self.sqlite, chunk.len(), 1, 1, |p| p[0].clone());
            // Packed: an incremental read loads a few rules' states for each of thousands
            // of contacts, and row by row their hand-off cost more than the lookups.
            let sql = format!(
                "SELECT {agg}({array}(contact_id, name, state)){as_text} AS packed \
                 FROM contact_aggregates WHERE contact_id IN ({list})"
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
                self.aggs.insert(*id, HashMap::new());
            }
            let packed: Option<String> = q.fetch_one(&mut *self.conn).await?.try_get("packed")?;
            let rows: Vec<(i64, String, String)> = parse_json("aggregate states", packed)?;
            for (contact, name, json) in rows {
                let state: AggState = serde_json::from_str(&json)
                    .map_err(|e| StoreError::corrupt("aggregate state", e))?;
                if state.expired(self.now) {
                    self.recompute_aggs.insert(contact);
                }
                self.stored_aggs.insert((contact, name.clone()), json);
                self.aggs.entry(contact).or_default().insert(name, state);
            }
        }
        Ok(())
    }

    /// The live sessions of many contacts, each contact's in start order, a few queries.
    /// A load's end reads every session it wrote: packed, not a row each.
    async fn live_sessions_of(
        &mut self,
        contacts: &[i64],
    ) -> Result<HashMap<i64, Vec<LiveSession>>> {
        let json = Json::new(self.sqlite);
        let (agg, array, as_text, data) = (json.agg, json.array, json.as_text, json.raw("data"));
        let mut out: HashMap<i64, Vec<LiveSession>> = HashMap::with_capacity(contacts.len());
        for chunk in contacts.chunks(CHUNK) {
            let list = placeholders(self.sqlite, chunk.len(), 1, 1, |p| p[0].clone());
            let sql = format!(
                "SELECT {agg}({array}(contact_id, id, kind, started_at, {data})){as_text} AS packed \
                 FROM sessions WHERE contact_id IN ({list}) AND deleted = 0"
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            let packed: Option<String> = q.fetch_one(&mut *self.conn).await?.try_get("packed")?;
            let rows: Vec<PackedSession> = parse_json("session data", packed)?;
            for (contact, id, kind, started_at, data) in rows {
                out.entry(contact)
                    .or_default()
                    .push((id, kind, started_at, data));
            }
        }
        // A JSON aggregate need not keep any order.
        for sessions in out.values_mut() {
            sessions.sort_unstable_by_key(|(id, _, started_at, _)| (*started_at, *id));
        }
        Ok(out)
    }

    /// Writes the changes to stored sessions this batch queued, many per statement.
    async fn flush_changed_sessions(&mut self) -> Result<()> {
        let (moved, in_place): (Vec<_>, Vec<_>) =
            self.changed_sessions.drain().partition(|(_, c)| c.moved);
        // `seen_run` is set only by a full-refresh read, and is indexed: not named otherwise.
        let marks = self.seen_run.is_some();
        let seen_set = if marks {
            format!(", seen_run = {}", param(self.sqlite, 2))
        } else {
            String::new()
        };
        let first = if marks { 3 } else { 2 };
        let now = param(self.sqlite, 1);
        // A moved session writes its indexed columns too; VALUES columns are column1,
        // column2, ... on both SQLite and Postgres.
        for (rows, cols, sets) in [
            (
                moved,
                6,
                "contact_id = v.column2, kind = v.column3, started_at = v.column4, \
                 ended_at = v.column5, data = v.column6",
            ),
            (in_place, 3, "ended_at = v.column2, data = v.column3"),
        ] {
            for chunk in rows.chunks(CHUNK) {
                let values = placeholders(self.sqlite, chunk.len(), cols, first, |p| {
                    format!("({})", p.join(", "))
                });
                let mut q = sqlx::query(AssertSqlSafe(format!(
                    "UPDATE sessions SET {sets}, deleted = 0, updated_at = {now}{seen_set} \
                     FROM (VALUES {values}) AS v WHERE sessions.id = v.column1"
                )))
                .bind(self.now);
                if marks {
                    q = q.bind(self.seen_run);
                }
                for (id, c) in chunk {
                    q = q.bind(*id);
                    if c.moved {
                        q = q.bind(c.contact).bind(c.kind.clone()).bind(c.started_at);
                    }
                    q = q.bind(c.ended_at).bind(c.data_json.clone());
                }
                q.execute(&mut *self.conn).await?;
            }
        }
        let seen = std::mem::take(&mut self.seen_sessions);
        if let Some(run) = self.seen_run {
            for chunk in seen.chunks(CHUNK) {
                let list = placeholders(self.sqlite, chunk.len(), 1, 2, |p| p[0].clone());
                let mut q = sqlx::query(AssertSqlSafe(format!(
                    "UPDATE sessions SET seen_run = {} WHERE id IN ({list})",
                    param(self.sqlite, 1)
                )))
                .bind(run);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut *self.conn).await?;
            }
        }
        Ok(())
    }

    /// Inserts the pending new sessions, many per statement, then applies their effects in
    /// the order the records came.
    async fn flush_new_sessions(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.new_sessions);
        self.new_session_keys.clear();
        // Ids reserved first: a bulk load inserts hundreds of thousands of sessions, and
        // `RETURNING` them was a row back through sqlx for each.
        if pending.is_empty() {
            return Ok(());
        }
        // Every queued session is inserted below, before ids are reserved again.
        let ids = self.reserve_ids("sessions", pending.len(), None).await?;
        for (chunk, reserved) in pending.chunks(CHUNK).zip(ids.chunks(CHUNK)) {
            let values = placeholders(self.sqlite, chunk.len(), 13, 1, |p| {
                format!("({})", p.join(", "))
            });
            let sql = format!(
                "INSERT INTO sessions (id, workspace, source, stream, external_id, kind, contact_id, started_at, \
                 ended_at, data, created_at, updated_at, seen_run) VALUES {values}"
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (n, id) in chunk.iter().zip(reserved) {
                q = q
                    .bind(*id)
                    .bind(self.ws)
                    .bind(n.key.0.clone())
                    .bind(n.key.1.clone())
                    .bind(n.key.2.clone())
                    .bind(n.kind.clone())
                    .bind(n.contact)
                    .bind(n.started_at)
                    .bind(n.ended_at)
                    .bind(n.data_json.clone())
                    .bind(self.now)
                    .bind(self.now)
                    .bind(self.seen_run);
            }
            q.execute(&mut *self.conn).await?;
        }
        for (n, id) in pending.into_iter().zip(ids) {
            self.sessions.insert(
                n.key.clone(),
                Some(StoredSession {
                    id,
                    contact_id: n.contact,
                    kind: n.kind.clone(),
                    started_at: n.started_at,
                    ended_at: n.ended_at,
                    data_json: n.data_json,
                    data: n.data.clone(),
                    deleted: false,
                }),
            );
            self.session_changed(id, None, Some((n.contact, n.kind, n.started_at, n.data)))
                .await?;
        }
        Ok(())
    }

    /// Notes the contacts a deferring batch touched, in the batch's transaction.
    async fn write_deferred(&mut self) -> Result<()> {
        let ids: Vec<i64> = std::mem::take(&mut self.deferred).into_iter().collect();
        for chunk in ids.chunks(CHUNK) {
            let values = placeholders(self.sqlite, chunk.len(), 2, 1, |p| {
                format!("({}, {})", p[0], p[1])
            });
            let mut q = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO derived_pending (workspace, contact_id) VALUES {values} \
                 ON CONFLICT (workspace, contact_id) DO NOTHING"
            )));
            for id in chunk {
                q = q.bind(self.ws).bind(*id);
            }
            q.execute(&mut *self.conn).await?;
        }
        Ok(())
    }

    /// Recomputes what must be, then writes aggregate states. Called once per batch.
    pub(crate) async fn finish(&mut self) -> Result<()> {
        self.flush_changed_sessions().await?;
        self.flush_new_sessions().await?;
        self.flush_contact_writes().await?;
        self.write_deferred().await?;
        let data = std::mem::take(&mut self.recompute_data);
        let aggs = std::mem::take(&mut self.recompute_aggs);
        if !data.is_empty() {
            self.pending_data.retain(|(c, _), _| !data.contains(c));
        }
        let all: Vec<i64> = data.union(&aggs).copied().collect();
        for chunk in all.chunks(CHUNK) {
            let sessions = self.live_sessions_of(chunk).await?;
            let redo: Vec<i64> = chunk.iter().copied().filter(|c| data.contains(c)).collect();
            if !redo.is_empty() {
                let list = placeholders(self.sqlite, redo.len(), 1, 1, |p| p[0].clone());
                let mut q = sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM contact_data WHERE own = 0 AND contact_id IN ({list})"
                )));
                for id in &redo {
                    q = q.bind(*id);
                }
                q.execute(&mut *self.conn).await?;
            }
            for cid in chunk {
                let live = sessions.get(cid).map(Vec::as_slice).unwrap_or_default();
                if data.contains(cid) {
                    let mut latest: BTreeMap<&str, (i64, i64, &DataValue)> = BTreeMap::new();
                    for (id, _, at, values) in live {
                        for (k, v) in values {
                            latest.insert(k, (*id, *at, v));
                        }
                    }
                    for (k, (id, at, v)) in latest {
                        self.set_session_data(*cid, id, at, k, v);
                    }
                }
                if aggs.contains(cid) {
                    let mut states = HashMap::new();
                    for rule in &self.rules {
                        let contributions: Vec<_> = live
                            .iter()
                            .filter_map(|(id, kind, at, values)| {
                                rule.contribution(*id, kind, *at, values, self.now)
                            })
                            .collect();
                        states.insert(rule.name.to_string(), AggState::fold(rule, &contributions));
                    }
                    self.aggs.insert(*cid, states);
                    self.dirty_aggs.insert(*cid);
                }
            }
        }
        self.flush_session_data().await?;
        let mut rows = vec![];
        let dirty = std::mem::take(&mut self.dirty_aggs);
        for (cid, states) in std::mem::take(&mut self.aggs)
            .into_iter()
            .filter(|(c, _)| dirty.contains(c))
        {
            for rule in &self.rules {
                let state = states.get(rule.name.as_str()).cloned().unwrap_or_default();
                let json = encode_state(&state);
                if self.stored_aggs.get(&(cid, rule.name.to_string())) == Some(&json) {
                    continue;
                }
                rows.push((cid, rule, state, json));
            }
        }
        write_aggs(self.conn, self.sqlite, &rows).await
    }
}

fn encode_state(state: &AggState) -> String {
    serde_json::to_string(state).expect("aggregate states serialize")
}

/// Upserts aggregate states (each with its JSON), many rows per statement.
async fn write_aggs(
    conn: &mut AnyConnection,
    sqlite: bool,
    rows: &[(i64, &AggregateRule, AggState, String)],
) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let values = placeholders(sqlite, chunk.len(), 8, 1, |p| {
            format!(
                "({}, {}, {}, {}, CASE WHEN {} = 1 THEN CAST({} AS DOUBLE PRECISION) END, {}, {})",
                p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
            )
        });
        let sql = format!(
            "INSERT INTO contact_aggregates (contact_id, name, state, value, num, txt, expires_at) VALUES {values} \
             ON CONFLICT (contact_id, name) DO UPDATE SET state = excluded.state, value = excluded.value, \
             num = excluded.num, txt = excluded.txt, expires_at = excluded.expires_at"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (contact, rule, state, json) in chunk {
            let value = state.value(rule.op);
            let (num, txt) = value.as_ref().map(projections).unwrap_or((None, None));
            q = q
                .bind(*contact)
                .bind(rule.name.as_str())
                .bind(json.clone())
                .bind(value.as_ref().map(encode))
                .bind(i64::from(num.is_some()))
                .bind(num.unwrap_or_default())
                .bind(txt)
                .bind(state.expires);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Several batches of a read in one transaction, committed together: the index pages a batch
/// scatters its writes over are then written once per group rather than once per batch. Each
/// batch still stores its stream's state with it, so a group that is dropped (an error, a
/// crash) leaves the store at the last committed group, whose state the next run resumes from.
pub struct WriteGroup {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    store: SqlStore,
    /// Records the group's batches wrote.
    written: u64,
    /// The workspace, source and scheduler whose lease the group's batches were written
    /// under: checked once, just before the commit, so that on PostgreSQL the schedule row is
    /// locked for an instant rather than for the whole group (the scheduler's renewal of the
    /// lease waits for that lock).
    lease: Option<(String, String, String)>,
}

impl WriteGroup {
    /// Writes a batch and its stream's new state into the group's transaction.
    pub async fn apply(&mut self, ws: &str, batch: &BatchWrite) -> Result<BatchOutcome> {
        let outcome = write_batch(&mut self.tx, self.store.backend, ws, batch).await?;
        self.written += outcome.written;
        if let Some(owner) = &batch.lease_owner {
            self.lease = Some((ws.to_string(), batch.source.clone(), owner.clone()));
        }
        Ok(outcome)
    }

    /// Commits every batch of the group, if their scheduler still holds the source's lease.
    pub async fn commit(mut self) -> Result<()> {
        if let Some((ws, source, owner)) = &self.lease {
            check_lease(&mut self.tx, self.store.backend, ws, source, owner).await?;
        }
        self.tx.commit().await?;
        self.store.wrote(self.written).await;
        Ok(())
    }
}

/// Refuses to write for a scheduler that no longer holds `source`'s lease. On PostgreSQL the
/// schedule row stays locked until the caller's transaction ends, so the lease cannot change
/// hands between this check and the commit; the scheduler's renewal of the lease waits for it.
async fn check_lease(
    conn: &mut AnyConnection,
    backend: Backend,
    ws: &str,
    source: &str,
    owner: &str,
) -> Result<()> {
    let lock = if backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let holder: Option<String> = sqlx::query(AssertSqlSafe(format!(
        "SELECT lease_owner FROM source_schedules WHERE workspace = $1 AND source = $2{lock}"
    )))
    .bind(ws)
    .bind(source)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| r.try_get(0))
    .transpose()?
    .flatten();
    if holder.as_deref() != Some(owner) {
        return Err(StoreError::LeaseLost {
            source_name: source.to_string(),
        });
    }
    Ok(())
}

/// A batch and its stream's new state, written in the caller's transaction (its lease is the
/// caller's to check).
async fn write_batch(
    conn: &mut AnyConnection,
    backend: Backend,
    ws: &str,
    batch: &BatchWrite,
) -> Result<BatchOutcome> {
    let mut ing = Ingest::new(conn, ws, backend).await?;
    if batch.mark_seen {
        ing.seen_run = batch.run_id;
    }
    ing.defer = batch.defer_derived;
    ing.prefetch(&batch.source, &batch.stream, &batch.records)
        .await?;
    for rec in &batch.records {
        ing.apply(&batch.source, &batch.stream, rec).await?;
    }
    ing.finish().await?;
    let outcome = ing.outcome;
    let now = now_micros();
    for (record_id, error) in &batch.rejected {
        sqlx::query(
            "INSERT INTO rejected_records (workspace, source, stream, record_id, error, run_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(ws)
        .bind(&batch.source)
        .bind(&batch.stream)
        .bind(record_id.clone())
        .bind(error)
        .bind(batch.run_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT INTO stream_states (workspace, source, stream, state, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (workspace, source, stream) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
    )
    .bind(ws)
    .bind(&batch.source)
    .bind(&batch.stream)
    .bind(batch.state.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(outcome)
}

impl SqlStore {
    /// Commits a batch and its stream's new state in one transaction. Re-applying a batch
    /// changes nothing (upserts are idempotent by source, stream and external id).
    pub async fn apply_batch(&self, ws: &str, batch: &BatchWrite) -> Result<BatchOutcome> {
        let mut tx = self.write.begin().await?;
        if let Some(owner) = &batch.lease_owner {
            check_lease(&mut tx, self.backend, ws, &batch.source, owner).await?;
        }
        let outcome = write_batch(&mut tx, self.backend, ws, batch).await?;
        tx.commit().await?;
        self.wrote(outcome.written).await;
        Ok(outcome)
    }

    /// Opens a transaction for several batches of a read (see [`WriteGroup`]).
    pub async fn begin_group(&self) -> Result<WriteGroup> {
        Ok(WriteGroup {
            tx: self.write.begin().await?,
            store: self.clone(),
            written: 0,
            lease: None,
        })
    }

    /// After a complete full-refresh read by `run`: the stream's sessions that run did not
    /// see are gone from the source. They are marked deleted and leave their contact's
    /// aggregates and data. Returns how many.
    pub async fn mark_unseen_deleted(
        &self,
        ws: &str,
        source: &str,
        stream: &str,
        run: i64,
    ) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        let rows = sqlx::query(
            "SELECT id, contact_id, kind, started_at, data FROM sessions WHERE workspace = $1 AND source = $2 \
             AND stream = $3 AND deleted = 0 AND (seen_run IS NULL OR seen_run <> $4)",
        )
        .bind(ws)
        .bind(source)
        .bind(stream)
        .bind(run)
        .fetch_all(&mut *tx)
        .await?;
        let mut gone = vec![];
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            let old = (
                r.try_get::<Option<i64>, _>("contact_id")?,
                r.try_get::<String, _>("kind")?,
                r.try_get::<i64, _>("started_at")?,
                decode_data(&r.try_get::<String, _>("data")?)?,
            );
            sqlx::query("UPDATE sessions SET deleted = 1, updated_at = $1 WHERE id = $2")
                .bind(now_micros())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            gone.push((id, old));
        }
        let mut ing = Ingest::new(&mut tx, ws, self.backend).await?;
        for (id, old) in gone.iter().cloned() {
            ing.session_changed(id, Some(old), None).await?;
        }
        ing.finish().await?;
        tx.commit().await?;
        Ok(gone.len() as u64)
    }

    /// Refolds the aggregates of contacts where a windowed rule may have let a session leave
    /// its window since the last write (e.g. "orders in the last 90 days" a day later).
    /// Cost follows the contacts that expire, not the store. Returns how many were refolded.
    pub async fn refresh_windows(&self, ws: &str) -> Result<u64> {
        let now = now_micros();
        let mut total = 0;
        loop {
            let mut tx = self.write.begin().await?;
            // Without statistics SQLite's planner walks every contact of the workspace (65 ms
            // at 100,000 contacts, after every sync) rather than the few expired states.
            let hint = if self.backend == Backend::Sqlite {
                " INDEXED BY contact_aggregates_expires"
            } else {
                ""
            };
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT DISTINCT a.contact_id FROM contact_aggregates a{hint} JOIN contacts c ON c.id = a.contact_id \
                 WHERE a.expires_at <= $1 AND c.workspace = $2 LIMIT 500",
            )))
            .bind(now)
            .bind(ws)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                return Ok(total);
            }
            let mut ing = Ingest::new(&mut tx, ws, self.backend).await?;
            ing.now = now;
            for r in &rows {
                ing.recompute_aggs.insert(r.try_get(0)?);
            }
            total += rows.len() as u64;
            ing.finish().await?;
            tx.commit().await?;
        }
    }

    /// Contacts whose aggregates and session data deferring batches left to compute.
    pub async fn deferred_contacts(&self, ws: &str) -> Result<u64> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM derived_pending WHERE workspace = $1")
            .bind(ws)
            .fetch_one(&self.read)
            .await?
            .try_get(0)?;
        Ok(n as u64)
    }

    /// Computes the aggregates and session data of the contacts deferring batches touched,
    /// each from its live sessions, a few hundred contacts per transaction in id order (so
    /// the writes are sequential), and reports progress after each. A crash keeps what is
    /// left pending. Returns how many contacts were settled.
    pub async fn settle_deferred(
        &self,
        ws: &str,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64> {
        let mut done = 0;
        let mut after = i64::MIN;
        loop {
            let mut tx = self.write.begin().await?;
            // Locked on Postgres: a batch noting one of these contacts meanwhile waits, then
            // notes it again for the next settle.
            let lock = if self.backend == Backend::Postgres {
                " FOR UPDATE OF p"
            } else {
                ""
            };
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT p.contact_id, c.merged_into FROM derived_pending p \
                 JOIN contacts c ON c.id = p.contact_id \
                 WHERE p.workspace = $1 AND p.contact_id > $2 ORDER BY p.contact_id LIMIT 500{lock}"
            )))
            .bind(ws)
            .bind(after)
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = rows.last() else {
                drop(tx);
                self.settled(done).await;
                return Ok(done);
            };
            after = last.try_get(0)?;
            let mut ing = Ingest::new(&mut tx, ws, self.backend).await?;
            for r in &rows {
                // A merged-away contact's sessions and values moved to its survivor.
                if r.try_get::<Option<i64>, _>(1)?.is_none() {
                    let id: i64 = r.try_get(0)?;
                    ing.recompute_aggs.insert(id);
                    ing.recompute_data.insert(id);
                }
            }
            ing.finish().await?;
            let sqlite = self.backend == Backend::Sqlite;
            for chunk in rows.chunks(CHUNK) {
                let list = placeholders(sqlite, chunk.len(), 1, 2, |p| p[0].clone());
                let mut q = sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM derived_pending WHERE workspace = {} AND contact_id IN ({list})",
                    param(sqlite, 1)
                )))
                .bind(ws);
                for r in chunk {
                    q = q.bind(r.try_get::<i64, _>(0)?);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            done += rows.len() as u64;
            progress(done);
        }
    }

    /// Sets a value on a contact itself (it takes precedence over session data).
    pub async fn set_contact_data(
        &self,
        ws: &str,
        contact: i64,
        key: &DataKey,
        value: &DataValue,
    ) -> Result<()> {
        value.validate(key.as_str())?;
        let mut tx = self.write.begin().await?;
        let id = crate::read::resolve_contact_id(&mut tx, ws, contact)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "contact",
                id: contact.to_string(),
            })?;
        let mut ing = Ingest::new(&mut tx, ws, self.backend).await?;
        ing.set_own_data(id, key, value);
        ing.finish().await?;
        SqlStore::note_api_origin(&mut tx, id, &format!("data.{key}")).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets one session data value; the contact's view and aggregates follow.
    pub async fn set_session_data(
        &self,
        ws: &str,
        session: i64,
        key: &DataKey,
        value: &DataValue,
    ) -> Result<()> {
        value.validate(key.as_str())?;
        let mut tx = self.write.begin().await?;
        let row = sqlx::query("SELECT contact_id, kind, started_at, data FROM sessions WHERE id = $1 AND workspace = $2 AND deleted = 0")
            .bind(session)
            .bind(ws)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound { what: "session", id: session.to_string() })?;
        let contact: Option<i64> = row.try_get("contact_id")?;
        let kind: String = row.try_get("kind")?;
        let at: i64 = row.try_get("started_at")?;
        let old = decode_data(&row.try_get::<String, _>("data")?)?;
        let mut new = old.clone();
        new.insert(key.to_string(), value.clone());
        sqlx::query("UPDATE sessions SET data = $1, updated_at = $2 WHERE id = $3")
            .bind(serde_json::to_string(&new).expect("data serializes"))
            .bind(now_micros())
            .bind(session)
            .execute(&mut *tx)
            .await?;
        let mut ing = Ingest::new(&mut tx, ws, self.backend).await?;
        ing.session_changed(
            session,
            Some((contact, kind.clone(), at, old)),
            Some((contact, kind, at, new)),
        )
        .await?;
        ing.finish().await?;
        tx.commit().await?;
        Ok(())
    }

    /// Declares the workspace's aggregate rules. New or changed rules are backfilled from
    /// the stored sessions; removed rules disappear from contacts.
    pub async fn set_rules(&self, ws: &str, rules: &[AggregateRule]) -> Result<usize> {
        let mut tx = self.write.begin().await?;
        let stored = load_rules(&mut tx, ws).await?;
        let changed: Vec<&AggregateRule> = rules
            .iter()
            .filter(|r| {
                !stored
                    .iter()
                    .any(|s| s.name == r.name && s.signature() == r.signature())
            })
            .collect();
        let removed: Vec<&AggregateRule> = stored
            .iter()
            .filter(|s| !rules.iter().any(|r| r.name == s.name))
            .collect();
        if changed.is_empty() && removed.is_empty() {
            return Ok(0);
        }
        for r in removed.iter().chain(changed.iter()) {
            sqlx::query("DELETE FROM aggregate_rules WHERE workspace = $1 AND name = $2")
                .bind(ws)
                .bind(r.name.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM contact_aggregates WHERE name = $1 AND contact_id IN (SELECT id FROM contacts WHERE workspace = $2)")
                .bind(r.name.as_str())
                .bind(ws)
                .execute(&mut *tx)
                .await?;
        }
        for r in &changed {
            sqlx::query(
                // Several workers may start at once: the same registration twice is fine.
                "INSERT INTO aggregate_rules (workspace, name, definition) VALUES ($1, $2, $3) \
                 ON CONFLICT (workspace, name) DO UPDATE SET definition = excluded.definition",
            )
            .bind(ws)
            .bind(r.name.as_str())
            .bind(serde_json::to_string(r).expect("rule serializes"))
            .execute(&mut *tx)
            .await?;
        }
        // Backfill, a range of contact ids at a time so memory stays bounded on large stores.
        let now = now_micros();
        let max_contact: Option<i64> =
            sqlx::query("SELECT MAX(id) FROM contacts WHERE workspace = $1")
                .bind(ws)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        let kinds: BTreeSet<&str> = changed.iter().map(|r| r.kind.as_str()).collect();
        for kind in kinds {
            let of_kind: Vec<&AggregateRule> =
                changed.iter().copied().filter(|r| r.kind == kind).collect();
            let mut lo = 0;
            while lo <= max_contact.unwrap_or(-1) {
                let hi = lo + BACKFILL_CONTACTS;
                let rows = sqlx::query(
                    "SELECT s.id, s.contact_id, s.started_at, s.data FROM sessions s WHERE s.workspace = $1 AND s.kind = $2 \
                     AND s.deleted = 0 AND s.contact_id >= $3 AND s.contact_id < $4",
                )
                .bind(ws)
                .bind(kind)
                .bind(lo)
                .bind(hi)
                .fetch_all(&mut *tx)
                .await?;
                lo = hi;
                let mut states: BTreeMap<i64, Vec<AggState>> = BTreeMap::new();
                for r in &rows {
                    let (id, cid, at): (i64, i64, i64) =
                        (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                    let data = decode_data(&r.try_get::<String, _>(3)?)?;
                    let entry = states
                        .entry(cid)
                        .or_insert_with(|| vec![AggState::default(); of_kind.len()]);
                    for (i, rule) in of_kind.iter().enumerate() {
                        if let Some(c) = rule.contribution(id, kind, at, &data, now) {
                            entry[i].add_for(rule, &c);
                        }
                    }
                }
                let mut out = vec![];
                for (cid, st) in states {
                    for (rule, state) in of_kind.iter().zip(st) {
                        let json = encode_state(&state);
                        out.push((cid, *rule, state, json));
                    }
                }
                write_aggs(&mut tx, self.backend == Backend::Sqlite, &out).await?;
            }
        }
        tx.commit().await?;
        Ok(changed.len() + removed.len())
    }
}
