//! SQL text: quoting, query checks, keyset predicates and error classification.

use std::fmt::Display;

use dossier_connector::ConnectorError;

use crate::read::Cell;

/// Quotes an identifier for SQLite: double quotes, embedded `"` doubled.
pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Checks that `query` is a single `SELECT` statement and returns it without trailing `;`
/// and whitespace.
pub(crate) fn check_query(query: &str) -> Result<&str, String> {
    let body = query
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    if body.is_empty() {
        return Err("`query` is empty; write a SELECT statement".into());
    }
    let word: String = skip_comments(body)
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if !(word.eq_ignore_ascii_case("select") || word.eq_ignore_ascii_case("with")) {
        let start: String = if word.is_empty() {
            skip_comments(body).chars().take(20).collect()
        } else {
            word
        };
        return Err(format!(
            "`query` must be a single SELECT statement, starting with SELECT or WITH; \
             it starts with {start:?}"
        ));
    }
    if body.contains(';') {
        return Err("`query` must be a single SELECT statement; remove the `;` \
             (a `;` is refused even inside a string literal)"
            .into());
    }
    Ok(body)
}

/// `sql` without leading whitespace and comments.
fn skip_comments(mut sql: &str) -> &str {
    loop {
        sql = sql.trim_start();
        if let Some(rest) = sql.strip_prefix("--") {
            sql = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = sql.strip_prefix("/*") {
            sql = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return sql;
        }
    }
}

/// The SQL of one page: `select`, the rows after `after` in key order, `LIMIT ?`.
///
/// `select` is a `SELECT ... FROM ...` without `WHERE`; `keys` are quoted column names, cursor
/// first. Returns the SQL and the values to bind before the limit, in order.
pub(crate) fn page<'a>(
    select: &str,
    keys: &[String],
    after: Option<&'a [Cell]>,
) -> (String, Vec<&'a Cell>) {
    let (filter, binds) = match after {
        None => (String::new(), vec![]),
        Some(after) => {
            let (predicate, binds) = after_key(keys, after);
            (format!(" WHERE {predicate}"), binds)
        }
    };
    let order = keys.join(", ");
    (format!("{select}{filter} ORDER BY {order} LIMIT ?"), binds)
}

/// `keys > after` in `ORDER BY keys` order, where NULL sorts before every value.
///
/// Without NULLs in `after` this is a row-value comparison, which SQLite answers with an index
/// range scan when there is a fitting index; a NULL in the row (not in `after`) compares as
/// unknown there, which is right because it sorts first. A NULL in `after` needs the expanded
/// lexicographic form with `IS NULL` tests.
pub(crate) fn after_key<'a>(keys: &[String], after: &'a [Cell]) -> (String, Vec<&'a Cell>) {
    debug_assert_eq!(keys.len(), after.len());
    if !after.iter().any(Cell::is_null) {
        let holes = vec!["?"; after.len()].join(", ");
        return (
            format!("({}) > ({holes})", keys.join(", ")),
            after.iter().collect(),
        );
    }
    let mut terms = vec![];
    let mut binds = vec![];
    for i in 0..keys.len() {
        let mut parts = vec![];
        for (key, value) in keys[..i].iter().zip(after) {
            if value.is_null() {
                parts.push(format!("{key} IS NULL"));
            } else {
                parts.push(format!("{key} = ?"));
                binds.push(value);
            }
        }
        if after[i].is_null() {
            parts.push(format!("{} IS NOT NULL", keys[i]));
        } else {
            parts.push(format!("{} > ?", keys[i]));
            binds.push(&after[i]);
        }
        terms.push(format!("({})", parts.join(" AND ")));
    }
    (terms.join(" OR "), binds)
}

// Primary result codes, https://www.sqlite.org/rescode.html
const SQLITE_ERROR: i32 = 1;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_NOTADB: i32 = 26;

/// Classifies a SQLite error. Busy, locked and I/O errors may pass (retryable); a file that is
/// not a database is the config's fault. With `configuring` (connecting, describing a stream),
/// SQL errors and files that cannot be opened are the config's fault too; otherwise they are
/// source errors that retrying does not fix.
pub(crate) fn error(context: impl Display, e: sqlx::Error, configuring: bool) -> ConnectorError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .unwrap_or(SQLITE_ERROR);
            let message = format!("{context}: {}", db.message());
            match code & 0xff {
                SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR => ConnectorError::remote(message, true),
                SQLITE_NOTADB => ConnectorError::config(format!(
                    "{context}: the file is not a SQLite database ({})",
                    db.message()
                )),
                SQLITE_ERROR | SQLITE_CANTOPEN if configuring => ConnectorError::config(message),
                _ => ConnectorError::remote(message, false),
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
            ConnectorError::remote(format!("{context}: {e}"), true)
        }
        _ => ConnectorError::remote(format!("{context}: {e}"), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote("customers"), r#""customers""#);
        assert_eq!(
            quote(r#"x"; DROP TABLE customers; --"#),
            r#""x""; DROP TABLE customers; --""#
        );
    }

    #[test]
    fn accepts_only_single_selects() {
        assert_eq!(check_query("  select 1 ;\n"), Ok("select 1"));
        assert_eq!(
            check_query("WITH a AS (SELECT 1) SELECT * FROM a"),
            Ok("WITH a AS (SELECT 1) SELECT * FROM a")
        );
        assert_eq!(check_query("SELECT\n*\nFROM t"), Ok("SELECT\n*\nFROM t"));
        assert_eq!(
            check_query("-- note\n/* more */ SELECT 1 -- end"),
            Ok("-- note\n/* more */ SELECT 1 -- end")
        );
        for bad in [
            "",
            " ; ",
            "DELETE FROM customers",
            "selected",
            "PRAGMA table_info(x)",
            "SELECT 1; DROP TABLE customers",
            "-- SELECT\nDELETE FROM customers",
            "/* SELECT */ DELETE FROM customers",
            "-- SELECT 1",
        ] {
            assert!(check_query(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn keyset_predicates() {
        let keys = vec![quote("updated_at"), quote("id")];
        let after = [Cell::Text("2024-01-01".into()), Cell::Int(7)];
        let (sql, binds) = after_key(&keys, &after);
        assert_eq!(sql, r#"("updated_at", "id") > (?, ?)"#);
        assert_eq!(binds.len(), 2);

        let after = [Cell::Null, Cell::Int(7)];
        let (sql, binds) = after_key(&keys, &after);
        assert_eq!(
            sql,
            r#"("updated_at" IS NOT NULL) OR ("updated_at" IS NULL AND "id" > ?)"#
        );
        assert_eq!(binds, vec![&Cell::Int(7)]);

        let (sql, binds) = page("SELECT * FROM \"t\"", &keys[1..], None);
        assert_eq!(sql, r#"SELECT * FROM "t" ORDER BY "id" LIMIT ?"#);
        assert!(binds.is_empty());
    }
}
