//! A stream's JSON Schema as Dossier fields, and records as rows of those fields.

use dossier_connector::{FieldInfo, Value};
use serde_json::{Map, Value as Json};

/// Deepest nesting whose fields are listed as dotted paths; deeper objects are read whole.
const MAX_DEPTH: usize = 4;
/// Most fields listed for one stream; the rest stay readable through their parent object.
const MAX_FIELDS: usize = 500;

/// How a field's values are converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Strings are date-times (`format: date-time`, Airbyte's timestamp types).
    DateTime,
    /// As the JSON is: strings, numbers, booleans, objects and arrays whole.
    Plain,
}

/// One field: its dotted name and its path in a record.
#[derive(Debug, Clone)]
struct Field {
    path: Vec<String>,
    kind: Kind,
}

/// The fields of a stream, in order, and how a record becomes a row of them.
#[derive(Debug, Clone)]
pub struct Layout {
    names: Vec<String>,
    fields: Vec<Field>,
    info: Vec<FieldInfo>,
}

/// The types a property's schema allows, `null` left out.
fn types(schema: &Json) -> Vec<&str> {
    match schema.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts
            .iter()
            .filter_map(Json::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => vec![],
    }
}

/// The source type shown for a property: `string(date-time)`, `integer`, `object`...
fn type_name(schema: &Json) -> (String, Kind) {
    let ts = types(schema);
    let format = schema.get("format").and_then(Json::as_str);
    let airbyte = schema.get("airbyte_type").and_then(Json::as_str);
    let datetime = ts == ["string"]
        && (format == Some("date-time") || airbyte.is_some_and(|a| a.starts_with("timestamp")));
    let mut name = match ts.as_slice() {
        [] if schema.get("anyOf").is_some() || schema.get("oneOf").is_some() => "union".into(),
        [] => "any".into(),
        ts => ts.join("|"),
    };
    if let Some(f) = format.or(airbyte) {
        name = format!("{name}({f})");
    }
    (
        name,
        if datetime {
            Kind::DateTime
        } else {
            Kind::Plain
        },
    )
}

impl Layout {
    /// The fields of a stream's `json_schema`: each property, and the properties of nested
    /// objects as dotted paths (`address.city`), the object itself also readable whole.
    pub fn from_schema(schema: &Json) -> Layout {
        let mut layout = Layout {
            names: vec![],
            fields: vec![],
            info: vec![],
        };
        layout.walk(schema, &mut vec![]);
        layout
    }

    fn walk(&mut self, schema: &Json, path: &mut Vec<String>) {
        let Some(props) = schema.get("properties").and_then(Json::as_object) else {
            return;
        };
        // By name, whatever order serde_json keeps (insertion order when some crate of the
        // build enables `preserve_order`), so a stream's fields do not depend on the build.
        let mut props: Vec<_> = props.iter().collect();
        props.sort_by(|a, b| a.0.cmp(b.0));
        for (key, prop) in props {
            if self.fields.len() >= MAX_FIELDS {
                return;
            }
            path.push(key.clone());
            let (source_type, kind) = type_name(prop);
            let name = path.join(".");
            // A property whose dotted name another one already has (`a.b` beside `a: {b}`)
            // could not be told apart: the first stays.
            if !self.names.contains(&name) {
                self.names.push(name.clone());
                self.fields.push(Field {
                    path: path.clone(),
                    kind,
                });
                self.info.push(FieldInfo {
                    name,
                    source_type,
                    unsupported: None,
                });
            }
            if path.len() < MAX_DEPTH && types(prop).contains(&"object") {
                self.walk(prop, path);
            }
            path.pop();
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn info(&self) -> &[FieldInfo] {
        &self.info
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// A record's values, one per field; a field the record lacks is null.
    pub fn row(&self, data: &Map<String, Json>) -> Vec<Value> {
        self.fields
            .iter()
            .map(|f| {
                let mut v = data.get(&f.path[0]);
                for key in &f.path[1..] {
                    v = v.and_then(|v| v.get(key));
                }
                v.map_or(Value::Null, |v| value(v, f.kind))
            })
            .collect()
    }
}

/// A JSON value as a record value: integers `Int` (beyond i64 an exact `Decimal`), other
/// numbers `Float`, date-time strings `DateTime` (as text when they do not parse), objects and
/// arrays `Json`, whole.
fn value(v: &Json, kind: Kind) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Int(i),
            (None, _) if n.is_u64() => Value::Decimal(n.to_string()),
            (None, Some(f)) => Value::Float(f),
            (None, None) => Value::Decimal(n.to_string()),
        },
        Json::String(s) if kind == Kind::DateTime => dossier_core::value::parse_datetime(s)
            .map_or_else(|| Value::Text(s.clone()), Value::DateTime),
        Json::String(s) => Value::Text(s.clone()),
        other => Value::Json(other.clone()),
    }
}

/// A dotted field name as a path in records, for the configured catalog.
pub fn path_of(name: &str) -> Vec<String> {
    name.split('.').map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_objects_are_dotted_fields_and_values_follow_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "email": {"type": ["null", "string"]},
                "updated_at": {"type": ["null", "string"], "format": "date-time"},
                "address": {"type": ["null", "object"], "properties": {
                    "city": {"type": "string"}, "zip": {"type": "string"}
                }},
                "tags": {"type": "array", "items": {"type": "string"}},
                "price": {"type": "number"}
            }
        });
        let layout = Layout::from_schema(&schema);
        // Properties in name order, children after their parent.
        assert_eq!(
            layout.names(),
            [
                "address",
                "address.city",
                "address.zip",
                "email",
                "id",
                "price",
                "tags",
                "updated_at"
            ]
        );
        assert_eq!(layout.info()[7].source_type, "string(date-time)");
        assert_eq!(layout.info()[0].source_type, "object");
        let row = layout.row(
            json!({"id": 7, "updated_at": "2024-05-01T10:00:00+02:00", "address": {"city": "Lyon"},
                   "tags": ["a"], "price": 19.99, "extra": 1})
            .as_object()
            .unwrap(),
        );
        assert_eq!(row[0], Value::Json(json!({"city": "Lyon"})));
        assert_eq!(row[1], Value::Text("Lyon".into()));
        assert_eq!(row[2], Value::Null);
        assert_eq!(row[3], Value::Null);
        assert_eq!(row[4], Value::Int(7));
        assert_eq!(row[5], Value::Float(19.99));
        assert_eq!(row[6], Value::Json(json!(["a"])));
        assert_eq!(
            row[7],
            Value::DateTime("2024-05-01T08:00:00Z".parse().unwrap())
        );
        let row = layout.row(json!({"updated_at": "not a date"}).as_object().unwrap());
        assert_eq!(row[7], Value::Text("not a date".into()));
    }
}
