//! Airbyte's real faker source (`airbyte-source-faker`, pinned), installed through
//! `dossier connectors install` from the wheels scripts/test.sh fetched into .cache/ (no
//! network at test time), then checked, discovered, synced in full and incrementally, and
//! synced again after `kill -9` of Dossier mid-read and after `kill -9` of the source
//! mid-read; the store is compared with the records the same command writes when run by hand,
//! each user's total spent with the sum of the prices faker's own products stream gives the
//! products of their purchases (joined into purchases by the example's lookup).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sqlx::Row;

/// Keep in step with AIRBYTE_FAKER in scripts/test.sh.
const FAKER: &str = "airbyte:source-faker==7.2.1";

/// The wheelhouse scripts/test.sh prepares. Without it the test fails: it must not pass by
/// testing nothing.
fn wheels() -> PathBuf {
    let dir = std::env::var_os("DOSSIER_TEST_AIRBYTE_WHEELS").map(PathBuf::from).expect(
        "DOSSIER_TEST_AIRBYTE_WHEELS is not set: run scripts/test.sh, which downloads airbyte-source-faker's wheels into .cache/airbyte-wheels",
    );
    assert!(
        dir.join(".downloaded").is_file(),
        "{} holds no downloaded wheels: run scripts/test.sh",
        dir.display()
    );
    dir
}

/// The plugin directory every store of the test shares: `<dir>/../plugins`. A virtual
/// environment cannot move, so the one installed is used where it was installed.
fn plugin_dir(dir: &Path) -> PathBuf {
    dir.parent().unwrap().join("plugins")
}

/// `dossier <args> --config <dir>/dossier.toml` with pip held to the wheelhouse.
fn dossier(dir: &Path, args: &[&str]) -> Output {
    bin()
        .args(args)
        .arg("--config")
        .arg(config(dir))
        .env("DOSSIER_PLUGIN_DIR", plugin_dir(dir))
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

/// The faker source's config with `count` users (the example's other settings).
/// `always_updated`: whether every run writes every record again. Without it, faker writes
/// nothing once a state exists, even a state from a run that stopped halfway; with it, a run
/// writes every record (from id 1, whatever the state), with a new `updated_at`.
fn source_config(count: u32, always_updated: bool) -> serde_json::Value {
    serde_json::json!({
        "count": count, "seed": 42, "records_per_slice": 100,
        "always_updated": always_updated, "parallelism": 1
    })
}

/// The faker example with `count` users, each stream in batches of `batch` records.
fn write_config(dir: &Path, count: u32, always_updated: bool, batch: u32) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/airbyte-faker/dossier.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("config = { config = { count = 1000, seed = 42,"))
        .expect("the example's source config");
    let inline: Vec<String> = source_config(count, always_updated)
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    let text = text
        .replace(
            line,
            &format!("config = {{ config = {{ {} }} }}", inline.join(", ")),
        )
        .replace("read = {}", &format!("read = {{ batch_size = {batch} }}"))
        .replace(
            "[sources.streams.read]\n",
            &format!("[sources.streams.read]\nbatch_size = {batch}\n"),
        );
    std::fs::write(config(dir), text).unwrap();
}

/// What the source writes for users, purchases and products when run by hand with the same
/// config: each user's email, each purchase's user and product, and each product's price.
struct Emitted {
    emails: BTreeMap<i64, String>,
    purchases: BTreeMap<i64, (i64, i64)>,
    prices: BTreeMap<i64, f64>,
}

fn emitted(command: &Path, source_config: &serde_json::Value) -> Emitted {
    let mut e = Emitted {
        emails: BTreeMap::new(),
        purchases: BTreeMap::new(),
        prices: BTreeMap::new(),
    };
    // One read per stream, as Dossier reads them (the lookup of products too): faker's
    // purchases are not the same when its users are generated first in the same process.
    for stream in ["users", "purchases", "products"] {
        for d in read(command, source_config, stream) {
            let id = d["id"].as_i64().unwrap();
            if stream == "users" {
                e.emails
                    .insert(id, d["email"].as_str().unwrap().to_lowercase());
            } else if stream == "products" {
                e.prices.insert(id, d["price"].as_f64().unwrap());
            } else {
                let user = d["user_id"].as_i64().unwrap();
                e.purchases
                    .insert(id, (user, d["product_id"].as_i64().unwrap()));
            }
        }
    }
    e
}

/// The records of one full read of `stream` by the source's own command.
fn read(command: &Path, source_config: &serde_json::Value, stream: &str) -> Vec<serde_json::Value> {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config.json");
    std::fs::write(&cfg, source_config.to_string()).unwrap();
    let catalog = tmp.path().join("catalog.json");
    let configured = serde_json::json!({"streams": [{
        "stream": {"name": stream, "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh",
        "destination_sync_mode": "overwrite"
    }]});
    std::fs::write(&catalog, configured.to_string()).unwrap();
    let o = std::process::Command::new(command)
        .arg("read")
        .arg("--config")
        .arg(&cfg)
        .arg("--catalog")
        .arg(&catalog)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(o.status.success(), "source-faker read failed");
    let mut records = vec![];
    for line in String::from_utf8(o.stdout).unwrap().lines() {
        let mut m: serde_json::Value = serde_json::from_str(line).unwrap();
        if m["type"] == "RECORD" {
            assert_eq!(m["record"]["stream"], stream, "{m}");
            records.push(m["record"]["data"].take());
        }
    }
    records
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // pid (comm) state ppid ...: comm may hold spaces, so after the last ')'.
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(pid)
        })
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// `sql`'s count; 0 while the store or its tables do not exist yet.
async fn count(store: &Path, sql: &'static str) -> i64 {
    if !store.exists() {
        return 0;
    }
    let mut c = open(store).await;
    sqlx::query(sql)
        .fetch_one(&mut c)
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// The store holds one contact per user, one session per purchase, and each user's
/// aggregates are those of the purchases the source wrote for them.
async fn assert_store_matches(dir: &Path, e: &Emitted) {
    // Contacts merge on email: the comparison below holds one contact per user.
    let distinct: BTreeSet<&String> = e.emails.values().collect();
    assert_eq!(
        distinct.len(),
        e.emails.len(),
        "faker wrote a duplicate email"
    );
    let store = dir.join("dossier.db");
    let contacts = count(
        &store,
        "SELECT COUNT(*) FROM contacts WHERE merged_into IS NULL",
    )
    .await;
    assert_eq!(contacts as usize, e.emails.len(), "one contact per user");
    let sessions = count(&store, "SELECT COUNT(*) FROM sessions WHERE deleted = 0").await;
    assert_eq!(
        sessions as usize,
        e.purchases.len(),
        "one session per purchase"
    );

    // Each user's purchases, distinct products and total spent: the sum of the prices faker's
    // products stream gives the products of their purchases (a purchase of a product it does
    // not list adds nothing: its price is null).
    let mut want: HashMap<i64, (f64, BTreeSet<i64>, f64)> = HashMap::new();
    let mut priced = 0;
    for (user, product) in e.purchases.values() {
        let w = want.entry(*user).or_default();
        w.0 += 1.0;
        w.1.insert(*product);
        if let Some(price) = e.prices.get(product) {
            w.2 += price;
            priced += 1;
        }
    }
    assert!(
        priced > e.purchases.len() / 2,
        "{priced} of {} purchases have a price",
        e.purchases.len()
    );
    let mut c = open(&store).await;
    let rows = sqlx::query(
        "SELECT i.value, a.name, a.value FROM identities i JOIN contact_aggregates a ON a.contact_id = i.contact_id \
         WHERE i.kind = 'external' AND i.value LIKE 'faker:users:%'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let mut got: HashMap<(i64, String), f64> = HashMap::new();
    for r in rows {
        let ext: String = r.get(0);
        let id: i64 = ext.rsplit(':').next().unwrap().parse().unwrap();
        let v: Option<String> = r.get(2);
        let n = v
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .and_then(|v| v["n"].as_f64());
        if let Some(n) = n {
            got.insert((id, r.get(1)), n);
        }
    }
    let mut with_purchases = 0;
    for user in e.emails.keys() {
        let (n, products, spent) = want.get(user).cloned().unwrap_or_default();
        let get = |name: &str| got.get(&(*user, name.to_string())).copied().unwrap_or(0.0);
        assert_eq!(get("purchases"), n, "purchases of user {user}");
        assert_eq!(
            get("products"),
            products.len() as f64,
            "distinct products of user {user}"
        );
        let got = get("total_spent");
        assert!(
            (got - spent).abs() < 1e-6 * spent.max(1.0),
            "total spent of user {user}: {got}, the source's prices sum to {spent}"
        );
        with_purchases += usize::from(n > 0.0);
    }
    assert!(with_purchases > e.emails.len() / 2, "{with_purchases}");
    // Spot check through the API: a user with two purchases.
    let (user, (_, _, spent)) = want
        .iter()
        .find(|(_, (n, _, _))| *n == 2.0)
        .expect("a user with two purchases");
    let doc = format!(
        r#"{{ contact(email: "{}") {{ aggregates }} }}"#,
        e.emails[user]
    );
    let q = ok(dossier(dir, &["query", &doc]), "query");
    let q: serde_json::Value = serde_json::from_str(&q).unwrap();
    assert_eq!(
        q["data"]["contact"]["aggregates"]["purchases"].as_f64(),
        Some(2.0),
        "{q}"
    );
    let got = q["data"]["contact"]["aggregates"]["total_spent"]
        .as_f64()
        .unwrap_or(0.0);
    assert!((got - spent).abs() < 1e-6 * spent.max(1.0), "{q}: {spent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_faker_source_installs_from_pypi_wheels_syncs_resumes_after_kill_9_and_matches_what_it_emits()
 {
    let root = tempfile::tempdir().unwrap();
    let dir = &root.path().join("full");
    std::fs::create_dir_all(dir).unwrap();
    write_config(dir, 600, false, 100);

    // Refused before pip runs: an unpinned version, a name that is no package name.
    let o = dossier(dir, &["connectors", "install", "airbyte:source-faker"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not pinned"), "{}", stderr(&o));
    let o = dossier(
        dir,
        &["connectors", "install", "airbyte:source-faker;x==1.0"],
    );
    assert!(stderr(&o).contains("not a package name"), "{}", stderr(&o));
    // pip fails (no such version in the wheelhouse): its last lines say why.
    let o = dossier(
        dir,
        &["connectors", "install", "airbyte:source-faker==0.0.1"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("No matching distribution found for airbyte-source-faker==0.0.1"),
        "{}",
        stderr(&o)
    );

    let out = ok(dossier(dir, &["connectors", "install", FAKER]), "install");
    assert!(
        out.contains("installed airbyte-source-faker 7.2.1"),
        "{out}"
    );
    let list = ok(dossier(dir, &["connectors", "list", "--json"]), "list");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let faker = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "source-faker")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(faker["kind"], "airbyte", "{faker}");
    assert_eq!(faker["version"], "7.2.1", "{faker}");
    assert_eq!(faker["sha256"].as_str().unwrap().len(), 64, "{faker}");
    let deps = faker["packages"].as_array().unwrap();
    assert!(
        deps.iter()
            .any(|p| p["name"] == "airbyte-cdk" && p["sha256"].as_str().unwrap().len() == 64),
        "{faker}"
    );
    let command = PathBuf::from(faker["command"].as_str().unwrap());
    assert!(command.is_file(), "{}", command.display());

    let out = ok(dossier(dir, &["check", "faker"]), "check");
    assert!(!out.contains("problem"), "{out}");
    let out = ok(dossier(dir, &["discover", "faker"]), "discover");
    for s in ["users", "purchases", "products", "address.city", "user_id"] {
        assert!(out.contains(s), "discover lists {s}: {out}");
    }

    let out = ok(dossier(dir, &["sync", "faker"]), "sync");
    let expected = emitted(&command, &source_config(600, false));
    assert_eq!(expected.emails.len(), 600);
    let rows = expected.emails.len() + expected.purchases.len();
    assert!(
        out.contains(&format!("synced faker: {rows} rows read")),
        "{out}"
    );
    assert_store_matches(dir, &expected).await;

    // Incremental: from the stored states the source has nothing new.
    let out = ok(dossier(dir, &["sync", "faker"]), "second sync");
    assert!(out.contains("synced faker: 0 rows read"), "{out}");
    assert_store_matches(dir, &expected).await;

    // kill -9 of Dossier mid-read, in a new store with more users, then a resume: every
    // batch committed before the kill holds, the resumed run writes each user and purchase
    // once more (faker starts again from id 1) and no aggregate counts one twice.
    let killed = root.path().join("killed");
    std::fs::create_dir_all(&killed).unwrap();
    write_config(&killed, 2000, true, 100);
    let store = killed.join("dossier.db");
    let mut child = bin()
        .args(["sync", "faker", "--config"])
        .arg(config(&killed))
        .env("DOSSIER_PLUGIN_DIR", plugin_dir(&killed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut committed = 0;
    while committed == 0 {
        assert!(Instant::now() < deadline, "no batch committed in 120 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sync ended before it could be killed"
        );
        committed = count(&store, "SELECT COUNT(*) FROM stream_states").await;
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let contacts = count(&store, "SELECT COUNT(*) FROM contacts").await;
    let sessions = count(&store, "SELECT COUNT(*) FROM sessions").await;
    assert!(
        contacts < 2000 && sessions == 0,
        "killed mid-read of users: {contacts} contacts, {sessions} sessions"
    );
    let out = ok(dossier(&killed, &["sync", "faker"]), "sync after kill -9");
    assert!(out.contains("synced faker"), "{out}");
    let expected = emitted(&command, &source_config(2000, true));
    assert_eq!(expected.emails.len(), 2000);
    assert_store_matches(&killed, &expected).await;

    // kill -9 of the source mid-read (no retry): the run fails naming the signal, keeps what
    // the source's states covered, and the next run completes the store exactly.
    let child_killed = root.path().join("child");
    std::fs::create_dir_all(&child_killed).unwrap();
    // Enough users (about 5 s of faker's output) that the source still runs when the first
    // group commits (after 2 s at most): with 4,000 it could be done, and exited, by then.
    write_config(&child_killed, 20000, true, 100);
    let text = std::fs::read_to_string(config(&child_killed)).unwrap();
    std::fs::write(
        config(&child_killed),
        text.replacen(
            "connector = \"source-faker\"\n",
            "connector = \"source-faker\"\nretry = { attempts = 0 }\n",
            1,
        ),
    )
    .unwrap();
    let store = child_killed.join("dossier.db");
    let sync = bin()
        .args(["sync", "faker", "--config"])
        .arg(config(&child_killed))
        .env("DOSSIER_PLUGIN_DIR", plugin_dir(&child_killed))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&store, "SELECT COUNT(*) FROM stream_states").await == 0 {
        assert!(Instant::now() < deadline, "no batch committed in 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let source = children(sync.id())
        .into_iter()
        .find(|pid| cmdline(*pid).contains("source-faker"))
        .expect("source-faker runs under dossier");
    let killed_source = std::process::Command::new("kill")
        .args(["-9", &source.to_string()])
        .status()
        .unwrap();
    assert!(killed_source.success());
    let o = sync.wait_with_output().unwrap();
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("exited with signal 9"),
        "{}",
        stderr(&o)
    );
    let contacts = count(&store, "SELECT COUNT(*) FROM contacts").await;
    let sessions = count(&store, "SELECT COUNT(*) FROM sessions").await;
    assert!(
        contacts < 20000 || sessions < 20000,
        "killed mid-read: {contacts} contacts, {sessions} sessions"
    );
    ok(
        dossier(&child_killed, &["sync", "faker"]),
        "sync after the source's kill -9",
    );
    let expected = emitted(&command, &source_config(20000, true));
    assert_store_matches(&child_killed, &expected).await;

    let out = ok(
        dossier(&killed, &["connectors", "remove", "source-faker"]),
        "remove",
    );
    assert!(out.contains("removed airbyte-source-faker 7.2.1"), "{out}");
    assert!(!command.exists());
    let list = ok(dossier(&killed, &["connectors", "list", "--json"]), "list");
    assert!(!list.contains("source-faker"), "{list}");
}

/// The JSON body of an HTTP answer of `post_graphql`.
fn graphql(addr: &str, key: &str, doc: &str) -> serde_json::Value {
    let body = serde_json::json!({ "query": doc }).to_string();
    let resp = post_graphql(addr, key, &body);
    let (_, body) = resp.split_once("\r\n\r\n").expect("an HTTP answer");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

fn error_of(out: &serde_json::Value) -> &str {
    out["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {out}"))
}

/// The installConnector mutation installs a package with the same code as the command line
/// (pip held to the wheelhouse through the server's environment): a read key is refused, an
/// invalid spec is refused before pip runs, and an install longer than a request may run (2 s
/// here) goes on in the server while each request for the same package waits for it again,
/// until one gets the installed connector; removeConnector deletes its virtual environment.
#[test]
fn the_faker_source_installs_and_is_removed_through_the_api() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("api");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        config(&dir),
        "[store]\nurl = \"sqlite://dossier.db\"\n\n[server]\naccess = \"keys\"\n\
         allow_plugin_install = true\nrequest_timeout = \"2s\"\n",
    )
    .unwrap();
    let admin = api_key(&config(&dir), "admin");
    let reader = api_key(&config(&dir), "read");
    let plugins = plugin_dir(&dir);
    let wheels = wheels();
    let (mut server, addr) = serve_with(
        &["--config", config(&dir).to_str().unwrap()],
        &[
            ("DOSSIER_PLUGIN_DIR", plugins.as_os_str()),
            ("PIP_NO_INDEX", "1".as_ref()),
            ("PIP_FIND_LINKS", wheels.as_os_str()),
            ("PIP_DISABLE_PIP_VERSION_CHECK", "1".as_ref()),
        ],
    );
    let install = format!(
        r#"mutation {{ installConnector(package: "{FAKER}") {{ name kind version file sha256 }} }}"#
    );

    let out = graphql(&addr, &reader, &install);
    assert!(error_of(&out).contains("needs the admin role"), "{out}");
    let out = graphql(
        &addr,
        &reader,
        r#"mutation { removeConnector(name: "source-faker") { name } }"#,
    );
    assert!(error_of(&out).contains("needs the admin role"), "{out}");
    let out = graphql(
        &addr,
        &admin,
        r#"mutation { installConnector(package: "airbyte:source-faker") { name } }"#,
    );
    assert!(
        error_of(&out).contains("\"airbyte:source-faker\": the version is not pinned"),
        "{out}"
    );
    let out = graphql(
        &addr,
        &admin,
        r#"mutation { installConnector(package: "airbyte:faker==7.2.1") { name } }"#,
    );
    assert!(
        error_of(&out).contains("an Airbyte source's package is airbyte-source-<name>"),
        "{out}"
    );
    let out = graphql(
        &addr,
        &admin,
        r#"mutation { installConnector(package: "airbyte:source-sqlite==1.0.0", file: "x.so") { name } }"#,
    );
    assert!(error_of(&out).contains("give one of `file`"), "{out}");
    assert!(
        !plugins.join("venvs").exists()
            || std::fs::read_dir(plugins.join("venvs")).unwrap().count() == 0,
        "nothing was installed"
    );

    let started = Instant::now();
    let mut waits = 0;
    let installed = loop {
        let out = graphql(&addr, &admin, &install);
        if out.get("errors").is_none() {
            break out;
        }
        let e = error_of(&out);
        // The answer saying so, or, on a machine too busy to answer within the request's
        // time, the request's own time bound: the install goes on either way.
        if e.contains("pip is still installing it") && e.contains("ask again") {
            waits += 1;
        } else {
            assert!(e.contains("the request ran longer than 2000 ms"), "{out}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not installed in 600 s"
        );
    };
    let c = &installed["data"]["installConnector"];
    assert_eq!(c["name"], "source-faker", "{installed}");
    assert_eq!(c["version"], "7.2.1", "{installed}");
    assert_eq!(c["sha256"].as_str().unwrap().len(), 64, "{installed}");
    let command = PathBuf::from(c["file"].as_str().unwrap());
    assert!(command.is_file(), "{installed}");
    assert!(
        waits > 0,
        "pip took under 2 s: the long install was not exercised"
    );
    // One install, however many requests waited for it.
    assert_eq!(std::fs::read_dir(plugins.join("venvs")).unwrap().count(), 1);

    let out = graphql(&addr, &admin, "{ connectors { name version } }");
    assert!(
        out["data"]["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "source-faker" && c["version"] == "7.2.1"),
        "{out}"
    );
    let out = graphql(
        &addr,
        &admin,
        r#"mutation { removeConnector(name: "source-fakr") { name } }"#,
    );
    assert!(error_of(&out).contains("source-fakr"), "{out}");
    let out = graphql(
        &addr,
        &admin,
        r#"mutation { removeConnector(name: "source-faker") { name version } }"#,
    );
    // Deleting the virtual environment may outlast a 2 s request on a busy machine: it goes
    // on in the server.
    if out.get("errors").is_some() {
        assert!(error_of(&out).contains("still removing it"), "{out}");
    } else {
        assert_eq!(
            out["data"]["removeConnector"]["name"], "source-faker",
            "{out}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while command.exists() {
        assert!(
            Instant::now() < deadline,
            "{} still exists",
            command.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    // The command line sees what the API did.
    let list = ok(dossier(&dir, &["connectors", "list", "--json"]), "list");
    assert!(!list.contains("source-faker"), "{list}");
}
