//! The log lines a user's terminal shows: `DOSSIER_LOG` filters them (default `warn`), to
//! stderr.

use tracing_subscriber::field::{MakeExt, MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{Writer, debug_fn};

/// Starts logging for the process.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOSSIER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .fmt_fields(fields())
        .with_writer(std::io::stderr)
        .init();
}

/// Fields as the default format writes them, but without a statement's text: sqlx logs a
/// slow statement with all of it, thousands of parameters for a bulk insert, beside a
/// summary (`summary`: its first words) that says which statement it was.
fn fields()
-> impl for<'w> MakeVisitor<Writer<'w>, Visitor: VisitFmt + VisitOutput<std::fmt::Result>>
+ Send
+ Sync
+ 'static {
    debug_fn(|w, field, value| match field.name() {
        "db.statement" => Ok(()),
        "message" => write!(w, "{value:?}"),
        name => write!(w, "{name}={value:?}"),
    })
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_slow_statement_shows_its_summary_not_its_text() {
        let out = Buffer::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(fields())
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                target: "sqlx::query",
                summary = "insert into sessions …",
                db.statement = "INSERT INTO sessions VALUES ($1, $2, $3)",
                elapsed_secs = 1.5,
                "slow statement: execution time exceeded alert threshold"
            );
        });
        let line = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            line.contains("slow statement: execution time exceeded alert threshold"),
            "{line}"
        );
        assert!(
            line.contains(r#"summary="insert into sessions …""#),
            "{line}"
        );
        assert!(line.contains("elapsed_secs=1.5"), "{line}");
        assert!(!line.contains("VALUES"), "{line}");
    }
}
