//! Saved segments: a named filter in the text form, its materialised members and a change
//! feed of who entered or left, so a campaign can act on each new member exactly once.
//!
//! Counts and pages evaluate the filter live; the members table only exists to diff against
//! on refresh. Refreshing is set-based SQL (two `INSERT … SELECT` and their application), so
//! its cost is one pass of the filter, not one query per contact.

use dossier_core::{Filter, filter_text};
use sqlx::{AnyConnection, AssertSqlSafe, FromRow as _, Row as _};

use crate::backend::{Backend, SqlStore, now_micros};
use crate::filter_sql::{Bind, SqlBuilder, bind_all};
use crate::ingest::begin_write;
use crate::names::check_name;
use crate::{Page, Result, StoreError};

/// A saved segment.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SegmentRow {
    pub name: String,
    /// The filter in its canonical text form.
    pub definition: String,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SegmentRow {
    pub fn filter(&self) -> Result<Filter> {
        filter_text::parse_filter(&self.definition)
            .map_err(|e| StoreError::corrupt("segment definition", e))
    }
}

/// One contact entering or leaving a segment; `id` is the feed cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentChange {
    pub id: i64,
    pub contact_id: i64,
    /// `entered` or `left`.
    pub change: String,
    pub at: i64,
}

const SEGMENT_COLS: &str = "name, definition, description, created_at, updated_at";

impl SqlStore {
    /// Creates or replaces a segment from its text form (a syntax error names its position),
    /// then brings its members and feed up to date.
    pub async fn save_segment(
        &self,
        ws: &str,
        name: &str,
        definition: &str,
        description: Option<&str>,
    ) -> Result<SegmentRow> {
        check_name("segment", name)?;
        let filter = filter_text::parse_filter(definition)?;
        let canonical = filter_text::format_filter(&filter);
        let now = now_micros();
        sqlx::query(
            "INSERT INTO segments (workspace, name, definition, description, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (workspace, name) DO UPDATE SET \
             definition = excluded.definition, description = excluded.description, updated_at = excluded.updated_at",
        )
        .bind(ws)
        .bind(name)
        .bind(&canonical)
        .bind(description)
        .bind(now)
        .execute(&self.write)
        .await?;
        self.refresh_segment(ws, name).await?;
        self.segment(ws, name)
            .await?
            .ok_or_else(|| StoreError::corrupt("segment", "vanished after saving"))
    }

    /// Deletes a segment with its members and feed; false if there was none.
    pub async fn delete_segment(&self, ws: &str, name: &str) -> Result<bool> {
        let mut tx = begin_write(self, ws).await?;
        let n = sqlx::query("DELETE FROM segments WHERE workspace = $1 AND name = $2")
            .bind(ws)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for sql in [
            "DELETE FROM segment_members WHERE workspace = $1 AND segment = $2",
            "DELETE FROM segment_changes WHERE workspace = $1 AND segment = $2",
        ] {
            sqlx::query(sql)
                .bind(ws)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    pub async fn segments(&self, ws: &str) -> Result<Vec<SegmentRow>> {
        let sql = format!("SELECT {SEGMENT_COLS} FROM segments WHERE workspace = $1 ORDER BY name");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(ws)
            .fetch_all(&self.read)
            .await?)
    }

    pub async fn segment(&self, ws: &str, name: &str) -> Result<Option<SegmentRow>> {
        let sql = format!("SELECT {SEGMENT_COLS} FROM segments WHERE workspace = $1 AND name = $2");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(ws)
            .bind(name)
            .fetch_optional(&self.read)
            .await?)
    }

    /// Refreshes every saved segment of the workspace; returns how many changes were fed.
    pub async fn refresh_segments(&self, ws: &str) -> Result<u64> {
        let mut total = 0;
        for s in self.segments(ws).await? {
            total += self.refresh_segment(ws, &s.name).await?;
        }
        Ok(total)
    }

    /// Diffs a segment's live members against the materialised ones, appends the changes to
    /// its feed and applies them, in one transaction. Returns how many changes.
    pub async fn refresh_segment(&self, ws: &str, name: &str) -> Result<u64> {
        let mut tx = begin_write(self, ws).await?;
        // Serialises refreshes of one segment across workers, so the feed's ids only ever
        // grow in commit order for that segment (a reader never skips a late commit).
        let lock = if self.backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql =
            format!("SELECT {SEGMENT_COLS} FROM segments WHERE workspace = $1 AND name = $2{lock}");
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(ws)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Err(StoreError::NotFound {
                what: "segment",
                id: name.to_string(),
            });
        };
        let filter = SegmentRow::from_row(&row)?.filter()?;
        let changes = diff_members(&mut tx, ws, name, &filter, now_micros()).await?;
        tx.commit().await?;
        Ok(changes)
    }

    /// The segment's feed after the change `after` (a cursor from an earlier page).
    pub async fn segment_changes(
        &self,
        ws: &str,
        name: &str,
        after: Option<i64>,
        first: usize,
    ) -> Result<Page<SegmentChange>> {
        let query = sqlx::query(
            "SELECT id, contact_id, change, at FROM segment_changes WHERE workspace = $1 AND segment = $2 \
             AND id > $3 ORDER BY id LIMIT $4",
        )
        .bind(ws)
        .bind(name)
        .bind(after.unwrap_or(0));
        self.read_page(query, first, |r| {
            Ok(SegmentChange {
                id: r.try_get("id")?,
                contact_id: r.try_get("contact_id")?,
                change: r.try_get("change")?,
                at: r.try_get("at")?,
            })
        })
        .await
    }

    /// The newest change id of a segment's feed: a cursor that starts reading from now on.
    pub async fn segment_feed_head(&self, ws: &str, name: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(id), 0) FROM segment_changes WHERE workspace = $1 AND segment = $2",
        )
        .bind(ws)
        .bind(name)
        .fetch_one(&self.read)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// The saved segments a contact is in now (evaluated live).
    pub async fn segments_of_contact(&self, ws: &str, contact: i64) -> Result<Vec<String>> {
        let mut out = vec![];
        for s in self.segments(ws).await? {
            let filter = s.filter()?;
            let empty = self.empty_aggregates(ws, Some(&filter)).await?;
            let mut b = SqlBuilder::new(0).with_empty_aggregates(empty);
            let id_p = b.param(Bind::Int(contact));
            let ws_p = b.param(Bind::Text(ws.into()));
            let cond = b.filter(&filter);
            let sql = format!(
                "SELECT 1 FROM contacts c WHERE c.id = {id_p} AND c.workspace = {ws_p} AND c.merged_into IS NULL AND {cond}"
            );
            if bind_all(sqlx::query(AssertSqlSafe(sql)), &b.binds)
                .fetch_optional(&self.read)
                .await?
                .is_some()
            {
                out.push(s.name);
            }
        }
        Ok(out)
    }
}

async fn diff_members(
    conn: &mut AnyConnection,
    ws: &str,
    name: &str,
    filter: &Filter,
    now: i64,
) -> Result<u64> {
    let before: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM segment_changes")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    let empty = crate::aggregate_rules::empty_aggregates(&mut *conn, ws, filter).await?;
    let mut b = SqlBuilder::new(0).with_empty_aggregates(empty);
    let ws_p = b.param(Bind::Text(ws.into()));
    let seg_p = b.param(Bind::Text(name.into()));
    let now_p = b.param(Bind::Int(now));
    let cond = b.filter(filter);
    let head = format!(
        "INSERT INTO segment_changes (workspace, segment, contact_id, change, at) SELECT CAST({ws_p} AS TEXT), \
         CAST({seg_p} AS TEXT)"
    );
    let member = format!(
        "SELECT 1 FROM segment_members m WHERE m.workspace = {ws_p} AND m.segment = {seg_p} AND m.contact_id = c.id"
    );
    let entered = format!(
        "{head}, c.id, 'entered', CAST({now_p} AS BIGINT) FROM contacts c WHERE c.workspace = {ws_p} \
         AND c.merged_into IS NULL AND {cond} AND NOT EXISTS ({member}) ORDER BY c.id"
    );
    let left = format!(
        "{head}, m.contact_id, 'left', CAST({now_p} AS BIGINT) FROM segment_members m WHERE m.workspace = {ws_p} \
         AND m.segment = {seg_p} AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = m.contact_id \
         AND c.merged_into IS NULL AND {cond}) ORDER BY m.contact_id"
    );
    let mut changes = 0;
    for sql in [entered, left] {
        changes += bind_all(sqlx::query(AssertSqlSafe(sql)), &b.binds)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    if changes == 0 {
        return Ok(0);
    }
    sqlx::query(
        "INSERT INTO segment_members (workspace, segment, contact_id, since) SELECT workspace, segment, contact_id, at \
         FROM segment_changes WHERE workspace = $1 AND segment = $2 AND id > $3 AND change = 'entered'",
    )
    .bind(ws)
    .bind(name)
    .bind(before)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM segment_members WHERE workspace = $1 AND segment = $2 AND contact_id IN \
         (SELECT contact_id FROM segment_changes WHERE workspace = $1 AND segment = $2 AND id > $3 AND change = 'left')",
    )
    .bind(ws)
    .bind(name)
    .bind(before)
    .execute(&mut *conn)
    .await?;
    Ok(changes)
}
