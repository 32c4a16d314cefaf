//! What dashboards read: the workspace's sessions at the root, breakdowns of contacts and
//! time series of sessions. The store computes them (`dossier_store::stats`); this module
//! reads the arguments, bounds them and shapes the answers.

use async_graphql::{Context, Enum, Error, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use dossier_core::value::from_micros;
use dossier_core::{Filter, FilterField};
use dossier_store::{
    Bucket, Interval, Metric, MetricOp, OrderBy, Range, SessionField, SessionQuery, StatsQuery,
    StatsSort,
};

use crate::auth::RoleGuard;
use crate::contact::SessionConnection;
use crate::context::{defined_aggregates_only, defined_fields_only, gateway, page_size, ws};
use crate::filter::{ContactFilter, combine};
use crate::{Role, cursor};

/// Which way an ordering runs. Values a row does not have sort last either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Default)]
pub(crate) enum SortDirection {
    /// Smallest first.
    #[default]
    Asc,
    /// Largest first.
    Desc,
}

/// One key of an ordering: a field and a direction. Rows equal on every key come in id order.
#[derive(Debug, InputObject)]
pub(crate) struct OrderInput {
    /// For contacts: a profile field (`country`, ...), `created_at`, `updated_at`,
    /// `data.<key>` or `agg.<name>`. For sessions: `started_at`, `kind`, `source`, `stream`
    /// or `data.<key>`.
    field: String,
    /// Ascending unless said otherwise.
    #[graphql(default)]
    direction: SortDirection,
}

/// What a metric computes over a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub(crate) enum MetricKind {
    /// Rows in the bucket; with a field, rows where it has a value.
    Count,
    /// The exact sum of a numeric field.
    Sum,
    /// The average of a numeric field, exact to nine decimals.
    Avg,
    /// The smallest value of a numeric field.
    Min,
    /// The largest value of a numeric field.
    Max,
}

/// A metric of each bucket: an operation, over a field (`data.<key>`, `agg.<name>`; not
/// needed for `COUNT`).
#[derive(Debug, InputObject)]
pub(crate) struct MetricInput {
    /// What to compute.
    op: MetricKind,
    /// The numeric field it reads.
    field: Option<String>,
}

/// What buckets sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Default)]
pub(crate) enum StatsSortBy {
    /// Their number of rows.
    #[default]
    Count,
    /// The group key at `index` (of `groupBy`).
    Key,
    /// The metric at `index` (of `metrics`).
    Metric,
}

/// How a breakdown's buckets are sorted before the first ones are kept; ties by their keys.
#[derive(Debug, InputObject)]
pub(crate) struct StatsOrder {
    /// Sort by the count, a key or a metric.
    #[graphql(default)]
    by: StatsSortBy,
    /// Which key or metric, from 0.
    #[graphql(default)]
    index: i32,
    /// Largest first unless said otherwise.
    #[graphql(default_with = "SortDirection::Desc")]
    direction: SortDirection,
}

/// The length of a time series' intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub(crate) enum StatsInterval {
    /// Days, from local midnight.
    Day,
    /// Weeks, from Monday's local midnight.
    Week,
    /// Calendar months, from the 1st's local midnight.
    Month,
}

impl StatsInterval {
    fn store(self) -> Interval {
        match self {
            Self::Day => Interval::Day,
            Self::Week => Interval::Week,
            Self::Month => Interval::Month,
        }
    }

    /// The shortest length of one interval, in days (for the complexity limit).
    fn days(self) -> i64 {
        match self {
            Self::Day => 1,
            Self::Week => 7,
            Self::Month => 28,
        }
    }
}

fn contact_field(path: &str) -> Result<FilterField> {
    Ok(FilterField::parse(path)?)
}

fn session_field(path: &str) -> Result<SessionField> {
    Ok(SessionField::parse(path)?)
}

fn direction(d: SortDirection) -> bool {
    d == SortDirection::Desc
}

/// The contact ordering `orderBy` asks for.
pub(crate) fn contact_order(order: &[OrderInput]) -> Result<Vec<OrderBy<FilterField>>> {
    order
        .iter()
        .map(|o| {
            Ok(OrderBy {
                field: contact_field(&o.field)?,
                descending: direction(o.direction),
            })
        })
        .collect()
}

fn metrics_of<F>(asked: &[MetricInput], parse: fn(&str) -> Result<F>) -> Result<Vec<Metric<F>>> {
    asked
        .iter()
        .map(|m| {
            let op = match m.op {
                MetricKind::Count => MetricOp::Count,
                MetricKind::Sum => MetricOp::Sum,
                MetricKind::Avg => MetricOp::Avg,
                MetricKind::Min => MetricOp::Min,
                MetricKind::Max => MetricOp::Max,
            };
            let field = m.field.as_deref().map(parse).transpose()?;
            if field.is_none() && op != MetricOp::Count {
                return Err(Error::new("sum, avg, min and max need a `field`"));
            }
            Ok(Metric { op, field })
        })
        .collect()
}

/// At most `max` buckets, intervals or group keys.
fn within(what: &str, n: usize, max: usize) -> Result<()> {
    if n > max {
        return Err(Error::new(format!(
            "{what}: {n} asked; at most {max} are allowed"
        )));
    }
    Ok(())
}

/// The most keys a breakdown may group by.
const MAX_GROUP_KEYS: usize = 4;

/// The most metrics a breakdown may compute.
const MAX_METRICS: usize = 10;

/// A filter over contacts that names only defined aggregates.
async fn contact_filter(
    ctx: &Context<'_>,
    input: Option<ContactFilter>,
    text: Option<String>,
) -> Result<Option<Filter>> {
    let filter = combine(input, text)?;
    if let Some(f) = &filter {
        defined_aggregates_only(ctx, f).await?;
    }
    Ok(filter)
}

/// Reads for dashboards.
#[derive(Debug, Default, Clone, Copy)]
pub struct DashboardQuery;

#[Object]
impl DashboardQuery {
    /// The workspace's sessions, optionally of one `kind`, of one `source`, started within
    /// [`from`, `to`), and matching a filter over their data (`where` or the text form
    /// `filter`: fields `data.<key>` only), in `orderBy` (newest first when not given; ties
    /// by id).
    #[graphql(
        guard = "RoleGuard(Role::Read)",
        complexity = "crate::limits::scan_cost(first, child_complexity)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn sessions(
        &self,
        ctx: &Context<'_>,
        kind: Option<String>,
        source: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        #[graphql(name = "where")] input: Option<ContactFilter>,
        filter: Option<String>,
        order_by: Option<Vec<OrderInput>>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<SessionConnection> {
        let gw = gateway(ctx)?;
        let first = page_size(gw, first)?;
        let filter = combine(input, filter)?;
        let order_by = order_by.unwrap_or_default();
        let order = order_by
            .iter()
            .map(|o| {
                Ok(OrderBy {
                    field: session_field(&o.field)?,
                    descending: direction(o.direction),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let spec = cursor::order_spec(
            order_by
                .iter()
                .map(|o| (o.field.clone(), direction(o.direction))),
        );
        let after = match after {
            Some(a) => Some(cursor::parse_ordered(&a, &spec).map_err(Error::new)?),
            None => None,
        };
        let q = SessionQuery {
            kind: kind.as_deref(),
            source: source.as_deref(),
            from: from.map(|t| t.timestamp_micros()),
            to: to.map(|t| t.timestamp_micros()),
            filter: filter.as_ref(),
            order: &order,
        };
        let page = gw
            .store
            .sessions_ordered(ws(ctx)?, &q, first, after.as_ref())
            .await?;
        Ok(SessionConnection::placed(page, &spec))
    }

    /// Contacts matching `where`/`filter`, grouped by up to four fields (`groupBy`: profile
    /// fields, `data.<key>`, `agg.<name>`) with a count and `metrics` per bucket: the
    /// `first` buckets in `orderBy` order (largest count first by default), and the totals
    /// over every matching contact. Sums and averages are exact decimals.
    #[graphql(
        guard = "RoleGuard(Role::Read)",
        complexity = "crate::limits::scan_cost(first, child_complexity)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn contact_stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "where")] input: Option<ContactFilter>,
        filter: Option<String>,
        #[graphql(default)] group_by: Vec<String>,
        #[graphql(default)] metrics: Vec<MetricInput>,
        order_by: Option<StatsOrder>,
        first: Option<i32>,
    ) -> Result<ContactStats> {
        let gw = gateway(ctx)?;
        let max = gw.config.max_buckets;
        let first = first.map_or(Ok(20.min(max)), |n| {
            usize::try_from(n)
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| Error::new(format!("first must be between 1 and {max} (got {n})")))
        })?;
        within("groupBy keys", group_by.len(), MAX_GROUP_KEYS)?;
        within("metrics", metrics.len(), MAX_METRICS)?;
        let filter = contact_filter(ctx, input, filter).await?;
        let group_by = group_by
            .iter()
            .map(|g| contact_field(g))
            .collect::<Result<Vec<_>>>()?;
        let metrics = metrics_of(&metrics, contact_field)?;
        defined_fields_only(
            ctx,
            group_by
                .iter()
                .chain(metrics.iter().filter_map(|m| m.field.as_ref())),
        )
        .await?;
        let order = order_by.unwrap_or(StatsOrder {
            by: StatsSortBy::Count,
            index: 0,
            direction: SortDirection::Desc,
        });
        let index = usize::try_from(order.index).unwrap_or(usize::MAX);
        let sort = match order.by {
            StatsSortBy::Count => StatsSort::Count,
            StatsSortBy::Key if index < group_by.len() => StatsSort::Key(index),
            StatsSortBy::Metric if index < metrics.len() => StatsSort::Metric(index),
            _ => {
                return Err(Error::new(
                    "orderBy.index names no key or metric of this breakdown",
                ));
            }
        };
        let q = StatsQuery {
            group_by: &group_by,
            metrics: &metrics,
            sort,
            descending: direction(order.direction),
            first,
        };
        let stats = gw
            .store
            .contact_stats(ws(ctx)?, filter.as_ref(), &q)
            .await?;
        Ok(ContactStats {
            buckets: stats.buckets.into_iter().map(StatsBucket::of).collect(),
            has_more: stats.more,
            totals: StatsBucket::of(stats.totals),
        })
    }

    /// Sessions (of `kind`, matching `where`/`filter` over their data) per `interval` of
    /// their start time in `timezone` (an IANA name, UTC by default), from the interval
    /// holding `from` to the one holding the instant before `to`, every interval included
    /// even when empty; grouped within each by up to four `groupBy` fields (`kind`, `source`,
    /// `stream`, `data.<key>`) when asked, with a count and `metrics` (over `data.<key>`).
    #[graphql(
        guard = "RoleGuard(Role::Read)",
        complexity = "crate::limits::series_cost(interval.days(), from.timestamp_micros(), to.timestamp_micros(), child_complexity)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn session_stats(
        &self,
        ctx: &Context<'_>,
        kind: Option<String>,
        #[graphql(name = "where")] input: Option<ContactFilter>,
        filter: Option<String>,
        #[graphql(default)] group_by: Vec<String>,
        #[graphql(default)] metrics: Vec<MetricInput>,
        interval: StatsInterval,
        #[graphql(default_with = "\"UTC\".to_string()")] timezone: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<SessionSeries> {
        let gw = gateway(ctx)?;
        let max = gw.config.max_buckets;
        within("groupBy keys", group_by.len(), MAX_GROUP_KEYS)?;
        within("metrics", metrics.len(), MAX_METRICS)?;
        let filter = combine(input, filter)?;
        let group_by = group_by
            .iter()
            .map(|g| session_field(g))
            .collect::<Result<Vec<_>>>()?;
        let metrics = metrics_of(&metrics, session_field)?;
        let range = Range {
            interval: interval.store(),
            timezone: &timezone,
            from: from.timestamp_micros(),
            to: to.timestamp_micros(),
            max_intervals: max,
        };
        let series = gw
            .store
            .session_stats(
                ws(ctx)?,
                kind.as_deref(),
                filter.as_ref(),
                &group_by,
                &metrics,
                &range,
                max,
            )
            .await?;
        Ok(SessionSeries {
            points: series
                .points
                .into_iter()
                .map(|p| SeriesPoint {
                    start: from_micros(p.start),
                    end: from_micros(p.end),
                    totals: StatsBucket::of(p.totals),
                    groups: p.groups.into_iter().map(StatsBucket::of).collect(),
                })
                .collect(),
            totals: StatsBucket::of(series.totals),
        })
    }
}

/// One bucket of a breakdown.
#[derive(SimpleObject)]
pub(crate) struct StatsBucket {
    /// The bucket's value of each `groupBy` field, in order (null: contacts without one).
    keys: Vec<Json<serde_json::Value>>,
    /// Rows in the bucket.
    count: i64,
    /// Each metric, in the order asked, as an exact decimal (null: no row had a value).
    metrics: Vec<Option<String>>,
}

impl StatsBucket {
    fn of(b: Bucket) -> Self {
        Self {
            keys: b
                .keys
                .into_iter()
                .map(|k| Json(k.map_or(serde_json::Value::Null, |v| v.to_json())))
                .collect(),
            count: b.count,
            metrics: b
                .metrics
                .into_iter()
                .map(|m| m.map(|d| d.to_string()))
                .collect(),
        }
    }
}

/// A breakdown of contacts.
#[derive(SimpleObject)]
pub(crate) struct ContactStats {
    /// The first buckets, in the order asked.
    buckets: Vec<StatsBucket>,
    /// More buckets exist than `first`.
    has_more: bool,
    /// Every matching contact as one bucket (no keys).
    totals: StatsBucket,
}

/// One interval of a time series.
#[derive(SimpleObject)]
pub(crate) struct SeriesPoint {
    /// Where it starts (inclusive).
    start: DateTime<Utc>,
    /// Where it ends (exclusive): the next one's start.
    end: DateTime<Utc>,
    /// Its sessions as one bucket.
    totals: StatsBucket,
    /// Its sessions per group, most first (empty without `groupBy`).
    groups: Vec<StatsBucket>,
}

/// A time series of sessions.
#[derive(SimpleObject)]
pub(crate) struct SessionSeries {
    /// Every interval of the range, in order.
    points: Vec<SeriesPoint>,
    /// Every session of the range as one bucket.
    totals: StatsBucket,
}
