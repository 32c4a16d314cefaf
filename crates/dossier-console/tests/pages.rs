//! The console's segments, shortcuts, keys and connectors pages in-process: rendering with
//! real data, every write as a POST with the CSRF token through a mutation, a read key
//! refused each write, another workspace's names answering 404, the live count agreeing with
//! the GraphQL count, and the shortcut preview (rendered text, fallbacks, line and column).

mod common;

use std::sync::Arc;

use axum::http::{StatusCode, header};
use common::{Browser, OTHER, T, WS, app, enc, keys, open};
use dossier_gateway::{ConnectorAdmin, ConnectorInfo, ConnectorKind};
use serde_json::{Value, json};

/// A form of `fields` with the browser's CSRF token.
fn form(b: &Browser, fields: &[(&str, &str)]) -> String {
    let mut out = format!("csrf={}", b.csrf);
    for (k, v) in fields {
        out.push_str(&format!("&{k}={}", enc(v)));
    }
    out
}

/// `GET` as the browser, asserting the status.
async fn page(t: &T, b: &Browser, uri: &str, status: StatusCode) -> String {
    let r = t.get(uri, Some(&b.cookie)).await;
    assert_eq!(r.status, status, "{uri}: {}", r.body);
    r.body
}

async fn total(t: &T, ws: &str, filter: &str) -> i64 {
    let q = format!(
        "{{ contacts(filter: {}, first: 1) {{ totalCount }} }}",
        serde_json::to_string(filter).unwrap()
    );
    t.data(ws, &q).await["contacts"]["totalCount"]
        .as_i64()
        .unwrap()
}

async fn segment_names(t: &T, ws: &str) -> Vec<String> {
    t.data(ws, "{ segments { name } }").await["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

async fn shortcut_names(t: &T, ws: &str) -> Vec<String> {
    t.data(ws, "{ shortcuts { name } }").await["shortcuts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// Every `<input>`, `<textarea>` and `<select>` with an id has a `<label for>` naming it.
fn assert_labelled(uri: &str, body: &str) {
    for tag in ["<input", "<textarea", "<select"] {
        for (at, _) in body.match_indices(tag) {
            let el = &body[at..at + body[at..].find('>').unwrap()];
            if el.contains(r#"type="hidden""#) {
                continue;
            }
            let id = el
                .split(" id=\"")
                .nth(1)
                .unwrap_or_else(|| panic!("{uri}: a field without an id: {el}"));
            let id = &id[..id.find('"').unwrap()];
            assert!(
                body.contains(&format!(r#"<label for="{id}">"#)),
                "{uri}: no label for {id}"
            );
        }
    }
}

/// No inline script or style: the CSP would refuse them.
fn assert_no_inline_code(uri: &str, body: &str) {
    for (at, _) in body.match_indices("<script") {
        let tag = &body[at..at + body[at..].find('>').unwrap()];
        assert!(tag.contains(" src=\"/assets/"), "{uri}: inline {tag}");
    }
    for inline in ["<style", " style=", " onclick=", " oninput=", "javascript:"] {
        assert!(!body.contains(inline), "{uri}: {inline}");
    }
}

#[tokio::test]
async fn segments_are_listed_created_edited_with_their_feed_and_deleted() {
    let t = app(keys()).await;
    let b = t.sign_in(&t.write).await;
    let body = page(&t, &b, "/segments", StatusCode::OK).await;
    assert!(body.contains("No segments are saved yet"), "{body}");
    assert!(body.contains(r#"href="/segments/-/new""#));
    let body = page(&t, &b, "/", StatusCode::OK).await;
    assert!(
        body.contains(r#"<a href="/segments">Segments</a>"#),
        "{body}"
    );

    let new = page(&t, &b, "/segments/-/new", StatusCode::OK).await;
    assert_labelled("/segments/-/new", &new);
    assert_no_inline_code("/segments/-/new", &new);
    assert!(new.contains(r#"<script src="/assets/segments.js"></script>"#));
    assert!(new.contains(r#"data-count="/segments/-/count""#));
    assert!(new.contains(r#"<output id="live-count""#) && new.contains(r#"aria-live="polite""#));

    let r = t
        .post(
            "/segments",
            Some(&b.cookie),
            &form(
                &b,
                &[
                    ("name", "french"),
                    ("definition", r#"country = "FR""#),
                    ("description", "Everyone in <France>"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/segments/french");
    let body = page(&t, &b, "/segments/french", StatusCode::OK).await;
    assert!(
        body.contains("Segment french saved: 40 contacts match."),
        "{body}"
    );
    assert!(body.contains("40 contacts are in this segment"), "{body}");
    assert!(body.contains("Everyone in &lt;France&gt;"));
    assert!(body.contains("country = &quot;FR&quot;"));
    // The feed: everyone entered, each linking to their card.
    assert_eq!(body.matches(r#"<td class="ok">entered</td>"#).count(), 40);
    let id = t.contact_id(WS, "user1@example.com").await;
    assert!(body.contains(&format!(
        r#"<a href="/contacts/{id}">user1@example.com</a>"#
    )));
    // The editor of a saved segment keeps its name and shows its count.
    assert!(body.contains(r#"value="french" readonly"#), "{body}");
    assert!(body.contains(r#"name="saved" value="1""#));
    assert_labelled("/segments/french", &body);
    assert_no_inline_code("/segments/french", &body);
    let list = page(&t, &b, "/segments", StatusCode::OK).await;
    assert!(
        list.contains(r#"<a href="/segments/french">french</a>"#),
        "{list}"
    );
    assert!(list.contains(r#"<td class="num">40</td>"#), "{list}");

    // Edited: eleven stay (user1, user10 to user19), twenty-nine leave.
    let r = t
        .post(
            "/segments",
            Some(&b.cookie),
            &form(
                &b,
                &[
                    ("name", "french"),
                    ("definition", r#"country = "FR" and email contains "user1""#),
                    ("description", ""),
                    ("saved", "1"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let body = page(&t, &b, "/segments/french", StatusCode::OK).await;
    assert!(body.contains("11 contacts are in this segment"), "{body}");
    // Today's row of the history: forty entered, twenty-nine left.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        body.contains(&format!(
            r#"<tr><th scope="row">{today}</th><td class="num">40</td><td class="num">29</td></tr>"#
        )),
        "{body}"
    );
    assert_eq!(
        body.matches(r#"<td class="num">0</td><td class="num">0</td>"#)
            .count(),
        13
    );
    assert_eq!(
        body.matches(r#"<td class="muted">left</td>"#).count(),
        10,
        "{body}"
    );
    assert!(body.contains(r#"rel="next""#), "the feed is paged: {body}");
    let at = body.find(r#"rel="next""#).unwrap();
    let href = body[..at].rsplit("href=\"").next().unwrap();
    let next = href[..href.find('"').unwrap()].replace("&amp;", "&");
    let rest = page(&t, &b, &next, StatusCode::OK).await;
    assert_eq!(
        rest.matches(r#"<td class="muted">left</td>"#).count(),
        19,
        "{rest}"
    );
    assert!(rest.contains("First changes"));
    assert!(!rest.contains("Everyone in"), "the description was cleared");

    // A filter that does not parse comes back in the editor, pointing at its place.
    let bad = "country = \"FR\" and\n  agg.x >";
    let r = t
        .post(
            "/segments",
            Some(&b.cookie),
            &form(&b, &[("name", "broken"), ("definition", bad)]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("line 2, column"), "{}", r.body);
    assert!(r.body.contains(r#"<pre class="pointer""#), "{}", r.body);
    assert!(r.body.contains("  agg.x &gt;\n"), "{}", r.body);
    assert!(r.body.contains(r#"value="broken""#), "the form is kept");
    assert!(!segment_names(&t, WS).await.contains(&"broken".to_string()));

    let r = t
        .post("/segments/french/delete", Some(&b.cookie), &form(&b, &[]))
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/segments")
    );
    assert!(segment_names(&t, WS).await.is_empty());
    let r = t
        .post("/segments/french/delete", Some(&b.cookie), &form(&b, &[]))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    page(&t, &b, "/segments/french", StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn the_live_count_agrees_with_the_graphql_count_and_points_at_errors() {
    let t = app(keys()).await;
    let b = t.sign_in(&t.read).await;
    for filter in [
        r#"country = "FR""#,
        r#"email contains "user1""#,
        r#"email contains "user1" or email contains "user2""#,
        r#"data.price_plan = "basic" and not email contains "user3""#,
        r#"country = "DE""#,
    ] {
        let r = t
            .get(
                &format!("/segments/-/count?filter={}", enc(filter)),
                Some(&b.cookie),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{filter}: {}", r.body);
        assert_eq!(r.content_type(), "application/json");
        let answer: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            answer["count"],
            json!(total(&t, WS, filter).await),
            "{filter}"
        );
    }
    // What a saved segment counts, the live count counts.
    let filter = r#"email contains "user2""#;
    t.data(
        WS,
        &format!(
            "mutation {{ saveSegment(name: \"twos\", definition: {}) {{ name }} }}",
            serde_json::to_string(filter).unwrap()
        ),
    )
    .await;
    let saved =
        t.data(WS, r#"{ segment(name: "twos") { count } }"#).await["segment"]["count"].clone();
    assert_eq!(saved, json!(11));
    let r = t
        .get(
            &format!("/segments/-/count?filter={}", enc(filter)),
            Some(&b.cookie),
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap()["count"],
        saved
    );
    // The other workspace's contact is not counted here.
    let r = t
        .get(
            &format!(
                "/segments/-/count?filter={}",
                enc(r#"email = "secret@other.example""#)
            ),
            Some(&b.cookie),
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap()["count"],
        json!(0)
    );

    for (filter, line) in [("country = ", 1), ("country = \"FR\" and\nnope", 2)] {
        let r = t
            .get(
                &format!("/segments/-/count?filter={}", enc(filter)),
                Some(&b.cookie),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{filter}: {}", r.body);
        let answer: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(answer["line"], json!(line), "{answer}");
        assert!(answer["column"].as_u64().unwrap() >= 1, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains(&format!("line {line}, column")),
            "{answer}"
        );
    }
    // Signed out, the endpoint sends to sign-in like every page.
    let r = t.get("/segments/-/count?filter=x", None).await;
    assert_eq!(r.location(), "/sign-in");
    let js = t.get("/assets/segments.js", None).await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(js.content_type(), "text/javascript; charset=utf-8");
    assert!(js.body.contains("/segments/-/count") || js.body.contains("data-count"));
}

#[tokio::test]
async fn a_read_key_is_refused_every_write_and_forms_need_the_csrf_token() {
    let t = app(keys()).await;
    t.data(
        WS,
        r#"mutation { saveSegment(name: "all", definition: "country = \"FR\"") { name } saveShortcut(name: "hi", template: "Hi") { name } }"#,
    )
    .await;
    let read = t.sign_in(&t.read).await;
    // Reads are fine; the write buttons are not offered.
    let list = page(&t, &read, "/segments", StatusCode::OK).await;
    assert!(!list.contains("/segments/-/new"));
    let one = page(&t, &read, "/segments/all", StatusCode::OK).await;
    assert!(!one.contains("/segments/all/delete") && !one.contains(r#"action="/segments""#));
    let sc = page(&t, &read, "/shortcuts/hi", StatusCode::OK).await;
    assert!(!sc.contains(r#"value="save""#) && !sc.contains("/shortcuts/hi/delete"));
    assert!(sc.contains(r#"value="preview""#), "a read key may preview");

    let writes: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/segments",
            vec![("name", "mine"), ("definition", r#"country = "FR""#)],
        ),
        ("/segments/all/delete", vec![]),
        (
            "/shortcuts",
            vec![("name", "mine"), ("template", "Hello"), ("action", "save")],
        ),
        ("/shortcuts/hi/delete", vec![]),
        ("/keys", vec![("name", "mine"), ("role", "ADMIN")]),
        ("/keys/0123456789ab/revoke", vec![]),
    ];
    for (uri, fields) in &writes {
        let r = t.post(uri, Some(&read.cookie), &form(&read, fields)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}: {}", r.body);
        assert!(r.body.contains("role"), "{uri}: {}", r.body);
        assert!(r.body.contains(r#"class="error""#), "{uri}: {}", r.body);
    }
    // The write role may write segments and shortcuts, not keys.
    let write = t.sign_in(&t.write).await;
    for (uri, fields) in &writes[4..] {
        let r = t
            .post(uri, Some(&write.cookie), &form(&write, fields))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}: {}", r.body);
        assert!(r.body.contains("needs the admin role"), "{uri}: {}", r.body);
    }
    assert_eq!(segment_names(&t, WS).await, ["all"]);
    assert_eq!(shortcut_names(&t, WS).await, ["hi"]);
    assert_eq!(t.store.keys(Some(WS)).await.unwrap().len(), 3);

    // Without the session's token, or from another site, nothing is written.
    let admin = t.sign_in(&t.admin).await;
    let other = t.sign_in(&t.admin).await;
    for (uri, fields) in &writes {
        let mut body = String::new();
        for (k, v) in fields {
            body.push_str(&format!("{k}={}&", enc(v)));
        }
        for csrf in [
            String::new(),
            "csrf=0000&".into(),
            format!("csrf={}&", other.csrf),
        ] {
            let r = t
                .post(uri, Some(&admin.cookie), &format!("{csrf}{body}"))
                .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri} {csrf}");
            assert!(r.body.contains("stale"), "{uri}: {}", r.body);
        }
        let r = t
            .post_from(
                uri,
                Some(&admin.cookie),
                &form(&admin, fields),
                "http://evil.test",
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
    }
    // The preview saves nothing but is a POST: it wants the token too.
    let r = t
        .post("/shortcuts/-/preview", Some(&admin.cookie), "template=Hi")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(segment_names(&t, WS).await, ["all"]);
    assert_eq!(shortcut_names(&t, WS).await, ["hi"]);
    assert_eq!(t.store.keys(Some(WS)).await.unwrap().len(), 3);
    assert!(
        t.store
            .keys(Some(WS))
            .await
            .unwrap()
            .iter()
            .all(|k| k.revoked_at.is_none())
    );
}

#[tokio::test]
async fn another_workspace_s_segments_shortcuts_and_keys_answer_404() {
    let t = app(keys()).await;
    t.data(
        OTHER,
        r#"mutation { saveSegment(name: "vip", definition: "country = \"DE\"") { name } saveShortcut(name: "secret", template: "Top {{ email }}") { name } }"#,
    )
    .await;
    let b = t.sign_in(&t.admin).await;
    for uri in [
        "/segments/vip",
        "/segments/vip?after=x",
        "/shortcuts/secret",
        "/segments/nope",
        "/shortcuts/nope",
    ] {
        let body = page(&t, &b, uri, StatusCode::NOT_FOUND).await;
        assert!(
            !body.contains("Top {{") && !body.contains("DE"),
            "{uri}: {body}"
        );
    }
    for uri in ["/segments/vip/delete", "/shortcuts/secret/delete"] {
        let r = t.post(uri, Some(&b.cookie), &form(&b, &[])).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
    }
    let list = page(&t, &b, "/segments", StatusCode::OK).await;
    assert!(!list.contains("vip"));
    let list = page(&t, &b, "/shortcuts", StatusCode::OK).await;
    assert!(!list.contains("secret"));
    // The other workspace's key: not listed, not revocable from here.
    let other_id = t.other_admin.split('_').nth(1).unwrap().to_string();
    let keys_page = page(&t, &b, "/keys", StatusCode::OK).await;
    assert!(!keys_page.contains(&other_id));
    let r = t
        .post(
            &format!("/keys/{other_id}/revoke"),
            Some(&b.cookie),
            &form(&b, &[]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // A preview for the other workspace's contact finds no such contact.
    let other_contact = t.contact_id(OTHER, "secret@other.example").await;
    let r = t
        .post(
            "/shortcuts/-/preview",
            Some(&b.cookie),
            &form(
                &b,
                &[("template", "{{ email }}"), ("contact", &other_contact)],
            ),
        )
        .await;
    let answer: Value = serde_json::from_str(&r.body).unwrap();
    if other_contact != t.contact_id(WS, "user1@example.com").await {
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{answer}");
    }
    assert!(!r.body.contains("secret@other.example"), "{answer}");
    // Still there, in their own workspace.
    assert_eq!(segment_names(&t, OTHER).await, ["vip"]);
    assert_eq!(shortcut_names(&t, OTHER).await, ["secret"]);
    let o = t.sign_in(&t.other_admin).await;
    page(&t, &o, "/segments/vip", StatusCode::OK).await;
    page(&t, &o, "/shortcuts/secret", StatusCode::OK).await;
}

#[tokio::test]
async fn the_shortcut_editor_previews_with_fallbacks_and_saves() {
    let t = app(keys()).await;
    let b = t.sign_in(&t.write).await;
    let body = page(&t, &b, "/shortcuts", StatusCode::OK).await;
    assert!(body.contains("No shortcuts are saved yet"));
    let new = page(&t, &b, "/shortcuts/-/new", StatusCode::OK).await;
    assert_labelled("/shortcuts/-/new", &new);
    assert_no_inline_code("/shortcuts/-/new", &new);
    assert!(new.contains(r#"<script src="/assets/shortcuts.js"></script>"#));
    assert!(new.contains(r#"data-preview="/shortcuts/-/preview""#));

    let template = "Hello {{ name.first | \"there\" }}, your plan is {{ data.price_plan }}.\nReply to {{ email }} {{ data.missing | \"<none>\" }}{{ agg.nothing }}";
    // The live preview, for a contact by email, then by id.
    let id = t.contact_id(WS, "user3@example.com").await;
    for contact in ["user3@example.com", id.as_str()] {
        let r = t
            .post(
                "/shortcuts/-/preview",
                Some(&b.cookie),
                &form(&b, &[("template", template), ("contact", contact)]),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.content_type(), "application/json");
        let answer: Value = serde_json::from_str(&r.body).unwrap();
        let expected = "Hello there, your plan is basic.\nReply to user3@example.com <none>";
        assert_eq!(answer["text"], json!(expected), "{answer}");
        // The same text as the API renders for that contact.
        let q = format!(
            "{{ renderShortcut(template: {}, contactId: \"{id}\") }}",
            serde_json::to_string(template).unwrap()
        );
        assert_eq!(t.data(WS, &q).await["renderShortcut"], json!(expected));
        let html = answer["html"].as_str().unwrap();
        assert!(
            html.contains("Reply to user3@example.com &lt;none&gt;"),
            "{html}"
        );
        assert!(html.contains(&format!(
            r#"<a href="/contacts/{id}">user3@example.com</a>"#
        )));
        // Each placeholder: the contact's value, or the fallback shown instead.
        assert!(
            html.contains(r#"<tr><td><code>name.first</code></td><td><span class="muted">(none)</span></td><td><q>there</q></td><td><span class="fallback">fallback</span></td></tr>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<tr><td><code>data.price_plan</code></td><td>basic</td><td>—</td><td><span class="ok">value</span></td></tr>"#),
            "{html}"
        );
        assert!(html.contains("<q>&lt;none&gt;</q>"), "{html}");
        assert!(
            html.contains(r#"<td><code>agg.nothing</code></td><td><span class="muted">(none)</span></td><td>—</td><td><span class="muted">nothing</span></td>"#),
            "{html}"
        );
    }
    // Session placeholders: the contact's latest session, or the one chosen.
    let sessions = t
        .data(
            WS,
            r#"{ contact(email: "user1@example.com") { sessions(first: 1) { edges { node { id } } } } }"#,
        )
        .await;
    let order = sessions["contact"]["sessions"]["edges"][0]["node"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let with_session =
        "Order {{ session.id }}: {{ session.data.total | \"?\" }} ({{ session.kind }})";
    for (contact, session) in [
        ("user1@example.com", ""),
        ("user1@example.com", order.as_str()),
    ] {
        let r = t
            .post(
                "/shortcuts/-/preview",
                Some(&b.cookie),
                &form(
                    &b,
                    &[
                        ("template", with_session),
                        ("contact", contact),
                        ("session", session),
                    ],
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let answer: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            answer["text"],
            json!(format!("Order {order}: 42 (order)")),
            "{answer}"
        );
        let said = if session.is_empty() {
            format!("and their latest session, {order}")
        } else {
            format!("and session {order}")
        };
        assert!(answer["html"].as_str().unwrap().contains(&said), "{answer}");
    }
    // A contact without sessions: the fallback, and the page says why.
    let r = t
        .post(
            "/shortcuts/-/preview",
            Some(&b.cookie),
            &form(
                &b,
                &[("template", with_session), ("contact", "user2@example.com")],
            ),
        )
        .await;
    let answer: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(answer["text"], json!("Order : ? ()"), "{answer}");
    assert!(
        answer["html"]
            .as_str()
            .unwrap()
            .contains("who has no sessions")
    );
    // Another contact's session is the API's refusal.
    let r = t
        .post(
            "/shortcuts/-/preview",
            Some(&b.cookie),
            &form(
                &b,
                &[
                    ("template", with_session),
                    ("contact", "user2@example.com"),
                    ("session", &order),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let answer: Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("does not belong"),
        "{answer}"
    );
    // No contact chosen: the first one.
    let r = t
        .post(
            "/shortcuts/-/preview",
            Some(&b.cookie),
            &form(&b, &[("template", "{{ email }}"), ("contact", "")]),
        )
        .await;
    let answer: Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        answer["text"].as_str().unwrap().ends_with("@example.com"),
        "{answer}"
    );
    // A contact that is not there.
    let r = t
        .post(
            "/shortcuts/-/preview",
            Some(&b.cookie),
            &form(&b, &[("template", "Hi"), ("contact", "nobody@example.com")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let answer: Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("No contact nobody@example.com")
    );

    // Errors point at the line and column the API names.
    for (bad, line, column) in [
        ("Hi {{ name.first | there }}", 1, 20),
        ("Dear customer,\n\nYour plan: {{ data.plan", 3, 12),
        ("ok\n{{ nope.x }}", 2, 4),
    ] {
        let r = t
            .post(
                "/shortcuts/-/preview",
                Some(&b.cookie),
                &form(&b, &[("template", bad), ("contact", "user1@example.com")]),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        let answer: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (answer["line"].clone(), answer["column"].clone()),
            (json!(line), json!(column)),
            "{bad}: {answer}"
        );
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("line {line}, column {column}")),
            "{error}"
        );
        let html = answer["html"].as_str().unwrap();
        let text = bad.lines().nth(line - 1).unwrap();
        let caret = format!(
            "{}\n{}^</pre>",
            text.replace('"', "&quot;"),
            " ".repeat(column - 1)
        );
        assert!(html.contains(&caret), "{bad}: {html}");
        assert!(html.contains(r#"role="alert""#));
    }

    // Without script: the Preview button shows the same, saving nothing.
    let r = t
        .post(
            "/shortcuts",
            Some(&b.cookie),
            &form(
                &b,
                &[
                    ("name", "welcome"),
                    ("template", template),
                    ("contact", "user3@example.com"),
                    ("action", "preview"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains("Reply to user3@example.com &lt;none&gt;"),
        "{}",
        r.body
    );
    assert!(shortcut_names(&t, WS).await.is_empty());

    // Saving a template that does not parse: refused, the editor back with the place.
    let r = t
        .post(
            "/shortcuts",
            Some(&b.cookie),
            &form(
                &b,
                &[
                    ("name", "welcome"),
                    ("template", "Hi {{ }}"),
                    ("action", "save"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("line 1, column"), "{}", r.body);
    assert!(r.body.contains(r#"<pre class="pointer""#));
    assert!(shortcut_names(&t, WS).await.is_empty());

    // Saved, then shown with its preview for the chosen contact.
    let r = t
        .post(
            "/shortcuts",
            Some(&b.cookie),
            &form(
                &b,
                &[
                    ("name", "welcome"),
                    ("template", template),
                    ("contact", "user3@example.com"),
                    ("action", "save"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        r.location(),
        "/shortcuts/welcome?contact=user3%40example.com"
    );
    let body = page(&t, &b, r.location(), StatusCode::OK).await;
    assert!(body.contains("Shortcut welcome saved."), "{body}");
    assert!(body.contains(r#"value="welcome" readonly"#));
    assert!(
        body.contains("Reply to user3@example.com &lt;none&gt;"),
        "{body}"
    );
    assert_labelled("/shortcuts/welcome", &body);
    assert_no_inline_code("/shortcuts/welcome", &body);
    let saved = t.data(WS, "{ shortcuts { name template } }").await;
    assert_eq!(saved["shortcuts"][0]["template"], json!(template));
    let list = page(&t, &b, "/shortcuts", StatusCode::OK).await;
    assert!(
        list.contains(r#"<a href="/shortcuts/welcome">welcome</a>"#),
        "{list}"
    );
    // The rendered text escapes what the template and the contact's data hold.
    assert!(!list.contains("<none>"));

    let r = t
        .post("/shortcuts/welcome/delete", Some(&b.cookie), &form(&b, &[]))
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/shortcuts")
    );
    assert!(shortcut_names(&t, WS).await.is_empty());
    // A read key may preview.
    let read = t.sign_in(&t.read).await;
    let r = t
        .post(
            "/shortcuts/-/preview",
            Some(&read.cookie),
            &form(
                &read,
                &[
                    ("template", "{{ email }}"),
                    ("contact", "user2@example.com"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let js = t.get("/assets/shortcuts.js", None).await;
    assert_eq!(js.content_type(), "text/javascript; charset=utf-8");
}

#[tokio::test]
async fn keys_are_listed_created_once_and_revoked_by_an_admin_only() {
    let t = app(keys()).await;
    for key in [&t.read, &t.write] {
        let b = t.sign_in(key).await;
        let body = page(&t, &b, "/keys", StatusCode::FORBIDDEN).await;
        assert!(body.contains("needs the admin role"), "{body}");
        let home = page(&t, &b, "/", StatusCode::OK).await;
        assert!(!home.contains(r#"href="/keys""#) && !home.contains(r#"href="/connectors""#));
    }
    let b = t.sign_in(&t.admin).await;
    let body = page(&t, &b, "/keys", StatusCode::OK).await;
    assert_labelled("/keys", &body);
    assert_no_inline_code("/keys", &body);
    for k in t.store.keys(Some(WS)).await.unwrap() {
        assert!(body.contains(&format!("dsk_{}_", k.id)), "{body}");
    }
    assert_eq!(body.matches(">Revoke</button>").count(), 2);
    // The session's own key says what revoking it does.
    let own = t.admin.split('_').nth(1).unwrap();
    let row = &body[body.find(&format!("dsk_{own}_")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains(">Revoke (signs you out)</button>"), "{row}");
    assert!(body.contains("(this session's key)"), "{body}");
    assert!(
        body.contains(r#"<a href="/keys">Keys</a>"#),
        "the admin's nav: {body}"
    );

    let r = t
        .post(
            "/keys",
            Some(&b.cookie),
            &form(
                &b,
                &[("name", "support <desk>"), ("role", "READ"), ("days", "30")],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("shown only this once"));
    assert!(r.body.contains("support &lt;desk&gt;"));
    let at = r.body.find(r#"id="secret""#).unwrap();
    let rest = &r.body[at..];
    let value = &rest[rest.find("value=\"").unwrap() + 7..];
    let secret = value[..value.find('"').unwrap()].to_string();
    assert!(secret.starts_with("dsk_"), "{secret}");
    assert_no_inline_code("/keys (created)", &r.body);
    // The secret works, as a read key of this workspace that expires in 30 days.
    let created = t.store.authenticate(&secret).await.unwrap().unwrap();
    assert_eq!(
        (created.workspace.as_str(), created.role),
        (WS, dossier_gateway::Role::Read)
    );
    let days = (created.expires_at.unwrap() - created.created_at + 43_200_000_000) / 86_400_000_000;
    assert_eq!(days, 30);
    // ...and is never shown again.
    let body = page(&t, &b, "/keys", StatusCode::OK).await;
    assert!(!body.contains(&secret));
    assert!(body.contains(&format!("dsk_{}_", created.id)));
    let r = t
        .post(
            "/keys",
            Some(&b.cookie),
            &form(&b, &[("name", "never"), ("role", "ADMIN"), ("days", "")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Refused forms say why on the list.
    for fields in [
        vec![("name", ""), ("role", "READ")],
        vec![("name", "x"), ("role", "ROOT")],
        vec![("name", "x"), ("role", "READ"), ("days", "0")],
    ] {
        let r = t.post("/keys", Some(&b.cookie), &form(&b, &fields)).await;
        assert_eq!(
            (r.status, r.location()),
            (StatusCode::SEE_OTHER, "/keys"),
            "{fields:?}"
        );
        let body = page(&t, &b, "/keys", StatusCode::OK).await;
        assert!(body.contains("Not created:"), "{fields:?}: {body}");
    }
    assert_eq!(t.store.keys(Some(WS)).await.unwrap().len(), 5);

    // Revoked: the key is refused from now on, its sessions end.
    let other_session = t.sign_in(&secret).await;
    let r = t
        .post(
            &format!("/keys/{}/revoke", created.id),
            Some(&b.cookie),
            &form(&b, &[]),
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/keys"),
        "{}",
        r.body
    );
    let body = page(&t, &b, "/keys", StatusCode::OK).await;
    assert!(body.contains("is revoked."), "{body}");
    assert!(t.store.authenticate(&secret).await.unwrap().is_err());
    let r = t.get("/", Some(&other_session.cookie)).await;
    assert_eq!(r.location(), "/sign-in?why=revoked");
    // Revoking the session's own key signs it out.
    let r = t
        .post(
            &format!("/keys/{own}/revoke"),
            Some(&b.cookie),
            &form(&b, &[]),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = t.get(r.location(), Some(&b.cookie)).await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/sign-in?why=revoked")
    );
    let r = t.get("/keys", Some(&b.cookie)).await;
    assert_eq!(r.location(), "/sign-in");
    // An unknown id.
    let admin2 = t.sign_in(&t.other_admin).await;
    let r = t
        .post(
            "/keys/nope/revoke",
            Some(&admin2.cookie),
            &form(&admin2, &[]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

struct FakeConnectors;

#[async_trait::async_trait]
impl ConnectorAdmin for FakeConnectors {
    fn connectors(&self) -> Vec<ConnectorInfo> {
        vec![
            ConnectorInfo {
                name: "postgres".into(),
                kind: ConnectorKind::Builtin,
                version: "1.4.2".into(),
                config_schema: json!({
                    "type": "object",
                    "required": ["url"],
                    "properties": {
                        "url": { "type": "string", "description": "postgres://user@host/db <secret>" },
                        "batch_size": { "type": ["integer", "null"], "default": 1000 },
                        "sslmode": { "enum": ["disable", "require"] }
                    }
                }),
                stream_schema: json!({ "type": "object", "properties": {} }),
                file: None,
                sha256: None,
            },
            ConnectorInfo {
                name: "acme-crm".into(),
                kind: ConnectorKind::Plugin,
                version: "0.3.0".into(),
                config_schema: json!({ "type": "object", "properties": { "token": { "type": "string" } } }),
                stream_schema: json!({ "type": "object", "properties": { "table": { "type": "string" } } }),
                file: Some("libacme_crm.so".into()),
                sha256: Some("ab".repeat(32)),
            },
        ]
    }

    async fn install(&self, _file: &str, _sha256: Option<&str>) -> Result<ConnectorInfo, String> {
        Err("not in tests".into())
    }
}

#[tokio::test]
async fn connectors_show_versions_and_config_schemas_to_admins() {
    let mut t = app(keys()).await;
    // Without a connector registry in the process, the API's message.
    let b = t.sign_in(&t.admin).await;
    let body = page(&t, &b, "/connectors", StatusCode::BAD_REQUEST).await;
    assert!(body.contains("connectors are not available"), "{body}");
    // With one, as `dossier serve` builds it.
    let connectors: Arc<dyn ConnectorAdmin> = Arc::new(FakeConnectors);
    t.schema = dossier_gateway::build_schema(t.store.clone(), None, Some(connectors), None, keys());
    t.app = dossier_gateway::router(t.schema.clone(), t.store.clone())
        .merge(dossier_console::router(t.schema.clone(), t.store.clone()));
    let b = t.sign_in(&t.admin).await;
    let body = page(&t, &b, "/connectors", StatusCode::OK).await;
    assert_no_inline_code("/connectors", &body);
    for part in [
        r##"<a href="#connector-postgres">postgres</a></th><td>builtin</td><td>1.4.2</td>"##,
        r##"<a href="#connector-acme-crm">acme-crm</a></th><td>plugin</td><td>0.3.0</td>"##,
        "<code>libacme_crm.so</code>",
        &format!("sha256 <code>{}</code>", "ab".repeat(32)),
        r#"<th scope="row"><code>url</code></th><td>string</td><td>yes</td><td></td><td>postgres://user@host/db &lt;secret&gt;</td>"#,
        r#"<th scope="row"><code>batch_size</code></th><td>integer or null</td><td></td><td><code>1000</code></td>"#,
        "one of &quot;disable&quot;, &quot;require&quot;",
        r#"<th scope="row"><code>table</code></th><td>string</td>"#,
        "Connection config as JSON Schema",
        "<p>No settings.</p>",
    ] {
        assert!(body.contains(part), "{part}: {body}");
    }
    for key in [&t.read, &t.write] {
        let b = t.sign_in(key).await;
        let body = page(&t, &b, "/connectors", StatusCode::FORBIDDEN).await;
        assert!(body.contains("needs the admin role"), "{body}");
    }
}

#[tokio::test]
async fn the_new_pages_carry_the_csp_and_read_at_phone_width() {
    let t = app(keys()).await;
    t.data(
        WS,
        r#"mutation { saveSegment(name: "all", definition: "country = \"FR\"") { name } saveShortcut(name: "hi", template: "Hi {{ email }}") { name } }"#,
    )
    .await;
    let b = t.sign_in(&t.admin).await;
    for uri in [
        "/segments",
        "/segments/-/new",
        "/segments/all",
        "/shortcuts",
        "/shortcuts/-/new",
        "/shortcuts/hi",
        "/keys",
    ] {
        let r = t.get(uri, Some(&b.cookie)).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(
            r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap(),
            dossier_console::CSP
        );
        assert!(
            r.body
                .contains(r#"name="viewport" content="width=device-width"#)
        );
        assert_no_inline_code(uri, &r.body);
        assert_labelled(uri, &r.body);
        // Wide tables scroll inside their box instead of widening the page.
        assert_eq!(
            r.body.matches("<table").count(),
            r.body.matches(r#"<div class="table"><table"#).count(),
            "{uri}"
        );
    }
    let css = t.get("/assets/console.css", None).await;
    assert!(css.body.contains("@media (max-width: 600px)"));
    assert!(css.body.contains(".editor textarea"));
}

#[tokio::test]
async fn an_open_console_lists_the_keys_and_says_it_needs_none() {
    let t = app(open()).await;
    let r = t.get("/keys", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("it needs no key"), "{}", r.body);
    assert_eq!(r.body.matches(">Revoke</button>").count(), 3);
    assert!(!r.body.contains("this session's key"));
}
