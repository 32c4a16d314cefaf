use dossier_connector::Registry;

/// Every connector built into Dossier. Plugins are added to the returned registry.
pub fn builtin_registry() -> Registry {
    let mut registry = Registry::new();
    registry.register::<dossier_connector_sqlite::SqliteConnector>();
    registry
}
