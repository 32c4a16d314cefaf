//! The source's settings and each stream's, checked when they are parsed.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

/// Default longest line a source may write: records of APIs that embed files run to megabytes.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// Largest `max_line_bytes`.
pub const MAX_MAX_LINE_BYTES: usize = 1024 * 1024 * 1024;
/// Default seconds a source may stay silent before it is taken as hung.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 600;
/// Default and largest records held while waiting for the STATE that covers them.
pub const DEFAULT_MAX_RECORDS_PER_STATE: usize = 100_000;
pub const MAX_MAX_RECORDS_PER_STATE: usize = 10_000_000;
/// Default most records a lookup stream may have: it is held in memory.
pub const DEFAULT_LOOKUP_MAX_ROWS: usize = 100_000;
/// Largest `max_rows` of a lookup.
pub const MAX_LOOKUP_MAX_ROWS: usize = 1_000_000;

/// Variables of Dossier's environment the child gets as they are: what a program needs to run,
/// read text, find certificates and go through a proxy. Nothing else leaks to it (tokens of
/// other sources, Dossier's own settings).
pub const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// An Airbyte-protocol source run as a child process.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The program and its arguments, e.g. `["source-faker"]` (a pip-installed Airbyte source)
    /// or `["/opt/sources/my-source", "--verbose"]`; the protocol's command (`spec`, `check`,
    /// `discover`, `read`) and its options are appended. A bare name is looked up in `PATH`.
    pub command: Vec<String>,
    /// The source's own config, as its spec describes it, e.g. `{ count = 1000, seed = 1 }`.
    /// Write secrets as `${VAR}`: they are read from the environment, handed to the source in
    /// a file only it and Dossier can read, deleted after each run, and never logged.
    #[serde(default = "empty_object")]
    #[schemars(with = "BTreeMap<String, Json>")]
    pub config: Json,
    /// Variables set in the source's environment, besides `PATH`, `HOME`, `LANG`, `LC_*`,
    /// `TZ`, certificate and proxy settings, which it gets from Dossier's. Values may be
    /// `${VAR}`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Seconds the source may write nothing before it is taken as hung, stopped and the run
    /// failed; default 600.
    pub idle_timeout_secs: Option<u64>,
    /// Longest line (one message) the source may write, in bytes; default 64 MiB. A longer
    /// line fails the run rather than filling memory.
    pub max_line_bytes: Option<usize>,
    /// Most records held while waiting for the STATE message that covers them; default
    /// 100000. Records commit only together with the state after them, so a source that
    /// checkpoints more rarely fails the run with an error saying so.
    pub max_records_per_state: Option<usize>,
    /// Singer taps only: the option that hands the tap its catalog, `catalog` (`--catalog`,
    /// the default) or `properties` (`--properties`, which the oldest singer-python taps
    /// read instead).
    pub catalog_option: Option<CatalogOption>,
}

/// The option a Singer tap reads its catalog from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatalogOption {
    /// `--catalog`.
    Catalog,
    /// `--properties`.
    Properties,
}

impl CatalogOption {
    pub fn flag(self) -> &'static str {
        match self {
            CatalogOption::Catalog => "--catalog",
            CatalogOption::Properties => "--properties",
        }
    }
}

fn empty_object() -> Json {
    Json::Object(Default::default())
}

impl Config {
    /// A config running `command` with the source config `config`.
    pub fn new(command: &[&str], config: Json) -> Self {
        Self {
            command: command.iter().map(|s| s.to_string()).collect(),
            config,
            env: BTreeMap::new(),
            idle_timeout_secs: None,
            max_line_bytes: None,
            max_records_per_state: None,
            catalog_option: None,
        }
    }

    /// Checks what needs no child.
    pub fn validate(&self) -> Result<(), String> {
        match self.command.first() {
            None => return Err("`command` is empty; name the source's program".into()),
            Some(p) if p.trim().is_empty() => {
                return Err("`command` starts with an empty program name".into());
            }
            Some(_) => {}
        }
        if !self.config.is_object() {
            return Err("`config` must be a table (the source's own settings)".into());
        }
        if self.idle_timeout_secs == Some(0) {
            return Err("`idle_timeout_secs` must be at least 1".into());
        }
        if let Some(n) = self.max_line_bytes
            && !(1024..=MAX_MAX_LINE_BYTES).contains(&n)
        {
            return Err(format!(
                "`max_line_bytes` must be between 1024 and {MAX_MAX_LINE_BYTES} (got {n})"
            ));
        }
        if let Some(n) = self.max_records_per_state
            && !(1..=MAX_MAX_RECORDS_PER_STATE).contains(&n)
        {
            return Err(format!(
                "`max_records_per_state` must be between 1 and {MAX_MAX_RECORDS_PER_STATE} (got {n})"
            ));
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(format!("`env` has an invalid variable name {key:?}"));
            }
        }
        Ok(())
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS))
    }

    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes.unwrap_or(DEFAULT_MAX_LINE_BYTES)
    }

    pub fn max_records_per_state(&self) -> usize {
        self.max_records_per_state
            .unwrap_or(DEFAULT_MAX_RECORDS_PER_STATE)
    }
}

/// How a stream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// From the stored state on, with the source's cursor.
    Incremental,
    /// Everything on every run; records that disappeared are marked deleted.
    FullRefresh,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Incremental => "incremental",
            SyncMode::FullRefresh => "full_refresh",
        }
    }
}

/// One stream of an Airbyte source.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    /// The source's name for the stream, as `dossier discover` lists it; default the Dossier
    /// stream's name.
    pub stream: Option<String>,
    /// The stream's namespace, for sources whose streams have one (a database schema).
    pub namespace: Option<String>,
    /// `incremental` or `full_refresh`; default incremental when the source supports it for
    /// this stream and a cursor is known, else full refresh.
    pub sync_mode: Option<SyncMode>,
    /// The cursor field for incremental reads, for streams whose source lets the user choose
    /// it (a dotted path for a nested field); default the source's.
    pub cursor_field: Option<String>,
    /// The primary key fields, for streams whose source defines none (dotted paths for nested
    /// fields); default the source's.
    pub primary_key: Option<Vec<String>>,
    /// Records per batch for this stream, instead of the source's `batch_size`, 1 to 100000.
    /// A batch ends at the first STATE message after this many records.
    pub batch_size: Option<usize>,
    /// Fields of other streams of the source joined into each record by key, e.g. a
    /// purchase's product: `[{ stream = "products", on = "product_id", fields = ["price"],
    /// into = "product" }]` makes `product.price` a field of this stream.
    #[serde(default)]
    pub lookups: Vec<Lookup>,
}

/// Another stream of the same source, read in full before each read of the stream that uses
/// it and held in memory, whose fields are joined into each of that stream's records: the
/// lookup record whose `key` equals the record's `on` field gives its `fields`, in an object
/// named `into`. A record with no match (its `on` field null, or no lookup record with that
/// key) keeps all its fields and gets none of the lookup's: they read as null.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    /// The source's stream to look fields up in, as `dossier discover` lists it (it need not
    /// be a Dossier stream). It is read in full (full refresh, whatever its state) before every
    /// read of the stream that uses it.
    pub stream: String,
    /// The lookup stream's namespace, for Airbyte sources whose streams have one.
    pub namespace: Option<String>,
    /// The lookup stream's field that identifies its records (a dotted path for a nested
    /// field); default its primary key, when that is one field. Keys compare as text (`7` and
    /// `"7"` match); when two records have the same key, the later one is kept.
    pub key: Option<String>,
    /// The field of this stream that holds the lookup stream's key (a dotted path for a
    /// nested field), e.g. `product_id`.
    pub on: String,
    /// The lookup stream's fields (its top-level properties) carried into each record, e.g.
    /// `["price", "make"]`; an object is carried whole, its properties as dotted fields.
    pub fields: Vec<String>,
    /// The name of the object the fields are carried in (`product` makes `product.price`);
    /// default the lookup stream's name. It must not be a field of this stream already.
    pub into: Option<String>,
    /// Most records the lookup stream may have, 1 to 1000000; default 100000. The lookup is
    /// held in memory: a stream with more records fails the read with an error naming it.
    pub max_rows: Option<usize>,
}

impl Lookup {
    /// The name of the object the fields are carried in.
    pub fn into_field(&self) -> &str {
        self.into.as_deref().unwrap_or(&self.stream)
    }

    pub fn max_rows(&self) -> usize {
        self.max_rows.unwrap_or(DEFAULT_LOOKUP_MAX_ROWS)
    }

    /// Checks what needs no child.
    fn validate(&self) -> Result<(), String> {
        if self.stream.is_empty() {
            return Err("`stream` is empty; name the source's stream to look fields up in".into());
        }
        if self.on.is_empty() {
            return Err("`on` is empty; name this stream's field that holds the key".into());
        }
        if self.key.as_deref().is_some_and(str::is_empty) {
            return Err("`key` is empty; name a field or remove it".into());
        }
        if self.fields.is_empty() {
            return Err("`fields` is empty; list the fields to carry".into());
        }
        for (i, f) in self.fields.iter().enumerate() {
            if f.is_empty() || f.contains('.') {
                return Err(format!(
                    "`fields` names {f:?}: name top-level fields of {:?} (an object is carried whole, with its properties)",
                    self.stream
                ));
            }
            if self.fields[..i].contains(f) {
                return Err(format!("`fields` names {f:?} twice"));
            }
        }
        let into = self.into_field();
        if into.is_empty() || into.contains('.') {
            return Err(format!(
                "`into` is {into:?}: name one field (no dots) to carry the fields in"
            ));
        }
        if let Some(n) = self.max_rows
            && !(1..=MAX_LOOKUP_MAX_ROWS).contains(&n)
        {
            return Err(format!(
                "`max_rows` must be between 1 and {MAX_LOOKUP_MAX_ROWS} (got {n})"
            ));
        }
        Ok(())
    }
}

impl Stream {
    /// Checks what needs no child.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(n) = self.batch_size {
            dossier_connector::check_batch_size(n)?;
        }
        if self.stream.as_deref().is_some_and(str::is_empty) {
            return Err("`stream` is empty; name the source's stream or remove it".into());
        }
        if self.cursor_field.as_deref().is_some_and(str::is_empty) {
            return Err("`cursor_field` is empty; name a field or remove it".into());
        }
        if let Some(pk) = &self.primary_key
            && (pk.is_empty() || pk.iter().any(String::is_empty))
        {
            return Err("`primary_key` must list one or more field names".into());
        }
        for (i, l) in self.lookups.iter().enumerate() {
            l.validate()
                .map_err(|e| format!("`lookups[{i}]` ({:?}): {e}", l.stream))?;
            if let Some(other) = self.lookups[..i]
                .iter()
                .find(|o| o.into_field() == l.into_field())
            {
                return Err(format!(
                    "`lookups[{i}]` ({:?}) carries its fields into {:?}, as the lookup of {:?} does: set `into` to tell them apart",
                    l.stream,
                    l.into_field(),
                    other.stream
                ));
            }
        }
        Ok(())
    }

    /// The source's name of the stream the Dossier stream `name` reads.
    pub fn source_stream<'a>(&'a self, name: &'a str) -> &'a str {
        self.stream.as_deref().unwrap_or(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_are_checked() {
        let c = |v: Json| serde_json::from_value::<Config>(v).map_err(|e| e.to_string());
        assert!(c(json!({"command": ["x"]})).unwrap().validate().is_ok());
        let e = c(json!({"command": []})).unwrap().validate().unwrap_err();
        assert!(e.contains("`command` is empty"), "{e}");
        let e = c(json!({"command": ["x"], "config": 3}))
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.contains("`config` must be a table"), "{e}");
        let e = c(json!({"command": ["x"], "max_line_bytes": 10}))
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.contains("max_line_bytes"), "{e}");
        let e = c(json!({"command": ["x"], "comand": ["y"]})).unwrap_err();
        assert!(e.contains("unknown field `comand`"), "{e}");
        let s = |v: Json| serde_json::from_value::<Stream>(v).map_err(|e| e.to_string());
        let st = s(json!({"sync_mode": "full_refresh", "primary_key": ["id"]})).unwrap();
        assert_eq!(st.sync_mode, Some(SyncMode::FullRefresh));
        assert_eq!(st.source_stream("users"), "users");
        assert!(s(json!({"sync_mode": "sometimes"})).is_err());
        assert!(s(json!({"primary_key": []})).unwrap().validate().is_err());
        assert!(s(json!({"batch_size": 0})).unwrap().validate().is_err());
        assert!(s(json!({"cursr": "x"})).is_err());
    }
}
