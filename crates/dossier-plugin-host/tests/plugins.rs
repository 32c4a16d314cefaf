//! Plugins through the real C ABI: the Stripe plugin syncs exactly like the same connector
//! compiled in, and each bad plugin is refused or contained with its own error while the
//! host keeps working.

#![allow(unsafe_code)] // Builds vtables in-process (damaged on purpose) to test the validator.

use std::path::Path;
use std::sync::Arc;

use dossier_connector::{Registry, StreamConfig};
use dossier_plugin_host::testing::{generator_config, plugin_library};
use dossier_plugin_host::{PluginDir, PluginError, load};
use dossier_store::SqlStore;
use dossier_stripe_fake::{API_KEY, FakeStripe};
use dossier_sync::{Config, Engine, NoProgress};
use futures::StreamExt as _;
use serde_json::{Value as Json, json};

const T0: i64 = 1_600_000_000;

fn stripe_config(fake: &FakeStripe) -> String {
    format!(
        r#"
[store]
url = "sqlite://dossier.db"

[[sources]]
name = "stripe"
connector = "stripe"
config = {{ api_key = "{API_KEY}", base_url = "{}", page_size = 20, retry = {{ max_retries = 3, base_delay_ms = 1, max_delay_ms = 5 }} }}
batch_size = 50

[[sources.streams]]
name = "customers"
read = {{ resource = "customers" }}
[sources.streams.mapping]
target = "contact"
id = "id"
identities = {{ email = "email", phone = "phone" }}
profile = {{ first_name = "first_name", last_name = "last_name", country = "country", city = "city", locale = "locale" }}
data = {{ stripe_currency = "currency", delinquent = "delinquent" }}

[[sources.streams]]
name = "charges"
read = {{ resource = "charges" }}
[sources.streams.mapping]
target = "session"
id = "id"
kind = "payment"
started_at = "created"
contact = {{ stream = "customers", field = "customer", email = "email" }}
data = {{ amount = "amount_decimal | number", currency = "currency", status = "status", refunded = "refunded" }}

[[aggregates]]
name = "payments"
op = "count"
kind = "payment"

[[aggregates]]
name = "paid_total"
op = "sum"
kind = "payment"
field = "amount"

[[aggregates]]
name = "currencies"
op = "distinct_count"
kind = "payment"
field = "currency"
"#,
        fake.uri()
    )
}

async fn engine(dir: &Path, registry: Registry, config: &str) -> Arc<Engine> {
    let loaded = Config::parse(config, "test config", dir.to_path_buf(), &registry).unwrap();
    let store = SqlStore::open(&loaded.config.store.url).await.unwrap();
    Engine::new(store, registry, loaded).await.unwrap()
}

/// Everything a sync produced, through the API: contacts with identities, data, aggregates
/// and sessions.
async fn dump(engine: &Engine) -> Json {
    let schema = dossier_gateway::build_schema(
        engine.store().clone(),
        None,
        None,
        None,
        dossier_gateway::GatewayConfig::open(engine.workspace()),
    );
    let out = dossier_gateway::execute(
        &schema,
        engine.store(),
        dossier_gateway::Caller::admin(engine.workspace()),
        r#"{ contacts(first: 100) { totalCount edges { node {
            id email phone firstName lastName country city locale data aggregates
            identities { kind value }
            sessions(first: 100) { edges { node { kind source stream externalId startedAt data } } }
        } } } }"#,
        None,
    )
    .await;
    assert!(out.get("errors").is_none(), "{out:#}");
    let (contacts, sessions) = engine.store().counts(engine.workspace()).await.unwrap();
    json!({ "contacts": contacts, "sessions": sessions, "data": out["data"] })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_plugin_syncs_exactly_like_the_compiled_in_connector() {
    let fake = FakeStripe::start().await;
    fake.seed(60, T0);
    let config = stripe_config(&fake);

    let plugin_dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(plugin_dir.path());
    let with_plugin = Registry::new();
    let installed = plugins
        .install(&plugin_library("dossier_stripe_plugin"), None, &with_plugin)
        .unwrap();
    assert_eq!(installed.record.name, "stripe");
    assert!(installed.active);
    let spec = with_plugin.get("stripe").unwrap().spec();
    assert_eq!(spec.kind, dossier_connector::ConnectorKind::Plugin);
    assert!(spec.config_schema["properties"]["api_key_env"].is_object());

    let mut compiled_in = Registry::new();
    compiled_in.register::<dossier_connector_stripe::StripeConnector>();

    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let through_plugin = engine(a.path(), with_plugin, &config).await;
    let direct = engine(b.path(), compiled_in, &config).await;

    for round in 0..2 {
        if round == 1 {
            // New customers and charges, an update and a refund (through events).
            fake.seed(7, now() - 3600);
            fake.update_customer("cus_00000003", now(), |c| {
                c["email"] = json!("moved@example.com");
                c["address"]["country"] = json!("ES");
            });
            fake.refund_charge("ch_00000004", now());
        }
        let p = through_plugin
            .sync("stripe", None, "test", &NoProgress)
            .await
            .unwrap();
        let d = direct
            .sync("stripe", None, "test", &NoProgress)
            .await
            .unwrap();
        assert_eq!(p.error, None);
        assert_eq!(
            serde_json::to_value(&p.streams).unwrap(),
            serde_json::to_value(&d.streams).unwrap(),
            "round {round}: per-stream counters"
        );
        assert!(p.rows_read() > 0, "round {round} read nothing");
        assert_eq!(
            dump(&through_plugin).await,
            dump(&direct).await,
            "round {round}"
        );
    }
    let all = dump(&through_plugin).await;
    // 67 customers, and 7 guests known by the billing email of their charges.
    assert_eq!(all["contacts"], 74);
    let moved = all["data"]["contacts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["email"] == "moved@example.com")
        .expect("the update arrived through events");
    assert_eq!(moved["node"]["country"], "ES");

    // Check and discover go through the plugin too.
    assert!(through_plugin.check("stripe").await.unwrap().is_empty());
    assert_eq!(
        through_plugin
            .discover("stripe")
            .await
            .unwrap()
            .streams
            .len(),
        2
    );
}

#[test]
fn plugin_errors_keep_their_kind_and_name_the_stream() {
    let registry = Registry::new();
    let dir = tempfile::tempdir().unwrap();
    PluginDir::new(dir.path())
        .install(&plugin_library("dossier_stripe_plugin"), None, &registry)
        .unwrap();
    let fake_uri = "http://127.0.0.1:9";
    let config = format!(
        r#"
[store]
url = "sqlite://x.db"
[[sources]]
name = "stripe"
connector = "stripe"
config = {{ api_key = "k", base_url = "{fake_uri}" }}
[[sources.streams]]
name = "subscriptions"
read = {{ resource = "subscriptions" }}
mapping = {{ target = "contact", id = "id" }}
"#
    );
    let e = Config::parse(&config, "c", dir.path().to_path_buf(), &registry).unwrap_err();
    let e = e.to_string();
    assert!(e.contains("stream \"subscriptions\""), "{e}");
    assert!(e.contains("unknown variant `subscriptions`"), "{e}");
}

/// "Nothing answers there" crosses the C ABI as itself, so a run someone watches fails at
/// once for a plugin as for a built-in connector.
#[tokio::test]
async fn an_unreachable_source_stays_unreachable_across_the_plugin_boundary() {
    let registry = Registry::new();
    let dir = tempfile::tempdir().unwrap();
    PluginDir::new(dir.path())
        .install(&plugin_library("dossier_stripe_plugin"), None, &registry)
        .unwrap();
    let factory = registry.get("stripe").unwrap();
    let source = factory
        .connect(json!({ "api_key": "k", "base_url": "http://127.0.0.1:9", "retry": { "max_retries": 0 } }))
        .await;
    let e = match source {
        Err(e) => e,
        Ok(source) => {
            let stream = StreamConfig {
                name: "customers".into(),
                settings: json!({ "resource": "customers" }),
            };
            let mut batches = source.read(&stream, None, 10).unwrap();
            match batches.next().await {
                Some(Err(e)) => e,
                other => panic!("read without a server: {other:?}"),
            }
        }
    };
    assert!(e.is_unreachable() && e.is_retryable(), "{e}");
    assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
}

#[test]
fn a_wrong_abi_major_is_refused() {
    let e = load(&plugin_library("dossier_test_plugin_wrong_abi"), None).unwrap_err();
    assert!(
        matches!(
            e,
            PluginError::AbiMajor {
                found_major: 99,
                ..
            }
        ),
        "{e}"
    );
    let message = e.to_string();
    assert!(message.contains("built for plugin ABI 99.0"), "{message}");
    assert!(message.contains("speaks ABI 1.x"), "{message}");
}

#[test]
fn a_library_without_the_entry_symbol_is_refused() {
    let e = load(&plugin_library("dossier_test_plugin_no_entry"), None).unwrap_err();
    assert!(matches!(e, PluginError::MissingEntry { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("missing entry symbol `dossier_plugin_entry`"),
        "{e}"
    );
}

#[test]
fn a_corrupted_file_with_a_pinned_sha256_is_refused_before_loading() {
    let original = plugin_library("dossier_stripe_plugin");
    let bytes = std::fs::read(&original).unwrap();
    let pinned = dossier_plugin_host::sha256_hex(&bytes);
    let dir = tempfile::tempdir().unwrap();
    let corrupted = dir.path().join("stripe.so");
    let mut bad = bytes.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    std::fs::write(&corrupted, &bad).unwrap();
    let e = load(&corrupted, Some(&pinned)).unwrap_err();
    assert!(matches!(e, PluginError::Sha256Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("sha256 mismatch"), "{e}");
    assert!(e.to_string().contains(&pinned), "{e}");

    // Installing with a pin refuses the same way, and copies nothing.
    let plugins = PluginDir::new(dir.path().join("plugins"));
    let e = plugins
        .install(&corrupted, Some(&pinned), &Registry::new())
        .unwrap_err();
    assert!(matches!(e, PluginError::Sha256Mismatch { .. }), "{e}");
    assert!(plugins.installed().unwrap().is_empty());

    // A file that is not a library at all.
    let junk = dir.path().join("junk.so");
    std::fs::write(&junk, b"not a library").unwrap();
    let e = load(&junk, None).unwrap_err();
    assert!(matches!(e, PluginError::Open { .. }), "{e}");
}

#[test]
fn an_installed_file_changed_on_disk_is_skipped_at_start_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    let registry = Registry::new();
    plugins
        .install(&plugin_library("dossier_stripe_plugin"), None, &registry)
        .unwrap();
    plugins
        .install(
            &plugin_library("dossier_test_generator_plugin"),
            None,
            &registry,
        )
        .unwrap();
    let e = plugins
        .install(
            &plugin_library("dossier_test_plugin_wrong_abi"),
            None,
            &registry,
        )
        .unwrap_err();
    assert!(matches!(e, PluginError::AbiMajor { .. }), "{e}");
    let names: Vec<_> = plugins
        .installed()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["stripe", "generator"]);

    // Someone replaces the installed Stripe library with another file. (A new file: writing
    // into a library this process has mapped would crash it, as with any loaded library.)
    let file = dir
        .path()
        .join(format!("stripe.{}", std::env::consts::DLL_EXTENSION));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() / 2);
    let replacement = dir.path().join("replacement");
    std::fs::write(&replacement, bytes).unwrap();
    std::fs::rename(&replacement, &file).unwrap();

    let fresh = Registry::new();
    let outcomes = plugins.load_all(&fresh).unwrap();
    assert_eq!(outcomes.len(), 2);
    let stripe = outcomes.iter().find(|o| o.record.name == "stripe").unwrap();
    let e = stripe.result.as_ref().unwrap_err();
    assert!(matches!(e, PluginError::Sha256Mismatch { .. }), "{e}");
    assert!(fresh.get("generator").is_ok());
    assert!(fresh.get("stripe").is_err());

    // A built-in's name cannot be taken, and removing forgets the plugin and its file.
    let removed = plugins.remove("stripe").unwrap();
    assert_eq!(removed.name, "stripe");
    assert!(!file.exists());
    let e = plugins.remove("stripe").unwrap_err();
    assert!(e.to_string().contains("installed: generator"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_read_next_is_an_error_and_the_host_keeps_working() {
    let registry = Registry::new();
    let plugin_dir = tempfile::tempdir().unwrap();
    PluginDir::new(plugin_dir.path())
        .install(
            &plugin_library("dossier_test_generator_plugin"),
            None,
            &registry,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = engine(
        dir.path(),
        registry.clone(),
        &generator_config(500, 100, Some(2)),
    )
    .await;
    let err = e.sync("gen", None, "test", &NoProgress).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("the generator plugin panicked in read_next"),
        "{message}"
    );
    assert!(message.contains("told to panic at batch 2"), "{message}");
    // The two batches before the panic were committed.
    let (contacts, _) = e.store().counts(e.workspace()).await.unwrap();
    assert_eq!(contacts, 200);

    // The same host, the same plugin: a run that does not panic resumes and completes.
    drop(e);
    let ok = engine(dir.path(), registry, &generator_config(500, 100, None)).await;
    let summary = ok.sync("gen", None, "test", &NoProgress).await.unwrap();
    assert_eq!(
        summary.rows_read(),
        300,
        "resumed after the committed batches"
    );
    let (contacts, _) = ok.store().counts(ok.workspace()).await.unwrap();
    assert_eq!(contacts, 500);
}

/// The checks that need a vtable no real plugin here has: built in this process with the
/// SDK, then damaged.
#[test]
fn a_too_small_vtable_and_an_invalid_manifest_are_refused() {
    use dossier_plugin_abi::{Manifest, PluginVtable, StaticStr};

    #[repr(C)]
    struct Header {
        struct_size: usize,
        abi_major: u32,
        abi_minor: u32,
    }
    let path = Path::new("in-process");
    let small = Header {
        struct_size: std::mem::size_of::<Header>(),
        abi_major: dossier_plugin_abi::ABI_MAJOR,
        abi_minor: 0,
    };
    // SAFETY: the header is all the validator reads of a vtable this small.
    let e = unsafe {
        dossier_plugin_host::validate_vtable(path, (&small as *const Header).cast(), String::new())
    }
    .unwrap_err();
    assert!(matches!(e, PluginError::VtableTooSmall { .. }), "{e}");
    assert!(e.to_string().contains("vtable too small: 16 bytes"), "{e}");

    // SAFETY: a null host API is allowed; the vtable lives for the process.
    let good = unsafe {
        dossier_plugin_sdk::guest::entry(
            std::ptr::null(),
            dossier_connector::erase::<dossier_test_generator::GeneratorConnector>,
        )
    };
    // SAFETY: as returned by the SDK.
    let good: PluginVtable = unsafe { *good };
    // SAFETY: the manifest is static data.
    let manifest: Manifest = unsafe { *good.manifest };
    let text = |s: &'static str| StaticStr {
        ptr: s.as_ptr(),
        len: s.len(),
    };
    let damaged = |m: Manifest| -> PluginError {
        let manifest: &'static Manifest = Box::leak(Box::new(m));
        let vtable: &'static PluginVtable = Box::leak(Box::new(PluginVtable { manifest, ..good }));
        // SAFETY: a complete vtable of this ABI, living for the process.
        unsafe { dossier_plugin_host::validate_vtable(path, vtable, String::new()) }.unwrap_err()
    };
    let e = damaged(Manifest {
        name: text("Not A Name"),
        ..manifest
    });
    assert!(
        e.to_string()
            .contains("invalid manifest: name \"Not A Name\""),
        "{e}"
    );
    let e = damaged(Manifest {
        config_schema: text("{not json"),
        ..manifest
    });
    assert!(
        e.to_string()
            .contains("invalid manifest: config schema is not JSON"),
        "{e}"
    );
    let e = damaged(Manifest {
        abi_minor: 7,
        ..manifest
    });
    assert!(e.to_string().contains("disagrees with the vtable"), "{e}");
    let e = damaged(Manifest {
        version: text(""),
        ..manifest
    });
    assert!(e.to_string().contains("version is empty"), "{e}");
    // And the undamaged one passes.
    // SAFETY: as above.
    let ok = unsafe {
        dossier_plugin_host::validate_vtable(path, Box::leak(Box::new(good)), String::new())
    }
    .unwrap();
    assert_eq!(ok.name, "generator");
}
