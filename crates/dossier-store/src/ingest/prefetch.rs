//! What a batch looks up, loaded in a few packed queries before its records apply.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use dossier_core::model::ContactLink;
use dossier_core::{Identity, IdentityKind, MappedRecord};
use sqlx::{AssertSqlSafe, Row};

use super::*;
use crate::error::Result;
use crate::json_sql::{Json, parse_json, strings_param};

/// What a batch's records look up: their identities by kind, the external ids of their
/// sessions, and the identities sessions link to. The same keys name the contacts a batch
/// locks before it reads them (see [`super::locks`]).
pub(super) struct BatchKeys<'r> {
    pub by_kind: BTreeMap<IdentityKind, BTreeSet<&'r str>>,
    pub external_ids: Vec<&'r str>,
    pub linked: HashSet<&'r Identity>,
}

impl<'r> BatchKeys<'r> {
    pub fn of(records: &'r [MappedRecord]) -> Self {
        let mut keys = Self {
            by_kind: BTreeMap::new(),
            external_ids: vec![],
            linked: HashSet::new(),
        };
        for rec in records {
            match rec {
                MappedRecord::Contact(c) => {
                    for i in std::iter::once(&c.external).chain(&c.identities) {
                        keys.by_kind.entry(i.kind).or_default().insert(&i.value);
                    }
                }
                MappedRecord::Session(sr) => {
                    if let Some(ContactLink::Identity(i)) = &sr.contact {
                        keys.by_kind.entry(i.kind).or_default().insert(&i.value);
                        keys.linked.insert(i);
                    }
                    keys.external_ids.push(&sr.external_id);
                }
            }
        }
        keys
    }
}

impl Ingest<'_> {
    /// Loads in a few queries what the batch's records will look up one by one: their
    /// identities, their stored sessions, and the aggregate states of their contacts.
    pub(super) async fn prefetch(
        &mut self,
        source: &str,
        stream: &str,
        records: &[MappedRecord],
    ) -> Result<()> {
        let BatchKeys {
            by_kind,
            external_ids,
            linked,
        } = BatchKeys::of(records);
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
                    "SELECT {agg}({array}(i.value, i.contact_id, i.retired)){as_text} AS packed \
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
                let found: HashMap<String, (i64, i64)> =
                    parse_json::<(String, i64, i64)>("identities", packed)?
                        .into_iter()
                        .map(|(value, id, retired)| (value, (id, retired)))
                        .collect();
                for v in chunk {
                    let ident = Identity {
                        kind,
                        value: v.to_string(),
                    };
                    match found.get(*v) {
                        Some((id, retired)) => {
                            if *retired != 0 {
                                self.retired.insert(ident.clone());
                            }
                            self.guard(*id)?;
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
        self.load_claims(&claims::claimants(source, stream, records))
            .await?;
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
}
