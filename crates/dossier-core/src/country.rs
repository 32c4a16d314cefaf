//! Countries as ISO 3166-1 alpha-2 codes, from the ways sources write them: codes of either
//! case, alpha-3 codes, ISO names and common or native names ("USA", "United Kingdom",
//! "Deutschland"). The names come from the `keshvar` country data, not from a list of ours.

use std::collections::HashMap;
use std::sync::LazyLock;

use keshvar::{Alpha2, CountryIterator};

/// Every name a country goes by, folded (see [`fold`]), to its alpha-2 code; `None` for a
/// name two countries share, which says nothing.
static NAMES: LazyLock<HashMap<String, Option<String>>> = LazyLock::new(|| {
    let mut names: HashMap<String, Option<String>> = HashMap::new();
    for country in CountryIterator::new() {
        let code = country.alpha2().to_string();
        let alpha3 = country.alpha3().to_string();
        let all = [
            alpha3.as_str(),
            country.iso_short_name(),
            country.iso_long_name(),
        ]
        .into_iter()
        .chain(country.unofficial_name_list().iter().copied());
        for name in all {
            names
                .entry(fold(name))
                .and_modify(|known| {
                    if known.as_deref() != Some(code.as_str()) {
                        *known = None;
                    }
                })
                .or_insert_with(|| Some(code.clone()));
        }
    }
    names
});

/// Case, dots and runs of spaces do not tell countries apart: `u.s.a.` is `USA`.
fn fold(name: &str) -> String {
    name.replace('.', "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The ISO 3166-1 alpha-2 code (upper case) of a country written as a code or a name;
/// `None` when it names no country.
pub fn country_code(raw: &str) -> Option<String> {
    let v = raw.trim();
    if let Ok(code) = Alpha2::try_from(v) {
        return Some(code.to_string());
    }
    NAMES.get(&fold(v)).cloned().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_names_and_common_forms_become_alpha2() {
        for (raw, want) in [
            ("fr", "FR"),
            (" DE ", "DE"),
            ("USA", "US"),
            ("usa", "US"),
            ("U.S.A.", "US"),
            ("United States", "US"),
            ("Deutschland", "DE"),
            ("Germany", "DE"),
            ("DEU", "DE"),
            ("United Kingdom", "GB"),
            ("united  kingdom", "GB"),
            ("UK", "GB"),
            ("India", "IN"),
            ("IND", "IN"),
            ("France", "FR"),
        ] {
            assert_eq!(country_code(raw).as_deref(), Some(want), "{raw:?}");
        }
    }

    #[test]
    fn what_names_no_country_is_none() {
        for raw in ["", "XX", "Narnia", "QQQ", "123"] {
            assert_eq!(country_code(raw), None, "{raw:?}");
        }
    }
}
