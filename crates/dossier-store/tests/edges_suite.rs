//! The write path's edges, on both backends: filters agree with reads for contacts without
//! aggregate rows, a rule edit reports no spurious segment events, a full refresh keeps the
//! sessions of records its mapping rejected, and its deletion pass checks the run's lease.

#[macro_use]
mod common;

use common::*;
use dossier_core::{AggOp, AggregateRule, parse_filter};
use dossier_store::StoreError;

const LEASE: i64 = 60_000_000;

async fn members(s: &dossier_store::SqlStore, text: &str) -> Vec<i64> {
    let f = parse_filter(text).unwrap();
    s.contacts(WS, Some(&f), 100, None)
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.id)
        .collect()
}

/// A contact without sessions reads `transactions: 0` and `total_spent: 0`; filters say the
/// same, and an average of nothing is absent for both.
async fn filters_see_empty_aggregates_as_reads_do(db: TestDb) {
    let s = &db.store;
    with_one_customer(s, &rules()).await;
    s.apply_batch(
        WS,
        &batch(
            "customers",
            vec![customer(2, "b@example.com", "DE", "pro")],
            2,
        ),
    )
    .await
    .unwrap();
    s.apply_batch(WS, &batch("orders", vec![order(1, 2, 30.0, 10)], 3))
        .await
        .unwrap();
    let a = email_id(s, "a@example.com").await;
    let b = email_id(s, "b@example.com").await;
    assert_eq!(aggs(s, a).await["transactions"], n(0.0), "reads show 0");
    assert_eq!(members(s, "agg.transactions = 0").await, vec![a]);
    assert_eq!(members(s, "agg.total_spent < 5").await, vec![a]);
    assert_eq!(members(s, "agg.transactions != 0").await, vec![b]);
    assert_eq!(members(s, "agg.transactions >= 0").await, vec![a, b]);
    assert_eq!(members(s, "agg.transactions in [0, 7]").await, vec![a]);
    assert_eq!(members(s, "agg.transactions exists").await, vec![a, b]);
    assert_eq!(members(s, "not agg.transactions = 0").await, vec![b]);
    // An average of nothing is absent on reads and in filters alike.
    assert!(!aggs(s, a).await.contains_key("avg_basket"));
    assert_eq!(members(s, "agg.avg_basket = 0").await, Vec::<i64>::new());
    assert_eq!(members(s, "agg.avg_basket exists").await, vec![b]);
    assert_eq!(
        s.count_contacts(WS, Some(&parse_filter("agg.transactions = 0").unwrap()))
            .await
            .unwrap(),
        1
    );
}

/// Editing a rule recomputes it; a segment over it reports changes only for contacts whose
/// value changed, not for every contact whose row the edit rewrote or left out.
async fn a_rule_edit_reports_only_real_segment_changes(db: TestDb) {
    let s = &db.store;
    with_one_customer(s, &rules()).await;
    for (id, email) in [(2, "b@example.com"), (3, "c@example.com")] {
        s.apply_batch(
            WS,
            &batch(
                "customers",
                vec![customer(id, email, "DE", "pro")],
                id as i64,
            ),
        )
        .await
        .unwrap();
    }
    // Contact 1's only order is gone from the source: its row stays, at 0.
    for (state, orders) in [
        (
            4,
            vec![
                order(1, 2, 30.0, 10),
                order(2, 3, 5.0, 20),
                order(9, 1, 3.0, 5),
            ],
        ),
        (5, vec![order(1, 2, 30.0, 10), order(2, 3, 5.0, 20)]),
    ] {
        full_refresh(s, batch("orders", orders, state)).await;
    }
    s.save_segment(WS, "small", "agg.total_spent < 10", None)
        .await
        .unwrap();
    s.refresh_segments(WS).await.unwrap();
    let head = s.segment_feed_head(WS, "small").await.unwrap();
    // `total_spent` now counts only orders over 20: contact 3 goes from 5 to 0 (still small),
    // contact 1 stays at 0 (the edit drops its row: it has no live order), contact 2 at 30.
    let mut edited = rules();
    edited[1] = AggregateRule::new("total_spent", AggOp::Sum, "order", Some("total"))
        .unwrap()
        .with_condition("data.total > 20")
        .unwrap();
    s.set_rules(WS, &edited).await.unwrap();
    assert_eq!(
        s.refresh_segments(WS).await.unwrap(),
        0,
        "no member changed"
    );
    let changes = s
        .segment_changes(WS, "small", Some(head), 100)
        .await
        .unwrap();
    assert!(changes.items.is_empty(), "{:?}", changes.items);
    // A real change is still reported.
    s.apply_batch(WS, &batch("orders", vec![order(3, 1, 50.0, 30)], 6))
        .await
        .unwrap();
    assert_eq!(s.refresh_segments(WS).await.unwrap(), 1);
}

/// A full refresh whose mapping rejects a record (it is still at the source, just bad now)
/// keeps that record's session as it was, rather than deleting it as unseen.
async fn a_rejected_record_in_a_full_refresh_keeps_its_session(db: TestDb) {
    let s = &db.store;
    with_one_customer(s, &rules()).await;
    full_refresh(
        s,
        batch(
            "orders",
            vec![order(1, 1, 10.0, 10), order(2, 1, 20.0, 20)],
            1,
        ),
    )
    .await;
    let mut b = batch("orders", vec![order(1, 1, 10.0, 10)], 2);
    b.rejected = vec![(Some("2".into()), "total: not a number".into())];
    let (_, deleted) = full_refresh(s, b).await;
    assert_eq!(deleted, 0, "the rejected record's session stays");
    let id = email_id(s, "a@example.com").await;
    assert_eq!(aggs(s, id).await["total_spent"], n(30.0));
}

/// The deletion pass of a run whose scheduler lost the source's lease deletes nothing: the
/// successor may have seen those sessions.
async fn a_deletion_pass_needs_the_runs_lease(db: TestDb) {
    let s = &db.store;
    with_one_customer(s, &rules()).await;
    assert!(
        s.claim_now(WS, "shop", "a", 1_000, LEASE)
            .await
            .unwrap()
            .is_some()
    );
    let run = s
        .start_run_for(WS, "shop", "schedule", Some(1_000), Some("a"))
        .await
        .unwrap();
    s.apply_batch(WS, &batch("orders", vec![order(1, 1, 10.0, 10)], 1))
        .await
        .unwrap();
    // Another scheduler takes the source over (a's lease expired).
    s.release_lease(WS, "shop", "a", None, None, 1_500)
        .await
        .unwrap();
    assert!(
        s.claim_now(WS, "shop", "b", 2_000, LEASE)
            .await
            .unwrap()
            .is_some()
    );
    let r = s.mark_unseen_deleted(WS, "shop", "orders", run).await;
    assert!(matches!(r, Err(StoreError::LeaseLost { .. })), "{r:?}");
    assert_eq!(s.counts(WS).await.unwrap(), (1, 1), "nothing deleted");
}

/// An average of decimals is exact (to nine places), on reads and in filters: three orders
/// of 5.66 average 5.66, not 5.659999999999999.
async fn averages_of_decimals_are_exact(db: TestDb) {
    let s = &db.store;
    with_one_customer(s, &rules()).await;
    let orders = (1..=3).map(|i| order(i, 1, 5.66, i as i64)).collect();
    s.apply_batch(WS, &batch("orders", orders, 2))
        .await
        .unwrap();
    let id = email_id(s, "a@example.com").await;
    assert_eq!(aggs(s, id).await["avg_basket"], n(5.66));
    assert_eq!(members(s, "agg.avg_basket = 5.66").await, vec![id]);
}

/// A stream without an update column: every read gives its records no update time. Reading
/// the same records again writes nothing (the contact's `updated_at` stays), a changed field
/// is written, and another source's record with the same value still takes its origin.
async fn an_unchanged_record_without_update_time_writes_nothing(db: TestDb) {
    let s = &db.store;
    let undated = |id: u32, email: &str, plan: &str| match customer(id, email, "FR", plan) {
        dossier_core::MappedRecord::Contact(mut c) => {
            c.updated_at = None;
            dossier_core::MappedRecord::Contact(c)
        }
        _ => unreachable!(),
    };
    s.ensure_workspace(WS).await.unwrap();
    let first = s
        .apply_batch(
            WS,
            &batch("customers", vec![undated(1, "a@example.com", "free")], 1),
        )
        .await
        .unwrap();
    assert_eq!(first.written, 1);
    let id = email_id(s, "a@example.com").await;
    let before = s.contact(WS, id).await.unwrap().unwrap();
    let again = s
        .apply_batch(
            WS,
            &batch("customers", vec![undated(1, "a@example.com", "free")], 2),
        )
        .await
        .unwrap();
    assert_eq!((again.written, again.unchanged), (0, 1), "{again:?}");
    let after = s.contact(WS, id).await.unwrap().unwrap();
    assert_eq!(after.updated_at, before.updated_at, "updatedAt moved");
    let changed = s
        .apply_batch(
            WS,
            &batch("customers", vec![undated(1, "a@example.com", "pro")], 3),
        )
        .await
        .unwrap();
    assert_eq!(changed.written, 1);
    let after = s.contact(WS, id).await.unwrap().unwrap();
    assert!(
        after.updated_at > before.updated_at,
        "a change moves updatedAt"
    );
    assert_eq!(
        s.contact_data(&[id]).await.unwrap()[&id]["price_plan"],
        dossier_core::DataValue::String("pro".into())
    );
}

suite!(
    an_unchanged_record_without_update_time_writes_nothing,
    averages_of_decimals_are_exact,
    filters_see_empty_aggregates_as_reads_do,
    a_rule_edit_reports_only_real_segment_changes,
    a_rejected_record_in_a_full_refresh_keeps_its_session,
    a_deletion_pass_needs_the_runs_lease,
);
