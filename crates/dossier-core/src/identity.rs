//! Identities: the values that say two records are the same person.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What an identity value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// A normalised email (trimmed, lowercased).
    Email,
    /// A phone number in E.164.
    Phone,
    /// One source record: `source:stream:id`.
    External,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Email => "email",
            IdentityKind::Phone => "phone",
            IdentityKind::External => "external",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Self::Email),
            "phone" => Some(Self::Phone),
            "external" => Some(Self::External),
            _ => None,
        }
    }
}

/// A normalised identity value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identity {
    pub kind: IdentityKind,
    pub value: String,
}

impl Identity {
    pub fn email(raw: &str) -> Result<Self, String> {
        Ok(Self {
            kind: IdentityKind::Email,
            value: normalise_email(raw)?,
        })
    }

    pub fn phone(raw: &str) -> Result<Self, String> {
        Ok(Self {
            kind: IdentityKind::Phone,
            value: normalise_phone(raw)?,
        })
    }

    /// The identity of one source record. Parts are joined with `:`; a `:` inside the id is
    /// kept, which stays unambiguous because source and stream names cannot contain one.
    pub fn external(source: &str, stream: &str, id: &str) -> Self {
        Self {
            kind: IdentityKind::External,
            value: format!("{source}:{stream}:{id}"),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.value)
    }
}

/// Trims and lowercases; refuses what is not shaped like `local@domain`.
pub fn normalise_email(raw: &str) -> Result<String, String> {
    let v = raw.trim().to_lowercase();
    let ok = v.len() <= 320
        && !v.chars().any(char::is_whitespace)
        && matches!(v.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !d.contains('@') && !d.starts_with('.') && !d.ends_with('.'));
    if ok {
        Ok(v)
    } else {
        Err(format!("{raw:?} is not an email address"))
    }
}

/// Keeps `+` and digits of an international number; refuses numbers without a country code.
pub fn normalise_phone(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    let Some(rest) = t.strip_prefix('+').or_else(|| t.strip_prefix("00")) else {
        return Err(format!(
            "{raw:?} is not an international phone number (E.164 needs a leading + and country code)"
        ));
    };
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(format!("{raw:?} is not a phone number: unexpected {c:?}")),
        }
    }
    if (8..=15).contains(&digits.len()) && !digits.starts_with('0') {
        Ok(format!("+{digits}"))
    } else {
        Err(format!(
            "{raw:?} is not an E.164 phone number (8 to 15 digits after the +)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            normalise_email("  Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        assert!(normalise_email("ada").is_err());
        assert!(normalise_email("ada@localhost").is_err());
        assert!(normalise_email("a b@x.io").is_err());
    }

    #[test]
    fn phones_are_e164() {
        assert_eq!(
            normalise_phone("+33 6 12-34-56-78").unwrap(),
            "+33612345678"
        );
        assert_eq!(normalise_phone("0033612345678").unwrap(), "+33612345678");
        assert!(normalise_phone("06 12 34 56 78").is_err());
        assert!(normalise_phone("+1 (555) abc").is_err());
    }
}
