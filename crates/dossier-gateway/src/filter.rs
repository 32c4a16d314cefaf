//! The `ContactFilter` input and its conversion to the core [`Filter`].

use async_graphql::{InputObject, Json};
use dossier_core::{CmpOp, CoreError, DataValue, Filter, FilterField, coerce_value};

type JsonValue = Json<serde_json::Value>;

/// A condition on contacts. The keys of one object are combined with AND: `field` with its
/// comparisons (several comparisons on one field are all required), `and`, `or` and `not`.
/// `field` is a profile field (`email`, `country`, ...), `created_at`, `updated_at`,
/// `data.<key>` or `agg.<name>`; `created_at` and `updated_at` compare with RFC 3339 date-times.
#[derive(Debug, Default, InputObject)]
pub(crate) struct ContactFilter {
    /// All of these conditions.
    and: Option<Vec<ContactFilter>>,
    /// Any of these conditions.
    or: Option<Vec<ContactFilter>>,
    /// Not this condition.
    not: Option<Box<ContactFilter>>,
    /// The field the comparisons look at.
    field: Option<String>,
    /// Equal to.
    eq: Option<JsonValue>,
    /// Not equal to (contacts without the value included).
    ne: Option<JsonValue>,
    /// Greater than.
    gt: Option<JsonValue>,
    /// Greater than or equal to.
    gte: Option<JsonValue>,
    /// Less than.
    lt: Option<JsonValue>,
    /// Less than or equal to.
    lte: Option<JsonValue>,
    /// Equal to one of.
    #[graphql(name = "in")]
    in_: Option<Vec<JsonValue>>,
    /// Contains this text, ignoring case.
    contains: Option<String>,
    /// Has a value (true) or has none (false).
    exists: Option<bool>,
}

const COMPARISONS: &str = "eq, ne, gt, gte, lt, lte, in, contains or exists";

impl ContactFilter {
    /// The core filter this input stands for, within the core's bounds. Errors are user-facing.
    pub(crate) fn to_filter(&self) -> Result<Filter, String> {
        let filter = self.convert("where")?;
        filter.check_bounds().map_err(|e| e.to_string())?;
        Ok(filter)
    }

    fn comparisons(&self) -> Vec<(&'static str, Option<CmpOp>, Option<&serde_json::Value>)> {
        let mut out = vec![];
        for (name, op, v) in [
            ("eq", CmpOp::Eq, &self.eq),
            ("ne", CmpOp::Ne, &self.ne),
            ("gt", CmpOp::Gt, &self.gt),
            ("gte", CmpOp::Gte, &self.gte),
            ("lt", CmpOp::Lt, &self.lt),
            ("lte", CmpOp::Lte, &self.lte),
        ] {
            if let Some(v) = v {
                out.push((name, Some(op), Some(&v.0)));
            }
        }
        if self.in_.is_some() {
            out.push(("in", None, None));
        }
        if self.contains.is_some() {
            out.push(("contains", None, None));
        }
        if self.exists.is_some() {
            out.push(("exists", None, None));
        }
        out
    }

    fn convert(&self, path: &str) -> Result<Filter, String> {
        let mut parts = vec![];
        let comparisons = self.comparisons();
        match &self.field {
            Some(name) => {
                let field = FilterField::parse(name).map_err(|e| e.to_string())?;
                if comparisons.is_empty() {
                    return Err(CoreError::Filter {
                        path: format!("field {name:?}"),
                        reason: format!("no comparison given; add one of {COMPARISONS}"),
                    }
                    .to_string());
                }
                for (_, op, value) in &comparisons {
                    if let (Some(op), Some(value)) = (op, value) {
                        parts.push(Filter::Cmp {
                            field: field.clone(),
                            op: *op,
                            value: data_value(&field, name, value)?,
                        });
                    }
                }
                if let Some(values) = &self.in_ {
                    parts.push(Filter::In {
                        field: field.clone(),
                        values: values
                            .iter()
                            .map(|v| data_value(&field, name, &v.0))
                            .collect::<Result<_, _>>()?,
                    });
                }
                if let Some(text) = &self.contains {
                    parts.push(Filter::Contains {
                        field: field.clone(),
                        text: text.clone(),
                    });
                }
                match self.exists {
                    Some(true) => parts.push(Filter::Exists(field)),
                    Some(false) => parts.push(Filter::Not(Box::new(Filter::Exists(field)))),
                    None => {}
                }
            }
            None => {
                if let Some((op, _, _)) = comparisons.first() {
                    return Err(CoreError::Filter {
                        path: path.to_string(),
                        reason: format!("{op:?} needs a \"field\""),
                    }
                    .to_string());
                }
            }
        }
        if let Some(all) = &self.and {
            parts.push(Filter::And(
                all.iter()
                    .enumerate()
                    .map(|(i, f)| f.convert(&format!("{path}.and[{i}]")))
                    .collect::<Result<_, _>>()?,
            ));
        }
        if let Some(any) = &self.or {
            parts.push(Filter::Or(
                any.iter()
                    .enumerate()
                    .map(|(i, f)| f.convert(&format!("{path}.or[{i}]")))
                    .collect::<Result<_, _>>()?,
            ));
        }
        if let Some(not) = &self.not {
            parts.push(Filter::Not(Box::new(not.convert(&format!("{path}.not"))?)));
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::And(parts)
        })
    }
}

/// A comparison value: timestamps take RFC 3339 date-times, other fields plain JSON scalars.
fn data_value(
    field: &FilterField,
    name: &str,
    json: &serde_json::Value,
) -> Result<DataValue, String> {
    let value = DataValue::from_json(name, json).map_err(|e| e.to_string())?;
    coerce_value(field, value).map_err(|e| e.to_string())
}

/// The filter of a list: `input` (the structured `where:`) and `text` (the text form), both
/// required when both are given.
pub(crate) fn combine(
    input: Option<ContactFilter>,
    text: Option<String>,
) -> async_graphql::Result<Option<Filter>> {
    let mut parts = vec![];
    if let Some(f) = input {
        parts.push(f.to_filter().map_err(async_graphql::Error::new)?);
    }
    if let Some(text) = text {
        parts.push(dossier_core::filter_text::parse_filter(&text)?);
    }
    Ok(match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Filter::And(parts)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cmp(field: &str, op: CmpOp, value: DataValue) -> Filter {
        Filter::Cmp {
            field: FilterField::parse(field).unwrap(),
            op,
            value,
        }
    }

    fn field(name: &str) -> ContactFilter {
        ContactFilter {
            field: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn keys_of_one_object_are_anded() {
        let f = ContactFilter {
            gte: Some(Json(json!(10))),
            lt: Some(Json(json!(20))),
            not: Some(Box::new(ContactFilter {
                exists: Some(false),
                ..field("data.vip")
            })),
            ..field("agg.total_spent")
        };
        assert_eq!(
            f.to_filter().unwrap(),
            Filter::And(vec![
                cmp("agg.total_spent", CmpOp::Gte, DataValue::Number(10.0)),
                cmp("agg.total_spent", CmpOp::Lt, DataValue::Number(20.0)),
                Filter::Not(Box::new(Filter::Not(Box::new(Filter::Exists(
                    FilterField::parse("data.vip").unwrap()
                ))))),
            ])
        );
    }

    #[test]
    fn timestamps_take_rfc3339() {
        let f = ContactFilter {
            gt: Some(Json(json!("2024-03-01T12:30:00+02:00"))),
            ..field("created_at")
        };
        let want = "2024-03-01T10:30:00Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap();
        assert_eq!(
            f.to_filter().unwrap(),
            cmp("created_at", CmpOp::Gt, DataValue::DateTime(want))
        );
        let bad = ContactFilter {
            gt: Some(Json(json!("yesterday"))),
            ..field("updated_at")
        };
        insta::assert_snapshot!(bad.to_filter().unwrap_err(), @r#"invalid value for "updated_at": "yesterday" is not an RFC 3339 date-time such as "2024-03-01T10:30:00Z""#);
        // Elsewhere a date-like string stays a string.
        let s = ContactFilter {
            eq: Some(Json(json!("2024-03-01T10:30:00Z"))),
            ..field("data.note")
        };
        assert_eq!(
            s.to_filter().unwrap(),
            cmp(
                "data.note",
                CmpOp::Eq,
                DataValue::String("2024-03-01T10:30:00Z".into())
            )
        );
    }

    #[test]
    fn refusals_say_what_and_where() {
        let msg = |f: ContactFilter| f.to_filter().unwrap_err();
        insta::assert_snapshot!(msg(field("country")), @r#"invalid filter at field "country": no comparison given; add one of eq, ne, gt, gte, lt, lte, in, contains or exists"#);
        insta::assert_snapshot!(msg(ContactFilter {
            and: Some(vec![ContactFilter { eq: Some(Json(json!(1))), ..Default::default() }]),
            ..Default::default()
        }), @r#"invalid filter at where.and[0]: "eq" needs a "field""#);
        insta::assert_snapshot!(msg(ContactFilter {
            eq: Some(Json(json!({"a": 1}))),
            ..field("data.plan")
        }), @r#"invalid value for "data.plan": values are scalars: a string, a number, a boolean or a date-time"#);
        let mut deep = ContactFilter {
            exists: Some(true),
            ..field("email")
        };
        for _ in 0..10 {
            deep = ContactFilter {
                not: Some(Box::new(deep)),
                ..Default::default()
            };
        }
        insta::assert_snapshot!(msg(deep), @"invalid filter at where: nested deeper than 8 levels");
    }
}
