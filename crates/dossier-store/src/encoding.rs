//! How values, provenance and aggregate states are encoded in the store's text columns.

use std::collections::BTreeMap;

use dossier_core::{AggState, DataValue, Provenance};

use crate::error::{Result, StoreError};

pub(crate) fn decode_provenance(json: Option<String>) -> Result<Provenance> {
    json.map_or_else(
        || Ok(Provenance::new()),
        |j| serde_json::from_str(&j).map_err(|e| StoreError::corrupt("provenance", e)),
    )
}

/// The two projections of a value used by filters: a number and a text.
///
/// A number is always bound as a non-null `f64` with a separate "present" flag: sqlx's Any
/// driver types a NULL float parameter differently on PostgreSQL, which breaks the cached
/// prepared statement for the next non-null value.
pub(crate) fn projections(v: &DataValue) -> (Option<f64>, Option<String>) {
    (v.as_sort_number(), v.as_text().map(str::to_string))
}

pub(crate) fn encode(v: &DataValue) -> String {
    serde_json::to_string(v).expect("data values serialize")
}

pub(crate) fn decode_value(s: &str) -> Result<DataValue> {
    serde_json::from_str(s).map_err(|e| StoreError::corrupt("data value", e))
}

pub(crate) fn decode_data(s: &str) -> Result<BTreeMap<String, DataValue>> {
    serde_json::from_str(s).map_err(|e| StoreError::corrupt("session data", e))
}

pub(crate) fn encode_state(state: &AggState) -> String {
    serde_json::to_string(state).expect("aggregate states serialize")
}
