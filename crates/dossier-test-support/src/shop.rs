//! Records shaped like the demo shop: customers of source `shop`, stream `customers`, and
//! their orders, as mapping makes them.

use dossier_core::model::{ContactLink, ContactRecord, SessionRecord};
use dossier_core::{DataKey, DataValue, Identity, MappedRecord, ProfileField};
use dossier_store::BatchWrite;

/// The workspace the suites write to.
pub const WS: &str = "default";

pub fn key(k: &str) -> DataKey {
    DataKey::new(k).unwrap()
}

/// Customer `id` of the shop: an email identity, a country and a `price_plan`.
pub fn customer(id: u32, email: &str, country: &str, plan: &str) -> MappedRecord {
    MappedRecord::Contact(ContactRecord {
        external: Identity::external("shop", "customers", &id.to_string()),
        identities: vec![Identity::email(email).unwrap()],
        profile: vec![
            (ProfileField::Email, email.to_lowercase()),
            (ProfileField::Country, country.into()),
        ],
        data: vec![(key("price_plan"), DataValue::String(plan.into()))],
        updated_at: Some(1_000 + id as i64),
        created_at: Some(1_000),
    })
}

/// A paid order `id` of `customer`, for `total`, at `at`.
pub fn order(id: u32, customer: u32, total: f64, at: i64) -> MappedRecord {
    MappedRecord::Session(SessionRecord {
        external_id: id.to_string(),
        kind: "order".into(),
        contact: Some(ContactLink::Identity(Identity::external(
            "shop",
            "customers",
            &customer.to_string(),
        ))),
        started_at: Some(at),
        ended_at: None,
        data: vec![
            (key("total"), DataValue::Number(total)),
            (key("status"), DataValue::String("paid".into())),
        ],
    })
}

/// A batch of the shop's `stream`, checkpointing `{"n": state}`.
pub fn batch(stream: &str, records: Vec<MappedRecord>, state: i64) -> BatchWrite {
    BatchWrite {
        source: "shop".into(),
        stream: stream.into(),
        records,
        rejected: vec![],
        state: serde_json::json!({ "n": state }),
        run_id: None,
        mark_seen: false,
        defer_derived: false,
        lease_owner: None,
    }
}
