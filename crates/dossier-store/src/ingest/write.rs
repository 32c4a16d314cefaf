//! The write transaction: batches and groups of batches, the lease check, the stream state.

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::*;
use crate::backend::now_micros;
use crate::error::{Result, StoreError};
use crate::{Backend, BatchOutcome, BatchWrite, SqlStore};

/// Several batches of a read in one transaction, committed together: the index pages a batch
/// scatters its writes over are then written once per group rather than once per batch. Each
/// batch still stores its stream's state with it, so a group that is dropped (an error, a
/// crash) leaves the store at the last committed group, whose state the next run resumes from.
pub struct WriteGroup {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    store: SqlStore,
    /// Records the group's batches wrote.
    written: u64,
    /// The workspace, source and scheduler whose lease the group's batches were written
    /// under: checked once, just before the commit, so that on PostgreSQL the schedule row is
    /// locked for an instant rather than for the whole group (the scheduler's renewal of the
    /// lease waits for that lock).
    lease: Option<(String, String, String)>,
}

impl WriteGroup {
    /// Writes a batch and its stream's new state into the group's transaction.
    pub async fn apply(&mut self, ws: &str, batch: &BatchWrite) -> Result<BatchOutcome> {
        let outcome = write_batch(&mut self.tx, self.store.backend, ws, batch).await?;
        self.written += outcome.written;
        if let Some(owner) = &batch.lease_owner {
            self.lease = Some((ws.to_string(), batch.source.clone(), owner.clone()));
        }
        Ok(outcome)
    }

    /// Commits every batch of the group, if their scheduler still holds the source's lease.
    pub async fn commit(mut self) -> Result<()> {
        if let Some((ws, source, owner)) = &self.lease {
            check_lease(&mut self.tx, self.store.backend, ws, source, owner).await?;
        }
        self.tx.commit().await?;
        self.store.wrote(self.written).await;
        Ok(())
    }
}

/// Refuses to write for a scheduler that no longer holds `source`'s lease. On PostgreSQL the
/// schedule row stays locked until the caller's transaction ends, so the lease cannot change
/// hands between this check and the commit; the scheduler's renewal of the lease waits for it.
async fn check_lease(
    conn: &mut AnyConnection,
    backend: Backend,
    ws: &str,
    source: &str,
    owner: &str,
) -> Result<()> {
    let lock = if backend == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let holder: Option<String> = sqlx::query(AssertSqlSafe(format!(
        "SELECT lease_owner FROM source_schedules WHERE workspace = $1 AND source = $2{lock}"
    )))
    .bind(ws)
    .bind(source)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| r.try_get(0))
    .transpose()?
    .flatten();
    if holder.as_deref() != Some(owner) {
        return Err(StoreError::LeaseLost {
            source_name: source.to_string(),
        });
    }
    Ok(())
}

/// A batch and its stream's new state, written in the caller's transaction (its lease is the
/// caller's to check).
async fn write_batch(
    conn: &mut AnyConnection,
    backend: Backend,
    ws: &str,
    batch: &BatchWrite,
) -> Result<BatchOutcome> {
    let mut ing = Ingest::new(conn, ws, backend).await?;
    if batch.mark_seen {
        ing.seen_run = batch.run_id;
    }
    ing.defer = batch.defer_derived;
    ing.prefetch(&batch.source, &batch.stream, &batch.records)
        .await?;
    for rec in &batch.records {
        ing.apply(&batch.source, &batch.stream, rec).await?;
    }
    ing.finish().await?;
    let outcome = ing.outcome;
    let now = now_micros();
    for (record_id, error) in &batch.rejected {
        sqlx::query(
            "INSERT INTO rejected_records (workspace, source, stream, record_id, error, run_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(ws)
        .bind(&batch.source)
        .bind(&batch.stream)
        .bind(record_id.clone())
        .bind(error)
        .bind(batch.run_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT INTO stream_states (workspace, source, stream, state, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (workspace, source, stream) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
    )
    .bind(ws)
    .bind(&batch.source)
    .bind(&batch.stream)
    .bind(batch.state.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(outcome)
}

impl SqlStore {
    /// Commits a batch and its stream's new state in one transaction. Re-applying a batch
    /// changes nothing (upserts are idempotent by source, stream and external id).
    pub async fn apply_batch(&self, ws: &str, batch: &BatchWrite) -> Result<BatchOutcome> {
        let mut tx = self.write.begin().await?;
        if let Some(owner) = &batch.lease_owner {
            check_lease(&mut tx, self.backend, ws, &batch.source, owner).await?;
        }
        let outcome = write_batch(&mut tx, self.backend, ws, batch).await?;
        tx.commit().await?;
        self.wrote(outcome.written).await;
        Ok(outcome)
    }

    /// Opens a transaction for several batches of a read (see [`WriteGroup`]).
    pub async fn begin_group(&self) -> Result<WriteGroup> {
        Ok(WriteGroup {
            tx: self.write.begin().await?,
            store: self.clone(),
            written: 0,
            lease: None,
        })
    }
}
