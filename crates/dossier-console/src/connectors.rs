//! `/connectors` (admin): the connectors this server knows (built in and installed), with
//! their versions, and what their configs and streams take, read from the JSON Schemas the
//! API's `connectors` query gives.

use std::fmt::Write as _;

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::console::{Signed, State};
use crate::html::{esc, text};

const LIST: &str = "{ connectors { name kind version configSchema streamSchema file sha256 } }";

/// `GET /connectors`.
pub(crate) async fn list(Extract(c): Extract<State>, s: Signed) -> Response {
    let data = match c.query(&s.caller, LIST, json!({})).await {
        Ok(d) => d,
        Err(e) => return s.error(&e),
    };
    let connectors = data["connectors"].as_array().cloned().unwrap_or_default();
    if connectors.is_empty() {
        return s.page(
            StatusCode::OK,
            "Connectors",
            "<p>No connectors are registered in this process.</p>",
        );
    }
    let mut body = String::from(
        r#"<p class="muted">Install or remove plugins with <code>dossier connectors install</code> and <code>dossier connectors remove</code>.</p>
<div class="table"><table><thead><tr><th scope="col">Connector</th><th scope="col">Kind</th><th scope="col">Version</th><th scope="col">Library</th></tr></thead><tbody>"#,
    );
    for k in &connectors {
        let name = text(&k["name"]);
        let library = match (k["file"].as_str(), k["sha256"].as_str()) {
            (Some(f), Some(sha)) => format!(
                r#"<code>{}</code><br><span class="muted">sha256 <code>{}</code></span>"#,
                esc(f),
                esc(sha)
            ),
            (Some(f), None) => format!("<code>{}</code>", esc(f)),
            _ => "—".to_string(),
        };
        let _ = write!(
            body,
            r##"<tr><th scope="row"><a href="#connector-{}">{}</a></th><td>{}</td><td>{}</td><td>{library}</td></tr>"##,
            esc(&anchor(&name)),
            esc(&name),
            esc(&text(&k["kind"]).to_lowercase()),
            esc(&text(&k["version"])),
        );
    }
    body.push_str("</tbody></table></div>");
    for k in &connectors {
        let name = text(&k["name"]);
        let _ = write!(
            body,
            r#"<section id="connector-{}" class="connector"><h2>{} <span class="muted">{}</span></h2>"#,
            esc(&anchor(&name)),
            esc(&name),
            esc(&text(&k["version"])),
        );
        body.push_str(&schema(
            "Connection config",
            &name,
            "config",
            &k["configSchema"],
        ));
        body.push_str(&schema(
            "Stream settings",
            &name,
            "stream",
            &k["streamSchema"],
        ));
        body.push_str("</section>");
    }
    s.page(StatusCode::OK, "Connectors", &body)
}

/// A name as an id fragment: letters, digits, `-` and `_` kept, the rest as `-`.
fn anchor(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A JSON Schema as a table of its properties (name, type, required, default,
/// description), and the whole schema as JSON beneath, folded.
fn schema(title: &str, connector: &str, part: &str, schema: &Value) -> String {
    let id = format!("{}-{part}", anchor(connector));
    let mut out = format!(r#"<h3 id="{}">{title}</h3>"#, esc(&id));
    if let Some(d) = schema["description"].as_str() {
        let _ = write!(out, "<p>{}</p>", esc(d));
    }
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match schema["properties"].as_object().filter(|p| !p.is_empty()) {
        None => out.push_str("<p>No settings.</p>"),
        Some(props) => {
            let _ = write!(
                out,
                r#"<div class="table"><table aria-labelledby="{}"><thead><tr><th scope="col">Setting</th><th scope="col">Type</th><th scope="col">Required</th><th scope="col">Default</th><th scope="col">Description</th></tr></thead><tbody>"#,
                esc(&id)
            );
            for (key, p) in props {
                let _ = write!(
                    out,
                    "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(key),
                    esc(&type_of(p)),
                    if required.contains(&key.as_str()) {
                        "yes"
                    } else {
                        ""
                    },
                    match p.get("default") {
                        Some(d) => format!("<code>{}</code>", esc(&d.to_string())),
                        None => String::new(),
                    },
                    esc(p["description"].as_str().unwrap_or_default()),
                );
            }
            out.push_str("</tbody></table></div>");
        }
    }
    let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
    let _ = write!(
        out,
        r#"<details><summary>{title} as JSON Schema</summary><pre class="json">{}</pre></details>"#,
        esc(&pretty)
    );
    out
}

/// A property's type as a person reads it: `string`, `integer or null`, `one of "a", "b"`,
/// a named definition (`SslMode`, from a `$ref`), or the alternatives of `anyOf`/`oneOf`.
fn type_of(p: &Value) -> String {
    if let Some(values) = p["enum"].as_array() {
        let values: Vec<String> = values.iter().map(Value::to_string).collect();
        return format!("one of {}", values.join(", "));
    }
    if let Some(r) = p["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(options) = p[key].as_array().filter(|o| !o.is_empty()) {
            let mut names: Vec<String> = Vec::new();
            for o in options {
                let name = type_of(o);
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            return names.join(if key == "allOf" { " and " } else { " or " });
        }
    }
    let base = match &p["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    };
    match p.get("items") {
        Some(items) => base.replacen("array", &format!("array of {}", type_of(items)), 1),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_types_read_as_text() {
        assert_eq!(type_of(&json!({"type": "string"})), "string");
        assert_eq!(
            type_of(&json!({"type": ["integer", "null"]})),
            "integer or null"
        );
        assert_eq!(type_of(&json!({"enum": ["a", "b"]})), r#"one of "a", "b""#);
        assert_eq!(
            type_of(&json!({"type": "array", "items": {"type": "string"}})),
            "array of string"
        );
        assert_eq!(
            type_of(&json!({"anyOf": [{"$ref": "#/$defs/SslMode"}, {"type": "null"}]})),
            "SslMode or null"
        );
        assert_eq!(
            type_of(&json!({"allOf": [{"$ref": "#/definitions/Auth"}]})),
            "Auth"
        );
        assert_eq!(type_of(&json!({"description": "x"})), "any");
        assert_eq!(
            type_of(&json!({"type": ["array", "null"], "items": {"type": "string"}})),
            "array of string or null"
        );
        assert_eq!(anchor("airbyte:source-faker"), "airbyte-source-faker");
    }
}
