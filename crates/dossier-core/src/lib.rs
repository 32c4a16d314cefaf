//! The core model of Dossier: contacts, sessions, identities, custom data, aggregate
//! rules, mappings from source records, and contact filters.
//!
//! This crate knows no database and no HTTP: everything here is pure and testable alone.

pub mod aggregate;
pub mod condition;
pub mod country;
pub mod digest;
pub mod duration;
pub mod error;
pub mod filter;
pub mod filter_text;
pub mod identity;
pub mod key;
pub mod mapping;
pub mod model;
pub mod policy;
pub mod redact;
pub mod template;
pub mod value;

pub use aggregate::{AggOp, AggState, AggregateRule, Contribution, SUM_SCALE, exact_ratio};
pub use condition::{SessionCondition, holds_for_value};
pub use country::country_code;
pub use digest::sha256_hex;
pub use duration::parse_duration_secs;
pub use error::CoreError;
pub use filter::{CmpOp, Filter, FilterField, coerce_value};
pub use filter_text::{format_filter, parse_filter};
pub use identity::{Identity, IdentityKind};
pub use key::DataKey;
pub use mapping::{CompiledMapping, MappedRecord, MappingConfig, Target};
pub use model::{ProfileField, WorkspaceId};
pub use policy::{FieldOrigin, IdentityPolicy, Provenance};
pub use redact::redact_url;
pub use template::{Template, TemplateContext, TemplatePath};
pub use value::{DataValue, Value};
