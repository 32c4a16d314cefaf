//! Identity safety and survivorship: which identity values may tie records together, how
//! many contacts one value may merge, and which source's value a contact keeps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Identity, IdentityKind};

fn default_merge_limit() -> u32 {
    5
}

/// The identity rules of a workspace (`[identity]` in dossier.toml).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityPolicy {
    /// Email and phone values never used to match or merge contacts, such as shared inboxes:
    /// `["info@*", "noreply@*", "+15555550100"]`. `*` matches any run of characters; emails
    /// compare lowercased. A blocked value stays on the profile, it just identifies no one.
    #[serde(default)]
    pub blocked: Vec<String>,
    /// The most contacts one identity value may merge together over time (default 5). A
    /// merge beyond it is refused, kept in the merge log as `refused`, and the record goes to
    /// the contact its own id (or first identity) names.
    #[serde(default = "default_merge_limit")]
    pub merge_limit: u32,
    /// Sources whose profile values win, highest first: a value from a source earlier in the
    /// list is never overwritten by a later or unlisted one. Between equals the latest update
    /// wins (the default for every field).
    #[serde(default)]
    pub source_priority: Vec<String>,
}

impl Default for IdentityPolicy {
    fn default() -> Self {
        Self {
            blocked: vec![],
            merge_limit: default_merge_limit(),
            source_priority: vec![],
        }
    }
}

/// Where a contact's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldOrigin {
    pub source: String,
    pub stream: String,
    /// The record's id in its stream.
    pub record: String,
    /// When the source says the record changed (or when it was written), epoch microseconds.
    pub at: i64,
}

/// Origins by field: profile fields by name (`email`), own data as `data.<key>`.
pub type Provenance = BTreeMap<String, FieldOrigin>;

impl IdentityPolicy {
    /// Checks the patterns; errors name the bad one.
    pub fn validate(&self) -> Result<(), String> {
        for p in &self.blocked {
            if p.trim().is_empty() || p.chars().all(|c| c == '*') {
                return Err(format!(
                    "identity.blocked: pattern {p:?} would block every value; name the inbox or number"
                ));
            }
        }
        Ok(())
    }

    /// Whether this identity must not match or merge anything. External ids never are.
    pub fn is_blocked(&self, ident: &Identity) -> bool {
        if ident.kind == IdentityKind::External {
            return false;
        }
        self.blocked
            .iter()
            .any(|p| glob(&p.trim().to_lowercase(), &ident.value))
    }

    /// Rank of a source: lower is stronger; unlisted sources share the weakest rank.
    pub fn rank(&self, source: &str) -> usize {
        self.source_priority
            .iter()
            .position(|s| s == source)
            .unwrap_or(self.source_priority.len())
    }

    /// Whether a value from `new` replaces one from `old`: a stronger source always does, an
    /// equal one when it is more recent; between equally recent values of different records
    /// the greater (source, stream, record) wins, so the outcome never depends on which
    /// arrived last. The same record again always replaces its own value. A value without
    /// origin always loses.
    pub fn wins(&self, new: &FieldOrigin, old: Option<&FieldOrigin>) -> bool {
        let Some(old) = old else { return true };
        match self.rank(&new.source).cmp(&self.rank(&old.source)) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => {
                (new.at, &new.source, &new.stream, &new.record)
                    >= (old.at, &old.source, &old.stream, &old.record)
            }
        }
    }
}

/// `*` matches any run of characters (including none); everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(source: &str, at: i64) -> FieldOrigin {
        FieldOrigin {
            source: source.into(),
            stream: "s".into(),
            record: "1".into(),
            at,
        }
    }

    #[test]
    fn blocks_by_pattern_but_never_external_ids() {
        let p = IdentityPolicy {
            blocked: vec![
                "Info@*".into(),
                "*@example.test".into(),
                "+15555550100".into(),
            ],
            ..Default::default()
        };
        assert!(p.is_blocked(&Identity::email("info@shop.fr").unwrap()));
        assert!(p.is_blocked(&Identity::email("ada@example.test").unwrap()));
        assert!(!p.is_blocked(&Identity::email("ada@shop.fr").unwrap()));
        assert!(p.is_blocked(&Identity::phone("+1 555 555 0100").unwrap()));
        assert!(!p.is_blocked(&Identity::external("info@x", "s", "1")));
        assert!(glob("a*b*c", "axxbyyc") && !glob("a*b*c", "axxc") && glob("*", ""));
        let all = IdentityPolicy {
            blocked: vec!["**".into()],
            ..Default::default()
        };
        assert!(all.validate().unwrap_err().contains("\"**\""));
    }

    #[test]
    fn priority_then_recency() {
        let p = IdentityPolicy {
            source_priority: vec!["crm".into(), "shop".into()],
            ..Default::default()
        };
        assert!(p.wins(&origin("crm", 1), Some(&origin("shop", 9))));
        assert!(!p.wins(&origin("shop", 9), Some(&origin("crm", 1))));
        assert!(!p.wins(&origin("other", 9), Some(&origin("shop", 1))));
        assert!(p.wins(&origin("shop", 2), Some(&origin("shop", 2))));
        assert!(!p.wins(&origin("shop", 1), Some(&origin("shop", 2))));
        assert!(p.wins(&origin("other", 0), None));
    }
}
