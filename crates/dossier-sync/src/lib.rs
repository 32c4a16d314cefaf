//! Dossier's sync engine and config: read, map, resolve, upsert, commit per batch
