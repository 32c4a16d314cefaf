//! Sync-run history.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::backend::now_micros;
use crate::error::{Result, StoreError};
use crate::{Page, RunRow, SqlStore, StreamStats};

impl SqlStore {
    pub async fn start_run(&self, ws: &str, source: &str, trigger: &str) -> Result<i64> {
        self.start_run_for(ws, source, trigger, None, None).await
    }

    /// Starts a run serving the schedule slot `due`, by the scheduler `owner`.
    pub async fn start_run_for(
        &self,
        ws: &str,
        source: &str,
        trigger: &str,
        due: Option<i64>,
        owner: Option<&str>,
    ) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO sync_runs (workspace, source, trigger, status, started_at, due_at, owner) \
             VALUES ($1, $2, $3, 'running', $4, $5, $6) RETURNING id",
        )
        .bind(ws)
        .bind(source)
        .bind(trigger)
        .bind(now_micros())
        .bind(due)
        .bind(owner)
        .fetch_one(&self.write)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Marks a source's runs still `running` as `interrupted`: on the embedded store only one
    /// process syncs a source, so such a run died with its process (kill, crash, power loss).
    pub async fn interrupt_stale_runs(&self, ws: &str, source: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE sync_runs SET status = 'interrupted', finished_at = $1, \
             error = 'the process stopped before the run finished; the next run resumed from the last committed batch' \
             WHERE workspace = $2 AND source = $3 AND status = 'running'",
        )
        .bind(now_micros())
        .bind(ws)
        .bind(source)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn finish_run(
        &self,
        run: i64,
        error: Option<&str>,
        streams: &BTreeMap<String, StreamStats>,
    ) -> Result<()> {
        let status = if error.is_some() {
            "failed"
        } else {
            "succeeded"
        };
        self.finish_run_as(run, status, error, streams).await
    }

    /// Ends a run with `status` (`succeeded`, `failed`, `cancelled`), its counters, and the
    /// stream states it ended at. A run already marked `interrupted` (its lease was taken
    /// over) keeps that status.
    pub async fn finish_run_as(
        &self,
        run: i64,
        status: &str,
        error: Option<&str>,
        streams: &BTreeMap<String, StreamStats>,
    ) -> Result<()> {
        let sum = |f: fn(&StreamStats) -> u64| streams.values().map(f).sum::<u64>() as i64;
        let states = sqlx::query(
            "SELECT st.stream, st.state FROM stream_states st JOIN sync_runs r ON r.workspace = st.workspace \
             AND r.source = st.source WHERE r.id = $1 ORDER BY st.stream",
        )
        .bind(run)
        .fetch_all(&self.read)
        .await?;
        let mut end_state = serde_json::Map::new();
        for r in &states {
            let state: String = r.try_get(1)?;
            end_state.insert(
                r.try_get(0)?,
                serde_json::from_str(&state).unwrap_or(serde_json::Value::String(state)),
            );
        }
        sqlx::query(
            "UPDATE sync_runs SET status = $1, finished_at = $2, rows_read = $3, rows_written = $4, rows_rejected = $5, \
             error = $6, streams = $7, end_state = $9 WHERE id = $8 AND status = 'running'",
        )
        .bind(status)
        .bind(now_micros())
        .bind(sum(|s| s.read))
        .bind(sum(|s| s.written))
        .bind(sum(|s| s.rejected))
        .bind(error)
        .bind(serde_json::to_string(streams).expect("stats serialize"))
        .bind(run)
        .bind(serde_json::Value::Object(end_state).to_string())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Runs newest first, optionally of one source, before the run id `before`.
    pub async fn runs(
        &self,
        ws: &str,
        source: Option<&str>,
        first: usize,
        before: Option<i64>,
    ) -> Result<Page<RunRow>> {
        let query = sqlx::query(
            "SELECT id, source, trigger, status, started_at, finished_at, rows_read, rows_written, rows_rejected, error, streams, \
             due_at, owner, end_state FROM sync_runs WHERE workspace = $1 AND ($2 = '' OR source = $3) AND id < $4 ORDER BY id DESC LIMIT $5",
        )
        .bind(ws)
        .bind(source.unwrap_or(""))
        .bind(source.unwrap_or(""))
        .bind(before.unwrap_or(i64::MAX));
        self.read_page(query, first, |r| {
            Ok(RunRow {
                id: r.try_get("id")?,
                source: r.try_get("source")?,
                trigger: r.try_get("trigger")?,
                status: r.try_get("status")?,
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
                rows_read: r.try_get("rows_read")?,
                rows_written: r.try_get("rows_written")?,
                rows_rejected: r.try_get("rows_rejected")?,
                error: r.try_get("error")?,
                streams: serde_json::from_str(&r.try_get::<String, _>("streams")?)
                    .map_err(|e| StoreError::corrupt("run stats", e))?,
                due_at: r.try_get("due_at")?,
                owner: r.try_get("owner")?,
                end_state: r
                    .try_get::<Option<String>, _>("end_state")?
                    .map(|s| serde_json::from_str(&s))
                    .transpose()
                    .map_err(|e| StoreError::corrupt("run end state", e))?,
            })
        })
        .await
    }

    /// Records refused by their mapping, newest first.
    pub async fn rejected(
        &self,
        ws: &str,
        source: &str,
        limit: usize,
    ) -> Result<Vec<(String, Option<String>, String)>> {
        let rows = sqlx::query(
            "SELECT stream, record_id, error FROM rejected_records WHERE workspace = $1 AND source = $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(ws)
        .bind(source)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}
