//! Issue 22's crash documents over the real binary: each one used to abort `dossier serve`
//! (a stack overflow in the parser) or grow it until the kernel killed it (fragment
//! expansion). Now each is refused within a second, the process stays up, its memory stays
//! flat, and `/healthz` answers throughout.

mod common;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use common::*;

fn nest(open: &str, middle: &str, close: &str, n: usize) -> String {
    format!("{}{middle}{}", open.repeat(n), close.repeat(n))
}

/// `{ ...F<levels> }` where each fragment spreads the one below three times.
fn fan_out(levels: usize) -> String {
    let mut q = format!("{{ ...F{levels} }} fragment F0 on Query {{ __typename }}");
    for i in 1..=levels {
        let p = i - 1;
        q.push_str(&format!(
            " fragment F{i} on Query {{ ...F{p} ...F{p} ...F{p} }}"
        ));
    }
    q
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn healthz(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

#[test]
fn crash_documents_are_refused_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 50);
    let key = api_key(&config(d), "read");
    let (mut child, addr) = serve(&["--config", config(d).to_str().unwrap()]);
    let rss_before = rss_kib(child.id());
    let documents = [
        (
            "list argument",
            format!("{{ __typename(x: {}) }}", nest("[", "1", "]", 10_000)),
            "DOCUMENT_TOO_DEEP",
        ),
        (
            "where input objects",
            format!(
                "{{ contacts(where: {}) {{ totalCount }} }}",
                nest(
                    "{and: [",
                    "{field: \\\"country\\\", eq: \\\"FR\\\"}",
                    "]}",
                    5_000
                )
            ),
            "DOCUMENT_TOO_DEEP",
        ),
        (
            "directive argument",
            format!(
                "{{ __typename @include(if: {}) }}",
                nest("[", "true", "]", 10_000)
            ),
            "DOCUMENT_TOO_DEEP",
        ),
        ("3^16 spreads", fan_out(16), "TOO_MANY_SELECTIONS"),
        ("3^20 spreads", fan_out(20), "TOO_MANY_SELECTIONS"),
    ];
    for (what, q, code) in &documents {
        let body = format!("{{\"query\": \"{q}\"}}");
        let start = Instant::now();
        let resp = post_graphql(&addr, &key, &body);
        let took = start.elapsed();
        assert!(resp.starts_with("HTTP/1.1 200"), "{what}: {resp}");
        assert!(resp.contains(code), "{what}: {resp}");
        assert!(took < Duration::from_secs(1), "{what}: {took:?}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "{what}: the server exited"
        );
    }
    // Many at once, while /healthz is asked.
    let senders: Vec<_> = (0..8)
        .map(|i| {
            let (addr, key) = (addr.clone(), key.clone());
            let q = documents[i % documents.len()].1.clone();
            std::thread::spawn(move || {
                post_graphql(&addr, &key, &format!("{{\"query\": \"{q}\"}}"))
            })
        })
        .collect();
    let start = Instant::now();
    assert!(healthz(&addr).starts_with("HTTP/1.1 200"));
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    for s in senders {
        assert!(s.join().unwrap().starts_with("HTTP/1.1 200"));
    }
    // Still serving, and memory did not grow with the documents' expansion.
    let resp = post_graphql(&addr, &key, r#"{"query": "{ contacts { totalCount } }"}"#);
    assert!(resp.contains("\"totalCount\":50"), "{resp}");
    let rss_after = rss_kib(child.id());
    assert!(
        rss_after < rss_before + 100 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn the_query_command_admits_documents_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 20);
    let deep = format!("{{ __typename(x: {}) }}", nest("[", "1", "]", 10_000));
    let o = run(&["query", &deep, "--config", config(d).to_str().unwrap()]);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        out.contains("DOCUMENT_TOO_DEEP") || out.contains("nests more than"),
        "{out}"
    );
}

/// `server.max_buckets` bounds a dashboard answer before it is computed: a year of weekly
/// buckets is refused under a cap of 10, a week of daily ones answers.
#[test]
fn a_time_series_over_server_max_buckets_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    demo(d, 20);
    let text = std::fs::read_to_string(config(d)).unwrap().replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\nmax_buckets = 10",
    );
    std::fs::write(config(d), text).unwrap();
    let series = |interval: &str, to: &str| {
        format!(
            r#"{{ sessionStats(kind: "order", interval: {interval}, from: "2024-01-01T00:00:00Z", to: "{to}") {{ points {{ totals {{ count }} }} }} }}"#
        )
    };
    let year = query(d, &series("WEEK", "2025-01-01T00:00:00Z"));
    let error = year["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(error.contains("at most 10"), "{year}");
    let week = query(d, &series("DAY", "2024-01-08T00:00:00Z"));
    assert!(week.get("errors").is_none(), "{week}");
    assert_eq!(
        week["data"]["sessionStats"]["points"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
}
