//! Mappings: how the records of one source stream become contacts or sessions.
//!
//! A mapping is declared in config, checked against the stream's fields when it is loaded
//! ([`MappingConfig::compile`]), bound to a batch's field order once per batch
//! ([`CompiledMapping::bind`]) and applied to each row ([`BoundMapping::apply`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{ContactLink, ContactRecord, SessionRecord};
use crate::value::{parse_datetime, to_micros};
use crate::{CoreError, DataKey, Identity, ProfileField, Value};

/// Whether a stream's records become contacts or sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Contact,
    Session,
}

/// A pure transform applied to a field value, written after the field name with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    Lowercase,
    Trim,
    /// Text to number (`"12.50"` → 12.5).
    Number,
    /// Text or 0/1 to boolean (`true/false`, `yes/no`, `t/f`, `1/0`).
    Boolean,
    /// Text (RFC 3339 or `YYYY-MM-DD HH:MM:SS`, naive taken as UTC) or epoch seconds to date-time.
    Datetime,
}

impl FromStr for Transform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "lowercase" => Self::Lowercase,
            "trim" => Self::Trim,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            "datetime" => Self::Datetime,
            other => {
                return Err(format!(
                    "unknown transform {other:?}, expected one of: lowercase, trim, number, boolean, datetime"
                ));
            }
        })
    }
}

impl Transform {
    fn apply(self, v: Value) -> Result<Value, String> {
        Ok(match (self, v) {
            (_, Value::Null) => Value::Null,
            (Self::Lowercase, Value::Text(s)) => Value::Text(s.to_lowercase()),
            (Self::Trim, Value::Text(s)) => Value::Text(s.trim().to_string()),
            (Self::Lowercase | Self::Trim, v) => v,
            (Self::Number, v @ (Value::Int(_) | Value::Float(_) | Value::Decimal(_))) => v,
            (Self::Number, Value::Text(s)) => {
                let t = s.trim();
                if t.is_empty() {
                    Value::Null
                } else {
                    t.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(|_| Value::Decimal(t.to_string()))
                        .ok_or_else(|| format!("{s:?} is not a number"))?
                }
            }
            (Self::Boolean, Value::Bool(b)) => Value::Bool(b),
            (Self::Boolean, Value::Int(i @ (0 | 1))) => Value::Bool(i == 1),
            (Self::Boolean, Value::Text(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" => Value::Bool(true),
                "false" | "f" | "no" | "n" | "0" => Value::Bool(false),
                "" => Value::Null,
                _ => return Err(format!("{s:?} is not a boolean")),
            },
            (Self::Datetime, v @ Value::DateTime(_)) => v,
            (Self::Datetime, Value::Text(s)) => Value::DateTime(
                parse_datetime(&s).ok_or_else(|| format!("{s:?} is not a date-time"))?,
            ),
            (Self::Datetime, Value::Int(secs)) => Value::DateTime(
                chrono::DateTime::from_timestamp(secs, 0)
                    .ok_or_else(|| format!("{secs} is out of range as epoch seconds"))?,
            ),
            (t, v) => return Err(format!("cannot apply {t:?} to {v:?}").to_lowercase()),
        })
    }
}

/// A source field with optional transforms: `"email | trim | lowercase"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct FieldRef {
    pub field: String,
    pub transforms: Vec<Transform>,
}

impl TryFrom<String> for FieldRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let mut parts = s.split('|').map(str::trim);
        let field = parts.next().unwrap_or_default().to_string();
        if field.is_empty() {
            return Err(format!("{s:?} names no field"));
        }
        let transforms = parts.map(str::parse).collect::<Result<_, _>>()?;
        Ok(Self { field, transforms })
    }
}

impl From<FieldRef> for String {
    fn from(f: FieldRef) -> Self {
        f.to_string()
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.field)?;
        for t in &self.transforms {
            write!(f, " | {}", format!("{t:?}").to_lowercase())?;
        }
        Ok(())
    }
}

/// One field (or several, for composite keys) that identifies a record in its stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum IdFields {
    One(String),
    Composite(Vec<String>),
}

impl IdFields {
    fn names(&self) -> Vec<&str> {
        match self {
            IdFields::One(s) => vec![s.as_str()],
            IdFields::Composite(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Identity fields of a record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityFields {
    /// Field holding an email address (normalised: trimmed, lowercased).
    pub email: Option<FieldRef>,
    /// Field holding a phone number (normalised to E.164).
    pub phone: Option<FieldRef>,
    /// The country (ISO 3166-1 alpha-2, e.g. `FR`) of phone numbers written without a
    /// country code: `06 12 34 56 78` becomes `+33612345678`. Without it such numbers are
    /// refused.
    pub phone_country: Option<String>,
}

/// How a session finds its contact: a record of another stream of the same source
/// (`stream` + `field`, e.g. orders.customer_id → customers), an email, or both: the
/// record first, the email when the record field is empty (guest orders).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactLinkConfig {
    /// The contact stream of the same source whose record id the `field` holds.
    pub stream: Option<String>,
    /// Field holding that record's id.
    pub field: Option<FieldRef>,
    /// Field holding the contact's email: alone, or as the fallback when `field` is empty.
    pub email: Option<FieldRef>,
}

/// How one source stream becomes contacts or sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// `contact` or `session`.
    pub target: Target,
    /// Field(s) identifying the record within its stream, usually the primary key; a
    /// composite key is a list, its values joined with `:`.
    pub id: IdFields,
    /// Identity fields (contacts): records sharing one land on the same contact.
    #[serde(default)]
    pub identities: IdentityFields,
    /// Native profile fields (contacts): profile field → source field.
    #[serde(default)]
    pub profile: BTreeMap<ProfileField, FieldRef>,
    /// Custom data: data key (lowercase `[a-z0-9_-]`, ≤ 64) → source field.
    #[serde(default)]
    pub data: BTreeMap<String, FieldRef>,
    /// Session kind, e.g. `order` or `conversation` (sessions only, required there).
    pub kind: Option<String>,
    /// When the session started (sessions only, required there).
    pub started_at: Option<FieldRef>,
    /// When the session ended (sessions only).
    pub ended_at: Option<FieldRef>,
    /// When the source record was created.
    pub created_at: Option<FieldRef>,
    /// When the source record last changed.
    pub updated_at: Option<FieldRef>,
    /// How a session finds its contact (sessions only, required there).
    pub contact: Option<ContactLinkConfig>,
}

/// What a stream offers to map: its fields and whether each can be mapped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldInfo {
    pub name: String,
    /// The source's type name, for messages.
    pub source_type: String,
    /// `None` when the field can be mapped, else why not.
    pub unsupported: Option<String>,
}

/// A mapping checked against its stream's fields.
#[derive(Debug, Clone)]
pub struct CompiledMapping {
    source: String,
    stream: String,
    config: MappingConfig,
    data: Vec<(DataKey, FieldRef)>,
    link_stream: Option<String>,
    /// Fields the mapping names that the stream's sample did not show: they read as missing
    /// from batches without them.
    absent: BTreeSet<String>,
}

impl MappingConfig {
    /// Checks every name the mapping uses; errors name the source, stream and field.
    pub fn compile(
        &self,
        source: &str,
        stream: &str,
        fields: &[FieldInfo],
    ) -> Result<CompiledMapping, CoreError> {
        self.compile_with(source, stream, fields, false)
    }

    /// Like [`MappingConfig::compile`], for a stream whose fields were found by sampling its
    /// records (a schemaless source): a field none of the sampled records held is read as
    /// missing ([`CompiledMapping::absent`]) rather than refused, unless a batch has it. The
    /// record id must still be a sampled field.
    pub fn compile_sampled(
        &self,
        source: &str,
        stream: &str,
        fields: &[FieldInfo],
    ) -> Result<CompiledMapping, CoreError> {
        self.compile_with(source, stream, fields, true)
    }

    fn compile_with(
        &self,
        source: &str,
        stream: &str,
        fields: &[FieldInfo],
        sampled: bool,
    ) -> Result<CompiledMapping, CoreError> {
        let absent = std::cell::RefCell::new(BTreeSet::new());
        let where_ = format!("{source}.{stream}");
        let err = |field: &str, reason: String| CoreError::Mapping {
            stream: where_.clone(),
            field: field.to_string(),
            reason,
        };
        let check_field = |role: &str, name: &str| -> Result<(), CoreError> {
            match fields.iter().find(|f| f.name == name) {
                None if sampled && role != "id" => {
                    absent.borrow_mut().insert(name.to_string());
                    Ok(())
                }
                None => {
                    let mut names: Vec<_> = fields.iter().map(|f| f.name.as_str()).collect();
                    names.sort_unstable();
                    Err(err(
                        role,
                        format!(
                            "no field {name:?} in the stream; it has: {}",
                            names.join(", ")
                        ),
                    ))
                }
                Some(FieldInfo {
                    unsupported: Some(why),
                    source_type,
                    ..
                }) => Err(err(
                    role,
                    format!("field {name:?} has type {source_type} which cannot be mapped: {why}"),
                )),
                Some(_) => Ok(()),
            }
        };
        if let Some(c) = &self.identities.phone_country {
            crate::identity::check_phone_country(c)
                .map_err(|e| err("identities.phone_country", e))?;
        }
        for name in self.id.names() {
            check_field("id", name)?;
        }
        let mut refs: Vec<(String, &FieldRef)> = vec![];
        if let Some(f) = &self.identities.email {
            refs.push(("identities.email".into(), f));
        }
        if let Some(f) = &self.identities.phone {
            refs.push(("identities.phone".into(), f));
        }
        for (p, f) in &self.profile {
            refs.push((format!("profile.{p}"), f));
        }
        for (k, f) in &self.data {
            refs.push((format!("data.{k}"), f));
        }
        for (role, f) in [
            ("started_at", &self.started_at),
            ("ended_at", &self.ended_at),
            ("created_at", &self.created_at),
            ("updated_at", &self.updated_at),
        ] {
            if let Some(f) = f {
                refs.push((role.into(), f));
            }
        }
        if let Some(link) = &self.contact {
            for (role, f) in [
                ("contact.field", &link.field),
                ("contact.email", &link.email),
            ] {
                if let Some(f) = f {
                    refs.push((role.into(), f));
                }
            }
        }
        for (role, f) in &refs {
            check_field(role, &f.field)?;
        }
        let data = self
            .data
            .iter()
            .map(|(k, f)| {
                Ok((
                    DataKey::new(k.clone())
                        .map_err(|e| err(&format!("data.{k}"), e.to_string()))?,
                    f.clone(),
                ))
            })
            .collect::<Result<Vec<_>, CoreError>>()?;

        let mut link_stream = None;
        match self.target {
            Target::Contact => {
                for (role, set) in [
                    ("kind", self.kind.is_some()),
                    ("started_at", self.started_at.is_some()),
                    ("ended_at", self.ended_at.is_some()),
                    ("contact", self.contact.is_some()),
                ] {
                    if set {
                        return Err(err(role, "only a session mapping has this; remove it or set target = \"session\"".into()));
                    }
                }
            }
            Target::Session => {
                let kind = self.kind.as_deref().ok_or_else(|| {
                    err(
                        "kind",
                        "a session mapping needs a kind, e.g. kind = \"order\"".into(),
                    )
                })?;
                crate::model::validate_kind(kind).map_err(|e| err("kind", e.to_string()))?;
                if self.started_at.is_none() {
                    return Err(err(
                        "started_at",
                        "a session mapping needs the field holding its start time".into(),
                    ));
                }
                if !self.profile.is_empty() || self.identities != IdentityFields::default() {
                    return Err(err("profile", "a session mapping has no profile or identities; map them on the contact stream".into()));
                }
                let link = self.contact.as_ref().ok_or_else(|| {
                    err("contact", "a session mapping needs `contact`: { stream = \"customers\", field = \"customer_id\" } or { email = \"email\" }".into())
                })?;
                match (&link.stream, &link.field, &link.email) {
                    (Some(s), Some(_), _) => link_stream = Some(s.clone()),
                    (None, None, Some(_)) => {}
                    _ => {
                        return Err(err(
                            "contact",
                            "set `stream` and `field`, `email`, or all three (`email` is then the fallback)".into(),
                        ));
                    }
                }
            }
        }
        Ok(CompiledMapping {
            source: source.to_string(),
            stream: stream.to_string(),
            config: self.clone(),
            data,
            link_stream,
            absent: absent.into_inner(),
        })
    }
}

/// The result of mapping one record.
#[derive(Debug, Clone, PartialEq)]
pub enum MappedRecord {
    Contact(ContactRecord),
    Session(SessionRecord),
}

impl MappedRecord {
    pub fn external_id(&self) -> &str {
        match self {
            MappedRecord::Contact(c) => c.external.value.rsplit_once(':').map_or("", |x| x.1),
            MappedRecord::Session(s) => &s.external_id,
        }
    }
}

impl CompiledMapping {
    pub fn target(&self) -> Target {
        self.config.target
    }

    /// The contact stream a session mapping links to, to check it exists in the source.
    pub fn link_stream(&self) -> Option<&str> {
        self.link_stream.as_deref()
    }

    pub fn config(&self) -> &MappingConfig {
        &self.config
    }

    /// The fields the mapping names that a sampled stream's records did not show
    /// ([`MappingConfig::compile_sampled`]): they read as missing from batches without them.
    pub fn absent(&self) -> impl Iterator<Item = &str> {
        self.absent.iter().map(String::as_str)
    }

    /// Resolves field names to positions in a batch's field list.
    pub fn bind(&self, fields: &[String]) -> Result<BoundMapping<'_>, CoreError> {
        let pos = |name: &str| {
            fields
                .iter()
                .position(|f| f == name)
                // Past every column: reads as missing (see `Slot::index`).
                .or_else(|| self.absent.contains(name).then_some(usize::MAX))
                .ok_or_else(|| CoreError::Mapping {
                    stream: format!("{}.{}", self.source, self.stream),
                    field: name.to_string(),
                    reason: "the source stopped returning this field".into(),
                })
        };
        let slot = |f: &Option<FieldRef>| -> Result<Option<Slot>, CoreError> {
            f.as_ref()
                .map(|f| {
                    Ok(Slot {
                        index: pos(&f.field)?,
                        transforms: f.transforms.clone(),
                    })
                })
                .transpose()
        };
        let c = &self.config;
        Ok(BoundMapping {
            m: self,
            id: c
                .id
                .names()
                .into_iter()
                .map(pos)
                .collect::<Result<_, _>>()?,
            email: slot(&c.identities.email)?,
            phone: slot(&c.identities.phone)?,
            profile: c
                .profile
                .iter()
                .map(|(p, f)| Ok((*p, slot(&Some(f.clone()))?.expect("some"))))
                .collect::<Result<_, CoreError>>()?,
            data: self
                .data
                .iter()
                .map(|(k, f)| Ok((k.clone(), slot(&Some(f.clone()))?.expect("some"))))
                .collect::<Result<_, CoreError>>()?,
            started_at: slot(&c.started_at)?,
            ended_at: slot(&c.ended_at)?,
            created_at: slot(&c.created_at)?,
            updated_at: slot(&c.updated_at)?,
            link_field: slot(&c.contact.as_ref().and_then(|l| l.field.clone()))?,
            link_email: slot(&c.contact.as_ref().and_then(|l| l.email.clone()))?,
        })
    }
}

#[derive(Debug, Clone)]
struct Slot {
    /// The field's column in the batch's rows; none (`usize::MAX`) for a field a sampled
    /// stream's records did not show, which reads as missing.
    index: usize,
    transforms: Vec<Transform>,
}

/// A mapping bound to one batch's field order.
#[derive(Debug)]
pub struct BoundMapping<'a> {
    m: &'a CompiledMapping,
    id: Vec<usize>,
    email: Option<Slot>,
    phone: Option<Slot>,
    profile: Vec<(ProfileField, Slot)>,
    data: Vec<(DataKey, Slot)>,
    started_at: Option<Slot>,
    ended_at: Option<Slot>,
    created_at: Option<Slot>,
    updated_at: Option<Slot>,
    link_field: Option<Slot>,
    link_email: Option<Slot>,
}

impl BoundMapping<'_> {
    /// The record's id within its stream (composite keys joined with `:`).
    pub fn record_id(&self, row: &[Value]) -> Result<String, String> {
        let mut parts = Vec::with_capacity(self.id.len());
        for &i in &self.id {
            parts.push(row[i].to_id_string().ok_or("the id field is null")?);
        }
        Ok(parts.join(":"))
    }

    /// Maps one row; the error says which field and why.
    pub fn apply(&self, row: &[Value]) -> Result<MappedRecord, String> {
        self.apply_noting(row, &mut vec![])
    }

    /// Like [`BoundMapping::apply`], noting in `dropped` the profile values left out: a
    /// profile value that cannot be read (a country that names none) says nothing about who
    /// the person is, so it costs the record that field only, not the record.
    pub fn apply_noting(
        &self,
        row: &[Value],
        dropped: &mut Vec<String>,
    ) -> Result<MappedRecord, String> {
        let get = |s: &Slot, role: &str| -> Result<Value, String> {
            let mut v = row.get(s.index).cloned().unwrap_or(Value::Null);
            for t in &s.transforms {
                v = t.apply(v).map_err(|e| format!("{role}: {e}"))?;
            }
            Ok(v)
        };
        let text = |s: &Option<Slot>, role: &str| -> Result<Option<String>, String> {
            let Some(s) = s else { return Ok(None) };
            Ok(match get(s, role)? {
                Value::Null => None,
                Value::Text(t) if t.trim().is_empty() => None,
                v => v.to_id_string(),
            })
        };
        let time = |s: &Option<Slot>, role: &str| -> Result<Option<i64>, String> {
            let Some(s) = s else { return Ok(None) };
            match get(s, role)? {
                Value::Null => Ok(None),
                Value::DateTime(t) => Ok(Some(to_micros(t))),
                Value::Text(t) => parse_datetime(&t)
                    .map(|t| Some(to_micros(t)))
                    .ok_or_else(|| format!("{role}: {t:?} is not a date-time")),
                Value::Int(secs) => Ok(chrono::DateTime::from_timestamp(secs, 0).map(to_micros)),
                v => Err(format!("{role}: {v:?} is not a date-time")),
            }
        };
        let mut data = Vec::with_capacity(self.data.len());
        for (k, s) in &self.data {
            let role = format!("data.{k}");
            if let Some(v) = get(s, &role)?
                .to_data()
                .map_err(|e| format!("{role}: {e}"))?
            {
                v.validate(k.as_str()).map_err(|e| e.to_string())?;
                data.push((k.clone(), v));
            }
        }
        let id = self.record_id(row)?;
        let c = &self.m.config;
        Ok(match c.target {
            Target::Contact => {
                let mut identities = vec![];
                let mut profile = vec![];
                if let Some(e) = text(&self.email, "identities.email")? {
                    let ident =
                        Identity::email(&e).map_err(|e| format!("identities.email: {e}"))?;
                    profile.push((ProfileField::Email, ident.value.clone()));
                    identities.push(ident);
                }
                if let Some(p) = text(&self.phone, "identities.phone")? {
                    let ident = Identity::phone_in(&p, c.identities.phone_country.as_deref())
                        .map_err(|e| format!("identities.phone: {e}"))?;
                    profile.push((ProfileField::Phone, ident.value.clone()));
                    identities.push(ident);
                }
                for (field, s) in &self.profile {
                    let role = format!("profile.{field}");
                    if let Some(v) = text(&Some(s.clone()), &role)? {
                        match field.normalise(&v) {
                            Ok(v) => {
                                profile.retain(|(f, _)| f != field);
                                profile.push((*field, v));
                            }
                            Err(e) => dropped.push(format!("{role}: {e}")),
                        }
                    }
                }
                MappedRecord::Contact(ContactRecord {
                    external: Identity::external(&self.m.source, &self.m.stream, &id),
                    identities,
                    profile,
                    data,
                    updated_at: time(&self.updated_at, "updated_at")?,
                    created_at: time(&self.created_at, "created_at")?,
                })
            }
            Target::Session => {
                let contact = if let Some(v) = text(&self.link_field, "contact.field")? {
                    let stream = self.m.link_stream.as_deref().unwrap_or_default();
                    Some(ContactLink::Identity(Identity::external(
                        &self.m.source,
                        stream,
                        &v,
                    )))
                } else if let Some(e) = text(&self.link_email, "contact.email")? {
                    Some(ContactLink::Identity(
                        Identity::email(&e).map_err(|e| format!("contact.email: {e}"))?,
                    ))
                } else {
                    None
                };
                MappedRecord::Session(SessionRecord {
                    external_id: id,
                    kind: c.kind.clone().unwrap_or_default(),
                    contact,
                    started_at: Some(
                        time(&self.started_at, "started_at")?
                            .ok_or("started_at: is null; a session needs its start time")?,
                    ),
                    ended_at: time(&self.ended_at, "ended_at")?,
                    data,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataValue;

    fn fields(names: &[&str]) -> Vec<FieldInfo> {
        names
            .iter()
            .map(|n| FieldInfo {
                name: n.to_string(),
                source_type: "TEXT".into(),
                unsupported: None,
            })
            .collect()
    }

    fn customers() -> MappingConfig {
        toml_like(serde_json::json!({
            "target": "contact",
            "id": "id",
            "identities": {"email": "email | trim"},
            "profile": {"first_name": "first_name", "country": "country"},
            "data": {"price_plan": "plan"}
        }))
    }

    fn toml_like(v: serde_json::Value) -> MappingConfig {
        serde_json::from_value(v).unwrap()
    }

    /// The customers mapping, compiled, and its fields in the order `names` lists them.
    fn customers_in(names: [&str; 5]) -> (CompiledMapping, Vec<String>) {
        let m = customers()
            .compile(
                "shop",
                "customers",
                &fields(&["id", "email", "first_name", "country", "plan"]),
            )
            .unwrap();
        (m, names.map(String::from).to_vec())
    }

    #[test]
    fn maps_a_contact() {
        let (m, names) = customers_in(["plan", "id", "email", "first_name", "country"]);
        let b = m.bind(&names).unwrap();
        let row = [
            Value::Text("basic".into()),
            Value::Int(7),
            Value::Text(" Ada@Example.com".into()),
            Value::Text("Ada".into()),
            Value::Text("fr".into()),
        ];
        let MappedRecord::Contact(c) = b.apply(&row).unwrap() else {
            panic!()
        };
        assert_eq!(c.external.value, "shop:customers:7");
        assert_eq!(
            c.identities,
            vec![Identity::email("ada@example.com").unwrap()]
        );
        assert!(c.profile.contains(&(ProfileField::Country, "FR".into())));
        assert_eq!(
            c.data,
            vec![(
                DataKey::new("price_plan").unwrap(),
                DataValue::String("basic".into())
            )]
        );
    }

    #[test]
    fn countries_are_read_as_codes_and_a_bad_one_costs_only_its_field() {
        let (m, names) = customers_in(["id", "email", "first_name", "country", "plan"]);
        let b = m.bind(&names).unwrap();
        let row = |country: &str| {
            [
                Value::Int(7),
                Value::Text("ada@example.com".into()),
                Value::Text("Ada".into()),
                Value::Text(country.into()),
                Value::Text("basic".into()),
            ]
        };
        let contact = |country: &str, dropped: &mut Vec<String>| match b
            .apply_noting(&row(country), dropped)
            .unwrap()
        {
            MappedRecord::Contact(c) => c,
            MappedRecord::Session(_) => panic!("a contact mapping"),
        };
        for (raw, code) in [("India", "IN"), ("USA", "US"), ("Deutschland", "DE")] {
            let mut dropped = vec![];
            let c = contact(raw, &mut dropped);
            assert!(
                c.profile.contains(&(ProfileField::Country, code.into())),
                "{raw:?}: {:?}",
                c.profile
            );
            assert!(dropped.is_empty(), "{dropped:?}");
        }
        let mut dropped = vec![];
        let c = contact("Narnia", &mut dropped);
        assert!(!c.profile.iter().any(|(f, _)| *f == ProfileField::Country));
        assert!(c.profile.contains(&(ProfileField::FirstName, "Ada".into())));
        assert_eq!(
            c.identities,
            vec![Identity::email("ada@example.com").unwrap()]
        );
        assert_eq!(c.data.len(), 1);
        assert_eq!(dropped.len(), 1);
        assert!(dropped[0].contains("\"Narnia\""), "{dropped:?}");
    }

    /// A sampled (schemaless) stream: a field no sampled record held is read as missing
    /// where absent, and as its value where a record has it; the id must have been seen.
    #[test]
    fn a_sampled_stream_reads_an_unseen_field_as_missing() {
        let seen = fields(&["id", "email", "first_name", "country"]);
        let m = customers()
            .compile_sampled("shop", "customers", &seen)
            .unwrap();
        assert_eq!(m.absent().collect::<Vec<_>>(), vec!["plan"]);
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let row = |plan: Option<&str>| {
            let mut r = vec![
                Value::Int(1),
                Value::Text("ada@example.com".into()),
                Value::Text("Ada".into()),
                Value::Text("FR".into()),
            ];
            r.extend(plan.map(|p| Value::Text(p.into())));
            r
        };
        let without = m
            .bind(&names(&["id", "email", "first_name", "country"]))
            .unwrap();
        let MappedRecord::Contact(c) = without.apply(&row(None)).unwrap() else {
            panic!("not a contact")
        };
        assert!(c.data.is_empty(), "{:?}", c.data);
        let with = m
            .bind(&names(&["id", "email", "first_name", "country", "plan"]))
            .unwrap();
        let MappedRecord::Contact(c) = with.apply(&row(Some("pro"))).unwrap() else {
            panic!("not a contact")
        };
        assert_eq!(c.data.len(), 1);
        let no_id = customers()
            .compile_sampled("shop", "customers", &fields(&["email", "plan"]))
            .unwrap_err();
        assert!(no_id.to_string().contains(r#"no field "id""#), "{no_id}");
    }

    #[test]
    fn refuses_missing_fields_and_bad_keys() {
        let e = customers()
            .compile(
                "shop",
                "customers",
                &fields(&["id", "email", "first_name", "country"]),
            )
            .unwrap_err();
        insta::assert_snapshot!(e.to_string(), @r#"invalid mapping for stream "shop.customers", field "data.price_plan": no field "plan" in the stream; it has: country, email, first_name, id"#);
        let mut bad = customers();
        bad.data
            .insert("Price Plan".into(), "plan".to_string().try_into().unwrap());
        let e = bad
            .compile(
                "shop",
                "customers",
                &fields(&["id", "email", "first_name", "country", "plan"]),
            )
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("field \"data.Price Plan\": invalid data key"),
            "{e}"
        );
    }

    #[test]
    fn sessions_need_kind_start_and_contact() {
        let m: MappingConfig = toml_like(
            serde_json::json!({"target": "session", "id": "id", "started_at": "created_at"}),
        );
        let e = m
            .compile("shop", "orders", &fields(&["id", "created_at"]))
            .unwrap_err();
        assert!(e.to_string().contains("needs a kind"), "{e}");
    }

    #[test]
    fn sessions_fall_back_to_email_when_the_link_is_empty() {
        let m: MappingConfig = toml_like(serde_json::json!({
            "target": "session", "id": "id", "kind": "order", "started_at": "at",
            "contact": {"stream": "customers", "field": "customer_id", "email": "billing_email"}
        }));
        let c = m
            .compile(
                "woo",
                "orders",
                &fields(&["id", "at", "customer_id", "billing_email"]),
            )
            .unwrap();
        let names: Vec<String> = ["id", "at", "customer_id", "billing_email"]
            .map(String::from)
            .to_vec();
        let b = c.bind(&names).unwrap();
        let at = Value::Text("2024-01-01 00:00:00".into());
        let link = |row: &[Value]| match b.apply(row).unwrap() {
            MappedRecord::Session(s) => s.contact,
            MappedRecord::Contact(_) => panic!("a session"),
        };
        let member = [
            Value::Int(1),
            at.clone(),
            Value::Int(7),
            Value::Text("a@example.com".into()),
        ];
        assert_eq!(
            link(&member),
            Some(ContactLink::Identity(Identity::external(
                "woo",
                "customers",
                "7"
            )))
        );
        let guest = [
            Value::Int(2),
            at,
            Value::Null,
            Value::Text("Guest@Example.com".into()),
        ];
        assert_eq!(
            link(&guest),
            Some(ContactLink::Identity(
                Identity::email("guest@example.com").unwrap()
            ))
        );
    }

    #[test]
    fn field_refs_parse_transforms() {
        let f: FieldRef = "total | number".to_string().try_into().unwrap();
        assert_eq!(f.transforms, vec![Transform::Number]);
        let e = FieldRef::try_from("total | upper".to_string()).unwrap_err();
        assert!(e.contains("unknown transform \"upper\""));
    }

    #[test]
    fn transforms_refuse_bad_values() {
        assert_eq!(
            Transform::Number.apply(Value::Text("12.5".into())).unwrap(),
            Value::Decimal("12.5".into())
        );
        assert!(Transform::Number.apply(Value::Text("abc".into())).is_err());
        assert_eq!(
            Transform::Boolean.apply(Value::Text("Yes".into())).unwrap(),
            Value::Bool(true)
        );
        assert!(
            Transform::Datetime
                .apply(Value::Text("soon".into()))
                .is_err()
        );
    }
}
