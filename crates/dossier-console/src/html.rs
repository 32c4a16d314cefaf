//! Pages as strings: every value from a store, a key or a request goes through [`esc`]; the
//! markup around it is literal. No inline script or style: the Content-Security-Policy
//! refuses both.

use std::fmt::Write as _;

use dossier_gateway::Role;

/// `s` as HTML text or a double-quoted attribute value.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as one component of a URL path or query value.
pub(crate) fn url(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A JSON value as short text: strings without their quotes, absent as an empty string.
pub(crate) fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Who is signed in, for the header of every page.
pub(crate) struct Chrome<'a> {
    pub(crate) workspace: &'a str,
    pub(crate) role: Role,
    /// The session's CSRF token, for the sign-out form.
    pub(crate) csrf: &'a str,
    /// Whether the console runs without keys (nothing to sign out of but the session).
    pub(crate) open: bool,
    pub(crate) flash: Option<String>,
}

/// A POST form of one button, carrying the CSRF token.
pub(crate) fn button(action: &str, label: &str, csrf: &str) -> String {
    format!(
        r#"<form method="post" action="{}" class="inline"><input type="hidden" name="csrf" value="{}"><button type="submit">{}</button></form>"#,
        esc(action),
        esc(csrf),
        esc(label)
    )
}

/// A whole page: head, navigation (when signed in), the flash message and `body`.
pub(crate) fn page(title: &str, chrome: Option<&Chrome<'_>>, body: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · Dossier</title>
<link rel="stylesheet" href="/assets/console.css">
</head>
<body>
"#,
        esc(title)
    );
    if let Some(c) = chrome {
        out.push_str(r#"<header><nav aria-label="Main"><a href="/" class="brand">Dossier</a> "#);
        // Sources are read through an admin-only query: other roles would see a refusal.
        if c.role >= Role::Admin {
            out.push_str(r#"<a href="/sources">Sources</a> "#);
        }
        out.push_str(r#"<a href="/contacts">Contacts</a> <a href="/segments">Segments</a> <a href="/shortcuts">Shortcuts</a> "#);
        if c.role >= Role::Admin {
            out.push_str(r#"<a href="/keys">Keys</a> <a href="/connectors">Connectors</a> "#);
        }
        out.push_str(r#"<a href="/graphiql">GraphiQL</a></nav>"#);
        let _ = write!(
            out,
            r#"<p class="who">{} · {}{}</p>"#,
            esc(c.workspace),
            esc(c.role.as_str()),
            if c.open { " · open access" } else { "" }
        );
        if !c.open {
            out.push_str(&button("/sign-out", "Sign out", c.csrf));
        }
        out.push_str("</header>\n");
        if let Some(flash) = &c.flash {
            let _ = write!(out, r#"<p class="flash" role="status">{}</p>"#, esc(flash));
        }
    }
    let _ = write!(
        out,
        "<main>\n<h1>{}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        esc(title)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_html_would_read_as_markup() {
        assert_eq!(
            esc(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(esc("plain é"), "plain é");
    }

    #[test]
    fn url_components_keep_only_unreserved_bytes() {
        assert_eq!(url("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
    }
}
