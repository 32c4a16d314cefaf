//! Dossier's sync engine and its configuration.
//!
//! A sync reads each stream of a source from its last committed checkpoint, maps records
//! to contacts or sessions, and commits each batch with the stream's new state in one
//! store transaction, so a crash or a failed sync never loses or duplicates data.

pub mod config;
mod engine;
mod error;
mod events;
mod read_ahead;
pub mod schedule;
pub mod scheduler;

pub use config::Config;
pub use engine::{CheckReport, Engine, NoProgress, Progress, RunControl, RunSummary};
pub use error::SyncError;
pub use events::{SyncEvent, SyncEvents};
