//! Contact records: upserting a contact's profile and own values.

use std::collections::BTreeMap;

use dossier_core::model::ContactRecord;
use dossier_core::{DataKey, DataValue, FieldOrigin, ProfileField, Provenance};
use sqlx::{AssertSqlSafe, Row};

use super::*;
use crate::error::{Result, StoreError};

impl Ingest<'_> {
    /// Writes the fields of a contact record that win against what the contact holds (source
    /// priority, then the latest update), recording where each value came from.
    pub(super) async fn upsert_contact(&mut self, rec: &ContactRecord) -> Result<bool> {
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
        // The earliest creation time any source gives (LEAST and MIN skip, or yield, NULL).
        let least = if self.sqlite { "MIN" } else { "LEAST" };
        let sql = format!(
            "UPDATE contacts SET {}{}source_updated_at = ${}, updated_at = ${}, created_at = COALESCE({least}(created_at, ${}), created_at), provenance = ${} WHERE id = $1",
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

    /// A value set on the contact itself: it takes precedence over session data.
    pub(crate) fn set_own_data(&mut self, contact: i64, key: &DataKey, v: &DataValue) {
        // Written many per statement by `flush_contact_writes`; the last value per key wins.
        self.own_data.insert((contact, key.clone()), v.clone());
    }

    /// Loads the stored profiles (the source's latest update, each field's origin) of
    /// `contacts` into `profiles`, many per query.
    pub(super) async fn load_profiles(&mut self, contacts: &[i64]) -> Result<()> {
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

    /// A contact's profile fields (by name), their origins, and the source's latest update.
    pub(super) async fn profile_of(&mut self, id: i64) -> Result<StoredProfile> {
        let cols: Vec<&str> = ProfileField::ALL.iter().map(|f| f.name()).collect();
        let sql = format!(
            "SELECT {}, provenance, source_updated_at FROM contacts WHERE id = $1",
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
        Ok((fields, provenance, row.try_get("source_updated_at")?))
    }
}
