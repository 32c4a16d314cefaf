//! Shared scheduling state: which source is due, who runs it (a lease with an expiry that
//! the holder keeps renewing), pause, coalesced manual triggers, cancel requests and health.
//!
//! On PostgreSQL any number of schedulers claim due sources with `FOR UPDATE SKIP LOCKED`,
//! so each due slot is claimed by exactly one of them; a scheduler that dies stops renewing
//! its leases and another one takes the source over when they expire, resuming from the last
//! committed checkpoint. On SQLite one scheduler per store file is allowed.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Row as _};

use crate::backend::{Backend, SqlStore};
use crate::{Result, StoreError};

/// A source a scheduler now holds the lease of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub source: String,
    /// `manual` for a trigger, `schedule` for a due slot.
    pub trigger: String,
    /// The slot this run serves (epoch microseconds), for a scheduled run.
    pub due: Option<i64>,
    /// A run of this source that a lost lease left `running` (now marked `interrupted`).
    pub interrupted_run: Option<i64>,
}

/// A source's scheduling state and health.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub source: String,
    pub paused: bool,
    pub next_due: Option<i64>,
    pub triggered: bool,
    pub cancel_requested: bool,
    /// The scheduler running it now, if any (with an unexpired lease at `now`).
    pub running_by: Option<String>,
    pub running_run: Option<i64>,
    pub consecutive_failures: i64,
    pub last_error: Option<String>,
    pub last_success_at: Option<i64>,
    pub last_run_at: Option<i64>,
}

impl SqlStore {
    /// Makes sure a source has a schedule row (with no due time when it is new).
    pub async fn ensure_schedule(&self, ws: &str, source: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO source_schedules (workspace, source) VALUES ($1, $2) \
             ON CONFLICT (workspace, source) DO NOTHING",
        )
        .bind(ws)
        .bind(source)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records a source's schedule as configured (`None`: manual triggers only). The due time
    /// becomes `first_due` when the schedule is new or changed (or none was set); an unchanged
    /// schedule keeps its pending slot across restarts.
    pub async fn set_schedule(
        &self,
        ws: &str,
        source: &str,
        schedule: Option<&str>,
        first_due: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO source_schedules (workspace, source, schedule, next_due) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workspace, source) DO UPDATE SET \
             next_due = CASE WHEN COALESCE(source_schedules.schedule, '') <> COALESCE(excluded.schedule, '') \
             OR source_schedules.next_due IS NULL THEN excluded.next_due ELSE source_schedules.next_due END, \
             schedule = excluded.schedule",
        )
        .bind(ws)
        .bind(source)
        .bind(schedule)
        .bind(first_due)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Registers a scheduler. On SQLite a second live scheduler on the same store is refused
    /// (a heartbeat newer than `stale_after` microseconds counts as live).
    pub async fn register_scheduler(
        &self,
        ws: &str,
        owner: &str,
        host: &str,
        now: i64,
        stale_after: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        if self.backend == Backend::Sqlite {
            let live = sqlx::query(
                "SELECT owner, host FROM schedulers WHERE workspace = $1 AND owner <> $2 AND heartbeat > $3",
            )
            .bind(ws)
            .bind(owner)
            .bind(now - stale_after)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(r) = live {
                let (other, other_host): (String, String) = (r.try_get(0)?, r.try_get(1)?);
                return Err(StoreError::Refused(format!(
                    "another scheduler ({other} on {other_host}) is running on this SQLite store; \
                     stop it first, or use a PostgreSQL store to run several workers"
                )));
            }
        }
        sqlx::query(
            "INSERT INTO schedulers (workspace, owner, host, started_at, heartbeat) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (workspace, owner) DO UPDATE SET heartbeat = excluded.heartbeat",
        )
        .bind(ws)
        .bind(owner)
        .bind(host)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn scheduler_heartbeat(&self, ws: &str, owner: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE schedulers SET heartbeat = $1 WHERE workspace = $2 AND owner = $3")
            .bind(now)
            .bind(ws)
            .bind(owner)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The registered schedulers: (owner, host, heartbeat).
    pub async fn schedulers(&self, ws: &str) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT owner, host, heartbeat FROM schedulers WHERE workspace = $1 ORDER BY owner",
        )
        .bind(ws)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Forgets a scheduler known to be dead and lets its leases expire now, so its sources
    /// are taken over at once instead of after the lease time.
    pub async fn reap_scheduler(&self, ws: &str, owner: &str) -> Result<()> {
        self.unregister_scheduler(ws, owner).await?;
        sqlx::query("UPDATE source_schedules SET lease_expires = 0 WHERE workspace = $1 AND lease_owner = $2")
            .bind(ws)
            .bind(owner)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn unregister_scheduler(&self, ws: &str, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM schedulers WHERE workspace = $1 AND owner = $2")
            .bind(ws)
            .bind(owner)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Claims up to `max` sources that are due (or triggered), not paused and not leased by a
    /// live scheduler, for `lease` microseconds. Runs left `running` by an expired lease are
    /// marked `interrupted`.
    pub async fn claim_due(
        &self,
        ws: &str,
        owner: &str,
        now: i64,
        lease: i64,
        max: usize,
    ) -> Result<Vec<Claim>> {
        if max == 0 {
            return Ok(vec![]);
        }
        let mut tx = self.write.begin().await?;
        let skip_locked = if self.backend == Backend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        // Due, triggered, or left behind by a scheduler whose lease expired mid-run.
        let sql = format!(
            "SELECT source, triggered, next_due, lease_run, lease_owner, lease_due FROM source_schedules \
             WHERE workspace = $1 AND paused = 0 \
             AND (triggered = 1 OR next_due <= $2 OR lease_owner IS NOT NULL) \
             AND (lease_expires IS NULL OR lease_expires <= $2) \
             ORDER BY triggered DESC, next_due, source LIMIT $3{skip_locked}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(ws)
            .bind(now)
            .bind(max as i64)
            .fetch_all(&mut *tx)
            .await?;
        let mut out = vec![];
        for r in rows {
            let source: String = r.try_get(0)?;
            let triggered = r.try_get::<i64, _>(1)? == 1;
            let next_due: Option<i64> = r.try_get(2)?;
            let old_run: Option<i64> = r.try_get(3)?;
            let abandoned = r.try_get::<Option<String>, _>(4)?.is_some();
            let old_due: Option<i64> = r.try_get(5)?;
            let (trigger, due) = if abandoned {
                // Finish the abandoned run's work, for the slot it was serving.
                ("resume", old_due)
            } else if triggered {
                ("manual", None)
            } else {
                ("schedule", next_due.filter(|d| *d <= now))
            };
            update_source(
                ws,
                &source,
                "lease_owner = $3, lease_expires = $4, lease_run = NULL, lease_due = $5, \
                 triggered = CASE WHEN $6 = 1 THEN triggered ELSE 0 END, cancel_requested = 0",
                "",
            )
            .bind(owner)
            .bind(now + lease)
            .bind(due)
            .bind(i64::from(abandoned))
            .execute(&mut *tx)
            .await?;
            let interrupted_run = interrupt_run(&mut tx, old_run, now).await?;
            out.push(Claim {
                source,
                trigger: trigger.into(),
                due,
                interrupted_run,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Claims one source now for a manual run in this process, unless another scheduler
    /// holds it: then the trigger is left for the holder (coalesced) and `None` returned.
    pub async fn claim_now(
        &self,
        ws: &str,
        source: &str,
        owner: &str,
        now: i64,
        lease: i64,
    ) -> Result<Option<Claim>> {
        self.ensure_schedule(ws, source).await?;
        let row = sqlx::query(
            "SELECT paused, lease_run FROM source_schedules WHERE workspace = $1 AND source = $2",
        )
        .bind(ws)
        .bind(source)
        .fetch_one(&self.write)
        .await?;
        let paused: i64 = row.try_get(0)?;
        let old_run: Option<i64> = row.try_get(1)?;
        if paused == 1 {
            return Err(StoreError::Refused(format!(
                "source {source:?} is paused; resume it first"
            )));
        }
        let taken = update_source(
            ws,
            source,
            "lease_owner = $3, lease_expires = $4, lease_run = NULL, lease_due = NULL, cancel_requested = 0",
            "AND (lease_expires IS NULL OR lease_expires <= $5)",
        )
        .bind(owner)
        .bind(now + lease)
        .bind(now)
        .execute(&self.write)
        .await?
        .rows_affected();
        if taken == 0 {
            self.request_trigger(ws, source).await?;
            return Ok(None);
        }
        let mut conn = self.write.acquire().await?;
        let interrupted_run = interrupt_run(&mut conn, old_run, now).await?;
        Ok(Some(Claim {
            source: source.into(),
            trigger: "manual".into(),
            due: None,
            interrupted_run,
        }))
    }

    /// Records the run a lease is serving (so a successor can mark it interrupted).
    pub async fn set_lease_run(&self, ws: &str, source: &str, owner: &str, run: i64) -> Result<()> {
        update_source(ws, source, "lease_run = $3", "AND lease_owner = $4")
            .bind(run)
            .bind(owner)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Extends a lease; false when it was lost (expired and taken by another scheduler).
    /// Also tells whether a cancel was requested.
    pub async fn renew_lease(
        &self,
        ws: &str,
        source: &str,
        owner: &str,
        now: i64,
        lease: i64,
    ) -> Result<LeaseStatus> {
        let row = update_source(
            ws,
            source,
            "lease_expires = $3",
            "AND lease_owner = $4 RETURNING cancel_requested",
        )
        .bind(now + lease)
        .bind(owner)
        .fetch_optional(&self.write)
        .await?;
        Ok(match row {
            None => LeaseStatus::Lost,
            Some(r) if r.try_get::<i64, _>(0)? == 1 => LeaseStatus::CancelRequested,
            Some(_) => LeaseStatus::Held,
        })
    }

    /// Gives a lease back after a run: sets the next due time and the source's health.
    pub async fn release_lease(
        &self,
        ws: &str,
        source: &str,
        owner: &str,
        next_due: Option<i64>,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        update_source(
            ws,
            source,
            "lease_owner = NULL, lease_expires = NULL, lease_run = NULL, lease_due = NULL, \
             cancel_requested = 0, next_due = COALESCE($3, next_due), last_run_at = $4, \
             consecutive_failures = CASE WHEN $5 = 1 THEN consecutive_failures + 1 ELSE 0 END, \
             last_error = CASE WHEN $5 = 1 THEN $6 ELSE last_error END, \
             last_success_at = CASE WHEN $5 = 1 THEN last_success_at ELSE $4 END",
            "AND lease_owner = $7",
        )
        .bind(next_due)
        .bind(now)
        .bind(i64::from(error.is_some()))
        .bind(error)
        .bind(owner)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Asks for a run as soon as possible. Several requests before it starts are one run.
    pub async fn request_trigger(&self, ws: &str, source: &str) -> Result<()> {
        self.ensure_schedule(ws, source).await?;
        update_source(ws, source, "triggered = 1", "")
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Asks the scheduler running a source to stop at the next batch; false if none runs it.
    pub async fn request_cancel(&self, ws: &str, source: &str, now: i64) -> Result<bool> {
        let n = update_source(
            ws,
            source,
            "cancel_requested = 1",
            "AND lease_owner IS NOT NULL AND lease_expires > $3",
        )
        .bind(now)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Pauses (no scheduled or manual runs) or resumes a source.
    pub async fn set_paused(&self, ws: &str, source: &str, paused: bool) -> Result<()> {
        self.ensure_schedule(ws, source).await?;
        update_source(ws, source, "paused = $3", "")
            .bind(i64::from(paused))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Every source's scheduling state, by name.
    pub async fn schedules(&self, ws: &str, now: i64) -> Result<Vec<ScheduleRow>> {
        self.schedule_rows(ws, None, now).await
    }

    /// One source's scheduling state and health (none before it was first scheduled or run).
    pub async fn schedule(&self, ws: &str, source: &str, now: i64) -> Result<Option<ScheduleRow>> {
        Ok(self.schedule_rows(ws, Some(source), now).await?.pop())
    }

    async fn schedule_rows(
        &self,
        ws: &str,
        source: Option<&str>,
        now: i64,
    ) -> Result<Vec<ScheduleRow>> {
        let rows = sqlx::query(
            "SELECT source, paused, next_due, triggered, cancel_requested, lease_owner, lease_expires, lease_run, \
             consecutive_failures, last_error, last_success_at, last_run_at FROM source_schedules \
             WHERE workspace = $1 AND ($2 = '' OR source = $3) ORDER BY source",
        )
        .bind(ws)
        .bind(source.unwrap_or(""))
        .bind(source.unwrap_or(""))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let live = r
                    .try_get::<Option<i64>, _>("lease_expires")?
                    .is_some_and(|e| e > now);
                Ok(ScheduleRow {
                    source: r.try_get("source")?,
                    paused: r.try_get::<i64, _>("paused")? == 1,
                    next_due: r.try_get("next_due")?,
                    triggered: r.try_get::<i64, _>("triggered")? == 1,
                    cancel_requested: r.try_get::<i64, _>("cancel_requested")? == 1,
                    running_by: if live {
                        r.try_get("lease_owner")?
                    } else {
                        None
                    },
                    running_run: if live { r.try_get("lease_run")? } else { None },
                    consecutive_failures: r.try_get("consecutive_failures")?,
                    last_error: r.try_get("last_error")?,
                    last_success_at: r.try_get("last_success_at")?,
                    last_run_at: r.try_get("last_run_at")?,
                })
            })
            .collect()
    }
}

/// What renewing a lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    Held,
    CancelRequested,
    /// Expired and taken over: stop without writing anything more.
    Lost,
}

/// `UPDATE source_schedules SET {set} WHERE workspace = $1 AND source = $2 {rest}`, with the
/// workspace and source bound: `set` and `rest` (more conditions, a `RETURNING`) number their
/// parameters from `$3`, which the caller binds in order.
fn update_source<'q>(
    ws: &'q str,
    source: &'q str,
    set: &str,
    rest: &str,
) -> Query<'q, Any, AnyArguments> {
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE source_schedules SET {set} WHERE workspace = $1 AND source = $2 {rest}"
    )))
    .bind(ws)
    .bind(source)
}

/// Marks the run a lost lease left `running` as interrupted: the run, when there was one
/// and it was still running.
async fn interrupt_run(
    conn: &mut AnyConnection,
    run: Option<i64>,
    now: i64,
) -> Result<Option<i64>> {
    let Some(run) = run else {
        return Ok(None);
    };
    let n = sqlx::query(
        "UPDATE sync_runs SET status = 'interrupted', finished_at = $1, \
         error = 'the scheduler running it stopped renewing its lease; another one resumed from the last committed batch' \
         WHERE id = $2 AND status = 'running'",
    )
    .bind(now)
    .bind(run)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((n > 0).then_some(run))
}
