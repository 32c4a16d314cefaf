//! Names users give to saved things (segments, shortcuts).

use crate::{Result, StoreError};

/// 1 to 64 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Refused(format!(
            "invalid {what} name {name:?}: use 1 to 64 characters of a-z, 0-9, _ and -, starting with a letter"
        )))
    }
}
