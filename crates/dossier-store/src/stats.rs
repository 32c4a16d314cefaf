//! Breakdowns and time series: contacts grouped by fields with counts and metrics, sessions
//! per day, week or month in a time zone, and a segment's entries and exits per day.
//!
//! Sums and averages are exact decimals in the aggregates' fixed point (nine decimals,
//! [`dossier_core::SUM_SCALE`]): each value is rounded to nine decimals and the sum is
//! taken in integers (SQLite) or `NUMERIC` (PostgreSQL), never in floating point; an
//! average is that sum over the count, rounded half away from zero as aggregates are.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeZone, Utc};
use dossier_core::{DataValue, Filter, FilterField, SUM_SCALE, exact_ratio};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::columns::{ContactFields, FieldSql, SessionField, session_field};
use crate::encoding::decode_value;
use crate::filter_sql::{Bind, SqlBuilder, bind_all, session_filter_fields};
use crate::order::naming;
use crate::{Result, SqlStore, StoreError};

/// What a metric computes over a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricOp {
    /// Rows in the bucket (with a field: rows where it has a value).
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

/// A metric: an operation over a numeric field (none for a plain count).
#[derive(Debug, Clone, PartialEq)]
pub struct Metric<F> {
    pub op: MetricOp,
    pub field: Option<F>,
}

/// How buckets are sorted before the first ones are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsSort {
    /// By the rows in the bucket.
    Count,
    /// By the group key at this index.
    Key(usize),
    /// By the metric at this index.
    Metric(usize),
}

/// What a breakdown groups, measures and keeps.
#[derive(Debug, Clone)]
pub struct StatsQuery<'a, F> {
    pub group_by: &'a [F],
    pub metrics: &'a [Metric<F>],
    pub sort: StatsSort,
    pub descending: bool,
    /// The most buckets to return (a breakdown with more says so).
    pub first: usize,
}

/// An exact decimal: a number of billionths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Decimal(pub i128);

impl Decimal {
    fn of(x: f64) -> Self {
        Self((x * SUM_SCALE).round() as i128)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = SUM_SCALE as i128;
        let (int, frac) = (self.0.abs() / scale, self.0.abs() % scale);
        let sign = if self.0 < 0 { "-" } else { "" };
        if frac == 0 {
            return write!(f, "{sign}{int}");
        }
        let frac = format!("{frac:09}");
        write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
    }
}

/// One bucket: its keys (in `group_by` order; `None` where the field has no value), its rows
/// and its metrics (in `metrics` order; `None` where no row had a value).
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub keys: Vec<Option<DataValue>>,
    pub count: i64,
    pub metrics: Vec<Option<Decimal>>,
}

/// A breakdown: its first buckets, whether more were left out, and the totals of all rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub buckets: Vec<Bucket>,
    pub more: bool,
    pub totals: Bucket,
}

/// The length of a time series' intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Day,
    /// Weeks start on Monday.
    Week,
    Month,
}

/// A time series' range: whole intervals in a time zone, from the one holding `from` to the
/// one holding the instant before `to` (epoch microseconds).
#[derive(Debug, Clone)]
pub struct Range<'a> {
    pub interval: Interval,
    /// An IANA time zone name (`Europe/Paris`), or `UTC`.
    pub timezone: &'a str,
    pub from: i64,
    pub to: i64,
    /// The most intervals the range may hold.
    pub max_intervals: usize,
}

/// One interval of a series: `[start, end)` in epoch microseconds, its totals, and its
/// buckets when grouped.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub start: i64,
    pub end: i64,
    pub totals: Bucket,
    pub groups: Vec<Bucket>,
}

/// A time series: every interval of its range, empty ones included, and the totals.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub points: Vec<Point>,
    pub totals: Bucket,
}

/// A day of a segment's history: who entered and who left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDay {
    pub start: i64,
    pub end: i64,
    pub entered: i64,
    pub left: i64,
}

/// The intervals of `range`, `[start, end)` each; local midnights that a DST change skips
/// start at the first instant that exists.
pub fn intervals(range: &Range<'_>) -> Result<Vec<(i64, i64)>> {
    let tz: chrono_tz::Tz = range.timezone.parse().map_err(|_| {
        StoreError::Refused(format!(
            "unknown time zone {:?}; use an IANA name such as Europe/Paris, or UTC",
            range.timezone
        ))
    })?;
    if range.to <= range.from {
        return Err(StoreError::Refused("`to` must be after `from`".into()));
    }
    let micros = |d: NaiveDate| -> i64 {
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight");
        // A zone may skip midnight (DST at 00:00): the interval starts when the day does.
        (0..=3)
            .find_map(|h| {
                tz.from_local_datetime(&(midnight + chrono::Duration::hours(h)))
                    .earliest()
            })
            .map_or(i64::MIN, |t| t.timestamp_micros())
    };
    let local = |t: i64| {
        DateTime::<Utc>::from_timestamp_micros(t)
            .unwrap_or_default()
            .with_timezone(&tz)
            .date_naive()
    };
    let first = local(range.from);
    let mut day = match range.interval {
        Interval::Day => first,
        Interval::Week => first - Days::new(u64::from(first.weekday().num_days_from_monday())),
        Interval::Month => first.with_day(1).expect("day 1"),
    };
    let next = |d: NaiveDate| match range.interval {
        Interval::Day => d + Days::new(1),
        Interval::Week => d + Days::new(7),
        Interval::Month => d + Months::new(1),
    };
    let mut out = vec![];
    while micros(day) < range.to {
        if out.len() == range.max_intervals {
            return Err(StoreError::Refused(format!(
                "the range holds more than {} intervals; at most {} are allowed",
                range.max_intervals, range.max_intervals
            )));
        }
        out.push((micros(day), micros(next(day))));
        day = next(day);
    }
    Ok(out)
}

/// The SQL of one metric's inputs and results, as the store computes them.
struct MetricSql {
    op: MetricOp,
    /// The numeric input, selected as `v{i}` by the inner query (none for a plain count).
    input: Option<String>,
}

/// A metric's partial result: an exact sum and how many values, or an extreme.
#[derive(Debug, Clone, Copy, Default)]
struct Part {
    n: i64,
    sum: Option<i128>,
    extreme: Option<i128>,
}

/// A bucket before its metrics are final: what merging buckets needs (totals are merged
/// from buckets rather than read again when every bucket was read).
#[derive(Debug, Clone)]
struct Acc {
    keys: Vec<Option<DataValue>>,
    count: i64,
    parts: Vec<Part>,
}

impl Acc {
    fn empty(metrics: &[MetricSql]) -> Self {
        Self {
            keys: vec![],
            count: 0,
            parts: vec![Part::default(); metrics.len()],
        }
    }

    fn merge(&mut self, other: &Acc, metrics: &[MetricSql]) {
        self.count += other.count;
        for ((a, b), m) in self.parts.iter_mut().zip(&other.parts).zip(metrics) {
            a.n += b.n;
            a.sum = match (a.sum, b.sum) {
                (Some(x), Some(y)) => Some(x + y),
                (x, y) => x.or(y),
            };
            a.extreme = match (a.extreme, b.extreme) {
                (Some(x), Some(y)) if m.op == MetricOp::Min => Some(x.min(y)),
                (Some(x), Some(y)) => Some(x.max(y)),
                (x, y) => x.or(y),
            };
        }
    }

    fn bucket(self, metrics: &[MetricSql]) -> Bucket {
        let values = self
            .parts
            .iter()
            .zip(metrics)
            .map(|(p, m)| match m.op {
                MetricOp::Count if m.input.is_none() => {
                    Some(Decimal(self.count as i128 * SUM_SCALE as i128))
                }
                MetricOp::Count => Some(Decimal(p.n as i128 * SUM_SCALE as i128)),
                MetricOp::Sum => p.sum.map(Decimal),
                MetricOp::Avg => p
                    .sum
                    .filter(|_| p.n > 0)
                    .map(|s| Decimal(exact_ratio(s, p.n as u64))),
                MetricOp::Min | MetricOp::Max => p.extreme.map(Decimal),
            })
            .collect();
        Bucket {
            keys: self.keys,
            count: self.count,
            metrics: values,
        }
    }
}

/// A group key as SQL: the grouped expression, how to read it back, and what it sorts by.
struct KeySql {
    expr: String,
    time: bool,
    custom: bool,
    /// For a custom value, its number and string (a key sorts by them, not by its JSON).
    sort: Vec<String>,
}

fn key_sql(f: FieldSql) -> KeySql {
    match f {
        FieldSql::Text(e) => KeySql {
            sort: vec![e.clone()],
            expr: e,
            time: false,
            custom: false,
        },
        FieldSql::Time(e) => KeySql {
            sort: vec![e.clone()],
            expr: e,
            time: true,
            custom: false,
        },
        FieldSql::Custom { num, txt, value } => KeySql {
            expr: value,
            time: false,
            custom: true,
            sort: vec![num, txt],
        },
    }
}

fn metric_sql<F>(m: &Metric<F>, field: Option<FieldSql>) -> Result<MetricSql> {
    let input = match field {
        None if m.op == MetricOp::Count => None,
        Some(FieldSql::Custom { num, .. }) => Some(num),
        _ => {
            return Err(StoreError::Refused(
                "sum, avg, min and max need a numeric field (data.<key> or agg.<name>)".into(),
            ));
        }
    };
    Ok(MetricSql { op: m.op, input })
}

/// The aggregate select list over the inner query's `g*`, `v*` columns.
fn aggregates_sql(metrics: &[MetricSql], sqlite: bool) -> String {
    let mut out = String::from("COUNT(*) AS n");
    for (i, m) in metrics.iter().enumerate() {
        let Some(_) = &m.input else { continue };
        let v = format!("t.v{i}");
        out += &match m.op {
            MetricOp::Count => format!(", COUNT({v}) AS c{i}"),
            MetricOp::Sum | MetricOp::Avg if sqlite => format!(
                // Integer and fractional parts summed apart: each fits an INTEGER where
                // the value in billionths might not.
                ", COUNT({v}) AS c{i}, CAST(SUM(CAST({v} AS INTEGER)) AS TEXT) || ' ' || \
                 CAST(SUM(CAST(ROUND(({v} - CAST({v} AS INTEGER)) * 1000000000) AS INTEGER)) AS TEXT) AS s{i}"
            ),
            MetricOp::Sum | MetricOp::Avg => format!(
                ", COUNT({v}) AS c{i}, CAST(SUM(ROUND(CAST({v} AS NUMERIC), 9)) AS TEXT) AS s{i}"
            ),
            MetricOp::Min => format!(", MIN({v}) AS x{i}"),
            MetricOp::Max => format!(", MAX({v}) AS x{i}"),
        };
    }
    out
}

/// A sum as the database returns it: `"<integers> <billionths>"` (SQLite) or a decimal.
fn parse_sum(text: &str) -> Result<i128> {
    let bad = || StoreError::corrupt("sum", text);
    if let Some((int, frac)) = text.split_once(' ') {
        let int: i128 = int.parse().map_err(|_| bad())?;
        let frac: i128 = frac.parse().map_err(|_| bad())?;
        return Ok(int * SUM_SCALE as i128 + frac);
    }
    let negative = text.starts_with('-');
    let (int, frac) = text
        .trim_start_matches('-')
        .split_once('.')
        .unwrap_or((text.trim_start_matches('-'), ""));
    let frac = format!("{frac:0<9}");
    let value = int.parse::<i128>().map_err(|_| bad())? * SUM_SCALE as i128
        + frac
            .get(..9)
            .unwrap_or("0")
            .parse::<i128>()
            .map_err(|_| bad())?;
    Ok(if negative { -value } else { value })
}

fn read_acc(r: &AnyRow, keys: &[KeySql], metrics: &[MetricSql]) -> Result<Acc> {
    let keys = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let col = format!("g{i}");
            Ok(if k.time {
                r.try_get::<Option<i64>, _>(col.as_str())?
                    .map(|t| DataValue::DateTime(dossier_core::value::from_micros(t)))
            } else if k.custom {
                r.try_get::<Option<String>, _>(col.as_str())?
                    .map(|v| decode_value(&v))
                    .transpose()?
            } else {
                r.try_get::<Option<String>, _>(col.as_str())?
                    .map(DataValue::String)
            })
        })
        .collect::<Result<_>>()?;
    let parts = metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if m.input.is_none() {
                return Ok(Part::default());
            }
            Ok(match m.op {
                MetricOp::Count => Part {
                    n: r.try_get(format!("c{i}").as_str())?,
                    ..Part::default()
                },
                MetricOp::Sum | MetricOp::Avg => Part {
                    n: r.try_get(format!("c{i}").as_str())?,
                    sum: r
                        .try_get::<Option<String>, _>(format!("s{i}").as_str())?
                        .map(|s| parse_sum(&s))
                        .transpose()?,
                    extreme: None,
                },
                MetricOp::Min | MetricOp::Max => Part {
                    extreme: r
                        .try_get::<Option<f64>, _>(format!("x{i}").as_str())?
                        .map(|x| Decimal::of(x).0),
                    ..Part::default()
                },
            })
        })
        .collect::<Result<_>>()?;
    Ok(Acc {
        keys,
        count: r.try_get("n")?,
        parts,
    })
}

/// `ORDER BY` of a breakdown: the sort asked for, then the keys, so the order is total.
fn bucket_order(
    sort: StatsSort,
    descending: bool,
    keys: &[KeySql],
    metrics: &[MetricSql],
) -> String {
    let dir = if descending { "DESC" } else { "ASC" };
    let key_cols = |i: usize, dir: &str| -> Vec<String> {
        (0..keys[i].sort.len())
            .map(|j| format!("MIN(t.o{i}_{j}) {dir} NULLS LAST"))
            .collect()
    };
    let mut parts = match sort {
        StatsSort::Count => vec![format!("COUNT(*) {dir}")],
        StatsSort::Key(i) => key_cols(i, dir),
        StatsSort::Metric(i) => vec![match (&metrics[i].op, &metrics[i].input) {
            (_, None) => format!("COUNT(*) {dir}"),
            (MetricOp::Count, Some(_)) => format!("COUNT(t.v{i}) {dir}"),
            (MetricOp::Sum, Some(_)) => format!("SUM(t.v{i}) {dir} NULLS LAST"),
            (MetricOp::Avg, Some(_)) => format!("AVG(t.v{i}) {dir} NULLS LAST"),
            (MetricOp::Min, Some(_)) => format!("MIN(t.v{i}) {dir} NULLS LAST"),
            (MetricOp::Max, Some(_)) => format!("MAX(t.v{i}) {dir} NULLS LAST"),
        }],
    };
    for i in 0..keys.len() {
        parts.extend(key_cols(i, "ASC"));
    }
    parts.join(", ")
}

/// The inner select list: group keys `g*` with their sort values `o*_*`, metric inputs `v*`.
fn inner_cols(keys: &[KeySql], metrics: &[MetricSql]) -> String {
    let mut cols = vec!["1 AS one".to_string()];
    for (i, k) in keys.iter().enumerate() {
        cols.push(format!("{} AS g{i}", k.expr));
        for (j, s) in k.sort.iter().enumerate() {
            cols.push(format!("{s} AS o{i}_{j}"));
        }
    }
    for (i, m) in metrics.iter().enumerate() {
        if let Some(v) = &m.input {
            cols.push(format!("{v} AS v{i}"));
        }
    }
    cols.join(", ")
}

fn group_list(keys: &[KeySql], extra: &[&str]) -> String {
    let mut g: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    g.extend((0..keys.len()).map(|i| format!("t.g{i}")));
    if g.is_empty() {
        String::new()
    } else {
        format!(" GROUP BY {}", g.join(", "))
    }
}

fn total(accs: &[Acc], metrics: &[MetricSql]) -> Acc {
    let mut t = Acc::empty(metrics);
    for a in accs {
        t.merge(a, metrics);
    }
    t
}

impl SqlStore {
    fn sqlite(&self) -> bool {
        self.backend == crate::Backend::Sqlite
    }

    /// Contacts matching `filter`, grouped by `q.group_by` with a count and `q.metrics` per
    /// group, the first `q.first` groups in `q.sort` order, and the totals of all contacts.
    pub async fn contact_stats(
        &self,
        ws: &str,
        filter: Option<&Filter>,
        q: &StatsQuery<'_, FilterField>,
    ) -> Result<Stats> {
        let sqlite = self.sqlite();
        let names = naming(
            q.group_by
                .iter()
                .chain(q.metrics.iter().filter_map(|m| m.field.as_ref())),
        );
        let empty = self.empty_aggregates(ws, Some(&names)).await?;
        let mut b =
            SqlBuilder::new(0).with_empty_aggregates(self.empty_aggregates(ws, filter).await?);
        let ws_p = b.param(Bind::Text(ws.into()));
        let mut fields = ContactFields::new(&empty, sqlite);
        let keys: Vec<KeySql> = q
            .group_by
            .iter()
            .map(|f| key_sql(fields.field(&mut b, f)))
            .collect();
        let metrics = q
            .metrics
            .iter()
            .map(|m| metric_sql(m, m.field.as_ref().map(|f| fields.field(&mut b, f))))
            .collect::<Result<Vec<_>>>()?;
        let cond = filter.map_or_else(|| "1 = 1".to_string(), |f| b.filter(f));
        let inner = format!(
            "SELECT {cols} FROM contacts c {joins} WHERE c.workspace = {ws_p} AND c.merged_into IS NULL AND {cond}",
            cols = inner_cols(&keys, &metrics),
            joins = fields.joins.join(" "),
        );
        self.breakdown(&inner, b, &keys, &metrics, q).await
    }

    /// The shared half of a breakdown: group the rows of `inner`, keep the first groups and
    /// read the totals again only when some groups were left out.
    async fn breakdown<F>(
        &self,
        inner: &str,
        mut b: SqlBuilder,
        keys: &[KeySql],
        metrics: &[MetricSql],
        q: &StatsQuery<'_, F>,
    ) -> Result<Stats> {
        let sqlite = self.sqlite();
        let aggs = aggregates_sql(metrics, sqlite);
        let limit_p = b.param(Bind::Int(q.first as i64 + 1));
        let grouped = if keys.is_empty() {
            format!("SELECT {aggs} FROM ({inner}) t")
        } else {
            let cols: String = (0..keys.len())
                .map(|i| format!("t.g{i} AS g{i}, "))
                .collect();
            format!(
                "SELECT {cols}{aggs} FROM ({inner}) t{group} ORDER BY {order} LIMIT {limit_p}",
                group = group_list(keys, &[]),
                order = bucket_order(q.sort, q.descending, keys, metrics),
            )
        };
        let rows = bind_all(sqlx::query(AssertSqlSafe(grouped)), &b.binds)
            .fetch_all(&self.read)
            .await?;
        let mut accs = rows
            .iter()
            .map(|r| read_acc(r, keys, metrics))
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            let totals = accs.pop().unwrap_or_else(|| Acc::empty(metrics));
            return Ok(Stats {
                buckets: vec![],
                more: false,
                totals: totals.bucket(metrics),
            });
        }
        let more = accs.len() > q.first;
        accs.truncate(q.first);
        let totals = if more {
            let sql = format!("SELECT {aggs} FROM ({inner}) t");
            // The totals read has no LIMIT: without its parameter.
            b.binds.pop();
            let row = bind_all(sqlx::query(AssertSqlSafe(sql)), &b.binds)
                .fetch_one(&self.read)
                .await?;
            read_acc(&row, &[], metrics)?
        } else {
            total(&accs, metrics)
        };
        Ok(Stats {
            buckets: accs.into_iter().map(|a| a.bucket(metrics)).collect(),
            more,
            totals: totals.bucket(metrics),
        })
    }

    /// Sessions of `kind` (all kinds when `None`) whose data matches `filter`, per interval
    /// of `range` by their start time (every interval, empty ones included), grouped by
    /// `group_by` within each when asked, with a count and `metrics`. At most `max_groups`
    /// (interval, group) pairs.
    #[allow(clippy::too_many_arguments)]
    pub async fn session_stats(
        &self,
        ws: &str,
        kind: Option<&str>,
        filter: Option<&Filter>,
        group_by: &[SessionField],
        metrics: &[Metric<SessionField>],
        range: &Range<'_>,
        max_groups: usize,
    ) -> Result<Series> {
        let sqlite = self.sqlite();
        if let Some(f) = filter {
            session_filter_fields(f)?;
        }
        let bounds = intervals(range)?;
        let mut b = SqlBuilder::new(0).over_sessions(sqlite);
        let ws_p = b.param(Bind::Text(ws.into()));
        let keys: Vec<KeySql> = group_by
            .iter()
            .map(|f| key_sql(session_field(&mut b, f, sqlite)))
            .collect();
        let metrics = metrics
            .iter()
            .map(|m| {
                metric_sql(
                    m,
                    m.field.as_ref().map(|f| session_field(&mut b, f, sqlite)),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mut cond = match kind {
            Some(k) => format!("s.kind = {}", b.param(Bind::Text(k.into()))),
            None => "1 = 1".into(),
        };
        if let Some(f) = filter {
            cond = format!("{cond} AND {}", b.filter(f));
        }
        let limit_p = b.param(Bind::Int(max_groups as i64 + 1));
        let sql = format!(
            "SELECT t.iv AS iv, {gcols}{aggs} FROM (SELECT {bucket} AS iv, {cols} FROM sessions s \
             WHERE s.workspace = {ws_p} AND s.deleted = 0 AND {within} AND {cond}) t{group} \
             ORDER BY t.iv LIMIT {limit_p}",
            bucket = bucket_of("s.started_at", &bounds),
            within = within("s.started_at", &bounds),
            gcols = (0..keys.len())
                .map(|i| format!("t.g{i} AS g{i}, "))
                .collect::<String>(),
            aggs = aggregates_sql(&metrics, sqlite),
            cols = inner_cols(&keys, &metrics),
            group = group_list(&keys, &["t.iv"]),
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &b.binds)
            .fetch_all(&self.read)
            .await?;
        if rows.len() > max_groups {
            return Err(StoreError::Refused(format!(
                "the series has more than {max_groups} buckets (intervals times groups); ask for a shorter range, a longer interval or fewer groups"
            )));
        }
        let mut per: HashMap<i64, Vec<Acc>> = HashMap::new();
        for r in &rows {
            per.entry(r.try_get("iv")?)
                .or_default()
                .push(read_acc(r, &keys, &metrics)?);
        }
        let mut all = vec![];
        let points = bounds
            .iter()
            .enumerate()
            .map(|(i, (start, end))| {
                let mut groups = per.remove(&(i as i64)).unwrap_or_default();
                let totals = total(&groups, &metrics);
                all.push(totals.clone());
                if !keys.is_empty() {
                    groups.sort_by_key(|g| std::cmp::Reverse(g.count));
                }
                Point {
                    start: *start,
                    end: *end,
                    totals: totals.bucket(&metrics),
                    groups: if keys.is_empty() {
                        vec![]
                    } else {
                        groups.into_iter().map(|g| g.bucket(&metrics)).collect()
                    },
                }
            })
            .collect();
        Ok(Series {
            points,
            totals: total(&all, &metrics).bucket(&metrics),
        })
    }

    /// How many contacts entered and left a saved segment per day of `range` (from its
    /// change feed), every day included.
    pub async fn segment_history(
        &self,
        ws: &str,
        segment: &str,
        range: &Range<'_>,
    ) -> Result<Vec<SegmentDay>> {
        let bounds = intervals(range)?;
        let mut b = SqlBuilder::new(0);
        let ws_p = b.param(Bind::Text(ws.into()));
        let seg_p = b.param(Bind::Text(segment.into()));
        let sql = format!(
            "SELECT t.iv AS iv, SUM(CASE WHEN t.change = 'entered' THEN 1 ELSE 0 END) AS entered, \
             SUM(CASE WHEN t.change = 'left' THEN 1 ELSE 0 END) AS exits \
             FROM (SELECT {bucket} AS iv, x.change AS change FROM segment_changes x \
             WHERE x.workspace = {ws_p} AND x.segment = {seg_p} AND {within}) t GROUP BY t.iv",
            bucket = bucket_of("x.at", &bounds),
            within = within("x.at", &bounds),
        );
        let mut per: HashMap<i64, (i64, i64)> = HashMap::new();
        for r in bind_all(sqlx::query(AssertSqlSafe(sql)), &b.binds)
            .fetch_all(&self.read)
            .await?
        {
            per.insert(
                r.try_get("iv")?,
                (r.try_get("entered")?, r.try_get("exits")?),
            );
        }
        Ok(bounds
            .iter()
            .enumerate()
            .map(|(i, (start, end))| {
                let (entered, left) = per.get(&(i as i64)).copied().unwrap_or_default();
                SegmentDay {
                    start: *start,
                    end: *end,
                    entered,
                    left,
                }
            })
            .collect())
    }
}

/// The index of the interval of `bounds` (sorted, each ending where the next starts) that
/// `expr` falls in, as a CASE halving the intervals at each step: one pass over the rows,
/// each placed in log2(n) comparisons, where a join with a table of intervals reads the rows
/// once per interval. The bounds are integers the store computed: written as literals.
fn bucket_of(expr: &str, bounds: &[(i64, i64)]) -> String {
    fn split(expr: &str, bounds: &[(i64, i64)], lo: usize, hi: usize) -> String {
        if hi - lo <= 1 {
            return lo.to_string();
        }
        let mid = (lo + hi) / 2;
        format!(
            "CASE WHEN {expr} < {} THEN {} ELSE {} END",
            bounds[mid].0,
            split(expr, bounds, lo, mid),
            split(expr, bounds, mid, hi)
        )
    }
    split(expr, bounds, 0, bounds.len())
}

/// `expr` within the intervals of `bounds` (none when there are none).
fn within(expr: &str, bounds: &[(i64, i64)]) -> String {
    match (bounds.first(), bounds.last()) {
        (Some((from, _)), Some((_, to))) => format!("{expr} >= {from} AND {expr} < {to}"),
        _ => "1 = 0".into(),
    }
}
