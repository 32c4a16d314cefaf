//! `/sources`: each source's health, and sync now, pause, resume and cancel as POST forms.

use std::fmt::Write as _;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dossier_gateway::Role;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ConsoleError;
use crate::console::{Signed, State};
use crate::forms::when;
use crate::html::{button, esc, text, url};

const SOURCES: &str = "{ sources { name connector schedule streams health { paused running runningBy nextDueAt consecutiveFailures lastError lastSuccessAt } } }";

/// How long "sync now" waits for the run before answering that it goes on in the
/// background: a full sync can take far longer than a browser should wait for a page.
const SYNC_WAIT: Duration = Duration::from_secs(2);

/// `GET /sources`.
pub(crate) async fn list(Extract(c): Extract<State>, s: Signed) -> Response {
    let data = match c.query(&s.caller, SOURCES, json!({})).await {
        Ok(d) => d,
        Err(e) => return s.error(&e),
    };
    let sources = data["sources"].as_array().cloned().unwrap_or_default();
    if sources.is_empty() {
        return s.page(
            StatusCode::OK,
            "Sources",
            "<p>No sources are configured: add one under <code>[[sources]]</code> in <code>dossier.toml</code>.</p>",
        );
    }
    let writes = s.caller.role >= Role::Write;
    let mut body = String::from(
        r#"<div class="table"><table><caption class="muted">Health of each source; times in UTC</caption>
<thead><tr><th scope="col">Source</th><th scope="col">State</th><th scope="col">Failures in a row</th><th scope="col">Last error</th><th scope="col">Last success</th><th scope="col">Next due</th>"#,
    );
    if writes {
        body.push_str(r#"<th scope="col">Actions</th>"#);
    }
    body.push_str("</tr></thead><tbody>\n");
    for src in &sources {
        let name = src["name"].as_str().unwrap_or_default();
        let h = &src["health"];
        let running = h["running"].as_bool().unwrap_or_default();
        let paused = h["paused"].as_bool().unwrap_or_default();
        let failures = h["consecutiveFailures"].as_i64().unwrap_or_default();
        let state = match (running, paused) {
            (true, _) => format!(
                r#"<span class="ok">running</span> <span class="muted">({})</span>"#,
                esc(&text(&h["runningBy"]))
            ),
            (false, true) => "paused".to_string(),
            (false, false) if failures > 0 => r#"<span class="error">failing</span>"#.into(),
            (false, false) => "idle".to_string(),
        };
        let _ = write!(
            body,
            r#"<tr><th scope="row"><a href="/sources/{}">{}</a><br><span class="muted">{} · {}</span></th><td>{state}</td><td>{}</td><td class="error">{}</td><td>{}</td><td>{}</td>"#,
            url(name),
            esc(name),
            esc(&text(&src["connector"])),
            esc(&schedule(&src["schedule"])),
            failures,
            esc(&text(&h["lastError"])),
            esc(&when(&h["lastSuccessAt"])),
            esc(&when(&h["nextDueAt"])),
        );
        if writes {
            let base = format!("/sources/{}", url(name));
            body.push_str("<td>");
            if running {
                body.push_str(&button(&format!("{base}/cancel"), "Cancel run", &s.csrf));
            } else if !paused {
                body.push_str(&button(&format!("{base}/sync"), "Sync now", &s.csrf));
            }
            body.push(' ');
            if paused {
                body.push_str(&button(&format!("{base}/resume"), "Resume", &s.csrf));
            } else {
                body.push_str(&button(&format!("{base}/pause"), "Pause", &s.csrf));
            }
            body.push_str("</td>");
        }
        body.push_str("</tr>\n");
    }
    body.push_str("</tbody></table></div>");
    s.page(StatusCode::OK, "Sources", &body)
}

fn schedule(v: &Value) -> String {
    match v.as_str() {
        Some(s) => format!("every {s}"),
        None => "manual".to_string(),
    }
}

#[derive(Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: Option<String>,
    /// `source`: answer with the source's own page rather than the list.
    #[serde(default)]
    back: Option<String>,
}

/// A one-button POST form for a source's action; `to_source` brings the answer back to the
/// source's page.
pub(crate) fn action_form(action: &str, label: &str, csrf: &str, to_source: bool) -> String {
    if !to_source {
        return button(action, label, csrf);
    }
    format!(
        r#"<form method="post" action="{}" class="inline"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="back" value="source"><button type="submit">{}</button></form>"#,
        esc(action),
        esc(csrf),
        esc(label)
    )
}

/// `POST /sources/{name}/{action}`: `sync`, `pause`, `resume`, `cancel` or `check`.
pub(crate) async fn act(
    Extract(c): Extract<State>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let s = match c.writer(&headers, form.csrf.as_deref()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let document = match action.as_str() {
        "sync" => {
            "mutation($s: String!) { triggerSync(source: $s) { id status rowsRead rowsWritten rowsRejected error } }"
        }
        "pause" => "mutation($s: String!) { pauseSource(name: $s) { name } }",
        "resume" => "mutation($s: String!) { resumeSource(name: $s) { name } }",
        "cancel" => "mutation($s: String!) { cancelSync(source: $s) }",
        "check" => "mutation($s: String!) { checkSource(name: $s) { problems notes } }",
        _ => return s.error(&ConsoleError::NotFound),
    };
    let back = if form.back.as_deref() == Some("source") {
        format!("/sources/{}", url(&name))
    } else {
        "/sources".to_string()
    };
    let vars = json!({ "s": name });
    let result = if action == "sync" {
        // The run goes on in its own task when it outlasts the wait; a refusal (role,
        // unknown source, paused) comes back at once.
        let console = c.clone();
        let caller = s.caller.clone();
        let mut task = tokio::spawn(async move { console.query(&caller, document, vars).await });
        match tokio::time::timeout(SYNC_WAIT, &mut task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(error = %e, source = name, "a console sync task failed");
                Err(ConsoleError::Refused {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: "the sync failed inside the server".into(),
                })
            }
            Err(_) => {
                return s.redirect(
                    &c,
                    &back,
                    format!("The sync of {name} is running; it goes on in the background."),
                );
            }
        }
    } else {
        c.query(&s.caller, document, vars).await
    };
    match result {
        Ok(d) => {
            let message = match action.as_str() {
                "sync" => {
                    let run = &d["triggerSync"];
                    format!(
                        "Sync of {name}: run {} {}, {} rows read, {} written, {} rejected{}",
                        text(&run["id"]),
                        text(&run["status"]),
                        text(&run["rowsRead"]),
                        text(&run["rowsWritten"]),
                        text(&run["rowsRejected"]),
                        run["error"]
                            .as_str()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    )
                }
                "pause" => format!("{name} is paused."),
                "check" => check_message(&name, &d["checkSource"]),
                "resume" => format!("{name} is resumed."),
                _ if d["cancelSync"] == true => {
                    format!("{name}'s run stops at its next batch.")
                }
                _ => format!("{name} is not running."),
            };
            s.redirect(&c, &back, message)
        }
        // Refused for the role: say so on a page of its own, with its status.
        Err(e) if e.status() == StatusCode::FORBIDDEN => s.error(&e),
        Err(e) => s.redirect(&c, &back, format!("{name}: {e}")),
    }
}

/// What a check found, as one line.
fn check_message(name: &str, found: &Value) -> String {
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default()
    };
    let (problems, notes) = (list(&found["problems"]), list(&found["notes"]));
    let mut out = if problems.is_empty() {
        format!("Check of {name}: ready to sync.")
    } else {
        format!(
            "Check of {name}: {} problem{}: {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems.join("; ")
        )
    };
    if !notes.is_empty() {
        let _ = write!(out, " Notes: {}", notes.join("; "));
    }
    out
}
