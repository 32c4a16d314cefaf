//! Merging contacts that one record ties together, within the identity policy's merge limit.

use dossier_core::Identity;
use sqlx::Row;

use super::*;
use crate::error::Result;

impl Ingest<'_> {
    /// Merges the contacts a record tied together, unless an identity involved has already
    /// merged as many contacts as the policy allows; then the record stays with the first
    /// contact it named and the refusal is logged.
    pub(super) async fn merge_or_refuse(&mut self, found: &[(i64, Identity)]) -> Result<i64> {
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

    pub(super) async fn log_merge(
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
    pub(super) async fn merge(
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
                // A value set on a contact beats one its sessions show; between two set on
                // the contacts, survivorship decides (`merge_profiles`).
                "INSERT INTO contact_data (contact_id, key, value, num, txt, own, session_id, session_at, updated_at) \
                 SELECT $1, key, value, num, txt, own, session_id, session_at, updated_at FROM contact_data \
                 WHERE contact_id = $2 AND own = 1 ON CONFLICT (contact_id, key) DO UPDATE SET \
                 value = excluded.value, num = excluded.num, txt = excluded.txt, own = 1, session_id = NULL, \
                 session_at = NULL, updated_at = excluded.updated_at WHERE contact_data.own = 0",
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
}
