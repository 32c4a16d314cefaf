//! The scheduler: runs each source when it is due, exactly once per slot, never two runs of
//! one source at a time, on one machine or many.
//!
//! All coordination goes through the store (see `dossier_store::schedule`): a scheduler claims
//! due sources with a lease, renews the lease while the run lasts, and gives it back with the
//! next due time. A scheduler that dies stops renewing; once its leases expire another one
//! claims the sources and resumes them from their last committed checkpoints. Every batch
//! commit checks the lease, so a scheduler that lost one cannot write over its successor.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dossier_core::value::to_micros;
use dossier_store::{Claim, LeaseStatus};
use tokio::task::JoinHandle;

use crate::{Engine, NoProgress, Progress, RunControl, RunSummary, SyncError};

/// Where the scheduler reads the time: the system clock, or a clock tests move by hand.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The real time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to, so schedule tests need not wait real minutes.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().expect("clock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock")
    }
}

/// How a scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// How long a claim holds without renewal; a dead scheduler's sources wait this long.
    pub lease: Duration,
    /// How often due sources are looked for (and leases renewed, cancels noticed).
    pub poll: Duration,
    /// Sources run at once by this scheduler.
    pub max_parallel: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            max_parallel: 4,
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A name for this process among the schedulers of a store.
pub fn scheduler_name(role: &str) -> String {
    let host = hostname();
    format!("{role}@{host}:{}:{:08x}", std::process::id(), rand_u32())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() ^ std::process::id().rotate_left(16)
}

/// Whether `owner` (as [`scheduler_name`] makes them) was a process of this machine that no
/// longer exists: its leases can be taken over at once.
fn dead_here(owner: &str) -> bool {
    let Some((_, rest)) = owner.split_once('@') else {
        return false;
    };
    let mut parts = rest.rsplitn(3, ':');
    let (_rand, pid, host) = (parts.next(), parts.next(), parts.next());
    let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    host == Some(hostname().as_str())
        && pid != std::process::id()
        && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Reaps the schedulers (and manual runs) of this machine whose process died, so a restart
/// after a crash neither waits for their leases nor is refused as a second scheduler.
async fn reap_dead(engine: &Engine) -> Result<(), SyncError> {
    let ws = engine.workspace();
    for (owner, _, _) in engine.store().schedulers(ws).await? {
        if dead_here(&owner) {
            tracing::warn!(owner = %owner, "a scheduler of this machine died; taking its sources over");
            engine.store().reap_scheduler(ws, &owner).await?;
        }
    }
    for row in engine.store().schedules(ws, to_micros(Utc::now())).await? {
        if let Some(owner) = row.running_by {
            let dead = dead_here(&owner);
            tracing::debug!(source = %row.source, owner = %owner, dead, "source leased");
            if dead {
                tracing::warn!(source = %row.source, owner = %owner, "the process running this source died; taking it over");
                engine.store().reap_scheduler(ws, &owner).await?;
            }
        }
    }
    Ok(())
}

/// Runs due sources of one engine's workspace.
pub struct Scheduler {
    engine: Arc<Engine>,
    clock: Arc<dyn Clock>,
    owner: String,
    options: SchedulerOptions,
    running: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("owner", &self.owner)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Registers the scheduler in the store (refused on SQLite when another one is live) and
    /// gives every source a schedule row with its first due time.
    pub async fn start(
        engine: Arc<Engine>,
        clock: Arc<dyn Clock>,
        owner: String,
        options: SchedulerOptions,
    ) -> Result<Arc<Self>, SyncError> {
        let ws = engine.workspace().to_string();
        reap_dead(&engine).await?;
        let now = clock.now();
        let store = engine.store();
        store
            .register_scheduler(
                &ws,
                &owner,
                &hostname(),
                to_micros(now),
                micros(options.lease),
            )
            .await?;
        for s in &engine.loaded().config.sources {
            let first = s
                .parsed_schedule()
                .map_err(SyncError::Config)?
                .map(|sched| to_micros(sched.next_after(now)));
            let written = s
                .schedule
                .as_ref()
                .map(|sched| format!("{sched} {}", s.timezone.as_deref().unwrap_or("UTC")));
            store
                .set_schedule(&ws, &s.name, written.as_deref(), first)
                .await?;
        }
        tracing::info!(owner = %owner, lease_ms = options.lease.as_millis() as u64, "scheduler started");
        Ok(Arc::new(Self {
            engine,
            clock,
            owner,
            options,
            running: Mutex::new(HashMap::new()),
        }))
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims and starts what is due; returns how many runs it started.
    pub async fn tick(self: &Arc<Self>) -> Result<usize, SyncError> {
        let ws = self.engine.workspace();
        let now = to_micros(self.clock.now());
        let store = self.engine.store();
        store.scheduler_heartbeat(ws, &self.owner, now).await?;
        let free = {
            let mut running = self.running.lock().expect("running");
            running.retain(|_, h| !h.is_finished());
            self.options.max_parallel.saturating_sub(running.len())
        };
        let claims = store
            .claim_due(ws, &self.owner, now, micros(self.options.lease), free)
            .await?;
        let started = claims.len();
        for claim in claims {
            if let Some(run) = claim.interrupted_run {
                tracing::warn!(source = %claim.source, run, "took over a source whose scheduler stopped renewing its lease");
            }
            let me = self.clone();
            let source = claim.source.clone();
            let handle = tokio::spawn(async move {
                if let Err(e) = run_under_lease(
                    &me.engine,
                    &me.clock,
                    &me.owner,
                    &me.options,
                    claim,
                    None,
                    &NoProgress,
                )
                .await
                {
                    tracing::warn!(error = %e, "scheduled run failed");
                }
            });
            self.running.lock().expect("running").insert(source, handle);
        }
        Ok(started)
    }

    /// Ticks every `poll` until `shutdown` resolves, then stops: runs in progress are cancelled
    /// at their next batch and their leases given back.
    pub async fn run_until(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), SyncError> {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "scheduler tick failed; trying again");
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.options.poll) => {}
            }
        }
        self.stop().await
    }

    /// Cancels the runs in progress, waits for them, and unregisters.
    pub async fn stop(&self) -> Result<(), SyncError> {
        let ws = self.engine.workspace();
        let handles: Vec<(String, JoinHandle<()>)> =
            self.running.lock().expect("running").drain().collect();
        for (source, _) in &handles {
            let _ = self
                .engine
                .store()
                .request_cancel(ws, source, to_micros(self.clock.now()))
                .await;
        }
        for (_, h) in handles {
            let _ = h.await;
        }
        self.engine
            .store()
            .unregister_scheduler(ws, &self.owner)
            .await?;
        Ok(())
    }

    /// Stops without cancelling or giving anything back, as a killed process would (tests).
    pub fn abandon(&self) {
        for (_, h) in self.running.lock().expect("running").drain() {
            h.abort();
        }
    }
}

/// Stops the lease renewal however the run ends (also when its task is aborted, as when the
/// process dies: then the lease must expire).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a claimed source while renewing its lease (cancelling when asked or when the lease
/// is lost), then gives the lease back with the next due time and the run's outcome.
pub async fn run_under_lease(
    engine: &Engine,
    clock: &Arc<dyn Clock>,
    owner: &str,
    options: &SchedulerOptions,
    claim: Claim,
    only: Option<&[String]>,
    progress: &dyn Progress,
) -> Result<RunSummary, SyncError> {
    let ws = engine.workspace().to_string();
    let store = engine.store().clone();
    let control = RunControl {
        lease_owner: Some(owner.to_string()),
        due: claim.due,
        ..Default::default()
    };
    let renew_every = (options.lease / 3)
        .min(options.poll)
        .max(Duration::from_millis(50));
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = {
        let (store, ws, source, owner) = (
            store.clone(),
            ws.clone(),
            claim.source.clone(),
            owner.to_string(),
        );
        let (cancel, lost, lease) = (control.cancel.clone(), lost.clone(), micros(options.lease));
        let clock = clock.clone();
        let now = move || to_micros(clock.now());
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(renew_every).await;
                match store.renew_lease(&ws, &source, &owner, now(), lease).await {
                    Ok(LeaseStatus::Held) => {}
                    Ok(LeaseStatus::CancelRequested) => cancel.store(true, Ordering::Relaxed),
                    Ok(LeaseStatus::Lost) => {
                        lost.store(true, Ordering::Relaxed);
                        cancel.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(source = %source, error = %e, "renewing the lease failed")
                    }
                }
            }
        }))
    };
    let result = engine
        .sync_with(&claim.source, only, &claim.trigger, progress, &control)
        .await;
    drop(renewer);
    let now = clock.now();
    if lost.load(Ordering::Relaxed) {
        tracing::warn!(source = %claim.source, "lost the lease during the run; another scheduler carries on");
        return result;
    }
    let source_cfg = engine.loaded().config.source(&claim.source)?;
    let next_due = match source_cfg.parsed_schedule().map_err(SyncError::Config)? {
        Some(schedule) => {
            let due = claim
                .due
                .map(dossier_core::value::from_micros)
                .unwrap_or(now);
            // A manual run keeps the schedule's next slot; a scheduled one moves past its own.
            claim.due.map(|_| to_micros(schedule.next_due(due, now)))
        }
        None => None,
    };
    let error = result.as_ref().err().map(ToString::to_string);
    store
        .release_lease(
            &ws,
            &claim.source,
            owner,
            next_due,
            error.as_deref(),
            to_micros(now),
        )
        .await?;
    result
}

/// Syncs a source now in this process (the CLI's `dossier sync`, the API's `triggerSync`),
/// under a lease like a scheduled run, so it never overlaps a run elsewhere. When another
/// scheduler is running the source, a run is requested for when it finishes (coalesced with
/// other requests) and `AlreadyRunning` returned.
pub async fn sync_now(
    engine: &Engine,
    source: &str,
    only: Option<&[String]>,
    trigger: &str,
    progress: &dyn Progress,
) -> Result<RunSummary, SyncError> {
    let cfg = engine.loaded().config.source(source)?;
    let options = SchedulerOptions::default();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let owner = scheduler_name(trigger);
    let ws = engine.workspace();
    reap_dead(engine).await?;
    let claim = engine
        .store()
        .claim_now(
            ws,
            &cfg.name,
            &owner,
            to_micros(clock.now()),
            micros(options.lease),
        )
        .await?;
    let Some(mut claim) = claim else {
        let now = to_micros(clock.now());
        let holder = engine
            .store()
            .schedule(ws, &cfg.name, now)
            .await?
            .and_then(|r| r.running_by);
        return Err(SyncError::RunningElsewhere {
            source_name: cfg.name.clone(),
            holder: holder.unwrap_or_else(|| "another scheduler".into()),
        });
    };
    claim.trigger = trigger.to_string();
    run_under_lease(engine, &clock, &owner, &options, claim, only, progress).await
}
