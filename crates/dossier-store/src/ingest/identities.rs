//! Identity resolution: finding the contacts a record's identities name, creating contacts,
//! and attaching identities, all queued and written many rows per statement.

use std::collections::HashMap;

use dossier_core::{Identity, ProfileField, Provenance};
use sqlx::{AssertSqlSafe, Row};

use super::*;
use crate::error::{Result, StoreError};

impl Ingest<'_> {
    pub(super) async fn lookup(&mut self, ident: &Identity) -> Result<Option<i64>> {
        if let Some(id) = self.idents.get(ident) {
            return Ok(Some(*id));
        }
        if self.missing.contains(ident) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT contact_id, retired FROM identities WHERE workspace = $1 AND kind = $2 AND value = $3",
        )
        .bind(self.ws)
        .bind(ident.kind.as_str())
        .bind(&ident.value)
        .fetch_optional(&mut *self.conn)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: i64 = row.try_get(0)?;
        self.guard(id)?;
        if row.try_get::<i64, _>(1)? != 0 {
            self.retired.insert(ident.clone());
        }
        self.idents.insert(ident.clone(), id);
        Ok(Some(id))
    }

    /// Creates a contact, with its record's profile when a contact record creates it. The row
    /// is queued and inserted with others by [`Self::flush_contact_writes`]; its id is
    /// reserved now, so what refers to it can be queued too.
    pub(super) async fn new_contact(
        &mut self,
        created_at: Option<i64>,
        profile: Option<NewProfile<'_>>,
    ) -> Result<i64> {
        let (fields, source_updated_at, provenance) = match profile {
            Some((fields, at, provenance)) => (fields, at, provenance),
            None => (&[][..], None, Provenance::default()),
        };
        let id = self.reserve_contact_id().await?;
        let created_at = created_at.unwrap_or(self.now);
        self.new_contacts.push(NewContact {
            id,
            created_at,
            source_updated_at,
            provenance: (!provenance.is_empty())
                .then(|| serde_json::to_string(&provenance).expect("provenance serializes")),
            fields: fields.iter().map(|(n, v)| (*n, (*v).to_string())).collect(),
        });
        self.new_contact_ids.insert(id);
        self.created.insert(id);
        // A new contact has no aggregate state yet: nothing to load.
        self.aggs.insert(id, HashMap::new());
        let known = KnownProfile {
            source_updated_at,
            created_at,
            provenance,
            fields: fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            own: HashMap::new(),
        };
        self.profiles.insert(id, known);
        Ok(id)
    }

    /// An id no contact has and no other writer will take, from ids reserved as many at a
    /// time as the batch has identities no contact holds (each new contact takes at least
    /// one), up to [`CHUNK`].
    pub(super) async fn reserve_contact_id(&mut self) -> Result<i64> {
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
    pub(super) async fn reserve_ids(
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
    pub(super) async fn flush_new_contacts(&mut self) -> Result<()> {
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

    pub(super) fn attach(&mut self, contact: i64, ident: &Identity) {
        self.missing.remove(ident);
        self.idents.insert(ident.clone(), contact);
        self.new_idents.push((contact, ident.clone()));
    }

    /// Writes the contacts, identities and own values this batch queued (before a merge reads
    /// or moves them, before a queued contact is updated, and at `finish`).
    pub(super) async fn flush_contact_writes(&mut self) -> Result<()> {
        self.flush_new_contacts().await?;
        let idents = std::mem::take(&mut self.new_idents);
        for chunk in idents.chunks(CHUNK) {
            let values = placeholders(self.sqlite, chunk.len(), 5, 1, |p| {
                format!("({}, 1)", p.join(", "))
            });
            let mut q = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO identities (workspace, kind, value, contact_id, created_at, claimed) VALUES {values} \
                 ON CONFLICT (workspace, kind, value) DO NOTHING RETURNING 1"
            )));
            for (contact, ident) in chunk {
                q = q
                    .bind(self.ws)
                    .bind(ident.kind.as_str())
                    .bind(ident.value.clone())
                    .bind(*contact)
                    .bind(self.now);
            }
            let inserted = q.fetch_all(&mut *self.conn).await?.len();
            // Every identity queued was found missing: one that exists now was attached by a
            // writer that committed meanwhile, and the contact this batch made for it would
            // duplicate theirs.
            if self.locked.is_some() && inserted < chunk.len() {
                return Err(StoreError::Conflict(format!(
                    "{} of {} new identities were attached meanwhile",
                    chunk.len() - inserted,
                    chunk.len()
                )));
            }
        }
        self.flush_claims().await?;
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
    pub(super) async fn resolve(
        &mut self,
        idents: &[Identity],
        created_at: Option<i64>,
    ) -> Result<i64> {
        let (found, missing) = self.find(idents).await?;
        self.resolve_found(&found, &missing, created_at).await
    }

    /// The contact that what [`Self::find`] found resolves to: a new one when none was
    /// found, the merge of several; the missing identities are attached to it.
    pub(super) async fn resolve_found(
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
    pub(super) async fn find(
        &mut self,
        idents: &[Identity],
    ) -> Result<(Vec<(i64, Identity)>, Vec<Identity>)> {
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
}
