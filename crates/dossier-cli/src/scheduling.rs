//! Scheduling from the command line: the scheduler that `serve` and `worker` run, and the
//! commands that pause, resume and cancel sources and show their health.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use dossier_core::value::from_micros;
use dossier_plugin_host::PluginDir;
use dossier_sync::Engine;
use dossier_sync::scheduler::{Scheduler, SchedulerOptions, SystemClock, scheduler_name};

use crate::bootstrap::{engine, engine_read_only};

/// How often the scheduler refolds windowed aggregates and refreshes segment feeds between
/// syncs (each sync also does it when it ends).
const DERIVED_REFRESH: Duration = Duration::from_secs(60);

fn options(engine: &Engine) -> anyhow::Result<SchedulerOptions> {
    let s = &engine.loaded().config.scheduler;
    Ok(SchedulerOptions {
        lease: dossier_sync::config::parse_interval(&s.lease)
            .map_err(|e| anyhow::anyhow!("scheduler.lease: {e}"))?,
        poll: dossier_sync::config::parse_interval(&s.poll)
            .map_err(|e| anyhow::anyhow!("scheduler.poll: {e}"))?,
        max_parallel: s.max_parallel.max(1),
    })
}

/// Starts the scheduler in the background (and the periodic refresh of what depends on
/// time), until `shutdown`. Refused on a SQLite store that another live scheduler already
/// runs. The task ends once the runs in progress stopped and their leases were given back.
pub async fn start_scheduler(
    engine: &Arc<Engine>,
    shutdown: Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let scheduler = Scheduler::start(
        engine.clone(),
        Arc::new(SystemClock),
        scheduler_name("serve"),
        options(engine)?,
    )
    .await?;
    let task = tokio::spawn(async move {
        if let Err(e) = scheduler.run_until(shutdown.wait()).await {
            tracing::warn!(error = %e, "the scheduler stopped");
        }
    });
    spawn_derived_refresh(engine);
    Ok(task)
}

/// How long a process takes at most to stop once asked: runs stop at their next batch and
/// requests finish within it, else the process exits anyway (what the runs committed stays;
/// a lease not given back is taken over, at once on this machine). Service managers kill
/// after 10 s, so this leaves them room.
pub const STOP_WITHIN: Duration = Duration::from_secs(8);

/// The process's shutdown: the first Ctrl-C or SIGTERM (what service managers and container
/// runtimes send), seen by every clone.
#[derive(Debug, Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// Takes over SIGINT and SIGTERM from now on (until then they kill the process, which
    /// is as safe as a crash and faster).
    pub fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        // Registered now, not on a task's first poll: a signal sent right after this
        // returns is caught, not fatal.
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutting down");
            eprintln!(
                "{name}: stopping (runs stop at their next batch, requests finish); press Ctrl-C again to stop at once"
            );
            let _ = tx.send(true);
            // A second signal means now: what the runs committed stays, as after a crash.
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("stopping at once");
            std::process::exit(130);
        });
        Ok(Self(rx))
    }

    /// Resolves once the process is asked to stop.
    pub async fn wait(mut self) {
        // An error means the sender is gone, which it never is before sending.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Resolves once the process is asked to stop and then `STOP_WITHIN` passed.
    pub async fn deadline(self) {
        self.wait().await;
        tokio::time::sleep(STOP_WITHIN).await;
    }

    /// Stops `engine`'s runs at their next batch once the process is asked to stop.
    pub fn stop_runs_on_signal(&self, engine: &Arc<Engine>) {
        let (me, engine) = (self.clone(), engine.clone());
        tokio::spawn(async move {
            me.wait().await;
            engine.stop_runs();
        });
    }
}

fn spawn_derived_refresh(engine: &Arc<Engine>) {
    let derived = engine.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(DERIVED_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if let Err(e) = derived.refresh_derived().await {
                tracing::warn!(error = %e, "refreshing windowed aggregates and segments failed");
            }
        }
    });
}

/// `dossier worker`: the scheduler alone, until interrupted (then runs in progress stop at
/// their next batch and their leases are given back). With `metrics_listen`, it also serves
/// Prometheus `/metrics` (the sync series) there.
pub async fn worker(
    config: &Path,
    plugins: &PluginDir,
    metrics_listen: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let engine = engine(config, plugins).await?;
    if let Some(addr) = metrics_listen {
        let metrics = dossier_gateway::Metrics::new();
        crate::metrics::start(&engine, &metrics).await;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for metrics; pass another --metrics-listen")
        })?;
        eprintln!("metrics: http://{}/metrics", listener.local_addr()?);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let body = metrics.encode();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    let owner = scheduler_name("worker");
    let shutdown = Shutdown::listen()?;
    shutdown.stop_runs_on_signal(&engine);
    let scheduler = Scheduler::start(
        engine.clone(),
        Arc::new(SystemClock),
        owner.clone(),
        options(&engine)?,
    )
    .await?;
    spawn_derived_refresh(&engine);
    eprintln!(
        "worker {owner} scheduling {} sources; Ctrl-C or SIGTERM stops it",
        engine.loaded().config.sources.len()
    );
    tokio::select! {
        r = scheduler.run_until(shutdown.clone().wait()) => r?,
        () = shutdown.deadline() => {
            tracing::warn!(within_ms = STOP_WITHIN.as_millis() as u64, "runs did not stop in time; exiting with their committed batches");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `pause`, `resume` and `cancel` do.
#[derive(Debug, Clone, Copy)]
pub enum SourceAction {
    Pause,
    Resume,
    Cancel,
}

pub async fn source_action(
    config: &Path,
    plugins: &PluginDir,
    source: &str,
    action: SourceAction,
) -> anyhow::Result<ExitCode> {
    let engine = engine(config, plugins).await?;
    let name = &engine.loaded().config.source(source)?.name;
    let (store, ws) = (engine.store(), engine.workspace());
    match action {
        SourceAction::Pause => {
            store.set_paused(ws, name, true).await?;
            println!(
                "paused {name}: no scheduled or manual runs until `dossier resume {name}` (a run in progress finishes; `dossier cancel {name}` stops it)"
            );
        }
        SourceAction::Resume => {
            store.set_paused(ws, name, false).await?;
            println!("resumed {name}");
        }
        SourceAction::Cancel => {
            if store
                .request_cancel(ws, name, Utc::now().timestamp_micros())
                .await?
            {
                println!(
                    "asked the scheduler running {name} to stop at its next batch; committed batches stay"
                );
            } else {
                println!("{name} is not running");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dossier sources`: each source's schedule and health.
pub async fn sources(config: &Path, plugins: &PluginDir) -> anyhow::Result<ExitCode> {
    let engine = engine_read_only(config, plugins).await?;
    let now = Utc::now().timestamp_micros();
    let rows = engine.store().schedules(engine.workspace(), now).await?;
    let time = |t: Option<i64>| {
        t.map_or_else(
            || "-".to_string(),
            |t| from_micros(t).format("%Y-%m-%d %H:%M:%S").to_string(),
        )
    };
    for s in &engine.loaded().config.sources {
        let row = rows.iter().find(|r| r.source == s.name);
        let state = match row {
            Some(r) if r.paused => "paused".to_string(),
            Some(r) if r.running_by.is_some() => format!(
                "running (run {}, by {})",
                r.running_run.map_or("?".into(), |n| n.to_string()),
                r.running_by.clone().unwrap_or_default()
            ),
            Some(r) if r.consecutive_failures > 0 => {
                format!("failing ({} in a row)", r.consecutive_failures)
            }
            _ => "ok".into(),
        };
        println!(
            "{:<20} {:<40} schedule {:<14} next {}  last success {}",
            s.name,
            state,
            s.schedule.as_deref().unwrap_or("manual"),
            time(row.and_then(|r| r.next_due)),
            time(row.and_then(|r| r.last_success_at)),
        );
        if let Some(e) = row
            .and_then(|r| r.last_error.as_ref())
            .filter(|_| row.is_some_and(|r| r.consecutive_failures > 0))
        {
            println!("{:<20} last error: {e}", "");
        }
    }
    Ok(ExitCode::SUCCESS)
}
