//! The identity side of the store that is not ingest: the workspace's identity policy, the
//! merge log and following it to a live contact, and where each value of a contact came from.

use dossier_core::IdentityPolicy;
use sqlx::{AnyConnection, Row as _};

use crate::backend::{SqlStore, now_micros};
use crate::encoding::decode_provenance;
use crate::{MergeRow, Result, StoreError, ValueOrigin};

/// The origin recorded for values set through the API.
pub const API_SOURCE: &str = "api";

/// The workspace's identity policy (the default where none was registered).
pub(crate) async fn load_policy(conn: &mut AnyConnection, ws: &str) -> Result<IdentityPolicy> {
    let row = sqlx::query(
        "SELECT value FROM workspace_settings WHERE workspace = $1 AND name = 'identity'",
    )
    .bind(ws)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok(IdentityPolicy::default()),
        Some(r) => serde_json::from_str(&r.try_get::<String, _>(0)?)
            .map_err(|e| StoreError::corrupt("identity policy", e)),
    }
}

/// Follows merges: the live contact an id (perhaps of a merged contact) stands for.
pub(crate) async fn resolve_contact_id(
    conn: &mut AnyConnection,
    ws: &str,
    id: i64,
) -> Result<Option<i64>> {
    let mut id = id;
    // Merges re-point earlier merges, so one hop is the norm; the bound guards corrupt chains.
    for _ in 0..16 {
        let row = sqlx::query("SELECT merged_into FROM contacts WHERE id = $1 AND workspace = $2")
            .bind(id)
            .bind(ws)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            None => return Ok(None),
            Some(r) => match r.try_get::<Option<i64>, _>(0)? {
                None => return Ok(Some(id)),
                Some(next) => id = next,
            },
        }
    }
    Err(StoreError::corrupt(
        "contact merge chain",
        format!("contact {id} merges in a loop"),
    ))
}

impl SqlStore {
    /// Registers the identity policy the next batches apply (it does not rewrite history).
    pub async fn set_identity_policy(&self, ws: &str, policy: &IdentityPolicy) -> Result<()> {
        policy.validate().map_err(StoreError::Refused)?;
        sqlx::query(
            "INSERT INTO workspace_settings (workspace, name, value) VALUES ($1, 'identity', $2) \
             ON CONFLICT (workspace, name) DO UPDATE SET value = excluded.value",
        )
        .bind(ws)
        .bind(serde_json::to_string(policy).expect("policy serializes"))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The merge log of a contact (as survivor or as merged, refused merges included), or of
    /// the whole workspace, newest first.
    pub async fn merges(
        &self,
        ws: &str,
        contact: Option<i64>,
        limit: usize,
    ) -> Result<Vec<MergeRow>> {
        let rows = sqlx::query(
            "SELECT survivor, merged, outcome, reason, source, stream, record_id, identity, at FROM contact_merges \
             WHERE workspace = $1 AND ($2 = 0 OR survivor = $3 OR merged = $3) ORDER BY at DESC, merged DESC LIMIT $4",
        )
        .bind(ws)
        .bind(i64::from(contact.is_some()))
        .bind(contact.unwrap_or_default())
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MergeRow {
                    survivor: r.try_get("survivor")?,
                    merged: r.try_get("merged")?,
                    outcome: r.try_get("outcome")?,
                    reason: r.try_get("reason")?,
                    source: r.try_get("source")?,
                    stream: r.try_get("stream")?,
                    record_id: r.try_get("record_id")?,
                    identity: r.try_get("identity")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// Where each profile field and data value of a contact came from: contact records and
    /// API writes from the contact's provenance, session-derived data from its session.
    pub async fn value_origins(&self, ws: &str, contact: i64) -> Result<Vec<ValueOrigin>> {
        let mut conn = self.read.acquire().await?;
        let Some(id) = resolve_contact_id(&mut conn, ws, contact).await? else {
            return Err(StoreError::NotFound {
                what: "contact",
                id: contact.to_string(),
            });
        };
        let row = sqlx::query("SELECT provenance FROM contacts WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
        let provenance = decode_provenance(row.try_get(0)?)?;
        let mut out: Vec<ValueOrigin> = vec![];
        let data = sqlx::query(
            "SELECT d.key, d.own, s.source, s.stream, s.external_id, s.started_at FROM contact_data d \
             LEFT JOIN sessions s ON s.id = d.session_id WHERE d.contact_id = $1 ORDER BY d.key",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        for (field, o) in &provenance {
            if field.starts_with("data.") {
                continue;
            }
            out.push(ValueOrigin {
                field: field.clone(),
                source: o.source.clone(),
                stream: o.stream.clone(),
                record_id: o.record.clone(),
                at: o.at,
            });
        }
        for r in &data {
            let key: String = r.try_get("key")?;
            let field = format!("data.{key}");
            if r.try_get::<i64, _>("own")? == 1 {
                if let Some(o) = provenance.get(&field) {
                    out.push(ValueOrigin {
                        field,
                        source: o.source.clone(),
                        stream: o.stream.clone(),
                        record_id: o.record.clone(),
                        at: o.at,
                    });
                }
            } else if let Some(source) = r.try_get::<Option<String>, _>("source")? {
                out.push(ValueOrigin {
                    field,
                    source,
                    stream: r.try_get("stream")?,
                    record_id: r.try_get("external_id")?,
                    at: r.try_get("started_at")?,
                });
            }
        }
        Ok(out)
    }

    /// Notes an API write of a data value in the contact's provenance.
    pub(crate) async fn note_api_origin(
        conn: &mut sqlx::AnyConnection,
        contact: i64,
        field: &str,
    ) -> Result<()> {
        let row = sqlx::query("SELECT provenance FROM contacts WHERE id = $1")
            .bind(contact)
            .fetch_one(&mut *conn)
            .await?;
        let mut provenance = decode_provenance(row.try_get(0)?)?;
        provenance.insert(
            field.to_string(),
            dossier_core::FieldOrigin {
                source: API_SOURCE.into(),
                stream: String::new(),
                record: String::new(),
                at: now_micros(),
            },
        );
        sqlx::query("UPDATE contacts SET provenance = $1 WHERE id = $2")
            .bind(serde_json::to_string(&provenance).expect("provenance serializes"))
            .bind(contact)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
