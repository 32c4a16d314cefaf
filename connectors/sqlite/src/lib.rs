//! SQLite source connector for Dossier
