//! Dossier's store: contacts, sessions, identities, custom data, aggregates, sync state
//! and run history.
//!
//! One implementation ([`SqlStore`]) serves both backends through sqlx's `Any` driver: the
//! embedded default (SQLite, WAL, one writer connection and a read pool) and PostgreSQL
//! for scale-out. Both run the same SQL (numbered `$n` parameters, `ON CONFLICT` upserts,
//! `RETURNING`); only the migrations differ, in their id columns and in the tables SQLite
//! keeps `WITHOUT ROWID`.

mod aggregate_rules;
mod backend;
mod card;
mod columns;
mod encoding;
mod error;
mod filter_sql;
mod identity;
mod ingest;
mod json_sql;
mod keys;
mod names;
mod order;
mod planner_stats;
mod read;
mod runs;
mod schedule;
mod segments;
mod shortcuts;
mod stats;
mod types;

pub use backend::{Backend, SqlStore};
pub use card::{CardParts, ContactCard, ContactKey, SessionsPage};
pub use columns::SessionField;
/// URL redaction lives in dossier-core, shared with the connectors; re-exported for callers.
pub use dossier_core::redact_url;
pub use error::{Result, StoreError};
pub use identity::API_SOURCE;
pub use ingest::WriteGroup;
pub use keys::{ApiKey, KeyCache, KeyRefusal, Role};
pub use order::{OrderBy, Placed, Position, SessionQuery, SortValue};
pub use schedule::{Claim, LeaseStatus, ScheduleRow};
pub use segments::{SegmentChange, SegmentRow};
pub use shortcuts::ShortcutRow;
pub use stats::{
    Bucket, Decimal, Interval, Metric, MetricOp, Point, Range, SegmentDay, Series, Stats,
    StatsQuery, StatsSort, intervals,
};
pub use types::*;
