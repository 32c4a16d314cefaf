//! Custom data keys: lowercase `[a-z0-9_-]`, 1 to 64 characters.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// Longest accepted data key, in bytes (all accepted characters are ASCII).
pub const MAX_KEY_LEN: usize = 64;

/// A validated custom data key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DataKey(String);

impl DataKey {
    /// Validates `key`; refuses instead of normalising, so a key is never silently mangled.
    pub fn new(key: impl Into<String>) -> Result<Self, CoreError> {
        let key = key.into();
        let reason = if key.is_empty() {
            Some("must not be empty".to_string())
        } else if key.len() > MAX_KEY_LEN {
            Some(format!(
                "is {} characters long, the maximum is {MAX_KEY_LEN}",
                key.chars().count()
            ))
        } else {
            key.chars()
                .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
                .map(|c| {
                    format!("character {c:?} is not allowed (use lowercase a-z, 0-9, '_' or '-')")
                })
        };
        match reason {
            Some(reason) => Err(CoreError::InvalidKey { key, reason }),
            None => Ok(Self(key)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DataKey {
    type Error = CoreError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<DataKey> for String {
    fn from(value: DataKey) -> Self {
        value.0
    }
}

impl fmt::Display for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_convention() {
        for k in ["price_plan", "a", "x-1", &"a".repeat(64)] {
            assert!(DataKey::new(k).is_ok(), "{k}");
        }
    }

    #[test]
    fn refuses_with_a_reason() {
        let msg = |k: &str| DataKey::new(k).unwrap_err().to_string();
        insta::assert_snapshot!(msg("Price"), @r#"invalid data key "Price": character 'P' is not allowed (use lowercase a-z, 0-9, '_' or '-')"#);
        insta::assert_snapshot!(msg(""), @r#"invalid data key "": must not be empty"#);
        insta::assert_snapshot!(msg(&"a".repeat(65)), @r#"invalid data key "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": is 65 characters long, the maximum is 64"#);
        insta::assert_snapshot!(msg("a.b"), @r#"invalid data key "a.b": character '.' is not allowed (use lowercase a-z, 0-9, '_' or '-')"#);
    }
}
