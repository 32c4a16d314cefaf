//! What crosses the plugin boundary as bytes, and its codec.
//!
//! Everything here is [MessagePack](https://msgpack.org) written by `rmp-serde` with field
//! names (`to_vec_named`): structs are maps keyed by field name, enums are externally tagged
//! (`{"int": 42}`), so a field can be added without breaking older readers. Connection configs
//! and stream settings travel as JSON text (they are what the user wrote).
//!
//! | call | host → plugin | plugin → host |
//! | --- | --- | --- |
//! | `validate_stream` | settings: JSON text | — |
//! | `open` | config: JSON text | — |
//! | `check` | `[StreamRef]` | `[Problem]` (`{stream, message}`) |
//! | `discover` | — | `Catalog` (`{streams: [StreamInfo]}`) |
//! | `describe` | `StreamRef` | `StreamInfo` (`{name, fields, primary_key, cursor_candidates}`) |
//! | `read_open` | `ReadRequest` | — |
//! | `read_next` | — | `Batch` (`{fields, rows, state}`) |
//!
//! A row is an array of values, one per field; a value is `dossier_core::Value` (`"null"`,
//! `{"bool": b}`, `{"int": i}`, `{"float": f}`, `{"decimal": "1.10"}`, `{"text": s}`,
//! `{"date_time": "RFC 3339"}`, `{"json": any}`). The state is any JSON value, as MessagePack.

use std::sync::Arc;

use dossier_connector::{Batch, StreamConfig, StreamState};
use dossier_core::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::WireError;

/// A configured stream: its name and its settings as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRef {
    pub name: String,
    pub settings: String,
}

impl StreamRef {
    pub fn from_config(s: &StreamConfig) -> Self {
        Self {
            name: s.name.clone(),
            settings: s.settings.to_string(),
        }
    }

    pub fn to_config(&self) -> Result<StreamConfig, WireError> {
        Ok(StreamConfig {
            name: self.name.clone(),
            settings: serde_json::from_str(&self.settings).map_err(|e| WireError::Decode {
                what: "stream settings",
                message: e.to_string(),
            })?,
        })
    }
}

/// What `read_open` is asked to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadRequest {
    pub stream: StreamRef,
    /// The last committed checkpoint; absent for a first read.
    pub state: Option<serde_json::Value>,
    pub batch_size: u64,
}

#[derive(Serialize)]
struct BatchRef<'a> {
    fields: &'a [String],
    rows: &'a [Vec<Value>],
    state: &'a serde_json::Value,
}

#[derive(Deserialize)]
struct BatchOwned {
    fields: Vec<String>,
    rows: Vec<Vec<Value>>,
    state: serde_json::Value,
}

/// MessagePack of `value` (structs as maps).
pub fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, WireError> {
    rmp_serde::to_vec_named(value).map_err(|e| WireError::Encode {
        what,
        message: e.to_string(),
    })
}

/// The value MessagePack `bytes` hold.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, WireError> {
    rmp_serde::from_slice(bytes).map_err(|e| WireError::Decode {
        what,
        message: e.to_string(),
    })
}

fn batch_ref(batch: &Batch) -> BatchRef<'_> {
    BatchRef {
        fields: &batch.fields,
        rows: &batch.rows,
        state: &batch.state.0,
    }
}

fn batch_from(owned: BatchOwned, previous: Option<&Arc<Vec<String>>>) -> Batch {
    // Consecutive batches of a stream share their field list, as they do compiled in.
    let fields = match previous {
        Some(p) if **p == owned.fields => p.clone(),
        _ => Arc::new(owned.fields),
    };
    Batch {
        fields,
        rows: owned.rows,
        state: StreamState(owned.state),
    }
}

/// A batch with its state, as `read_next` returns it.
pub fn encode_batch(batch: &Batch) -> Result<Vec<u8>, WireError> {
    encode("batch", &batch_ref(batch))
}

/// A batch `read_next` returned; `previous` is the stream's last field list, reused when equal.
pub fn decode_batch(bytes: &[u8], previous: Option<&Arc<Vec<String>>>) -> Result<Batch, WireError> {
    Ok(batch_from(decode("batch", bytes)?, previous))
}

/// The same batch as JSON: not used across the boundary, kept to measure the choice
/// (`benches/plugin_boundary.rs`).
pub fn encode_batch_json(batch: &Batch) -> Result<Vec<u8>, WireError> {
    serde_json::to_vec(&batch_ref(batch)).map_err(|e| WireError::Encode {
        what: "batch",
        message: e.to_string(),
    })
}

/// Reads [`encode_batch_json`]'s output.
pub fn decode_batch_json(bytes: &[u8]) -> Result<Batch, WireError> {
    let owned: BatchOwned = serde_json::from_slice(bytes).map_err(|e| WireError::Decode {
        what: "batch",
        message: e.to_string(),
    })?;
    Ok(batch_from(owned, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> Batch {
        let at = chrono::Utc
            .timestamp_opt(1_700_000_000, 123_456_789)
            .unwrap();
        Batch {
            fields: Arc::new(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
            rows: vec![
                vec![
                    Value::Null,
                    Value::Bool(true),
                    Value::Int(-42),
                    Value::Float(1.5),
                ],
                vec![
                    Value::Decimal("10.10".into()),
                    Value::Text("héllo".into()),
                    Value::DateTime(at),
                    Value::Json(serde_json::json!({"k": [1, "x", null]})),
                ],
            ],
            state: StreamState(serde_json::json!({"cursor": 7, "ids": ["a"]})),
        }
    }

    #[test]
    fn batches_round_trip_exactly() {
        let b = sample();
        let back = decode_batch(&encode_batch(&b).unwrap(), None).unwrap();
        assert_eq!(back.fields, b.fields);
        assert_eq!(back.rows, b.rows);
        assert_eq!(back.state, b.state);
        let json = decode_batch_json(&encode_batch_json(&b).unwrap()).unwrap();
        assert_eq!(json.rows, b.rows);
    }

    #[test]
    fn field_lists_are_shared_between_batches() {
        let b = sample();
        let back = decode_batch(&encode_batch(&b).unwrap(), Some(&b.fields)).unwrap();
        assert!(Arc::ptr_eq(&back.fields, &b.fields));
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let e = decode_batch(b"\xc1nonsense", None).unwrap_err();
        assert!(e.to_string().starts_with("cannot decode batch"), "{e}");
    }
}
