use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, PoisonError, RwLock};

use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use crate::{
    BatchStream, Catalog, Connector, ConnectorError, ConnectorKind, Problem, ReadRequest, Spec,
    StreamInfo, StreamState,
};

/// A configured stream as the framework holds it: its name and untyped settings.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub name: String,
    pub settings: Json,
}

/// A connected source, with its types erased.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    async fn check(&self, streams: &[StreamConfig]) -> Vec<Problem>;
    async fn discover(&self) -> Result<Catalog, ConnectorError>;
    async fn describe(&self, stream: &StreamConfig) -> Result<StreamInfo, ConnectorError>;
    fn read(
        &self,
        stream: &StreamConfig,
        state: Option<StreamState>,
        batch_size: usize,
    ) -> Result<BatchStream, ConnectorError>;
    /// See [`Connector::retries`](crate::Connector::retries).
    fn retries(&self) -> u64 {
        0
    }
}

/// Makes sources of one connector from untyped config.
#[async_trait::async_trait]
pub trait ConnectorFactory: Send + Sync {
    fn spec(&self) -> Spec;
    /// Checks a stream's settings without connecting.
    fn validate_stream(&self, stream: &StreamConfig) -> Result<(), ConnectorError>;
    async fn connect(&self, config: Json) -> Result<Box<dyn Source>, ConnectorError>;
}

/// Deserializes with the path of the offending field in the message.
fn parse<T: DeserializeOwned>(what: &str, v: &Json) -> Result<T, ConnectorError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        ConnectorError::config(format!("{what}{at}: {}", e.inner()))
    })
}

struct Typed<C>(PhantomData<fn() -> C>);

struct TypedSource<C>(Arc<C>);

impl<C: Connector> TypedSource<C> {
    fn stream(&self, s: &StreamConfig) -> Result<C::Stream, ConnectorError> {
        parse(&format!("stream {:?}", s.name), &s.settings)
    }
}

#[async_trait::async_trait]
impl<C: Connector> Source for TypedSource<C> {
    async fn check(&self, streams: &[StreamConfig]) -> Vec<Problem> {
        let mut typed = vec![];
        let mut problems = vec![];
        for s in streams {
            match self.stream(s) {
                Ok(t) => typed.push((s.name.clone(), t)),
                Err(e) => problems.push(Problem {
                    stream: Some(s.name.clone()),
                    message: e.to_string(),
                }),
            }
        }
        problems.extend(self.0.check(&typed).await);
        problems
    }

    async fn discover(&self) -> Result<Catalog, ConnectorError> {
        self.0.discover().await
    }

    async fn describe(&self, stream: &StreamConfig) -> Result<StreamInfo, ConnectorError> {
        self.0.describe(&stream.name, &self.stream(stream)?).await
    }

    fn read(
        &self,
        stream: &StreamConfig,
        state: Option<StreamState>,
        batch_size: usize,
    ) -> Result<BatchStream, ConnectorError> {
        let request = ReadRequest {
            name: stream.name.clone(),
            stream: self.stream(stream)?,
            state,
            batch_size,
        };
        Ok(self.0.clone().read(request))
    }

    fn retries(&self) -> u64 {
        self.0.retries()
    }
}

#[async_trait::async_trait]
impl<C: Connector> ConnectorFactory for Typed<C> {
    fn spec(&self) -> Spec {
        Spec {
            name: C::NAME.to_string(),
            version: C::VERSION.to_string(),
            kind: ConnectorKind::Builtin,
            config_schema: serde_json::to_value(schemars::schema_for!(C::Config))
                .unwrap_or_default(),
            stream_schema: serde_json::to_value(schemars::schema_for!(C::Stream))
                .unwrap_or_default(),
        }
    }

    fn validate_stream(&self, stream: &StreamConfig) -> Result<(), ConnectorError> {
        parse::<C::Stream>(&format!("stream {:?}", stream.name), &stream.settings).map(|_| ())
    }

    async fn connect(&self, config: Json) -> Result<Box<dyn Source>, ConnectorError> {
        let config: C::Config = parse("connector config", &config)?;
        Ok(Box::new(TypedSource(Arc::new(C::connect(config).await?))))
    }
}

/// A typed connector behind the type-erased adapter: what [`Registry::register`] stores, and
/// what the plugin SDK exports over the C ABI.
pub fn erase<C: Connector>() -> Arc<dyn ConnectorFactory> {
    Arc::new(Typed::<C>(PhantomData))
}

/// The connectors Dossier knows, by name: built-ins and loaded plugins alike.
///
/// Clones share one set of connectors, so a plugin installed while serving (the admin
/// mutation) is seen by the engine and the API at once.
#[derive(Default, Clone)]
pub struct Registry {
    connectors: Arc<RwLock<BTreeMap<String, Arc<dyn ConnectorFactory>>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<dyn ConnectorFactory>>> {
        self.connectors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a typed connector through the type-erased adapter.
    pub fn register<C: Connector>(&mut self) -> &mut Self {
        self.insert(C::NAME, erase::<C>());
        self
    }

    /// Adds an already erased connector (a plugin). Refuses a name that is taken: a plugin
    /// never replaces a built-in or another plugin behind the user's back.
    pub fn register_factory(
        &self,
        name: &str,
        factory: Arc<dyn ConnectorFactory>,
    ) -> Result<(), ConnectorError> {
        let mut map = self
            .connectors
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = map.get(name) {
            return Err(ConnectorError::config(format!(
                "a {} connector named {name:?} is already registered",
                existing.spec().kind.as_str()
            )));
        }
        map.insert(name.to_string(), factory);
        Ok(())
    }

    fn insert(&self, name: &str, factory: Arc<dyn ConnectorFactory>) {
        self.connectors
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), factory);
    }

    /// The connector called `name`; the error lists what exists.
    pub fn get(&self, name: &str) -> Result<Arc<dyn ConnectorFactory>, ConnectorError> {
        let map = self.read();
        map.get(name).cloned().ok_or_else(|| {
            let known: Vec<_> = map.keys().map(String::as_str).collect();
            ConnectorError::config(format!(
                "unknown connector {name:?}; available: {}",
                known.join(", ")
            ))
        })
    }

    /// Whether a connector is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// The connectors' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Every connector's spec, by name.
    pub fn specs(&self) -> Vec<Spec> {
        self.read().values().map(|c| c.spec()).collect()
    }
}
