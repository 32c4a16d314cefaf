//! What Dossier's test suites share (the store's, the scheduler's, the workers' and the
//! gateway's): a fresh PostgreSQL database per test, and records shaped like the demo shop.

pub mod pg;
pub mod shop;

pub use pg::PgDb;
