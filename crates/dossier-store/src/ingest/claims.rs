//! Identity claims: which records assert each email and phone. A record is the claimant of
//! what it asserts now (a contact record by its external id, a session by its own key). An
//! identity no record asserts any more is **retired**: lookups by it (`contact(email:)`) no
//! longer find its contact, so a customer whose email changed at the source is not found by
//! the old one. It still ties the contacts it tied, and a record giving it again brings it
//! back: identities only ever tie, so which contacts exist never depends on the order records
//! arrive in. External ids are their records' own and are never retired.

use std::collections::BTreeSet;

use dossier_core::{Identity, IdentityKind};
use sqlx::{AssertSqlSafe, Row};

use super::*;
use crate::error::Result;
use crate::json_sql::{Json, parse_json, strings_param};

/// The identities a claim can be made on.
fn claimable(ident: &Identity) -> bool {
    matches!(ident.kind, IdentityKind::Email | IdentityKind::Phone)
}

/// The claimant key of a session record (a contact record's is its external id's value).
pub(super) fn session_claimant(source: &str, stream: &str, external_id: &str) -> String {
    Identity::external(source, stream, external_id).value
}

/// The claimants of a batch's records, for [`Ingest::load_claims`].
pub(super) fn claimants(source: &str, stream: &str, records: &[MappedRecord]) -> Vec<String> {
    let keys: BTreeSet<String> = records
        .iter()
        .map(|rec| match rec {
            MappedRecord::Contact(c) => c.external.value.clone(),
            MappedRecord::Session(s) => session_claimant(source, stream, &s.external_id),
        })
        .collect();
    keys.into_iter().collect()
}

impl Ingest<'_> {
    /// Loads the stored claims of `claimants`, many per query. A claimant loaded without
    /// claims is known to have none.
    pub(super) async fn load_claims(&mut self, claimants: &[String]) -> Result<()> {
        let json = Json::new(self.sqlite);
        let (agg, array, as_text) = (json.agg, json.array, json.as_text);
        for chunk in claimants.chunks(KEYS_CHUNK) {
            let (p1, p2) = (param(self.sqlite, 1), param(self.sqlite, 2));
            let keys = json.strings(&p1);
            let sql = format!(
                "SELECT {agg}({array}(c.claimant, c.kind, c.value)){as_text} AS packed \
                 FROM {keys} CROSS JOIN identity_claims c \
                 WHERE c.workspace = {p2} AND c.claimant = j.value"
            );
            let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let packed: Option<String> = sqlx::query(AssertSqlSafe(sql))
                .bind(strings_param(&names))
                .bind(self.ws)
                .fetch_one(&mut *self.conn)
                .await?
                .try_get("packed")?;
            for claimant in chunk {
                self.stored_claims.entry(claimant.clone()).or_default();
            }
            for (claimant, kind, value) in
                parse_json::<(String, String, String)>("identity claims", packed)?
            {
                let kind = IdentityKind::parse(&kind).ok_or_else(|| {
                    StoreError::corrupt("identity claims", format!("unknown kind {kind:?}"))
                })?;
                self.stored_claims
                    .entry(claimant)
                    .or_default()
                    .insert(Identity { kind, value });
            }
        }
        Ok(())
    }

    /// Notes that `claimant` now asserts exactly the claimable identities among `idents`;
    /// written by [`Self::flush_claims`].
    pub(super) async fn claim<'i>(
        &mut self,
        claimant: &str,
        idents: impl IntoIterator<Item = &'i Identity>,
    ) -> Result<()> {
        let now: BTreeSet<Identity> = idents
            .into_iter()
            .filter(|i| claimable(i) && !self.policy.is_blocked(i))
            .cloned()
            .collect();
        if !self.stored_claims.contains_key(claimant) {
            self.load_claims(&[claimant.to_string()]).await?;
        }
        let current = self
            .claims
            .get(claimant)
            .or_else(|| self.stored_claims.get(claimant))
            .cloned()
            .unwrap_or_default();
        if current != now {
            // What it stops asserting may be left unclaimed, even if only this batch claimed
            // it (a record changed twice in one batch, as in two).
            self.unclaimed.extend(current.difference(&now).cloned());
            self.claims.insert(claimant.to_string(), now);
            self.dirty_claims.insert(claimant.to_string());
        }
        Ok(())
    }

    /// Writes what changed in the claims since they were loaded or last written: claims
    /// added and dropped, identities left without a claim retired, and retired ones claimed
    /// again brought back. The net change per claimant is written, so a batch leaves what
    /// its records' last versions assert, as the same records in separate batches would.
    pub(super) async fn flush_claims(&mut self) -> Result<()> {
        let mut added: Vec<(String, Identity)> = vec![];
        let mut dropped: Vec<(String, Identity)> = vec![];
        for claimant in std::mem::take(&mut self.dirty_claims) {
            let now = self.claims.remove(&claimant).unwrap_or_default();
            let before = self.stored_claims.entry(claimant.clone()).or_default();
            added.extend(
                now.difference(before)
                    .map(|i| (claimant.clone(), i.clone())),
            );
            dropped.extend(
                before
                    .difference(&now)
                    .map(|i| (claimant.clone(), i.clone())),
            );
            *before = now;
        }
        for chunk in added.chunks(CHUNK) {
            let values = placeholders(self.sqlite, chunk.len(), 4, 1, |p| {
                format!("({})", p.join(", "))
            });
            let mut q = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO identity_claims (workspace, claimant, kind, value) VALUES {values} \
                 ON CONFLICT DO NOTHING"
            )));
            for (claimant, ident) in chunk {
                q = q
                    .bind(self.ws)
                    .bind(claimant.clone())
                    .bind(ident.kind.as_str())
                    .bind(ident.value.clone());
            }
            q.execute(&mut *self.conn).await?;
        }
        // Rare (an email changed, a session moved): a statement each.
        for (claimant, ident) in &dropped {
            sqlx::query(
                "DELETE FROM identity_claims WHERE workspace = $1 AND claimant = $2 AND kind = $3 AND value = $4",
            )
            .bind(self.ws)
            .bind(claimant)
            .bind(ident.kind.as_str())
            .bind(&ident.value)
            .execute(&mut *self.conn)
            .await?;
        }
        for ident in std::mem::take(&mut self.unclaimed) {
            let holders: Vec<i64> = sqlx::query(
                "UPDATE identities SET retired = 1 WHERE workspace = $1 AND kind = $2 AND value = $3 \
                 AND claimed = 1 AND retired = 0 AND NOT EXISTS (SELECT 1 FROM identity_claims c \
                 WHERE c.workspace = $1 AND c.kind = $2 AND c.value = $3) RETURNING contact_id",
            )
            .bind(self.ws)
            .bind(ident.kind.as_str())
            .bind(&ident.value)
            .fetch_all(&mut *self.conn)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<std::result::Result<_, _>>()?;
            // Beside other batches, a claim of the identity that another writer has not
            // committed yet is invisible here: retiring is safe only on a contact the batch
            // locked (or created), which keeps such writers out until it commits.
            for contact in &holders {
                self.guard(*contact)?;
            }
            if !holders.is_empty() {
                tracing::debug!(identity = %ident, "no record asserts it any more: retired");
                self.retired.insert(ident);
            }
        }
        let back: BTreeSet<&Identity> = added
            .iter()
            .map(|(_, i)| i)
            .filter(|i| self.retired.contains(*i))
            .collect();
        for ident in back {
            sqlx::query(
                "UPDATE identities SET retired = 0 WHERE workspace = $1 AND kind = $2 AND value = $3",
            )
            .bind(self.ws)
            .bind(ident.kind.as_str())
            .bind(&ident.value)
            .execute(&mut *self.conn)
            .await?;
            self.retired.remove(ident);
        }
        Ok(())
    }
}
