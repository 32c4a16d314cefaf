//! A real Singer tap against a real server of this machine: `meltanolabs-tap-postgres`
//! (pinned), installed through `dossier connectors install singer:...` from the wheels
//! scripts/test.sh fetched into .cache/ (no network at test time), reading a fresh Pagila
//! database: customers to contacts, payments to sessions, every customer's aggregates compared
//! with SQL, then a change read incrementally.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use dossier_test_support::pg::PgDb;
use sqlx::Row;

/// Keep in step with PYTHON_CONNECTORS in scripts/test.sh.
const TAP: &str = "singer:meltanolabs-tap-postgres==0.10.0";

fn wheels() -> PathBuf {
    let dir = std::env::var_os("DOSSIER_TEST_AIRBYTE_WHEELS").map(PathBuf::from).expect(
        "DOSSIER_TEST_AIRBYTE_WHEELS is not set: run scripts/test.sh, which downloads the taps' wheels into .cache/airbyte-wheels",
    );
    let marker = std::fs::read_to_string(dir.join(".downloaded")).unwrap_or_default();
    assert!(
        marker.contains("meltanolabs-tap-postgres==0.10.0"),
        "{} holds no meltanolabs-tap-postgres wheels: run scripts/test.sh",
        dir.display()
    );
    dir
}

fn dossier(dir: &Path, args: &[&str]) -> Output {
    bin()
        .args(args)
        .arg("--config")
        .arg(config(dir))
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", wheels())
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .output()
        .expect("the dossier binary runs")
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

async fn pagila() -> PgDb {
    let db = PgDb::create("singer").await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors/sql-source/fixtures/pagila");
    for file in ["pagila-schema.sql", "pagila-data.sql"] {
        // Without a `postgres` role the `OWNER TO` statements fail; nothing else does.
        let out = std::process::Command::new("psql")
            .arg(db.url())
            .args(["-q", "-X", "-f"])
            .arg(dir.join(file))
            .stdout(std::process::Stdio::null())
            .output()
            .expect("psql runs (install postgresql-client)");
        assert!(out.status.success(), "psql -f {file} failed: {out:?}");
    }
    db
}

/// The tap's connection settings from a `postgres://user@host:port/db` URL (the test server
/// trusts loopback; the tap insists on a password, which is not checked).
fn tap_config(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let (user, rest) = rest.split_once('@').unwrap();
    let user = user.split(':').next().unwrap();
    let (host_port, db) = rest.split_once('/').unwrap();
    let db = db.split('?').next().unwrap();
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, "5432"));
    format!(
        r#"{{ host = "{host}", port = {port}, user = "{user}", password = "unused", database = "{db}", filter_schemas = ["public"] }}"#
    )
}

fn write_config(dir: &Path, url: &str) {
    let text = format!(
        r#"
[store]
url = "sqlite://dossier.db"

[[sources]]
name = "pagila"
connector = "tap-postgres"
config = {{ config = {} }}

[[sources.streams]]
name = "customer"
read = {{ stream = "public-customer", cursor_field = "last_update" }}

[sources.streams.mapping]
target = "contact"
id = "customer_id"
identities = {{ email = "email" }}
data = {{ first_name = "first_name", last_name = "last_name" }}

[[sources.streams]]
name = "payment"
read = {{ stream = "public-payment", cursor_field = "payment_date" }}

[sources.streams.mapping]
target = "session"
id = "payment_id"
kind = "payment"
started_at = "payment_date"
contact = {{ stream = "customer", field = "customer_id" }}
data = {{ amount = "amount" }}

[[aggregates]]
name = "payments"
op = "count"
kind = "payment"

[[aggregates]]
name = "total_paid"
op = "sum"
kind = "payment"
field = "amount"
"#,
        tap_config(url)
    );
    std::fs::write(config(dir), text).unwrap();
}

/// Every customer's payment count and total in the store equal SQL's on Pagila.
async fn assert_aggregates_match(dir: &Path, db: &PgDb) {
    let mut pg = db.connect().await;
    let want: Vec<(i32, i64, f64)> = sqlx::query(
        "SELECT c.customer_id, COUNT(p.payment_id), COALESCE(SUM(p.amount), 0)::float8 \
         FROM customer c LEFT JOIN payment p ON p.customer_id = c.customer_id GROUP BY c.customer_id",
    )
    .fetch_all(&mut pg)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    assert_eq!(want.len(), 599);
    let mut store = open(&dir.join("dossier.db")).await;
    let rows = sqlx::query(
        "SELECT i.value, a.name, a.value FROM identities i JOIN contact_aggregates a ON a.contact_id = i.contact_id \
         WHERE i.kind = 'external' AND i.value LIKE 'pagila:customer:%'",
    )
    .fetch_all(&mut store)
    .await
    .unwrap();
    let mut got: HashMap<(i32, String), f64> = HashMap::new();
    for r in rows {
        let ext: String = r.get(0);
        let id: i32 = ext.rsplit(':').next().unwrap().parse().unwrap();
        let v: Option<String> = r.get(2);
        if let Some(n) = v
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .and_then(|v| v["n"].as_f64())
        {
            got.insert((id, r.get(1)), n);
        }
    }
    for (id, count, total) in want {
        let get = |name: &str| got.get(&(id, name.to_string())).copied().unwrap_or(0.0);
        assert_eq!(get("payments"), count as f64, "payments of customer {id}");
        assert!(
            (get("total_paid") - total).abs() < 1e-6,
            "total_paid of customer {id}: {} vs {total}",
            get("total_paid")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn meltanolabs_tap_postgres_reads_pagila_in_full_then_incrementally() {
    let db = pagila().await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_config(dir, db.url());

    let out = ok(dossier(dir, &["connectors", "install", TAP]), "install");
    assert!(
        out.contains("installed meltanolabs-tap-postgres 0.10.0"),
        "{out}"
    );
    assert!(out.contains("as connector \"tap-postgres\""), "{out}");
    let out = ok(dossier(dir, &["check", "pagila"]), "check");
    assert!(out.contains("pagila: ok"), "{out}");
    let out = ok(dossier(dir, &["discover", "pagila"]), "discover");
    assert!(
        out.contains("public-customer") && out.contains("public-payment"),
        "{out}"
    );

    let out = ok(dossier(dir, &["sync", "pagila"]), "sync");
    assert!(out.contains("synced pagila: 16648 rows read"), "{out}");
    assert_aggregates_match(dir, &db).await;

    // A customer changed and a payment added after the bookmarks: read incrementally.
    let mut pg = db.connect().await;
    sqlx::raw_sql(
        "UPDATE customer SET email = 'mary.new@example.com', last_update = now() WHERE customer_id = 1; \
         INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date) \
           VALUES (1, 1, 76, 9.99, '2022-07-28 12:00:00+00')",
    )
    .execute(&mut pg)
    .await
    .unwrap();
    let out = ok(dossier(dir, &["sync", "pagila"]), "incremental sync");
    let figure = |what: &str| -> u64 {
        let before = out.split(&format!(" {what}")).next().unwrap();
        before
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{what}: {out}"))
    };
    // The tap reads from its bookmarks on, the rows at a bookmark's value included (Pagila's
    // customers all share one last_update, so all of them): far fewer payments than a full
    // read, and only the changed customer and the new payment are written.
    assert!(figure("rows read") < 1000, "{out}");
    assert_eq!(figure("written"), 2, "{out}");
    assert_aggregates_match(dir, &db).await;
    let q = ok(
        dossier(
            dir,
            &[
                "query",
                r#"{ contact(email: "mary.new@example.com") { aggregates } }"#,
            ],
        ),
        "query",
    );
    let q: serde_json::Value = serde_json::from_str(&q).unwrap();
    assert_eq!(
        q["data"]["contact"]["aggregates"]["payments"].as_f64(),
        Some(33.0),
        "{q}"
    );
}
