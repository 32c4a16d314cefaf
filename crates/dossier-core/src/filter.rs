//! Contact filters over native fields, contact data (`data.<key>`) and aggregates (`agg.<name>`).

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
}

/// Bounds that keep a filter cheap to plan and run.
pub const MAX_FILTER_DEPTH: usize = 8;
pub const MAX_FILTER_TERMS: usize = 64;

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
                _ => Ok(()),
            }
        }
        walk(self, 0, &mut 0)
    }
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
}
