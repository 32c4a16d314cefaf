//! Saved segments: definitions in the text form, live counts and pages, and the feed of
//! who entered or left.

use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use dossier_core::value::from_micros;
use dossier_store::{Interval, Range, SegmentChange as ChangeRow, SegmentRow};

use crate::auth::RoleGuard;
use crate::contact::{Contact, ContactConnection};
use crate::context::{
    PageInfo, defined_aggregates_only, gateway, loaders, page_size, parse_cursor, ws,
};
use crate::{Role, cursor};

/// Reads of saved segments.
#[derive(Debug, Default, Clone, Copy)]
pub struct SegmentQuery;

#[Object]
impl SegmentQuery {
    /// Every saved segment, by name.
    #[graphql(guard = "RoleGuard(Role::Read)")]
    async fn segments(&self, ctx: &Context<'_>) -> Result<Vec<Segment>> {
        let rows = gateway(ctx)?.store.segments(ws(ctx)?).await?;
        Ok(rows.into_iter().map(Segment).collect())
    }

    /// A saved segment by name.
    #[graphql(guard = "RoleGuard(Role::Read)")]
    async fn segment(&self, ctx: &Context<'_>, name: String) -> Result<Option<Segment>> {
        Ok(gateway(ctx)?
            .store
            .segment(ws(ctx)?, &name)
            .await?
            .map(Segment))
    }
}

/// Writes of saved segments.
#[derive(Debug, Default, Clone, Copy)]
pub struct SegmentMutation;

#[Object]
impl SegmentMutation {
    /// Creates or replaces a segment from its text form, e.g.
    /// `country = "FR" and data.price_plan = "basic" and agg.avg_basket > 50` (write role).
    /// A syntax error names its line and column. Its members and feed update at once.
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn save_segment(
        &self,
        ctx: &Context<'_>,
        name: String,
        definition: String,
        description: Option<String>,
    ) -> Result<Segment> {
        let filter = dossier_core::filter_text::parse_filter(&definition)?;
        defined_aggregates_only(ctx, &filter).await?;
        let row = gateway(ctx)?
            .store
            .save_segment(ws(ctx)?, &name, &definition, description.as_deref())
            .await?;
        Ok(Segment(row))
    }

    /// Deletes a segment with its feed; false if there was none (write role).
    #[graphql(guard = "RoleGuard(Role::Write)")]
    async fn delete_segment(&self, ctx: &Context<'_>, name: String) -> Result<bool> {
        Ok(gateway(ctx)?.store.delete_segment(ws(ctx)?, &name).await?)
    }
}

/// A saved audience: a filter over profile fields, data and aggregates.
pub(crate) struct Segment(SegmentRow);

#[Object]
impl Segment {
    /// Its name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Its filter, in the canonical text form.
    async fn definition(&self) -> &str {
        &self.0.definition
    }

    /// What it is for.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        from_micros(self.0.created_at)
    }

    /// When its definition last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        from_micros(self.0.updated_at)
    }

    /// How many contacts are in it now.
    async fn count(&self, ctx: &Context<'_>) -> Result<i64> {
        let filter = self.0.filter()?;
        Ok(gateway(ctx)?
            .store
            .count_contacts(ws(ctx)?, Some(&filter))
            .await?)
    }

    /// Its contacts now, in id order.
    async fn contacts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ContactConnection> {
        ContactConnection::load(ctx, Some(self.0.filter()?), first, after).await
    }

    /// How many contacts entered and left it per day (local days of `timezone`, an IANA
    /// name, UTC by default) from the day holding `from` to the one holding the instant
    /// before `to`, every day included, from its change feed.
    #[graphql(
        complexity = "crate::limits::series_cost(1, from.timestamp_micros(), to.timestamp_micros(), child_complexity)"
    )]
    async fn history(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        #[graphql(default_with = "\"UTC\".to_string()")] timezone: String,
    ) -> Result<Vec<SegmentDay>> {
        let gw = gateway(ctx)?;
        let range = Range {
            interval: Interval::Day,
            timezone: &timezone,
            from: from.timestamp_micros(),
            to: to.timestamp_micros(),
            max_intervals: gw.config.max_buckets,
        };
        let days = gw
            .store
            .segment_history(ws(ctx)?, &self.0.name, &range)
            .await?;
        Ok(days
            .into_iter()
            .map(|d| SegmentDay {
                start: from_micros(d.start),
                end: from_micros(d.end),
                entered: d.entered,
                left: d.left,
            })
            .collect())
    }

    /// Who entered or left since `after`, oldest first. A campaign keeps the last `endCursor`
    /// it handled and asks again from there, so it sees each change exactly once. Membership
    /// is refreshed after every sync that wrote something, every minute, and when the segment is saved.
    async fn changes(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<SegmentChangeConnection> {
        let gw = gateway(ctx)?;
        let first = page_size(gw, first)?;
        let after = parse_cursor(after.as_deref(), cursor::parse_segment_change)?;
        let page = gw
            .store
            .segment_changes(ws(ctx)?, &self.0.name, after, first)
            .await?;
        Ok(SegmentChangeConnection {
            page_info: PageInfo::new(
                page.has_next,
                page.items.last().map(|c| cursor::segment_change(c.id)),
            ),
            edges: page
                .items
                .into_iter()
                .map(|c| SegmentChangeEdge {
                    cursor: cursor::segment_change(c.id),
                    node: SegmentChange(c),
                })
                .collect(),
        })
    }

    /// A cursor at the end of the feed: pass it as `after` to see only changes from now on.
    async fn feed_head(&self, ctx: &Context<'_>) -> Result<String> {
        let head = gateway(ctx)?
            .store
            .segment_feed_head(ws(ctx)?, &self.0.name)
            .await?;
        Ok(cursor::segment_change(head))
    }
}

/// A page of a segment's change feed.
#[derive(SimpleObject)]
pub(crate) struct SegmentChangeConnection {
    /// The changes of this page, oldest first.
    edges: Vec<SegmentChangeEdge>,
    /// Where this page ends.
    page_info: PageInfo,
}

/// A change on a page of the feed.
#[derive(SimpleObject)]
pub(crate) struct SegmentChangeEdge {
    /// Pass as `after` to read the changes that follow this one.
    cursor: String,
    node: SegmentChange,
}

/// Whether a contact entered or left.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub(crate) enum SegmentChangeKind {
    /// The contact now matches the segment.
    Entered,
    /// The contact no longer matches (or was merged into another contact).
    Left,
}

/// One contact entering or leaving a segment.
pub(crate) struct SegmentChange(ChangeRow);

#[Object]
impl SegmentChange {
    /// Entered or left.
    async fn change(&self) -> SegmentChangeKind {
        if self.0.change == "left" {
            SegmentChangeKind::Left
        } else {
            SegmentChangeKind::Entered
        }
    }

    /// The contact's id.
    async fn contact_id(&self) -> ID {
        ID(self.0.contact_id.to_string())
    }

    /// The contact (its survivor if it was merged since).
    async fn contact(&self, ctx: &Context<'_>) -> Result<Option<Contact>> {
        Ok(loaders(ctx)?
            .contacts
            .load_one(self.0.contact_id)
            .await?
            .map(Contact::listed))
    }

    /// When the change was seen.
    async fn at(&self) -> DateTime<Utc> {
        from_micros(self.0.at)
    }
}

/// A day of a segment's history.
#[derive(SimpleObject)]
pub(crate) struct SegmentDay {
    /// Where the day starts (local midnight).
    start: DateTime<Utc>,
    /// Where it ends: the next day's start.
    end: DateTime<Utc>,
    /// Contacts that entered the segment that day.
    entered: i64,
    /// Contacts that left it that day.
    left: i64,
}
