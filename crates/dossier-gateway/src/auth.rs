//! Roles: a field that needs more than the caller's role answers with an error naming both.

use async_graphql::{Context, Error, ErrorExtensions as _, Guard, Result};

use crate::{Caller, Role};

/// Lets a field through for callers with at least this role.
pub(crate) struct RoleGuard(pub(crate) Role);

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let caller = ctx.data::<Caller>()?;
        if caller.role >= self.0 {
            return Ok(());
        }
        Err(Error::new(format!(
            "`{}` needs the {} role; this key has the {} role",
            ctx.item.node.name.node, self.0, caller.role
        ))
        .extend_with(|_, e| {
            e.set("code", "FORBIDDEN");
            e.set("required_role", self.0.as_str());
        }))
    }
}
