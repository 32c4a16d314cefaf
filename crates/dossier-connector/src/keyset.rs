//! Keyset checkpoints shared by every cursor-based connector.
//!
//! An incremental read resumes strictly after `(cursor, pk)` of the last committed row:
//! `(cursor, pk) > (last_cursor, last_pk)`. The primary key breaks ties, so rows that share
//! a cursor value are neither lost nor duplicated at batch boundaries.

use serde::{Deserialize, Serialize};

use crate::{ConnectorError, StreamState, Value};

/// Where an incremental read stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeysetState {
    /// Cursor value of the last row read (absent for a pk-only keyset).
    pub cursor: Option<Value>,
    /// Primary key values of the last row read.
    pub pk: Vec<Value>,
}

impl KeysetState {
    pub fn to_state(&self) -> StreamState {
        StreamState(serde_json::to_value(self).expect("keyset state serializes"))
    }

    pub fn from_state(state: &StreamState) -> Result<Self, ConnectorError> {
        serde_json::from_value(state.0.clone()).map_err(|e| {
            ConnectorError::internal(format!(
                "stored stream state is not a keyset checkpoint ({e}); reset the stream's state to read it again"
            ))
        })
    }

    /// The checkpoint after `row`, given the positions of the cursor and pk fields.
    pub fn after_row(row: &[Value], cursor: Option<usize>, pk: &[usize]) -> Self {
        Self {
            cursor: cursor.map(|i| row[i].clone()),
            pk: pk.iter().map(|&i| row[i].clone()).collect(),
        }
    }
}
