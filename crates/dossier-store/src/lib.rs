//! Dossier's store: contacts, sessions, aggregates and sync state on SQLite (embedded) or PostgreSQL
