//! Survivorship: which value of a field wins, for a record against its contact and between
//! two contacts that merge.

use dossier_core::model::ContactRecord;
use dossier_core::{DataKey, DataValue, FieldOrigin, ProfileField, Provenance};
use sqlx::AssertSqlSafe;

use super::*;
use crate::error::Result;

impl Ingest<'_> {
    /// The profile fields and own values of a record that win against what the contact
    /// holds (source priority, then the latest update); their origin goes in `provenance`.
    #[allow(clippy::type_complexity)]
    pub(super) fn winning<'r>(
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

    /// Each profile field and own value of the survivor takes the winning value of the two
    /// contacts, by the same rule a record meets ([`IdentityPolicy::wins`]: source priority,
    /// then the latest update, then the record's key), never by which contact survived.
    pub(super) async fn merge_profiles(&mut self, survivor: i64, loser: i64) -> Result<()> {
        let (mut keep, mut keep_origin, keep_at) = self.profile_of(survivor).await?;
        let (other, other_origin, other_at) = self.profile_of(loser).await?;
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
        // Own values: where both contacts set one, the loser's replaces the survivor's when
        // its origin wins (the loser's own rows were already copied where the survivor had
        // none, or only a session's).
        for (key, origin) in other_origin.iter().filter(|(k, _)| k.starts_with("data.")) {
            let Some(kept) = keep_origin.get(key) else {
                // Only the loser set it: its row was copied as it is.
                keep_origin.insert(key.clone(), origin.clone());
                continue;
            };
            if !self.policy.wins(origin, Some(kept)) {
                continue;
            }
            keep_origin.insert(key.clone(), origin.clone());
            sqlx::query(
                "UPDATE contact_data SET value = l.value, num = l.num, txt = l.txt, own = 1, \
                 session_id = NULL, session_at = NULL, updated_at = l.updated_at \
                 FROM contact_data l WHERE contact_data.contact_id = $1 AND contact_data.key = $3 \
                 AND l.contact_id = $2 AND l.key = $3 AND l.own = 1",
            )
            .bind(survivor)
            .bind(loser)
            .bind(&key["data.".len()..])
            .execute(&mut *self.conn)
            .await?;
        }
        let latest = keep_at.max(other_at);
        let sets: Vec<String> = ProfileField::ALL
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{} = ${}", f.name(), i + 2))
            .collect();
        let n = ProfileField::ALL.len();
        let sql = format!(
            "UPDATE contacts SET {}, provenance = ${}, source_updated_at = ${} WHERE id = $1",
            sets.join(", "),
            n + 2,
            n + 3
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(survivor);
        for f in ProfileField::ALL {
            q = q.bind(keep.get(f.name()).cloned());
        }
        q.bind(serde_json::to_string(&keep_origin).expect("provenance serializes"))
            .bind(latest)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }
}
