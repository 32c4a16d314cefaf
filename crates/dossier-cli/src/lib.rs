//! The dossier command line: demo, serve, sync, check, discover, schema, query
