//! What the benchmarks share: when they run and how big, the `dossier` binary, a timed sync
//! with the peak memory of its process, the demo shop's mappings, and a throwaway PostgreSQL
//! database driven with `psql`.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail, ensure};

/// Whether to run: `cargo bench` passes --bench (so would `cargo test --benches`, which
/// builds the benches only to check they compile).
pub fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A count from the environment variable `var` (`1_000_000` or `1000000`), else `default`.
pub fn env_count(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The demo shop's streams, mappings and aggregates: examples/demo/dossier.toml from its first
/// stream on, to follow a `shop` source that reads the same tables with another connector.
pub fn demo_streams() -> &'static str {
    const DEMO: &str = include_str!("../../examples/demo/dossier.toml");
    &DEMO[DEMO
        .find("[[sources.streams]]")
        .expect("the demo config has streams")..]
}

pub fn dossier() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dossier"));
    c.env("DOSSIER_LOG", "warn");
    c
}

/// Peak resident memory of a process, read from /proc while it runs.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM")
}

/// One of the memory figures (in KiB) of a process's /proc status: `VmHWM`, `RssAnon`...
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| {
            l.strip_prefix(field)
                .is_some_and(|rest| rest.starts_with(':'))
        })?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `url` with its database name replaced by `db` (the query string, if any, is kept).
pub fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base
        .find("://")
        .context("DOSSIER_BENCH_PG_URL must look like postgres://user@host:port/db")?
        + 3;
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// Runs SQL with `psql`, stopping at the first error.
pub fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args([url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(Stdio::null())
        .output()
        .context("cannot run psql (is the PostgreSQL client installed?)")?;
    if !out.status.success() {
        bail!(
            "psql failed on {:?}: {}",
            sql.lines().next().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The bench database: dropped when this goes out of scope, whether the bench succeeded or not.
pub struct BenchDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl BenchDb {
    pub fn create(admin_url: &str) -> anyhow::Result<Self> {
        Self::create_named(admin_url, "")
    }

    /// A second database of the same run: `dossier_bench_<pid><suffix>`.
    pub fn create_named(admin_url: &str, suffix: &str) -> anyhow::Result<Self> {
        let name = format!("dossier_bench_{}{suffix}", std::process::id());
        psql(admin_url, &format!("DROP DATABASE IF EXISTS {name}"))?;
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            admin_url: admin_url.to_string(),
            url: with_database(admin_url, &name)?,
            name,
        })
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        match psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            Ok(()) => println!("dropped database {}", self.name),
            Err(e) => eprintln!("could not drop database {}: {e:#}", self.name),
        }
    }
}

/// One `dossier sync <source> --json` as a child process.
pub struct TimedSync {
    pub secs: f64,
    /// Records read, over every stream (from the JSON summary).
    pub rows: u64,
    /// Peak resident memory of the child, sampled from `/proc` while it ran.
    pub rss_mib: f64,
    /// What the child logged (`DOSSIER_LOG` decides how much).
    pub stderr: String,
}

impl TimedSync {
    /// Records read per second.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.secs
    }

    /// `N rows in S s = R rows/s, peak RSS M MiB`.
    pub fn summary(&self) -> String {
        format!(
            "{} rows in {:.2}s = {:.0} rows/s, peak RSS {:.1} MiB",
            self.rows,
            self.secs,
            self.rate(),
            self.rss_mib
        )
    }
}

/// Runs `dossier sync <source> --json --config <config>` with `DOSSIER_LOG=<log>`, printing
/// the peak memory so far every 30 s.
pub fn timed_sync(config: &std::path::Path, source: &str, log: &str) -> anyhow::Result<TimedSync> {
    use std::io::Read as _;
    use std::time::{Duration, Instant};

    let start = Instant::now();
    let mut child = dossier()
        .env("DOSSIER_LOG", log)
        .args(["sync", source, "--json", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run dossier")?;
    let pid = child.id();
    // Drained as it comes, so that a chatty child never blocks on a full pipe.
    let mut err_pipe = child.stderr.take().context("stderr")?;
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut peak = 0;
    let mut last_report = Instant::now();
    while child.try_wait()?.is_none() {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            println!(
                "  ... {:.0}s, peak RSS so far {:.1} MiB",
                start.elapsed().as_secs_f64(),
                peak as f64 / 1024.0
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = start.elapsed().as_secs_f64();
    let out = child.wait_with_output()?;
    let stderr = stderr.join().unwrap_or_default();
    if !out.status.success() {
        bail!("dossier sync failed: {}\n{stderr}", out.status);
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("dossier sync printed no JSON summary")?;
    let rows = summary["streams"]
        .as_object()
        .context("no `streams` in the summary")?
        .values()
        .map(|s| s["read"].as_u64().unwrap_or(0))
        .sum();
    Ok(TimedSync {
        secs,
        rows,
        rss_mib: peak as f64 / 1024.0,
        stderr,
    })
}

/// Runs SQL with the `sqlite3` shell on a database file, stopping at the first error, and
/// returns what it printed. The SQL goes in on standard input (so a script may start with a
/// comment) and runs from the file's directory (so a script may attach its neighbours).
pub fn sqlite3(db: &Path, sql: &str) -> anyhow::Result<String> {
    let mut cmd = Command::new("sqlite3");
    cmd.args(["-bail", "-batch"]).arg(db);
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run sqlite3 (is the SQLite command line tool installed?)")?;
    child
        .stdin
        .take()
        .context("no stdin for sqlite3")?
        .write_all(sql.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
