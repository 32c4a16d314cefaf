//! Contacts, sessions and workspaces: the shapes everything else fills in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{DataKey, DataValue, Identity};

/// The tenant every contact, session, source, rule and key belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkspaceId(pub String);

impl WorkspaceId {
    /// The workspace a single-tenant install (and the demo) uses.
    pub fn default_workspace() -> Self {
        Self("default".into())
    }
}

/// Native profile fields of a contact.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ProfileField {
    Email,
    Phone,
    FirstName,
    LastName,
    Company,
    /// ISO 3166-1 alpha-2, upper case.
    Country,
    City,
    Locale,
}

impl ProfileField {
    pub const ALL: [ProfileField; 8] = [
        ProfileField::Email,
        ProfileField::Phone,
        ProfileField::FirstName,
        ProfileField::LastName,
        ProfileField::Company,
        ProfileField::Country,
        ProfileField::City,
        ProfileField::Locale,
    ];

    /// The column / field name, also used in filters.
    pub fn name(self) -> &'static str {
        match self {
            ProfileField::Email => "email",
            ProfileField::Phone => "phone",
            ProfileField::FirstName => "first_name",
            ProfileField::LastName => "last_name",
            ProfileField::Company => "company",
            ProfileField::Country => "country",
            ProfileField::City => "city",
            ProfileField::Locale => "locale",
        }
    }

    /// Checks and normalises a profile value: surrounding spaces go, a country written as a
    /// code or a name becomes its ISO 3166-1 alpha-2 code; anything else is refused.
    pub fn normalise(self, raw: &str) -> Result<String, String> {
        let v = raw.trim();
        match self {
            ProfileField::Country => crate::country::country_code(v).ok_or_else(|| {
                format!(
                    "country {raw:?} is neither an ISO 3166-1 code (\"FR\", \"FRA\") nor a country name"
                )
            }),
            ProfileField::Email => crate::identity::normalise_email(v),
            _ if v.len() > 512 => Err(format!("{} is longer than 512 bytes", self.name())),
            _ => Ok(v.to_string()),
        }
    }
}

impl FromStr for ProfileField {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProfileField::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ProfileField::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown profile field {s:?}, expected one of: {}",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for ProfileField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A contact as one source record describes it, ready for identity resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactRecord {
    /// This record's own identity (`source:stream:id`).
    pub external: Identity,
    /// Further identities (email, phone) that may tie it to existing contacts.
    pub identities: Vec<Identity>,
    pub profile: Vec<(ProfileField, String)>,
    pub data: Vec<(DataKey, DataValue)>,
    /// When the source says the record last changed, in epoch microseconds.
    pub updated_at: Option<i64>,
    pub created_at: Option<i64>,
}

/// How a session finds its contact.
#[derive(Debug, Clone, PartialEq)]
pub enum ContactLink {
    /// Through an identity (an external id of the same source, an email, a phone).
    Identity(Identity),
}

/// A session as one source record describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub external_id: String,
    pub kind: String,
    pub contact: Option<ContactLink>,
    /// Epoch microseconds.
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub data: Vec<(DataKey, DataValue)>,
}

/// Valid session kinds follow the data key rule (`order`, `conversation`, ...).
pub fn validate_kind(kind: &str) -> Result<(), crate::CoreError> {
    DataKey::new(kind).map(|_| ())
}
