//! Lookups: fields of another stream of the same source joined into each record of a stream
//! by key (a purchase gets its product's price).
//!
//! A lookup stream is read in full, by a run of its own before the run of the stream that uses
//! it (so its read neither depends on the order a source writes the streams of one catalog
//! in, nor changes what the source writes for the other stream), and held in memory, at most
//! `max_rows` records. Each record of the stream then gets the lookup record whose `key`
//! equals its `on` field: the lookup's `fields`, in an object named `into`, whose properties
//! are fields of the stream (`product.price`) with the lookup stream's types. A record with no
//! match (`on` null or absent, or no lookup record with that key) is kept; `into` is null, so
//! every looked-up field reads as null.
//!
//! This module is the pure part (the joined schema, the tables, the join of one record); the
//! reads are [`crate::read`]'s.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value as Json, json};

use crate::config::Lookup;
use crate::schema::{Layout, path_of};

/// The stream a configured stream reads, as its source describes it.
#[derive(Debug, Clone)]
pub(crate) struct SourceStream {
    /// The source's name of the stream (qualified by its namespace), which tells two apart.
    pub id: String,
    /// Its JSON Schema.
    pub schema: Json,
    /// Its key fields, dotted.
    pub primary_key: Vec<String>,
}

/// A stream's lookups, resolved: the stream's fields with the looked-up ones, and a table per
/// lookup, filled by reading its stream.
#[derive(Debug)]
pub(crate) struct Joins {
    pub layout: Layout,
    pub joins: Vec<Join>,
}

/// One lookup, resolved, and its table.
#[derive(Debug)]
pub(crate) struct Join {
    pub lookup: Lookup,
    key: Vec<String>,
    on: Vec<String>,
    rows: HashMap<String, Json>,
    read: u64,
}

/// A key as text: `7` and `"7"` are the same key; null is none.
fn key_text(v: &Json) -> Option<Cow<'_, str>> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(Cow::Borrowed(s)),
        Json::Number(n) => Some(Cow::Owned(n.to_string())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

fn at_path<'a>(data: &'a Map<String, Json>, path: &[String]) -> Option<&'a Json> {
    let mut v = data.get(&path[0]);
    for key in &path[1..] {
        v = v.and_then(|v| v.get(key));
    }
    v
}

fn properties(schema: &Json) -> Option<&Map<String, Json>> {
    schema.get("properties").and_then(Json::as_object)
}

impl Joins {
    /// Checks `lookups` (each with the stream it reads) against the stream `base` and returns
    /// the joined stream's fields with empty tables. `Err` says what is wrong, naming the
    /// lookup.
    pub fn resolve(
        base: &SourceStream,
        lookups: Vec<(Lookup, SourceStream)>,
    ) -> Result<Joins, String> {
        let base_layout = Layout::from_schema(&base.schema);
        let mut schema = base.schema.clone();
        let mut joins = vec![];
        for (i, (lookup, other)) in lookups.into_iter().enumerate() {
            let what = format!("`lookups[{i}]` ({:?})", lookup.stream);
            if other.id == base.id {
                return Err(format!(
                    "{what}: a stream cannot look itself up; name another stream of the source"
                ));
            }
            let other_layout = Layout::from_schema(&other.schema);
            let key = match (&lookup.key, other.primary_key.as_slice()) {
                (Some(k), _) => k.clone(),
                (None, [k]) => k.clone(),
                (None, []) => {
                    return Err(format!(
                        "{what}: {:?} has no primary key; set `key` to its field that identifies a record",
                        other.id
                    ));
                }
                (None, _) => {
                    return Err(format!(
                        "{what}: the primary key of {:?} has several fields ({}); set `key` to one field that identifies a record",
                        other.id,
                        other.primary_key.join(", ")
                    ));
                }
            };
            if !other_layout.contains(&key) {
                return Err(format!(
                    "{what}: `key` {key:?} is not a field of {:?}; its fields are: {}",
                    other.id,
                    other_layout.names().join(", ")
                ));
            }
            if !base_layout.contains(&lookup.on) {
                return Err(format!(
                    "{what}: `on` {:?} is not a field of {:?}; its fields are: {}",
                    lookup.on,
                    base.id,
                    base_layout.names().join(", ")
                ));
            }
            let their = properties(&other.schema);
            let mut carried = Map::new();
            for f in &lookup.fields {
                let Some(prop) = their.and_then(|p| p.get(f)) else {
                    let mut names: Vec<&String> =
                        their.map(|p| p.keys().collect()).unwrap_or_default();
                    names.sort();
                    let names: Vec<&str> = names.into_iter().map(String::as_str).collect();
                    return Err(format!(
                        "{what}: `fields` names {f:?}, which is not a field of {:?}; its fields are: {}",
                        other.id,
                        names.join(", ")
                    ));
                };
                carried.insert(f.clone(), prop.clone());
            }
            let into = lookup.into_field().to_string();
            if properties(&schema).is_some_and(|p| p.contains_key(&into)) {
                return Err(format!(
                    "{what}: `into` {into:?} is a field of {:?} already; set `into` to another name",
                    base.id
                ));
            }
            if !schema.is_object() {
                schema = json!({"type": "object"});
            }
            if !schema["properties"].is_object() {
                schema["properties"] = json!({});
            }
            schema["properties"][&into] =
                json!({"type": ["null", "object"], "properties": Json::Object(carried)});
            joins.push(Join {
                key: path_of(&key),
                on: path_of(&lookup.on),
                lookup,
                rows: HashMap::new(),
                read: 0,
            });
        }
        Ok(Joins {
            layout: Layout::from_schema(&schema),
            joins,
        })
    }

    /// Joins the looked-up fields into `record`; true when every lookup found its record.
    pub fn apply(&self, record: &mut Map<String, Json>) -> bool {
        let mut all = true;
        for j in &self.joins {
            let found = at_path(record, &j.on)
                .and_then(key_text)
                .and_then(|k| j.rows.get(k.as_ref()))
                .cloned();
            all &= found.is_some();
            record.insert(
                j.lookup.into_field().to_string(),
                found.unwrap_or(Json::Null),
            );
        }
        all
    }
}

impl Join {
    /// Keeps a record of the lookup stream (its carried fields, under its key; a later record
    /// with the same key replaces it). `Err` once the stream has more than `max_rows` records,
    /// a record without a key is skipped.
    pub fn insert(&mut self, record: &Map<String, Json>) -> Result<(), usize> {
        self.read += 1;
        let limit = self.lookup.max_rows();
        if self.read > limit as u64 {
            return Err(limit);
        }
        let Some(key) = at_path(record, &self.key).and_then(key_text) else {
            return Ok(());
        };
        let carried: Map<String, Json> = self
            .lookup
            .fields
            .iter()
            .filter_map(|f| record.get(f).map(|v| (f.clone(), v.clone())))
            .collect();
        self.rows.insert(key.into_owned(), Json::Object(carried));
        Ok(())
    }

    /// Records of the lookup stream read, and distinct keys held.
    pub fn counts(&self) -> (u64, usize) {
        (self.read, self.rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products() -> SourceStream {
        SourceStream {
            id: "products".into(),
            schema: json!({"type": "object", "properties": {
                "id": {"type": "integer"}, "price": {"type": "number"}, "make": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"}
            }}),
            primary_key: vec!["id".into()],
        }
    }

    fn purchases() -> SourceStream {
        SourceStream {
            id: "purchases".into(),
            schema: json!({"type": "object", "properties": {
                "id": {"type": "integer"}, "product_id": {"type": ["null", "integer"]}
            }}),
            primary_key: vec!["id".into()],
        }
    }

    fn lookup(v: Json) -> Lookup {
        serde_json::from_value(v).unwrap()
    }

    fn obj(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn records_get_the_fields_of_their_key_and_none_without_a_match() {
        let l = lookup(
            json!({"stream": "products", "on": "product_id", "fields": ["price", "created_at"], "into": "product"}),
        );
        let mut joins = Joins::resolve(&purchases(), vec![(l, products())]).unwrap();
        assert_eq!(
            joins.layout.names(),
            [
                "id",
                "product",
                "product.created_at",
                "product.price",
                "product_id"
            ]
        );
        assert_eq!(joins.layout.info()[2].source_type, "string(date-time)");
        let table = &mut joins.joins[0];
        table
            .insert(&obj(json!({"id": 1, "price": 10.5, "make": "Mazda", "created_at": "2024-01-01T00:00:00Z"})))
            .unwrap();
        table.insert(&obj(json!({"id": "2", "price": 20}))).unwrap();
        // No key: skipped. The same key again: the later one is kept.
        table.insert(&obj(json!({"price": 99}))).unwrap();
        table.insert(&obj(json!({"id": 1, "price": 11}))).unwrap();
        assert_eq!(table.counts(), (4, 2));

        let mut r = obj(json!({"id": 7, "product_id": 1}));
        assert!(joins.apply(&mut r));
        assert_eq!(r["product"], json!({"price": 11}));
        let row = joins.layout.row(&r);
        assert_eq!(row[3], dossier_connector::Value::Int(11));
        // Keys compare as text: 2 finds "2".
        let mut r = obj(json!({"id": 8, "product_id": 2}));
        assert!(joins.apply(&mut r));
        assert_eq!(r["product"]["price"], 20);
        for missing in [
            json!({"id": 9, "product_id": 3}),
            json!({"id": 9, "product_id": null}),
            json!({"id": 9, "product": "x"}),
        ] {
            let mut r = obj(missing);
            assert!(!joins.apply(&mut r));
            assert_eq!(r["product"], Json::Null);
            let row = joins.layout.row(&r);
            assert_eq!(row[3], dossier_connector::Value::Null);
        }
    }

    #[test]
    fn a_lookup_holds_at_most_max_rows() {
        let l = lookup(
            json!({"stream": "products", "on": "product_id", "fields": ["price"], "max_rows": 2}),
        );
        let mut joins = Joins::resolve(&purchases(), vec![(l, products())]).unwrap();
        assert!(
            joins.layout.contains("products.price"),
            "{:?}",
            joins.layout.names()
        );
        let t = &mut joins.joins[0];
        t.insert(&obj(json!({"id": 1}))).unwrap();
        t.insert(&obj(json!({"id": 2}))).unwrap();
        assert_eq!(t.insert(&obj(json!({"id": 3}))), Err(2));
    }

    #[test]
    fn bad_lookups_are_refused_naming_the_stream() {
        let err = |base: SourceStream, l: Json, other: SourceStream| {
            Joins::resolve(&base, vec![(lookup(l), other)]).unwrap_err()
        };
        let e = err(
            purchases(),
            json!({"stream": "purchases", "on": "product_id", "fields": ["id"]}),
            purchases(),
        );
        assert!(
            e.contains("`lookups[0]` (\"purchases\"): a stream cannot look itself up"),
            "{e}"
        );
        let e = err(
            purchases(),
            json!({"stream": "products", "on": "product", "fields": ["price"]}),
            products(),
        );
        assert!(
            e.contains("`on` \"product\" is not a field of \"purchases\""),
            "{e}"
        );
        let e = err(
            purchases(),
            json!({"stream": "products", "on": "product_id", "fields": ["prise"]}),
            products(),
        );
        assert!(e.contains("`fields` names \"prise\", which is not a field of \"products\"; its fields are: created_at, id, make, price"), "{e}");
        let e = err(
            purchases(),
            json!({"stream": "products", "on": "product_id", "key": "sku", "fields": ["price"]}),
            products(),
        );
        assert!(
            e.contains("`key` \"sku\" is not a field of \"products\""),
            "{e}"
        );
        let e = err(
            purchases(),
            json!({"stream": "products", "on": "product_id", "fields": ["price"], "into": "id"}),
            products(),
        );
        assert!(
            e.contains("`into` \"id\" is a field of \"purchases\" already"),
            "{e}"
        );
        let mut keyless = products();
        keyless.primary_key.clear();
        let e = err(
            purchases(),
            json!({"stream": "products", "on": "product_id", "fields": ["price"]}),
            keyless,
        );
        assert!(
            e.contains("\"products\" has no primary key; set `key`"),
            "{e}"
        );
    }
}
