//! What API connectors share beyond HTTP: their streams are a fixed list of the API's
//! objects, a check reads one record of each, and a page size is bounded by the API.

use std::future::Future;

use dossier_connector::{Catalog, ConnectorError, Problem, StreamInfo, problems_per_stream};
use schemars::JsonSchema;
use serde::Deserialize;

/// One of the objects an API connector reads (customers, orders...), each a stream of the
/// catalog under its own name.
pub trait ApiResource: Copy + PartialEq + Send + Sync + 'static {
    /// Every resource with the name of its stream in the catalog (and in the API's paths,
    /// where they agree), in catalog order.
    const ALL: &'static [(Self, &'static str)];

    /// The name of its stream in the catalog.
    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(resource, _)| *resource == self)
            .map(|(_, name)| *name)
            .expect("ApiResource::ALL lists every resource")
    }

    /// Its stream under `name`: fields, primary key and cursor candidates.
    fn info(self, name: &str) -> StreamInfo;
}

/// One stream of an API source: which of the API's objects it reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Stream")]
pub struct ResourceStream<R> {
    /// What to read: one of the API's objects.
    pub resource: R,
}

/// The catalog of an API connector: every resource under its own name.
pub fn catalog<R: ApiResource>() -> Catalog {
    Catalog {
        streams: R::ALL.iter().map(|(r, name)| r.info(name)).collect(),
    }
}

/// Checks each stream by reading one record of it with `read_one`: that proves the
/// credentials and the scope without reading more.
pub async fn check_by_one_record<'a, S, T, F, Fut>(
    streams: &'a [(String, S)],
    mut read_one: F,
) -> Vec<Problem>
where
    F: FnMut(&'a S) -> Fut,
    Fut: Future<Output = Result<T, ConnectorError>>,
{
    problems_per_stream(streams, |_, stream| {
        let read = read_one(stream);
        async move { read.await.map(|_| vec![]) }
    })
    .await
}

/// Refuses a page size outside 1 to `max` (the most records the API serves per page);
/// `setting` is its name in the config.
pub fn check_page_size(setting: &str, value: usize, max: usize) -> Result<(), ConnectorError> {
    if value == 0 || value > max {
        return Err(ConnectorError::config(format!(
            "{setting} must be between 1 and {max} (got {value})"
        )));
    }
    Ok(())
}
