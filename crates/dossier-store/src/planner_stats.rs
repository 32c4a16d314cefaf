//! PostgreSQL plans a query from the statistics it keeps of each table, which autovacuum
//! refreshes at most about once a minute, and never where it is turned off. A bulk load grows
//! the store's tables from empty much faster: planned for tables without statistics, a batch's
//! lookups hashed every session of the stream each time (28 ms for 1,000 keys against 100,000
//! orders, 560 ms against 500,000). So the store analyzes the tables a sync grows itself:
//! - whenever the rows it has written since it opened have doubled: a few times per load, and
//!   rarely once a store is large;
//! - when a bulk load's aggregates and session data have been computed, which fills their
//!   tables at once;
//! - when it opens, if a table holds rows but was never analyzed (loaded by an older version,
//!   with autovacuum off).
//!
//! SQLite plans without such row counts (the store keeps no `sqlite_stat1`), so it needs none
//! of this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sqlx::{AnyPool, AssertSqlSafe};

/// The first refresh, after this many rows.
pub(crate) const FIRST_AFTER_ROWS: u64 = 10_000;

/// The tables whose size a sync changes.
const GROWN: [&str; 6] = [
    "contacts",
    "identities",
    "sessions",
    "contact_data",
    "contact_aggregates",
    "derived_pending",
];

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
/// already. A store user who does not own the tables has them skipped (PostgreSQL answers with
/// a warning, not an error), and an error only leaves the plans as they were.
pub(crate) async fn refresh(pool: &AnyPool, why: &str) {
    let started = Instant::now();
    let sql = format!("ANALYZE {}", GROWN.join(", "));
    match sqlx::query(AssertSqlSafe(sql)).execute(pool).await {
        Ok(_) => tracing::debug!(
            why,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "planner statistics refreshed"
        ),
        Err(error) => tracing::warn!(%error, "cannot refresh the store's planner statistics"),
    }
}

/// Refreshes the statistics if a table a sync grows holds rows but was never analyzed.
pub(crate) async fn refresh_if_never(pool: &AnyPool) {
    let list = GROWN.map(|t| format!("'{t}'")).join(", ");
    let never = sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!(
        "SELECT count(*) FROM pg_stat_user_tables \
         WHERE schemaname = current_schema() AND relname IN ({list}) AND n_live_tup > 0 \
         AND last_analyze IS NULL AND last_autoanalyze IS NULL"
    )))
    .fetch_one(pool)
    .await;
    match never {
        Ok(0) => {}
        Ok(_) => refresh(pool, "never analyzed").await,
        Err(error) => tracing::warn!(%error, "cannot read the store's planner statistics"),
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
