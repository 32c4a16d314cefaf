//! The binary's registry: every built-in connector, and an unknown name lists them.

use std::path::PathBuf;

use dossier_cli::builtin_registry;
use dossier_sync::Config;

#[test]
fn an_unknown_connector_lists_the_built_in_ones() {
    let text = r#"
        [store]
        url = "sqlite://dossier.db"

        [[sources]]
        name = "shop"
        connector = "oracle"
        config = { path = "shop.db" }

        [[sources.streams]]
        name = "customers"
        read = { table = "customers", cursor = "updated_at" }
        mapping = { target = "contact", id = "id", identities = { email = "email" } }
    "#;
    let e = Config::parse(
        text,
        "dossier.toml",
        PathBuf::from("/base"),
        &builtin_registry(),
    )
    .unwrap_err()
    .to_string();
    insta::assert_snapshot!(e, @r#"config file dossier.toml: source "shop": config error: unknown connector "oracle"; available: airbyte, mongodb, mysql, postgres, shopify, singer, sqlite, woocommerce"#);
}
