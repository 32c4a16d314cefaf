//! Values: what connectors read ([`Value`]) and what custom data holds ([`DataValue`]).

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::CoreError;

/// Longest accepted string data value, in bytes.
pub const MAX_STRING_BYTES: usize = 4096;

/// Integers beyond this magnitude do not fit a double exactly; they are kept as strings.
const MAX_EXACT_INT: i64 = 1 << 53;

/// One field of a source record, as a connector read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// An exact decimal, written as the source wrote it.
    Decimal(String),
    Text(String),
    DateTime(DateTime<Utc>),
    /// A structured value (JSON object or array) kept whole.
    Json(serde_json::Value),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as an identifier part (external ids, cursors in messages).
    pub fn to_id_string(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Decimal(s) | Value::Text(s) => Some(s.clone()),
            Value::DateTime(t) => Some(t.to_rfc3339()),
            Value::Json(j) => Some(j.to_string()),
        }
    }

    /// Converts to a custom data value without guessing: text stays text, numbers stay
    /// numbers. `Ok(None)` for null.
    pub fn to_data(&self) -> Result<Option<DataValue>, String> {
        Ok(Some(match self {
            Value::Null => return Ok(None),
            Value::Bool(b) => DataValue::Bool(*b),
            Value::Int(i) if i.abs() <= MAX_EXACT_INT => DataValue::Number(*i as f64),
            Value::Int(i) => DataValue::String(i.to_string()),
            Value::Float(f) => DataValue::Number(*f),
            Value::Decimal(s) => decimal_to_data(s),
            Value::Text(s) => DataValue::String(s.clone()),
            Value::DateTime(t) => DataValue::DateTime(*t),
            Value::Json(j) => match j {
                serde_json::Value::Null => return Ok(None),
                serde_json::Value::Bool(b) => DataValue::Bool(*b),
                serde_json::Value::Number(n) => DataValue::Number(
                    n.as_f64()
                        .ok_or_else(|| format!("number {n} is out of range"))?,
                ),
                serde_json::Value::String(s) => DataValue::String(s.clone()),
                other => {
                    return Err(format!(
                        "a JSON {} is not a scalar; map one of its fields instead",
                        if other.is_array() { "array" } else { "object" }
                    ));
                }
            },
        }))
    }
}

/// A decimal that a double represents exactly becomes a number; any other stays an exact string.
fn decimal_to_data(s: &str) -> DataValue {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && same_decimal(s, f) => DataValue::Number(f),
        _ => DataValue::String(s.to_string()),
    }
}

fn same_decimal(s: &str, f: f64) -> bool {
    fn canon(s: &str) -> String {
        let s = s.trim_start_matches('+');
        let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        let body = match (int.is_empty(), frac.is_empty()) {
            (true, true) => return "0".into(),
            (_, true) => int.to_string(),
            (true, false) => format!("0.{frac}"),
            (false, false) => format!("{int}.{frac}"),
        };
        if neg { format!("-{body}") } else { body }
    }
    canon(s) == canon(&f.to_string())
}

/// A custom data value (contact data, session data, aggregate results): a scalar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DataValue {
    #[serde(rename = "s")]
    String(String),
    #[serde(rename = "n")]
    Number(f64),
    #[serde(rename = "b")]
    Bool(bool),
    #[serde(rename = "t")]
    DateTime(DateTime<Utc>),
}

impl DataValue {
    /// Checks the bounds every stored value must respect.
    pub fn validate(&self, key: &str) -> Result<(), CoreError> {
        let reason = match self {
            DataValue::String(s) if s.len() > MAX_STRING_BYTES => Some(format!(
                "string is {} bytes long, the maximum is {MAX_STRING_BYTES}",
                s.len()
            )),
            DataValue::Number(n) if !n.is_finite() => Some("number must be finite".to_string()),
            _ => None,
        };
        match reason {
            Some(reason) => Err(CoreError::InvalidValue {
                key: key.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// The plain JSON form served by the API: date-times as RFC 3339 strings.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            DataValue::String(s) => serde_json::Value::String(s.clone()),
            // Whole numbers print as integers (a count is 3, not 3.0).
            DataValue::Number(n) if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INT as f64 => {
                serde_json::Value::Number((*n as i64).into())
            }
            DataValue::Number(n) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            DataValue::Bool(b) => serde_json::Value::Bool(*b),
            DataValue::DateTime(t) => {
                serde_json::Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }
        }
    }

    /// Reads a plain JSON scalar as given through the API. Strings that look like RFC 3339
    /// date-times stay strings: a caller that wants a date-time says so with `as_datetime`.
    pub fn from_json(key: &str, json: &serde_json::Value) -> Result<Self, CoreError> {
        let bad = |reason: &str| CoreError::InvalidValue {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        let v = match json {
            serde_json::Value::String(s) => DataValue::String(s.clone()),
            serde_json::Value::Number(n) => {
                DataValue::Number(n.as_f64().ok_or_else(|| bad("number is out of range"))?)
            }
            serde_json::Value::Bool(b) => DataValue::Bool(*b),
            serde_json::Value::Null => {
                return Err(bad("null is not a value; remove the key instead"));
            }
            _ => {
                return Err(bad(
                    "values are scalars: a string, a number, a boolean or a date-time",
                ));
            }
        };
        v.validate(key)?;
        Ok(v)
    }

    /// A number usable for ordering and comparisons (date-times as epoch microseconds).
    pub fn as_sort_number(&self) -> Option<f64> {
        match self {
            DataValue::Number(n) => Some(*n),
            DataValue::DateTime(t) => Some(t.timestamp_micros() as f64),
            DataValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            DataValue::String(_) => None,
        }
    }

    /// Text usable for equality and `contains` (strings only).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            DataValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            DataValue::String(_) => "string",
            DataValue::Number(_) => "number",
            DataValue::Bool(_) => "boolean",
            DataValue::DateTime(_) => "date-time",
        }
    }
}

/// Parses the date-time spellings sources commonly use. Naive forms are taken as UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
}

/// Microseconds since the Unix epoch, the store's time representation.
pub fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_stay_exact() {
        assert_eq!(decimal_to_data("12.50"), DataValue::Number(12.5));
        assert_eq!(decimal_to_data("0.1"), DataValue::Number(0.1));
        assert_eq!(
            decimal_to_data("12345678901234567890.01"),
            DataValue::String("12345678901234567890.01".into())
        );
    }

    #[test]
    fn big_integers_stay_exact() {
        assert_eq!(
            Value::Int(i64::MAX).to_data().unwrap(),
            Some(DataValue::String(i64::MAX.to_string()))
        );
        assert_eq!(
            Value::Int(42).to_data().unwrap(),
            Some(DataValue::Number(42.0))
        );
    }

    #[test]
    fn parses_common_datetimes() {
        let want = Utc.with_ymd_and_hms(2024, 3, 1, 10, 30, 0).unwrap();
        for s in [
            "2024-03-01T10:30:00Z",
            "2024-03-01 10:30:00",
            "2024-03-01T12:30:00+02:00",
        ] {
            assert_eq!(parse_datetime(s), Some(want), "{s}");
        }
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn bounds_are_enforced() {
        let long = DataValue::String("x".repeat(MAX_STRING_BYTES + 1));
        assert!(long.validate("note").is_err());
        assert!(DataValue::Number(f64::NAN).validate("n").is_err());
        assert!(DataValue::from_json("k", &serde_json::json!({"a": 1})).is_err());
    }

    #[test]
    fn storage_encoding_round_trips() {
        for v in [
            DataValue::String("a".into()),
            DataValue::Number(1.5),
            DataValue::Bool(true),
            DataValue::DateTime(Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()),
        ] {
            let s = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<DataValue>(&s).unwrap(), v);
        }
    }
}
