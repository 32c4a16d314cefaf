//! Durations as people write them in configs and filters: `90d`, `12h`, `30m`, `2w`, `45s`.

/// Seconds per unit suffix, largest first (canonical texts use the largest exact unit).
pub const DURATION_UNITS: [(&str, i64); 5] = [
    ("w", 7 * 86_400),
    ("d", 86_400),
    ("h", 3_600),
    ("m", 60),
    ("s", 1),
];

/// Parses `<positive integer><unit>` (units s, m, h, d, w) into seconds.
pub fn parse_duration_secs(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a duration; write a positive whole number and a unit, e.g. 90d, 12h, 30m, 2w or 45s"
        )
    };
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = t.split_at(split);
    let per = DURATION_UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, n)| *n)
        .ok_or_else(bad)?;
    let n: i64 = num.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(bad());
    }
    n.checked_mul(per)
        .ok_or_else(|| format!("duration {text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_refuses_the_rest() {
        assert_eq!(parse_duration_secs("90d"), Ok(90 * 86_400));
        assert_eq!(parse_duration_secs(" 2w "), Ok(1_209_600));
        assert_eq!(parse_duration_secs("45s"), Ok(45));
        for bad in ["", "d", "-3d", "0d", "3 days", "1.5h", "10y"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
        insta::assert_snapshot!(parse_duration_secs("3 days").unwrap_err(), @r#""3 days" is not a duration; write a positive whole number and a unit, e.g. 90d, 12h, 30m, 2w or 45s"#);
    }
}
