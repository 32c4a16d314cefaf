//! The write transaction: batches and groups of batches, the lease check, the stream state.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::locks::{self, Access, lock_workspace};
use super::*;
use crate::backend::now_micros;
use crate::error::{Result, StoreError};
use crate::json_sql::{Json, strings_param};
use crate::{Backend, BatchOutcome, BatchWrite, SqlStore};

/// Several batches of a read in one transaction, committed together: the index pages a batch
/// scatters its writes over are then written once per group rather than once per batch. Each
/// batch still stores its stream's state with it, so a group that is dropped (an error, a
/// crash) leaves the store at the last committed group, whose state the next run resumes from.
///
/// On PostgreSQL a group shares its workspace with other sync batches (see the write
/// protocol): each batch locks the stored contacts it names. A batch that meets a concurrent
/// writer (a contact it did not lock, an identity attached meanwhile, a deadlock) rolls the
/// group's transaction back, and the group's batches are written again holding the workspace
/// alone; the group stays alone until it commits.
pub struct WriteGroup {
    /// The open transaction; `None` only while it is replaced.
    tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
    store: SqlStore,
    /// Records the open transaction's batches wrote.
    written: u64,
    /// The workspace, source and scheduler whose lease the group's batches were written
    /// under: checked once, just before the commit, so that on PostgreSQL the schedule row is
    /// locked for an instant rather than for the whole group (the scheduler's renewal of the
    /// lease waits for that lock).
    lease: Option<(String, String, String)>,
    /// The workspace whose lock the open transaction holds (taken with its first batch).
    locked: Option<String>,
    /// How the open transaction holds its workspace: shared until a batch meets a concurrent
    /// writer, then alone until the group commits.
    access: Access,
    /// Shared access: the stored contacts the open transaction locked, and its batches, to
    /// write again alone after a conflict.
    contacts: HashSet<i64>,
    applied: Vec<BatchWrite>,
}

impl WriteGroup {
    /// Writes a batch and its stream's new state into the group's transaction.
    pub async fn apply(&mut self, ws: &str, batch: &BatchWrite) -> Result<BatchOutcome> {
        match &self.locked {
            None => {
                let (backend, access) = (self.store.backend, self.access);
                lock_workspace(self.tx(), backend, ws, access).await?;
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
        if let Some(owner) = &batch.lease_owner {
            self.lease = Some((ws.to_string(), batch.source.clone(), owner.clone()));
        }
        if self.access == Access::Exclusive {
            let backend = self.store.backend;
            let outcome = write_batch(self.tx(), backend, ws, batch, None).await?;
            self.written += outcome.written;
            return Ok(outcome);
        }
        match self.apply_shared(ws, batch).await {
            Err(e) if e.is_conflict() => self.apply_alone(ws, batch, &e).await,
            result => result,
        }
    }

    async fn apply_shared(&mut self, ws: &str, batch: &BatchWrite) -> Result<BatchOutcome> {
        let backend = self.store.backend;
        // Only a transaction that holds no contact yet may wait for one.
        let wait = self.applied.is_empty();
        let locked = match lock_contacts(self.tx(), ws, batch, wait).await? {
            Some(locked) => locked,
            None => {
                // Another writer holds some: commit what the group wrote, then wait for them
                // in a new transaction.
                self.commit_open().await?;
                let tx = begin_unlocked(&self.store).await?;
                let tx = self.tx.insert(tx);
                lock_workspace(tx, backend, ws, Access::Shared).await?;
                lock_contacts(tx, ws, batch, true)
                    .await?
                    .unwrap_or_default()
            }
        };
        self.contacts.extend(locked);
        let tx = self.tx.as_mut().expect("the group has a transaction");
        let outcome = write_batch(tx, backend, ws, batch, Some(&self.contacts)).await?;
        self.written += outcome.written;
        self.applied.push(batch.clone());
        Ok(outcome)
    }

    /// After a conflict: rolls the open transaction back and writes its batches and `batch`
    /// again holding the workspace alone, as the group does until it commits.
    async fn apply_alone(
        &mut self,
        ws: &str,
        batch: &BatchWrite,
        conflict: &StoreError,
    ) -> Result<BatchOutcome> {
        let backend = self.store.backend;
        if let Some(tx) = self.tx.take() {
            // Explicitly: a dropped transaction rolls back only when its connection is next
            // used, and until then it keeps the workspace's shared lock this one waits for.
            tx.rollback().await?;
        }
        let again = std::mem::take(&mut self.applied);
        self.store.conflicts.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(workspace = %ws, source = %batch.source, stream = %batch.stream, batches = again.len() + 1, reason = %conflict, "batches met a concurrent writer; writing them again alone");
        self.contacts.clear();
        self.access = Access::Exclusive;
        self.written = 0;
        let tx = self.tx.insert(begin_unlocked(&self.store).await?);
        lock_workspace(tx, backend, ws, Access::Exclusive).await?;
        for earlier in &again {
            self.written += write_batch(tx, backend, ws, earlier, None).await?.written;
        }
        let outcome = write_batch(tx, backend, ws, batch, None).await?;
        self.written += outcome.written;
        Ok(outcome)
    }

    fn tx(&mut self) -> &mut AnyConnection {
        self.tx.as_mut().expect("the group has a transaction")
    }

    /// Commits the open transaction, if its batches' scheduler still holds the lease.
    async fn commit_open(&mut self) -> Result<()> {
        let backend = self.store.backend;
        if let Some((ws, source, owner)) = &self.lease {
            let tx = self.tx.as_mut().expect("the group has a transaction");
            check_lease(tx, backend, ws, source, owner).await?;
        }
        if let Some(tx) = self.tx.take() {
            tx.commit().await?;
        }
        self.store.wrote(std::mem::take(&mut self.written)).await;
        self.contacts.clear();
        self.applied.clear();
        Ok(())
    }

    /// Commits every batch of the group, if their scheduler still holds the source's lease.
    pub async fn commit(mut self) -> Result<()> {
        self.commit_open().await
    }
}

/// Opens a write transaction of the model in workspace `ws` that holds the workspace alone
/// until it commits or rolls back (see the write protocol in this module's parent).
pub(crate) async fn begin_write(
    store: &SqlStore,
    ws: &str,
) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
    let mut tx = begin_unlocked(store).await?;
    lock_workspace(&mut tx, store.backend, ws, Access::Exclusive).await?;
    Ok(tx)
}

/// Opens a write transaction of the model in workspace `ws` that shares the workspace with
/// sync batches: it may change only the contacts it locks (see the write protocol).
pub(crate) async fn begin_shared(
    store: &SqlStore,
    ws: &str,
) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
    let mut tx = begin_unlocked(store).await?;
    lock_workspace(&mut tx, store.backend, ws, Access::Shared).await?;
    Ok(tx)
}

/// A transaction that takes the workspace's lock later ([`lock_workspace`]). On SQLite it
/// holds the database's write lock from its first statement.
async fn begin_unlocked(store: &SqlStore) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
    Ok(match store.backend {
        // IMMEDIATE: the write lock now, waiting for another process's writer (busy timeout),
        // rather than failing at the first write on a snapshot that went stale meanwhile.
        Backend::Sqlite => store.write.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => store.write.begin().await?,
    })
}

/// [`locks::lock_contacts`] for a batch.
async fn lock_contacts(
    conn: &mut AnyConnection,
    ws: &str,
    batch: &BatchWrite,
    wait: bool,
) -> Result<Option<HashSet<i64>>> {
    locks::lock_contacts(conn, ws, &batch.source, &batch.stream, &batch.records, wait).await
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
    locked: Option<&HashSet<i64>>,
) -> Result<BatchOutcome> {
    let mut ing = Ingest::new(conn, ws, backend).await?;
    ing.locked = locked;
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
    /// Commits a batch and its stream's new state in one transaction: a group of one batch
    /// (see [`WriteGroup`]), its lease checked before the commit. Re-applying a batch changes
    /// nothing (upserts are idempotent by source, stream and external id).
    pub async fn apply_batch(&self, ws: &str, batch: &BatchWrite) -> Result<BatchOutcome> {
        let mut group = self.begin_group().await?;
        let outcome = group.apply(ws, batch).await?;
        group.commit().await?;
        Ok(outcome)
    }

    /// Opens a transaction for several batches of a read (see [`WriteGroup`]).
    pub async fn begin_group(&self) -> Result<WriteGroup> {
        Ok(WriteGroup {
            tx: Some(begin_unlocked(self).await?),
            store: self.clone(),
            written: 0,
            lease: None,
            locked: None,
            // SQLite has one writer: a group holds the database alone from its first statement.
            access: match self.backend {
                Backend::Sqlite => Access::Exclusive,
                Backend::Postgres => Access::Shared,
            },
            contacts: HashSet::new(),
            applied: Vec::new(),
        })
    }
}
