//! Connection and stream settings, checked when they are parsed.

use std::time::Duration;

use mongodb::bson::{Bson, Document};
use schemars::JsonSchema;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value as Json;

/// Largest `sample_size`.
pub const MAX_SAMPLE_SIZE: usize = 100_000;

const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
const DEFAULT_SAMPLE_SIZE: usize = 1000;

/// Operators that run JavaScript on the server: a filter may not use them.
const REFUSED_OPERATORS: &[&str] = &["$where", "$function", "$accumulator"];

/// Connection settings of a MongoDB source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Connection string, `mongodb://host:27017` or `mongodb+srv://cluster.example.net`, with
    /// options (`?tls=true&authSource=admin`). It may hold credentials: write
    /// `${MONGODB_URI}` rather than the string itself. It is never logged nor shown.
    #[schemars(with = "String")]
    pub uri: SecretString,
    /// The database whose collections are read.
    pub database: String,
    /// Seconds to wait for the server (connecting, selecting a server) before giving up;
    /// default 10.
    pub connect_timeout_secs: Option<u64>,
    /// Documents `discover` and `describe` read to infer a collection's fields (half the
    /// oldest, half the newest by `_id`); default 1000, at most 100000.
    pub sample_size: Option<usize>,
}

impl Config {
    /// A config connecting to `uri`, reading `database`.
    pub fn new(uri: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            uri: SecretString::from(uri.into()),
            database: database.into(),
            connect_timeout_secs: None,
            sample_size: None,
        }
    }

    /// Checks what needs no server.
    pub fn validate(&self) -> Result<(), String> {
        if self.database.trim().is_empty() {
            return Err("`database` is empty; name the database to read".into());
        }
        if self
            .database
            .contains(['/', '\\', '.', ' ', '"', '$', '\0'])
        {
            return Err(format!(
                "`database` {:?} is not a valid MongoDB database name",
                self.database
            ));
        }
        if self.connect_timeout_secs == Some(0) {
            return Err("`connect_timeout_secs` must be at least 1".into());
        }
        if let Some(n) = self.sample_size
            && !(1..=MAX_SAMPLE_SIZE).contains(&n)
        {
            return Err(format!(
                "`sample_size` must be between 1 and {MAX_SAMPLE_SIZE} (got {n})"
            ));
        }
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(
            self.connect_timeout_secs
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS),
        )
    }

    pub fn sample_size(&self) -> usize {
        self.sample_size.unwrap_or(DEFAULT_SAMPLE_SIZE)
    }
}

/// Which fields a stream reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// Only these field paths (plus `_id`, the cursor and the unwound array).
    Include(Vec<String>),
    /// Every field but these.
    Exclude(Vec<String>),
}

/// One stream of a MongoDB source: a collection, optionally filtered and projected.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
// Unknown fields are refused by `StreamSettings` (`deny_unknown_fields`), which this is parsed
// from.
#[serde(try_from = "StreamSettings")]
pub struct Stream {
    /// The collection to read.
    pub collection: String,
    /// Only the documents matching this query document.
    #[schemars(with = "Option<Json>")]
    pub filter: Option<Document>,
    /// Which fields to read.
    #[schemars(with = "Option<Json>")]
    pub projection: Option<Projection>,
    /// The field to read incrementally by.
    pub cursor: Option<String>,
    /// An array field whose elements are read as one record each.
    pub unwind: Option<String>,
    /// Documents per batch.
    pub batch_size: Option<usize>,
}

/// One stream of a MongoDB source: a collection, optionally filtered and projected.
// The unchecked form of `Stream`, as written in config; its docs make the JSON schema.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Stream")]
struct StreamSettings {
    /// The collection to read.
    collection: String,
    /// Only the documents matching this query document: a table (`{ status = "active" }`) or
    /// a JSON string, in MongoDB extended JSON for other types
    /// (`'{"created_at": {"$gte": {"$date": "2024-01-01T00:00:00Z"}}}'`). Operators that run
    /// JavaScript (`$where`, `$function`, `$accumulator`) are refused.
    filter: Option<Json>,
    /// Which fields to read: a list of field paths to read (`["email", "address.city"]`;
    /// `_id`, the cursor and `unwind` are always read), or a table of paths to leave out
    /// (`{ notes = 0 }`). Default: every field.
    projection: Option<Json>,
    /// The field to read incrementally by, in `(cursor, _id)` order: a last-update date
    /// (`updated_at`), or `_id` for ObjectIds of inserted-only documents. It must hold one type
    /// in every document. Without a cursor the collection is read whole on every run and
    /// documents that disappeared are detected. Documents whose cursor is missing or null are
    /// read only by a full read.
    cursor: Option<String>,
    /// An array field whose elements become one record each (an embedded `orders` array →
    /// one session per order): each record has the document's fields, the element under the
    /// array's name (`orders.total`, or `orders` for an element that is not a document) and
    /// its position as `orders.$index`. Documents without elements give no record.
    unwind: Option<String>,
    /// Documents per batch (and per store transaction) for this stream, instead of the
    /// source's `batch_size`; 1 to 100000. Also the server's batch size.
    batch_size: Option<usize>,
}

impl TryFrom<StreamSettings> for Stream {
    type Error = String;

    fn try_from(s: StreamSettings) -> Result<Self, String> {
        if s.collection.is_empty() {
            return Err("`collection` is empty; name the collection to read".into());
        }
        if s.collection.starts_with("system.") || s.collection.contains(['$', '\0']) {
            return Err(format!(
                "`collection` {:?} is not a collection that can be read",
                s.collection
            ));
        }
        if let Some(c) = &s.cursor {
            check_path("cursor", c)?;
        }
        if let Some(u) = &s.unwind {
            check_path("unwind", u)?;
            if u == "_id" || s.cursor.as_ref() == Some(u) {
                return Err(format!(
                    "`unwind` {u:?} must be an array field other than `_id` and the cursor"
                ));
            }
        }
        if let Some(n) = s.batch_size {
            dossier_connector::check_batch_size(n)?;
        }
        let filter = s.filter.as_ref().map(parse_filter).transpose()?;
        let projection = s
            .projection
            .as_ref()
            .map(|p| parse_projection(p, s.cursor.as_deref(), s.unwind.as_deref()))
            .transpose()?;
        Ok(Stream {
            collection: s.collection,
            filter,
            projection,
            cursor: s.cursor,
            unwind: s.unwind,
            batch_size: s.batch_size,
        })
    }
}

impl Stream {
    /// A stream reading a whole collection.
    pub fn collection(name: impl Into<String>) -> Self {
        Self {
            collection: name.into(),
            filter: None,
            projection: None,
            cursor: None,
            unwind: None,
            batch_size: None,
        }
    }

    /// Sets the cursor field.
    pub fn with_cursor(mut self, field: impl Into<String>) -> Self {
        self.cursor = Some(field.into());
        self
    }

    /// Sets the array field to unwind.
    pub fn with_unwind(mut self, field: impl Into<String>) -> Self {
        self.unwind = Some(field.into());
        self
    }

    /// Sets the batch size.
    pub fn with_batch_size(mut self, documents: usize) -> Self {
        self.batch_size = Some(documents);
        self
    }

    /// Sets the filter, checked as it would be in config.
    pub fn with_filter(mut self, filter: Json) -> Result<Self, String> {
        self.filter = Some(parse_filter(&filter)?);
        Ok(self)
    }

    /// The projection document sent to the server, `None` for every field.
    pub(crate) fn projection_doc(&self) -> Option<Document> {
        let p = self.projection.as_ref()?;
        let mut doc = Document::new();
        match p {
            Projection::Include(paths) => {
                let always = ["_id"]
                    .into_iter()
                    .chain(self.cursor.as_deref())
                    .chain(self.unwind.as_deref());
                for path in paths.iter().map(String::as_str).chain(always) {
                    // A parent already included covers its children.
                    if !doc.keys().any(|k| covers(k, path)) {
                        let children: Vec<String> =
                            doc.keys().filter(|k| covers(path, k)).cloned().collect();
                        for k in children {
                            doc.remove(k);
                        }
                        doc.insert(path, 1);
                    }
                }
            }
            Projection::Exclude(paths) => {
                for path in paths {
                    doc.insert(path, 0);
                }
            }
        }
        Some(doc)
    }
}

/// Whether `parent` is `path` or one of its ancestors.
pub(crate) fn covers(parent: &str, path: &str) -> bool {
    path == parent
        || path
            .strip_prefix(parent)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn check_path(what: &str, path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err(format!("`{what}` is empty; name a field or remove it"));
    }
    if path.split('.').any(|p| p.is_empty() || p.starts_with('$')) || path.contains('\0') {
        return Err(format!(
            "`{what}` {path:?} is not a field path (names separated by `.`, none empty or \
             starting with `$`)"
        ));
    }
    Ok(())
}

/// A filter as written in config (a table, or a JSON string) as a query document.
fn parse_filter(filter: &Json) -> Result<Document, String> {
    let json = match filter {
        Json::String(s) => {
            serde_json::from_str(s).map_err(|e| format!("`filter` is not valid JSON: {e}"))?
        }
        other => other.clone(),
    };
    if !json.is_object() {
        return Err("`filter` must be a query document, e.g. { status = \"active\" }".into());
    }
    let doc = match Bson::try_from(json) {
        Ok(Bson::Document(d)) => d,
        Ok(_) => {
            return Err("`filter` must be a query document, not an extended JSON value".into());
        }
        Err(e) => return Err(format!("`filter` is not valid extended JSON: {e}")),
    };
    refuse_operators(&Bson::Document(doc.clone()))?;
    Ok(doc)
}

fn refuse_operators(b: &Bson) -> Result<(), String> {
    match b {
        Bson::Document(d) => {
            for (k, v) in d {
                if REFUSED_OPERATORS.contains(&k.as_str()) {
                    return Err(format!(
                        "`filter` uses {k}, which runs JavaScript on the server; write the \
                         condition with query operators"
                    ));
                }
                refuse_operators(v)?;
            }
            Ok(())
        }
        Bson::Array(a) => a.iter().try_for_each(refuse_operators),
        _ => Ok(()),
    }
}

fn parse_projection(
    p: &Json,
    cursor: Option<&str>,
    unwind: Option<&str>,
) -> Result<Projection, String> {
    let bad = || {
        "`projection` must be a list of field paths to read (`[\"email\", \"address.city\"]`) \
         or a table of field paths to leave out (`{ notes = 0 }`)"
            .to_string()
    };
    let projection = match p {
        Json::Array(items) => {
            let paths = items
                .iter()
                .map(|i| i.as_str().map(str::to_string).ok_or_else(bad))
                .collect::<Result<Vec<_>, _>>()?;
            if paths.is_empty() {
                return Err("`projection` is empty; list the fields to read, or remove it".into());
            }
            Projection::Include(paths)
        }
        Json::Object(map) => {
            let mut include = vec![];
            let mut exclude = vec![];
            for (path, v) in map {
                match v {
                    Json::Bool(true) => include.push(path.clone()),
                    Json::Bool(false) => exclude.push(path.clone()),
                    Json::Number(n) if n.as_f64() == Some(1.0) => include.push(path.clone()),
                    Json::Number(n) if n.as_f64() == Some(0.0) => exclude.push(path.clone()),
                    _ => return Err(bad()),
                }
            }
            match (include.is_empty(), exclude.is_empty()) {
                (false, true) => Projection::Include(include),
                (true, false) => Projection::Exclude(exclude),
                (true, true) => {
                    return Err(
                        "`projection` is empty; list the fields to read, or remove it".into(),
                    );
                }
                (false, false) => {
                    return Err("`projection` either lists fields to read (1) or fields to \
                                leave out (0), not both"
                        .into());
                }
            }
        }
        _ => return Err(bad()),
    };
    let (Projection::Include(paths) | Projection::Exclude(paths)) = &projection;
    for path in paths {
        check_path("projection", path)?;
    }
    if let Projection::Exclude(paths) = &projection {
        for (what, field) in [
            ("_id", Some("_id")),
            ("the cursor", cursor),
            ("unwind", unwind),
        ] {
            if let Some(field) = field
                && let Some(p) = paths.iter().find(|p| covers(p, field))
            {
                return Err(format!(
                    "`projection` leaves out {p:?}, but {what} ({field:?}) is always read"
                ));
            }
        }
    }
    Ok(projection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stream(v: Json) -> Result<Stream, String> {
        serde_json::from_value::<Stream>(v).map_err(|e| e.to_string())
    }

    #[test]
    fn filters_are_extended_json_documents() {
        let s = stream(json!({"collection": "c", "filter": {"status": "active"}})).unwrap();
        assert_eq!(s.filter.unwrap(), mongodb::bson::doc! {"status": "active"});
        let s = stream(json!({
            "collection": "c",
            "filter": r#"{"created_at": {"$gte": {"$date": "2024-01-01T00:00:00Z"}}}"#
        }))
        .unwrap();
        let f = s.filter.unwrap();
        let gte = f.get_document("created_at").unwrap().get("$gte").unwrap();
        assert!(matches!(gte, Bson::DateTime(_)), "{gte:?}");
        for (bad, want) in [
            (json!("{not json"), "not valid JSON"),
            (json!([1]), "query document"),
            (json!({"$where": "this.a > 1"}), "runs JavaScript"),
            (
                json!({"$or": [{"a": 1}, {"$expr": {"$function": {}}}]}),
                "runs JavaScript",
            ),
            (json!({"a": {"$date": "yesterday"}}), "extended JSON"),
        ] {
            let e = stream(json!({"collection": "c", "filter": bad})).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn projections_always_read_the_keys() {
        let s = stream(json!({
            "collection": "c", "cursor": "updated_at", "unwind": "orders",
            "projection": ["email", "address.city", "address"]
        }))
        .unwrap();
        let doc = s.projection_doc().unwrap();
        let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
        assert_eq!(keys, ["email", "address", "_id", "updated_at", "orders"]);
        let s = stream(json!({"collection": "c", "projection": {"notes": 0}})).unwrap();
        assert_eq!(
            s.projection,
            Some(Projection::Exclude(vec!["notes".into()]))
        );
        for (p, want) in [
            (json!({"_id": 0}), "always read"),
            (json!({"updated": 0}), "always read"),
            (json!({"a": 1, "b": 0}), "not both"),
            (json!([]), "empty"),
            (json!({"a": 2}), "list of field paths"),
            (json!(["$a"]), "not a field path"),
        ] {
            let e = stream(json!({"collection": "c", "cursor": "updated.at", "projection": p}))
                .unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(stream(json!({"collection": ""})).is_err());
        assert!(stream(json!({"collection": "c", "batch_size": 0})).is_err());
        assert!(stream(json!({"collection": "c", "cursor": "a..b"})).is_err());
        assert!(stream(json!({"collection": "c", "unwind": "_id"})).is_err());
        let e = stream(json!({"collection": "c", "cursr": "x"})).unwrap_err();
        assert!(e.contains("unknown field `cursr`"), "{e}");
        assert!(Config::new("mongodb://h", "shop").validate().is_ok());
        assert!(Config::new("mongodb://h", "a.b").validate().is_err());
        assert!(Config::new("mongodb://h", "").validate().is_err());
    }
}
