//! Contact records: upserting a contact's profile and own values.

use std::collections::HashMap;

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
        // The emails and phones this record asserts now; one it no longer asserts stops
        // resolving once no other record does.
        let claimant = rec.external.value.clone();
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
            self.claim(&claimant, &rec.identities).await?;
            return Ok(true);
        }
        let id = self.resolve_found(&found, &missing, rec.created_at).await?;
        self.claim(&claimant, &rec.identities).await?;
        if self.new_contact_ids.contains(&id) {
            // Created earlier in this batch and still queued: insert it before updating it.
            self.flush_contact_writes().await?;
        }
        if !self.profiles.contains_key(&id) {
            // Not prefetched: a contact a merge in this batch left, or one found later.
            self.load_profiles(&[id]).await?;
        }
        let known = self
            .profiles
            .remove(&id)
            .ok_or_else(|| StoreError::corrupt("contact", format!("contact {id} has no row")))?;
        let mut provenance = known.provenance.clone();
        let (mut fields, mut data) = self.winning(rec, &origin, &mut provenance);
        // What the record repeats of its own earlier write is not written again. It keeps its
        // origin when the record has no update time (a stream without an update column, whose
        // records always read as just updated) or an update time no later: a later one is
        // recorded, since survivorship against other sources' values depends on it.
        let repeated = |key: &str, same: bool, provenance: &mut Provenance| {
            let Some(before) = known.provenance.get(key) else {
                return false;
            };
            let mine = (&before.source, &before.stream, &before.record)
                == (&origin.source, &origin.stream, &origin.record);
            let kept = same && mine && (rec.updated_at.is_none() || before.at >= origin.at);
            if kept {
                provenance.insert(key.to_string(), before.clone());
            }
            same && mine
        };
        fields.retain(|(name, value)| {
            let same = known.fields.get(*name).map(String::as_str) == Some(*value);
            !repeated(name, same, &mut provenance)
        });
        data.retain(|(k, v)| {
            let same = known.own.get(k.as_str()) == Some(&encode(v));
            !repeated(&format!("data.{k}"), same, &mut provenance)
        });
        let latest = match (rec.updated_at, known.source_updated_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let created_at = rec
            .created_at
            .map_or(known.created_at, |at| at.min(known.created_at));
        let changed = !fields.is_empty()
            || !data.is_empty()
            || provenance != known.provenance
            || latest != known.source_updated_at
            || created_at != known.created_at;
        let mut known = known;
        if changed {
            let sets: Vec<String> = fields
                .iter()
                .enumerate()
                .map(|(i, (name, _))| format!("{name} = ${}", i + 2))
                .collect();
            let n = fields.len();
            let sql = format!(
                "UPDATE contacts SET {}{}source_updated_at = ${}, updated_at = ${}, created_at = ${}, provenance = ${} WHERE id = $1",
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
            q.bind(latest)
                .bind(self.now)
                .bind(created_at)
                .bind(serde_json::to_string(&provenance).expect("provenance serializes"))
                .execute(&mut *self.conn)
                .await?;
            for (name, value) in &fields {
                known.fields.insert(name.to_string(), value.to_string());
            }
            known.source_updated_at = latest;
            known.created_at = created_at;
            known.provenance = provenance;
        }
        self.profiles.insert(id, known);
        for (k, v) in data {
            self.set_own_data(id, k, v);
        }
        Ok(changed || !missing.is_empty() || found.len() > 1)
    }

    /// A value set on the contact itself: it takes precedence over session data.
    pub(crate) fn set_own_data(&mut self, contact: i64, key: &DataKey, v: &DataValue) {
        if let Some(known) = self.profiles.get_mut(&contact) {
            known.own.insert(key.as_str().to_string(), encode(v));
        }
        // Written many per statement by `flush_contact_writes`; the last value per key wins.
        self.own_data.insert((contact, key.clone()), v.clone());
    }

    /// Loads what the batch compares contact records with ([`KnownProfile`]) for
    /// `contacts`, many per query.
    pub(super) async fn load_profiles(&mut self, contacts: &[i64]) -> Result<()> {
        let cols: Vec<&str> = ProfileField::ALL.iter().map(|f| f.name()).collect();
        for chunk in contacts.chunks(CHUNK) {
            let list = placeholders(self.sqlite, chunk.len(), 1, 1, |p| p[0].clone());
            let mut q = sqlx::query(AssertSqlSafe(format!(
                "SELECT id, source_updated_at, provenance, created_at, {} FROM contacts WHERE id IN ({list})",
                cols.join(", ")
            )));
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&mut *self.conn).await? {
                let id: i64 = r.try_get(0)?;
                let mut fields = HashMap::new();
                for col in &cols {
                    if let Some(v) = r.try_get::<Option<String>, _>(*col)? {
                        fields.insert(col.to_string(), v);
                    }
                }
                let known = KnownProfile {
                    source_updated_at: r.try_get(1)?,
                    provenance: decode_provenance(r.try_get(2)?)?,
                    created_at: r.try_get(3)?,
                    fields,
                    own: HashMap::new(),
                };
                self.profiles.insert(id, known);
            }
            let mut q = sqlx::query(AssertSqlSafe(format!(
                "SELECT contact_id, key, value FROM contact_data WHERE own = 1 AND contact_id IN ({list})"
            )));
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&mut *self.conn).await? {
                let id: i64 = r.try_get(0)?;
                if let Some(known) = self.profiles.get_mut(&id) {
                    known.own.insert(r.try_get(1)?, r.try_get(2)?);
                }
            }
        }
        Ok(())
    }

    /// A contact's profile fields (by name), their origins, and the source's latest update,
    /// as stored now (read again, not taken from what the batch knows).
    pub(super) async fn profile_of(&mut self, id: i64) -> Result<StoredProfile> {
        self.profiles.remove(&id);
        self.load_profiles(&[id]).await?;
        let known = self
            .profiles
            .remove(&id)
            .ok_or_else(|| StoreError::corrupt("contact", format!("contact {id} has no row")))?;
        Ok((
            known.fields.into_iter().collect(),
            known.provenance,
            known.source_updated_at,
        ))
    }
}
