//! Aggregate rules: session data rolled up into contact data, maintained incrementally.
//!
//! Every session contributes at most one [`Contribution`] per rule. [`AggState`] adds and
//! removes contributions; count, sum and avg are always invertible (sums are kept in exact
//! fixed point so that adding and removing is order independent), distinct_count keeps a
//! multiset, and min/max/first/last ask for a recompute of that one contact only when the
//! contribution removed was the current extreme.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{CoreError, DataKey, DataValue};

/// Fixed-point scale for sums: 9 decimal places are kept exactly.
const SUM_SCALE: f64 = 1e9;

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

/// `name = op(kind.field)`, e.g. `avg_basket = avg(order.total)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateRule {
    pub name: DataKey,
    pub op: AggOp,
    /// The session kind the rule rolls up.
    pub kind: String,
    /// The session data key (absent for `count`).
    pub field: Option<DataKey>,
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
        })
    }

    /// What one session contributes to this rule, if anything.
    pub fn contribution(
        &self,
        session_id: i64,
        kind: &str,
        started_at: i64,
        data: &BTreeMap<String, DataValue>,
    ) -> Option<Contribution> {
        if kind != self.kind {
            return None;
        }
        let value = match &self.field {
            None => None,
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
        format!(
            "{:?}({}.{})",
            self.op,
            self.kind,
            self.field.as_ref().map_or("*", |f| f.as_str())
        )
        .to_lowercase()
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
                self.sum.unwrap_or(0) as f64 / SUM_SCALE / self.count as f64,
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
}
