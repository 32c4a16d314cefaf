//! Opaque connection cursors: base64 (URL-safe, unpadded) of `<kind>:<position>`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dossier_store::Position;

const INVALID: &str = "invalid cursor";

fn encode(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

/// The text after `<kind>:` of a cursor, if it is one of that kind.
fn decode<'a>(cursor: &str, kind: &str, buf: &'a mut String) -> Result<&'a str, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| INVALID.to_string())?;
    *buf = String::from_utf8(bytes).map_err(|_| INVALID.to_string())?;
    buf.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .ok_or_else(|| INVALID.to_string())
}

fn int(s: &str) -> Result<i64, String> {
    s.parse().map_err(|_| INVALID.to_string())
}

/// The cursor of a contact in `contacts`.
pub(crate) fn contact(id: i64) -> String {
    encode(&format!("contact:{id}"))
}

/// The contact id a `contacts` cursor points after.
pub(crate) fn parse_contact(cursor: &str) -> Result<i64, String> {
    let mut buf = String::new();
    int(decode(cursor, "contact", &mut buf)?)
}

/// The cursor of a change in a segment's feed.
pub(crate) fn segment_change(id: i64) -> String {
    encode(&format!("change:{id}"))
}

/// The change id a segment feed cursor points after.
pub(crate) fn parse_segment_change(cursor: &str) -> Result<i64, String> {
    let mut buf = String::new();
    int(decode(cursor, "change", &mut buf)?)
}

/// The cursor of a session in a contact's `sessions` (newest first).
pub(crate) fn session(started_at: i64, id: i64) -> String {
    encode(&format!("session:{started_at}:{id}"))
}

/// The `(started_at, id)` a `sessions` cursor points before.
pub(crate) fn parse_session(cursor: &str) -> Result<(i64, i64), String> {
    let mut buf = String::new();
    let rest = decode(cursor, "session", &mut buf)?;
    let (at, id) = rest.split_once(':').ok_or_else(|| INVALID.to_string())?;
    Ok((int(at)?, int(id)?))
}

/// The cursor of a run in `syncRuns` (newest first).
pub(crate) fn run(id: i64) -> String {
    encode(&format!("run:{id}"))
}

/// The run id a `syncRuns` cursor points before.
pub(crate) fn parse_run(cursor: &str) -> Result<i64, String> {
    let mut buf = String::new();
    int(decode(cursor, "run", &mut buf)?)
}

/// An ordering as its cursors name it: `field` or `field desc`, comma-separated.
pub(crate) fn order_spec(keys: impl IntoIterator<Item = (String, bool)>) -> String {
    keys.into_iter()
        .map(|(f, desc)| if desc { format!("{f} desc") } else { f })
        .collect::<Vec<_>>()
        .join(",")
}

/// The cursor of a row of an ordered list: the ordering and the row's place in it.
pub(crate) fn ordered(spec: &str, position: &Position) -> String {
    let json = serde_json::to_string(position).unwrap_or_default();
    encode(&format!("ordered:{spec}:{json}"))
}

/// The place an ordered list's cursor points after; refused when it is not a cursor of the
/// ordering `spec`.
pub(crate) fn parse_ordered(cursor: &str, spec: &str) -> Result<Position, String> {
    let mut buf = String::new();
    let rest = decode(cursor, "ordered", &mut buf)?;
    let json = rest
        .strip_prefix(spec)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(|| "the cursor belongs to another ordering".to_string())?;
    serde_json::from_str(json).map_err(|_| INVALID.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(parse_contact(&contact(42)), Ok(42));
        assert_eq!(parse_session(&session(-5, 7)), Ok((-5, 7)));
        assert_eq!(parse_run(&run(3)), Ok(3));
        assert_eq!(contact(42), "Y29udGFjdDo0Mg");
    }

    #[test]
    fn forged_cursors_are_refused() {
        for bad in [
            "",
            "!!!",
            &encode("contact:"),
            &encode("contact:x"),
            &encode("contacts:1"),
            &run(1),
            &encode("contact:1:2"),
        ] {
            assert_eq!(parse_contact(bad), Err(INVALID.to_string()), "{bad}");
        }
        assert!(parse_session(&encode("session:1")).is_err());
        assert!(parse_run(&contact(1)).is_err());
    }
}
