//! The workspace's aggregate rules as stored, and what each reads as on a contact without a
//! row for it: read by the write path, by filters and by the API alike.

use std::collections::HashMap;

use dossier_core::{AggState, AggregateRule, DataValue, Filter};
use sqlx::{AnyConnection, Row};

use crate::backend::SqlStore;
use crate::error::{Result, StoreError};
use crate::filter_sql::names_aggregate;

pub(crate) async fn load_rules(conn: &mut AnyConnection, ws: &str) -> Result<Vec<AggregateRule>> {
    let rows =
        sqlx::query("SELECT definition FROM aggregate_rules WHERE workspace = $1 ORDER BY name")
            .bind(ws)
            .fetch_all(&mut *conn)
            .await?;
    rows.iter()
        .map(|r| {
            let d: String = r.try_get("definition")?;
            serde_json::from_str(&d).map_err(|e| StoreError::corrupt("aggregate rule", e))
        })
        .collect()
}

/// What each rule reads as on a contact without a row for it (`count`, `sum` and
/// `distinct_count` of nothing are 0; the others are absent), for `filter` to agree with
/// reads. Read only when the filter compares an aggregate: other filters need none of it.
pub(crate) async fn empty_aggregates(
    conn: &mut AnyConnection,
    ws: &str,
    filter: &Filter,
) -> Result<HashMap<String, DataValue>> {
    if !names_aggregate(filter) {
        return Ok(HashMap::new());
    }
    Ok(load_rules(conn, ws)
        .await?
        .iter()
        .filter_map(|r| Some((r.name.to_string(), AggState::default().value(r.op)?)))
        .collect())
}

impl SqlStore {
    /// The workspace's aggregate rules.
    pub async fn rules(&self, ws: &str) -> Result<Vec<AggregateRule>> {
        load_rules(&mut *self.read.acquire().await?, ws).await
    }

    /// What the workspace's aggregates read as on a contact without their row, for `filter`
    /// (nothing to read when there is no filter or it compares no aggregate).
    pub(crate) async fn empty_aggregates(
        &self,
        ws: &str,
        filter: Option<&Filter>,
    ) -> Result<HashMap<String, DataValue>> {
        match filter {
            Some(f) if names_aggregate(f) => {
                empty_aggregates(&mut *self.read.acquire().await?, ws, f).await
            }
            _ => Ok(HashMap::new()),
        }
    }
}
