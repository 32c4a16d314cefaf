//! Registering aggregate rules, with their backfill (reading them: `aggregate_rules`).

use std::collections::{BTreeMap, BTreeSet};

use dossier_core::{AggState, AggregateRule};
use sqlx::Row;

use super::*;
use crate::backend::now_micros;
use crate::error::Result;
use crate::{Backend, SqlStore};

/// Contacts whose sessions a rule backfill reads at once.
const BACKFILL_CONTACTS: i64 = 2_000;

impl SqlStore {
    /// Declares the workspace's aggregate rules. New or changed rules are backfilled from
    /// the stored sessions; removed rules disappear from contacts.
    pub async fn set_rules(&self, ws: &str, rules: &[AggregateRule]) -> Result<usize> {
        let mut tx = begin_write(self, ws).await?;
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
