//! Admission: what every document goes through before async-graphql validates or runs it,
//! whatever the transport (POST, GET, a persisted query, a WebSocket `subscribe`, the CLI).
//!
//! Each step bounds the work of the next one, the way Apollo Router bounds its parser
//! (`parser_max_tokens`, `parser_max_recursion`) and its validation
//! (`max_recursive_selections`):
//!
//! 1. [`scan`]: one pass over the raw text counting tokens and bracket nesting, before the
//!    parser sees it. async-graphql's parser (pest) recurses once per nested value, list,
//!    input object and selection set with nothing to stop it: about 1,600 nested `[` overflow
//!    a 2 MiB worker stack and abort the process, so this check must come before any parse.
//! 2. The parse, then [`measure`]: the size the document would have with its fragments
//!    expanded (selections, depth, root fields), computed bottom-up once per fragment, so a
//!    759-byte document spreading fragments 3^16 times costs 17 fragment visits, not 3^16.
//!    async-graphql's own checks (recursion depth, complexity, directives) walk the expanded
//!    document; they only run on documents this step admitted.
//! 3. Aliases, root fields, introspection and the arguments of `__typename`, from the same
//!    walk.
//!
//! Each refusal has its own message and `code`, and is a request error (nothing ran).

use std::collections::HashMap;

use async_graphql::parser::types::{
    ExecutableDocument, Field, OperationType, Selection, SelectionSet,
};
use async_graphql::{Request, ServerError};

use crate::GatewayConfig;

/// The highest `max_nesting` the gateway accepts, whatever the config says: the parser's
/// stack use per level leaves a wide margin at 256 on a 2 MiB stack (it overflows near 1,600).
pub const NESTING_CEILING: usize = 256;

/// The limits of [`admit`], taken from the [`GatewayConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_tokens: usize,
    pub(crate) max_nesting: usize,
    pub(crate) max_selections: u64,
    pub(crate) max_aliases: usize,
    pub(crate) max_root_fields: usize,
    pub(crate) introspection: bool,
}

impl Limits {
    pub(crate) fn of(config: &GatewayConfig) -> Self {
        Self {
            max_tokens: config.max_tokens,
            max_nesting: config.max_nesting.min(NESTING_CEILING),
            max_selections: u64::try_from(config.max_selections).unwrap_or(u64::MAX),
            max_aliases: config.max_aliases,
            max_root_fields: config.max_root_fields,
            introspection: config.introspection,
        }
    }
}

/// A request error (nothing ran): no `locations`, since it is about the whole document, and
/// a `code` extension.
pub(crate) fn request_error(message: impl Into<String>, code: &str) -> ServerError {
    let mut values = async_graphql::ErrorExtensionValues::default();
    values.set("code", code);
    let mut e = ServerError::new(message, None);
    e.extensions = Some(values);
    e
}

/// Admits `request` or says why not; on success the parsed document is kept in the request
/// (execution does not parse it again) and returned.
pub(crate) fn admit<'r>(
    limits: &Limits,
    request: &'r mut Request,
) -> Result<&'r ExecutableDocument, ServerError> {
    if request.query.trim().is_empty() {
        return Err(request_error("the request has no query", "BAD_REQUEST"));
    }
    scan(&request.query, limits)?;
    let doc = async_graphql::parser::parse_query(&request.query).map_err(ServerError::from)?;
    check(&doc, limits)?;
    request.set_parsed_query(doc);
    Ok(request
        .parsed_query()
        .expect("the document was just parsed"))
}

/// Counts tokens and bracket nesting of a document's text, refusing as soon as either passes
/// its limit. It follows GraphQL's lexical grammar only as far as counting needs: strings,
/// block strings and comments are skipped whole (a `{` in a string nests nothing), and a run
/// of name or number characters is one token.
pub(crate) fn scan(text: &str, limits: &Limits) -> Result<(), ServerError> {
    let bytes = text.as_bytes();
    let mut tokens = 0usize;
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 3;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > limits.max_nesting {
                    return Err(past_limit(
                        "nests more than",
                        limits.max_nesting,
                        "levels of braces, brackets and parentheses",
                        "DOCUMENT_TOO_DEEP",
                    ));
                }
                i += 1;
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            b'_' | b'-' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' => {
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'_' | b'.' | b'+' | b'-' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        tokens += 1;
        if tokens > limits.max_tokens {
            return Err(past_limit(
                "has more than",
                limits.max_tokens,
                "tokens",
                "DOCUMENT_TOO_LARGE",
            ));
        }
    }
    Ok(())
}

/// The refusal of a document past limit `max`: "the document {verb} {max} {what}; at most
/// {max} are allowed".
fn past_limit(verb: &str, max: impl std::fmt::Display, what: &str, code: &str) -> ServerError {
    request_error(
        format!("the document {verb} {max} {what}; at most {max} are allowed"),
        code,
    )
}

/// What a selection set (or a fragment) amounts to once its fragments are expanded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Size {
    /// Fields, at every level.
    pub(crate) selections: u64,
    /// Fields at the top level (the root fields, for an operation).
    pub(crate) roots: u64,
    /// Nesting: one per selection set and per fragment spread on the way down.
    pub(crate) height: usize,
}

impl Size {
    fn add(&mut self, other: Size) {
        self.selections = self.selections.saturating_add(other.selections);
        self.roots = self.roots.saturating_add(other.roots);
        self.height = self.height.max(other.height);
    }
}

enum Memo {
    Visiting,
    Done(Size),
}

/// Measures a parsed document without expanding it: each fragment is measured once and its
/// size reused at every spread. Also counts aliases and refuses introspection when it is off
/// and arguments on `__typename`, since the walk visits every field of the text exactly once.
struct Measure<'d> {
    doc: &'d ExecutableDocument,
    limits: &'d Limits,
    fragments: HashMap<&'d str, Memo>,
    aliases: usize,
}

impl<'d> Measure<'d> {
    /// `depth` is where this set sits; the walk stops, refusing, past `max_nesting`, so its
    /// own recursion stays bounded whatever the document (a chain of 2,000 fragments too).
    fn set(&mut self, set: &'d SelectionSet, depth: usize) -> Result<Size, ServerError> {
        if depth > self.limits.max_nesting {
            return Err(self.too_deep());
        }
        let mut size = Size {
            height: depth,
            ..Size::default()
        };
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    self.field(&f.node)?;
                    let inner = self.set(&f.node.selection_set.node, depth + 1)?;
                    size.add(Size {
                        selections: inner.selections.saturating_add(1),
                        roots: 1,
                        height: inner.height,
                    });
                }
                Selection::InlineFragment(i) => {
                    size.add(self.set(&i.node.selection_set.node, depth + 1)?);
                }
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    let fragment = self.fragment(name, depth + 1)?;
                    let height = fragment.height + depth + 1;
                    if height > self.limits.max_nesting {
                        return Err(self.too_deep());
                    }
                    size.add(Size { height, ..fragment });
                }
            }
            if size.selections > self.limits.max_selections {
                return Err(self.too_many(size.selections));
            }
        }
        Ok(size)
    }

    /// The size of fragment `name` measured from its own top (height relative to 0).
    fn fragment(&mut self, name: &'d str, depth: usize) -> Result<Size, ServerError> {
        match self.fragments.get(name) {
            Some(Memo::Done(size)) => return Ok(*size),
            Some(Memo::Visiting) => {
                return Err(request_error(
                    format!("fragment {name} spreads itself; fragments cannot form cycles"),
                    "FRAGMENT_CYCLE",
                ));
            }
            None => {}
        }
        // An unknown fragment adds nothing here; validation reports it.
        let Some(definition) = self.doc.fragments.get(name) else {
            return Ok(Size::default());
        };
        self.fragments.insert(name, Memo::Visiting);
        // Measured at `depth` so the walk's recursion stays bounded, stored relative to 0.
        let mut size = self.set(&definition.node.selection_set.node, depth)?;
        size.height -= depth;
        self.fragments.insert(name, Memo::Done(size));
        Ok(size)
    }

    fn field(&mut self, field: &'d Field) -> Result<(), ServerError> {
        self.aliases += usize::from(field.alias.is_some());
        let name = field.name.node.as_str();
        if !self.limits.introspection && (name == "__schema" || name == "__type") {
            return Err(request_error(
                "introspection is disabled on this gateway",
                "INTROSPECTION_DISABLED",
            ));
        }
        if name == "__typename"
            && let Some((arg, _)) = field.arguments.first()
        {
            return Err(request_error(
                format!("unknown argument \"{}\" on field \"__typename\"", arg.node),
                "GRAPHQL_VALIDATION_FAILED",
            ));
        }
        Ok(())
    }

    fn too_many(&self, n: u64) -> ServerError {
        past_limit(
            "selects more than",
            self.limits.max_selections,
            &format!("fields once its fragments are expanded ({n})"),
            "TOO_MANY_SELECTIONS",
        )
    }

    fn too_deep(&self) -> ServerError {
        past_limit(
            "nests more than",
            self.limits.max_nesting,
            "levels once its fragments are expanded",
            "DOCUMENT_TOO_DEEP",
        )
    }
}

/// The checks of a parsed document: expanded size, aliases, root fields, introspection.
fn check(doc: &ExecutableDocument, limits: &Limits) -> Result<(), ServerError> {
    let mut m = Measure {
        doc,
        limits,
        fragments: HashMap::new(),
        aliases: 0,
    };
    // Fragments first, each on its own: an unused one is still walked by validation.
    let mut names: Vec<&str> = doc.fragments.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    for name in names {
        m.fragment(name, 0)?;
    }
    let mut roots = Vec::new();
    let mut total: u64 = 0;
    for (name, op) in doc.operations.iter() {
        let size = m.set(&op.node.selection_set.node, 0)?;
        total = total.saturating_add(size.selections);
        if total > limits.max_selections {
            return Err(m.too_many(total));
        }
        roots.push((name, size.roots));
    }
    if m.aliases > limits.max_aliases {
        return Err(request_error(
            format!(
                "the document has {} aliases; at most {} are allowed",
                m.aliases, limits.max_aliases
            ),
            "TOO_MANY_ALIASES",
        ));
    }
    for (name, n) in roots {
        if n > limits.max_root_fields as u64 {
            let which = name.map_or("the operation".to_string(), |n| format!("operation {n}"));
            return Err(request_error(
                format!(
                    "{which} selects {n} root fields; at most {} are allowed in one request",
                    limits.max_root_fields
                ),
                "TOO_MANY_ROOT_FIELDS",
            ));
        }
    }
    Ok(())
}

/// The type of the operation a parsed document runs: the one named, or the document's only
/// one; `None` when it is not found.
pub(crate) fn operation_type_in(
    doc: &ExecutableDocument,
    operation: Option<&str>,
) -> Option<OperationType> {
    let mut ops = doc
        .operations
        .iter()
        .filter(|(name, _)| operation.is_none() || name.map(|n| n.as_str()) == operation);
    let (_, op) = ops.next()?;
    if ops.next().is_some() {
        return None;
    }
    Some(op.node.ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::of(&GatewayConfig::default())
    }

    fn admit_text(q: &str) -> Result<(), String> {
        let mut r = Request::new(q);
        admit(&limits(), &mut r).map(|_| ()).map_err(|e| e.message)
    }

    #[test]
    fn the_scan_counts_what_the_parser_would_nest() {
        let l = Limits {
            max_nesting: 3,
            max_tokens: 1000,
            ..limits()
        };
        assert!(scan("{ a { b { c } } }", &l).is_ok());
        assert!(scan("{ a { b { c { d } } } }", &l).is_err());
        // Brackets in strings, block strings and comments nest nothing.
        assert!(scan(r#"{ a(x: "{{{{[[[[") }"#, &l).is_ok());
        assert!(scan("{ a(x: \"\"\"{{{{ \\\"\"\" [[[[\"\"\") }", &l).is_ok());
        assert!(scan("{ a # {{{{{{\n }", &l).is_ok());
        assert!(scan(r#"{ a(x: "\"{{{{") }"#, &l).is_ok());
        // Lists, objects and arguments all count.
        assert!(scan("{ a(x: [{y: 1}]) }", &l).is_err());
    }

    #[test]
    fn the_scan_counts_tokens() {
        let l = Limits {
            max_tokens: 10,
            ..limits()
        };
        // { a ( x : 1.5e3 ) ...F } = 8 tokens (a number and `...` are one each).
        assert!(scan("{ a(x: 1.5e3) ...F }", &l).is_ok());
        assert!(scan("{ a b c d e f g h i j k }", &l).is_err());
        assert!(scan(r#"{ a(x: "one string, however long it is") }"#, &l).is_ok());
    }

    #[test]
    fn fragments_are_measured_without_expanding() {
        // 3^20 expanded fields, measured in 21 fragment visits.
        let mut q = String::from("{ ...F20 } fragment F0 on Query { __typename }");
        for i in 1..=20 {
            let p = i - 1;
            q.push_str(&format!(
                " fragment F{i} on Query {{ ...F{p} ...F{p} ...F{p} }}"
            ));
        }
        let start = std::time::Instant::now();
        let e = admit_text(&q).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_millis(100));
        assert_eq!(
            e,
            "the document selects more than 10000 fields once its fragments are expanded (13122); at most 10000 are allowed"
        );
        let mut doc = async_graphql::parser::parse_query(&q).unwrap();
        doc.operations =
            async_graphql::parser::types::DocumentOperations::Multiple(Default::default());
        let mut m = Measure {
            doc: &doc,
            limits: &Limits {
                max_selections: u64::MAX,
                ..limits()
            },
            fragments: HashMap::new(),
            aliases: 0,
        };
        let size = m.fragment("F20", 0).unwrap();
        assert_eq!(size.selections, 3u64.pow(20));
        assert_eq!(size.height, 21);
    }

    #[test]
    fn cycles_and_chains_are_refused() {
        assert_eq!(
            admit_text("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }")
                .unwrap_err(),
            "fragment A spreads itself; fragments cannot form cycles"
        );
        assert_eq!(
            admit_text("{ ...A } fragment A on Query { __typename ...A }").unwrap_err(),
            "fragment A spreads itself; fragments cannot form cycles"
        );
        // A chain of 1,000 fragments, each spreading the next: refused by depth, the walk
        // never recursing past the limit.
        let mut q = String::from("{ ...F0 }");
        for i in 0..1000 {
            q.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
        }
        q.push_str(" fragment F1000 on Query { __typename }");
        let e = admit_text(&q).unwrap_err();
        assert!(
            e.starts_with(
                "the document nests more than 128 levels once its fragments are expanded"
            ),
            "{e}"
        );
    }

    #[test]
    fn ordinary_documents_are_admitted() {
        admit_text("query Q($n: Int) { contacts(first: $n) { edges { node { ...C } } } } fragment C on Contact { id email }").unwrap();
        assert_eq!(admit_text("  ").unwrap_err(), "the request has no query");
        assert_eq!(
            admit_text("{ __typename(x: 1) }").unwrap_err(),
            "unknown argument \"x\" on field \"__typename\""
        );
    }
}
