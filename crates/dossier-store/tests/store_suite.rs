//! One storage test suite, run against both backends: the embedded SQLite store and
//! PostgreSQL (a fresh database per test, dropped after). PostgreSQL is reached at
//! `DOSSIER_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); when it is
//! not reachable the Postgres tests fail: they never skip.

#[macro_use]
mod common;

use std::collections::BTreeMap;

use common::*;
use dossier_core::model::{ContactLink, ContactRecord};
use dossier_core::{
    AggOp, AggState, AggregateRule, CmpOp, DataValue, Filter, FilterField, Identity, MappedRecord,
    ProfileField,
};
use dossier_store::{
    BatchWrite, CardParts, ContactKey, KeyRefusal, LeaseStatus, Page, Role, SessionsPage, SqlStore,
    StoreError,
};

async fn ingest_is_atomic_and_idempotent(db: TestDb) {
    let s = &db.store;
    s.ensure_workspace(WS).await.unwrap();
    s.set_rules(WS, &rules()).await.unwrap();
    let customers = batch(
        "customers",
        vec![
            customer(1, "Ada@example.com", "FR", "basic"),
            customer(2, "bob@example.com", "DE", "pro"),
        ],
        1,
    );
    let out = s.apply_batch(WS, &customers).await.unwrap();
    assert_eq!(out.written, 2);
    let orders = batch(
        "orders",
        vec![
            order(10, 1, 20.0, 100),
            order(11, 1, 30.5, 200),
            order(12, 2, 5.0, 50),
        ],
        7,
    );
    assert_eq!(s.apply_batch(WS, &orders).await.unwrap().written, 3);
    // Re-applying the same batch (a crash after commit, before the next read) changes nothing.
    let again = s.apply_batch(WS, &orders).await.unwrap();
    assert_eq!((again.written, again.unchanged), (0, 3));
    assert_eq!(
        s.stream_state(WS, "shop", "orders").await.unwrap(),
        Some(serde_json::json!({"n": 7}))
    );
    assert_eq!(s.counts(WS).await.unwrap(), (2, 3));

    let ada = s
        .contact_by_email(WS, " ADA@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ada.country.as_deref(), Some("FR"));
    let a = aggs(s, ada.id).await;
    assert_eq!(a["transactions"], n(2.0));
    assert_eq!(a["total_spent"], n(50.5));
    assert_eq!(a["avg_basket"], n(25.25));
    assert_eq!(a["biggest"], n(30.5));
    assert_eq!(a["last_total"], n(30.5));
    // Session data flows to the contact: latest session wins, own values take precedence.
    let data = s
        .contact_data(&[ada.id])
        .await
        .unwrap()
        .remove(&ada.id)
        .unwrap();
    assert_eq!(data["total"], n(30.5));
    assert_eq!(data["price_plan"], DataValue::String("basic".into()));

    // An order changes: aggregates follow without a rescan, data too.
    s.apply_batch(WS, &batch("orders", vec![order(11, 1, 10.0, 200)], 8))
        .await
        .unwrap();
    let a = aggs(s, ada.id).await;
    assert_eq!(
        (a["total_spent"].clone(), a["biggest"].clone()),
        (n(30.0), n(20.0))
    );
    assert_eq!(
        s.contact_data(&[ada.id]).await.unwrap()[&ada.id]["total"],
        n(10.0)
    );
    // An order moves to another customer.
    s.apply_batch(WS, &batch("orders", vec![order(11, 2, 10.0, 200)], 9))
        .await
        .unwrap();
    let bob = s
        .contact_by_email(WS, "bob@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(aggs(s, ada.id).await["transactions"], n(1.0));
    assert_eq!(aggs(s, bob.id).await["total_spent"], n(15.0));
    assert_eq!(
        s.contact_data(&[ada.id]).await.unwrap()[&ada.id]["total"],
        n(20.0)
    );
}

async fn sessions_before_contacts_and_merges(db: TestDb) {
    let s = &db.store;
    s.ensure_workspace(WS).await.unwrap();
    s.set_rules(WS, &rules()).await.unwrap();
    // Orders arrive before their customer: the customer lands on the same contact.
    s.apply_batch(WS, &batch("orders", vec![order(1, 5, 12.0, 10)], 1))
        .await
        .unwrap();
    s.apply_batch(
        WS,
        &batch(
            "customers",
            vec![customer(5, "eve@example.com", "FR", "basic")],
            1,
        ),
    )
    .await
    .unwrap();
    assert_eq!(s.counts(WS).await.unwrap(), (1, 1));
    let eve = s
        .contact_by_email(WS, "eve@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(aggs(s, eve.id).await["transactions"], n(1.0));

    // Another source knows eve by email and phone; a third record ties phone and a new id.
    let crm = |id: &str, email: Option<&str>, phone: &str| {
        let mut identities = vec![Identity::phone(phone).unwrap()];
        if let Some(e) = email {
            identities.push(Identity::email(e).unwrap());
        }
        MappedRecord::Contact(ContactRecord {
            external: Identity::external("crm", "people", id),
            identities,
            profile: vec![(ProfileField::City, "Lyon".into())],
            data: vec![],
            updated_at: None,
            created_at: None,
        })
    };
    let mut b = batch("people", vec![crm("p1", None, "+33 6 11 22 33 44")], 1);
    b.source = "crm".into();
    s.apply_batch(WS, &b).await.unwrap();
    assert_eq!(s.counts(WS).await.unwrap().0, 2);
    let other = s
        .contacts(WS, None, 10, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|c| c.id != eve.id)
        .unwrap();
    let mut b = batch(
        "people",
        vec![crm("p2", Some("EVE@example.com"), "+33611223344")],
        2,
    );
    b.source = "crm".into();
    let out = s.apply_batch(WS, &b).await.unwrap();
    assert_eq!(out.merges, 1);
    assert_eq!(s.counts(WS).await.unwrap().0, 1);
    // The merged id keeps resolving to the survivor, which has everything.
    let via_old = s.contact(WS, other.id).await.unwrap().unwrap();
    let survivor = s
        .contact_by_email(WS, "eve@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(via_old.id, survivor.id);
    let both = s
        .contacts_by_ids(WS, &[other.id, survivor.id])
        .await
        .unwrap();
    assert_eq!(
        (both[&other.id].id, both[&survivor.id].id),
        (survivor.id, survivor.id)
    );
    assert!(
        s.contacts_by_ids("other", &[survivor.id])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(survivor.city.as_deref(), Some("Lyon"));
    assert_eq!(aggs(s, survivor.id).await["total_spent"], n(12.0));
    let ids = s
        .identities(&[survivor.id])
        .await
        .unwrap()
        .remove(&survivor.id)
        .unwrap();
    assert_eq!(ids.len(), 5, "{ids:?}");
}

async fn contact_and_session_data_via_api(db: TestDb) {
    let s = &db.store;
    with_one_customer(s, &rules()).await;
    s.apply_batch(WS, &batch("orders", vec![order(1, 1, 12.0, 10)], 1))
        .await
        .unwrap();
    let c = s
        .contact_by_email(WS, "a@example.com")
        .await
        .unwrap()
        .unwrap();
    s.set_contact_data(WS, c.id, &key("total"), &n(99.0))
        .await
        .unwrap();
    assert_eq!(
        s.contact_data(&[c.id]).await.unwrap()[&c.id]["total"],
        n(99.0),
        "own value wins over session data"
    );
    let sess = s
        .sessions_of(&[c.id], None, 10, None)
        .await
        .unwrap()
        .remove(&c.id)
        .unwrap()
        .items
        .remove(0);
    s.set_session_data(WS, sess.id, &key("total"), &n(40.0))
        .await
        .unwrap();
    assert_eq!(aggs(s, c.id).await["total_spent"], n(40.0));
    assert_eq!(
        s.session(WS, sess.id).await.unwrap().unwrap().data["total"],
        n(40.0)
    );
    assert!(
        s.session("other", sess.id).await.unwrap().is_none(),
        "another workspace sees nothing"
    );
    assert!(
        s.set_contact_data("other", c.id, &key("x"), &n(1.0))
            .await
            .is_err()
    );
    let too_long = DataValue::String("x".repeat(5000));
    assert!(
        s.set_contact_data(WS, c.id, &key("note"), &too_long)
            .await
            .is_err()
    );
}

async fn filters_and_pages(db: TestDb) {
    let s = &db.store;
    s.ensure_workspace(WS).await.unwrap();
    s.set_rules(WS, &rules()).await.unwrap();
    let mut recs = vec![];
    for i in 1..=30u32 {
        let country = if i % 3 == 0 { "FR" } else { "DE" };
        let plan = if i % 2 == 0 { "basic" } else { "pro" };
        recs.push(customer(i, &format!("user{i}@example.com"), country, plan));
    }
    s.apply_batch(WS, &batch("customers", recs, 1))
        .await
        .unwrap();
    let orders: Vec<_> = (1..=30u32)
        .map(|i| order(i, i, i as f64 * 10.0, i as i64))
        .collect();
    s.apply_batch(WS, &batch("orders", orders, 1))
        .await
        .unwrap();
    let f = |field: &str, op: CmpOp, value: DataValue| Filter::Cmp {
        field: FilterField::parse(field).unwrap(),
        op,
        value,
    };
    let fr_basic_big = Filter::And(vec![
        f("country", CmpOp::Eq, DataValue::String("fr".into())),
        f(
            "data.price_plan",
            CmpOp::Eq,
            DataValue::String("basic".into()),
        ),
        f("agg.avg_basket", CmpOp::Gt, n(50.0)),
    ]);
    // i divisible by 6 and > 5: 6, 12, 18, 24, 30.
    assert_eq!(s.count_contacts(WS, Some(&fr_basic_big)).await.unwrap(), 5);
    let not_fr = Filter::Not(Box::new(f(
        "country",
        CmpOp::Eq,
        DataValue::String("FR".into()),
    )));
    assert_eq!(s.count_contacts(WS, Some(&not_fr)).await.unwrap(), 20);
    let contains = Filter::Contains {
        field: FilterField::parse("email").unwrap(),
        text: "USER1".into(),
    };
    assert_eq!(s.count_contacts(WS, Some(&contains)).await.unwrap(), 11); // 1, 10..19
    let in_ = Filter::In {
        field: FilterField::parse("agg.total_spent").unwrap(),
        values: vec![n(10.0), n(20.0), n(7.0)],
    };
    assert_eq!(s.count_contacts(WS, Some(&in_)).await.unwrap(), 2);
    let exists = Filter::Exists(FilterField::parse("data.nope").unwrap());
    assert_eq!(s.count_contacts(WS, Some(&exists)).await.unwrap(), 0);
    let injection = f(
        "data.price_plan",
        CmpOp::Eq,
        DataValue::String("x' OR '1'='1".into()),
    );
    assert_eq!(s.count_contacts(WS, Some(&injection)).await.unwrap(), 0);
    // Keyset pages cover everything exactly once.
    let mut seen = vec![];
    let mut after = None;
    loop {
        let page = s.contacts(WS, None, 7, after).await.unwrap();
        seen.extend(page.items.iter().map(|c| c.id));
        after = page.items.last().map(|c| c.id);
        if !page.has_next {
            break;
        }
    }
    assert_eq!(seen.len(), 30);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(s.count_contacts("other", None).await.unwrap(), 0);
    // So do pages of a filter on custom fields, negated or not (a page after a cursor bounds
    // the fields' subqueries too).
    for filter in [
        fr_basic_big.clone(),
        Filter::Not(Box::new(fr_basic_big.clone())),
    ] {
        let all = s.contacts(WS, Some(&filter), 1000, None).await.unwrap();
        let mut seen = vec![];
        let mut after = None;
        loop {
            let page = s.contacts(WS, Some(&filter), 2, after).await.unwrap();
            seen.extend(page.items.iter().map(|c| c.id));
            after = page.items.last().map(|c| c.id);
            if !page.has_next {
                break;
            }
        }
        assert_eq!(seen, all.items.iter().map(|c| c.id).collect::<Vec<_>>());
        assert_eq!(
            seen.len() as i64,
            s.count_contacts(WS, Some(&filter)).await.unwrap()
        );
    }
}

async fn rules_backfill_and_runs(db: TestDb) {
    let s = &db.store;
    s.ensure_workspace(WS).await.unwrap();
    s.apply_batch(
        WS,
        &batch(
            "customers",
            vec![customer(1, "a@example.com", "FR", "basic")],
            1,
        ),
    )
    .await
    .unwrap();
    s.apply_batch(
        WS,
        &batch(
            "orders",
            vec![order(1, 1, 12.0, 10), order(2, 1, 8.0, 20)],
            1,
        ),
    )
    .await
    .unwrap();
    let c = s
        .contact_by_email(WS, "a@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(aggs(s, c.id).await.is_empty());
    // Adding rules backfills them from stored sessions.
    assert_eq!(s.set_rules(WS, &rules()).await.unwrap(), 5);
    assert_eq!(aggs(s, c.id).await["total_spent"], n(20.0));
    assert_eq!(
        s.set_rules(WS, &rules()).await.unwrap(),
        0,
        "unchanged rules do nothing"
    );
    let first =
        vec![AggregateRule::new("first_total", AggOp::First, "order", Some("total")).unwrap()];
    s.set_rules(WS, &first).await.unwrap();
    let a = aggs(s, c.id).await;
    assert_eq!(a.len(), 1);
    assert_eq!(a["first_total"], n(12.0));
    // The reference: incremental equals recompute.
    let state = AggState::recompute(AggOp::First, &[]);
    assert_eq!(state.value(AggOp::First), None);

    let run = s.start_run(WS, "shop", "manual").await.unwrap();
    let mut stats = BTreeMap::new();
    stats.insert(
        "orders".to_string(),
        dossier_store::StreamStats {
            read: 2,
            written: 2,
            rejected: 0,
            ..Default::default()
        },
    );
    s.finish_run(run, Some("source error: boom"), &stats)
        .await
        .unwrap();
    let runs = s.runs(WS, Some("shop"), 10, None).await.unwrap();
    assert_eq!(runs.items.len(), 1);
    assert_eq!(runs.items[0].status, "failed");
    assert_eq!(runs.items[0].rows_read, 2);
    assert!(
        s.runs("other", None, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn full_refresh_deletes_what_it_did_not_see(db: TestDb) {
    let s = &db.store;
    with_one_customer(s, &rules()).await;
    let run1 = s.start_run(WS, "shop", "test").await.unwrap();
    let mut b = batch(
        "orders",
        vec![
            order(1, 1, 10.0, 10),
            order(2, 1, 20.0, 20),
            order(3, 1, 30.0, 30),
        ],
        1,
    );
    b.run_id = Some(run1);
    b.mark_seen = true;
    s.apply_batch(WS, &b).await.unwrap();
    assert_eq!(
        s.mark_unseen_deleted(WS, "shop", "orders", run1)
            .await
            .unwrap(),
        0
    );
    // The next full read no longer sees order 3 (the latest): it leaves aggregates and data.
    let run2 = s.start_run(WS, "shop", "test").await.unwrap();
    let mut b = batch(
        "orders",
        vec![order(1, 1, 10.0, 10), order(2, 1, 20.0, 20)],
        1,
    );
    b.run_id = Some(run2);
    b.mark_seen = true;
    assert_eq!(s.apply_batch(WS, &b).await.unwrap().unchanged, 2);
    assert_eq!(
        s.mark_unseen_deleted(WS, "shop", "orders", run2)
            .await
            .unwrap(),
        1
    );
    let c = s
        .contact_by_email(WS, "a@example.com")
        .await
        .unwrap()
        .unwrap();
    let a = aggs(s, c.id).await;
    assert_eq!(
        (
            a["transactions"].clone(),
            a["total_spent"].clone(),
            a["biggest"].clone()
        ),
        (n(2.0), n(30.0), n(20.0))
    );
    assert_eq!(
        s.contact_data(&[c.id]).await.unwrap()[&c.id]["total"],
        n(20.0)
    );
    assert_eq!(s.counts(WS).await.unwrap().1, 2);
    // It comes back: a later read sees it again.
    let run3 = s.start_run(WS, "shop", "test").await.unwrap();
    let mut b = batch("orders", vec![order(3, 1, 30.0, 30)], 1);
    b.run_id = Some(run3);
    s.apply_batch(WS, &b).await.unwrap();
    assert_eq!(aggs(s, c.id).await["transactions"], n(3.0));
}

async fn a_record_twice_in_one_batch_is_one_session(db: TestDb) {
    let s = &db.store;
    with_one_customer(s, &rules()).await;
    let twice = vec![
        order(1, 1, 10.0, 10),
        order(2, 1, 5.0, 5),
        order(1, 1, 30.0, 10),
    ];
    s.apply_batch(WS, &batch("orders", twice, 1)).await.unwrap();
    assert_eq!(s.counts(WS).await.unwrap(), (1, 2));
    let c = s
        .contact_by_email(WS, "a@example.com")
        .await
        .unwrap()
        .unwrap();
    let a = aggs(s, c.id).await;
    assert_eq!(
        (a["transactions"].clone(), a["total_spent"].clone()),
        (n(2.0), n(35.0))
    );
    assert_eq!(
        s.contact_data(&[c.id]).await.unwrap()[&c.id]["total"],
        n(30.0)
    );
}

async fn api_keys_are_hashed_scoped_revocable_and_expire(db: TestDb) {
    let s = &db.store;
    let (key, token) = s
        .create_key("acme", "dashboard", Role::Read, None)
        .await
        .unwrap();
    assert!(token.starts_with(&format!("dsk_{}_", key.id)), "{token}");
    let found = s.authenticate(&token).await.unwrap().unwrap();
    assert_eq!((found.workspace.as_str(), found.role), ("acme", Role::Read));
    // A wrong secret under a real id, a malformed key, an unknown id: all just "invalid".
    let mut wrong = token.clone();
    wrong.replace_range(
        token.len() - 1..,
        if token.ends_with('0') { "1" } else { "0" },
    );
    for bad in [wrong.as_str(), "dsk_nope", "", &token[..token.len() - 1]] {
        assert_eq!(
            s.authenticate(bad).await.unwrap(),
            Err(KeyRefusal::Invalid),
            "{bad}"
        );
    }
    let (_, expired) = s
        .create_key("acme", "old", Role::Admin, Some(1))
        .await
        .unwrap();
    assert_eq!(
        s.authenticate(&expired).await.unwrap(),
        Err(KeyRefusal::Expired)
    );
    let (other, _) = s
        .create_key("globex", "ops", Role::Write, None)
        .await
        .unwrap();
    assert_eq!(s.keys(Some("acme")).await.unwrap().len(), 2);
    assert_eq!(s.keys(None).await.unwrap().len(), 3);
    assert_eq!(s.keys(Some("globex")).await.unwrap(), vec![other]);
    let revoked = s.revoke_key(&key.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        s.authenticate(&token).await.unwrap(),
        Err(KeyRefusal::Revoked)
    );
    assert!(matches!(
        s.revoke_key("000000000000").await,
        Err(dossier_store::StoreError::NotFound { .. })
    ));
}

/// A contact card (the contact and the parts asked for, in one statement) holds what the
/// separate reads give, for every key and part, and nothing of another workspace.
async fn a_contact_card_reads_what_separate_reads_do(db: TestDb) {
    let s = &db.store;
    s.ensure_workspace(WS).await.unwrap();
    s.set_rules(WS, &rules()).await.unwrap();
    let customers = vec![
        customer(1, "ada@example.com", "FR", "basic"),
        customer(2, "bob@example.com", "DE", "pro"),
    ];
    s.apply_batch(WS, &batch("customers", customers, 1))
        .await
        .unwrap();
    // Two of ada's orders share a start time: the page breaks the tie by id.
    let orders = vec![
        order(10, 1, 20.0, 100),
        order(11, 1, 30.5, 200),
        order(12, 1, 7.25, 200),
        order(13, 1, 1.0, 50),
    ];
    s.apply_batch(WS, &batch("orders", orders, 1))
        .await
        .unwrap();

    let all = CardParts {
        data: true,
        aggregates: true,
        sessions: Some(SessionsPage {
            kind: None,
            first: 2,
        }),
    };
    for email in ["ada@example.com", " BOB@example.com"] {
        let row = s.contact_by_email(WS, email).await.unwrap().unwrap();
        let id = row.id;
        for key in [ContactKey::Id(id), ContactKey::Email(email)] {
            for (kind, first) in [(None, 2), (Some("order"), 10), (Some("visit"), 1)] {
                let parts = CardParts {
                    sessions: Some(SessionsPage {
                        kind: kind.map(str::to_string),
                        first,
                    }),
                    ..all.clone()
                };
                let card = s.contact_card(WS, key, &parts).await.unwrap().unwrap();
                assert_eq!(card.contact, row);
                assert_eq!(
                    card.data.unwrap(),
                    s.contact_data(&[id])
                        .await
                        .unwrap()
                        .remove(&id)
                        .unwrap_or_default()
                );
                assert_eq!(card.aggregates.unwrap(), aggs(s, id).await);
                let page = s
                    .sessions_of(&[id], kind, first, None)
                    .await
                    .unwrap()
                    .remove(&id)
                    .unwrap_or(Page {
                        items: vec![],
                        has_next: false,
                    });
                assert_eq!(card.sessions.unwrap(), page, "{email} {kind:?} {first}");
            }
            // Parts not asked for are not read.
            let bare = s
                .contact_card(WS, key, &CardParts::default())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(bare.contact, row);
            assert!(bare.data.is_none() && bare.aggregates.is_none() && bare.sessions.is_none());
            // Another workspace sees nothing.
            assert!(s.contact_card("other", key, &all).await.unwrap().is_none());
        }
    }
    let ada = s
        .contact_by_email(WS, "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    let card = s
        .contact_card(WS, ContactKey::Id(ada.id), &all)
        .await
        .unwrap()
        .unwrap();
    let page = card.sessions.unwrap();
    assert!(page.has_next);
    assert_eq!(
        page.items
            .iter()
            .map(|s| s.external_id.as_str())
            .collect::<Vec<_>>(),
        ["12", "11"]
    );
    for missing in [
        ContactKey::Email("nobody@example.com"),
        ContactKey::Email("not an email"),
        ContactKey::Id(i64::MAX),
    ] {
        assert!(s.contact_card(WS, missing, &all).await.unwrap().is_none());
    }

    // A merged contact's id reads the survivor, whose parts come from the usual reads.
    let crm = |id: &str, email: Option<&str>| {
        let mut identities = vec![Identity::phone("+33 6 11 22 33 44").unwrap()];
        identities.extend(email.map(|e| Identity::email(e).unwrap()));
        let mut b = batch(
            "people",
            vec![MappedRecord::Contact(ContactRecord {
                external: Identity::external("crm", "people", id),
                identities,
                profile: vec![],
                data: vec![],
                updated_at: None,
                created_at: None,
            })],
            1,
        );
        b.source = "crm".into();
        b
    };
    s.apply_batch(WS, &crm("p1", None)).await.unwrap();
    let merged = s
        .contacts(WS, None, 10, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|c| c.email.is_none())
        .unwrap();
    let out = s
        .apply_batch(WS, &crm("p2", Some("ada@example.com")))
        .await
        .unwrap();
    assert_eq!(out.merges, 1);
    let survivor = s
        .contact_by_email(WS, "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    let gone = if survivor.id == ada.id {
        merged.id
    } else {
        ada.id
    };
    let card = s
        .contact_card(WS, ContactKey::Id(gone), &all)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(card.contact.id, survivor.id);
    assert!(card.data.is_none() && card.aggregates.is_none() && card.sessions.is_none());
}

/// New contacts are queued and inserted together at the end of their batch: a record that
/// finds one still queued (a second record of it, a merge) must see it as if it were stored.
async fn contacts_created_in_one_batch(db: TestDb) {
    let s = &db.store;
    // A contact from an earlier batch: new contacts must not take its id.
    with_one_customer(s, &rules()).await;
    let a = s
        .contact_by_email(WS, "a@example.com")
        .await
        .unwrap()
        .unwrap();
    let mut b_later = customer(2, "b@example.com", "ES", "pro");
    if let MappedRecord::Contact(c) = &mut b_later {
        c.updated_at = Some(2_000);
    }
    let ties_d_and_e = MappedRecord::Contact(ContactRecord {
        external: Identity::external("shop", "customers", "6"),
        identities: vec![
            Identity::email("d@example.com").unwrap(),
            Identity::email("e@example.com").unwrap(),
        ],
        profile: vec![],
        data: vec![],
        updated_at: Some(1_006),
        created_at: None,
    });
    let records = vec![
        // Customer 3's order before its record: a contact holds its place.
        order(10, 3, 7.0, 10),
        customer(2, "b@example.com", "DE", "pro"),
        b_later,
        customer(3, "c@example.com", "IT", "free"),
        customer(4, "d@example.com", "NL", "basic"),
        customer(5, "e@example.com", "BE", "basic"),
        ties_d_and_e,
    ];
    let out = s
        .apply_batch(WS, &batch("customers", records.clone(), 2))
        .await
        .unwrap();
    assert_eq!(out.merges, 1);
    assert_eq!(s.counts(WS).await.unwrap(), (4, 1));
    let by_email = async |e: &str| s.contact_by_email(WS, e).await.unwrap().unwrap();
    let (b, c, d, e) = (
        by_email("b@example.com").await,
        by_email("c@example.com").await,
        by_email("d@example.com").await,
        by_email("e@example.com").await,
    );
    assert_eq!(
        by_email("a@example.com").await.country.as_deref(),
        Some("FR")
    );
    assert_eq!(b.country.as_deref(), Some("ES"), "the later record wins");
    assert_eq!(c.country.as_deref(), Some("IT"));
    assert_eq!(aggs(s, c.id).await["transactions"], n(1.0));
    assert_eq!(d.id, e.id, "d and e merged");
    let mut ids = vec![a.id, b.id, c.id, d.id];
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(
        ids[1..].iter().all(|id| *id > a.id),
        "{ids:?} after {}",
        a.id
    );
    // Ids are reserved as the batches need them (nine identities no contact held here), so
    // even PostgreSQL's sequence leaves few gaps.
    assert!(ids[3] - a.id <= 10, "{ids:?} after {}", a.id);
    // The batch again changes nothing.
    s.apply_batch(WS, &batch("customers", records, 2))
        .await
        .unwrap();
    assert_eq!(s.counts(WS).await.unwrap(), (4, 1));
    assert_eq!(aggs(s, c.id).await["transactions"], n(1.0));
}

/// Keys go to the lookups as one JSON array: ids and emails that JSON must escape (quotes,
/// backslashes, non-ASCII) still find their contact and session, so a batch applied again
/// is recognised rather than stored twice.
async fn keys_json_must_escape_are_found_again(db: TestDb) {
    let s = &db.store;
    s.ensure_workspace(WS).await.unwrap();
    s.set_rules(WS, &rules()).await.unwrap();
    let customer_id = r#"c"1\é/{'x'}"#;
    let MappedRecord::Contact(mut c) = customer(1, "o'brien\\x@example.com", "FR", "basic") else {
        unreachable!("a customer is a contact record")
    };
    c.external = Identity::external("shop", "customers", customer_id);
    let MappedRecord::Session(mut o) = order(1, 1, 12.5, 10) else {
        unreachable!("an order is a session record")
    };
    o.external_id = r#"o"1\ü"#.into();
    o.contact = Some(ContactLink::Identity(c.external.clone()));
    let customers = batch("customers", vec![MappedRecord::Contact(c)], 1);
    let orders = batch("orders", vec![MappedRecord::Session(o)], 1);
    assert_eq!(s.apply_batch(WS, &customers).await.unwrap().written, 1);
    assert_eq!(s.apply_batch(WS, &orders).await.unwrap().written, 1);
    let again = s.apply_batch(WS, &customers).await.unwrap();
    assert_eq!((again.written, again.unchanged), (0, 1));
    let again = s.apply_batch(WS, &orders).await.unwrap();
    assert_eq!((again.written, again.unchanged), (0, 1));
    assert_eq!(s.counts(WS).await.unwrap(), (1, 1));
    let ada = s
        .contact_by_email(WS, "o'brien\\x@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(aggs(s, ada.id).await["transactions"], n(1.0));
}

/// One order for customer 1, written under `owner`'s lease.
fn under_lease(owner: &str) -> BatchWrite {
    BatchWrite {
        lease_owner: Some(owner.into()),
        ..batch("orders", vec![order(1, 1, 10.0, 1_000)], 2)
    }
}

const LEASE: i64 = 60_000_000;

async fn writes_need_the_sources_lease(db: TestDb) {
    let s = &db.store;
    with_one_customer(s, &rules()).await;
    let claim = s.claim_now(WS, "shop", "b", 1_000, LEASE).await.unwrap();
    assert!(claim.is_some(), "b holds the lease");
    // A scheduler that does not hold it writes nothing, alone or in a group.
    let lost = |r| matches!(r, Err(StoreError::LeaseLost { .. }));
    assert!(lost(s.apply_batch(WS, &under_lease("a")).await.map(|_| ())));
    let mut group = s.begin_group().await.unwrap();
    group.apply(WS, &under_lease("a")).await.unwrap();
    assert!(lost(group.commit().await));
    assert_eq!(s.counts(WS).await.unwrap(), (1, 0));
    // The holder writes.
    let mut group = s.begin_group().await.unwrap();
    group.apply(WS, &under_lease("b")).await.unwrap();
    group.commit().await.unwrap();
    assert_eq!(s.counts(WS).await.unwrap(), (1, 1));
}

/// A group holds its transaction for up to 2 s; the scheduler renewing the lease meanwhile
/// must not wait for it (the lease is checked, and its row locked, only as the group commits).
#[tokio::test]
async fn on_postgres_renewing_a_lease_does_not_wait_for_an_open_group() {
    let db = postgres().await;
    let s = &db.store;
    with_one_customer(s, &rules()).await;
    assert!(
        s.claim_now(WS, "shop", "b", 1_000, LEASE)
            .await
            .unwrap()
            .is_some()
    );
    let mut group = s.begin_group().await.unwrap();
    group.apply(WS, &under_lease("b")).await.unwrap();
    let renewed = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        s.renew_lease(WS, "shop", "b", 2_000, LEASE),
    )
    .await;
    assert!(matches!(renewed, Ok(Ok(LeaseStatus::Held))), "{renewed:?}");
    group.commit().await.unwrap();
    assert_eq!(s.counts(WS).await.unwrap(), (1, 1));
}

/// The planner's estimate of the sessions table's rows: -1 until it is first analyzed.
async fn sessions_estimate(pg: &mut sqlx::PgConnection) -> f32 {
    sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = 'sessions'")
        .fetch_one(pg)
        .await
        .unwrap()
}

/// PostgreSQL plans from table statistics that autovacuum refreshes about once a minute. A
/// bulk load refreshes them itself as it grows the tables; otherwise its lookups are planned
/// for empty tables and hash a whole stream's sessions each time.
#[tokio::test]
async fn a_bulk_load_on_postgres_refreshes_planner_statistics() {
    let db = postgres().await;
    let s = &db.store;
    let mut pg = db.postgres_connection().await.unwrap();
    with_one_customer(s, &rules()).await;
    assert_eq!(sessions_estimate(&mut pg).await, -1.0, "never analyzed");
    let mut group = s.begin_group().await.unwrap();
    for b in 0..6u32 {
        let orders = (0..2_000u32)
            .map(|i| order(b * 2_000 + i, 1, 10.0, 1_000 + i64::from(i)))
            .collect();
        group
            .apply(WS, &batch("orders", orders, b.into()))
            .await
            .unwrap();
    }
    group.commit().await.unwrap();
    assert_eq!(sessions_estimate(&mut pg).await, 12_000.0);
}

/// A store that holds rows its planner never counted (loaded by an older version, with
/// autovacuum off) is analyzed when it opens.
#[tokio::test]
async fn a_postgres_store_never_analyzed_is_analyzed_when_it_opens() {
    let db = postgres().await;
    let s = &db.store;
    let mut pg = db.postgres_connection().await.unwrap();
    with_one_customer(s, &rules()).await;
    let orders = (0..5_000u32)
        .map(|i| order(i, 1, 10.0, 1_000 + i64::from(i)))
        .collect();
    s.apply_batch(WS, &batch("orders", orders, 1))
        .await
        .unwrap();
    assert_eq!(
        sessions_estimate(&mut pg).await,
        -1.0,
        "under the first refresh"
    );
    // Closed, its connections report what they wrote to the server's statistics.
    s.close().await;
    let again = SqlStore::open(&db.postgres_url().unwrap()).await.unwrap();
    assert_eq!(sessions_estimate(&mut pg).await, 5_000.0);
    again.close().await;
}

suite!(
    ingest_is_atomic_and_idempotent,
    sessions_before_contacts_and_merges,
    contact_and_session_data_via_api,
    filters_and_pages,
    rules_backfill_and_runs,
    full_refresh_deletes_what_it_did_not_see,
    a_record_twice_in_one_batch_is_one_session,
    api_keys_are_hashed_scoped_revocable_and_expire,
    a_contact_card_reads_what_separate_reads_do,
    contacts_created_in_one_batch,
    keys_json_must_escape_are_found_again,
    writes_need_the_sources_lease,
);
