//! SQL text shared by the write path: parameter placeholders and statement sizes.

/// Rows per multi-row statement: well under SQLite's and PostgreSQL's parameter limits.
pub(super) const CHUNK: usize = 200;

/// Keys looked up per statement when they go as one JSON parameter (see [`Json::strings`]).
pub(super) const KEYS_CHUNK: usize = 1000;

/// `($1, $2, ...), (...)` for `rows` rows of `cols` parameters, numbered from `first`;
/// on SQLite plain `?`, so templates must use each row's parameters in order.
///
/// Why `?` there: sqlx-sqlite asks SQLite for every parameter's name, a linear search over
/// the named parameters, which makes a statement with n `$N` parameters cost O(n²).
pub(super) fn placeholders(
    sqlite: bool,
    rows: usize,
    cols: usize,
    first: usize,
    row: impl Fn(&[String]) -> String,
) -> String {
    if sqlite {
        // Every row reads the same: built once, not once per row and parameter (a bulk
        // load builds thousands of these statements).
        let one = row(&vec![param(true, 0); cols]);
        return std::iter::repeat_n(one.as_str(), rows)
            .collect::<Vec<_>>()
            .join(", ");
    }
    (0..rows)
        .map(|r| {
            let ps: Vec<String> = (0..cols)
                .map(|c| param(sqlite, first + r * cols + c))
                .collect();
            row(&ps)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `n`th parameter (from 1): `$n`, or `?` on SQLite (see [`placeholders`]).
pub(super) fn param(sqlite: bool, n: usize) -> String {
    if sqlite {
        "?".to_string()
    } else {
        crate::filter_sql::numbered(n)
    }
}
