//! The scheduler against real stores: a controllable clock for schedules (no real minutes),
//! coalesced triggers, pause, cancel at the next batch, retries of a source that fails for a
//! while, a non-retryable error failing at once, and a scheduler that dies mid-run being taken
//! over on PostgreSQL by another one that finishes the source exactly.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dossier_connector::{
    BatchStream, Catalog, ConnectorError, ConnectorFactory, Problem, Registry, Source, Spec,
    StreamConfig, StreamInfo, StreamState,
};
use dossier_core::value::to_micros;
use dossier_store::{RunRow, SqlStore};
use dossier_sync::scheduler::{ManualClock, Scheduler, SchedulerOptions, sync_now};
use dossier_sync::{Config, Engine, Progress, RunControl, SyncError};
use dossier_test_support::PgDb;
use futures::StreamExt as _;
use sqlx::{AssertSqlSafe, Connection as _};

const PEOPLE: i64 = 3_000;

/// A SQLite source file with `PEOPLE` people.
async fn source_db(dir: &Path) -> String {
    let path = dir.join("source.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT NOT NULL, updated_at TEXT NOT NULL)")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {PEOPLE}) \
         INSERT INTO people SELECT i, 'p' || i || '@example.com', '2024-01-01 00:00:00' FROM s"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    path.display().to_string()
}

/// The connectors these tests sync from (the binary's registry is dossier-cli's).
fn sql_registry() -> Registry {
    let mut registry = Registry::new();
    registry.register::<dossier_connector_sqlite::SqliteConnector>();
    registry.register::<dossier_connector_postgres::PostgresConnector>();
    registry
}

fn config(store_url: &str, sources: &[(&str, &str, &str)], extra: &str) -> String {
    let mut out = format!("[store]\nurl = \"{store_url}\"\n\n{extra}\n");
    for (name, connector, settings) in sources {
        out += &format!(
            r#"
[[sources]]
name = "{name}"
connector = "{connector}"
config = {settings}
batch_size = 100
bulk_commit_rows = 100
retry = {{ attempts = 3, initial = "1s", max = "2s" }}

[[sources.streams]]
name = "people"
read = {{ table = "people", cursor = "id" }}

[sources.streams.mapping]
target = "contact"
id = "id"
identities = {{ email = "email" }}
"#
        );
    }
    out
}

async fn engine(dir: &Path, registry: Registry, text: &str) -> Arc<Engine> {
    let loaded = Config::parse(text, "test config", dir.to_path_buf(), &registry).unwrap();
    let store = SqlStore::open(&loaded.config.store.url).await.unwrap();
    Engine::new(store, registry, loaded).await.unwrap()
}

async fn runs(e: &Engine, source: &str) -> Vec<RunRow> {
    let mut r = e
        .store()
        .runs(e.workspace(), Some(source), 100, None)
        .await
        .unwrap()
        .items;
    r.reverse();
    r
}

/// Waits (real time, bounded) until no run of `source` is `running` and there are `n` runs.
async fn settled(e: &Engine, source: &str, n: usize) -> Vec<RunRow> {
    for _ in 0..300 {
        let r = runs(e, source).await;
        if r.len() >= n && r.iter().all(|r| r.status != "running") {
            // Give the lease back its moment (release follows the run's end).
            tokio::time::sleep(Duration::from_millis(100)).await;
            return runs(e, source).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "runs of {source} did not settle: {:?}",
        runs(e, source).await
    );
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test]
async fn schedules_follow_a_controllable_clock() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_db(dir.path()).await;
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let text = config(
        &store,
        &[("shop", "sqlite", &format!("{{ path = \"{src}\" }}"))],
        "",
    )
    .replace("batch_size = 100", "batch_size = 1000\nschedule = \"15m\"");
    let e = engine(dir.path(), sql_registry(), &text).await;
    let clock = Arc::new(ManualClock::new(at("2026-01-01T00:00:00Z")));
    let s = Scheduler::start(
        e.clone(),
        clock.clone(),
        "a".into(),
        SchedulerOptions::default(),
    )
    .await
    .unwrap();
    // Nothing is due before the first slot.
    assert_eq!(s.tick().await.unwrap(), 0);
    clock.advance(chrono::Duration::minutes(15));
    assert_eq!(s.tick().await.unwrap(), 1);
    let r = settled(&e, "shop", 1).await;
    assert_eq!(
        (r[0].status.as_str(), r[0].trigger.as_str()),
        ("succeeded", "schedule")
    );
    assert_eq!(r[0].due_at, Some(to_micros(at("2026-01-01T00:15:00Z"))));
    assert_eq!(r[0].rows_read, PEOPLE);
    // The machine sleeps an hour: one run for the late slot, not four catch-ups.
    clock.advance(chrono::Duration::hours(1));
    assert_eq!(s.tick().await.unwrap(), 1);
    let r = settled(&e, "shop", 2).await;
    assert_eq!(r[1].due_at, Some(to_micros(at("2026-01-01T00:30:00Z"))));
    assert_eq!(r[1].rows_read, 0, "incremental: nothing changed");
    assert_eq!(s.tick().await.unwrap(), 0);
    let sched = e
        .store()
        .schedules(e.workspace(), to_micros(clock.now_for_test()))
        .await
        .unwrap();
    assert_eq!(
        sched[0].next_due,
        Some(to_micros(at("2026-01-01T01:30:00Z")))
    );
    assert_eq!(sched[0].consecutive_failures, 0);
    // Restarting with the same schedule keeps the pending slot; a changed one starts afresh.
    let again = Scheduler::start(
        e.clone(),
        clock.clone(),
        "a".into(),
        SchedulerOptions::default(),
    )
    .await
    .unwrap();
    drop(again);
    let due = |e: Arc<Engine>| async move {
        e.store()
            .schedule(e.workspace(), "shop", 0)
            .await
            .unwrap()
            .unwrap()
            .next_due
    };
    assert_eq!(
        due(e.clone()).await,
        Some(to_micros(at("2026-01-01T01:30:00Z")))
    );
    let every_5m = engine(
        dir.path(),
        sql_registry(),
        &text.replace("schedule = \"15m\"", "schedule = \"5m\""),
    )
    .await;
    Scheduler::start(
        every_5m.clone(),
        clock.clone(),
        "a".into(),
        SchedulerOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        due(every_5m).await,
        Some(to_micros(at("2026-01-01T01:20:00Z"))),
        "now (01:15) + 5m"
    );
    // A second scheduler on the same SQLite store is refused.
    let err = Scheduler::start(
        e.clone(),
        clock.clone(),
        "b".into(),
        SchedulerOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("another scheduler (a on"), "{err}");
}

trait NowForTest {
    fn now_for_test(&self) -> DateTime<Utc>;
}
impl NowForTest for ManualClock {
    fn now_for_test(&self) -> DateTime<Utc> {
        dossier_sync::scheduler::Clock::now(self)
    }
}

#[tokio::test]
async fn triggers_coalesce_and_pause_holds() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_db(dir.path()).await;
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let text = config(
        &store,
        &[("shop", "sqlite", &format!("{{ path = \"{src}\" }}"))],
        "",
    );
    let e = engine(dir.path(), sql_registry(), &text).await;
    let clock = Arc::new(ManualClock::new(at("2026-01-01T00:00:00Z")));
    let s = Scheduler::start(
        e.clone(),
        clock.clone(),
        "a".into(),
        SchedulerOptions::default(),
    )
    .await
    .unwrap();
    let ws = e.workspace();
    for _ in 0..3 {
        e.store().request_trigger(ws, "shop").await.unwrap();
    }
    assert_eq!(s.tick().await.unwrap(), 1);
    assert_eq!(settled(&e, "shop", 1).await[0].trigger, "manual");
    assert_eq!(s.tick().await.unwrap(), 0, "three triggers were one run");
    e.store().set_paused(ws, "shop", true).await.unwrap();
    e.store().request_trigger(ws, "shop").await.unwrap();
    assert_eq!(s.tick().await.unwrap(), 0, "paused");
    let err = sync_now(&e, "shop", None, "manual", &dossier_sync::NoProgress)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "source \"shop\" is paused; resume it first"
    );
    e.store().set_paused(ws, "shop", false).await.unwrap();
    assert_eq!(
        s.tick().await.unwrap(),
        1,
        "the trigger waited for the resume"
    );
    settled(&e, "shop", 2).await;
}

/// Sets the cancel flag after `after` batches.
struct CancelAfter(Arc<std::sync::atomic::AtomicBool>, usize, AtomicUsize);
impl Progress for CancelAfter {
    fn batch_committed(&self, _: &str, _: u64) {
        if self.2.fetch_add(1, Ordering::SeqCst) + 1 == self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn a_cancelled_run_keeps_its_batches_and_the_next_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_db(dir.path()).await;
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let text = config(
        &store,
        &[("shop", "sqlite", &format!("{{ path = \"{src}\" }}"))],
        "",
    );
    let control = RunControl::default();
    // A first load commits in groups, here of up to two batches (fewer when the next one is
    // not read yet): the cancel after the third commit keeps three to six whole batches.
    let text = text.replace("bulk_commit_rows = 100", "bulk_commit_rows = 200");
    let e = engine(dir.path(), sql_registry(), &text).await;
    let progress = CancelAfter(control.cancel.clone(), 3, AtomicUsize::new(0));
    let err = e
        .sync_with("shop", None, "manual", &progress, &control)
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Cancelled), "{err}");
    let r = runs(&e, "shop").await;
    assert_eq!(r[0].status, "cancelled");
    let kept = r[0].rows_read;
    assert!(
        (300..=600).contains(&kept) && kept % 100 == 0,
        "three commits of whole batches: {kept}"
    );
    assert_eq!(
        r[0].end_state.as_ref().unwrap()["people"]["cursor"],
        serde_json::json!({ "int": kept })
    );
    assert_eq!(e.store().counts(e.workspace()).await.unwrap().0, kept);
    let done = e
        .sync("shop", None, "manual", &dossier_sync::NoProgress)
        .await
        .unwrap();
    assert_eq!(done.rows_read(), (PEOPLE - kept) as u64);
    assert_eq!(e.store().counts(e.workspace()).await.unwrap().0, PEOPLE);
}

#[tokio::test]
async fn a_source_failing_inside_a_group_keeps_the_batches_written_before_it() {
    let dir = tempfile::tempdir().unwrap();
    // The seventh batch is inside the first group.
    let e = grouped_engine(dir.path(), |f| Flaky {
        cut_after: Some(7),
        ..f
    })
    .await;
    let err = e
        .sync("shop", None, "manual", &dossier_sync::NoProgress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the source went away"), "{err}");
    let r = runs(&e, "shop").await;
    assert_eq!(r[0].status, "failed");
    assert_eq!(r[0].rows_read, 700);
    assert_eq!(
        r[0].end_state.as_ref().unwrap()["people"]["cursor"],
        serde_json::json!({ "int": 700 })
    );
    assert_eq!(e.store().counts(e.workspace()).await.unwrap().0, 700);
}

#[tokio::test]
async fn a_group_commits_rather_than_wait_on_a_slow_source() {
    let dir = tempfile::tempdir().unwrap();
    // A group could hold 2 s; the source stalls 3 s after three batches.
    let e = grouped_engine(dir.path(), |f| Flaky {
        stall: Some((3, Duration::from_secs(3))),
        ..f
    })
    .await;
    let run = tokio::spawn({
        let e = e.clone();
        async move {
            e.sync("shop", None, "manual", &dossier_sync::NoProgress)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        e.store().counts(e.workspace()).await.unwrap().0,
        300,
        "the three batches are committed while the source stalls"
    );
    run.await.unwrap().unwrap();
    assert_eq!(e.store().counts(e.workspace()).await.unwrap().0, PEOPLE);
}

/// An engine on a new SQLite store in `dir` whose source `shop` reads the people table
/// through the SQLite connector wrapped as `wrap` says, a first load in groups of up to ten
/// batches.
async fn grouped_engine(dir: &Path, wrap: impl FnOnce(Flaky) -> Flaky) -> Arc<Engine> {
    let src = source_db(dir).await;
    let store = format!("sqlite://{}", dir.join("store.db").display());
    let registry = sql_registry();
    let flaky = wrap(Flaky::new(registry.get("sqlite").unwrap()));
    registry.register_factory("flaky", Arc::new(flaky)).unwrap();
    let text = config(
        &store,
        &[("shop", "flaky", &format!("{{ path = \"{src}\" }}"))],
        "",
    )
    .replace("bulk_commit_rows = 100", "bulk_commit_rows = 1000");
    engine(dir, registry, &text).await
}

/// Wraps the SQLite connector: its first `fail` reads fail with a retryable remote error;
/// with `cut_after`, every read ends after that many batches in a non-retryable one; with
/// `stall`, every read waits that long before the given batch.
#[derive(Clone)]
struct Flaky {
    inner: Arc<dyn ConnectorFactory>,
    fail: Arc<AtomicUsize>,
    cut_after: Option<usize>,
    stall: Option<(usize, Duration)>,
}

impl Flaky {
    fn new(inner: Arc<dyn ConnectorFactory>) -> Self {
        Self {
            inner,
            fail: Arc::new(AtomicUsize::new(0)),
            cut_after: None,
            stall: None,
        }
    }
}

struct FlakySource {
    inner: Box<dyn Source>,
    flaky: Flaky,
}

#[async_trait::async_trait]
impl ConnectorFactory for Flaky {
    fn spec(&self) -> Spec {
        self.inner.spec()
    }
    fn validate_stream(&self, s: &StreamConfig) -> Result<(), ConnectorError> {
        self.inner.validate_stream(s)
    }
    async fn connect(&self, config: serde_json::Value) -> Result<Box<dyn Source>, ConnectorError> {
        Ok(Box::new(FlakySource {
            inner: self.inner.connect(config).await?,
            flaky: self.clone(),
        }))
    }
}

#[async_trait::async_trait]
impl Source for FlakySource {
    async fn check(&self, s: &[StreamConfig]) -> Vec<Problem> {
        self.inner.check(s).await
    }
    async fn discover(&self) -> Result<Catalog, ConnectorError> {
        self.inner.discover().await
    }
    async fn describe(&self, s: &StreamConfig) -> Result<StreamInfo, ConnectorError> {
        self.inner.describe(s).await
    }
    fn read(
        &self,
        s: &StreamConfig,
        state: Option<StreamState>,
        batch: usize,
    ) -> Result<BatchStream, ConnectorError> {
        if self
            .flaky
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(ConnectorError::remote("connection reset by peer", true));
        }
        let mut batches = self.inner.read(s, state, batch)?;
        if let Some((before, wait)) = self.flaky.stall {
            batches = Box::pin(batches.enumerate().then(move |(i, b)| async move {
                if i == before {
                    tokio::time::sleep(wait).await;
                }
                b
            }));
        }
        let Some(n) = self.flaky.cut_after else {
            return Ok(batches);
        };
        let cut = futures::stream::once(async {
            Err(ConnectorError::remote("the source went away", false))
        });
        Ok(Box::pin(batches.take(n).chain(cut)))
    }
}

#[tokio::test]
async fn retryable_errors_back_off_then_succeed_and_a_bad_password_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_db(dir.path()).await;
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let registry = sql_registry();
    let fail = Arc::new(AtomicUsize::new(2));
    registry
        .register_factory(
            "flaky",
            Arc::new(Flaky {
                fail: fail.clone(),
                ..Flaky::new(registry.get("sqlite").unwrap())
            }),
        )
        .unwrap();
    let text = config(
        &store,
        &[
            ("shop", "flaky", &format!("{{ path = \"{src}\" }}")),
            (
                "crm",
                "postgres",
                "{ url = \"postgres://dossier_nobody:wrong@127.0.0.1:5432/postgres\", connect_timeout_secs = 5 }",
            ),
        ],
        "",
    );
    let e = engine(dir.path(), registry, &text).await;
    let started = std::time::Instant::now();
    let ok = sync_now(&e, "shop", None, "manual", &dossier_sync::NoProgress)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "it waited between attempts"
    );
    let r = runs(&e, "shop").await;
    assert_eq!(r[0].status, "succeeded");
    assert_eq!(ok.rows_read(), PEOPLE as u64);
    let people = &r[0].streams["people"];
    assert_eq!(people.retries, 2);
    assert_eq!(people.retry_errors.len(), 2);
    assert!(
        people.retry_errors[0].contains("connection reset by peer"),
        "{:?}",
        people.retry_errors
    );

    // A wrong password is not going to pass: no retries.
    let started = std::time::Instant::now();
    let err = sync_now(&e, "crm", None, "manual", &dossier_sync::NoProgress)
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no backoff: {:?}",
        started.elapsed()
    );
    let r = runs(&e, "crm").await;
    assert_eq!(r[0].status, "failed");
    assert!(
        r[0].error.as_deref().unwrap().contains("dossier_nobody"),
        "{:?}",
        r[0].error
    );
    let health = e
        .store()
        .schedules(e.workspace(), to_micros(Utc::now()))
        .await
        .unwrap();
    let crm = health.iter().find(|h| h.source == "crm").unwrap();
    assert_eq!(crm.consecutive_failures, 1);
    assert!(crm.last_error.is_some());
}

/// Slows every batch a little, so a run can be caught in the middle.
struct Slow;
impl Progress for Slow {
    fn batch_committed(&self, _: &str, _: u64) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_dead_scheduler_is_taken_over_and_the_source_finishes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_db(dir.path()).await;
    let pg = PgDb::create("sched").await;
    let text = config(
        pg.url(),
        &[("shop", "sqlite", &format!("{{ path = \"{src}\" }}"))],
        "",
    );
    let e = engine(dir.path(), sql_registry(), &text).await;
    let clock: Arc<dyn dossier_sync::scheduler::Clock> =
        Arc::new(dossier_sync::scheduler::SystemClock);
    let options = SchedulerOptions {
        lease: Duration::from_millis(1500),
        poll: Duration::from_millis(100),
        max_parallel: 2,
    };
    let a = Scheduler::start(e.clone(), clock.clone(), "a".into(), options.clone())
        .await
        .unwrap();
    // Two schedulers on PostgreSQL are fine.
    let b = Scheduler::start(e.clone(), clock.clone(), "b".into(), options.clone())
        .await
        .unwrap();
    let ws = e.workspace();
    e.store().request_trigger(ws, "shop").await.unwrap();
    // Run A slowly by hand under its claim, then kill it mid-way.
    let claims = e
        .store()
        .claim_due(ws, "a", to_micros(Utc::now()), 1_500_000, 1)
        .await
        .unwrap();
    assert_eq!(claims.len(), 1);
    let engine = e.clone();
    let (clock_a, options_a) = (clock.clone(), options.clone());
    let run_a = tokio::spawn(async move {
        dossier_sync::scheduler::run_under_lease(
            &engine,
            &clock_a,
            "a",
            &options_a,
            claims[0].clone(),
            None,
            &Slow,
        )
        .await
    });
    // While A holds the lease, B finds nothing to do.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(b.tick().await.unwrap(), 0);
    run_a.abort();
    a.abandon();
    let partial = e.store().counts(ws).await.unwrap().0;
    assert!(
        partial > 0 && partial < PEOPLE,
        "A stopped mid-way ({partial} contacts)"
    );
    // After the lease expires, B takes the source over and resumes from the checkpoint.
    let mut took = 0;
    for _ in 0..100 {
        took += b.tick().await.unwrap();
        if took > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(took, 1, "B took the source over");
    let r = settled(&e, "shop", 2).await;
    assert_eq!(r[0].status, "interrupted", "{:?}", r[0]);
    assert_eq!(r[1].trigger, "resume");
    assert_eq!(r[0].owner.as_deref(), Some("a"));
    assert_eq!(r[1].status, "succeeded", "{:?}", r[1]);
    assert_eq!(r[1].owner.as_deref(), Some("b"));
    assert_eq!(
        r[1].rows_read,
        PEOPLE - partial,
        "resumed, nothing read twice"
    );
    assert_eq!(e.store().counts(ws).await.unwrap().0, PEOPLE);
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_run_over_its_timeout_fails_and_keeps_its_batches() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_db(dir.path()).await;
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let text = config(
        &store,
        &[("shop", "sqlite", &format!("{{ path = \"{src}\" }}"))],
        "",
    )
    .replace("batch_size = 100", "batch_size = 100\ntimeout = \"1s\"");
    let e = engine(dir.path(), sql_registry(), &text).await;
    // 30 batches at 50 ms each cannot finish in a second.
    struct Slower;
    impl Progress for Slower {
        fn batch_committed(&self, _: &str, _: u64) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let err = sync_now(&e, "shop", None, "manual", &Slower)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "timed out after 1s (the source's `timeout`); the batches committed before stay"
    );
    let r = runs(&e, "shop").await;
    assert_eq!(r[0].status, "failed");
    let kept = e.store().counts(e.workspace()).await.unwrap().0;
    assert!(kept > 0 && kept < PEOPLE, "{kept}");
    // The next run (no timeout pressure) finishes from there.
    let done = e
        .sync("shop", None, "manual", &dossier_sync::NoProgress)
        .await
        .unwrap();
    assert_eq!(done.rows_read(), (PEOPLE - kept) as u64);
}
