//! SQL text: query checks, parameters.

use crate::cell::Cell;

/// How a dialect writes the n-th parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    /// `$1`, `$2`, ... (PostgreSQL).
    Dollar,
    /// `?` each time (MySQL, SQLite): a value used twice is bound twice.
    Question,
}

/// Collects the parameters of one statement, in placeholder order. PostgreSQL and MySQL bind
/// every value as text, which dialects cast to the column's type in SQL; SQLite binds each
/// with the storage class it was read with.
#[derive(Debug, Clone)]
pub struct Binder {
    style: Placeholders,
    params: Vec<Cell>,
}

impl Binder {
    pub fn new(style: Placeholders) -> Self {
        Self {
            style,
            params: vec![],
        }
    }

    /// Adds a parameter and returns its placeholder.
    pub fn bind(&mut self, value: impl Into<Cell>) -> String {
        self.params.push(value.into());
        match self.style {
            Placeholders::Dollar => format!("${}", self.params.len()),
            Placeholders::Question => "?".to_string(),
        }
    }

    /// Placeholders for a list, comma-separated (`$1, $2`), for `IN (...)`.
    pub fn bind_list<'a>(&mut self, values: impl IntoIterator<Item = &'a String>) -> String {
        values
            .into_iter()
            .map(|v| self.bind(v.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The condition a catalog query's rows meet: `schema` (the SQL of its schema column) in
    /// `schemas`, and with `table` (schema, name) that one table, named by `name`.
    pub fn catalog_filter(
        &mut self,
        schema: &str,
        name: &str,
        schemas: &[String],
        table: Option<(&str, &str)>,
    ) -> String {
        let mut filter = format!("{schema} IN ({})", self.bind_list(schemas));
        if let Some((s, n)) = table {
            filter.push_str(&format!(
                " AND {schema} = {} AND {name} = {}",
                self.bind(s),
                self.bind(n)
            ));
        }
        filter
    }

    pub fn into_params(self) -> Vec<Cell> {
        self.params
    }
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

/// A list of names for a message, at most `max` of them.
pub(crate) fn name_list<'a>(names: impl IntoIterator<Item = &'a str>, max: usize) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    let shown: Vec<String> = names.iter().take(max).map(|n| n.to_string()).collect();
    let mut out = shown.join(", ");
    if names.len() > max {
        out.push_str(&format!(" and {} more", names.len() - max));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn binds_in_placeholder_order() {
        let mut b = Binder::new(Placeholders::Dollar);
        assert_eq!(b.bind("a"), "$1");
        assert_eq!(b.bind_list(&["x".to_string(), "y".to_string()]), "$2, $3");
        assert_eq!(b.into_params(), ["a", "x", "y"]);
        let mut b = Binder::new(Placeholders::Question);
        assert_eq!(b.bind("a"), "?");
        assert_eq!(b.bind("a"), "?");
        assert_eq!(b.into_params().len(), 2);
    }

    #[test]
    fn long_lists_are_cut() {
        assert_eq!(name_list(["a", "b", "c"], 2), "a, b and 1 more");
        assert_eq!(name_list(["a"], 2), "a");
    }
}
