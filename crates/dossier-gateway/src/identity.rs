//! The merge log and value origins: how a contact came to be what it is.

use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};
use dossier_core::value::from_micros;
use dossier_store::{MergeRow, ValueOrigin as OriginRow};

use crate::Role;
use crate::auth::RoleGuard;
use crate::context::{gateway, ws};

/// Reads of the workspace's merge log.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityQuery;

#[Object]
impl IdentityQuery {
    /// The workspace's merge log, newest first: merges made and merges the identity policy
    /// refused, each with the record and identity that caused it.
    #[graphql(guard = "RoleGuard(Role::Read)")]
    async fn merges(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
    ) -> Result<Vec<Merge>> {
        let max = gateway(ctx)?.config.max_page_size;
        if first < 1 || first as usize > max {
            return Err(format!("first must be between 1 and {max} (got {first})").into());
        }
        let rows = gateway(ctx)?
            .store
            .merges(ws(ctx)?, None, first as usize)
            .await?;
        Ok(rows.into_iter().map(Merge).collect())
    }
}

/// Two contacts found to be one person (or a merge refused by the identity policy).
pub(crate) struct Merge(pub(crate) MergeRow);

#[Object]
impl Merge {
    /// The contact that remains.
    async fn survivor_id(&self) -> ID {
        ID(self.0.survivor.to_string())
    }

    /// The contact merged into the survivor (its id keeps resolving to the survivor); for a
    /// refused merge, the contact that stayed separate.
    async fn merged_id(&self) -> ID {
        ID(self.0.merged.to_string())
    }

    /// `merged` or `refused`.
    async fn outcome(&self) -> &str {
        &self.0.outcome
    }

    /// Why, in words.
    async fn reason(&self) -> &str {
        &self.0.reason
    }

    /// The source of the record that tied the contacts together.
    async fn source(&self) -> Option<&str> {
        self.0.source.as_deref()
    }

    /// The stream of that record.
    async fn stream(&self) -> Option<&str> {
        self.0.stream.as_deref()
    }

    /// That record's id in its stream.
    async fn record_id(&self) -> Option<&str> {
        self.0.record_id.as_deref()
    }

    /// The identity through which the record named the merged contact (`kind:value`).
    async fn identity(&self) -> Option<&str> {
        self.0.identity.as_deref()
    }

    /// When it happened.
    async fn at(&self) -> DateTime<Utc> {
        from_micros(self.0.at)
    }
}

/// Where one value of a contact came from.
pub(crate) struct ValueOrigin(pub(crate) OriginRow);

#[Object]
impl ValueOrigin {
    /// A profile field (`email`) or a data key as `data.<key>`.
    async fn field(&self) -> &str {
        &self.0.field
    }

    /// The source (`api` for values set through this API).
    async fn source(&self) -> &str {
        &self.0.source
    }

    /// The stream within the source.
    async fn stream(&self) -> &str {
        &self.0.stream
    }

    /// The record's id in its stream.
    async fn record_id(&self) -> &str {
        &self.0.record_id
    }

    /// The source's update time of that record (or when it was written).
    async fn at(&self) -> DateTime<Utc> {
        from_micros(self.0.at)
    }
}
