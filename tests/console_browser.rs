//! The console in a real browser: headless Chromium driven through ChromeDriver (Debian's
//! `chromium` and `chromium-driver`, which the README's test command installs), walking the
//! demo as a user would: sign in with a key, see the source healthy, sync it and watch the run
//! finish, find a contact and open its card, export the contacts, build a segment whose live
//! count equals the API's count, preview a shortcut, and revoke the key that signed in.
//!
//! Each page is saved as a screenshot under `target/console-screenshots/` (the README shows
//! some of them). Without Chromium the test fails: `scripts/test.sh` installs it.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{api_key, config, demo, post_graphql, serve};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// Kills a child process when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chromedriver() -> (Killed, String) {
    let driver = std::env::var("DOSSIER_TEST_CHROMEDRIVER")
        .unwrap_or_else(|_| "/usr/bin/chromedriver".to_string());
    let port = free_port();
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {driver} ({e}): install Debian's chromium and chromium-driver \
                 (scripts/test.sh does) or set DOSSIER_TEST_CHROMEDRIVER"
            )
        });
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (Killed(child), format!("http://127.0.0.1:{port}"))
}

async fn browser(driver: &str, profile: &Path) -> Client {
    let chromium =
        std::env::var("DOSSIER_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
    // Without the background-networking flags Chromium keeps calling home, and this
    // machine's closed network refuses each attempt.
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1440,1000",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let caps = json!({
        "goog:chromeOptions": { "binary": chromium, "args": args }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a Chromium session through chromedriver")
}

struct Walk {
    client: Client,
    base: String,
    shots: PathBuf,
}

impl Walk {
    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn body(&self) -> String {
        self.try_body().await.expect("the page's text")
    }

    /// The page's text; `None` while a navigation replaces the page under the read.
    async fn try_body(&self) -> Option<String> {
        let body = self.client.find(Locator::Css("body")).await.ok()?;
        body.text().await.ok()
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Waits until the page's text satisfies `ok` (up to `secs`), and returns it.
    async fn wait_text(&self, secs: u64, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = self.try_body().await.unwrap_or_default();
            if ok(&text) {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(secs),
                "waited {secs} s for {what}; the page says:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_walks_the_console_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 400);
    let cfg = config(dir.path());
    let key = api_key(&cfg, "admin");
    let (server, addr) = serve(&["--config", cfg.to_str().unwrap()]);
    let _server = Killed(server);
    let (_driver, driver_url) = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let w = Walk {
        client: browser(&driver_url, profile.path()).await,
        base: format!("http://{addr}"),
        shots,
    };

    // Signed out, every page leads to the sign-in form.
    w.goto("/contacts").await;
    let url = w.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/sign-in", "{url}");
    w.shot("01-sign-in").await;
    w.fill("#key", &key).await;
    w.click("form[action='/sign-in'] button[type=submit]").await;
    w.wait_text(10, "the home page", |t| t.contains("Sign out"))
        .await;

    // The demo's source, healthy after the demo's sync.
    w.goto("/sources").await;
    let text = w.body().await;
    assert!(text.contains("shop") && text.contains("idle"), "{text}");
    w.shot("02-sources").await;

    // Its page: sync now, then the run finishes and shows in the history.
    w.goto("/sources/shop").await;
    w.click("form[action='/sources/shop/sync'] button").await;
    let text = w
        .wait_text(60, "the run to finish", |t| t.contains("Sync of shop: run"))
        .await;
    assert!(text.contains("succeeded"), "{text}");
    // The history shows both runs: the demo's and this one.
    let rows = w
        .client
        .find_all(Locator::Css("table tbody tr"))
        .await
        .unwrap()
        .len();
    assert!(rows >= 2, "{text}");
    // Its streams as dossier.toml configures them: what each reads and how it maps.
    assert!(text.contains("Streams and mappings"), "{text}");
    assert!(text.contains("target = contact"), "{text}");
    assert!(text.contains("table = orders"), "{text}");
    w.shot("03-source").await;

    // Check: connection and mappings.
    w.click("form[action='/sources/shop/check'] button").await;
    w.wait_text(30, "the check", |t| {
        t.contains("Check of shop: ready to sync")
    })
    .await;

    // Contacts: search one by email and open its card.
    w.goto("/contacts").await;
    let first = w.client.find(Locator::Css("tbody tr td a")).await.unwrap();
    let email = first.text().await.unwrap();
    w.fill("#q", &email).await;
    w.click("form[role=search] > p > button[type=submit]").await;
    let text = w
        .wait_text(10, "the search", |t| t.contains("1 contact"))
        .await;
    assert!(text.contains(&email), "{text}");
    w.shot("04-contacts").await;
    w.click("tbody tr td a").await;
    let text = w.wait_text(10, "the card", |t| t.contains("Profile")).await;
    assert!(text.contains(&email), "{text}");
    w.shot("05-contact-card").await;

    // A filter with its live count, equal to the API's count.
    let filter = r#"country = "FR" and agg.transactions >= 1"#;
    let api = post_graphql(
        &addr,
        &key,
        &json!({ "query": "query($f: String) { contacts(filter: $f) { totalCount } }", "variables": { "f": filter } })
            .to_string(),
    );
    let body = api.split("\r\n\r\n").nth(1).unwrap();
    let total = serde_json::from_str::<serde_json::Value>(body.trim())
        .unwrap_or_else(|e| panic!("{e}: {api}"))["data"]["contacts"]["totalCount"]
        .as_i64()
        .unwrap_or_else(|| panic!("{api}"));
    assert!(total > 0, "the demo has French customers with orders");
    w.goto("/segments/-/new").await;
    w.fill("#name", "fr_buyers").await;
    w.fill("#definition", filter).await;
    let live = w
        .wait_text(10, "the live count", |t| {
            t.contains(&format!("{total} contact"))
        })
        .await;
    assert!(live.contains(&format!("{total} contact")), "{live}");
    w.shot("06-segment-editor").await;
    w.click("main form[action='/segments'] button[type=submit]")
        .await;
    let text = w
        .wait_text(10, "the saved segment", |t| t.contains("fr_buyers"))
        .await;
    assert!(text.contains(&total.to_string()), "{text}");

    // A shortcut, previewed for the contact found above.
    w.goto("/shortcuts/-/new").await;
    w.fill("#name", "greeting").await;
    w.fill("#template", "Hello {{ email }}").await;
    w.fill("#contact", &email).await;
    let text = w
        .wait_text(10, "the preview", |t| t.contains(&format!("Hello {email}")))
        .await;
    assert!(text.contains(&format!("Hello {email}")), "{text}");
    w.shot("07-shortcut-preview").await;

    // At phone width the pages reflow: nothing wider than the screen but scrolling tables.
    w.client.set_window_size(390, 844).await.unwrap();
    for page in ["/contacts", "/sources/shop", "/segments/-/new"] {
        w.goto(page).await;
        let overflow = w
            .client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap_or(i64::MAX) <= 0,
            "{page} is {overflow} px wider than a phone's screen"
        );
    }
    w.goto("/contacts").await;
    w.shot("09-contacts-phone").await;
    w.client.set_window_size(1440, 1000).await.unwrap();

    // Keys: revoking the key this session signed in with signs it out.
    w.goto("/keys").await;
    w.shot("08-keys").await;
    w.click("form[action$='/revoke'] button").await;
    w.wait_text(10, "the sign-in page", |t| t.contains("revoked"))
        .await;
    let url = w.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/sign-in", "{url}");

    w.client.close().await.unwrap();
}
