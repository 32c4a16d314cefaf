//! Rows packed into one JSON value by the database. A statement that returns one row per
//! match costs, with sqlx, a hand-off per row (on SQLite a channel message from the worker
//! thread and a copy of every column); packed, it is one value for the whole result, read
//! by one `serde_json` pass. Many keys go the other way alike: one JSON array parameter
//! (`Json::strings`) rather than hundreds of bound ones.

use crate::error::{Result, StoreError};

/// The JSON functions of a backend: the same SQL, spelled as each backend names it.
pub(crate) struct Json {
    /// Aggregates values into an array (`NULL` or `[]` over no rows).
    pub agg: &'static str,
    pub array: &'static str,
    pub object: &'static str,
    /// What turns the aggregate into text.
    pub as_text: &'static str,
    sqlite: bool,
}

impl Json {
    pub fn new(sqlite: bool) -> Self {
        if sqlite {
            Self {
                agg: "json_group_array",
                array: "json_array",
                object: "json_object",
                as_text: "",
                sqlite,
            }
        } else {
            Self {
                agg: "json_agg",
                array: "json_build_array",
                object: "json_build_object",
                as_text: "::text",
                sqlite,
            }
        }
    }

    /// A table of the strings of a JSON array bound at `param`, one row each, in column
    /// `j.value`. Many keys go to the database as one parameter: binding hundreds of
    /// parameters costs sqlx more than the lookups they feed, and SQLite sorts an `IN` list
    /// into a temporary index first. Joined with `CROSS JOIN`, which SQLite reads as "this
    /// table first", so every key is one search of the other table's index.
    pub fn strings(&self, param: &str) -> String {
        if self.sqlite {
            format!("json_each({param}) AS j")
        } else {
            format!("json_array_elements_text(CAST({param} AS json)) AS j(value)")
        }
    }

    /// A text column holding JSON, embedded as JSON rather than as a string.
    pub fn raw(&self, col: &str) -> String {
        if self.sqlite {
            format!("json({col})")
        } else {
            format!("({col})::json")
        }
    }
}

/// Keys as the parameter [`Json::strings`] reads: a JSON array of strings.
pub(crate) fn strings_param(keys: &[&str]) -> String {
    serde_json::to_string(keys).expect("strings serialize")
}

/// The rows of a packed result; `None` (an aggregate over no rows) is no rows.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: Option<String>,
) -> Result<Vec<T>> {
    match text {
        None => Ok(vec![]),
        Some(t) => serde_json::from_str(&t).map_err(|e| StoreError::corrupt(what, e)),
    }
}
