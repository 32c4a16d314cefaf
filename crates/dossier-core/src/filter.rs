//! Contact filters over native fields, contact data (`data.<key>`) and aggregates (`agg.<name>`).

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

use crate::value::parse_datetime;
use crate::{CoreError, DataKey, DataValue, ProfileField};

/// What a filter condition looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterField {
    Profile(ProfileField),
    /// The contact's creation or last update time.
    CreatedAt,
    UpdatedAt,
    Data(DataKey),
    Agg(DataKey),
}

impl FilterField {
    /// Parses `country`, `data.price_plan`, `agg.avg_basket`.
    pub fn parse(path: &str) -> Result<Self, CoreError> {
        let err = |reason: String| CoreError::Filter {
            path: format!("field {path:?}"),
            reason,
        };
        if let Some(k) = path.strip_prefix("data.") {
            return DataKey::new(k)
                .map(Self::Data)
                .map_err(|e| err(e.to_string()));
        }
        if let Some(k) = path.strip_prefix("agg.") {
            return DataKey::new(k)
                .map(Self::Agg)
                .map_err(|e| err(e.to_string()));
        }
        match path {
            "created_at" => Ok(Self::CreatedAt),
            "updated_at" => Ok(Self::UpdatedAt),
            _ => path.parse().map(Self::Profile).map_err(|e: String| {
                err(format!(
                    "{e}, created_at, updated_at, data.<key> or agg.<name>"
                ))
            }),
        }
    }

    /// Whether the field holds a date-time of its own (rather than text or custom data).
    pub fn is_timestamp(&self) -> bool {
        matches!(self, Self::CreatedAt | Self::UpdatedAt)
    }
}

/// The path [`FilterField::parse`] reads back: `country`, `created_at`, `data.plan`, `agg.total`.
impl fmt::Display for FilterField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Profile(p) => f.write_str(p.name()),
            Self::CreatedAt => f.write_str("created_at"),
            Self::UpdatedAt => f.write_str("updated_at"),
            Self::Data(k) => write!(f, "data.{k}"),
            Self::Agg(k) => write!(f, "agg.{k}"),
        }
    }
}

/// Checks and converts a comparison value for `field`, in one place for every way a filter
/// is written (GraphQL input, segment text): `created_at` and `updated_at` compare with
/// date-times, so a string there must read as one (via [`parse_datetime`], which takes RFC
/// 3339 and, as UTC, the common naive spellings); other fields take the value as it is.
/// A country compares as the code contacts store ([`country_code`](crate::country_code)),
/// so `country = "USA"` finds what `country = "US"` finds.
/// Every value must also respect the stored-value bounds ([`DataValue::validate`]).
pub fn coerce_value(field: &FilterField, value: DataValue) -> Result<DataValue, CoreError> {
    let name = field.to_string();
    let value = match value {
        DataValue::String(s) if *field == FilterField::Profile(ProfileField::Country) => {
            // A value that names no country is kept: it matches no contact, as it should.
            DataValue::String(crate::country_code(&s).unwrap_or(s))
        }
        DataValue::String(s) if field.is_timestamp() => match parse_datetime(&s) {
            Some(t) => DataValue::DateTime(t),
            None => return Err(not_a_datetime(&name, &DataValue::String(s))),
        },
        v @ (DataValue::Number(_) | DataValue::Bool(_)) if field.is_timestamp() => {
            return Err(not_a_datetime(&name, &v));
        }
        v => v,
    };
    value.validate(&name)?;
    Ok(value)
}

fn not_a_datetime(name: &str, value: &DataValue) -> CoreError {
    CoreError::InvalidValue {
        key: name.to_string(),
        reason: format!(
            "{} is not an RFC 3339 date-time such as \"2024-03-01T10:30:00Z\"",
            value.to_json()
        ),
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Gt => ">",
            CmpOp::Gte => ">=",
            CmpOp::Lt => "<",
            CmpOp::Lte => "<=",
        }
    }
}

/// A boolean filter over contacts.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cmp {
        field: FilterField,
        op: CmpOp,
        value: DataValue,
    },
    In {
        field: FilterField,
        values: Vec<DataValue>,
    },
    /// Case-insensitive substring match on text.
    Contains {
        field: FilterField,
        text: String,
    },
    Exists(FilterField),
    /// `field op (now - seconds)`: a date relative to when the filter runs, so a saved
    /// segment such as "last order more than 30 days ago" stays true to its words. Negative
    /// `seconds` look into the future. Stores compare against [`Filter::resolve`]'s output.
    Ago {
        field: FilterField,
        op: CmpOp,
        seconds: i64,
    },
}

/// Bounds that keep a filter cheap to plan and run.
pub const MAX_FILTER_DEPTH: usize = 8;
pub const MAX_FILTER_TERMS: usize = 64;
/// Largest `seconds` (either way) of a [`Filter::Ago`]: 1000 years keeps every resolved
/// date an ordinary four-digit-year date-time.
pub const MAX_AGO_SECONDS: i64 = 1000 * 365 * 86_400;

impl Filter {
    /// Refuses filters too deep or too wide to be a reasonable query.
    pub fn check_bounds(&self) -> Result<(), CoreError> {
        fn walk(f: &Filter, depth: usize, terms: &mut usize) -> Result<(), CoreError> {
            if depth > MAX_FILTER_DEPTH {
                return Err(CoreError::Filter {
                    path: "where".into(),
                    reason: format!("nested deeper than {MAX_FILTER_DEPTH} levels"),
                });
            }
            *terms += 1;
            if *terms > MAX_FILTER_TERMS {
                return Err(CoreError::Filter {
                    path: "where".into(),
                    reason: format!("more than {MAX_FILTER_TERMS} conditions"),
                });
            }
            match f {
                Filter::And(v) | Filter::Or(v) => {
                    v.iter().try_for_each(|c| walk(c, depth + 1, terms))
                }
                Filter::Not(c) => walk(c, depth + 1, terms),
                Filter::In { values, .. } if values.len() > MAX_FILTER_TERMS => {
                    Err(CoreError::Filter {
                        path: "where.in".into(),
                        reason: format!("more than {MAX_FILTER_TERMS} values"),
                    })
                }
                Filter::Ago { seconds, .. } if seconds.unsigned_abs() > MAX_AGO_SECONDS as u64 => {
                    Err(CoreError::Filter {
                        path: "where.ago".into(),
                        reason: format!(
                            "{seconds} seconds is more than {MAX_AGO_SECONDS} seconds (1000 years)"
                        ),
                    })
                }
                Filter::Ago { .. }
                | Filter::Cmp { .. }
                | Filter::In { .. }
                | Filter::Contains { .. }
                | Filter::Exists(_) => Ok(()),
            }
        }
        walk(self, 0, &mut 0)
    }

    /// The fields the filter's conditions compare, in the order they are written.
    pub fn fields(&self) -> Vec<&FilterField> {
        fn walk<'f>(f: &'f Filter, out: &mut Vec<&'f FilterField>) {
            match f {
                Filter::And(v) | Filter::Or(v) => v.iter().for_each(|c| walk(c, out)),
                Filter::Not(c) => walk(c, out),
                Filter::Cmp { field, .. }
                | Filter::In { field, .. }
                | Filter::Contains { field, .. }
                | Filter::Exists(field)
                | Filter::Ago { field, .. } => out.push(field),
            }
        }
        let mut out = vec![];
        walk(self, &mut out);
        out
    }

    /// Refuses a filter on an aggregate that no rule defines: it would match nothing, as if
    /// every contact's aggregate were absent, rather than say the name is wrong.
    pub fn check_aggregates<'a>(
        &self,
        defined: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), CoreError> {
        for field in self.fields() {
            match field {
                FilterField::Agg(k) if !defined.clone().into_iter().any(|d| d == k.as_str()) => {
                    let mut names: Vec<&str> = defined.clone().into_iter().collect();
                    names.sort_unstable();
                    return Err(CoreError::Filter {
                        path: format!("field \"{field}\""),
                        reason: format!(
                            "no aggregate {:?} is defined; defined: {}",
                            k.as_str(),
                            if names.is_empty() {
                                "none".to_string()
                            } else {
                                names.join(", ")
                            }
                        ),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The same filter with every [`Filter::Ago`] turned into a comparison with the date-time
    /// `now - seconds`, ready for a store that only knows absolute values. Dates beyond what
    /// a date-time can hold saturate at its limits (only reachable past [`check_bounds`]).
    ///
    /// [`check_bounds`]: Filter::check_bounds
    pub fn resolve(&self, now: DateTime<Utc>) -> Filter {
        match self {
            Filter::And(v) => Filter::And(v.iter().map(|c| c.resolve(now)).collect()),
            Filter::Or(v) => Filter::Or(v.iter().map(|c| c.resolve(now)).collect()),
            Filter::Not(c) => Filter::Not(Box::new(c.resolve(now))),
            Filter::Ago { field, op, seconds } => Filter::Cmp {
                field: field.clone(),
                op: *op,
                value: DataValue::DateTime(ago(now, *seconds)),
            },
            other => other.clone(),
        }
    }
}

/// `now - seconds`, saturating at the representable range.
fn ago(now: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    TimeDelta::try_seconds(seconds)
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(if seconds > 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        assert_eq!(
            FilterField::parse("country").unwrap(),
            FilterField::Profile(ProfileField::Country)
        );
        assert!(matches!(
            FilterField::parse("data.price_plan").unwrap(),
            FilterField::Data(_)
        ));
        assert!(matches!(
            FilterField::parse("agg.avg_basket").unwrap(),
            FilterField::Agg(_)
        ));
        let e = FilterField::parse("colour").unwrap_err().to_string();
        assert!(e.contains("unknown profile field \"colour\""), "{e}");
        assert!(FilterField::parse("data.Bad").is_err());
    }

    #[test]
    fn fields_print_as_they_parse() {
        for path in [
            "country",
            "first_name",
            "created_at",
            "updated_at",
            "data.x-1",
            "agg.n",
        ] {
            assert_eq!(FilterField::parse(path).unwrap().to_string(), path);
        }
    }

    fn field(path: &str) -> FilterField {
        FilterField::parse(path).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn ago_resolves_against_now_everywhere() {
        let now = at("2024-05-31T12:00:00Z");
        let last_order = |op, seconds| Filter::Ago {
            field: field("agg.last_order_at"),
            op,
            seconds,
        };
        let f = Filter::Or(vec![
            last_order(CmpOp::Lt, 30 * 86_400),
            Filter::Not(Box::new(Filter::And(vec![
                last_order(CmpOp::Gte, 3_600),
                Filter::Exists(field("email")),
            ]))),
        ]);
        let cmp = |op, t: &str| Filter::Cmp {
            field: field("agg.last_order_at"),
            op,
            value: DataValue::DateTime(at(t)),
        };
        assert_eq!(
            f.resolve(now),
            Filter::Or(vec![
                cmp(CmpOp::Lt, "2024-05-01T12:00:00Z"),
                Filter::Not(Box::new(Filter::And(vec![
                    cmp(CmpOp::Gte, "2024-05-31T11:00:00Z"),
                    Filter::Exists(field("email")),
                ]))),
            ])
        );
        // Negative seconds look ahead; absurd values saturate instead of panicking.
        assert_eq!(
            last_order(CmpOp::Gt, -60).resolve(now),
            cmp(CmpOp::Gt, "2024-05-31T12:01:00Z")
        );
        assert_eq!(
            last_order(CmpOp::Gt, i64::MAX).resolve(now),
            Filter::Cmp {
                field: field("agg.last_order_at"),
                op: CmpOp::Gt,
                value: DataValue::DateTime(DateTime::<Utc>::MIN_UTC),
            }
        );
        assert!(matches!(
            last_order(CmpOp::Gt, i64::MIN).resolve(now),
            Filter::Cmp { value: DataValue::DateTime(t), .. } if t == DateTime::<Utc>::MAX_UTC
        ));
    }

    #[test]
    fn bounds_count_ago_and_refuse_absurd_spans() {
        let ago = |seconds| Filter::Ago {
            field: field("created_at"),
            op: CmpOp::Lt,
            seconds,
        };
        assert!(ago(MAX_AGO_SECONDS).check_bounds().is_ok());
        assert!(ago(-MAX_AGO_SECONDS).check_bounds().is_ok());
        insta::assert_snapshot!(ago(MAX_AGO_SECONDS + 1).check_bounds().unwrap_err(), @"invalid filter at where.ago: 31536000001 seconds is more than 31536000000 seconds (1000 years)");
        let wide = Filter::Or(vec![ago(1); MAX_FILTER_TERMS]);
        insta::assert_snapshot!(wide.check_bounds().unwrap_err(), @"invalid filter at where: more than 64 conditions");
    }

    #[test]
    fn filters_on_undefined_aggregates_are_refused_listing_the_defined_ones() {
        let on = |name: &str| {
            Filter::Not(Box::new(Filter::And(vec![Filter::Exists(field(
                &format!("agg.{name}"),
            ))])))
        };
        let defined = ["total_spent", "avg_basket"];
        assert!(on("avg_basket").check_aggregates(defined).is_ok());
        insta::assert_snapshot!(on("avg_bsket").check_aggregates(defined).unwrap_err(), @r#"invalid filter at field "agg.avg_bsket": no aggregate "avg_bsket" is defined; defined: avg_basket, total_spent"#);
        assert!(
            on("x")
                .check_aggregates([])
                .unwrap_err()
                .to_string()
                .ends_with("defined: none")
        );
        assert!(
            Filter::Exists(field("country"))
                .check_aggregates([])
                .is_ok()
        );
    }

    #[test]
    fn timestamps_compare_with_datetimes() {
        let want = DataValue::DateTime(at("2024-03-01T10:30:00Z"));
        let s = |v: &str| DataValue::String(v.into());
        assert_eq!(
            coerce_value(&field("created_at"), s("2024-03-01T12:30:00+02:00")).unwrap(),
            want
        );
        assert_eq!(
            coerce_value(&field("updated_at"), want.clone()).unwrap(),
            want
        );
        for raw in ["USA", "us", "United States"] {
            assert_eq!(coerce_value(&field("country"), s(raw)).unwrap(), s("US"));
        }
        assert_eq!(
            coerce_value(&field("country"), s("Narnia")).unwrap(),
            s("Narnia")
        );
        let msg = |f: &str, v| coerce_value(&field(f), v).unwrap_err().to_string();
        insta::assert_snapshot!(msg("updated_at", s("yesterday")), @r#"invalid value for "updated_at": "yesterday" is not an RFC 3339 date-time such as "2024-03-01T10:30:00Z""#);
        insta::assert_snapshot!(msg("created_at", DataValue::Number(5.0)), @r#"invalid value for "created_at": 5 is not an RFC 3339 date-time such as "2024-03-01T10:30:00Z""#);
        // Elsewhere values are taken as they are, within the stored-value bounds.
        assert_eq!(
            coerce_value(&field("data.note"), s("2024-03-01T10:30:00Z")).unwrap(),
            s("2024-03-01T10:30:00Z")
        );
        insta::assert_snapshot!(msg("agg.total", DataValue::Number(f64::INFINITY)), @r#"invalid value for "agg.total": number must be finite"#);
    }
}
