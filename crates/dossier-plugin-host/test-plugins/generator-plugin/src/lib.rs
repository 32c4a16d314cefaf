//! The synthetic generator connector, exported as a plugin.

dossier_plugin_sdk::export_connector!(dossier_test_generator::GeneratorConnector);
