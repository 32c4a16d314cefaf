//! Writes from the API (GraphQL mutations).

use dossier_core::{DataKey, DataValue};
use sqlx::Row;

use super::*;
use crate::SqlStore;
use crate::backend::now_micros;
use crate::error::{Result, StoreError};

impl SqlStore {
    /// Sets a value on a contact itself (it takes precedence over session data).
    pub async fn set_contact_data(
        &self,
        ws: &str,
        contact: i64,
        key: &DataKey,
        value: &DataValue,
    ) -> Result<()> {
        value.validate(key.as_str())?;
        let mut tx = begin_write(self, ws).await?;
        let id = crate::identity::resolve_contact_id(&mut tx, ws, contact)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "contact",
                id: contact.to_string(),
            })?;
        let mut ing = Ingest::new(&mut tx, ws, self.backend).await?;
        ing.set_own_data(id, key, value);
        ing.finish().await?;
        SqlStore::note_api_origin(&mut tx, id, &format!("data.{key}")).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets one session data value; the contact's view and aggregates follow.
    pub async fn set_session_data(
        &self,
        ws: &str,
        session: i64,
        key: &DataKey,
        value: &DataValue,
    ) -> Result<()> {
        value.validate(key.as_str())?;
        let mut tx = begin_write(self, ws).await?;
        let row = sqlx::query("SELECT contact_id, kind, started_at, data FROM sessions WHERE id = $1 AND workspace = $2 AND deleted = 0")
            .bind(session)
            .bind(ws)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound { what: "session", id: session.to_string() })?;
        let contact: Option<i64> = row.try_get("contact_id")?;
        let kind: String = row.try_get("kind")?;
        let at: i64 = row.try_get("started_at")?;
        let old = decode_data(&row.try_get::<String, _>("data")?)?;
        let mut new = old.clone();
        new.insert(key.to_string(), value.clone());
        sqlx::query("UPDATE sessions SET data = $1, updated_at = $2 WHERE id = $3")
            .bind(serde_json::to_string(&new).expect("data serializes"))
            .bind(now_micros())
            .bind(session)
            .execute(&mut *tx)
            .await?;
        let mut ing = Ingest::new(&mut tx, ws, self.backend).await?;
        ing.session_changed(
            session,
            Some((contact, kind.clone(), at, old)),
            Some((contact, kind, at, new)),
        )
        .await?;
        ing.finish().await?;
        tx.commit().await?;
        Ok(())
    }
}
