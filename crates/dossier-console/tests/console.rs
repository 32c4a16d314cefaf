//! The console in-process: sign-in and sessions, roles and workspaces through the gateway's
//! schema, CSRF and origin checks, the pages, the CSP, and GraphiQL served offline.

mod common;

use std::time::Duration;

use axum::http::{StatusCode, header};
use common::{OTHER, WS, app, app_with, enc, keys, open};
use dossier_gateway::GatewayConfig;

/// Every page a signed-in session reads.
const PAGES: &[&str] = &["/", "/sources", "/contacts", "/contacts?email=user1"];

#[tokio::test]
async fn signed_out_requests_are_sent_to_sign_in() {
    let t = app(keys()).await;
    let id = t.contact_id(WS, "user1@example.com").await;
    let card = format!("/contacts/{id}");
    for cookie in [None, Some("dossier_session=0123"), Some("other=1")] {
        for uri in PAGES.iter().copied().chain([card.as_str()]) {
            let r = t.get(uri, cookie).await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{uri}");
            assert_eq!(r.location(), "/sign-in", "{uri}");
        }
        for uri in ["/sources/shop/pause", "/sources/shop/sync", "/sign-out"] {
            let r = t.post(uri, cookie, "csrf=x").await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{uri}");
            assert_eq!(r.location(), "/sign-in", "{uri}");
        }
    }
    assert!(!t.paused().await);
    let r = t.get("/sign-in", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(r#"name="key""#));
}

#[tokio::test]
async fn a_wrong_or_revoked_key_is_refused() {
    let t = app(keys()).await;
    for key in ["", "dsk_nope", &format!("{}x", t.admin)] {
        let r = t.post("/sign-in", None, &format!("key={}", enc(key))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{key}");
        assert!(r.body.contains("invalid API key"), "{}", r.body);
        assert!(r.set_cookie().is_none());
    }
    let (revoked, secret) = t
        .store
        .create_key(WS, "gone", dossier_gateway::Role::Admin, None)
        .await
        .unwrap();
    t.store.revoke_key(&revoked.id).await.unwrap();
    let r = t.post("/sign-in", None, &format!("key={secret}")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("revoked"), "{}", r.body);
}

#[tokio::test]
async fn a_session_is_a_strict_http_only_cookie_and_sign_out_deletes_it() {
    let t = app(keys()).await;
    let r = t.post("/sign-in", None, &format!("key={}", t.admin)).await;
    let set = r.set_cookie().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set.contains(attribute), "{set}");
    }
    // The cookie is a random id, not the key.
    assert!(!set.contains(&t.admin[..16]), "{set}");
    let b = t.sign_in(&t.admin).await;
    let r = t
        .post("/sign-out", Some(&b.cookie), &format!("csrf={}", b.csrf))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/sign-in?why=signed-out");
    assert!(r.set_cookie().unwrap().contains("Max-Age=0"));
    // The session is gone on the server, not only from the browser.
    let r = t.get("/", Some(&b.cookie)).await;
    assert_eq!(r.location(), "/sign-in");
}

#[tokio::test]
async fn a_revoked_key_ends_its_sessions() {
    let t = app(keys()).await;
    let b = t.sign_in(&t.admin).await;
    let id = t.admin.split('_').nth(1).unwrap();
    t.store.revoke_key(id).await.unwrap();
    let r = t.get("/contacts", Some(&b.cookie)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/sign-in?why=revoked");
    let r = t.get(r.location(), None).await;
    assert!(r.body.contains("was revoked"), "{}", r.body);
    let r = t.get("/", Some(&b.cookie)).await;
    assert_eq!(r.location(), "/sign-in");
}

#[tokio::test]
async fn the_role_decides_what_is_shown_and_allowed() {
    let t = app(keys()).await;
    let admin = t.sign_in(&t.admin).await;
    let page = t.get("/sources", Some(&admin.cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    for (key, role) in [(&t.read, "read"), (&t.write, "write")] {
        let b = t.sign_in(key).await;
        let home = t.get("/", Some(&b.cookie)).await;
        assert!(!home.body.contains(r#"href="/sources""#), "{role}");
        // The sources are an admin query of the API: the console refuses as the API does.
        let r = t.get("/sources", Some(&b.cookie)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}");
        assert!(r.body.contains("needs the admin role"), "{}", r.body);
        assert!(t.get("/contacts", Some(&b.cookie)).await.status == StatusCode::OK);
    }
    let read = t.sign_in(&t.read).await;
    for action in ["pause", "sync", "resume", "cancel"] {
        let r = t
            .post(
                &format!("/sources/shop/{action}"),
                Some(&read.cookie),
                &format!("csrf={}", read.csrf),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{action}: {}", r.body);
        assert!(r.body.contains("needs the write role"), "{}", r.body);
    }
    assert!(!t.paused().await);
    // A write key may pause, as through the API.
    let write = t.sign_in(&t.write).await;
    let r = t
        .post(
            "/sources/shop/pause",
            Some(&write.cookie),
            &format!("csrf={}", write.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(t.paused().await);
}

#[tokio::test]
async fn writes_without_the_session_csrf_token_or_from_another_origin_are_refused() {
    let t = app(keys()).await;
    let a = t.sign_in(&t.admin).await;
    let b = t.sign_in(&t.admin).await;
    assert_ne!(a.csrf, b.csrf);
    for form in [
        String::new(),
        "csrf=".into(),
        "csrf=0000".into(),
        format!("csrf={}", b.csrf),
    ] {
        let r = t.post("/sources/shop/pause", Some(&a.cookie), &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form}");
        assert!(r.body.contains("stale"), "{}", r.body);
        let r = t.post("/sign-out", Some(&a.cookie), &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form}");
    }
    let r = t
        .post_from(
            "/sources/shop/pause",
            Some(&a.cookie),
            &format!("csrf={}", a.csrf),
            "http://evil.test",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .post_from(
            "/sign-in",
            None,
            &format!("key={}", t.admin),
            "http://evil.test",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookie().is_none());
    assert!(!t.paused().await);
    // The session still works with its own token.
    let r = t
        .post(
            "/sources/shop/pause",
            Some(&a.cookie),
            &format!("csrf={}", a.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(t.paused().await);
}

#[tokio::test]
async fn sources_show_health_and_their_buttons_act() {
    let t = app(keys()).await;
    let b = t.sign_in(&t.admin).await;
    let r = t.get("/sources", Some(&b.cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    // The last error is escaped, failures in a row counted, the schedule shown.
    assert!(r.body.contains("connection &lt;refused&gt;"), "{}", r.body);
    assert!(!r.body.contains("connection <refused>"));
    assert!(r.body.contains("<td>2</td>"), "{}", r.body);
    assert!(r.body.contains("failing") && r.body.contains("every 15m"));
    assert!(r.body.contains(r#"action="/sources/shop/sync""#));
    assert!(r.body.contains(r#"action="/sources/shop/pause""#));

    let form = format!("csrf={}", b.csrf);
    let r = t.post("/sources/shop/sync", Some(&b.cookie), &form).await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/sources")
    );
    let page = t.get("/sources", Some(&b.cookie)).await;
    assert!(page.body.contains("Sync of shop: run"), "{}", page.body);
    assert!(page.body.contains("succeeded"), "{}", page.body);
    // The flash shows once.
    let page = t.get("/sources", Some(&b.cookie)).await;
    assert!(!page.body.contains("Sync of shop"));

    t.post("/sources/shop/pause", Some(&b.cookie), &form).await;
    assert!(t.paused().await);
    let page = t.get("/sources", Some(&b.cookie)).await;
    assert!(page.body.contains("shop is paused."));
    assert!(page.body.contains(r#"action="/sources/shop/resume""#));
    assert!(!page.body.contains(r#"action="/sources/shop/sync""#));
    t.post("/sources/shop/resume", Some(&b.cookie), &form).await;
    assert!(!t.paused().await);
    t.post("/sources/shop/cancel", Some(&b.cookie), &form).await;
    let page = t.get("/sources", Some(&b.cookie)).await;
    assert!(page.body.contains("shop is not running."), "{}", page.body);

    // An unknown source or action: the API's message, or a 404.
    t.post("/sources/nope/pause", Some(&b.cookie), &form).await;
    let page = t.get("/sources", Some(&b.cookie)).await;
    assert!(
        page.body.contains("unknown source &quot;nope&quot;"),
        "{}",
        page.body
    );
    let r = t.post("/sources/shop/delete", Some(&b.cookie), &form).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_long_sync_goes_on_in_the_background() {
    let t = app_with(keys(), Duration::from_secs(4)).await;
    let b = t.sign_in(&t.admin).await;
    let started = std::time::Instant::now();
    let r = t
        .post(
            "/sources/shop/sync",
            Some(&b.cookie),
            &format!("csrf={}", b.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(started.elapsed() < Duration::from_secs(4));
    let page = t.get("/sources", Some(&b.cookie)).await;
    assert!(
        page.body.contains("goes on in the background"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn contacts_are_searched_by_email_and_paged_with_their_total() {
    let t = app(keys()).await;
    let b = t.sign_in(&t.read).await;
    let r = t.get("/contacts", Some(&b.cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("40 contacts"), "{}", r.body);
    assert_eq!(r.body.matches("<tr><td>").count(), 25);
    assert!(!r.body.contains("secret@other.example"));
    let at = r.body.find(r#"rel="next""#).expect("a next page link");
    let href = r.body[..at].rsplit("href=\"").next().unwrap();
    let next = href[..href.find('"').unwrap()].replace("&amp;", "&");
    let r = t.get(&next, Some(&b.cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.matches("<tr><td>").count(), 15);
    assert!(!r.body.contains(r#"rel="next""#));
    assert!(r.body.contains("First page"));

    // user1, user10 to user19: eleven.
    let r = t.get("/contacts?email=USER1", Some(&b.cookie)).await;
    assert!(r.body.contains("11 contacts"), "{}", r.body);
    assert!(r.body.contains(r#"value="USER1""#));
    let r = t.get("/contacts?email=secret", Some(&b.cookie)).await;
    assert!(r.body.contains("0 contacts"), "{}", r.body);
    // What is searched for is escaped where the page shows it.
    let r = t
        .get(
            &format!("/contacts?email={}", enc("\"><script>")),
            Some(&b.cookie),
        )
        .await;
    assert!(!r.body.contains("\"><script>"));
    assert!(r.body.contains("&quot;&gt;&lt;script&gt;"));
}

#[tokio::test]
async fn a_contact_card_shows_its_parts_and_another_workspace_s_ids_answer_404() {
    let t = app(keys()).await;
    let b = t.sign_in(&t.read).await;
    let id = t.contact_id(WS, "user1@example.com").await;
    let r = t.get(&format!("/contacts/{id}"), Some(&b.cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for part in [
        "user1@example.com",
        "FR",
        "shop:customers:1",
        "price_plan",
        "basic",
        "from shop/customers record",
        "Recent sessions",
        "order",
        "total: 42",
    ] {
        assert!(r.body.contains(part), "{part}: {}", r.body);
    }
    let other = t.contact_id(OTHER, "secret@other.example").await;
    for uri in [
        format!("/contacts/{other}"),
        "/contacts/999999".into(),
        "/contacts/abc".into(),
        "/contacts/-1".into(),
    ] {
        let r = t.get(&uri, Some(&b.cookie)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(!r.body.contains("secret@other.example"));
    }
    // The other workspace's key sees its own contact, and not ours.
    let o = t.sign_in(&t.other_admin).await;
    let r = t.get(&format!("/contacts/{other}"), Some(&o.cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("secret@other.example"));
    if id != other {
        let r = t.get(&format!("/contacts/{id}"), Some(&o.cookie)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

/// The `<script` tags of a page all load a file; no inline handlers or styles.
fn assert_no_inline_code(uri: &str, body: &str) {
    for (at, _) in body.match_indices("<script") {
        let tag = &body[at..at + body[at..].find('>').unwrap()];
        assert!(
            tag.contains(" src=\"/assets/"),
            "{uri}: inline script {tag}"
        );
        assert!(body[at..].contains("></script>"), "{uri}");
    }
    for inline in [
        "<style",
        " style=",
        " onclick=",
        " onload=",
        " onsubmit=",
        "javascript:",
    ] {
        assert!(!body.contains(inline), "{uri}: {inline}");
    }
}

#[tokio::test]
async fn every_page_has_a_strict_csp_and_no_inline_script() {
    let t = app(keys()).await;
    let b = t.sign_in(&t.admin).await;
    let id = t.contact_id(WS, "user1@example.com").await;
    let card = format!("/contacts/{id}");
    let mut seen = 0;
    for (uri, cookie) in PAGES.iter().map(|p| (*p, Some(b.cookie.as_str()))).chain([
        (card.as_str(), Some(b.cookie.as_str())),
        ("/sign-in", None),
        ("/graphiql", None),
        ("/contacts/999999", Some(b.cookie.as_str())),
    ]) {
        let r = t.get(uri, cookie).await;
        assert!(
            r.status == StatusCode::OK || r.status == StatusCode::NOT_FOUND,
            "{uri}"
        );
        assert!(r.content_type().starts_with("text/html"), "{uri}");
        let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert_eq!(csp, dossier_console::CSP);
        assert!(csp.starts_with("default-src 'self'") && !csp.contains("unsafe"));
        assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_no_inline_code(uri, &r.body);
        seen += 1;
    }
    assert_eq!(seen, PAGES.len() + 4);
    // Redirects and refusals carry it too.
    let r = t.get("/", None).await;
    assert!(r.headers.contains_key(header::CONTENT_SECURITY_POLICY));
}

#[tokio::test]
async fn graphiql_loads_only_local_assets_served_with_their_types() {
    let t = app(keys()).await;
    let r = t.get("/graphiql", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(r#"id="graphiql""#) && r.body.contains(r#"data-access="keys""#));
    let mut refs = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (at, _) in r.body.match_indices(attr) {
            let rest = &r.body[at + attr.len()..];
            refs.push(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    assert_eq!(refs.len(), 6, "{refs:?}");
    for asset in &refs {
        assert!(asset.starts_with("/assets/"), "{asset} is not served here");
        let r = t.get(asset, None).await;
        assert_eq!(r.status, StatusCode::OK, "{asset}");
        let expected = if asset.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(r.content_type(), expected, "{asset}");
        assert!(r.body.len() > 20, "{asset}");
    }
    for vendored in [
        "graphiql.min.js",
        "react.production.min.js",
        "react-dom.production.min.js",
    ] {
        assert!(refs.iter().any(|r| r.ends_with(vendored)), "{vendored}");
    }
    let init = t.get("/assets/graphiql-init.js", None).await;
    assert!(init.body.contains("createFetcher") && init.body.contains("/graphql"));
    assert_eq!(
        t.get("/assets/nope.js", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get("/assets/../Cargo.toml", None).await.status,
        StatusCode::NOT_FOUND
    );
    let open = app(open()).await;
    let r = open.get("/graphiql", None).await;
    assert!(r.body.contains(r#"data-access="open""#));
}

#[tokio::test]
async fn an_open_console_needs_no_sign_in_but_still_a_csrf_token() {
    let t = app(open()).await;
    let r = t.get("/", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("open access"));
    assert!(r.body.contains("40 contacts"), "{}", r.body);
    let cookie = r.set_cookie().expect("a session for the CSRF token");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = t.get("/sources", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.set_cookie().is_none(), "the session is kept");
    let csrf = page.csrf();
    assert_eq!(t.get("/sign-in", None).await.location(), "/");
    let r = t.post("/sources/shop/pause", Some(&cookie), "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .post("/sources/shop/pause", None, &format!("csrf={csrf}"))
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a token without its session"
    );
    assert!(!t.paused().await);
    let r = t
        .post(
            "/sources/shop/pause",
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(t.paused().await);
}

#[tokio::test]
async fn a_source_page_shows_its_runs_rejected_records_and_check() {
    let t = app(keys()).await;
    let mut rejected = dossier_test_support::shop::batch("customers", vec![], 2);
    rejected.rejected = vec![(Some("c9".into()), "<email> is not an email".into())];
    t.store.apply_batch(WS, &rejected).await.unwrap();
    for error in [None, Some("connection <refused>")] {
        let run = t.store.start_run(WS, "shop", "manual").await.unwrap();
        t.store
            .finish_run(run, error, &Default::default())
            .await
            .unwrap();
    }
    let b = t.sign_in(&t.admin).await;
    let r = t.get("/sources/shop", Some(&b.cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Health, the two failed runs as a chart and a table, the refused record escaped.
    assert!(
        r.body.contains("Failures in a row</dt><dd>2</dd>"),
        "{}",
        r.body
    );
    assert_eq!(r.body.matches(r#"<rect class="bar failed""#).count(), 1);
    assert_eq!(r.body.matches(r#"<rect class="bar""#).count(), 1);
    assert!(r.body.contains("connection &lt;refused&gt;"), "{}", r.body);
    assert!(
        r.body
            .contains("<td>c9</td><td>&lt;email&gt; is not an email</td>")
    );
    assert!(r.body.contains(r#"data-progress="/sources/shop/progress""#));
    assert!(r.body.contains(r#"action="/sources/shop/check""#));
    // Its stream as configured: what it reads and how it maps.
    assert!(r.body.contains("<h3>customers</h3>"), "{}", r.body);
    assert!(
        r.body
            .contains("<li><code>table</code> = <code>customers</code></li>"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("<code>target</code> = <code>contact</code>")
    );

    // Check: what the source reports, back on the source's page.
    let r = t
        .post(
            "/sources/shop/check",
            Some(&b.cookie),
            &format!("csrf={}&back=source", b.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/sources/shop");
    let r = t.get("/sources/shop", Some(&b.cookie)).await;
    assert!(
        r.body
            .contains("Check of shop: 1 problem: stream &quot;customers&quot;: no column"),
        "{}",
        r.body
    );

    // Another workspace has no such source; a read key may not check one.
    let other = t.sign_in(&t.other_admin).await;
    let r = t.get("/sources/shop", Some(&other.cookie)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t
        .post(
            "/sources/shop/check",
            Some(&other.cookie),
            &format!("csrf={}", other.csrf),
        )
        .await;
    assert!(r.status == StatusCode::SEE_OTHER, "{}", r.body);
    let r = t.get("/sources", Some(&other.cookie)).await;
    assert!(r.body.contains("unknown source"), "{}", r.body);
    let reader = t.sign_in(&t.read).await;
    let r = t
        .post(
            "/sources/shop/check",
            Some(&reader.cookie),
            &format!("csrf={}", reader.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

#[tokio::test]
async fn the_filter_builder_adds_a_condition_and_the_list_counts_it() {
    let t = app(keys()).await;
    // One contact of another country, so the filter counts something smaller than all.
    t.store
        .apply_batch(
            WS,
            &dossier_test_support::shop::batch(
                "customers",
                vec![dossier_test_support::shop::customer(
                    99,
                    "ana@example.com",
                    "ES",
                    "pro",
                )],
                2,
            ),
        )
        .await
        .unwrap();
    let b = t.sign_in(&t.read).await;
    let r = t
        .get(
            &format!(
                "/contacts?filter={}&add=1&field=data.price_plan&op={}&value=pro",
                enc(r#"country = "ES""#),
                enc("=")
            ),
            Some(&b.cookie),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("1 contact "), "{}", r.body);
    assert!(
        r.body
            .contains("(country = &quot;ES&quot;) and data.price_plan = &quot;pro&quot;"),
        "{}",
        r.body
    );
    // Searched by name as well as email; a whole email, whatever its case, by its index.
    let r = t.get("/contacts?q=ana%40", Some(&b.cookie)).await;
    assert!(r.body.contains("1 contact "), "{}", r.body);
    let r = t
        .get("/contacts?q=User17%40Example.com", Some(&b.cookie))
        .await;
    assert!(r.body.contains("1 contact "), "{}", r.body);
    assert!(r.body.contains("user17@example.com"), "{}", r.body);
    // The next page carries the first page's total instead of counting again.
    let r = t.get("/contacts", Some(&b.cookie)).await;
    assert!(r.body.contains("41 contacts"), "{}", r.body);
    assert!(r.body.contains("&amp;total=41&amp;after="), "{}", r.body);
    // A filter that does not parse says where, and keeps the form.
    let r = t
        .get(
            &format!("/contacts?filter={}", enc("country =")),
            Some(&b.cookie),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("line 1, column"), "{}", r.body);
    assert!(r.body.contains(r#"id="definition""#));
}

#[tokio::test]
async fn a_csv_export_streams_every_page_of_a_filter() {
    // Pages of 7 contacts: the export reads six of them for 40.
    let t = app(GatewayConfig {
        max_page_size: 7,
        ..keys()
    })
    .await;
    let b = t.sign_in(&t.read).await;
    let r = t.get("/contacts.csv", Some(&b.cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "text/csv; charset=utf-8");
    let lines: Vec<&str> = r.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("id,email,phone,first_name"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 1 + 40, "{}", r.body);
    assert!(!r.body.contains("secret@other.example"));
    let emails: std::collections::BTreeSet<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(emails.len(), 40);
    // Filtered: user1 and user10 to user19.
    let r = t
        .get(
            &format!("/contacts.csv?q={}", enc("user1")),
            Some(&b.cookie),
        )
        .await;
    assert_eq!(
        r.body.split("\r\n").filter(|l| !l.is_empty()).count(),
        1 + 11
    );
    // A filter that does not parse is refused before any CSV.
    let r = t
        .get(
            &format!("/contacts.csv?filter={}", enc("agg.")),
            Some(&b.cookie),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// The next server-sent event's text from a streaming body, waiting up to 5 s.
async fn next_event(body: &mut axum::body::Body) -> String {
    use http_body_util::BodyExt as _;
    let mut text = String::new();
    while !text.contains("\n\n") {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    text
}

#[tokio::test]
async fn a_run_s_progress_reaches_its_source_page_as_server_sent_events() {
    use dossier_gateway::{ProgressEvent, ProgressKind};
    use tower::ServiceExt as _;
    let t = app(keys()).await;
    let b = t.sign_in(&t.read).await;
    let request = |uri: &str| {
        axum::http::Request::get(uri)
            .header(header::COOKIE, b.cookie.as_str())
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let r = t
        .app
        .clone()
        .oneshot(request("/sources/shop/progress"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = r.into_body();
    let started = std::time::Instant::now();
    while t.progress.receiver_count() == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "no subscriber");
        // The subscription starts when the body is first polled.
        let _ = tokio::time::timeout(Duration::from_millis(50), async {
            use http_body_util::BodyExt as _;
            body.frame().await
        })
        .await;
    }
    // Another workspace's run and another source's are not this page's.
    t.progress.send(ProgressEvent::new(
        ProgressKind::RunStarted,
        OTHER,
        "shop",
        7,
    ));
    t.progress
        .send(ProgressEvent::new(ProgressKind::RunStarted, WS, "crm", 8));
    t.progress.send(ProgressEvent {
        stream: Some("customers".into()),
        rows: Some(500),
        stream_rows: Some(1500),
        ..ProgressEvent::new(ProgressKind::BatchCommitted, WS, "shop", 9)
    });
    let event = next_event(&mut body).await;
    let data = event
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("{event}"));
    let json: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(json["kind"], "BATCH_COMMITTED");
    assert_eq!(json["runId"], "9");
    assert_eq!(json["streamRows"], 1500);

    // An unknown source: one `refused` event saying so.
    let r = t
        .app
        .clone()
        .oneshot(request("/sources/nope/progress"))
        .await
        .unwrap();
    let event = next_event(&mut r.into_body()).await;
    assert!(event.contains("event: refused"), "{event}");
    assert!(event.contains("unknown source"), "{event}");
}
