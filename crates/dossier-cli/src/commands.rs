//! The commands that work from a config file.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use dossier_gateway::{
    Access, Caller, GatewayConfig, PersistedQueries, RateLimit, SourceCheck, SyncTrigger,
};
use dossier_plugin_host::PluginDir;
use dossier_store::Role;
use dossier_sync::config::AccessMode;
use dossier_sync::{Engine, NoProgress, SyncError};

use crate::bootstrap::{engine, engine_read_only};
use crate::connectors::PluginAdmin;
use crate::progress::Bars;
use crate::scheduling::{STOP_WITHIN, Shutdown, start_scheduler};

/// Lets the gateway trigger syncs through the engine.
pub struct EngineTrigger(pub Arc<Engine>);

#[async_trait::async_trait]
impl SyncTrigger for EngineTrigger {
    async fn trigger(&self, workspace: &str, source: &str) -> Result<i64, String> {
        // This process syncs its config's workspace only; to another workspace the source
        // does not exist (and the answer says no more than that).
        if workspace != self.0.workspace() {
            return Err(format!("unknown source {source:?}"));
        }
        // Its own task: a caller that stops waiting (the request's time bound, a closed
        // connection) leaves the sync running to its end instead of cutting it mid-batch.
        let (engine, source) = (self.0.clone(), source.to_string());
        let run = tokio::spawn(async move {
            dossier_sync::scheduler::sync_now(&engine, &source, None, "api", &NoProgress).await
        });
        match run.await {
            Ok(Ok(s)) => Ok(s.run_id),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the sync stopped inside the server: {e}")),
        }
    }

    async fn check(&self, workspace: &str, source: &str) -> Result<SourceCheck, String> {
        if workspace != self.0.workspace() {
            return Err(format!("unknown source {source:?}"));
        }
        let report = self
            .0
            .check_report(source)
            .await
            .map_err(|e| e.to_string())?;
        Ok(SourceCheck {
            problems: report.problems,
            notes: report.notes,
        })
    }
}

/// The engine's run events as the gateway's progress feed (the `syncProgress`
/// subscription): a task forwards each one as the gateway's event type.
pub(crate) fn progress_feed(engine: &Engine) -> Arc<dossier_gateway::ProgressChannel> {
    let feed = Arc::new(dossier_gateway::ProgressChannel::new(1024));
    let mut events = engine.events().subscribe();
    let tx = feed.clone();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => tx.send(progress_event(e)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the progress feed fell behind the engine's events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    feed
}

/// A run event of the engine as the gateway's progress event.
pub(crate) fn progress_event(event: dossier_sync::SyncEvent) -> dossier_gateway::ProgressEvent {
    use dossier_gateway::{ProgressEvent, ProgressKind};
    use dossier_sync::SyncEvent;
    match event {
        SyncEvent::RunStarted {
            workspace,
            source,
            run_id,
            trigger,
        } => ProgressEvent {
            trigger: Some(trigger),
            ..ProgressEvent::new(ProgressKind::RunStarted, &workspace, &source, run_id)
        },
        SyncEvent::StreamStarted {
            workspace,
            source,
            run_id,
            stream,
        } => ProgressEvent {
            stream: Some(stream),
            ..ProgressEvent::new(ProgressKind::StreamStarted, &workspace, &source, run_id)
        },
        SyncEvent::BatchCommitted {
            workspace,
            source,
            run_id,
            stream,
            rows,
            stream_rows,
        } => ProgressEvent {
            stream: Some(stream),
            rows: Some(rows),
            stream_rows: Some(stream_rows),
            ..ProgressEvent::new(ProgressKind::BatchCommitted, &workspace, &source, run_id)
        },
        SyncEvent::StreamFinished {
            workspace,
            source,
            run_id,
            stream,
            stats,
        } => ProgressEvent {
            stream: Some(stream),
            read: Some(stats.read),
            written: Some(stats.written),
            rejected: Some(stats.rejected),
            deleted: Some(stats.deleted),
            ..ProgressEvent::new(ProgressKind::StreamFinished, &workspace, &source, run_id)
        },
        SyncEvent::RunFinished {
            workspace,
            source,
            run_id,
            error,
            elapsed,
            ..
        } => ProgressEvent {
            error,
            elapsed: Some(elapsed),
            ..ProgressEvent::new(ProgressKind::RunFinished, &workspace, &source, run_id)
        },
    }
}

/// The gateway's view of the engine's connectors and of the plugin directory.
fn admin(engine: &Engine, plugins: &PluginDir) -> Arc<PluginAdmin> {
    Arc::new(PluginAdmin {
        registry: engine.registry().clone(),
        dir: plugins.clone(),
    })
}

/// The gateway settings of the config's `[server]` table.
pub fn gateway_config(engine: &Engine) -> anyhow::Result<GatewayConfig> {
    let srv = &engine.loaded().config.server;
    let access = match srv.access {
        AccessMode::Keys => Access::Keys,
        AccessMode::Open => Access::Open {
            workspace: engine.workspace().to_string(),
        },
    };
    let persisted_queries = match &srv.allow_list {
        None => PersistedQueries::Automatic,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read server.allow_list {}", path.display()))?;
            let docs: Vec<String> = serde_json::from_str(&text).with_context(|| {
                format!(
                    "server.allow_list {} must be a JSON list of GraphQL documents",
                    path.display()
                )
            })?;
            PersistedQueries::allow_list(docs)
        }
    };
    if srv.max_nesting > dossier_gateway::NESTING_CEILING {
        anyhow::bail!(
            "server.max_nesting is {}; at most {} is allowed (the parser recurses once per level)",
            srv.max_nesting,
            dossier_gateway::NESTING_CEILING
        );
    }
    Ok(GatewayConfig {
        access,
        max_page_size: srv.max_page_size,
        max_depth: srv.max_depth,
        max_complexity: srv.max_complexity,
        max_aliases: srv.max_aliases,
        max_root_fields: srv.max_root_fields,
        max_tokens: srv.max_tokens,
        max_nesting: srv.max_nesting,
        max_selections: srv.max_selections,
        max_body_bytes: srv.max_body_bytes,
        max_buckets: srv.max_buckets,
        request_timeout: dossier_sync::config::parse_interval(&srv.request_timeout)
            .map_err(|e| anyhow::anyhow!("server.request_timeout: {e}"))?,
        rate_limit: (srv.rate_limit_per_second > 0).then_some(RateLimit {
            per_second: srv.rate_limit_per_second,
            burst: srv.rate_limit_burst,
        }),
        introspection: srv.introspection,
        persisted_queries,
        cors_origins: srv.cors_origins.clone(),
        allow_plugin_install: srv.allow_plugin_install,
        ..GatewayConfig::default()
    })
}

pub async fn sync(
    config: &Path,
    plugins: &PluginDir,
    source: &str,
    streams: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let engine = engine(config, plugins).await?;
    let only = (!streams.is_empty()).then_some(streams);
    let bars = Bars::new(source);
    let result = dossier_sync::scheduler::sync_now(&engine, source, only, "manual", &bars).await;
    let outcome = report_sync(&engine, source, result, json).await;
    // SQLite checkpoints its write-ahead log into the database as the last connection
    // closes: the run leaves a clean store instead of handing the next one its backlog.
    engine.store().close().await;
    outcome
}

async fn report_sync(
    engine: &dossier_sync::Engine,
    source: &str,
    result: Result<dossier_sync::RunSummary, SyncError>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(s) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "synced {}: {} rows read, {} written, {} rejected in {:.1}s (run {})",
                    s.source,
                    s.rows_read(),
                    s.rows_written(),
                    s.rows_rejected(),
                    s.elapsed.as_secs_f64(),
                    s.run_id
                );
                if s.rows_rejected() > 0 {
                    for (stream, id, err) in engine
                        .store()
                        .rejected(engine.workspace(), source, 5)
                        .await?
                    {
                        println!(
                            "  rejected {stream} record {}: {err}",
                            id.unwrap_or_else(|| "?".into())
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&error_json(source, &e))?);
            }
            match e {
                SyncError::UnknownSource { .. }
                | SyncError::AlreadyRunning(_)
                | SyncError::RunningElsewhere { .. }
                | SyncError::Config(_)
                | SyncError::TooManyRejected { .. } => Err(e.into()),
                e => Err(anyhow::anyhow!(e).context(format!(
                    "sync of {source:?} failed; committed batches are kept and the next run resumes from them"
                ))),
            }
        }
    }
}

/// A failed sync for `--json`: what a script needs to tell failures apart.
fn error_json(source: &str, e: &SyncError) -> serde_json::Value {
    let mut out = serde_json::json!({
        "source": source,
        "error": e.to_string(),
        "retryable": e.is_retryable(),
    });
    if let SyncError::TooManyRejected {
        stream,
        rejected,
        read,
        reasons,
        ..
    } = e
    {
        out["stream"] = stream.as_str().into();
        out["rejected"] = (*rejected).into();
        out["read"] = (*read).into();
        out["reasons"] = reasons.clone().into();
    }
    out
}

pub async fn check(config: &Path, plugins: &PluginDir, source: &str) -> anyhow::Result<ExitCode> {
    let engine = engine(config, plugins).await?;
    let report = engine.check_report(source).await?;
    for n in &report.notes {
        println!("{source}: note: {n}");
    }
    if report.problems.is_empty() {
        println!("{source}: ok");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &report.problems {
        println!("{source}: {p}");
    }
    Ok(ExitCode::FAILURE)
}

pub async fn discover(
    config: &Path,
    plugins: &PluginDir,
    source: &str,
) -> anyhow::Result<ExitCode> {
    let engine = engine(config, plugins).await?;
    let catalog = engine.discover(source).await?;
    println!("{}", serde_json::to_string_pretty(&catalog)?);
    // The catalog is for scripts (stdout); what to make of it is for the reader.
    eprintln!(
        "note: a cursor must grow whenever a row changes: an update time, or for rows that are never \
         updated a key the database assigns in order; each stream's cursor_candidates lists the \
         columns that look like one. A stream without a cursor is read whole on every run, and \
         rows gone from it are marked deleted."
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn query(
    config: &Path,
    plugins: &PluginDir,
    document: &str,
    variables: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let engine = engine_read_only(config, plugins).await?;
    let variables = variables
        .map(serde_json::from_str)
        .transpose()
        .context("--variables must be a JSON object")?;
    let schema = dossier_gateway::build_schema(
        engine.store().clone(),
        Some(Arc::new(EngineTrigger(engine.clone()))),
        Some(admin(&engine, plugins)),
        None,
        gateway_config(&engine)?,
    );
    // The command line is the store's owner: an admin of the config's workspace.
    let out = dossier_gateway::execute(
        &schema,
        engine.store(),
        Caller::admin(engine.workspace()),
        document,
        variables,
    )
    .await;
    println!("{}", serde_json::to_string_pretty(&out)?);
    let failed = out
        .get("errors")
        .is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty()));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn runs(
    config: &Path,
    plugins: &PluginDir,
    source: Option<&str>,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let engine = engine_read_only(config, plugins).await?;
    let page = engine
        .store()
        .runs(engine.workspace(), source, limit, None)
        .await?;
    for r in page.items {
        let at = dossier_core::value::from_micros(r.started_at).format("%Y-%m-%d %H:%M:%S");
        println!(
            "{:>6}  {at}  {:<12} {:<9} {:<7} read {:>8}  written {:>8}  rejected {:>5}{}",
            r.id,
            r.source,
            r.status,
            r.trigger,
            r.rows_read,
            r.rows_written,
            r.rows_rejected,
            r.error.map(|e| format!("  error: {e}")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The gateway over the engine: GraphQL with `triggerSync`, the `syncProgress`
/// subscription fed by the engine's events, and `/metrics` with the engine's metrics.
pub(crate) async fn gateway_app(
    engine: &Arc<Engine>,
    plugins: &PluginDir,
    config: GatewayConfig,
) -> (dossier_gateway::DossierSchema, axum::Router) {
    let schema = dossier_gateway::build_schema(
        engine.store().clone(),
        Some(Arc::new(EngineTrigger(engine.clone()))),
        Some(admin(engine, plugins)),
        Some(progress_feed(engine)),
        config,
    );
    crate::metrics::start(engine, &dossier_gateway::metrics(&schema)).await;
    let app = dossier_gateway::router(schema.clone(), engine.store().clone()).merge(
        dossier_console::router(schema.clone(), engine.store().clone()),
    );
    (schema, app)
}

/// Serves GraphQL until interrupted, running scheduled syncs. On Ctrl-C or SIGTERM it stops
/// accepting, lets requests in flight finish, stops runs at their next batch and gives their
/// leases back, within [`STOP_WITHIN`].
pub async fn serve_engine(
    engine: Arc<Engine>,
    plugins: &PluginDir,
    listen: &str,
    force_open: bool,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut config = gateway_config(&engine)?;
    if force_open {
        config.access = Access::Open {
            workspace: engine.workspace().to_string(),
        };
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}; is another server running there? pass --listen <addr:port>"))?;
    let open = matches!(config.access, Access::Open { .. });
    if open && !listener.local_addr()?.ip().is_loopback() {
        anyhow::bail!(
            "server.access = \"open\" serves everyone as admin, so it is allowed on a loopback address only (got {listen}); use access = \"keys\" and `dossier keys create`"
        );
    }
    let (_, app) = gateway_app(&engine, plugins, config).await;
    shutdown.stop_runs_on_signal(&engine);
    let scheduler = start_scheduler(&engine, shutdown.clone()).await?;
    let addr = listener.local_addr()?;
    // Written, not `println!`ed: a server whose stdout was closed (a pipe to `head`, a
    // detached terminal) goes on serving instead of panicking.
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "Console: http://{addr}/   GraphQL: http://{addr}/graphql   (GraphiQL: http://{addr}/graphiql, subscriptions: ws://{addr}/graphql, metrics: http://{addr}/metrics)"
    );
    if open {
        let _ = writeln!(
            out,
            "note: this server is open (no API keys, every request is an admin) and meant for local use; it listens on {addr} only"
        );
    }
    let graceful = shutdown.clone().wait();
    let stopped = async {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(graceful)
        .await?;
        // The scheduler's runs end at their next batch and give their leases back.
        let _ = scheduler.await;
        Ok::<_, anyhow::Error>(())
    };
    tokio::select! {
        r = stopped => r?,
        // A subscription or a slow request does not hold the process past the deadline.
        () = shutdown.deadline() => {
            tracing::warn!(within_ms = STOP_WITHIN.as_millis() as u64, "requests or runs still going; exiting with what the runs committed");
        }
    }
    Ok(())
}

pub async fn serve(
    config: &Path,
    plugins: &PluginDir,
    listen: Option<String>,
) -> anyhow::Result<ExitCode> {
    let engine = engine(config, plugins).await?;
    let listen = listen.unwrap_or_else(|| engine.loaded().config.server.listen.clone());
    let shutdown = Shutdown::listen()?;
    serve_engine(engine, plugins, &listen, false, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `dossier keys create`: prints the key once.
pub async fn keys_create(
    config: &Path,
    plugins: &PluginDir,
    workspace: Option<&str>,
    role: &str,
    name: &str,
    expires_in: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let engine = engine(config, plugins).await?;
    let role: Role = role
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--role: {e}"))?;
    let ws = workspace.unwrap_or(engine.workspace());
    dossier_core::DataKey::new(ws.to_string()).map_err(|e| anyhow::anyhow!("--workspace: {e}"))?;
    let expires_at = expires_in
        .map(|e| {
            dossier_sync::config::parse_interval(e)
                .map(|d| chrono::Utc::now().timestamp_micros() + d.as_micros() as i64)
                .map_err(|e| anyhow::anyhow!("--expires-in: {e}"))
        })
        .transpose()?;
    let (key, token) = engine
        .store()
        .create_key(ws, name, role, expires_at)
        .await?;
    println!("{token}");
    eprintln!(
        "created key {} ({} role in workspace {}{}); it is shown only this once: store it now",
        key.id,
        key.role,
        key.workspace,
        key.expires_at
            .map(|e| format!(
                ", expires {}",
                dossier_core::value::from_micros(e).format("%Y-%m-%d %H:%M UTC")
            ))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// `dossier keys list`.
pub async fn keys_list(
    config: &Path,
    plugins: &PluginDir,
    workspace: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let engine = engine_read_only(config, plugins).await?;
    let fmt = |t: Option<i64>| {
        t.map(|t| {
            dossier_core::value::from_micros(t)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:<12}  {:<16} {:<6} {:<16} {:<16} {:<16} {:<16} name",
        "id", "workspace", "role", "created", "expires", "revoked", "last used"
    );
    for k in engine.store().keys(workspace).await? {
        println!(
            "{:<12}  {:<16} {:<6} {:<16} {:<16} {:<16} {:<16} {}",
            k.id,
            k.workspace,
            k.role,
            fmt(Some(k.created_at)),
            fmt(k.expires_at),
            fmt(k.revoked_at),
            fmt(k.last_used_at),
            k.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `dossier keys revoke`.
pub async fn keys_revoke(config: &Path, plugins: &PluginDir, id: &str) -> anyhow::Result<ExitCode> {
    let engine = engine(config, plugins).await?;
    let key = engine.store().revoke_key(id).await.map_err(|e| match e {
        dossier_store::StoreError::NotFound { .. } => {
            anyhow::anyhow!("no API key {id:?}; `dossier keys list` shows the keys")
        }
        e => e.into(),
    })?;
    println!(
        "revoked key {} ({} role in workspace {})",
        key.id, key.role, key.workspace
    );
    Ok(ExitCode::SUCCESS)
}
