//! The write transaction: batches and groups of batches, the lease check, the stream state.

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::*;
use crate::backend::now_micros;
use crate::error::{Result, StoreError};
use crate::json_sql::{Json, strings_param};
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
    /// The workspace whose writer lock the group holds (taken with its first batch).
    locked: Option<String>,
}

impl WriteGroup {
    /// Writes a batch and its stream's new state into the group's transaction.
    pub async fn apply(&mut self, ws: &str, batch: &BatchWrite) -> Result<BatchOutcome> {
        match &self.locked {
            None => {
                lock_workspace(&mut self.tx, self.store.backend, ws).await?;
                self.locked = Some(ws.to_string());
            }
            Some(held) if held != ws => {
                return Err(StoreError::corrupt(
                    "write group",
                    format!("a group of workspace {held:?} was given a batch of {ws:?}"),
                ));
            }
            Some(_) => {}
        }
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

/// Opens a write transaction of the model in workspace `ws`: the workspace's only writer until
/// it commits or rolls back (see the write protocol in this module's parent).
pub(crate) async fn begin_write(
    store: &SqlStore,
    ws: &str,
) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
    let mut tx = begin_unlocked(store).await?;
    lock_workspace(&mut tx, store.backend, ws).await?;
    Ok(tx)
}

/// A transaction that takes the workspace's writer lock later ([`lock_workspace`]). On SQLite
/// it holds the database's write lock from its first statement.
async fn begin_unlocked(store: &SqlStore) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
    Ok(match store.backend {
        // IMMEDIATE: the write lock now, waiting for another process's writer (busy timeout),
        // rather than failing at the first write on a snapshot that went stale meanwhile.
        Backend::Sqlite => store.write.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => store.write.begin().await?,
    })
}

/// Makes the transaction the workspace's only writer until it ends. On PostgreSQL a
/// transaction-scoped advisory lock keyed by the workspace, taken before anything is read;
/// SQLite has one writer per database already.
async fn lock_workspace(conn: &mut AnyConnection, backend: Backend, ws: &str) -> Result<()> {
    if backend == Backend::Postgres {
        // The `dossier.workspace:` prefix keeps the key apart from other advisory locks a
        // shared database may use.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("dossier.workspace:{ws}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Refuses to write for a scheduler that no longer holds `source`'s lease. On PostgreSQL the
/// schedule row stays locked until the caller's transaction ends, so the lease cannot change
/// hands between this check and the commit; the scheduler's renewal of the lease waits for it.
pub(super) async fn check_lease(
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
    if batch.mark_seen
        && let Some(run) = batch.run_id
    {
        mark_rejected_seen(conn, backend, ws, batch, run).await?;
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

/// A full refresh's rejected records still exist at the source: their stored sessions are
/// marked seen, so the deletion pass at the end of the read keeps them (with what they held
/// before the record went bad) instead of deleting them.
async fn mark_rejected_seen(
    conn: &mut AnyConnection,
    backend: Backend,
    ws: &str,
    batch: &BatchWrite,
    run: i64,
) -> Result<()> {
    let ids: Vec<&str> = batch
        .rejected
        .iter()
        .filter_map(|(id, _)| id.as_deref())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let json = Json::new(backend == Backend::Sqlite);
    for chunk in ids.chunks(KEYS_CHUNK) {
        let keys = json.strings("$1");
        let sql = format!(
            "UPDATE sessions SET seen_run = $2 WHERE workspace = $3 AND source = $4 AND stream = $5 \
             AND external_id IN (SELECT j.value FROM {keys})"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(strings_param(chunk))
            .bind(run)
            .bind(ws)
            .bind(&batch.source)
            .bind(&batch.stream)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl SqlStore {
    /// Commits a batch and its stream's new state in one transaction. Re-applying a batch
    /// changes nothing (upserts are idempotent by source, stream and external id).
    pub async fn apply_batch(&self, ws: &str, batch: &BatchWrite) -> Result<BatchOutcome> {
        let mut tx = begin_write(self, ws).await?;
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
            tx: begin_unlocked(self).await?,
            store: self.clone(),
            written: 0,
            lease: None,
            locked: None,
        })
    }
}
