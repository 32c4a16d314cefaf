//! A progress bar per stream on a terminal; nothing when output is not a terminal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use dossier_store::StreamStats;
use dossier_sync::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    /// The end-of-load pass over contacts, when a bulk load left one.
    settle: Mutex<Option<ProgressBar>>,
    source: String,
}

impl Bars {
    pub fn new(source: &str) -> Self {
        Self {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
            settle: Mutex::new(None),
            source: source.to_string(),
        }
    }
}

impl Progress for Bars {
    fn stream_started(&self, stream: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix:.bold} {human_pos} rows ({per_sec}) {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("{}.{stream}", self.source));
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bars
            .lock()
            .expect("bars")
            .insert(stream.to_string(), bar);
    }

    fn batch_committed(&self, stream: &str, rows: u64) {
        if let Some(b) = self.bars.lock().expect("bars").get(stream) {
            b.inc(rows);
        }
    }

    fn stream_finished(&self, stream: &str, stats: &StreamStats) {
        if let Some(b) = self.bars.lock().expect("bars").remove(stream) {
            b.finish_with_message(format!("{} read, {} written", stats.read, stats.written));
        }
    }

    fn settle_started(&self, contacts: u64) {
        let bar = self.multi.add(ProgressBar::new(contacts));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix:.bold} {human_pos}/{human_len} contacts ({per_sec}) {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("{}: aggregates and session data", self.source));
        bar.enable_steady_tick(Duration::from_millis(120));
        *self.settle.lock().expect("settle bar") = Some(bar);
    }

    fn settled(&self, done: u64) {
        if let Some(b) = &*self.settle.lock().expect("settle bar") {
            b.set_position(done);
        }
    }

    fn settle_finished(&self, _contacts: u64) {
        if let Some(b) = self.settle.lock().expect("settle bar").take() {
            b.finish();
        }
    }
}
