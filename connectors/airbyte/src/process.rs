//! One run of the source's program, whatever its protocol (Airbyte, Singer): its files in a
//! private directory, a limited environment, stdout read as bounded lines with an idle
//! timeout, stderr to the logs.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::config::PASSED_ENV;
use crate::error::AirbyteError;
use crate::protocol::Message;

/// How long a source that closed its stdout may take to exit before it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// Lines of stderr an error message quotes.
const STDERR_TAIL: usize = 5;
/// Longest stderr line kept (the rest of a longer one is cut, not buffered).
const MAX_STDERR_LINE: usize = 64 * 1024;
/// Longest part of a bad line an error message quotes.
const QUOTED: usize = 120;
/// Read buffer of the source's stdout.
const STDOUT_BUFFER: usize = 256 * 1024;

/// How to run the source's program.
#[derive(Debug, Clone)]
pub struct Program {
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub idle_timeout: Duration,
    pub max_line_bytes: usize,
    /// The program's file name, naming the source in logs and errors.
    pub label: Arc<str>,
    /// Whether stderr is the program's log (Singer taps log there, INFO included): its lines
    /// are logged at the level they name, else at `warn`.
    pub stderr_is_log: bool,
    /// What the program is, naming it in errors: `airbyte source`, `singer tap`.
    pub kind: &'static str,
    /// Most records held while waiting for the state that covers them.
    pub max_records_per_state: usize,
}

impl Program {
    /// The program a source's config names, labelled with its file name; `kind` names what it
    /// is in errors.
    pub fn from_config(config: &crate::Config, kind: &'static str) -> Program {
        let label: Arc<str> = std::path::Path::new(&config.command[0])
            .file_name()
            .map_or_else(
                || config.command[0].clone(),
                |n| n.to_string_lossy().into_owned(),
            )
            .into();
        Program {
            command: config.command.clone(),
            env: config.env.clone(),
            idle_timeout: config.idle_timeout(),
            max_line_bytes: config.max_line_bytes(),
            label,
            stderr_is_log: false,
            kind,
            max_records_per_state: config.max_records_per_state(),
        }
    }

    /// Which program and what it was doing, for errors: `airbyte source `x` (<what>)`.
    pub fn at(&self, what: &str) -> String {
        format!("{} `{}` ({what})", self.kind, self.label)
    }

    /// Starts the program with `args` (`read`, `--discover`) and `files` (`--config`,
    /// `--catalog`, `--state`: each option and the JSON written to a 0600 file in a directory
    /// of its own, removed when the run is dropped).
    pub fn start(
        &self,
        args: &[&str],
        files: &[(&str, &Json)],
        at: String,
    ) -> Result<Run, AirbyteError> {
        let io = |what: &'static str| {
            let at = at.clone();
            move |source| AirbyteError::Io { at, what, source }
        };
        let tmp = std::env::temp_dir();
        sweep_stale(&tmp);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(&tmp)
            .map_err(io("cannot create a private directory"))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(io("cannot make its directory private"))?;
        let (program, own_args) = self.command.split_first().expect("validated: not empty");
        let mut cmd = Command::new(program);
        cmd.args(own_args).args(args);
        for (option, json) in files {
            let path = dir
                .path()
                .join(format!("{}.json", option.trim_start_matches('-')));
            write_private(&path, json).map_err(io("cannot write the source's files"))?;
            cmd.arg(option).arg(&path);
        }
        cmd.env_clear();
        for var in PASSED_ENV {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.envs(&self.env)
            // Temporary files of the source go where its config is, and go with it.
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| AirbyteError::Spawn {
            at: at.clone(),
            program: program.clone(),
            source,
        })?;
        tracing::debug!(source_process = %self.label, ?args, pid = child.id(), "source started");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_task = tokio::spawn(log_stderr(
            BufReader::new(stderr),
            self.label.clone(),
            self.stderr_is_log,
            tail.clone(),
        ));
        Ok(Run {
            child,
            stdout: BufReader::with_capacity(STDOUT_BUFFER, stdout),
            line: Vec::new(),
            line_no: 0,
            at,
            label: self.label.clone(),
            idle_timeout: self.idle_timeout,
            max_line_bytes: self.max_line_bytes,
            stderr_task: Some(stderr_task),
            stderr_tail: tail,
            _dir: dir,
        })
    }
}

fn write_private(path: &Path, json: &Json) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(&serde_json::to_vec(json).map_err(std::io::Error::other)?)?;
    f.sync_all()
}

/// A running source. Dropping it kills the child and removes its files.
pub struct Run {
    child: Child,
    stdout: BufReader<ChildStdout>,
    line: Vec<u8>,
    line_no: u64,
    at: String,
    label: Arc<str>,
    idle_timeout: Duration,
    max_line_bytes: usize,
    stderr_task: Option<JoinHandle<()>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    _dir: tempfile::TempDir,
}

/// What one read of a line found.
enum Line {
    Complete,
    TooLong,
    Eof,
}

impl Run {
    pub fn at(&self) -> &str {
        &self.at
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// A protocol error at the last line read.
    pub fn protocol(&self, message: impl Into<String>) -> AirbyteError {
        AirbyteError::Protocol {
            at: self.at.clone(),
            line: self.line_no,
            message: message.into(),
        }
    }

    /// The next Airbyte message, `None` once stdout is closed and the source exited with 0.
    pub async fn next_message(&mut self) -> Result<Option<Message>, AirbyteError> {
        self.next_json().await
    }

    /// The next line as `T`, `None` once stdout is closed and the source exited with 0. Blank
    /// lines are skipped.
    pub async fn next_json<T: DeserializeOwned>(&mut self) -> Result<Option<T>, AirbyteError> {
        if !self.next_line().await? {
            return Ok(None);
        }
        serde_json::from_slice::<T>(&self.line)
            .map(Some)
            .map_err(|e| AirbyteError::InvalidJson {
                at: self.at.clone(),
                line: self.line_no,
                error: e.to_string(),
                start: quote(&self.line),
            })
    }

    /// The whole output as one JSON document (a Singer catalog, often written over many
    /// lines), at most `max_line_bytes` long, once the program exited with 0.
    pub async fn read_document<T: DeserializeOwned>(&mut self) -> Result<T, AirbyteError> {
        let mut doc = Vec::new();
        while self.next_line().await? {
            if doc.len() + self.line.len() >= self.max_line_bytes {
                return Err(AirbyteError::LineTooLong {
                    at: self.at.clone(),
                    line: self.line_no,
                    limit: self.max_line_bytes,
                });
            }
            doc.extend_from_slice(&self.line);
            doc.push(b'\n');
        }
        serde_json::from_slice::<T>(&doc).map_err(|e| AirbyteError::InvalidJson {
            at: self.at.clone(),
            line: e.line() as u64,
            error: e.to_string(),
            start: quote(&doc),
        })
    }

    /// Reads the next line that is not blank into `self.line`; false once stdout is closed
    /// and the source exited with 0.
    async fn next_line(&mut self) -> Result<bool, AirbyteError> {
        loop {
            self.line.clear();
            let read = tokio::time::timeout(
                self.idle_timeout,
                read_line(&mut self.stdout, &mut self.line, self.max_line_bytes),
            )
            .await;
            let read = match read {
                Err(_) => {
                    return Err(AirbyteError::Idle {
                        at: self.at.clone(),
                        secs: self.idle_timeout.as_secs(),
                    });
                }
                Ok(r) => r.map_err(|source| AirbyteError::Io {
                    at: self.at.clone(),
                    what: "cannot read its output",
                    source,
                })?,
            };
            match read {
                Line::Eof => {
                    self.finish().await?;
                    return Ok(false);
                }
                Line::TooLong => {
                    return Err(AirbyteError::LineTooLong {
                        at: self.at.clone(),
                        line: self.line_no + 1,
                        limit: self.max_line_bytes,
                    });
                }
                Line::Complete => {}
            }
            self.line_no += 1;
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(true);
        }
    }

    /// Waits for the source to exit once its stdout is closed.
    async fn finish(&mut self) -> Result<(), AirbyteError> {
        let status = match tokio::time::timeout(EXIT_WAIT, self.child.wait()).await {
            Ok(s) => s.map_err(|source| AirbyteError::Io {
                at: self.at.clone(),
                what: "cannot wait for it to exit",
                source,
            })?,
            Err(_) => {
                let _ = self.child.start_kill();
                return Err(AirbyteError::Exited {
                    at: self.at.clone(),
                    status: "no exit".into(),
                    detail: format!(
                        ": it closed its output but was still running after {} s, and was killed",
                        EXIT_WAIT.as_secs()
                    ),
                });
            }
        };
        // Its stderr ends with it; the last lines may say why it failed.
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(EXIT_WAIT, task).await;
        }
        if status.success() {
            tracing::debug!(source_process = %self.label, lines = self.line_no, "source exited");
            return Ok(());
        }
        let tail: Vec<String> = self
            .stderr_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        let detail = if tail.is_empty() {
            format!(" after {} lines of output", self.line_no)
        } else {
            format!(
                " after {} lines of output; its stderr ended with: {}",
                self.line_no,
                tail.join(" | ")
            )
        };
        Err(AirbyteError::Exited {
            at: self.at.clone(),
            status: describe(status),
            detail,
        })
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// The start of a bad line, for an error message.
fn quote(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(QUOTED)]);
    let more = if line.len() > QUOTED { "…" } else { "" };
    format!("{:?}{more}", text.trim_end())
}

/// Reads one line (without its `\n`) into `buf`, at most `max` bytes: a longer line is
/// `TooLong` and its bytes past `max` are never held.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                Line::Eof
            } else {
                Line::Complete
            });
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&available[..take]);
        r.consume(if done { take + 1 } else { take });
        if done {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Line::Complete);
        }
    }
}

/// Logs each stderr line with the source's name, keeping the last few for error messages.
async fn log_stderr<R: AsyncBufRead + Unpin>(
    mut r: R,
    label: Arc<str>,
    is_log: bool,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_line(&mut r, &mut buf, MAX_STDERR_LINE).await {
            Ok(Line::Eof) | Err(_) => return,
            Ok(Line::TooLong) => {
                // Skip the rest of the line.
                let mut rest = Vec::new();
                let _ = r.read_until(b'\n', &mut rest).await;
                buf.truncate(MAX_STDERR_LINE);
            }
            Ok(Line::Complete) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        if line.is_empty() {
            continue;
        }
        match stderr_level(is_log, &line) {
            tracing::Level::DEBUG => {
                tracing::debug!(source_process = %label, stderr = %line, "source wrote to stderr")
            }
            tracing::Level::INFO => {
                tracing::info!(source_process = %label, stderr = %line, "source wrote to stderr")
            }
            _ => tracing::warn!(source_process = %label, stderr = %line, "source wrote to stderr"),
        }
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line.chars().take(500).collect());
    }
}

/// The level of a stderr line: `warn`, unless stderr is the program's log and the line says
/// it is INFO or DEBUG (`... | INFO | ...` as the Singer SDK writes, `INFO ...` as
/// singer-python does).
fn stderr_level(is_log: bool, line: &str) -> tracing::Level {
    if !is_log {
        return tracing::Level::WARN;
    }
    let head: String = line.chars().take(80).collect();
    let says = |level: &str| {
        head.starts_with(level)
            || head.contains(&format!(" {level} "))
            || head.contains(&format!("|{level}|"))
    };
    if says("DEBUG") {
        tracing::Level::DEBUG
    } else if says("INFO") {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    }
}

/// Logs a LOG message at its level.
pub fn log(label: &str, level: &str, message: &str, stack_trace: Option<&str>) {
    let stack = stack_trace.unwrap_or("");
    match level {
        "FATAL" | "ERROR" => {
            tracing::error!(source_process = %label, stack_trace = stack, "{message}")
        }
        "WARN" => tracing::warn!(source_process = %label, "{message}"),
        "INFO" => tracing::info!(source_process = %label, "{message}"),
        "DEBUG" => tracing::debug!(source_process = %label, "{message}"),
        _ => tracing::trace!(source_process = %label, level, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_on_stderr_keeps_its_level_other_stderr_warns() {
        let sdk =
            "2026-12-07 23:15:43,788 | INFO     | tap-postgres.public-payment    | Beginning sync";
        assert_eq!(stderr_level(true, sdk), tracing::Level::INFO);
        assert_eq!(
            stderr_level(true, "INFO Starting sync"),
            tracing::Level::INFO
        );
        assert_eq!(stderr_level(true, "DEBUG x"), tracing::Level::DEBUG);
        assert_eq!(
            stderr_level(true, "Traceback (most recent call last):"),
            tracing::Level::WARN
        );
        assert_eq!(
            stderr_level(true, "2026 | ERROR | boom"),
            tracing::Level::WARN
        );
        assert_eq!(stderr_level(false, sdk), tracing::Level::WARN);
    }

    #[tokio::test]
    async fn lines_are_bounded_and_never_held_past_the_limit() {
        let input: &[u8] = b"short\r\n0123456789abcdef\nend";
        let mut r = BufReader::with_capacity(4, input);
        let mut buf = vec![];
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Complete
        ));
        assert_eq!(buf, b"short");
        buf.clear();
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::TooLong
        ));
        assert!(buf.len() <= 10, "{}", buf.len());
        let mut r = BufReader::new(&b"end"[..]);
        buf.clear();
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Complete
        ));
        buf.clear();
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Eof
        ));
    }
}

/// The private directories of runs start with this, then the pid of the process that made
/// them.
const DIR_PREFIX: &str = "dossier-airbyte-";

/// Removes the private directories that processes no longer running left in `tmp`: a
/// `kill -9` (or a crash) gives a run no chance to remove its own, and it holds the source's
/// config, secrets included. A directory whose process is alive (or cannot be told, as
/// without `/proc`) is kept.
fn sweep_stale(tmp: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {
                tracing::info!(dir = %entry.path().display(), pid, "removed the files a stopped run left")
            }
            Err(e) => {
                tracing::debug!(dir = %entry.path().display(), error = %e, "cannot remove a stopped run's files")
            }
        }
    }
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    #[test]
    fn a_stopped_process_files_are_swept_and_a_live_one_kept() {
        let tmp = tempfile::tempdir().unwrap();
        // Above any pid_max Linux allows (2^22): no process has it.
        let stale = tmp.path().join(format!("{DIR_PREFIX}999999999-abc"));
        let live = tmp
            .path()
            .join(format!("{DIR_PREFIX}{}-def", std::process::id()));
        let other = tmp.path().join("dossier-airbyte-old");
        for d in [&stale, &live, &other] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("config.json"), "{}").unwrap();
        }
        sweep_stale(tmp.path());
        assert!(!stale.exists());
        assert!(live.join("config.json").exists());
        assert!(other.join("config.json").exists());
    }
}
