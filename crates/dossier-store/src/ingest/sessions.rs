//! Session records: the batch's session buffers, stored-session lookups and their flushes.

use std::collections::{BTreeMap, HashMap};

use dossier_core::DataValue;
use dossier_core::model::{ContactLink, SessionRecord};
use sqlx::{AssertSqlSafe, Row};

use super::*;
use crate::error::{Result, StoreError};
use crate::json_sql::{Json, parse_json, strings_param};

impl Ingest<'_> {
    pub(super) async fn stored_session(
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
    pub(super) async fn load_stored_sessions(
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
            if let Some(contact) = contact_id {
                self.guard(contact)?;
                contacts.push(contact);
            }
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

    pub(super) async fn upsert_session(
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
        let linked = rec
            .contact
            .as_ref()
            .map(|ContactLink::Identity(ident)| ident);
        self.claim(
            &claims::session_claimant(source, stream, &rec.external_id),
            linked,
        )
        .await?;
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

    /// Writes the changes to stored sessions this batch queued, many per statement.
    pub(super) async fn flush_changed_sessions(&mut self) -> Result<()> {
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
    pub(super) async fn flush_new_sessions(&mut self) -> Result<()> {
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

    /// The live sessions of many contacts, each contact's in start order, a few queries.
    /// A load's end reads every session it wrote: packed, not a row each.
    pub(super) async fn live_sessions_of(
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
}
