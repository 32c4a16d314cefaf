//! `/sources/{name}`: one source's health, streams, run history (a table and a chart), the
//! records its mappings refused, its actions, and the progress of a run as it goes
//! (`/sources/{name}/progress`, server-sent events from the `syncProgress` subscription).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use dossier_gateway::Role;
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::ConsoleError;
use crate::console::{Signed, State};
use crate::forms::when;
use crate::html::{esc, text, url};
use crate::sources::action_form;

/// Runs on the page (the table and the chart).
const RUNS: usize = 30;

const SOURCE: &str = "query($s: String) { sources { name connector schedule streams streamConfigs health { paused running runningBy nextDueAt consecutiveFailures lastError lastSuccessAt } rejectedRecords(first: 20) { stream recordId error } } syncRuns(source: $s, first: 30) { edges { node { id trigger status startedAt finishedAt rowsRead rowsWritten rowsRejected error streams } } } }";

const PROGRESS: &str = "subscription($s: String) { syncProgress(source: $s) { kind runId stream rows streamRows read written rejected deleted error elapsedSeconds } }";

/// `GET /sources/{name}`: 404 for a name the caller's workspace does not have.
pub(crate) async fn page(
    Extract(c): Extract<State>,
    s: Signed,
    Path(name): Path<String>,
) -> Response {
    let data = match c.query(&s.caller, SOURCE, json!({ "s": name })).await {
        Ok(d) => d,
        Err(e) => return s.error(&e),
    };
    let Some(src) = data["sources"]
        .as_array()
        .and_then(|all| all.iter().find(|x| x["name"] == name.as_str()))
    else {
        return s.error(&ConsoleError::NotFound);
    };
    let h = &src["health"];
    let running = h["running"].as_bool().unwrap_or_default();
    let paused = h["paused"].as_bool().unwrap_or_default();
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<dl class="facts"><dt>Connector</dt><dd>{}</dd><dt>Schedule</dt><dd>{}</dd><dt>State</dt><dd>{}</dd><dt>Failures in a row</dt><dd>{}</dd><dt>Last error</dt><dd class="error">{}</dd><dt>Last success</dt><dd>{}</dd><dt>Next due</dt><dd>{}</dd><dt>Streams</dt><dd>{}</dd></dl>"#,
        esc(&text(&src["connector"])),
        esc(src["schedule"].as_str().unwrap_or("manual")),
        match (running, paused) {
            (true, _) => format!("running ({})", esc(&text(&h["runningBy"]))),
            (false, true) => "paused".into(),
            (false, false) => "idle".into(),
        },
        h["consecutiveFailures"].as_i64().unwrap_or_default(),
        esc(&text(&h["lastError"])),
        esc(&when(&h["lastSuccessAt"])),
        esc(&when(&h["nextDueAt"])),
        src["streams"]
            .as_array()
            .map(|v| v
                .iter()
                .map(|x| esc(&text(x)))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
    );
    // Filled by progress.js from the server-sent events; says something useful without it.
    let _ = write!(
        body,
        r#"<p id="progress" class="progress" role="status" aria-live="polite" data-progress="/sources/{}/progress">{}</p>"#,
        url(&name),
        if running {
            "A run is in progress."
        } else {
            "No run in progress."
        }
    );
    if s.caller.role >= Role::Write {
        let base = format!("/sources/{}", url(&name));
        body.push_str(r#"<p class="actions">"#);
        let mut action = |a: &str, label: &str| {
            body.push_str(&action_form(&format!("{base}/{a}"), label, &s.csrf, true));
            body.push(' ');
        };
        if running {
            action("cancel", "Cancel run");
        } else if !paused {
            action("sync", "Sync now");
        }
        if paused {
            action("resume", "Resume");
        } else {
            action("pause", "Pause");
        }
        action("check", "Check connection and mappings");
        body.push_str("</p>");
    }
    body.push_str(&streams(&src["streamConfigs"]));
    let runs: Vec<&Value> = data["syncRuns"]["edges"]
        .as_array()
        .map(|e| e.iter().map(|e| &e["node"]).take(RUNS).collect())
        .unwrap_or_default();
    body.push_str("<h2>Runs</h2>");
    if runs.is_empty() {
        body.push_str("<p>No runs yet.</p>");
    } else {
        body.push_str(&chart(&runs));
        body.push_str(&run_table(&runs));
    }
    body.push_str("<h2>Records the mappings refused</h2>");
    let rejected = src["rejectedRecords"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if rejected.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        body.push_str(
            r#"<div class="table"><table><caption class="muted">Newest first</caption><thead><tr><th scope="col">Stream</th><th scope="col">Record</th><th scope="col">Why</th></tr></thead><tbody>"#,
        );
        for r in &rejected {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&text(&r["stream"])),
                esc(&text(&r["recordId"])),
                esc(&text(&r["error"])),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str(r#"<script src="/assets/progress.js" defer></script>"#);
    s.page(StatusCode::OK, &format!("Source {name}"), &body)
}

/// Each stream's read and mapping as configured, one table row per setting.
fn streams(configs: &Value) -> String {
    let Some(configs) = configs.as_array().filter(|c| !c.is_empty()) else {
        return String::new();
    };
    let mut out = String::from("<h2>Streams and mappings</h2>");
    for st in configs {
        let _ = write!(
            out,
            r#"<section class="stream"><h3>{}</h3><dl class="facts">"#,
            esc(&text(&st["name"]))
        );
        let Some(settings) = st.as_object() else {
            continue;
        };
        for (key, value) in settings.iter().filter(|(k, _)| *k != "name") {
            let _ = write!(out, "<dt>{}</dt><dd>", esc(key));
            match value.as_object() {
                Some(fields) => {
                    out.push_str("<ul class=\"plain\">");
                    for (k, v) in fields {
                        let shown = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        let _ = write!(
                            out,
                            "<li><code>{}</code> = <code>{}</code></li>",
                            esc(k),
                            esc(&shown)
                        );
                    }
                    out.push_str("</ul>");
                }
                None => out.push_str(&format!("<code>{}</code>", esc(&text(value)))),
            }
            out.push_str("</dd>");
        }
        out.push_str("</dl></section>");
    }
    out
}

/// Deleted records and retries of a run, from its per-stream counters.
fn deleted_and_retries(streams: &Value) -> (u64, u64) {
    let Some(map) = streams.as_object() else {
        return (0, 0);
    };
    let deleted = map
        .values()
        .filter_map(|v| v["deleted"].as_u64())
        .sum::<u64>();
    let retries = map.get("retries").and_then(Value::as_u64).unwrap_or(0);
    (deleted, retries)
}

/// Seconds between two GraphQL date-times, as text.
fn duration(started: &Value, finished: &Value) -> String {
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    match (parse(started), parse(finished)) {
        (Some(a), Some(b)) => format!("{:.1} s", (b - a).num_milliseconds() as f64 / 1000.0),
        _ => "—".into(),
    }
}

fn run_table(runs: &[&Value]) -> String {
    let mut out = String::from(
        r#"<div class="table"><table><caption class="muted">Newest first; times in UTC</caption><thead><tr><th scope="col">Run</th><th scope="col">Trigger</th><th scope="col">Status</th><th scope="col">Started</th><th scope="col">Duration</th><th scope="col">Read</th><th scope="col">Written</th><th scope="col">Rejected</th><th scope="col">Deleted</th><th scope="col">Retries</th><th scope="col">Error</th></tr></thead><tbody>"#,
    );
    for r in runs {
        let (deleted, retries) = deleted_and_retries(&r["streams"]);
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td>{}</td><td class="{}">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{deleted}</td><td>{retries}</td><td class="error">{}</td></tr>"#,
            esc(&text(&r["id"])),
            esc(&text(&r["trigger"])),
            if r["status"] == "failed" { "error" } else { "" },
            esc(&text(&r["status"])),
            esc(&when(&r["startedAt"])),
            duration(&r["startedAt"], &r["finishedAt"]),
            esc(&text(&r["rowsRead"])),
            esc(&text(&r["rowsWritten"])),
            esc(&text(&r["rowsRejected"])),
            esc(&text(&r["error"])),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// Rows read per run, oldest on the left, failed runs marked: an SVG drawn on the server
/// (no script), each bar titled for screen readers and pointers.
fn chart(runs: &[&Value]) -> String {
    const W: usize = 12;
    const GAP: usize = 4;
    const H: f64 = 80.0;
    let max = runs
        .iter()
        .filter_map(|r| r["rowsRead"].as_f64())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let width = runs.len() * (W + GAP);
    let mut out = format!(
        r#"<figure class="chart"><svg role="img" aria-labelledby="chart-title" viewBox="0 0 {width} {}" width="{width}" height="{}"><title id="chart-title">Rows read by the last {} runs, oldest first</title>"#,
        H + 2.0,
        H + 2.0,
        runs.len()
    );
    for (i, r) in runs.iter().rev().enumerate() {
        let rows = r["rowsRead"].as_f64().unwrap_or(0.0);
        let h = (rows / max * H).max(1.0);
        let class = match r["status"].as_str() {
            Some("failed") => "bar failed",
            Some("running") => "bar running",
            _ => "bar",
        };
        let _ = write!(
            out,
            r#"<rect class="{class}" x="{}" y="{:.1}" width="{W}" height="{h:.1}"><title>run {}: {} rows read, {}</title></rect>"#,
            i * (W + GAP),
            H + 1.0 - h,
            esc(&text(&r["id"])),
            rows,
            esc(&text(&r["status"])),
        );
    }
    out.push_str(
        r#"</svg><figcaption class="muted">Rows read per run; failed runs in red.</figcaption></figure>"#,
    );
    out
}

/// `GET /sources/{name}/progress`: the source's run events as server-sent events, each the
/// `syncProgress` event as JSON, through the gateway's schema as the session's caller.
pub(crate) async fn progress(
    Extract(c): Extract<State>,
    s: Signed,
    Path(name): Path<String>,
) -> Response {
    let events = dossier_gateway::subscribe(
        &c.schema,
        &c.store,
        s.caller.clone(),
        PROGRESS,
        Some(json!({ "s": name })),
    );
    // A refusal (an unknown source, the role) is the stream's one response: sent as a
    // `refused` event, after which the stream ends.
    let stream = events.map(|v| {
        Ok::<_, Infallible>(match crate::gql::refusal(&v) {
            Some(e) => Event::default().event("refused").data(e.to_string()),
            None => Event::default().data(v["data"]["syncProgress"].to_string()),
        })
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
