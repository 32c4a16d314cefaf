//! The connectors built into the `dossier` binary: adding one is a line here (and its crate in
//! `Cargo.toml`). The engine takes whatever registry it is given.

use dossier_connector::Registry;

/// Every connector built into Dossier. Plugins are added to the returned registry.
pub fn builtin_registry() -> Registry {
    let mut registry = Registry::new();
    registry.register::<dossier_connector_sqlite::SqliteConnector>();
    registry.register::<dossier_connector_postgres::PostgresConnector>();
    registry.register::<dossier_connector_mysql::MySqlConnector>();
    registry.register::<dossier_connector_shopify::ShopifyConnector>();
    registry.register::<dossier_connector_woocommerce::WooConnector>();
    registry.register::<dossier_connector_mongodb::MongoConnector>();
    registry.register::<dossier_connector_airbyte::AirbyteConnector>();
    registry.register::<dossier_connector_airbyte::SingerConnector>();
    registry
}
