//! PostgreSQL plans a query from the statistics it keeps of each table, which autovacuum
//! refreshes at most about once a minute. A bulk load grows the store's tables from empty much
//! faster: planned for tables that look empty, a batch's lookups hashed every session of the
//! stream each time (28 ms for 1,000 keys against 100,000 orders). So the store analyzes the
//! tables a sync grows itself, whenever the rows it has written since it opened have doubled:
//! a few times per load, and rarely once a store is large. SQLite plans without such row
//! counts (the store keeps no `sqlite_stat1`), so it needs none of this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sqlx::AnyPool;

/// The first refresh, after this many rows.
const FIRST_AFTER_ROWS: u64 = 10_000;

/// The tables whose size a sync changes.
const GROWN_TABLES: &str = "ANALYZE contacts, identities, sessions, contact_data, \
                            contact_aggregates, derived_pending";

/// Counts the rows written since the store opened, and says when statistics are due.
#[derive(Debug)]
pub(crate) struct GrowthWatch {
    written: AtomicU64,
    next: AtomicU64,
}

impl Default for GrowthWatch {
    fn default() -> Self {
        Self {
            written: AtomicU64::new(0),
            next: AtomicU64::new(FIRST_AFTER_ROWS),
        }
    }
}

impl GrowthWatch {
    /// Counts `rows` more; once per doubling, when the statistics are due, the rows written
    /// so far.
    pub(crate) fn wrote(&self, rows: u64) -> Option<u64> {
        let total = self.written.fetch_add(rows, Ordering::Relaxed) + rows;
        let next = self.next.load(Ordering::Relaxed);
        (total >= next
            && self
                .next
                .compare_exchange(next, total * 2, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok())
        .then_some(total)
    }
}

/// Refreshes the statistics of the tables a sync grows. Best effort: the rows are committed
/// already, and a failure (a store user who may not analyze) only leaves the plans as they were.
pub(crate) async fn refresh(pool: &AnyPool, written: u64) {
    let started = Instant::now();
    match sqlx::query(GROWN_TABLES).execute(pool).await {
        Ok(_) => tracing::debug!(
            written,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "planner statistics refreshed"
        ),
        Err(error) => tracing::warn!(%error, "cannot refresh the store's planner statistics"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_per_doubling() {
        let w = GrowthWatch::default();
        assert_eq!(w.wrote(9_999), None);
        assert_eq!(w.wrote(1), Some(10_000));
        assert_eq!(w.wrote(9_999), None);
        assert_eq!(w.wrote(1), Some(20_000));
        assert_eq!(w.wrote(100_000), Some(120_000));
        assert_eq!(w.wrote(100_000), None, "next at 240,000");
        assert_eq!(w.wrote(20_000), Some(240_000));
    }
}
