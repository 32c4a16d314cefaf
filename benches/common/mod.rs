//! What the benchmarks share: the `dossier` binary, peak memory of a child process, and a
//! throwaway PostgreSQL database driven with `psql`.

#![allow(dead_code)]

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

pub fn dossier() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dossier"));
    c.env("DOSSIER_LOG", "warn");
    c
}

/// Peak resident memory of a process, read from /proc while it runs.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
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
        let name = format!("dossier_bench_{}", std::process::id());
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
