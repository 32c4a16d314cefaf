//! What sessions derive on contacts: aggregate states and session data, kept incrementally
//! and recomputed where an increment cannot apply.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use dossier_core::{AggState, AggregateRule, DataValue};
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::*;
use crate::error::{Result, StoreError};
use crate::json_sql::{Json, parse_json};

impl Ingest<'_> {
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

    pub(super) async fn agg_state(
        &mut self,
        contact: i64,
        rule: &AggregateRule,
    ) -> Result<&mut AggState> {
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
    pub(super) async fn load_agg_states(&mut self, contacts: &[i64]) -> Result<()> {
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

    /// A session's value shows on its contact unless the contact has its own, or a later
    /// session set it (latest start wins, then the highest session id). Collected per batch
    /// and written once per (contact, key) by `finish`.
    pub(super) fn set_session_data(
        &mut self,
        contact: i64,
        session: i64,
        at: i64,
        key: &str,
        v: &DataValue,
    ) {
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

    pub(super) async fn flush_session_data(&mut self) -> Result<()> {
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

    /// Notes the contacts a deferring batch touched, in the batch's transaction.
    pub(super) async fn write_deferred(&mut self) -> Result<()> {
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

/// Upserts aggregate states (each with its JSON), many rows per statement.
pub(super) async fn write_aggs(
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
