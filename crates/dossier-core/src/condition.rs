//! Conditions on sessions, e.g. "only paid orders" for an aggregate rule.
//!
//! A condition is written in the same text form as segments (`data.status = "paid" and
//! data.total > 0`) but may only look at the session's own data, and is evaluated here in
//! memory, on each session as it is written, so aggregates stay incremental.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::filter_text::{format_filter, parse_filter};
use crate::{CmpOp, CoreError, DataValue, Filter, FilterField};

/// A parsed session condition; serialized as its canonical text.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionCondition {
    filter: Filter,
}

impl SessionCondition {
    /// Parses the text form; every field must be `data.<key>` (the session's data).
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let filter = parse_filter(text)?;
        check_fields(&filter)?;
        Ok(Self { filter })
    }

    /// The canonical text, stable across formatting differences in what the user wrote.
    pub fn text(&self) -> String {
        format_filter(&self.filter)
    }

    /// Whether a session with this data satisfies the condition.
    pub fn matches(&self, data: &BTreeMap<String, DataValue>) -> bool {
        eval(&self.filter, data)
    }
}

/// Whether a comparison on one field (`Cmp`, `In`, `Contains`, `Exists` over `data.<key>` or
/// `agg.<name>`) holds when that field's value is `value`: what a contact without a stored
/// aggregate row reads (`count` and `sum` of nothing are 0) decides whether filters match it.
pub fn holds_for_value(filter: &Filter, value: &DataValue) -> bool {
    let field = match filter {
        Filter::Cmp { field, .. }
        | Filter::In { field, .. }
        | Filter::Contains { field, .. }
        | Filter::Exists(field) => field,
        _ => return false,
    };
    let data = BTreeMap::from([(key(field).to_string(), value.clone())]);
    eval(filter, &data)
}

fn refuse(reason: String) -> CoreError {
    CoreError::Filter {
        path: "condition".into(),
        reason,
    }
}

fn check_fields(f: &Filter) -> Result<(), CoreError> {
    let field_ok = |field: &FilterField| match field {
        FilterField::Data(_) => Ok(()),
        other => Err(refuse(format!(
            "a session condition can only look at the session's data (`data.<key>`), not {}",
            describe(other)
        ))),
    };
    match f {
        Filter::And(v) | Filter::Or(v) => v.iter().try_for_each(check_fields),
        Filter::Not(c) => check_fields(c),
        Filter::Cmp { field, .. }
        | Filter::In { field, .. }
        | Filter::Contains { field, .. }
        | Filter::Exists(field) => field_ok(field),
        Filter::Ago { .. } => Err(refuse(
            "relative dates (`ago(...)`) are not allowed in a session condition; use the rule's `window` instead".into(),
        )),
    }
}

fn describe(field: &FilterField) -> String {
    match field {
        FilterField::Profile(p) => format!("the contact field `{}`", p.name()),
        FilterField::CreatedAt => "`created_at`".into(),
        FilterField::UpdatedAt => "`updated_at`".into(),
        FilterField::Data(k) => format!("`data.{k}`"),
        FilterField::Agg(k) => format!("the aggregate `agg.{k}`"),
    }
}

fn key(field: &FilterField) -> &str {
    match field {
        FilterField::Data(k) | FilterField::Agg(k) => k.as_str(),
        _ => "",
    }
}

fn eval(f: &Filter, data: &BTreeMap<String, DataValue>) -> bool {
    match f {
        Filter::And(v) => v.iter().all(|c| eval(c, data)),
        Filter::Or(v) => v.iter().any(|c| eval(c, data)),
        Filter::Not(c) => !eval(c, data),
        Filter::Exists(field) => data.contains_key(key(field)),
        Filter::Cmp { field, op, value } => {
            let Some(have) = data.get(key(field)) else {
                // Like the contact filters: "not equal" includes sessions without the value.
                return *op == CmpOp::Ne;
            };
            match op {
                CmpOp::Eq => have == value,
                CmpOp::Ne => have != value,
                _ => order(have, value).is_some_and(|o| match op {
                    CmpOp::Gt => o == Ordering::Greater,
                    CmpOp::Gte => o != Ordering::Less,
                    CmpOp::Lt => o == Ordering::Less,
                    CmpOp::Lte => o != Ordering::Greater,
                    CmpOp::Eq | CmpOp::Ne => unreachable!("handled above"),
                }),
            }
        }
        Filter::In { field, values } => data.get(key(field)).is_some_and(|h| values.contains(h)),
        Filter::Contains { field, text } => data
            .get(key(field))
            .and_then(DataValue::as_text)
            .is_some_and(|t| t.to_lowercase().contains(&text.to_lowercase())),
        Filter::Ago { .. } => false,
    }
}

/// Values of the same family order; others do not compare.
fn order(a: &DataValue, b: &DataValue) -> Option<Ordering> {
    match (a, b) {
        (DataValue::String(x), DataValue::String(y)) => Some(x.cmp(y)),
        (DataValue::Bool(_), _) | (_, DataValue::Bool(_)) => None,
        (DataValue::String(_), _) | (_, DataValue::String(_)) => None,
        _ => Some(a.as_sort_number()?.total_cmp(&b.as_sort_number()?)),
    }
}

impl Serialize for SessionCondition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for SessionCondition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, DataValue)]) -> BTreeMap<String, DataValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn evaluates_on_session_data() {
        let c = SessionCondition::parse(r#"data.status = "paid" and data.total >= 10"#).unwrap();
        let s = |v: &str| DataValue::String(v.into());
        let n = DataValue::Number;
        assert!(c.matches(&data(&[("status", s("paid")), ("total", n(10.0))])));
        assert!(!c.matches(&data(&[("status", s("paid")), ("total", n(9.5))])));
        assert!(!c.matches(&data(&[("status", s("refunded")), ("total", n(50.0))])));
        assert!(!c.matches(&data(&[("total", n(50.0))])));
        let ne = SessionCondition::parse(r#"data.status != "refunded""#).unwrap();
        assert!(ne.matches(&data(&[])));
        let any = SessionCondition::parse(
            r#"data.channel in ["web", "app"] or data.note contains "VIP""#,
        )
        .unwrap();
        assert!(any.matches(&data(&[("note", s("a vip buyer"))])));
        assert!(any.matches(&data(&[("channel", s("app"))])));
        assert!(!any.matches(&data(&[("channel", s("shop"))])));
        // A number never equals or orders against a string.
        let gt = SessionCondition::parse("data.total > 5").unwrap();
        assert!(!gt.matches(&data(&[("total", s("50"))])));
    }

    #[test]
    fn refuses_fields_that_are_not_session_data() {
        let e = SessionCondition::parse(r#"country = "FR""#).unwrap_err();
        insta::assert_snapshot!(e, @"invalid filter at condition: a session condition can only look at the session's data (`data.<key>`), not the contact field `country`");
        let e = SessionCondition::parse("data.at < ago(3d)").unwrap_err();
        insta::assert_snapshot!(e, @"invalid filter at condition: relative dates (`ago(...)`) are not allowed in a session condition; use the rule's `window` instead");
    }

    #[test]
    fn serializes_as_canonical_text() {
        let c = SessionCondition::parse(r#"data.status="paid""#).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: SessionCondition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
