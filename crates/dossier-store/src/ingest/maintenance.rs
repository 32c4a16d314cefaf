//! Maintenance writes: full-refresh deletions, window sweeps, settling a bulk load's deferred
//! contacts.

use sqlx::{AssertSqlSafe, Row};

use super::write::check_lease;
use super::*;
use crate::backend::now_micros;
use crate::error::Result;
use crate::{Backend, SqlStore};

impl SqlStore {
    /// After a complete full-refresh read by `run`: the stream's sessions that run did not
    /// see are gone from the source. They are marked deleted and leave their contact's
    /// aggregates and data. Returns how many.
    pub async fn mark_unseen_deleted(
        &self,
        ws: &str,
        source: &str,
        stream: &str,
        run: i64,
    ) -> Result<u64> {
        let mut tx = begin_write(self, ws).await?;
        // A run that lost its source's lease must not delete what its successor saw.
        let owner: Option<String> = sqlx::query("SELECT owner FROM sync_runs WHERE id = $1")
            .bind(run)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?
            .flatten();
        if let Some(owner) = &owner {
            check_lease(&mut tx, self.backend, ws, source, owner).await?;
        }
        let rows = sqlx::query(
            "SELECT id, contact_id, kind, started_at, data FROM sessions WHERE workspace = $1 AND source = $2 \
             AND stream = $3 AND deleted = 0 AND (seen_run IS NULL OR seen_run <> $4)",
        )
        .bind(ws)
        .bind(source)
        .bind(stream)
        .bind(run)
        .fetch_all(&mut *tx)
        .await?;
        let mut gone = vec![];
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            let old = (
                r.try_get::<Option<i64>, _>("contact_id")?,
                r.try_get::<String, _>("kind")?,
                r.try_get::<i64, _>("started_at")?,
                decode_data(&r.try_get::<String, _>("data")?)?,
            );
            sqlx::query("UPDATE sessions SET deleted = 1, updated_at = $1 WHERE id = $2")
                .bind(now_micros())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            gone.push((id, old));
        }
        let mut ing = Ingest::new(&mut tx, ws, self.backend).await?;
        for (id, old) in gone.iter().cloned() {
            ing.session_changed(id, Some(old), None).await?;
        }
        ing.finish().await?;
        tx.commit().await?;
        Ok(gone.len() as u64)
    }

    /// Refolds the aggregates of contacts where a windowed rule may have let a session leave
    /// its window since the last write (e.g. "orders in the last 90 days" a day later).
    /// Cost follows the contacts that expire, not the store. Returns how many were refolded.
    pub async fn refresh_windows(&self, ws: &str) -> Result<u64> {
        let now = now_micros();
        let mut total = 0;
        loop {
            let mut tx = begin_write(self, ws).await?;
            // Without statistics SQLite's planner walks every contact of the workspace (65 ms
            // at 100,000 contacts, after every sync) rather than the few expired states.
            let hint = if self.backend == Backend::Sqlite {
                " INDEXED BY contact_aggregates_expires"
            } else {
                ""
            };
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT DISTINCT a.contact_id FROM contact_aggregates a{hint} JOIN contacts c ON c.id = a.contact_id \
                 WHERE a.expires_at <= $1 AND c.workspace = $2 LIMIT 500",
            )))
            .bind(now)
            .bind(ws)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                return Ok(total);
            }
            let mut ing = Ingest::new(&mut tx, ws, self.backend).await?;
            ing.now = now;
            for r in &rows {
                ing.recompute_aggs.insert(r.try_get(0)?);
            }
            total += rows.len() as u64;
            ing.finish().await?;
            tx.commit().await?;
        }
    }

    /// Contacts whose aggregates and session data deferring batches left to compute.
    pub async fn deferred_contacts(&self, ws: &str) -> Result<u64> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM derived_pending WHERE workspace = $1")
            .bind(ws)
            .fetch_one(&self.read)
            .await?
            .try_get(0)?;
        Ok(n as u64)
    }

    /// Computes the aggregates and session data of the contacts deferring batches touched,
    /// each from its live sessions, a few hundred contacts per transaction in id order (so
    /// the writes are sequential), and reports progress after each. A crash keeps what is
    /// left pending. Returns how many contacts were settled.
    pub async fn settle_deferred(
        &self,
        ws: &str,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64> {
        let mut done = 0;
        let mut after = i64::MIN;
        loop {
            // Beside other batches, as a batch is: the contacts it settles are locked in id
            // order before anything of theirs is read, so a batch noting one of them meanwhile
            // waits, then notes it again for the next settle.
            let mut tx = begin_shared(self, ws).await?;
            let lock = if self.backend == Backend::Postgres {
                " FOR NO KEY UPDATE OF c"
            } else {
                ""
            };
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT p.contact_id, c.merged_into FROM derived_pending p \
                 JOIN contacts c ON c.id = p.contact_id \
                 WHERE p.workspace = $1 AND p.contact_id > $2 ORDER BY p.contact_id LIMIT 500{lock}"
            )))
            .bind(ws)
            .bind(after)
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = rows.last() else {
                drop(tx);
                self.settled(done).await;
                return Ok(done);
            };
            after = last.try_get(0)?;
            let mut ing = Ingest::new(&mut tx, ws, self.backend).await?;
            for r in &rows {
                // A merged-away contact's sessions and values moved to its survivor.
                if r.try_get::<Option<i64>, _>(1)?.is_none() {
                    let id: i64 = r.try_get(0)?;
                    ing.recompute_aggs.insert(id);
                    ing.recompute_data.insert(id);
                }
            }
            ing.finish().await?;
            let sqlite = self.backend == Backend::Sqlite;
            for chunk in rows.chunks(CHUNK) {
                let list = placeholders(sqlite, chunk.len(), 1, 2, |p| p[0].clone());
                let mut q = sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM derived_pending WHERE workspace = {} AND contact_id IN ({list})",
                    param(sqlite, 1)
                )))
                .bind(ws);
                for r in chunk {
                    q = q.bind(r.try_get::<i64, _>(0)?);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            done += rows.len() as u64;
            progress(done);
        }
    }
}
