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
//! A full-refresh read ignores the source's states: every batch carries
//! [`StreamState::full_refresh`], so the engine marks the records it did not see as deleted
//! once the read completes.

use std::sync::Arc;

use dossier_connector::{Batch, BatchReader, ConnectorError, ReadRequest, StreamState, Value};
use serde_json::Value as Json;

use crate::error::AirbyteError;
use crate::process::Run;
use crate::protocol::{self, MessageType, State};
use crate::{AirbyteConnector, Resolved, Stream, SyncMode};

pub struct Reader {
    conn: Arc<AirbyteConnector>,
    request: ReadRequest<Stream>,
    batch_size: usize,
    started: Option<Started>,
    /// The error to return once the covered records before it are handed over.
    pending_error: Option<ConnectorError>,
    done: bool,
}

struct Started {
    run: Option<Run>,
    resolved: Resolved,
    fields: Arc<Vec<String>>,
    /// Records covered by `covered_state`, not handed over yet.
    covered: Vec<Vec<Value>>,
    /// The last state received; `None` until the source writes one.
    covered_state: Option<State>,
    /// The state the read started from.
    initial: Option<State>,
    /// Records after the last state.
    uncovered: Vec<Vec<Value>>,
    records: u64,
    states: u64,
}

impl Reader {
    pub fn new(conn: Arc<AirbyteConnector>, request: ReadRequest<Stream>) -> Self {
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

    fn at(&self) -> String {
        self.conn
            .at(&format!("read of stream {:?}", self.request.name))
    }

    async fn start(&self) -> Result<Started, AirbyteError> {
        let r = self
            .conn
            .resolve(&self.request.name, &self.request.stream)
            .await?;
        let incremental = r.mode == SyncMode::Incremental;
        let initial = self
            .request
            .state
            .as_ref()
            .filter(|_| incremental)
            .and_then(|s| State::from_stored(&s.0));
        let catalog =
            protocol::configured_catalog(&r.airbyte, r.mode.as_str(), &r.cursor, &r.primary_key);
        let state_file = initial.as_ref().map(State::to_state_file);
        let mut files: Vec<(&str, &Json)> = vec![("--catalog", &catalog)];
        if let Some(s) = &state_file {
            files.push(("--state", s));
        }
        tracing::info!(
            airbyte_source = %self.conn.program.label,
            stream = %self.request.name,
            source_stream = %r.airbyte.name,
            sync_mode = r.mode.as_str(),
            from_state = initial.is_some(),
            "reading"
        );
        let run = self.conn.start("read", &files, self.at())?;
        Ok(Started {
            run: Some(run),
            fields: Arc::new(r.layout.names().to_vec()),
            resolved: r,
            covered: vec![],
            covered_state: initial.clone(),
            initial,
            uncovered: vec![],
            records: 0,
            states: 0,
        })
    }
}

impl Started {
    fn incremental(&self) -> bool {
        self.resolved.mode == SyncMode::Incremental
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
            state: StreamState(state.to_stored()),
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
    async fn step(
        &mut self,
        conn: &AirbyteConnector,
        name: &str,
        namespace: Option<&str>,
        batch_size: usize,
    ) -> Result<Option<Batch>, AirbyteError> {
        let limit = conn.max_records_per_state;
        let incremental = self.incremental();
        loop {
            let run = self.run.as_mut().expect("running");
            let Some(msg) = run.next_message().await? else {
                return Ok(None);
            };
            let Some(msg) = conn.handle(run, msg)? else {
                continue;
            };
            match msg.kind {
                MessageType::Record => {
                    let Some(record) = msg.record else {
                        return Err(run.protocol("a RECORD message without `record`"));
                    };
                    let ns_ok = namespace.is_none()
                        || record.namespace.is_none()
                        || record.namespace.as_deref() == namespace;
                    if record.stream != name || !ns_ok {
                        return Err(run.protocol(format!(
                            "a record for stream {:?}, which is not in the configured catalog (only {name:?} is read)",
                            protocol::qualified(&record.stream, record.namespace.as_deref())
                        )));
                    }
                    self.uncovered.push(self.resolved.layout.row(&record.data));
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
                MessageType::State => {
                    let Some(state) = msg.state else {
                        return Err(run.protocol("a STATE message without `state`"));
                    };
                    let state =
                        State::parse(state, name, namespace).map_err(|m| run.protocol(m))?;
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
                other => {
                    tracing::debug!(airbyte_source = %run.label(), kind = other.as_str(), "message ignored while reading");
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl BatchReader for Reader {
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
        let (name, namespace) = {
            let a = &self.started.as_ref().expect("started").resolved.airbyte;
            (a.name.clone(), a.namespace.clone())
        };
        let s = self.started.as_mut().expect("started");
        match s
            .step(&self.conn, &name, namespace.as_deref(), self.batch_size)
            .await
        {
            Ok(Some(batch)) => Ok(Some(batch)),
            Ok(None) => {
                self.done = true;
                s.run = None;
                if !s.incremental() {
                    return Ok(s.full_refresh_batch());
                }
                if !s.uncovered.is_empty() {
                    tracing::warn!(
                        airbyte_source = %self.conn.program.label,
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
        let (records, states) = self
            .started
            .as_ref()
            .map_or((0, 0), |s| (s.records, s.states));
        match error {
            None => tracing::info!(
                airbyte_source = %self.conn.program.label,
                stream = %self.request.name,
                records,
                states,
                "read"
            ),
            Some(e) => tracing::warn!(
                airbyte_source = %self.conn.program.label,
                stream = %self.request.name,
                records,
                states,
                error = %e,
                "read failed"
            ),
        }
    }
}
