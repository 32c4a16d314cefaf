//! Fields inferred from a sample of documents: paths, observed types and how often.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use dossier_connector::{FieldInfo, Value};
use mongodb::bson::raw::{RawBsonRef, RawDocument};

use crate::config::covers;
use crate::convert::{self, type_name, unsupported};

/// An object with more distinct keys than this across the sample is a map (keys are data,
/// e.g. ids): it is read whole, its keys are not listed as fields.
pub const MAX_OBJECT_KEYS: usize = 64;
/// Most field paths listed for one stream; the least frequent are left out beyond it (they
/// stay readable whole through their parent).
pub const MAX_FIELDS: usize = 500;

/// The suffix of the field holding an unwound element's position in its array.
pub const INDEX_SUFFIX: &str = ".$index";

#[derive(Debug, Default)]
struct PathStats {
    /// Records in which the path has a value (null included).
    present: usize,
    /// Values by type name.
    types: BTreeMap<&'static str, usize>,
    /// Distinct child keys of object values, up to one more than [`MAX_OBJECT_KEYS`].
    keys: HashSet<String>,
}

/// What a sample of records holds.
#[derive(Debug, Default)]
pub struct Sample {
    records: usize,
    paths: HashMap<String, PathStats>,
}

impl Sample {
    pub fn records(&self) -> usize {
        self.records
    }

    /// Adds one document: one record, or one per element of `unwind`.
    pub fn add(&mut self, doc: &RawDocument, unwind: Option<&str>) {
        let Some(path) = unwind else {
            self.records += 1;
            let mut seen = HashSet::new();
            self.walk(doc, "", None, &mut seen);
            return;
        };
        let Some(RawBsonRef::Array(elements)) = convert::lookup(doc, path) else {
            return;
        };
        for (i, element) in elements.into_iter().flatten().enumerate() {
            self.records += 1;
            let mut seen = HashSet::new();
            self.walk(doc, "", Some(path), &mut seen);
            self.value(path, element, &mut seen);
            self.value(
                &format!("{path}{INDEX_SUFFIX}"),
                RawBsonRef::Int64(i as i64),
                &mut seen,
            );
        }
    }

    fn walk(
        &mut self,
        doc: &RawDocument,
        prefix: &str,
        skip: Option<&str>,
        seen: &mut HashSet<String>,
    ) {
        for (key, value) in doc.into_iter().flatten() {
            let path = if prefix.is_empty() {
                key.to_string()
            } else {
                format!("{prefix}.{key}")
            };
            if skip == Some(path.as_str()) {
                continue;
            }
            self.value(&path, value, seen);
        }
    }

    fn value(&mut self, path: &str, value: RawBsonRef<'_>, seen: &mut HashSet<String>) {
        let stats = self.paths.entry(path.to_string()).or_default();
        if seen.insert(path.to_string()) {
            stats.present += 1;
        }
        *stats.types.entry(type_name(value)).or_default() += 1;
        if let RawBsonRef::Document(d) = value {
            for (k, _) in d.into_iter().flatten() {
                if stats.keys.len() > MAX_OBJECT_KEYS {
                    break;
                }
                stats.keys.insert(k.to_string());
            }
            self.walk(d, path, None, seen);
        }
    }

    /// The listed fields: `_id` first, then by path; maps and their keys folded into the map's
    /// field; at most [`MAX_FIELDS`], the most frequent kept. `always` are listed even when
    /// the sample has no value for them (a projection's fields, the cursor).
    pub fn fields(&self, always: &[String]) -> Vec<FieldInfo> {
        let maps: Vec<&str> = self
            .paths
            .iter()
            .filter(|(_, s)| s.keys.len() > MAX_OBJECT_KEYS)
            .map(|(p, _)| p.as_str())
            .collect();
        let mut kept: Vec<(&str, &PathStats)> = self
            .paths
            .iter()
            .filter(|(p, _)| !maps.iter().any(|m| *m != p.as_str() && covers(m, p)))
            .map(|(p, s)| (p.as_str(), s))
            .collect();
        if kept.len() > MAX_FIELDS {
            kept.sort_by(|a, b| b.1.present.cmp(&a.1.present).then(a.0.cmp(b.0)));
            tracing::warn!(
                paths = kept.len(),
                listed = MAX_FIELDS,
                "the sampled documents have more field paths than are listed; the least \
                 frequent are readable whole through their parent"
            );
            kept.truncate(MAX_FIELDS);
        }
        let mut names: BTreeSet<&str> = kept.iter().map(|(p, _)| *p).collect();
        names.extend(always.iter().map(String::as_str));
        let mut out: Vec<FieldInfo> = names
            .into_iter()
            .map(|p| self.info(p, maps.contains(&p)))
            .collect();
        if let Some(i) = out.iter().position(|f| f.name == "_id") {
            let id = out.remove(i);
            out.insert(0, id);
        }
        out
    }

    fn info(&self, path: &str, map: bool) -> FieldInfo {
        let Some(stats) = self.paths.get(path) else {
            return FieldInfo {
                name: path.to_string(),
                source_type: format!("unknown (in none of {} sampled records)", self.records),
                unsupported: None,
            };
        };
        let mut types: Vec<(&str, usize)> = stats.types.iter().map(|(t, n)| (*t, *n)).collect();
        types.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut source_type = if types.len() == 1 {
            types[0].0.to_string()
        } else {
            types
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if map {
            source_type.push_str(&format!(
                " (a map: over {MAX_OBJECT_KEYS} distinct keys, read whole)"
            ));
        }
        if stats.present < self.records {
            source_type.push_str(&format!(
                " (in {} of {} sampled records)",
                stats.present, self.records
            ));
        }
        let unsupported = types.iter().find_map(|(t, n)| {
            unsupported(t).map(|why| {
                if types.len() == 1 {
                    why.to_string()
                } else {
                    format!("{n} of its sampled values are {t}: {why}")
                }
            })
        });
        FieldInfo {
            name: path.to_string(),
            source_type,
            unsupported,
        }
    }

    /// Types seen at `path`, most frequent first.
    pub fn types(&self, path: &str) -> Vec<&'static str> {
        let Some(stats) = self.paths.get(path) else {
            return vec![];
        };
        let mut types: Vec<(&'static str, usize)> =
            stats.types.iter().map(|(t, n)| (*t, *n)).collect();
        types.sort_by_key(|t| std::cmp::Reverse(t.1));
        types.into_iter().map(|(t, _)| t).collect()
    }

    /// Fields fit to be a cursor: dates and timestamps present in every sampled record
    /// (update times first), and `_id` when every one is an ObjectId.
    pub fn cursor_candidates(&self) -> Vec<String> {
        let mut dates: Vec<&str> = self
            .paths
            .iter()
            .filter(|(p, s)| {
                self.records > 0
                    && s.present == self.records
                    && !p.ends_with(INDEX_SUFFIX)
                    && (s.types.keys().all(|t| *t == "date")
                        || s.types.keys().all(|t| *t == "timestamp"))
            })
            .map(|(p, _)| p.as_str())
            .collect();
        let not_update_time = |p: &str| {
            let p = p.to_ascii_lowercase();
            !(p.contains("updat") || p.contains("modif") || p.contains("changed"))
        };
        dates.sort_by(|a, b| not_update_time(a).cmp(&not_update_time(b)).then(a.cmp(b)));
        let mut out: Vec<String> = dates.into_iter().map(str::to_string).collect();
        if self.types("_id") == ["objectId"] {
            out.push("_id".into());
        }
        out
    }
}

/// Where a record's values go: field path → position in the row.
#[derive(Debug, Clone)]
pub struct Layout {
    fields: Vec<String>,
    columns: HashMap<String, usize>,
    /// Paths with listed descendants: only these are walked into.
    parents: HashSet<String>,
}

impl Layout {
    pub fn new(fields: Vec<String>) -> Self {
        let columns = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i))
            .collect();
        let mut parents = HashSet::new();
        for f in &fields {
            let mut rest = f.as_str();
            while let Some((parent, _)) = rest.rsplit_once('.') {
                parents.insert(parent.to_string());
                rest = parent;
            }
        }
        Self {
            fields,
            columns,
            parents,
        }
    }

    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    pub fn column(&self, path: &str) -> Option<usize> {
        self.columns.get(path).copied()
    }

    /// The records of one document: one, or one per element of `unwind`.
    pub fn records(&self, doc: &RawDocument, unwind: Option<&str>) -> Vec<Vec<Value>> {
        let mut row = vec![Value::Null; self.fields.len()];
        let mut prefix = String::new();
        self.fill(doc, &mut prefix, unwind, &mut row);
        let Some(path) = unwind else {
            return vec![row];
        };
        let Some(RawBsonRef::Array(elements)) = convert::lookup(doc, path) else {
            return vec![];
        };
        let index = self.column(&format!("{path}{INDEX_SUFFIX}"));
        let mut out = vec![];
        for (i, element) in elements.into_iter().flatten().enumerate() {
            let mut record = row.clone();
            let mut prefix = path.to_string();
            self.set(&mut prefix, element, None, &mut record);
            if let Some(c) = index {
                record[c] = Value::Int(i as i64);
            }
            out.push(record);
        }
        out
    }

    fn fill(&self, doc: &RawDocument, prefix: &mut String, skip: Option<&str>, row: &mut [Value]) {
        for (key, value) in doc.into_iter().flatten() {
            let len = prefix.len();
            if len > 0 {
                prefix.push('.');
            }
            prefix.push_str(key);
            self.set(prefix, value, skip, row);
            prefix.truncate(len);
        }
    }

    fn set(&self, path: &mut String, value: RawBsonRef<'_>, skip: Option<&str>, row: &mut [Value]) {
        if skip == Some(path.as_str()) {
            return;
        }
        if let Some(c) = self.column(path) {
            row[c] = convert::to_value(value);
        }
        if let RawBsonRef::Document(d) = value
            && self.parents.contains(path.as_str())
        {
            self.fill(d, path, skip, row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::spec::BinarySubtype;
    use mongodb::bson::{Binary, RawDocumentBuf, doc, oid::ObjectId};
    use serde_json::json;

    fn raw(d: mongodb::bson::Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&d).unwrap()
    }

    #[test]
    fn infers_paths_types_and_frequencies() {
        let mut s = Sample::default();
        let now = mongodb::bson::DateTime::now();
        s.add(&raw(doc! {"_id": ObjectId::new(), "email": "a@x", "zip": 75001, "updated_at": now, "address": {"city": "Paris"}}), None);
        s.add(&raw(doc! {"_id": ObjectId::new(), "email": "b@x", "zip": "75002", "updated_at": now, "photo": Binary { subtype: BinarySubtype::Generic, bytes: vec![1] }}), None);
        let fields = s.fields(&["score".to_string()]);
        let by = |n: &str| fields.iter().find(|f| f.name == n).unwrap().clone();
        assert_eq!(fields[0].name, "_id");
        assert_eq!(by("email").source_type, "string");
        assert_eq!(by("zip").source_type, "int 1, string 1");
        assert!(by("zip").unsupported.is_none());
        assert_eq!(
            by("address.city").source_type,
            "string (in 1 of 2 sampled records)"
        );
        assert!(by("photo").unsupported.unwrap().contains("binary"));
        assert!(by("score").source_type.starts_with("unknown"));
        assert_eq!(s.cursor_candidates(), ["updated_at", "_id"]);
    }

    #[test]
    fn a_mapping_that_uses_an_unsupported_field_is_refused() {
        let mut s = Sample::default();
        let photo = Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![1],
        };
        s.add(&raw(doc! {"_id": 1, "email": "a@x", "photo": photo}), None);
        let mapping = |field: &str| -> dossier_core::mapping::MappingConfig {
            serde_json::from_value(json!({
                "target": "contact", "id": "_id", "data": {"x": field}
            }))
            .unwrap()
        };
        let fields = s.fields(&[]);
        assert!(mapping("email").compile("shop", "c", &fields).is_ok());
        let e = mapping("photo")
            .compile("shop", "c", &fields)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has type binData which cannot be mapped: binary data is not read"),
            "{e}"
        );
    }

    #[test]
    fn maps_are_read_whole() {
        let mut s = Sample::default();
        for i in 0..=MAX_OBJECT_KEYS {
            s.add(
                &raw(doc! {"_id": i as i32, "tiers": {format!("k{i}"): {"tier": "gold"}}}),
                None,
            );
        }
        let names: Vec<String> = s.fields(&[]).into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["_id", "tiers"]);
    }

    #[test]
    fn lays_out_records_and_unwinds_arrays() {
        let d = raw(doc! {
            "_id": 1, "name": "Ada", "address": {"city": "Paris", "zip": "75001"},
            "orders": [{"total": 10.5, "sku": "a"}, {"total": 3}]
        });
        let mut s = Sample::default();
        s.add(&d, Some("orders"));
        let names: Vec<String> = s.fields(&[]).into_iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "_id",
                "address",
                "address.city",
                "address.zip",
                "name",
                "orders",
                "orders.$index",
                "orders.sku",
                "orders.total"
            ]
        );
        let layout = Layout::new(names);
        let records = layout.records(&d, Some("orders"));
        assert_eq!(records.len(), 2);
        let get = |r: &Vec<Value>, f: &str| r[layout.column(f).unwrap()].clone();
        assert_eq!(
            get(&records[0], "address.city"),
            Value::Text("Paris".into())
        );
        assert_eq!(
            get(&records[0], "address"),
            Value::Json(json!({"city": "Paris", "zip": "75001"}))
        );
        assert_eq!(get(&records[0], "orders.total"), Value::Float(10.5));
        assert_eq!(get(&records[1], "orders.total"), Value::Int(3));
        assert_eq!(get(&records[1], "orders.sku"), Value::Null);
        assert_eq!(get(&records[1], "orders.$index"), Value::Int(1));
        assert_eq!(get(&records[1], "orders"), Value::Json(json!({"total": 3})));
        // Without `unwind` the array is kept whole.
        let layout = Layout::new(vec!["_id".into(), "orders".into()]);
        let records = layout.records(&d, None);
        assert_eq!(
            records[0][1],
            Value::Json(json!([{"total": 10.5, "sku": "a"}, {"total": 3}]))
        );
        assert!(
            layout
                .records(&raw(doc! {"_id": 2}), Some("orders"))
                .is_empty()
        );
    }
}
