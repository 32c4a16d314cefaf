//! The Stripe connector ([`dossier_connector_stripe`]) as a Dossier plugin:
//!
//! ```sh
//! cargo build --release -p dossier-connector-stripe-plugin
//! dossier connectors install target/release/libdossier_stripe_plugin.so
//! ```

dossier_plugin_sdk::export_connector!(dossier_connector_stripe::StripeConnector);
