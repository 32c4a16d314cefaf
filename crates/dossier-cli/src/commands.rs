//! The commands that work from a config file.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use dossier_gateway::{GatewayConfig, SyncTrigger};
use dossier_plugin_host::PluginDir;
use dossier_store::SqlStore;
use dossier_sync::{Config, Engine, NoProgress, SyncError};

use crate::connectors::PluginAdmin;
use crate::progress::Bars;

/// Loads the installed plugins and the config, and opens the store.
pub async fn engine(config: &Path, plugins: &PluginDir) -> anyhow::Result<Arc<Engine>> {
    if !config.exists() {
        anyhow::bail!(
            "config file {} not found; pass --config <file>, set DOSSIER_CONFIG, or run `dossier demo` to create a sample",
            config.display()
        );
    }
    let registry = crate::connectors::registry(plugins);
    let loaded = Config::load(config, &registry)?;
    let url = loaded.config.store.url.clone();
    let store = SqlStore::open(&url)
        .await
        .with_context(|| "opening the store (check `store.url` in the config)")?;
    Ok(Engine::new(store, registry, loaded).await?)
}

/// Lets the gateway trigger syncs through the engine.
pub struct EngineTrigger(pub Arc<Engine>);

#[async_trait::async_trait]
impl SyncTrigger for EngineTrigger {
    async fn trigger(&self, source: &str) -> Result<i64, String> {
        match self.0.sync(source, None, "api", &NoProgress).await {
            Ok(s) => Ok(s.run_id),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The gateway's view of the engine's connectors and of the plugin directory.
fn admin(engine: &Engine, plugins: &PluginDir) -> Arc<PluginAdmin> {
    Arc::new(PluginAdmin {
        registry: engine.registry().clone(),
        dir: plugins.clone(),
    })
}

pub fn gateway_config(engine: &Engine) -> GatewayConfig {
    GatewayConfig {
        workspace: engine.workspace().to_string(),
        max_page_size: engine.loaded().config.server.max_page_size,
        allow_plugin_install: engine.loaded().config.server.allow_plugin_install,
        ..GatewayConfig::default()
    }
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
    let result = engine.sync(source, only, "manual", &bars).await;
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
                    for (stream, id, err) in engine.store().rejected(engine.workspace(), source, 5).await? {
                        println!("  rejected {stream} record {}: {err}", id.unwrap_or_else(|| "?".into()));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (SyncError::UnknownSource { .. } | SyncError::AlreadyRunning(_) | SyncError::Config(_))) => Err(e.into()),
        Err(e) => Err(anyhow::anyhow!(e).context(format!(
            "sync of {source:?} failed; committed batches are kept and the next run resumes from them"
        ))),
    }
}

pub async fn check(config: &Path, plugins: &PluginDir, source: &str) -> anyhow::Result<ExitCode> {
    let engine = engine(config, plugins).await?;
    let problems = engine.check(source).await?;
    if problems.is_empty() {
        println!("{source}: ok");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
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
    Ok(ExitCode::SUCCESS)
}

pub async fn query(
    config: &Path,
    plugins: &PluginDir,
    document: &str,
    variables: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let engine = engine(config, plugins).await?;
    let variables = variables
        .map(serde_json::from_str)
        .transpose()
        .context("--variables must be a JSON object")?;
    let schema = dossier_gateway::build_schema(
        engine.store().clone(),
        Some(Arc::new(EngineTrigger(engine.clone()))),
        Some(admin(&engine, plugins)),
        gateway_config(&engine),
    );
    let out = dossier_gateway::execute(&schema, document, variables).await;
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
    let engine = engine(config, plugins).await?;
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

/// Serves GraphQL until interrupted, running scheduled syncs.
pub async fn serve_engine(
    engine: Arc<Engine>,
    plugins: &PluginDir,
    listen: &str,
    open_note: bool,
) -> anyhow::Result<()> {
    let schema = dossier_gateway::build_schema(
        engine.store().clone(),
        Some(Arc::new(EngineTrigger(engine.clone()))),
        Some(admin(&engine, plugins)),
        gateway_config(&engine),
    );
    let app = dossier_gateway::router(schema, engine.store().clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}; is another server running there? pass --listen <addr:port>"))?;
    spawn_schedules(&engine);
    let addr = listener.local_addr()?;
    println!("GraphQL: http://{addr}/graphql   (GraphiQL: http://{addr}/)");
    if open_note {
        println!(
            "note: this server has no API keys and is meant for local use; it listens on {addr}"
        );
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn spawn_schedules(engine: &Arc<Engine>) {
    for s in &engine.loaded().config.sources {
        let Some(every) = s
            .schedule
            .as_deref()
            .and_then(|s| dossier_sync::config::parse_interval(s).ok())
        else {
            continue;
        };
        let engine = engine.clone();
        let name = s.name.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = engine.sync(&name, None, "schedule", &NoProgress).await {
                    tracing::warn!(source = %name, error = %e, "scheduled sync failed");
                }
            }
        });
    }
}

pub async fn serve(
    config: &Path,
    plugins: &PluginDir,
    listen: Option<String>,
) -> anyhow::Result<ExitCode> {
    let engine = engine(config, plugins).await?;
    let listen = listen.unwrap_or_else(|| engine.loaded().config.server.listen.clone());
    serve_engine(engine, plugins, &listen, false).await?;
    Ok(ExitCode::SUCCESS)
}
