//! BSON values as record values and JSON, their type names, and the order MongoDB compares
//! them in.

use chrono::{DateTime, Utc};
use dossier_connector::Value;
use mongodb::bson::raw::{RawArray, RawBsonRef, RawDocument};
use mongodb::bson::{Bson, Decimal128};
use serde_json::{Map, Value as Json};

/// Longest exponent a Decimal128 is written out in plain notation for (`1E+30` →
/// `1000000000000000000000000000000`); beyond it the value keeps its scientific form.
const MAX_PLAIN_EXPONENT: i64 = 64;

/// MongoDB's name of a value's type (the `$type` aliases).
pub fn type_name(v: RawBsonRef<'_>) -> &'static str {
    match v {
        RawBsonRef::Double(_) => "double",
        RawBsonRef::String(_) => "string",
        RawBsonRef::Document(_) => "object",
        RawBsonRef::Array(_) => "array",
        RawBsonRef::Binary(_) => "binData",
        RawBsonRef::Undefined => "undefined",
        RawBsonRef::ObjectId(_) => "objectId",
        RawBsonRef::Boolean(_) => "bool",
        RawBsonRef::DateTime(_) => "date",
        RawBsonRef::Null => "null",
        RawBsonRef::RegularExpression(_) => "regex",
        RawBsonRef::DbPointer(_) => "dbPointer",
        RawBsonRef::JavaScriptCode(_) => "javascript",
        RawBsonRef::Symbol(_) => "symbol",
        RawBsonRef::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        RawBsonRef::Int32(_) => "int",
        RawBsonRef::Timestamp(_) => "timestamp",
        RawBsonRef::Int64(_) => "long",
        RawBsonRef::Decimal128(_) => "decimal",
        RawBsonRef::MinKey => "minKey",
        RawBsonRef::MaxKey => "maxKey",
    }
}

/// Why values of a type cannot be mapped; `None` when they can.
pub fn unsupported(type_name: &str) -> Option<&'static str> {
    Some(match type_name {
        "binData" => {
            "binary data is not read; store it as text (hex, base64) in the source to map it"
        }
        "regex" => "regular expressions are not data that can be mapped",
        "javascript" | "javascriptWithScope" => "JavaScript code is not data that can be mapped",
        "dbPointer" => "DBPointers (deprecated) are not read; store the referenced _id instead",
        "minKey" | "maxKey" => "MinKey and MaxKey are markers, not data that can be mapped",
        _ => return None,
    })
}

/// Where MongoDB sorts a value among types: values of different brackets never compare
/// equal, and `$gt` only matches values of the same bracket.
pub fn bracket(v: RawBsonRef<'_>) -> u8 {
    match v {
        RawBsonRef::MinKey => 1,
        RawBsonRef::Null | RawBsonRef::Undefined => 2,
        RawBsonRef::Double(_)
        | RawBsonRef::Int32(_)
        | RawBsonRef::Int64(_)
        | RawBsonRef::Decimal128(_) => 3,
        RawBsonRef::String(_) | RawBsonRef::Symbol(_) => 4,
        RawBsonRef::Document(_) => 5,
        RawBsonRef::Array(_) => 6,
        RawBsonRef::Binary(_) => 7,
        RawBsonRef::ObjectId(_) => 8,
        RawBsonRef::Boolean(_) => 9,
        RawBsonRef::DateTime(_) => 10,
        RawBsonRef::Timestamp(_) => 11,
        RawBsonRef::RegularExpression(_) => 12,
        RawBsonRef::DbPointer(_) => 13,
        RawBsonRef::JavaScriptCode(_) => 14,
        RawBsonRef::JavaScriptCodeWithScope(_) => 15,
        RawBsonRef::MaxKey => 16,
    }
}

/// The name of a bracket's types, for messages.
pub fn bracket_name(v: RawBsonRef<'_>) -> &'static str {
    match bracket(v) {
        3 => "number",
        4 => "string",
        _ => type_name(v),
    }
}

/// The record value of a BSON value. ObjectIds become their hex string; integers `Int`;
/// doubles `Float`; Decimal128 an exact `Decimal`; dates and timestamps `DateTime` in UTC (a
/// date the model cannot hold becomes `Null`); documents and arrays `Json`, whole; types that
/// cannot be mapped their canonical extended JSON (never silently dropped: a mapping that
/// uses one refuses the record).
pub fn to_value(v: RawBsonRef<'_>) -> Value {
    match v {
        RawBsonRef::Null | RawBsonRef::Undefined => Value::Null,
        RawBsonRef::Boolean(b) => Value::Bool(b),
        RawBsonRef::Int32(i) => Value::Int(i.into()),
        RawBsonRef::Int64(i) => Value::Int(i),
        RawBsonRef::Double(f) => Value::Float(f),
        RawBsonRef::Decimal128(d) => Value::Decimal(decimal(&d)),
        RawBsonRef::String(s) | RawBsonRef::Symbol(s) => Value::Text(s.to_string()),
        RawBsonRef::ObjectId(o) => Value::Text(o.to_hex()),
        RawBsonRef::DateTime(d) => date(d.timestamp_millis()).map_or(Value::Null, Value::DateTime),
        RawBsonRef::Timestamp(t) => {
            DateTime::from_timestamp(t.time.into(), 0).map_or(Value::Null, Value::DateTime)
        }
        RawBsonRef::Document(d) => Value::Json(doc_to_json(d)),
        RawBsonRef::Array(a) => Value::Json(array_to_json(a)),
        other => Value::Json(extjson(other)),
    }
}

/// A BSON value as plain JSON, for values kept whole: ObjectIds and Decimal128 as strings,
/// dates as RFC 3339 strings, non-finite doubles as `"NaN"`/`"Infinity"`, types that cannot
/// be mapped as canonical extended JSON.
pub fn to_json(v: RawBsonRef<'_>) -> Json {
    match v {
        RawBsonRef::Null | RawBsonRef::Undefined => Json::Null,
        RawBsonRef::Boolean(b) => Json::Bool(b),
        RawBsonRef::Int32(i) => i.into(),
        RawBsonRef::Int64(i) => i.into(),
        RawBsonRef::Double(f) => serde_json::Number::from_f64(f)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(f.to_string())),
        RawBsonRef::Decimal128(d) => Json::String(decimal(&d)),
        RawBsonRef::String(s) | RawBsonRef::Symbol(s) => Json::String(s.to_string()),
        RawBsonRef::ObjectId(o) => Json::String(o.to_hex()),
        RawBsonRef::DateTime(_) | RawBsonRef::Timestamp(_) => match to_value(v) {
            Value::DateTime(t) => {
                Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }
            _ => extjson(v),
        },
        RawBsonRef::Document(d) => doc_to_json(d),
        RawBsonRef::Array(a) => array_to_json(a),
        other => extjson(other),
    }
}

fn doc_to_json(d: &RawDocument) -> Json {
    let mut map = Map::new();
    for elem in d {
        match elem {
            Ok((k, v)) => {
                map.insert(k.to_string(), to_json(v));
            }
            // The driver validated the document; a malformed element is kept as a marker.
            Err(e) => {
                map.insert("$invalid".into(), Json::String(e.to_string()));
                break;
            }
        }
    }
    Json::Object(map)
}

fn array_to_json(a: &RawArray) -> Json {
    let mut out = vec![];
    for v in a {
        match v {
            Ok(v) => out.push(to_json(v)),
            Err(e) => {
                out.push(Json::String(format!("$invalid: {e}")));
                break;
            }
        }
    }
    Json::Array(out)
}

/// The canonical extended JSON of a value: exact, and parsed back to the same BSON.
pub fn extjson(v: RawBsonRef<'_>) -> Json {
    to_bson(v).into_canonical_extjson()
}

/// An owned copy of a raw value.
pub fn to_bson(v: RawBsonRef<'_>) -> Bson {
    Bson::try_from(v.to_raw_bson()).unwrap_or_else(|e| Bson::String(format!("$invalid: {e}")))
}

/// A value back from its canonical extended JSON (checkpoints).
pub fn from_extjson(j: &Json) -> Option<Bson> {
    Bson::try_from(j.clone()).ok()
}

fn date(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
}

/// A Decimal128 as an exact decimal string in plain notation (`1.50E+3` → `1500`), the form
/// SQL decimals have; NaN and the infinities as MongoDB writes them.
pub fn decimal(d: &Decimal128) -> String {
    plain_decimal(&d.to_string())
}

fn plain_decimal(s: &str) -> String {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (mantissa, exp) = match body.split_once(['E', 'e']) {
        Some((m, e)) => match e.parse::<i64>() {
            Ok(e) => (m, e),
            Err(_) => return s.to_string(),
        },
        None => return s.to_string(),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if exp.abs() > MAX_PLAIN_EXPONENT
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return s.to_string();
    }
    let digits = format!("{int}{frac}");
    // The decimal point sits `point` digits from the left of `digits`.
    let point = int.len() as i64 + exp;
    let out = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{a}.{b}")
    };
    let trimmed = out.trim_start_matches('0');
    let out = if trimmed.is_empty() || trimmed.starts_with('.') {
        format!("0{trimmed}")
    } else {
        trimmed.to_string()
    };
    if neg { format!("-{out}") } else { out }
}

/// The value at a dotted path, through nested documents (not arrays).
pub fn lookup<'a>(doc: &'a RawDocument, path: &str) -> Option<RawBsonRef<'a>> {
    // A server may return a projected nested field under its dotted name.
    if let Ok(Some(v)) = doc.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    match doc.get(head).ok()?? {
        RawBsonRef::Document(d) => lookup(d, rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;
    use mongodb::bson::spec::BinarySubtype;
    use mongodb::bson::{Binary, RawDocumentBuf, Regex, Timestamp, doc, oid::ObjectId};
    use serde_json::json;

    fn raw(d: mongodb::bson::Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&d).unwrap()
    }

    fn value_of(d: &RawDocumentBuf, key: &str) -> Value {
        to_value(d.get(key).unwrap().unwrap())
    }

    #[test]
    fn converts_every_type() {
        let oid = ObjectId::parse_str("5ca4bbcea2dd94ee58162a68").unwrap();
        let at = Utc.with_ymd_and_hms(2024, 3, 1, 10, 30, 0).unwrap();
        let d = raw(doc! {
            "oid": oid,
            "i32": 7_i32,
            "i64": 9_007_199_254_740_993_i64,
            "f": 0.1_f64,
            "dec": "12345678901234567890.01".parse::<Decimal128>().unwrap(),
            "small": "1.50E+3".parse::<Decimal128>().unwrap(),
            "date": mongodb::bson::DateTime::from_millis(at.timestamp_millis()),
            "ts": Timestamp { time: at.timestamp() as u32, increment: 3 },
            "b": true,
            "s": "Ada",
            "n": mongodb::bson::Bson::Null,
            "nested": { "city": "Paris", "at": mongodb::bson::DateTime::from_millis(0) },
            "arr": [1, "two", { "x": 1.5 }],
            "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2, 3] },
            "re": Regex { pattern: "^a".into(), options: "i".into() },
        });
        assert_eq!(
            value_of(&d, "oid"),
            Value::Text("5ca4bbcea2dd94ee58162a68".into())
        );
        assert_eq!(value_of(&d, "i32"), Value::Int(7));
        assert_eq!(value_of(&d, "i64"), Value::Int(9_007_199_254_740_993));
        assert_eq!(value_of(&d, "f"), Value::Float(0.1));
        assert_eq!(
            value_of(&d, "dec"),
            Value::Decimal("12345678901234567890.01".into())
        );
        assert_eq!(value_of(&d, "small"), Value::Decimal("1500".into()));
        assert_eq!(value_of(&d, "date"), Value::DateTime(at));
        assert_eq!(value_of(&d, "ts"), Value::DateTime(at));
        assert_eq!(value_of(&d, "b"), Value::Bool(true));
        assert_eq!(value_of(&d, "s"), Value::Text("Ada".into()));
        assert_eq!(value_of(&d, "n"), Value::Null);
        assert_eq!(
            value_of(&d, "nested"),
            Value::Json(json!({"city": "Paris", "at": "1970-01-01T00:00:00Z"}))
        );
        assert_eq!(
            value_of(&d, "arr"),
            Value::Json(json!([1, "two", {"x": 1.5}]))
        );
        // Unsupported types are kept as extended JSON, never silently dropped.
        assert_eq!(
            value_of(&d, "bin"),
            Value::Json(json!({"$binary": {"base64": "AQID", "subType": "00"}}))
        );
        assert!(matches!(value_of(&d, "re"), Value::Json(_)));
        assert!(unsupported(type_name(d.get("bin").unwrap().unwrap())).is_some());
        assert!(unsupported("string").is_none());
    }

    #[test]
    fn decimals_are_exact_and_plain() {
        for (input, want) in [
            ("1.50E+3", "1500"),
            ("1.5E-7", "0.00000015"),
            ("-2.5E+1", "-25"),
            ("0E-2", "0.00"),
            ("12.34", "12.34"),
            ("NaN", "NaN"),
            ("-Infinity", "-Infinity"),
        ] {
            let d: Decimal128 = input.parse().unwrap();
            assert_eq!(decimal(&d), want, "{input} ({d})");
        }
        // Past 64 digits of exponent the scientific form is kept, exact.
        let huge = decimal(&"1E+6144".parse().unwrap());
        assert!(huge.ends_with("E+6144"), "{huge}");
        // Exact in the model too: a double cannot hold 2^64 + 0.01, so it stays a string.
        let v = Value::Decimal(decimal(&"18446744073709551616.01".parse().unwrap()));
        assert_eq!(
            v.to_data().unwrap(),
            Some(dossier_core::DataValue::String(
                "18446744073709551616.01".into()
            ))
        );
    }

    #[test]
    fn brackets_follow_mongodb_order() {
        let d = raw(doc! {"i": 1, "l": 2_i64, "f": 1.5, "s": "a", "o": ObjectId::new()});
        let b = |k| bracket(d.get(k).unwrap().unwrap());
        assert_eq!(b("i"), b("l"));
        assert_eq!(b("i"), b("f"));
        assert!(b("f") < b("s") && b("s") < b("o"));
        assert_eq!(bracket_name(d.get("l").unwrap().unwrap()), "number");
    }

    #[test]
    fn checkpoint_values_round_trip() {
        let d = raw(
            doc! {"d": mongodb::bson::DateTime::from_millis(1_700_000_000_123), "f": 0.1, "l": 5_i64},
        );
        for k in ["d", "f", "l"] {
            let v = d.get(k).unwrap().unwrap();
            assert_eq!(from_extjson(&extjson(v)).unwrap(), to_bson(v), "{k}");
        }
    }

    #[test]
    fn looks_up_nested_paths() {
        let d = raw(doc! {"a": {"b": {"c": 1}}, "x.y": 2});
        assert_eq!(lookup(&d, "a.b.c").map(to_value), Some(Value::Int(1)));
        assert_eq!(lookup(&d, "x.y").map(to_value), Some(Value::Int(2)));
        assert_eq!(lookup(&d, "a.z"), None);
    }
}
