//! What every resolver reaches for: the gateway, the caller's workspace, the request's data
//! loaders, page sizes and cursors, and the `PageInfo` every connection ends with.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::{Context, Error, ID, Json, Result, SimpleObject};
use dossier_core::{DataValue, Filter, FilterField};

use crate::loaders::Loaders;
use crate::{Caller, Gateway};

pub(crate) fn gateway<'a>(ctx: &Context<'a>) -> Result<&'a Gateway> {
    ctx.data::<Gateway>()
}

pub(crate) fn loaders<'a>(ctx: &Context<'a>) -> Result<&'a Loaders> {
    Ok(ctx.data::<Arc<Loaders>>()?)
}

/// The workspace of the request's caller.
pub(crate) fn ws<'a>(ctx: &Context<'a>) -> Result<&'a str> {
    Ok(&ctx.data::<Caller>()?.workspace)
}

/// The page size a connection serves for `first`, within the configured bounds.
pub(crate) fn page_size(gw: &Gateway, first: Option<i32>) -> Result<usize> {
    let max = gw.config.max_page_size;
    match first {
        None => Ok(gw.config.default_page_size.clamp(1, max.max(1))),
        Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
        Some(n) => Err(Error::new(format!(
            "first must be between 1 and {max} (got {n})"
        ))),
    }
}

pub(crate) fn parse_id(id: &ID, what: &str) -> Result<i64> {
    id.parse::<i64>()
        .map_err(|_| Error::new(format!("invalid {what} id")))
}

pub(crate) fn parse_cursor<T>(
    after: Option<&str>,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>> {
    after.map(parse).transpose().map_err(Error::new)
}

pub(crate) fn data_json(data: &BTreeMap<String, DataValue>) -> Json<serde_json::Value> {
    Json(serde_json::Value::Object(
        data.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
    ))
}

/// Whether more items follow a page, and where the page ends.
#[derive(Debug, Clone, SimpleObject)]
pub(crate) struct PageInfo {
    /// More items follow: ask again with `after: endCursor`.
    has_next_page: bool,
    /// The cursor of the page's last item (null for an empty page).
    end_cursor: Option<String>,
}

impl PageInfo {
    pub(crate) fn new(has_next_page: bool, end_cursor: Option<String>) -> Self {
        Self {
            has_next_page,
            end_cursor,
        }
    }
}

/// Refuses a filter on an aggregate the workspace's rules do not define, listing those they do.
pub(crate) async fn defined_aggregates_only(ctx: &Context<'_>, filter: &Filter) -> Result<()> {
    let rules = gateway(ctx)?.store.rules(ws(ctx)?).await?;
    filter.check_aggregates(rules.iter().map(|r| r.name.as_str()))?;
    Ok(())
}

/// Refuses fields (of an ordering, a grouping, metrics) that name an aggregate no rule
/// defines, as [`defined_aggregates_only`] does for filters.
pub(crate) async fn defined_fields_only<'f>(
    ctx: &Context<'_>,
    fields: impl IntoIterator<Item = &'f FilterField>,
) -> Result<()> {
    let named = Filter::And(fields.into_iter().cloned().map(Filter::Exists).collect());
    defined_aggregates_only(ctx, &named).await
}
