//! Running a sync: read → map → resolve → upsert → commit, one transaction per batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dossier_connector::{Batch, Registry, Source, StreamConfig, StreamState};
use dossier_core::{CompiledMapping, CoreError, DataValue, MappedRecord, Target};
use dossier_store::{BatchWrite, SourceRow, SqlStore, StreamStats, WriteGroup};
use futures::{FutureExt as _, StreamExt};
use serde::Serialize;

use crate::config::{Loaded, SourceConfig};
use crate::{SyncError, SyncEvent, SyncEvents};

/// Hears about a sync's progress (a terminal progress bar, a log line, a subscription).
pub trait Progress: Send + Sync {
    fn stream_started(&self, _stream: &str) {}
    fn batch_committed(&self, _stream: &str, _rows: u64) {}
    fn stream_finished(&self, _stream: &str, _stats: &StreamStats) {}
    /// A bulk load left `contacts` contacts' aggregates and session data to compute.
    fn settle_started(&self, _contacts: u64) {}
    /// `done` of them are computed.
    fn settled(&self, _done: u64) {}
    fn settle_finished(&self, _contacts: u64) {}
}

/// Passes progress on and broadcasts it as [`SyncEvent`]s.
struct Broadcasting<'a> {
    inner: &'a dyn Progress,
    events: &'a SyncEvents,
    workspace: &'a str,
    source: &'a str,
    run_id: i64,
    rows: Mutex<BTreeMap<String, u64>>,
}

impl Progress for Broadcasting<'_> {
    fn stream_started(&self, stream: &str) {
        self.inner.stream_started(stream);
        self.events.send(SyncEvent::StreamStarted {
            workspace: self.workspace.into(),
            source: self.source.into(),
            run_id: self.run_id,
            stream: stream.into(),
        });
    }

    fn batch_committed(&self, stream: &str, rows: u64) {
        self.inner.batch_committed(stream, rows);
        let stream_rows = {
            let mut all = self.rows.lock().expect("row counts");
            let n = all.entry(stream.to_string()).or_default();
            *n += rows;
            *n
        };
        self.events.send(SyncEvent::BatchCommitted {
            workspace: self.workspace.into(),
            source: self.source.into(),
            run_id: self.run_id,
            stream: stream.into(),
            rows,
            stream_rows,
        });
    }

    fn stream_finished(&self, stream: &str, stats: &StreamStats) {
        self.inner.stream_finished(stream, stats);
        self.events.send(SyncEvent::StreamFinished {
            workspace: self.workspace.into(),
            source: self.source.into(),
            run_id: self.run_id,
            stream: stream.into(),
            stats: stats.clone(),
        });
    }

    fn settle_started(&self, contacts: u64) {
        self.inner.settle_started(contacts);
    }

    fn settled(&self, done: u64) {
        self.inner.settled(done);
    }

    fn settle_finished(&self, contacts: u64) {
        self.inner.settle_finished(contacts);
    }
}

/// Progress that nobody watches.
#[derive(Debug, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: i64,
    pub source: String,
    pub streams: BTreeMap<String, StreamStats>,
    pub elapsed: Duration,
    pub error: Option<String>,
}

impl RunSummary {
    pub fn rows_read(&self) -> u64 {
        self.streams.values().map(|s| s.read).sum()
    }
    pub fn rows_written(&self) -> u64 {
        self.streams.values().map(|s| s.written).sum()
    }
    pub fn rows_rejected(&self) -> u64 {
        self.streams.values().map(|s| s.rejected).sum()
    }
}

/// Runs syncs of the configured sources into the store.
pub struct Engine {
    store: SqlStore,
    registry: Registry,
    loaded: Loaded,
    /// The runs in progress in this process, with their cancel flags (see [`Engine::stop_runs`]).
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// Set once the process is shutting down: no run starts any more.
    stopping: AtomicBool,
    events: SyncEvents,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// Releases a source's running mark however the run ends.
struct RunningGuard<'a>(&'a Mutex<HashMap<String, Arc<AtomicBool>>>, String);
impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().expect("running set").remove(&self.1);
    }
}

impl Engine {
    /// Registers the configured sources and aggregate rules in the store (backfilling new rules).
    pub async fn new(
        store: SqlStore,
        registry: Registry,
        loaded: Loaded,
    ) -> Result<Arc<Self>, SyncError> {
        let ws = loaded.config.workspace.clone();
        store.ensure_workspace(&ws).await?;
        let displayed = loaded.display_configs.iter().zip(&loaded.display_streams);
        for (s, (display, streams)) in loaded.config.sources.iter().zip(displayed) {
            store
                .upsert_source(
                    &ws,
                    &SourceRow {
                        name: s.name.clone(),
                        connector: s.connector.clone(),
                        config: display.clone(),
                        streams: s.streams.iter().map(|st| st.name.clone()).collect(),
                        stream_configs: streams.clone(),
                        schedule: s.schedule.clone(),
                    },
                )
                .await?;
        }
        store
            .set_identity_policy(&ws, &loaded.config.identity)
            .await?;
        let rules = loaded.config.rules().map_err(SyncError::Config)?;
        let changed = store.set_rules(&ws, &rules).await?;
        if changed > 0 {
            tracing::info!(changed, "aggregate rules updated and backfilled");
        }
        Ok(Self::read_only(store, registry, loaded))
    }

    /// The engine of a command that only reads the store (`runs`, `query`, ...): nothing is
    /// registered, so the store is left as the last `sync` or `serve` wrote it.
    pub fn read_only(store: SqlStore, registry: Registry, loaded: Loaded) -> Arc<Self> {
        Arc::new(Self {
            store,
            registry,
            loaded,
            running: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            events: SyncEvents::default(),
        })
    }

    /// Brings what depends on time and on the synced data up to date: windowed aggregates,
    /// then saved segments' members and their change feed.
    pub async fn refresh_derived(&self) -> Result<(), SyncError> {
        let ws = self.workspace();
        // What a crashed bulk load left; not while a load runs here, which settles its own
        // contacts once at its end rather than minute by minute.
        if self.running.lock().expect("running set").is_empty() {
            self.settle(ws, &NoProgress).await?;
        }
        let refolded = self.store.refresh_windows(ws).await?;
        if refolded > 0 {
            tracing::info!(contacts = refolded, "windowed aggregates refolded");
        }
        let changes = self.store.refresh_segments(ws).await?;
        if changes > 0 {
            tracing::info!(changes, "segment membership changed");
        }
        Ok(())
    }

    /// Computes the aggregates and session data that bulk loads deferred (see
    /// [`BatchWrite::defer_derived`]), with progress.
    async fn settle(&self, ws: &str, progress: &dyn Progress) -> Result<(), SyncError> {
        let total = self.store.deferred_contacts(ws).await?;
        if total == 0 {
            return Ok(());
        }
        let started = Instant::now();
        progress.settle_started(total);
        let n = self
            .store
            .settle_deferred(ws, &mut |done| progress.settled(done))
            .await?;
        progress.settle_finished(n);
        tracing::info!(
            contacts = n,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "aggregates and session data computed for the contacts a bulk load touched"
        );
        Ok(())
    }

    /// Stops every run of this process at its next batch (what each committed stays) and
    /// refuses new ones: what a process does as it shuts down.
    pub fn stop_runs(&self) {
        let running = self.running.lock().expect("running set");
        self.stopping.store(true, Ordering::Relaxed);
        for cancel in running.values() {
            cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Every run's progress, for metrics and subscriptions.
    pub fn events(&self) -> &SyncEvents {
        &self.events
    }

    pub fn store(&self) -> &SqlStore {
        &self.store
    }

    pub fn workspace(&self) -> &str {
        &self.loaded.config.workspace
    }

    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    async fn connect(&self, source: &SourceConfig) -> Result<Box<dyn Source>, SyncError> {
        if let Some(why) = self.loaded.unresolved(&source.name) {
            return Err(SyncError::Config(format!(
                "source {:?}: {why}",
                source.name
            )));
        }
        let err = |error| SyncError::Connector {
            source_name: source.name.clone(),
            error,
        };
        let factory = self.registry.get(&source.connector).map_err(err)?;
        factory.connect(source.config.clone()).await.map_err(err)
    }

    fn stream_config(st: &crate::config::StreamEntry) -> StreamConfig {
        StreamConfig {
            name: st.name.clone(),
            settings: st.read.clone(),
        }
    }

    /// Connects and checks every stream's mapping against the fields the source returns.
    async fn compile(
        &self,
        source: &SourceConfig,
        conn: &dyn Source,
    ) -> Result<Vec<(String, CompiledMapping)>, SyncError> {
        let mut out = vec![];
        for st in &source.streams {
            out.push((
                st.name.clone(),
                self.compile_stream(source, conn, st).await?,
            ));
        }
        Ok(out)
    }

    /// Connects and checks one stream's mapping against the fields the source returns.
    async fn compile_stream(
        &self,
        source: &SourceConfig,
        conn: &dyn Source,
        st: &crate::config::StreamEntry,
    ) -> Result<CompiledMapping, SyncError> {
        let info = conn
            .describe(&Self::stream_config(st))
            .await
            .map_err(|error| SyncError::Connector {
                source_name: source.name.clone(),
                error,
            })?;
        if !info.sampled {
            return Ok(st.mapping.compile(&source.name, &st.name, &info.fields)?);
        }
        let mapping = st
            .mapping
            .compile_sampled(&source.name, &st.name, &info.fields)?;
        for field in mapping.absent() {
            tracing::warn!(source = %source.name, stream = %st.name, field, "the mapping names a field none of the sampled records holds; it reads as missing");
        }
        Ok(mapping)
    }

    /// Everything wrong with a source: connection, streams, mappings, and mappings that
    /// reject more of a sample of their stream than `max_rejected`. Empty when all is well.
    pub async fn check(&self, source: &str) -> Result<Vec<String>, SyncError> {
        Ok(self.check_report(source).await?.problems)
    }

    /// Like [`Engine::check`], with what a sample of each stream showed.
    pub async fn check_report(&self, source: &str) -> Result<CheckReport, SyncError> {
        let source = self.loaded.config.source(source)?;
        let conn = self.connect(source).await?;
        let streams: Vec<_> = source.streams.iter().map(Self::stream_config).collect();
        let found = conn.check(&streams).await;
        // A problem of the whole source (the connection) stops here: every stream would only
        // repeat it. Otherwise every stream is checked, so one run of `check` lists everything
        // to fix; a stream the connector already refused is not compiled or sampled again.
        let whole = found.iter().any(|p| p.stream.is_none());
        let refused: HashSet<String> = found.iter().filter_map(|p| p.stream.clone()).collect();
        let mut report = CheckReport {
            problems: found
                .into_iter()
                .map(|p| match p.stream {
                    Some(s) => format!("stream {s:?}: {}", p.message),
                    None => p.message,
                })
                .collect(),
            notes: vec![],
        };
        if whole {
            return Ok(report);
        }
        if source.streams.is_empty() {
            report.notes.push(format!(
                "the connection works and no streams are configured yet; `dossier discover {}` lists what it offers",
                source.name
            ));
        }
        for st in &source.streams {
            if refused.contains(&st.name) {
                continue;
            }
            let mapping = match self.compile_stream(source, conn.as_ref(), st).await {
                Ok(m) => m,
                Err(e) => {
                    report.problems.push(e.to_string());
                    continue;
                }
            };
            let absent: Vec<&str> = mapping.absent().collect();
            if !absent.is_empty() {
                report.notes.push(format!(
                    "stream {:?}: the mapping names {} that none of the sampled records holds; read as missing",
                    st.name,
                    absent.join(", ")
                ));
            }
            let (name, mapping) = (&st.name, &mapping);
            let sample = self.sample(source, conn.as_ref(), st, mapping).await?;
            let Some(sample) = sample else { continue };
            report
                .problems
                .extend(self.unsummable(name, &sample.records));
            let rejected = sample.rejected.len() as u64;
            if rejected == 0 {
                continue;
            }
            let mut reasons = vec![];
            keep_reasons(&mut reasons, &sample.rejected);
            let line = format!(
                "stream {name:?}: the mapping would reject {rejected} of the first {} records: {}",
                sample.rows,
                reasons.join("; ")
            );
            if source.rejects_too_many(rejected, sample.rows) {
                report.problems.push(format!(
                    "{line} (more than max_rejected = {} allows)",
                    source.max_rejected
                ));
            } else {
                report.notes.push(line);
            }
        }
        Ok(report)
    }

    /// The sums and averages over session data that a stream's sample gives as something
    /// other than numbers (text a source keeps in a numeric-looking column): they would
    /// silently add up to nothing.
    fn unsummable(&self, stream: &str, records: &[MappedRecord]) -> Vec<String> {
        let mut out = vec![];
        for a in &self.loaded.config.aggregates {
            if !matches!(a.op, dossier_core::AggOp::Sum | dossier_core::AggOp::Avg) {
                continue;
            }
            let Some(field) = a.field.as_deref() else {
                continue;
            };
            let bad = records.iter().find_map(|r| match r {
                MappedRecord::Session(s) if s.kind == a.kind => s
                    .data
                    .iter()
                    .find(|(k, v)| k.as_str() == field && !matches!(v, DataValue::Number(_))),
                _ => None,
            });
            if let Some((_, v)) = bad {
                out.push(format!(
                    "aggregate {:?} adds up data.{field} of {:?} sessions, but stream {stream:?} gives {} there, not a number; map it with `| number`",
                    a.name,
                    a.kind,
                    v.to_json()
                ));
            }
        }
        out
    }

    /// The first records of a stream, mapped (`None` when the stream is empty).
    async fn sample(
        &self,
        source: &SourceConfig,
        conn: &dyn Source,
        st: &crate::config::StreamEntry,
        mapping: &CompiledMapping,
    ) -> Result<Option<MappedBatch>, SyncError> {
        let err = |error| SyncError::Connector {
            source_name: source.name.clone(),
            error,
        };
        let mut batches = conn
            .read(&Self::stream_config(st), None, CHECK_SAMPLE)
            .map_err(err)?;
        let Some(batch) = batches.next().await.transpose().map_err(err)? else {
            return Ok(None);
        };
        Ok(Some(map_batch(mapping, batch, &source.name, &st.name)?))
    }

    /// The source's streams as the connector discovers them.
    pub async fn discover(&self, source: &str) -> Result<dossier_connector::Catalog, SyncError> {
        let source = self.loaded.config.source(source)?;
        let conn = self.connect(source).await?;
        conn.discover().await.map_err(|error| SyncError::Connector {
            source_name: source.name.clone(),
            error,
        })
    }

    /// Syncs `source` (all streams, or those named), recording the run.
    pub async fn sync(
        &self,
        source: &str,
        only: Option<&[String]>,
        trigger: &str,
        progress: &dyn Progress,
    ) -> Result<RunSummary, SyncError> {
        self.sync_with(source, only, trigger, progress, &RunControl::default())
            .await
    }

    /// Like [`Engine::sync`], driven by a scheduler: under its lease (every batch checks it
    /// still holds it), for a schedule slot, and stoppable through `control.cancel` at the
    /// next batch.
    pub async fn sync_with(
        &self,
        source: &str,
        only: Option<&[String]>,
        trigger: &str,
        progress: &dyn Progress,
        control: &RunControl,
    ) -> Result<RunSummary, SyncError> {
        let cfg = self.loaded.config.source(source)?.clone();
        {
            let mut running = self.running.lock().expect("running set");
            // Checked under the lock `stop_runs` takes: a run either sees the shutdown here
            // or is in the set when its flag is raised.
            if self.stopping.load(Ordering::Relaxed) {
                return Err(SyncError::Cancelled);
            }
            if running.contains_key(&cfg.name) {
                return Err(SyncError::AlreadyRunning(cfg.name.clone()));
            }
            running.insert(cfg.name.clone(), control.cancel.clone());
        }
        let _guard = RunningGuard(&self.running, cfg.name.clone());
        if cfg.streams.is_empty() {
            return Err(SyncError::Config(format!(
                "source {:?} has no streams yet; `dossier discover {}` lists what it offers, then add [[sources.streams]] with a mapping",
                cfg.name, cfg.name
            )));
        }
        if let Some(only) = only
            && let Some(bad) = only
                .iter()
                .find(|n| !cfg.streams.iter().any(|s| &s.name == *n))
        {
            return Err(SyncError::Config(format!(
                "source {:?} has no stream {bad:?}",
                cfg.name
            )));
        }
        let ws = self.workspace().to_string();
        if self.store.backend() == dossier_store::Backend::Sqlite {
            let stale = self.store.interrupt_stale_runs(&ws, &cfg.name).await?;
            if stale > 0 {
                tracing::warn!(source = %cfg.name, runs = stale, "earlier runs never finished; marked interrupted");
            }
        }
        let run_id = self
            .store
            .start_run_for(
                &ws,
                &cfg.name,
                trigger,
                control.due,
                control.lease_owner.as_deref(),
            )
            .await?;
        if let Some(owner) = &control.lease_owner {
            self.store
                .set_lease_run(&ws, &cfg.name, owner, run_id)
                .await?;
        }
        let started = Instant::now();
        let mut stats = BTreeMap::new();
        self.events.send(SyncEvent::RunStarted {
            workspace: ws.clone(),
            source: cfg.name.clone(),
            run_id,
            trigger: trigger.to_string(),
        });
        let progress = Broadcasting {
            inner: progress,
            events: &self.events,
            workspace: &ws,
            source: &cfg.name,
            run_id,
            rows: Mutex::new(BTreeMap::new()),
        };
        let limit = cfg.parsed_timeout().map_err(SyncError::Config)?;
        let run = self.run(&cfg, only, run_id, trigger, &mut stats, &progress, control);
        let result = match limit {
            None => run.await,
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(r) => r,
                Err(_) => Err(SyncError::TimedOut(limit)),
            },
        };
        // Batches committed, even by a run that failed or was cancelled, count: what they
        // deferred is computed now (or, if this fails, by the next run or sweep).
        let result = match self.settle(&ws, &progress).await {
            Ok(()) => result,
            Err(e) if result.is_ok() => Err(e),
            Err(e) => {
                tracing::warn!(source = %cfg.name, run_id, error = %e, "computing deferred aggregates failed; the next run does it");
                result
            }
        };
        let error = result.as_ref().err().map(ToString::to_string);
        if let Some(e) = &error {
            tracing::warn!(source = %cfg.name, run_id, error = %e, "sync failed");
        }
        let status = match &result {
            Ok(()) => "succeeded",
            Err(SyncError::Cancelled) => "cancelled",
            Err(_) => "failed",
        };
        self.store
            .finish_run_as(run_id, status, error.as_deref(), &stats)
            .await?;
        // Segments and windows follow what the run wrote; time alone is the periodic sweep's
        // job. A failure here is logged: the run itself is recorded and stands.
        let changed = stats.values().any(|s| s.written > 0 || s.deleted > 0);
        if changed && let Err(e) = self.refresh_derived().await {
            tracing::warn!(source = %cfg.name, run_id, error = %e, "refreshing segments and windowed aggregates after the run failed");
        }
        let summary = RunSummary {
            run_id,
            source: cfg.name.clone(),
            streams: stats,
            elapsed: started.elapsed(),
            error,
        };
        self.events.send(SyncEvent::RunFinished {
            workspace: ws.clone(),
            source: cfg.name.clone(),
            run_id,
            status: status.to_string(),
            error: summary.error.clone(),
            elapsed: summary.elapsed,
        });
        tracing::info!(source = %cfg.name, run_id, read = summary.rows_read(), written = summary.rows_written(), "sync finished");
        match result {
            Ok(()) => Ok(summary),
            Err(e) => Err(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        cfg: &SourceConfig,
        only: Option<&[String]>,
        run_id: i64,
        trigger: &str,
        stats: &mut BTreeMap<String, StreamStats>,
        progress: &dyn Progress,
        control: &RunControl,
    ) -> Result<(), SyncError> {
        let mut retry = Retry::new(cfg)?;
        let (conn, mut mappings) = loop {
            let attempt = async {
                let conn = self.connect(cfg).await?;
                let mappings = self.compile(cfg, conn.as_ref()).await?;
                Ok::<_, SyncError>((conn, mappings))
            };
            match attempt.await {
                Ok(ok) => break ok,
                // Someone is watching a run they started: a source that cannot be reached
                // now says so at once, rather than after minutes of retries.
                Err(e) if INTERACTIVE.contains(&trigger) && e.is_unreachable() => return Err(e),
                Err(e) => retry.wait_or_fail(cfg, "", e, None, control).await?,
            }
        };
        // Contacts first, so sessions find their contact's record already there.
        mappings.sort_by_key(|(_, m)| m.target() != Target::Contact);
        for (name, mapping) in &mappings {
            if only.is_some_and(|o| !o.contains(name)) {
                continue;
            }
            progress.stream_started(name);
            let stream_started = Instant::now();
            let mut stat = stats.remove(name).unwrap_or_default();
            let mut reasons = vec![];
            let requests_retried = conn.retries();
            let result = loop {
                let read_before = stat.read;
                match self
                    .read_stream(
                        cfg,
                        conn.as_ref(),
                        name,
                        mapping,
                        run_id,
                        &mut stat,
                        &mut reasons,
                        progress,
                        control,
                    )
                    .await
                {
                    Ok(()) => break Ok(()),
                    // A watched run whose source does not answer at all fails now, not
                    // after minutes of retries; one that got somewhere retries as any run.
                    Err(e)
                        if INTERACTIVE.contains(&trigger)
                            && stat.read == read_before
                            && e.is_unreachable() =>
                    {
                        break Err(e);
                    }
                    Err(e) => {
                        if let Err(e) = retry
                            .wait_or_fail(cfg, name, e, Some(&mut stat), control)
                            .await
                        {
                            break Err(e);
                        }
                    }
                }
            };
            // What the connector retried inside (an HTTP client's retries) counts too.
            stat.retries += conn.retries().saturating_sub(requests_retried);
            stats.insert(name.clone(), stat.clone());
            result?;
            tracing::info!(
                source = %cfg.name,
                stream = %name,
                read = stat.read,
                written = stat.written,
                elapsed_ms = stream_started.elapsed().as_millis() as u64,
                "stream read"
            );
            progress.stream_finished(name, &stat);
            if cfg.rejects_too_many(stat.rejected, stat.read) {
                return Err(SyncError::TooManyRejected {
                    stream: name.clone(),
                    rejected: stat.rejected,
                    read: stat.read,
                    max_rejected: cfg.max_rejected,
                    reasons,
                });
            }
            if stat.rejected > 0 {
                tracing::warn!(source = %cfg.name, stream = %name, rejected = stat.rejected, read = stat.read, first = ?reasons.first(), "records rejected by the mapping");
            }
        }
        Ok(())
    }

    /// Reads one stream from its committed checkpoint to its end, a batch per transaction.
    #[allow(clippy::too_many_arguments)]
    async fn read_stream(
        &self,
        cfg: &SourceConfig,
        conn: &dyn Source,
        name: &str,
        mapping: &CompiledMapping,
        run_id: i64,
        stat: &mut StreamStats,
        reasons: &mut Vec<String>,
        progress: &dyn Progress,
        control: &RunControl,
    ) -> Result<(), SyncError> {
        let ws = self.workspace();
        let st = cfg
            .streams
            .iter()
            .find(|s| s.name == name)
            .expect("compiled from config");
        let state = self
            .store
            .stream_state(ws, &cfg.name, name)
            .await?
            .map(StreamState);
        // A first read is a bulk load: its contacts' aggregates and session data are
        // computed once at the end of the run rather than batch by batch; so is the rest of
        // a bulk load that a crash interrupted.
        let defer_derived = state.is_none() || self.store.deferred_contacts(ws).await? > 0;
        // Rows are mapped to records on the read-ahead task too, beside the store's writes.
        let (source_name, stream_name, mapping) =
            (cfg.name.clone(), name.to_string(), mapping.clone());
        let mut batches = crate::read_ahead::read_ahead(
            conn.read(&Self::stream_config(st), state, cfg.batch_size)
                .map_err(|error| SyncError::Connector {
                    source_name: cfg.name.clone(),
                    error,
                })?
                .map(move |batch| {
                    batch.map(|batch| map_batch(&mapping, batch, &source_name, &stream_name))
                })
                .boxed(),
        );
        let mut full_refresh = false;
        // Batches are written in groups (see `WriteGroup`) of up to `bulk_commit_rows` rows:
        // an incremental read's change is scattered over the store's index pages as a bulk
        // load's is, and each page is written once per group. Returning while a group is open
        // rolls it back, which is always safe; where the written batches are sound (the
        // source failed, a cancel) they are committed first, so the next run resumes after
        // them.
        let mut open: Option<OpenGroup> = None;
        loop {
            let next = match batches.next().now_or_never() {
                Some(next) => next,
                None => {
                    // Nothing read ahead yet: commit rather than hold the store's writer (the
                    // one SQLite connection) while the source works, however slow it is.
                    commit_group(open.take(), name, stat, progress).await?;
                    batches.next().await
                }
            };
            let Some(batch) = next else {
                break;
            };
            if control.cancelled() {
                commit_group(open.take(), name, stat, progress).await?;
                return Err(SyncError::Cancelled);
            }
            let batch = batch
                .map_err(|error| SyncError::Connector {
                    source_name: cfg.name.clone(),
                    error,
                })
                .and_then(|mapped| mapped.map_err(SyncError::from));
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    commit_group(open.take(), name, stat, progress).await?;
                    return Err(e);
                }
            };
            full_refresh = batch.state.is_full_refresh();
            keep_reasons(reasons, &batch.rejected);
            let write = BatchWrite {
                source: cfg.name.clone(),
                stream: name.to_string(),
                records: batch.records,
                rejected: batch.rejected,
                state: batch.state.0,
                run_id: Some(run_id),
                mark_seen: full_refresh,
                defer_derived,
                lease_owner: control.lease_owner.clone(),
            };
            let group = match &mut open {
                Some(group) => group,
                None => open.insert(OpenGroup {
                    group: self.store.begin_group().await?,
                    opened: Instant::now(),
                    stat: StreamStats::default(),
                }),
            };
            // An error here returns with the group open: it rolls back.
            let outcome = group.group.apply(ws, &write).await?;
            group.stat.read += batch.rows;
            group.stat.written += outcome.written;
            group.stat.rejected += write.rejected.len() as u64;
            if group.stat.read >= cfg.bulk_commit_rows || group.opened.elapsed() >= GROUP_TIME {
                commit_group(open.take(), name, stat, progress).await?;
            }
        }
        commit_group(open.take(), name, stat, progress).await?;
        // Only a read that returned rows detects deletions: an empty read never wipes a stream.
        if full_refresh {
            stat.deleted = self
                .store
                .mark_unseen_deleted(ws, &cfg.name, name, run_id)
                .await?;
        }
        Ok(())
    }
}

/// The triggers of runs someone started and waits for (`dossier sync`, `dossier demo`).
const INTERACTIVE: [&str; 2] = ["manual", "demo"];

/// Records `check` maps from the start of each stream.
const CHECK_SAMPLE: usize = 200;

/// What `check` found: problems (it fails) and notes (worth knowing, not wrong).
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

/// The rejections a failing run names.
const REASONS_KEPT: usize = 3;

/// Keeps the first few rejections as `record <id>: <why>`.
fn keep_reasons(kept: &mut Vec<String>, rejected: &[(Option<String>, String)]) {
    for (id, why) in rejected
        .iter()
        .take(REASONS_KEPT.saturating_sub(kept.len()))
    {
        kept.push(format!("record {}: {why}", id.as_deref().unwrap_or("?")));
    }
}

/// A batch of rows as records, and the rows its mapping refused.
struct MappedBatch {
    rows: u64,
    records: Vec<MappedRecord>,
    rejected: Vec<(Option<String>, String)>,
    state: StreamState,
}

fn map_batch(
    mapping: &CompiledMapping,
    batch: Batch,
    source: &str,
    stream: &str,
) -> Result<MappedBatch, CoreError> {
    let bound = mapping.bind(&batch.fields)?;
    let mut records: Vec<MappedRecord> = Vec::with_capacity(batch.rows.len());
    let mut rejected = vec![];
    let mut dropped = vec![];
    for row in &batch.rows {
        let before = dropped.len();
        match bound.apply_noting(row, &mut dropped) {
            Ok(r) => {
                if dropped.len() > before {
                    tracing::debug!(source = %source, stream = %stream, record = ?bound.record_id(row).ok(), left_out = ?&dropped[before..], "profile values left out");
                }
                records.push(r)
            }
            Err(e) => {
                let id = bound.record_id(row).ok();
                tracing::debug!(source = %source, stream = %stream, record = ?id, error = %e, "record rejected");
                rejected.push((id, e));
            }
        }
    }
    if let Some(first) = dropped.first() {
        // One line per batch, not per record: a column of unreadable values is one problem.
        tracing::warn!(source = %source, stream = %stream, values = dropped.len(), first = %first, "profile values that cannot be read were left out; their records are kept");
    }
    Ok(MappedBatch {
        rows: batch.rows.len() as u64,
        records,
        rejected,
        state: batch.state,
    })
}

/// A group of batches commits once it has held its transaction this long, whatever its rows
/// (`bulk_commit_rows`): meanwhile the one SQLite writer connection, and on PostgreSQL the
/// source's schedule row, are taken.
const GROUP_TIME: Duration = Duration::from_secs(2);

/// A read's open group of batches, with what they hold: counted into the stream's stats and
/// reported as progress only once committed.
struct OpenGroup {
    group: WriteGroup,
    opened: Instant,
    stat: StreamStats,
}

async fn commit_group(
    open: Option<OpenGroup>,
    stream: &str,
    stat: &mut StreamStats,
    progress: &dyn Progress,
) -> Result<(), SyncError> {
    let Some(open) = open else {
        return Ok(());
    };
    open.group.commit().await?;
    stat.read += open.stat.read;
    stat.written += open.stat.written;
    stat.rejected += open.stat.rejected;
    progress.batch_committed(stream, open.stat.read);
    Ok(())
}

/// How a run is driven from outside: the scheduler's lease, the slot it serves, a cancel flag.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// Set to stop the run at the next batch (its committed batches stay).
    pub cancel: Arc<AtomicBool>,
    /// The scheduler whose lease every batch checks before committing.
    pub lease_owner: Option<String>,
    /// The schedule slot served (epoch microseconds).
    pub due: Option<i64>,
}

impl RunControl {
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Retries within one run: exponential backoff with jitter, up to the source's attempts.
struct Retry {
    waits: backon::ExponentialBackoff,
}

/// The retried errors a run keeps in its history, per stream.
const RETRY_ERRORS_KEPT: usize = 5;

impl Retry {
    fn new(cfg: &SourceConfig) -> Result<Self, SyncError> {
        use backon::BackoffBuilder as _;
        let (initial, max) = cfg.retry.waits().map_err(SyncError::Config)?;
        Ok(Self {
            waits: backon::ExponentialBuilder::default()
                .with_min_delay(initial)
                .with_max_delay(max)
                .with_max_times(cfg.retry.attempts as usize)
                .with_jitter()
                .build(),
        })
    }

    /// Waits before another attempt if `error` may pass and attempts remain; else gives it back.
    async fn wait_or_fail(
        &mut self,
        cfg: &SourceConfig,
        stream: &str,
        error: SyncError,
        stat: Option<&mut StreamStats>,
        control: &RunControl,
    ) -> Result<(), SyncError> {
        if !error.is_retryable() || control.cancelled() {
            return Err(error);
        }
        let Some(wait) = self.waits.next() else {
            return Err(error);
        };
        tracing::warn!(source = %cfg.name, stream, error = %error, wait_ms = wait.as_millis() as u64, "retrying after a retryable error");
        if let Some(stat) = stat {
            stat.retries += 1;
            if stat.retry_errors.len() < RETRY_ERRORS_KEPT {
                stat.retry_errors.push(error.to_string());
            }
        }
        // Sleep in short steps so a cancel does not wait out a long backoff.
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if control.cancelled() {
                return Err(SyncError::Cancelled);
            }
            tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(100))).await;
        }
        Ok(())
    }
}
