//! `dossier.toml`: the store, the server, sources with their streams and mappings, and
//! aggregate rules.
//!
//! String values may reference environment variables as `${VAR}` (or `${VAR:-default}`
//! for an optional one); they are expanded when
//! the file is loaded and never shown again: the API and logs get the config as written,
//! with the reference, not the secret.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use dossier_connector::{Registry, StreamConfig};
use dossier_core::mapping::{FieldRef, Transform};
use dossier_core::{
    AggOp, AggregateRule, DataKey, IdentityPolicy, MappingConfig, Target, parse_duration_secs,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::SyncError;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where Dossier keeps contacts, sessions and sync state.
    pub store: StoreConfig,
    /// The GraphQL server.
    #[serde(default)]
    pub server: ServerConfig,
    /// The workspace (tenant) this config's sources and rules belong to.
    #[serde(default = "default_workspace")]
    pub workspace: String,
    /// Where customer data comes from.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Session data rolled up into contact data, e.g. `avg_basket = avg(order.total)`.
    #[serde(default)]
    pub aggregates: Vec<AggregateConfig>,
    /// Identity safety and survivorship: blocked values, the merge limit, source priority.
    #[serde(default)]
    pub identity: IdentityPolicy,
    /// How `serve` and `worker` schedule syncs.
    #[serde(default)]
    pub scheduler: SchedulerConfig,
}

/// The scheduler's settings (`[scheduler]`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How long a claimed source stays claimed without renewal, e.g. `30s`: after a worker
    /// dies, its sources wait this long before another worker resumes them.
    #[serde(default = "default_lease")]
    pub lease: String,
    /// How often due sources are looked for and cancels noticed, e.g. `1s`.
    #[serde(default = "default_poll")]
    pub poll: String,
    /// Sources one scheduler runs at once.
    #[serde(default = "default_parallel")]
    pub max_parallel: usize,
}

fn default_lease() -> String {
    "30s".into()
}
fn default_poll() -> String {
    "1s".into()
}
fn default_parallel() -> usize {
    4
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            lease: default_lease(),
            poll: default_poll(),
            max_parallel: default_parallel(),
        }
    }
}

fn default_workspace() -> String {
    "default".into()
}

/// The store location.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path/to/dossier.db` (embedded; relative to this file) or
    /// `postgres://user@host:5432/db`.
    pub url: String,
}

/// The GraphQL server settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Who may call: `keys` (every request sends `Authorization: Bearer <key>`; keys are made
    /// with `dossier keys create`) or `open` (no keys, every request is an admin of this
    /// config's workspace; refused unless `listen` is a loopback address).
    #[serde(default)]
    pub access: AccessMode,
    /// Largest `first` a client may ask for in one page.
    #[serde(default = "default_max_page")]
    pub max_page_size: usize,
    /// Let the `installConnector` mutation (admin keys only) install plugins from the plugin
    /// directory. Off by default: it lets an admin key load code into the server.
    /// `dossier connectors install` works either way.
    #[serde(default)]
    pub allow_plugin_install: bool,
    /// Deepest selection nesting a document may have.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Largest complexity (selected fields, weighted by nesting) a document may have.
    #[serde(default = "default_max_complexity")]
    pub max_complexity: usize,
    /// Most aliased fields a document may have.
    #[serde(default = "default_max_aliases")]
    pub max_aliases: usize,
    /// Most fields one operation may select at its root.
    #[serde(default = "default_max_root_fields")]
    pub max_root_fields: usize,
    /// Most tokens (names, punctuation, values, strings) a document may have; counted before
    /// it is parsed.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Deepest nesting of braces, brackets and parentheses a document may have (selections,
    /// arguments, lists and input objects alike; fragments expanded too), checked before it
    /// is parsed; at most 256.
    #[serde(default = "default_max_nesting")]
    pub max_nesting: usize,
    /// Most fields a document may select once its fragments are expanded (counted without
    /// expanding them).
    #[serde(default = "default_max_selections")]
    pub max_selections: usize,
    /// Largest request body, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Most buckets a dashboard answer may hold: the groups of a breakdown
    /// (`contactStats`), and the intervals, or intervals times groups, of a time series
    /// (`sessionStats`) or a segment's history. A larger answer is refused, saying to ask
    /// for fewer.
    #[serde(default = "default_max_buckets")]
    pub max_buckets: usize,
    /// How long one request may run before it is stopped, e.g. `"10s"`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
    /// Requests per second one key (or, with `access = "open"`, one client address) may
    /// send, sustained; 0 turns the limit off.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_second: u32,
    /// Requests one key may send at once above the sustained rate.
    #[serde(default = "default_rate_burst")]
    pub rate_limit_burst: u32,
    /// Whether the schema answers introspection (`__schema`, `__type`).
    #[serde(default = "default_true")]
    pub introspection: bool,
    /// A JSON file holding a list of GraphQL documents: when set, only these documents run
    /// (sent in full or as automatic-persisted-query hashes). Relative to this file.
    #[serde(default)]
    pub allow_list: Option<PathBuf>,
    /// Origins browsers may call from (`"*"` for any); empty: no CORS headers.
    #[serde(default)]
    pub cors_origins: Vec<String>,
}

/// Who may call the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessMode {
    /// Every request presents an API key.
    #[default]
    Keys,
    /// No keys: for local use on a loopback address.
    Open,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            access: AccessMode::default(),
            max_page_size: default_max_page(),
            allow_plugin_install: false,
            max_depth: default_max_depth(),
            max_complexity: default_max_complexity(),
            max_aliases: default_max_aliases(),
            max_root_fields: default_max_root_fields(),
            max_tokens: default_max_tokens(),
            max_nesting: default_max_nesting(),
            max_selections: default_max_selections(),
            max_body_bytes: default_max_body_bytes(),
            max_buckets: default_max_buckets(),
            request_timeout: default_request_timeout(),
            rate_limit_per_second: default_rate_limit(),
            rate_limit_burst: default_rate_burst(),
            introspection: true,
            allow_list: None,
            cors_origins: vec![],
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_max_page() -> usize {
    100
}

fn default_max_depth() -> usize {
    12
}

fn default_max_complexity() -> usize {
    5000
}

fn default_max_aliases() -> usize {
    30
}

fn default_max_root_fields() -> usize {
    10
}

fn default_max_tokens() -> usize {
    15_000
}

fn default_max_nesting() -> usize {
    128
}

fn default_max_selections() -> usize {
    10_000
}

fn default_max_body_bytes() -> usize {
    256 * 1024
}

fn default_max_buckets() -> usize {
    1000
}

fn default_request_timeout() -> String {
    "10s".into()
}

fn default_rate_limit() -> u32 {
    50
}

fn default_rate_burst() -> u32 {
    100
}

fn default_true() -> bool {
    true
}

/// One source: a connector, its connection config, and the streams to read.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The source's name (lowercase `[a-z0-9_-]`); part of every external id it produces.
    pub name: String,
    /// Which connector reads it (`sqlite`, ...); `dossier connectors` lists them.
    pub connector: String,
    /// Connection settings and secrets, as the connector's config schema describes.
    #[serde(default)]
    pub config: serde_json::Value,
    /// When to sync by itself: an interval such as `15m` or `1h`, or a cron expression such
    /// as `"0 3 * * *"` (minute hour day month weekday, optionally seconds first).
    pub schedule: Option<String>,
    /// The IANA time zone of a cron `schedule`, e.g. `Europe/Paris` (default UTC).
    pub timezone: Option<String>,
    /// The longest a run may take, e.g. `30m`; a run over it fails (its committed batches stay).
    pub timeout: Option<String>,
    /// How a run retries errors that may pass (network, throttling, a database restarting).
    #[serde(default)]
    pub retry: RetryConfig,
    /// Records per batch (a store transaction holds one or more, see `bulk_commit_rows`).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Rows a read writes per store transaction, over several batches (named for the bulk
    /// load, a stream's first read, where it matters most); a transaction also commits after
    /// 2 s, and whenever the next batch is not read yet. Fewer, larger commits write the
    /// store's index pages once per group of batches instead of once per batch. A crash rolls
    /// back to the last commit, where the next run resumes. `1` commits every batch.
    #[serde(default = "default_bulk_commit_rows")]
    pub bulk_commit_rows: u64,
    /// The largest share of a stream's records its mapping may reject in one run, between 0
    /// and 1 (default 0.1, 10%): a run whose stream rejects more fails, with the reasons, as a
    /// mapping that does not fit the data would otherwise sync nothing and say ok. The
    /// records rejected below it are counted and kept with their reason.
    #[serde(default = "default_max_rejected")]
    pub max_rejected: f64,
    /// The streams to read, each with its mapping. A new source may have none yet:
    /// `dossier discover NAME` lists what its connection offers; `sync` needs at least one.
    #[serde(default)]
    pub streams: Vec<StreamEntry>,
}

fn default_batch_size() -> usize {
    2000
}

fn default_bulk_commit_rows() -> u64 {
    50_000
}

fn default_max_rejected() -> f64 {
    0.1
}

/// Retries within a run: each retryable error waits (exponential backoff with jitter), then
/// the stream reads again from its last committed checkpoint.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries per run before it fails (0: fail at the first error).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// The first wait, e.g. `1s`; each next one doubles.
    #[serde(default = "default_initial")]
    pub initial: String,
    /// The longest wait, e.g. `1m`.
    #[serde(default = "default_max_wait")]
    pub max: String,
}

fn default_attempts() -> u32 {
    5
}
fn default_initial() -> String {
    "1s".into()
}
fn default_max_wait() -> String {
    "1m".into()
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            initial: default_initial(),
            max: default_max_wait(),
        }
    }
}

impl RetryConfig {
    /// The waits, checked: (first, longest).
    pub fn waits(&self) -> Result<(std::time::Duration, std::time::Duration), String> {
        let initial = parse_interval(&self.initial).map_err(|e| format!("retry.initial: {e}"))?;
        let max = parse_interval(&self.max).map_err(|e| format!("retry.max: {e}"))?;
        if max < initial {
            return Err(format!(
                "retry.max ({}) is shorter than retry.initial ({})",
                self.max, self.initial
            ));
        }
        Ok((initial, max))
    }
}

impl SourceConfig {
    /// Whether `rejected` of `read` records is more than the source lets a stream reject.
    pub fn rejects_too_many(&self, rejected: u64, read: u64) -> bool {
        read > 0 && rejected as f64 > self.max_rejected * read as f64
    }

    /// The source's schedule, if it has one.
    pub fn parsed_schedule(&self) -> Result<Option<crate::schedule::Schedule>, String> {
        match &self.schedule {
            None if self.timezone.is_some() => {
                Err("timezone is set but there is no schedule".into())
            }
            None => Ok(None),
            Some(s) => crate::schedule::Schedule::parse(s, self.timezone.as_deref()).map(Some),
        }
    }

    /// The run time limit, if any.
    pub fn parsed_timeout(&self) -> Result<Option<std::time::Duration>, String> {
        self.timeout.as_deref().map(parse_interval).transpose()
    }
}

/// One stream of a source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamEntry {
    /// The stream's name (lowercase `[a-z0-9_-]`), unique within the source.
    pub name: String,
    /// Connector-specific settings: a table or query, a cursor column, a primary key...
    pub read: serde_json::Value,
    /// How its records become contacts or sessions.
    pub mapping: MappingConfig,
}

/// An aggregate rule: `name = op(kind.field)`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// The aggregate's name, shown on contacts as `agg.<name>`.
    pub name: String,
    /// `count`, `sum`, `avg`, `min`, `max`, `first`, `last` or `distinct_count`.
    pub op: AggOp,
    /// The session kind rolled up, e.g. `order`.
    pub kind: String,
    /// The session data key (not for `count`); `started_at` is the session's start time.
    pub field: Option<String>,
    /// Only sessions matching this condition count, in the segment text form over the
    /// session's data, e.g. `data.status = "paid"`.
    #[serde(rename = "where")]
    pub condition: Option<String>,
    /// Only sessions that started within this duration before now count, e.g. `90d`.
    pub window: Option<String>,
}

/// A loaded config: the typed settings and, per source, the config as written (for display).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The directory relative paths in the file are resolved against.
    pub base_dir: PathBuf,
    /// Each source's `config` table before `${VAR}` expansion, with literal secrets masked.
    pub display_configs: Vec<serde_json::Value>,
    /// Each source's streams as written (what each reads, its mapping), literal secrets
    /// masked: what the API and the console show.
    pub display_streams: Vec<Vec<serde_json::Value>>,
    /// Per source, why its connection settings could not be expanded (an unset variable),
    /// when loaded by [`Config::load_offline`]: connecting to it fails with this.
    pub unresolved: Vec<Option<String>>,
}

impl Loaded {
    /// Why `source` cannot be connected to, if its settings reference an unset variable.
    pub fn unresolved(&self, source: &str) -> Option<&str> {
        let i = self.config.sources.iter().position(|s| s.name == source)?;
        self.unresolved.get(i)?.as_deref()
    }
}

impl Config {
    /// Reads, expands and checks a config file.
    pub fn load(path: &Path, registry: &Registry) -> Result<Loaded, SyncError> {
        Self::load_with(path, registry, false)
    }

    /// Like [`Config::load`] for commands that never connect to a source (`query`, `runs`,
    /// ...): a source's `config` table may reference variables that are not set.
    pub fn load_offline(path: &Path, registry: &Registry) -> Result<Loaded, SyncError> {
        Self::load_with(path, registry, true)
    }

    fn load_with(path: &Path, registry: &Registry, offline: bool) -> Result<Loaded, SyncError> {
        let text = std::fs::read_to_string(path).map_err(|e| SyncError::ConfigFile {
            path: path.display().to_string(),
            message: format!("cannot read it: {e}"),
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse_with(
            &text,
            &path.display().to_string(),
            base_dir,
            registry,
            offline,
        )
    }

    /// Parses config text; `origin` names it in messages.
    pub fn parse(
        text: &str,
        origin: &str,
        base_dir: PathBuf,
        registry: &Registry,
    ) -> Result<Loaded, SyncError> {
        Self::parse_with(text, origin, base_dir, registry, false)
    }

    fn parse_with(
        text: &str,
        origin: &str,
        base_dir: PathBuf,
        registry: &Registry,
        offline: bool,
    ) -> Result<Loaded, SyncError> {
        let file_err = |message: String| SyncError::ConfigFile {
            path: origin.to_string(),
            message,
        };
        // Parse once as written, to keep what the API may show.
        let raw: Config =
            toml::from_str(text).map_err(|e| file_err(e.to_string().trim_end().to_string()))?;
        let display_configs = raw
            .sources
            .iter()
            .map(|s| mask_secrets(&s.config))
            .collect();
        let display_streams = raw
            .sources
            .iter()
            .map(|s| {
                s.streams
                    .iter()
                    .map(|st| mask_secrets(&serde_json::to_value(st).unwrap_or_default()))
                    .collect()
            })
            .collect();
        let mut tree: toml::Value = toml::from_str(text).map_err(|e| file_err(e.to_string()))?;
        let mut unresolved = vec![None; raw.sources.len()];
        if offline {
            // Connection settings stay as written where a variable is unset; the source
            // remembers why, and refuses to connect.
            let sources = tree.get_mut("sources").and_then(|s| s.as_array_mut());
            for (i, source) in sources.into_iter().flatten().enumerate() {
                let Some(config) = source.get_mut("config") else {
                    continue;
                };
                let mut expanded = config.clone();
                match expand_env(&mut expanded, &mut format!("sources[{i}].config")) {
                    Ok(()) => *config = expanded,
                    Err(e) => {
                        if let Some(slot) = unresolved.get_mut(i) {
                            *slot = Some(e);
                        }
                        *config = toml::Value::Table(Default::default());
                    }
                }
            }
        }
        expand_env(&mut tree, &mut String::new()).map_err(file_err)?;
        let mut config: Config = tree
            .try_into()
            .map_err(|e: toml::de::Error| file_err(e.to_string().trim_end().to_string()))?;
        config.resolve_paths(&base_dir);
        config.validate(registry).map_err(file_err)?;
        Ok(Loaded {
            config,
            base_dir,
            display_configs,
            display_streams,
            unresolved,
        })
    }

    /// Paths in the file are relative to it, so a config works from any directory.
    fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = self.store.url.strip_prefix("sqlite://")
            && Path::new(p).is_relative()
        {
            self.store.url = format!("sqlite://{}", base.join(p).display());
        }
        for s in &mut self.sources {
            if let Some(serde_json::Value::String(p)) = s.config.get_mut("path")
                && Path::new(p.as_str()).is_relative()
            {
                *p = base.join(p.as_str()).display().to_string();
            }
        }
        if let Some(p) = &mut self.server.allow_list
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }

    fn validate_server(&self) -> Result<(), String> {
        let srv = &self.server;
        parse_interval(&srv.request_timeout).map_err(|e| format!("server.request_timeout: {e}"))?;
        for (name, v) in [
            ("max_page_size", srv.max_page_size),
            ("max_depth", srv.max_depth),
            ("max_complexity", srv.max_complexity),
            ("max_root_fields", srv.max_root_fields),
            ("max_tokens", srv.max_tokens),
            ("max_nesting", srv.max_nesting),
            ("max_selections", srv.max_selections),
            ("max_body_bytes", srv.max_body_bytes),
            ("max_buckets", srv.max_buckets),
        ] {
            if v == 0 {
                return Err(format!("server.{name} must be at least 1"));
            }
        }
        if srv.rate_limit_per_second > 0 && srv.rate_limit_burst == 0 {
            return Err(
                "server.rate_limit_burst must be at least 1 when rate_limit_per_second is set"
                    .into(),
            );
        }
        Ok(())
    }

    /// Everything that can be checked without connecting to a source.
    fn validate(&self, registry: &Registry) -> Result<(), String> {
        DataKey::new(self.workspace.clone()).map_err(|e| format!("workspace: {e}"))?;
        self.validate_server()?;
        let mut names = BTreeSet::new();
        for s in &self.sources {
            let at = format!("source {:?}", s.name);
            DataKey::new(s.name.clone()).map_err(|e| format!("{at}: name: {e}"))?;
            if !names.insert(&s.name) {
                return Err(format!("{at} is defined twice"));
            }
            let factory = registry
                .get(&s.connector)
                .map_err(|e| format!("{at}: {e}"))?;
            dossier_connector::check_batch_size(s.batch_size).map_err(|e| format!("{at}: {e}"))?;
            if s.bulk_commit_rows == 0 {
                return Err(format!(
                    "{at}: `bulk_commit_rows` must be at least 1 (1 commits every batch)"
                ));
            }
            if !(0.0..=1.0).contains(&s.max_rejected) {
                return Err(format!(
                    "{at}: `max_rejected` is a share between 0 and 1 (0.1 is 10%), not {}",
                    s.max_rejected
                ));
            }
            s.parsed_schedule()
                .map_err(|e| format!("{at}: schedule: {e}"))?;
            s.parsed_timeout()
                .map_err(|e| format!("{at}: timeout: {e}"))?;
            s.retry.waits().map_err(|e| format!("{at}: {e}"))?;
            if s.streams.is_empty() && s.schedule.is_some() {
                return Err(format!(
                    "{at} has a schedule but no streams; add at least one [[sources.streams]] \
                     (`dossier discover {}` lists what it offers)",
                    s.name
                ));
            }
            let mut streams = BTreeSet::new();
            for st in &s.streams {
                let at = format!("{at}, stream {:?}", st.name);
                DataKey::new(st.name.clone()).map_err(|e| format!("{at}: name: {e}"))?;
                if !streams.insert(&st.name) {
                    return Err(format!("{at} is defined twice"));
                }
                factory
                    .validate_stream(&StreamConfig {
                        name: st.name.clone(),
                        settings: st.read.clone(),
                    })
                    .map_err(|e| format!("{at}: read: {e}"))?;
                if let Some(link) = st.mapping.contact.as_ref().and_then(|c| c.stream.as_ref()) {
                    match s.streams.iter().find(|o| &o.name == link) {
                        Some(o) if o.mapping.target == Target::Contact => {}
                        Some(_) => {
                            return Err(format!(
                                "{at}: mapping.contact.stream {link:?} does not map to contacts"
                            ));
                        }
                        None => {
                            return Err(format!(
                                "{at}: mapping.contact.stream {link:?} is not a stream of this source"
                            ));
                        }
                    }
                }
            }
        }
        self.identity.validate()?;
        parse_interval(&self.scheduler.lease).map_err(|e| format!("scheduler.lease: {e}"))?;
        parse_interval(&self.scheduler.poll).map_err(|e| format!("scheduler.poll: {e}"))?;
        self.rules()?;
        self.check_rules_have_data()
    }

    /// Refuses aggregate rules that could only ever answer nothing: over a session kind no
    /// stream produces, a data key no stream of that kind maps, or a sum or average of what
    /// the mapping makes text, a boolean or a date. A config without sources (a gateway over
    /// a store that others fill) has nothing to check them against.
    fn check_rules_have_data(&self) -> Result<(), String> {
        if self.sources.is_empty() {
            return Ok(());
        }
        let sessions: Vec<(&str, &str, &MappingConfig)> = self
            .sources
            .iter()
            .flat_map(|s| s.streams.iter().map(move |st| (s.name.as_str(), st)))
            .filter(|(_, st)| st.mapping.target == Target::Session)
            .filter_map(|(src, st)| {
                let kind = st.mapping.kind.as_deref()?;
                Some((kind, src, &st.mapping))
            })
            .collect();
        let list = |items: BTreeSet<&str>| {
            if items.is_empty() {
                "none".to_string()
            } else {
                items.into_iter().collect::<Vec<_>>().join(", ")
            }
        };
        for a in &self.aggregates {
            let at = format!("aggregate {:?}", a.name);
            let of_kind: Vec<_> = sessions.iter().filter(|(k, ..)| *k == a.kind).collect();
            if of_kind.is_empty() {
                return Err(format!(
                    "{at}: no stream maps sessions of kind {:?}; the kinds mapped are: {}",
                    a.kind,
                    list(sessions.iter().map(|(k, ..)| *k).collect())
                ));
            }
            let Some(field) = a.field.as_deref().filter(|f| *f != "started_at") else {
                continue;
            };
            let refs: Vec<&FieldRef> = of_kind
                .iter()
                .filter_map(|(_, _, m)| m.data.get(field))
                .collect();
            if refs.is_empty() {
                return Err(format!(
                    "{at}: no stream of {:?} sessions maps data.{field}; they map: {}",
                    a.kind,
                    list(
                        std::iter::once("started_at")
                            .chain(
                                of_kind
                                    .iter()
                                    .flat_map(|(_, _, m)| m.data.keys().map(String::as_str))
                            )
                            .collect()
                    )
                ));
            }
            if matches!(a.op, AggOp::Sum | AggOp::Avg)
                && let Some(r) = refs.iter().find(|r| {
                    matches!(
                        r.transforms.last(),
                        Some(
                            Transform::Lowercase
                                | Transform::Trim
                                | Transform::Boolean
                                | Transform::Datetime
                        )
                    )
                })
            {
                let op = if a.op == AggOp::Sum { "sum" } else { "avg" };
                return Err(format!(
                    "{at}: {op} of data.{field}, but a stream maps it as {:?}, which is not a number; map it as \"{} | number\"",
                    r.to_string(),
                    r.field
                ));
            }
        }
        Ok(())
    }

    /// The aggregate rules, checked.
    pub fn rules(&self) -> Result<Vec<AggregateRule>, String> {
        let mut seen = BTreeSet::new();
        self.aggregates
            .iter()
            .map(|a| {
                if !seen.insert(&a.name) {
                    return Err(format!("aggregate {:?} is defined twice", a.name));
                }
                let mut rule = AggregateRule::new(&a.name, a.op, &a.kind, a.field.as_deref())
                    .map_err(|e| e.to_string())?;
                if let Some(c) = &a.condition {
                    rule = rule.with_condition(c).map_err(|e| e.to_string())?;
                }
                if let Some(w) = &a.window {
                    let secs = parse_duration_secs(w)
                        .map_err(|e| format!("aggregate {:?}, window: {e}", a.name))?;
                    rule = rule.with_window(secs).map_err(|e| e.to_string())?;
                }
                Ok(rule)
            })
            .collect()
    }

    pub fn source(&self, name: &str) -> Result<&SourceConfig, SyncError> {
        self.sources
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| SyncError::UnknownSource {
                name: name.to_string(),
                known: self
                    .sources
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// Parses `30s`, `15m`, `1h`, `1d`.
pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let secs = parse_duration_secs(s)?;
    Ok(std::time::Duration::from_secs(secs.unsigned_abs()))
}

/// Expands `${VAR}` in every string, naming the key of a missing variable.
fn expand_env(v: &mut toml::Value, path: &mut String) -> Result<(), String> {
    match v {
        toml::Value::String(s) if s.contains("${") => *s = expand_str(s).map_err(|var| {
            format!(
                "`{path}` references ${{{var}}}, which is not set; export {var} or write the value"
            )
        })?,
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                expand_env(v, path)?;
                path.truncate(len);
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_env(v, path)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        // `${VAR:-default}`: the default when VAR is unset or empty, as in a shell.
        let (var, default) = match after[..end].split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (&after[..end], None),
        };
        match (std::env::var(var).ok().filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(var.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Masks literal values of secret-looking keys; `${VAR}` references are kept as written.
pub fn mask_secrets(v: &serde_json::Value) -> serde_json::Value {
    const SECRET: [&str; 6] = ["password", "secret", "token", "key", "credential", "uri"];
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let secret = SECRET.iter().any(|s| k.to_lowercase().contains(s));
                    let shown = match v {
                        serde_json::Value::String(s) if secret && !s.starts_with("${") => {
                            serde_json::Value::String("***".into())
                        }
                        // Any URL, whatever its key's name (url, dsn, endpoint...).
                        serde_json::Value::String(s) if s.contains("://") => {
                            serde_json::Value::String(dossier_store::redact_url(s))
                        }
                        other => mask_secrets(other),
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(mask_secrets).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let mut registry = Registry::new();
        registry.register::<dossier_connector_sqlite::SqliteConnector>();
        registry
    }

    const GOOD: &str = r#"
        [store]
        url = "sqlite://dossier.db"

        [[sources]]
        name = "shop"
        connector = "sqlite"
        config = { path = "shop.db" }

        [[sources.streams]]
        name = "customers"
        read = { table = "customers", cursor = "updated_at" }
        mapping = { target = "contact", id = "id", identities = { email = "email" } }

        [[sources.streams]]
        name = "orders"
        read = { table = "orders", cursor = "updated_at" }
        mapping = { target = "session", id = "id", kind = "order", started_at = "created_at", contact = { stream = "customers", field = "customer_id" } }

        [[aggregates]]
        name = "transactions"
        op = "count"
        kind = "order"
    "#;

    fn parse(text: &str) -> Result<Loaded, String> {
        Config::parse(text, "dossier.toml", PathBuf::from("/base"), &registry())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_and_resolves_paths() {
        let l = parse(GOOD).unwrap();
        assert_eq!(l.config.store.url, "sqlite:///base/dossier.db");
        assert_eq!(l.config.sources[0].config["path"], "/base/shop.db");
        assert_eq!(l.config.rules().unwrap().len(), 1);
    }

    /// `dossier discover` works from the connection alone; only a schedule needs streams.
    #[test]
    fn a_source_may_start_with_its_connection_alone_unless_scheduled() {
        let bare = "[store]\nurl = \"sqlite://dossier.db\"\n[[sources]]\nname = \"shop\"\n\
                    connector = \"sqlite\"\nconfig = { path = \"shop.db\" }\n";
        assert!(parse(bare).unwrap().config.sources[0].streams.is_empty());
        let scheduled = bare.replace("connector", "schedule = \"15m\"\nconnector");
        insta::assert_snapshot!(parse(&scheduled).unwrap_err(), @r#"config file dossier.toml: source "shop" has a schedule but no streams; add at least one [[sources.streams]] (`dossier discover shop` lists what it offers)"#);
    }

    #[test]
    fn refuses_bad_configs_with_where_and_what() {
        let unknown = GOOD.replace("[store]", "[store]\ncolour = \"red\"");
        insta::assert_snapshot!(parse(&unknown).unwrap_err(), @r#"
        config file dossier.toml: TOML parse error at line 3, column 1
          |
        3 | colour = "red"
          | ^^^^^^
        unknown field `colour`, expected `url`
        "#);
        // An unknown connector: dossier-cli's tests/builtins.rs, where the built-ins are.
        let link = GOOD.replace("stream = \"customers\"", "stream = \"clients\"");
        insta::assert_snapshot!(parse(&link).unwrap_err(), @r#"config file dossier.toml: source "shop", stream "orders": mapping.contact.stream "clients" is not a stream of this source"#);
        let rule = GOOD.replace("op = \"count\"", "op = \"avg\"");
        insta::assert_snapshot!(parse(&rule).unwrap_err(), @r#"config file dossier.toml: invalid aggregate rule "transactions": avg needs a `field` (a session data key)"#);
        let cond = GOOD.replace(
            "op = \"count\"",
            "op = \"count\"\nwhere = 'data.status = \"paid\" and'",
        );
        insta::assert_snapshot!(parse(&cond).unwrap_err(), @r#"config file dossier.toml: invalid aggregate rule "transactions": syntax error at line 1, column 25: expected a condition such as country = "FR", found end of input"#);
        let window = GOOD.replace("op = \"count\"", "op = \"count\"\nwindow = \"90 days\"");
        insta::assert_snapshot!(parse(&window).unwrap_err(), @r#"config file dossier.toml: aggregate "transactions", window: "90 days" is not a duration; write a positive whole number and a unit, e.g. 90d, 12h, 30m, 2w or 45s"#);
        let retry = GOOD.replace(
            "connector = \"sqlite\"",
            "connector = \"sqlite\"\nretry = { initial = \"1m\", max = \"5s\" }",
        );
        insta::assert_snapshot!(parse(&retry).unwrap_err(), @r#"config file dossier.toml: source "shop": retry.max (5s) is shorter than retry.initial (1m)"#);
        let cron = GOOD.replace(
            "connector = \"sqlite\"",
            "connector = \"sqlite\"\nschedule = \"0 3 * *\"\ntimezone = \"Europe/Paris\"",
        );
        insta::assert_snapshot!(parse(&cron).unwrap_err(), @r#"config file dossier.toml: source "shop": schedule: "0 3 * *" is neither an interval (15m, 1h) nor a cron expression ("0 3 * * *"): invalid pattern: pattern must have between 5 and 7 fields"#);
        let group = GOOD.replace(
            "connector = \"sqlite\"",
            "connector = \"sqlite\"\nbulk_commit_rows = 0",
        );
        insta::assert_snapshot!(parse(&group).unwrap_err(), @"config file dossier.toml: source \"shop\": `bulk_commit_rows` must be at least 1 (1 commits every batch)");
        let lease = format!("{GOOD}\n[scheduler]\nlease = \"30\"\n");
        insta::assert_snapshot!(parse(&lease).unwrap_err(), @r#"config file dossier.toml: scheduler.lease: "30" is not a duration; write a positive whole number and a unit, e.g. 90d, 12h, 30m, 2w or 45s"#);
        let blocked = format!("{GOOD}\n[identity]\nblocked = [\"*\"]\n");
        insta::assert_snapshot!(parse(&blocked).unwrap_err(), @r#"config file dossier.toml: identity.blocked: pattern "*" would block every value; name the inbox or number"#);
    }

    #[test]
    fn rules_that_cannot_work_are_refused_naming_what_exists() {
        let with_data = GOOD.replace(
            "contact = { stream = \"customers\", field = \"customer_id\" } }",
            "contact = { stream = \"customers\", field = \"customer_id\" }, data = { total = \"total | number\", status = \"status | lowercase\" } }",
        );
        let rule = |r: &str| format!("{with_data}\n[[aggregates]]\n{r}\n");
        parse(&rule(
            "name = \"spent\"\nop = \"sum\"\nkind = \"order\"\nfield = \"total\"",
        ))
        .unwrap();
        parse(&rule(
            "name = \"last\"\nop = \"max\"\nkind = \"order\"\nfield = \"started_at\"",
        ))
        .unwrap();
        let kind = rule("name = \"visits\"\nop = \"count\"\nkind = \"visit\"");
        insta::assert_snapshot!(parse(&kind).unwrap_err(), @r#"config file dossier.toml: aggregate "visits": no stream maps sessions of kind "visit"; the kinds mapped are: order"#);
        let field = rule("name = \"spent\"\nop = \"sum\"\nkind = \"order\"\nfield = \"amount\"");
        insta::assert_snapshot!(parse(&field).unwrap_err(), @r#"config file dossier.toml: aggregate "spent": no stream of "order" sessions maps data.amount; they map: started_at, status, total"#);
        let text = rule("name = \"st\"\nop = \"avg\"\nkind = \"order\"\nfield = \"status\"");
        insta::assert_snapshot!(parse(&text).unwrap_err(), @r#"config file dossier.toml: aggregate "st": avg of data.status, but a stream maps it as "status | lowercase", which is not a number; map it as "status | number""#);
        // Without sources there is nothing to check against.
        let bare = "[store]\nurl = \"sqlite://d.db\"\n[[aggregates]]\nname = \"n\"\nop = \"count\"\nkind = \"visit\"\n";
        parse(bare).unwrap();
        // Text kept as text is fine for what does not add up.
        parse(&rule(
            "name = \"statuses\"\nop = \"distinct_count\"\nkind = \"order\"\nfield = \"status\"",
        ))
        .unwrap();
    }

    #[test]
    fn max_rejected_is_a_share() {
        let l = parse(GOOD).unwrap();
        assert_eq!(l.config.sources[0].max_rejected, 0.1);
        assert!(l.config.sources[0].rejects_too_many(11, 100));
        assert!(!l.config.sources[0].rejects_too_many(10, 100));
        assert!(!l.config.sources[0].rejects_too_many(0, 0));
        let bad = GOOD.replace(
            "connector = \"sqlite\"",
            "connector = \"sqlite\"\nmax_rejected = 10",
        );
        insta::assert_snapshot!(parse(&bad).unwrap_err(), @r#"config file dossier.toml: source "shop": `max_rejected` is a share between 0 and 1 (0.1 is 10%), not 10"#);
    }

    #[test]
    fn offline_loads_leave_unset_connection_variables_to_connecting() {
        let text = GOOD.replace(
            "config = { path = \"shop.db\" }",
            "config = { path = \"${DOSSIER_TEST_NEVER_SET_PATH}\" }",
        );
        assert!(parse(&text).is_err());
        let l = Config::parse_with(
            &text,
            "dossier.toml",
            PathBuf::from("/base"),
            &registry(),
            true,
        )
        .unwrap();
        let why = l.unresolved("shop").unwrap();
        assert!(
            why.contains("${DOSSIER_TEST_NEVER_SET_PATH}, which is not set"),
            "{why}"
        );
        // Other settings still must expand.
        let store = text.replace("sqlite://dossier.db", "${DOSSIER_TEST_NEVER_SET_STORE}");
        assert!(
            Config::parse_with(
                &store,
                "dossier.toml",
                PathBuf::from("/base"),
                &registry(),
                true
            )
            .is_err()
        );
    }

    #[test]
    fn rules_take_conditions_and_windows_and_identity_its_policy() {
        let text = GOOD.replace(
            "op = \"count\"",
            "op = \"count\"\nwhere = 'data.status = \"paid\"'\nwindow = \"90d\"",
        ) + "\n[identity]\nblocked = [\"info@*\"]\nmerge_limit = 3\nsource_priority = [\"shop\"]\n";
        let l = parse(&text).unwrap();
        let rule = &l.config.rules().unwrap()[0];
        assert_eq!(
            rule.signature(),
            r#"count(order.*) where data.status = "paid" within 7776000s"#
        );
        assert_eq!(l.config.identity.merge_limit, 3);
        assert_eq!(l.config.identity.blocked, vec!["info@*"]);
    }

    #[test]
    #[allow(unsafe_code)] // setting a test-only variable; no other thread reads it
    fn env_references_expand_and_stay_hidden() {
        let text = GOOD.replace(
            "config = { path = \"shop.db\" }",
            "config = { path = \"${DOSSIER_TEST_SHOP_PATH}\" }",
        );
        let err = parse(&text).unwrap_err();
        assert!(
            err.contains(
                "`sources[0].config.path` references ${DOSSIER_TEST_SHOP_PATH}, which is not set"
            ),
            "{err}"
        );
        unsafe { std::env::set_var("DOSSIER_TEST_SHOP_PATH", "/data/shop.db") };
        let l = parse(&text).unwrap();
        assert_eq!(l.config.sources[0].config["path"], "/data/shop.db");
        assert_eq!(l.display_configs[0]["path"], "${DOSSIER_TEST_SHOP_PATH}");
        let opt = GOOD.replace(
            "config = { path = \"shop.db\" }",
            "config = { path = \"${DOSSIER_TEST_UNSET_VAR:-fallback.db}\" }",
        );
        assert_eq!(
            parse(&opt).unwrap().config.sources[0].config["path"],
            "/base/fallback.db"
        );
        let masked = mask_secrets(
            &serde_json::json!({"password": "hunter2", "url": "postgres://u:pw@h/db", "token": "${T}"}),
        );
        assert_eq!(
            masked,
            serde_json::json!({"password": "***", "url": "postgres://u:***@h/db", "token": "${T}"})
        );
    }
}
