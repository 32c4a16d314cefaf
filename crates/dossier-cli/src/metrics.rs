//! The sync engine's Prometheus metrics, registered in the gateway's [`Metrics`] (served at
//! `/metrics`):
//!
//! - `dossier_rows_synced_total{source,stream}`: records committed, from the engine's batches;
//! - `dossier_sync_runs_total{source,status}`: runs that ended, `succeeded`, `failed` or
//!   `cancelled`;
//! - `dossier_sync_run_duration_seconds{source}`: how long runs took (histogram);
//! - `dossier_sync_consecutive_failures{source}`: failed runs since the last success;
//! - `dossier_sync_seconds_since_success{source}`: computed at each scrape from the last
//!   success (absent for a source that never succeeded).
//!
//! Counters and the histogram count the runs of this process, from its engine's events. The
//! last two come from the store's run history, read at start-up and every
//! [`HEALTH_REFRESH`] (so runs of other workers on the same store count), and follow this
//! process's runs at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dossier_gateway::Metrics;
use dossier_store::SqlStore;
use dossier_sync::{Engine, SyncEvent};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::broadcast;

/// How often the health gauges are read again from the store's run history.
pub(crate) const HEALTH_REFRESH: Duration = Duration::from_secs(60);

/// How many runs of a source the history is read back for its last success.
const HISTORY: usize = 200;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    source: String,
    stream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    source: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

fn run_histogram() -> Histogram {
    // 0.1 s to about 55 minutes.
    Histogram::new(exponential_buckets(0.1, 2.0, 16))
}

/// A source's health, from its run history.
#[derive(Debug, Clone, Default, PartialEq)]
struct SourceHealth {
    /// When its last successful run finished (epoch microseconds).
    last_success: Option<i64>,
    /// Failed runs since then.
    failures: u64,
}

/// The health gauges, computed at each scrape.
#[derive(Debug, Default)]
struct Health(Mutex<HashMap<String, SourceHealth>>);

impl Collector for Health {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = chrono::Utc::now().timestamp_micros();
        let mut sources: Vec<(String, SourceHealth)> = self
            .0
            .lock()
            .expect("sync health")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        sources.sort_by(|a, b| a.0.cmp(&b.0));
        let mut family = encoder.encode_descriptor(
            "dossier_sync_consecutive_failures",
            "Failed runs of a source since its last successful one",
            None,
            MetricType::Gauge,
        )?;
        for (source, h) in &sources {
            let labels = SourceLabels {
                source: source.clone(),
            };
            ConstGauge::new(i64::try_from(h.failures).unwrap_or(i64::MAX))
                .encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "dossier_sync_seconds_since_success",
            "Seconds since a source's last successful run finished",
            None,
            MetricType::Gauge,
        )?;
        for (source, h) in &sources {
            let Some(at) = h.last_success else { continue };
            let labels = SourceLabels {
                source: source.clone(),
            };
            let secs = (now - at).max(0) as f64 / 1e6;
            ConstGauge::new(secs).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The engine's metrics.
#[derive(Debug)]
pub(crate) struct SyncMetrics {
    rows: Family<StreamLabels, Counter>,
    runs: Family<RunLabels, Counter>,
    durations: Family<SourceLabels, Histogram, fn() -> Histogram>,
    health: Arc<Health>,
}

impl SyncMetrics {
    /// Registers the metrics in `metrics`, each source's series starting at zero.
    pub(crate) fn register<'a>(
        metrics: &Metrics,
        sources: impl IntoIterator<Item = &'a str>,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            rows: Family::default(),
            runs: Family::default(),
            durations: Family::new_with_constructor(run_histogram),
            health: Arc::default(),
        });
        metrics.register(
            "dossier_rows_synced",
            "Records committed by syncs, by source and stream",
            this.rows.clone(),
        );
        metrics.register(
            "dossier_sync_runs",
            "Sync runs that ended, by source and status (succeeded, failed)",
            this.runs.clone(),
        );
        metrics.register(
            "dossier_sync_run_duration_seconds",
            "How long sync runs took, by source",
            this.durations.clone(),
        );
        metrics.register_collector(Box::new(this.health.clone()));
        for source in sources {
            for status in ["succeeded", "failed"] {
                let _ = this.runs.get_or_create(&RunLabels {
                    source: source.to_string(),
                    status,
                });
            }
            this.health
                .0
                .lock()
                .expect("sync health")
                .entry(source.to_string())
                .or_default();
        }
        this
    }

    /// Reads each known source's last success and failures since from the store.
    pub(crate) async fn load_health(
        &self,
        store: &SqlStore,
        workspace: &str,
    ) -> anyhow::Result<()> {
        let sources: Vec<String> = self
            .health
            .0
            .lock()
            .expect("sync health")
            .keys()
            .cloned()
            .collect();
        for source in sources {
            let runs = store
                .runs(workspace, Some(&source), HISTORY, None)
                .await?
                .items;
            let mut health = SourceHealth::default();
            for run in &runs {
                match run.status.as_str() {
                    "succeeded" => {
                        health.last_success = run.finished_at.or(Some(run.started_at));
                        break;
                    }
                    "failed" | "interrupted" => health.failures += 1,
                    // Running, or cancelled by hand: neither a success nor a failure.
                    _ => {}
                }
            }
            self.health
                .0
                .lock()
                .expect("sync health")
                .insert(source, health);
        }
        Ok(())
    }

    /// Counts what an event says.
    pub(crate) fn record(&self, event: &SyncEvent) {
        match event {
            SyncEvent::BatchCommitted {
                source,
                stream,
                rows,
                ..
            } => {
                self.rows
                    .get_or_create(&StreamLabels {
                        source: source.clone(),
                        stream: stream.clone(),
                    })
                    .inc_by(*rows);
            }
            SyncEvent::RunFinished {
                source,
                status,
                error,
                elapsed,
                ..
            } => {
                let status = match status.as_str() {
                    "succeeded" => "succeeded",
                    "cancelled" => "cancelled",
                    _ => "failed",
                };
                self.runs
                    .get_or_create(&RunLabels {
                        source: source.clone(),
                        status,
                    })
                    .inc();
                self.durations
                    .get_or_create(&SourceLabels {
                        source: source.clone(),
                    })
                    .observe(elapsed.as_secs_f64());
                let mut health = self.health.0.lock().expect("sync health");
                let h = health.entry(source.clone()).or_default();
                if error.is_none() {
                    h.last_success = Some(chrono::Utc::now().timestamp_micros());
                    h.failures = 0;
                } else {
                    h.failures += 1;
                }
            }
            SyncEvent::RunStarted { .. }
            | SyncEvent::StreamStarted { .. }
            | SyncEvent::StreamFinished { .. } => {}
        }
    }

    /// Counts `events` until the engine goes away.
    pub(crate) async fn follow(&self, mut events: broadcast::Receiver<SyncEvent>) {
        loop {
            match events.recv().await {
                Ok(e) => self.record(&e),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the sync metrics fell behind the engine's events");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Registers the engine's metrics in `metrics`, reads the sources' health from the store and
/// keeps the metrics up to date in the background.
pub(crate) async fn start(engine: &Arc<Engine>, metrics: &Metrics) -> Arc<SyncMetrics> {
    let sources: Vec<&str> = engine
        .loaded()
        .config
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let sync = SyncMetrics::register(metrics, sources);
    // Subscribed before the history is read: a run finishing meanwhile is not lost.
    let events = engine.events().subscribe();
    if let Err(e) = sync.load_health(engine.store(), engine.workspace()).await {
        tracing::warn!(error = %e, "cannot read the sync history for the metrics");
    }
    let follower = sync.clone();
    tokio::spawn(async move { follower.follow(events).await });
    let refresher = sync.clone();
    let engine = engine.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEALTH_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = refresher
                .load_health(engine.store(), engine.workspace())
                .await
            {
                tracing::warn!(error = %e, "cannot read the sync history for the metrics");
            }
        }
    });
    sync
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use dossier_gateway::Metrics;
    use dossier_store::{SqlStore, StreamStats};
    use dossier_sync::SyncEvent;

    use super::SyncMetrics;

    /// The value of the series `series` (name and labels, exactly as exposed).
    pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
    }

    fn batch(source: &str, stream: &str, rows: u64, stream_rows: u64) -> SyncEvent {
        SyncEvent::BatchCommitted {
            workspace: "default".into(),
            source: source.into(),
            run_id: 1,
            stream: stream.into(),
            rows,
            stream_rows,
        }
    }

    fn finished(source: &str, error: Option<&str>, secs: f64) -> SyncEvent {
        SyncEvent::RunFinished {
            workspace: "default".into(),
            source: source.into(),
            run_id: 1,
            status: if error.is_some() {
                "failed"
            } else {
                "succeeded"
            }
            .into(),
            error: error.map(Into::into),
            elapsed: Duration::from_secs_f64(secs),
        }
    }

    #[test]
    fn events_become_rows_runs_durations_and_health() {
        let metrics = Metrics::new();
        let sync = SyncMetrics::register(&metrics, ["shop", "crm"]);
        let before = metrics.encode();
        // Every configured source's series exist from the start, at zero.
        assert_eq!(
            sample(
                &before,
                r#"dossier_sync_runs_total{source="crm",status="failed"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &before,
                r#"dossier_sync_consecutive_failures{source="shop"}"#
            ),
            Some(0.0)
        );
        assert!(!before.contains("dossier_sync_seconds_since_success{"));

        for e in [
            SyncEvent::RunStarted {
                workspace: "default".into(),
                source: "shop".into(),
                run_id: 1,
                trigger: "api".into(),
            },
            batch("shop", "customers", 500, 500),
            batch("shop", "customers", 20, 520),
            batch("shop", "orders", 7, 7),
            SyncEvent::StreamFinished {
                workspace: "default".into(),
                source: "shop".into(),
                run_id: 1,
                stream: "orders".into(),
                stats: StreamStats::default(),
            },
            finished("shop", None, 1.5),
            finished("crm", Some("cannot connect"), 0.25),
            finished("crm", Some("cannot connect"), 0.5),
        ] {
            sync.record(&e);
        }
        let text = metrics.encode();
        let at = |series: &str| {
            sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
        };
        assert_eq!(
            at(r#"dossier_rows_synced_total{source="shop",stream="customers"}"#),
            520.0
        );
        assert_eq!(
            at(r#"dossier_rows_synced_total{source="shop",stream="orders"}"#),
            7.0
        );
        assert_eq!(
            at(r#"dossier_sync_runs_total{source="shop",status="succeeded"}"#),
            1.0
        );
        assert_eq!(
            at(r#"dossier_sync_runs_total{source="shop",status="failed"}"#),
            0.0
        );
        assert_eq!(
            at(r#"dossier_sync_runs_total{source="crm",status="failed"}"#),
            2.0
        );
        assert_eq!(
            at(r#"dossier_sync_run_duration_seconds_count{source="crm"}"#),
            2.0
        );
        assert_eq!(
            at(r#"dossier_sync_run_duration_seconds_sum{source="crm"}"#),
            0.75
        );
        assert_eq!(
            at(r#"dossier_sync_run_duration_seconds_bucket{source="shop",le="1.6"}"#),
            1.0
        );
        assert_eq!(
            at(r#"dossier_sync_run_duration_seconds_bucket{source="shop",le="0.8"}"#),
            0.0
        );
        assert_eq!(
            at(r#"dossier_sync_consecutive_failures{source="crm"}"#),
            2.0
        );
        assert_eq!(
            at(r#"dossier_sync_consecutive_failures{source="shop"}"#),
            0.0
        );
        let lag = at(r#"dossier_sync_seconds_since_success{source="shop"}"#);
        assert!((0.0..5.0).contains(&lag), "{lag}");
        assert!(!text.contains(r#"dossier_sync_seconds_since_success{source="crm"}"#));
        assert!(text.contains("# TYPE dossier_sync_seconds_since_success gauge"));
        assert!(text.contains("# TYPE dossier_sync_run_duration_seconds histogram"));

        // A success resets the failures.
        sync.record(&finished("crm", None, 0.1));
        let text = metrics.encode();
        assert_eq!(
            sample(&text, r#"dossier_sync_consecutive_failures{source="crm"}"#),
            Some(0.0)
        );
        assert!(text.contains(r#"dossier_sync_seconds_since_success{source="crm"}"#));
    }

    #[tokio::test]
    async fn health_starts_from_the_run_history() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = SqlStore::open(&url).await.unwrap();
        store.ensure_workspace("default").await.unwrap();
        let run = |status: Option<&'static str>| {
            let store = store.clone();
            async move {
                let id = store
                    .start_run("default", "shop", "schedule")
                    .await
                    .unwrap();
                store
                    .finish_run(id, status, &Default::default())
                    .await
                    .unwrap();
            }
        };
        // Oldest first: a failure, a success, then two failures.
        run(Some("boom")).await;
        run(None).await;
        run(Some("boom")).await;
        run(Some("boom")).await;
        // Another workspace's runs do not count.
        store.ensure_workspace("other").await.unwrap();
        let id = store.start_run("other", "shop", "schedule").await.unwrap();
        store
            .finish_run(id, None, &Default::default())
            .await
            .unwrap();

        let metrics = Metrics::new();
        let sync = SyncMetrics::register(&metrics, ["shop", "never"]);
        sync.load_health(&store, "default").await.unwrap();
        let text = metrics.encode();
        assert_eq!(
            sample(&text, r#"dossier_sync_consecutive_failures{source="shop"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"dossier_sync_consecutive_failures{source="never"}"#
            ),
            Some(0.0)
        );
        let lag = sample(
            &text,
            r#"dossier_sync_seconds_since_success{source="shop"}"#,
        )
        .unwrap();
        assert!((0.0..60.0).contains(&lag), "{lag}");
        assert!(!text.contains(r#"dossier_sync_seconds_since_success{source="never"}"#));
    }
}
