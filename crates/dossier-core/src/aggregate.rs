//! Aggregate rules: session data rolled up into contact data, maintained incrementally.
//!
//! Every session contributes at most one [`Contribution`] per rule. [`AggState`] adds and
//! removes contributions; count, sum and avg are always invertible (sums are kept in exact
//! fixed point so that adding and removing is order independent), distinct_count keeps a
//! multiset, and min/max/first/last ask for a recompute of that one contact only when the
//! contribution removed was the current extreme.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::condition::SessionCondition;
use crate::value::from_micros;
use crate::{CoreError, DataKey, DataValue};

/// The field name that means the session's own start time rather than a data key.
pub const STARTED_AT_FIELD: &str = "started_at";

/// Microseconds in a second, for windows given in seconds.
const MICROS: i64 = 1_000_000;

/// Fixed-point scale for sums: 9 decimal places are kept exactly.
pub const SUM_SCALE: f64 = 1e9;

/// The operation of an aggregate rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggOp {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
    DistinctCount,
}

impl AggOp {
    pub fn needs_field(self) -> bool {
        !matches!(self, AggOp::Count)
    }
}

/// `name = op(kind.field) where condition within window`, e.g.
/// `paid_90d = sum(order.total) where data.status = "paid" within 90 days`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateRule {
    pub name: DataKey,
    pub op: AggOp,
    /// The session kind the rule rolls up.
    pub kind: String,
    /// The session data key (absent for `count`); `started_at` is the session's start time.
    pub field: Option<DataKey>,
    /// Only sessions matching this condition count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<SessionCondition>,
    /// Only sessions that started within this many seconds before now count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<i64>,
}

impl AggregateRule {
    pub fn new(name: &str, op: AggOp, kind: &str, field: Option<&str>) -> Result<Self, CoreError> {
        let err = |reason: String| CoreError::Rule {
            name: name.to_string(),
            reason,
        };
        let name_key = DataKey::new(name).map_err(|e| err(e.to_string()))?;
        crate::model::validate_kind(kind).map_err(|e| err(format!("session kind: {e}")))?;
        let field = match (op.needs_field(), field) {
            (true, None) => {
                return Err(err(
                    format!("{op:?} needs a `field` (a session data key)").to_lowercase()
                ));
            }
            (_, Some(f)) => Some(DataKey::new(f).map_err(|e| err(e.to_string()))?),
            (false, None) => None,
        };
        Ok(Self {
            name: name_key,
            op,
            kind: kind.to_string(),
            field,
            condition: None,
            window_secs: None,
        })
    }

    /// Counts only sessions matching `condition` (segment text form over `data.<key>`).
    pub fn with_condition(mut self, condition: &str) -> Result<Self, CoreError> {
        self.condition = Some(
            SessionCondition::parse(condition).map_err(|e| CoreError::Rule {
                name: self.name.to_string(),
                reason: e.to_string(),
            })?,
        );
        Ok(self)
    }

    /// Counts only sessions that started within `secs` seconds before now.
    pub fn with_window(mut self, secs: i64) -> Result<Self, CoreError> {
        if secs <= 0 {
            return Err(CoreError::Rule {
                name: self.name.to_string(),
                reason: format!("window must be positive, got {secs} seconds"),
            });
        }
        self.window_secs = Some(secs);
        Ok(self)
    }

    /// The window's start at `now` (epoch microseconds): sessions that started after it count.
    pub fn window_start(&self, now: i64) -> Option<i64> {
        self.window_secs
            .map(|w| now.saturating_sub(w.saturating_mul(MICROS)))
    }

    /// When a contribution made at `at` leaves the window, if the rule has one.
    pub fn expiry_of(&self, at: i64) -> Option<i64> {
        self.window_secs
            .map(|w| at.saturating_add(w.saturating_mul(MICROS)))
    }

    /// What one session contributes to this rule at time `now`, if anything.
    pub fn contribution(
        &self,
        session_id: i64,
        kind: &str,
        started_at: i64,
        data: &BTreeMap<String, DataValue>,
        now: i64,
    ) -> Option<Contribution> {
        if kind != self.kind {
            return None;
        }
        if self
            .window_start(now)
            // Half-open: a session leaves the window at the instant its expiry names, so a
            // sweep at that instant refolds it away instead of counting it and expiring again.
            .is_some_and(|start| started_at <= start)
        {
            return None;
        }
        if self.condition.as_ref().is_some_and(|c| !c.matches(data)) {
            return None;
        }
        let value = match &self.field {
            None => None,
            Some(f) if f.as_str() == STARTED_AT_FIELD => {
                Some(DataValue::DateTime(from_micros(started_at)))
            }
            Some(f) => Some(data.get(f.as_str())?.clone()),
        };
        if matches!(self.op, AggOp::Sum | AggOp::Avg)
            && !matches!(value, Some(DataValue::Number(_)))
        {
            return None;
        }
        Some(Contribution {
            session_id,
            at: started_at,
            value,
        })
    }

    /// A stable text form, used to notice when a rule's definition changed.
    pub fn signature(&self) -> String {
        let mut s = format!(
            "{:?}({}.{})",
            self.op,
            self.kind,
            self.field.as_ref().map_or("*", |f| f.as_str())
        )
        .to_lowercase();
        if let Some(c) = &self.condition {
            s.push_str(" where ");
            s.push_str(&c.text());
        }
        if let Some(w) = self.window_secs {
            s.push_str(&format!(" within {w}s"));
        }
        s
    }
}

/// One session's part in one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub session_id: i64,
    /// The session's start, epoch microseconds (orders first/last).
    pub at: i64,
    pub value: Option<DataValue>,
}

/// Removing this contribution needs the contact's sessions to be folded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsRecompute;

/// The running state of one rule for one contact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AggState {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: u64,
    /// Sum in units of 1e-9, exact under any order of adds and removes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_i128_str"
    )]
    pub sum: Option<i128>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<Contribution>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub distinct: BTreeMap<String, u64>,
    /// For windowed rules: no later than the first moment a counted session leaves the
    /// window (epoch microseconds). Early is harmless (a recompute finds nothing changed);
    /// late would be wrong, so removals never move it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

mod opt_i128_str {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<i128>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_str(&n.to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i128>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `sum / count` in the sums' fixed point (1e-9), rounded half away from zero: an average is
/// exact to nine decimals, so the average of 5.66, 5.66 and 5.66 is 5.66, as SQL's decimal
/// `AVG` says, not 5.659999999999999.
pub fn exact_ratio(sum: i128, count: u64) -> i128 {
    let count = i128::from(count.max(1));
    let (q, r) = (sum / count, sum % count);
    if 2 * r.abs() >= count {
        q + sum.signum()
    } else {
        q
    }
}

fn fixed(v: &Option<DataValue>) -> i128 {
    match v {
        Some(DataValue::Number(n)) => (n * SUM_SCALE).round() as i128,
        _ => 0,
    }
}

/// Total order used by min/max/first/last; `Less` means "comes first".
fn value_order(a: &DataValue, b: &DataValue) -> std::cmp::Ordering {
    match (a.as_sort_number(), b.as_sort_number()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.as_text().cmp(&b.as_text()),
    }
}

/// Does `c` beat the current `best` for this op?
fn beats(op: AggOp, c: &Contribution, best: &Contribution) -> bool {
    use std::cmp::Ordering::*;
    let by_time = (c.at, c.session_id).cmp(&(best.at, best.session_id));
    match op {
        AggOp::First => by_time == Less,
        AggOp::Last => by_time == Greater,
        AggOp::Min | AggOp::Max => {
            let (Some(a), Some(b)) = (&c.value, &best.value) else {
                return false;
            };
            let ord = value_order(a, b);
            let ord = if op == AggOp::Max { ord.reverse() } else { ord };
            // Ties go to the lowest session id so the result does not depend on order.
            ord == Less || (ord == Equal && c.session_id < best.session_id)
        }
        _ => false,
    }
}

fn distinct_key(v: &Option<DataValue>) -> String {
    v.as_ref().map_or_else(String::new, |v| {
        serde_json::to_string(v).unwrap_or_default()
    })
}

impl AggState {
    pub fn add(&mut self, op: AggOp, c: &Contribution) {
        self.count += 1;
        match op {
            AggOp::Count => {}
            AggOp::Sum | AggOp::Avg => *self.sum.get_or_insert(0) += fixed(&c.value),
            AggOp::Min | AggOp::Max | AggOp::First | AggOp::Last => match &self.best {
                Some(best) if !beats(op, c, best) => {}
                _ => self.best = Some(c.clone()),
            },
            AggOp::DistinctCount => *self.distinct.entry(distinct_key(&c.value)).or_insert(0) += 1,
        }
    }

    /// Removes a contribution that was added before.
    pub fn remove(&mut self, op: AggOp, c: &Contribution) -> Result<(), NeedsRecompute> {
        self.count = self.count.saturating_sub(1);
        match op {
            AggOp::Count => {}
            AggOp::Sum | AggOp::Avg => *self.sum.get_or_insert(0) -= fixed(&c.value),
            AggOp::Min | AggOp::Max | AggOp::First | AggOp::Last => {
                if self.count == 0 {
                    self.best = None;
                } else if self
                    .best
                    .as_ref()
                    .is_some_and(|b| b.session_id == c.session_id)
                {
                    return Err(NeedsRecompute);
                }
            }
            AggOp::DistinctCount => {
                let k = distinct_key(&c.value);
                if let Some(n) = self.distinct.get_mut(&k) {
                    *n -= 1;
                    if *n == 0 {
                        self.distinct.remove(&k);
                    }
                }
            }
        }
        if self.count == 0 {
            *self = AggState::default();
        }
        Ok(())
    }

    /// The rule's current value; `None` where it has none (avg of nothing).
    pub fn value(&self, op: AggOp) -> Option<DataValue> {
        match op {
            AggOp::Count => Some(DataValue::Number(self.count as f64)),
            AggOp::Sum => Some(DataValue::Number(self.sum.unwrap_or(0) as f64 / SUM_SCALE)),
            AggOp::Avg if self.count == 0 => None,
            AggOp::Avg => Some(DataValue::Number(
                exact_ratio(self.sum.unwrap_or(0), self.count) as f64 / SUM_SCALE,
            )),
            AggOp::Min | AggOp::Max | AggOp::First | AggOp::Last => {
                self.best.as_ref().and_then(|b| b.value.clone())
            }
            AggOp::DistinctCount => Some(DataValue::Number(self.distinct.len() as f64)),
        }
    }

    /// Folds contributions from scratch (the reference the incremental path must equal).
    pub fn recompute<'a>(op: AggOp, all: impl IntoIterator<Item = &'a Contribution>) -> Self {
        let mut s = AggState::default();
        for c in all {
            s.add(op, c);
        }
        s
    }

    /// Adds a contribution to a rule's state, keeping the window expiry.
    pub fn add_for(&mut self, rule: &AggregateRule, c: &Contribution) {
        self.add(rule.op, c);
        if let Some(e) = rule.expiry_of(c.at) {
            self.expires = Some(self.expires.map_or(e, |x| x.min(e)));
        }
    }

    /// Folds a rule's contributions from scratch, with the window expiry.
    pub fn fold<'a>(rule: &AggregateRule, all: impl IntoIterator<Item = &'a Contribution>) -> Self {
        let mut s = AggState::default();
        for c in all {
            s.add_for(rule, c);
        }
        s
    }

    /// Whether a counted session may have left the window by `now`.
    pub fn expired(&self, now: i64) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: i64, at: i64, v: f64) -> Contribution {
        Contribution {
            session_id: id,
            at,
            value: Some(DataValue::Number(v)),
        }
    }

    /// Random adds and removes, every step compared with a recompute from scratch.
    #[test]
    fn incremental_equals_recompute() {
        let ops = [
            AggOp::Count,
            AggOp::Sum,
            AggOp::Avg,
            AggOp::Min,
            AggOp::Max,
            AggOp::First,
            AggOp::Last,
            AggOp::DistinctCount,
        ];
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for op in ops {
            let mut live: Vec<Contribution> = vec![];
            let mut state = AggState::default();
            for step in 0..2000 {
                let r = next();
                if live.is_empty() || r % 3 != 0 {
                    let v = ((r >> 8) % 1000) as f64 / 100.0;
                    let item = c(step, ((r >> 20) % 50) as i64, v);
                    state.add(op, &item);
                    live.push(item);
                } else {
                    let item = live.swap_remove((r as usize >> 4) % live.len());
                    if state.remove(op, &item).is_err() {
                        state = AggState::recompute(op, &live);
                    }
                }
                let want = AggState::recompute(op, &live);
                assert_eq!(state.value(op), want.value(op), "{op:?} at step {step}");
            }
        }
    }

    #[test]
    fn averages_are_exact_to_nine_decimals() {
        let mut s = AggState::default();
        for id in 1..=3 {
            s.add(AggOp::Avg, &c(id, 0, 5.66));
        }
        assert_eq!(s.value(AggOp::Avg), Some(DataValue::Number(5.66)));
        let mut s = AggState::default();
        for (id, v) in [(1, 1.0), (2, 0.0), (3, 0.0)] {
            s.add(AggOp::Avg, &c(id, 0, v));
        }
        assert_eq!(s.value(AggOp::Avg), Some(DataValue::Number(0.333333333)));
        let mut s = AggState::default();
        for (id, v) in [(1, -2.0), (2, 0.0), (3, 0.0)] {
            s.add(AggOp::Avg, &c(id, 0, v));
        }
        assert_eq!(s.value(AggOp::Avg), Some(DataValue::Number(-0.666666667)));
    }

    #[test]
    fn sums_are_exact() {
        let mut s = AggState::default();
        s.add(AggOp::Sum, &c(1, 0, 0.1));
        s.add(AggOp::Sum, &c(2, 0, 0.2));
        s.remove(AggOp::Sum, &c(1, 0, 0.1)).unwrap();
        assert_eq!(s.value(AggOp::Sum), Some(DataValue::Number(0.2)));
    }

    #[test]
    fn rules_need_a_field() {
        let e = AggregateRule::new("avg_basket", AggOp::Avg, "order", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid aggregate rule \"avg_basket\": avg needs a `field` (a session data key)"
        );
    }

    /// A session exactly one window old has left it: folding at its expiry counts it out and
    /// leaves no expiry due at that instant, so a sweep with a fixed `now` terminates.
    #[test]
    fn a_session_leaves_its_window_at_its_expiry() {
        let rule = AggregateRule::new("orders_1h", AggOp::Count, "order", None)
            .unwrap()
            .with_window(3600)
            .unwrap();
        let at = 1_000_000_000_000;
        let expiry = rule.expiry_of(at).unwrap();
        let data = BTreeMap::new();
        assert!(
            rule.contribution(1, "order", at, &data, expiry - 1)
                .is_some()
        );
        assert_eq!(rule.contribution(1, "order", at, &data, expiry), None);
        let contributions: Vec<_> = rule
            .contribution(1, "order", at, &data, expiry)
            .into_iter()
            .collect();
        let state = AggState::fold(&rule, &contributions);
        assert!(
            !state.expired(expiry),
            "a refold at the expiry must not be due again"
        );
    }
}
