//! What runs do, broadcast to whoever listens (metrics, GraphQL subscriptions, logs). Slow
//! listeners miss events rather than slowing a sync: the channel is bounded and lossy.

use std::time::Duration;

use dossier_store::StreamStats;
use serde::Serialize;
use tokio::sync::broadcast;

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SyncEvent {
    RunStarted {
        workspace: String,
        source: String,
        run_id: i64,
        trigger: String,
    },
    StreamStarted {
        workspace: String,
        source: String,
        run_id: i64,
        stream: String,
    },
    /// A batch committed: `rows` in it, `stream_rows` read by the stream so far this run.
    BatchCommitted {
        workspace: String,
        source: String,
        run_id: i64,
        stream: String,
        rows: u64,
        stream_rows: u64,
    },
    StreamFinished {
        workspace: String,
        source: String,
        run_id: i64,
        stream: String,
        stats: StreamStats,
    },
    /// The run ended: `status` is `succeeded`, `failed` or `cancelled`; `error` says why
    /// when it did not succeed.
    RunFinished {
        workspace: String,
        source: String,
        run_id: i64,
        status: String,
        error: Option<String>,
        #[serde(with = "secs")]
        elapsed: Duration,
    },
}

impl SyncEvent {
    pub fn source(&self) -> &str {
        match self {
            SyncEvent::RunStarted { source, .. }
            | SyncEvent::StreamStarted { source, .. }
            | SyncEvent::BatchCommitted { source, .. }
            | SyncEvent::StreamFinished { source, .. }
            | SyncEvent::RunFinished { source, .. } => source,
        }
    }

    pub fn workspace(&self) -> &str {
        match self {
            SyncEvent::RunStarted { workspace, .. }
            | SyncEvent::StreamStarted { workspace, .. }
            | SyncEvent::BatchCommitted { workspace, .. }
            | SyncEvent::StreamFinished { workspace, .. }
            | SyncEvent::RunFinished { workspace, .. } => workspace,
        }
    }
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// The engine's event channel.
#[derive(Debug, Clone)]
pub struct SyncEvents(broadcast::Sender<SyncEvent>);

impl Default for SyncEvents {
    fn default() -> Self {
        Self(broadcast::channel(1024).0)
    }
}

impl SyncEvents {
    /// Events from now on; a receiver that falls more than 1024 events behind skips ahead.
    pub fn subscribe(&self) -> broadcast::Receiver<SyncEvent> {
        self.0.subscribe()
    }

    pub(crate) fn send(&self, e: SyncEvent) {
        // No listener is not an error.
        let _ = self.0.send(e);
    }
}
