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
        Self::phone_in(raw, None)
    }

    /// A phone identity, reading national numbers as numbers of `country` when given.
    pub fn phone_in(raw: &str, country: Option<&str>) -> Result<Self, String> {
        Ok(Self {
            kind: IdentityKind::Phone,
            value: normalise_phone_in(raw, country)?,
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

/// Country calling codes, and whether a national number's leading 0 is a trunk prefix that
/// the international form drops (Italy keeps it). NANP numbers drop a leading 1 instead.
const CALLING_CODES: &[(&str, &str, bool)] = &[
    ("AR", "54", true),
    ("AT", "43", true),
    ("AU", "61", true),
    ("BE", "32", true),
    ("BR", "55", true),
    ("CA", "1", false),
    ("CH", "41", true),
    ("CL", "56", false),
    ("CN", "86", true),
    ("CO", "57", false),
    ("CZ", "420", false),
    ("DE", "49", true),
    ("DK", "45", false),
    ("EG", "20", true),
    ("ES", "34", false),
    ("FI", "358", true),
    ("FR", "33", true),
    ("GB", "44", true),
    ("GR", "30", false),
    ("HK", "852", false),
    ("HU", "36", false),
    ("ID", "62", true),
    ("IE", "353", true),
    ("IL", "972", true),
    ("IN", "91", true),
    ("IT", "39", false),
    ("JP", "81", true),
    ("KR", "82", true),
    ("MA", "212", true),
    ("MX", "52", false),
    ("MY", "60", true),
    ("NG", "234", true),
    ("NL", "31", true),
    ("NO", "47", false),
    ("NZ", "64", true),
    ("PE", "51", true),
    ("PH", "63", true),
    ("PK", "92", true),
    ("PL", "48", false),
    ("PT", "351", false),
    ("RO", "40", true),
    ("RU", "7", false),
    ("SA", "966", true),
    ("SE", "46", true),
    ("SG", "65", false),
    ("TH", "66", true),
    ("TR", "90", true),
    ("TW", "886", true),
    ("UA", "380", true),
    ("US", "1", false),
    ("VN", "84", true),
    ("ZA", "27", true),
];

/// Checks a default phone country (ISO 3166-1 alpha-2) and returns it upper-cased.
pub fn check_phone_country(country: &str) -> Result<String, String> {
    let c = country.trim().to_ascii_uppercase();
    if CALLING_CODES.iter().any(|(iso, _, _)| *iso == c) {
        Ok(c)
    } else {
        let known: Vec<&str> = CALLING_CODES.iter().map(|(iso, _, _)| *iso).collect();
        Err(format!(
            "no calling code known for country {country:?}; known: {} (or write numbers in international form, +<country code>...)",
            known.join(", ")
        ))
    }
}

/// Like [`normalise_phone`], completing a national number (no `+` or `00`) with the calling
/// code of `country` (checked by [`check_phone_country`]): `06 12 34 56 78` in FR is
/// `+33612345678`.
pub fn normalise_phone_in(raw: &str, country: Option<&str>) -> Result<String, String> {
    let t = raw.trim();
    let international = t.starts_with('+') || t.starts_with("00");
    let Some(country) = country.filter(|_| !international) else {
        return normalise_phone(raw);
    };
    let country = country.trim().to_ascii_uppercase();
    let (_, code, trunk_zero) = CALLING_CODES
        .iter()
        .find(|(iso, _, _)| *iso == country)
        .ok_or_else(|| check_phone_country(&country).unwrap_err())?;
    let mut national: String = t.chars().filter(char::is_ascii_digit).collect();
    if t.chars()
        .any(|c| !(c.is_ascii_digit() || " -.()/".contains(c)))
    {
        return Err(format!("{raw:?} is not a phone number"));
    }
    // The national trunk prefix is not part of the international number.
    let trunk = (*trunk_zero && national.starts_with('0'))
        || (*code == "1" && national.len() == 11 && national.starts_with('1'));
    if trunk {
        national.remove(0);
    }
    normalise_phone(&format!("+{code}{national}"))
        .map_err(|e| format!("{raw:?} read as a {country} number: {e}"))
}

/// Keeps `+` and digits of an international number; refuses numbers without a country code.
pub fn normalise_phone(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    let Some(rest) = t.strip_prefix('+').or_else(|| t.strip_prefix("00")) else {
        return Err(format!(
            "{raw:?} is not an international phone number (E.164 needs a leading + and country code; set identities.phone_country for national numbers)"
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
    fn national_numbers_take_the_default_country() {
        let fr = Some("FR");
        assert_eq!(
            normalise_phone_in("06 12 34 56 78", fr).unwrap(),
            "+33612345678"
        );
        assert_eq!(
            normalise_phone_in("+44 20 7946 0958", fr).unwrap(),
            "+442079460958"
        );
        assert_eq!(
            normalise_phone_in("06 39 12 34 56", Some("IT")).unwrap(),
            "+390639123456"
        );
        assert_eq!(
            normalise_phone_in("1 (415) 555-2671", Some("US")).unwrap(),
            "+14155552671"
        );
        assert_eq!(
            normalise_phone_in("(415) 555-2671", Some("US")).unwrap(),
            "+14155552671"
        );
        assert!(normalise_phone_in("06 12", fr).is_err());
        assert!(normalise_phone_in("06 12 34 56 78", None).is_err());
        assert!(normalise_phone_in("call me", fr).is_err());
        assert_eq!(check_phone_country("fr").unwrap(), "FR");
        assert!(
            check_phone_country("XX")
                .unwrap_err()
                .starts_with("no calling code known for country \"XX\"")
        );
    }

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
