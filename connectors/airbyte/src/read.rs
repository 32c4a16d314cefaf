//! Reading one stream: the source's RECORD and STATE messages as batches, each ending at a
//! STATE and carrying it.
//!
//! A STATE message covers the records written before it. An incremental read holds records
//! until the STATE after them arrives, and a batch is always "every record up to a state, and
//! that state": the engine writes a batch and its state in one transaction, so the store never
//! holds a state without its records, nor records past the state stored with them. Several
//! states may go into one batch (the last one is kept) so that batches reach `batch_size`.
//! Records after the last state are never committed; the next run reads them again from that
//! state. When the read fails (a bad line, a TRACE error, a crash, a timeout) the records
//! already covered by a state are handed over first, then the error.
//!
//! The batching is the same for every protocol ([`Protocol`]: Airbyte's, Singer's); each says
//! how to start its read and turns its messages into records and states.
//!
//! A stream with lookups ([`crate::lookup`]) first reads each lookup stream in full, by a run of
//! its own, into a table; each record of the stream then gets the looked-up fields.
//!
//! A full-refresh read ignores the source's states: every batch carries
//! [`StreamState::full_refresh`], so the engine marks the records it did not see as deleted
//! once the read completes.

use std::sync::Arc;

use dossier_connector::{
    Batch, BatchReader, ConnectorError, FieldInfo, ReadRequest, StreamState, Value,
};
use serde_json::{Map, Value as Json};

use crate::error::AirbyteError;
use crate::lookup::{Joins, SourceStream};
use crate::process::{Program, Run};
use crate::schema::Layout;
use crate::{Stream, SyncMode};

/// A read of one stream as a protocol started it.
pub(crate) struct Plan {
    /// The source's name of the stream, which its records and states must name.
    pub stream: String,
    pub namespace: Option<String>,
    pub layout: Layout,
    pub incremental: bool,
    /// The stored state the read started from (as [`Event::State`] gives them).
    pub initial: Option<Json>,
}

/// What a source's message means to a read.
pub(crate) enum Event {
    Record(Map<String, Json>),
    /// A state, in the form it is stored in: it covers the records before it.
    State(Json),
}

/// A protocol of child-process sources: how to start a read, and its messages as events.
#[async_trait::async_trait]
pub(crate) trait Protocol: Send + Sync + 'static {
    /// The program the protocol runs.
    fn program(&self) -> &Program;
    /// The program's name, for logs.
    fn label(&self) -> &str {
        &self.program().label
    }
    /// Which source and what it was doing, for errors: `airbyte source `x` (<what>)`.
    fn at(&self, what: &str) -> String {
        self.program().at(what)
    }
    fn max_records_per_state(&self) -> usize {
        self.program().max_records_per_state
    }
    /// The source's stream a configured stream reads (resolved and checked as a read would).
    async fn source_stream(
        &self,
        name: &str,
        stream: &Stream,
    ) -> Result<SourceStream, AirbyteError>;
    /// Resolves the stream and starts the source reading it from the stored state.
    async fn start_read(&self, request: &ReadRequest<Stream>) -> Result<(Run, Plan), AirbyteError>;
    /// The read's next record or state; `None` at the end of a read that succeeded. Other
    /// messages (logs, schemas) are dealt with here.
    async fn next_event(&self, run: &mut Run, plan: &Plan) -> Result<Option<Event>, AirbyteError>;
}

/// The Dossier name of a lookup's read of its stream, in logs and errors.
fn lookup_name(name: &str, stream: &str) -> String {
    format!("{name} (lookup of {stream})")
}

/// The configured stream `name`'s lookups checked against the source's streams; `None`
/// without lookups.
pub(crate) async fn resolve_lookups<P: Protocol>(
    conn: &P,
    name: &str,
    stream: &Stream,
) -> Result<Option<Joins>, AirbyteError> {
    if stream.lookups.is_empty() {
        return Ok(None);
    }
    let base = conn.source_stream(name, stream).await?;
    let mut lookups = vec![];
    for l in &stream.lookups {
        let other = conn
            .source_stream(&lookup_name(name, &l.stream), &lookup_stream(l))
            .await?;
        lookups.push((l.clone(), other));
    }
    Joins::resolve(&base, lookups)
        .map(Some)
        .map_err(|m| AirbyteError::Config(format!("{}: {m}", conn.at(&format!("stream {name:?}")))))
}

/// The fields of the configured stream `name` with those its lookups carry, given its own.
pub(crate) async fn fields_with_lookups<P: Protocol>(
    conn: &P,
    name: &str,
    stream: &Stream,
    fields: Vec<FieldInfo>,
) -> Result<Vec<FieldInfo>, AirbyteError> {
    Ok(match resolve_lookups(conn, name, stream).await? {
        Some(joins) => joins.layout.info().to_vec(),
        None => fields,
    })
}

/// How a lookup's stream is read: in full, whatever its state.
fn lookup_stream(l: &crate::Lookup) -> Stream {
    Stream {
        stream: Some(l.stream.clone()),
        namespace: l.namespace.clone(),
        sync_mode: Some(SyncMode::FullRefresh),
        ..Stream::default()
    }
}

/// Reads each lookup stream of `joins` in full into its table.
async fn load_lookups<P: Protocol>(
    conn: &P,
    name: &str,
    joins: &mut Joins,
) -> Result<(), AirbyteError> {
    for join in &mut joins.joins {
        let request = ReadRequest {
            name: lookup_name(name, &join.lookup.stream),
            stream: lookup_stream(&join.lookup),
            state: None,
            batch_size: 1,
        };
        let (mut run, plan) = conn.start_read(&request).await?;
        while let Some(event) = conn.next_event(&mut run, &plan).await? {
            let Event::Record(record) = event else {
                continue;
            };
            if let Err(limit) = join.insert(&record) {
                return Err(AirbyteError::Config(format!(
                    "{}: the lookup stream {:?} has more than {limit} records (`max_rows` of the lookup): a lookup is held in memory; raise its `max_rows` (at most {}) or map {:?} as a stream of its own",
                    run.at(),
                    join.lookup.stream,
                    crate::config::MAX_LOOKUP_MAX_ROWS,
                    join.lookup.stream
                )));
            }
        }
        let (records, keys) = join.counts();
        tracing::info!(
            source_process = %conn.label(),
            stream = %name,
            lookup = %join.lookup.stream,
            records,
            keys,
            "lookup read"
        );
    }
    Ok(())
}

pub struct Reader<P: Protocol> {
    conn: Arc<P>,
    request: ReadRequest<Stream>,
    batch_size: usize,
    started: Option<Started>,
    /// The error to return once the covered records before it are handed over.
    pending_error: Option<ConnectorError>,
    done: bool,
}

struct Started {
    run: Option<Run>,
    plan: Plan,
    /// The stream's lookups, read.
    joins: Option<Joins>,
    /// Records that found no match in one of the lookups.
    unmatched: u64,
    fields: Arc<Vec<String>>,
    /// Records covered by `covered_state`, not handed over yet.
    covered: Vec<Vec<Value>>,
    /// The last state received; `None` until the source writes one.
    covered_state: Option<Json>,
    /// The state last handed over (at first the one the read started from).
    initial: Option<Json>,
    /// Records after the last state.
    uncovered: Vec<Vec<Value>>,
    records: u64,
    states: u64,
}

impl<P: Protocol> Reader<P> {
    pub(crate) fn new(conn: Arc<P>, request: ReadRequest<Stream>) -> Self {
        let batch_size = request.rows_per_batch(request.stream.batch_size);
        Self {
            conn,
            request,
            batch_size,
            started: None,
            pending_error: None,
            done: false,
        }
    }

    async fn start(&self) -> Result<Started, AirbyteError> {
        let conn = self.conn.as_ref();
        let name = &self.request.name;
        let mut joins = resolve_lookups(conn, name, &self.request.stream).await?;
        if let Some(joins) = &mut joins {
            load_lookups(conn, name, joins).await?;
        }
        let (run, mut plan) = conn.start_read(&self.request).await?;
        if let Some(joins) = &joins {
            plan.layout = joins.layout.clone();
        }
        Ok(Started {
            run: Some(run),
            joins,
            unmatched: 0,
            fields: Arc::new(plan.layout.names().to_vec()),
            covered: vec![],
            covered_state: plan.initial.clone(),
            initial: plan.initial.clone(),
            plan,
            uncovered: vec![],
            records: 0,
            states: 0,
        })
    }
}

impl Started {
    fn incremental(&self) -> bool {
        self.plan.incremental
    }

    /// The covered records and their state as a batch, if there is anything to commit: records,
    /// or a state newer than the one the read started from.
    fn take_covered(&mut self) -> Option<Batch> {
        let state = self.covered_state.as_ref()?;
        if self.covered.is_empty() && Some(state) == self.initial.as_ref() {
            return None;
        }
        self.initial = Some(state.clone());
        Some(Batch {
            fields: self.fields.clone(),
            rows: std::mem::take(&mut self.covered),
            state: StreamState(state.clone()),
        })
    }

    fn full_refresh_batch(&mut self) -> Option<Batch> {
        if self.uncovered.is_empty() {
            return None;
        }
        Some(Batch {
            fields: self.fields.clone(),
            rows: std::mem::take(&mut self.uncovered),
            state: StreamState::full_refresh(),
        })
    }

    /// Reads messages until a batch is complete; `None` at the end of a read that succeeded.
    async fn step<P: Protocol>(
        &mut self,
        conn: &P,
        batch_size: usize,
    ) -> Result<Option<Batch>, AirbyteError> {
        let limit = conn.max_records_per_state();
        let incremental = self.incremental();
        loop {
            let run = self.run.as_mut().expect("running");
            let Some(event) = conn.next_event(run, &self.plan).await? else {
                return Ok(None);
            };
            match event {
                Event::Record(mut data) => {
                    if let Some(joins) = &self.joins
                        && !joins.apply(&mut data)
                    {
                        self.unmatched += 1;
                    }
                    self.uncovered.push(self.plan.layout.row(&data));
                    self.records += 1;
                    if !incremental {
                        if self.uncovered.len() >= batch_size {
                            return Ok(self.full_refresh_batch());
                        }
                        continue;
                    }
                    if self.uncovered.len() > limit {
                        return Err(AirbyteError::TooManyRecords {
                            at: run.at().to_string(),
                            limit,
                        });
                    }
                    // The covered records wait for no one: hand them over rather than hold
                    // two batches.
                    if self.uncovered.len() >= batch_size
                        && let Some(batch) = self.take_covered()
                    {
                        return Ok(Some(batch));
                    }
                }
                Event::State(state) => {
                    self.states += 1;
                    if !incremental {
                        continue;
                    }
                    self.covered.append(&mut self.uncovered);
                    self.covered_state = Some(state);
                    if self.covered.len() >= batch_size {
                        return Ok(self.take_covered());
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl<P: Protocol> BatchReader for Reader<P> {
    async fn next_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        if self.done {
            return Ok(None);
        }
        if self.started.is_none() {
            match self.start().await {
                Ok(s) => self.started = Some(s),
                Err(e) => {
                    self.done = true;
                    return Err(e.into());
                }
            }
        }
        let s = self.started.as_mut().expect("started");
        match s.step(self.conn.as_ref(), self.batch_size).await {
            Ok(Some(batch)) => Ok(Some(batch)),
            Ok(None) => {
                self.done = true;
                s.run = None;
                if !s.incremental() {
                    return Ok(s.full_refresh_batch());
                }
                if !s.uncovered.is_empty() {
                    tracing::warn!(
                        source_process = %self.conn.label(),
                        stream = %self.request.name,
                        records = s.uncovered.len(),
                        "records after the source's last STATE message are not committed; the next run reads them again"
                    );
                }
                Ok(s.take_covered())
            }
            Err(e) => {
                self.done = true;
                // Killed now, not when the read is dropped.
                s.run = None;
                let covered = if s.incremental() {
                    s.take_covered()
                } else {
                    None
                };
                match covered {
                    Some(batch) => {
                        self.pending_error = Some(e.into());
                        Ok(Some(batch))
                    }
                    None => Err(e.into()),
                }
            }
        }
    }

    fn finished(&mut self, error: Option<&ConnectorError>) {
        let (records, states, unmatched) = self
            .started
            .as_ref()
            .map_or((0, 0, 0), |s| (s.records, s.states, s.unmatched));
        if unmatched > 0 {
            tracing::info!(
                source_process = %self.conn.label(),
                stream = %self.request.name,
                records = unmatched,
                "records with no match in a lookup: the fields it carries are null in them"
            );
        }
        match error {
            None => tracing::info!(
                source_process = %self.conn.label(),
                stream = %self.request.name,
                records,
                states,
                "read"
            ),
            Some(e) => tracing::warn!(
                source_process = %self.conn.label(),
                stream = %self.request.name,
                records,
                states,
                error = %e,
                "read failed"
            ),
        }
    }
}
