//! What every connector's `read` and `check` share: a pull-based reader turned into a
//! [`BatchStream`], per-stream problems, and reading a stream to its end (tests).

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt as _;

use crate::{Batch, BatchStream, Connector, ConnectorError, Problem, ReadRequest};

/// A read in progress: each batch is read when the consumer asks for it, so memory holds one
/// batch at a time.
#[async_trait::async_trait]
pub trait BatchReader: Send + 'static {
    /// The next batch, `None` once the stream is read.
    async fn next_batch(&mut self) -> Result<Option<Batch>, ConnectorError>;

    /// Called once when the read ends: after the last batch, or with the error that stopped
    /// it (for a summary log line).
    fn finished(&mut self, _error: Option<&ConnectorError>) {}
}

/// The batches of `reader`, ending after its last batch or its first error. `Err` (a stored
/// state that cannot be read, say) is the stream's only item.
pub fn batch_stream<R: BatchReader>(reader: Result<R, ConnectorError>) -> BatchStream {
    futures::stream::unfold(Some(reader), |reader| async move {
        match reader? {
            Err(e) => Some((Err(e), None)),
            Ok(mut r) => match r.next_batch().await {
                Ok(Some(batch)) => Some((Ok(batch), Some(Ok(r)))),
                Ok(None) => {
                    r.finished(None);
                    None
                }
                Err(e) => {
                    r.finished(Some(&e));
                    Some((Err(e), None))
                }
            },
        }
    })
    .boxed()
}

/// `check` over each configured stream: a stream's problems are its `check` warnings, or the
/// error that stopped it.
pub async fn problems_per_stream<'a, S, F, Fut>(
    streams: &'a [(String, S)],
    mut check: F,
) -> Vec<Problem>
where
    F: FnMut(&'a str, &'a S) -> Fut,
    Fut: Future<Output = Result<Vec<String>, ConnectorError>>,
{
    let mut problems = vec![];
    for (name, stream) in streams {
        let messages = match check(name, stream).await {
            Ok(warnings) => warnings,
            Err(e) => vec![e.to_string()],
        };
        problems.extend(messages.into_iter().map(|message| Problem {
            stream: Some(name.clone()),
            message,
        }));
    }
    problems
}

/// Reads a stream to its end: every batch read, and the error that stopped the read, if any.
/// Holds every batch in memory: for tests and small reads, not for syncing.
pub async fn read_to_end<C: Connector>(
    connector: &Arc<C>,
    request: ReadRequest<C::Stream>,
) -> (Vec<Batch>, Option<ConnectorError>) {
    let mut stream = connector.clone().read(request);
    let mut batches = vec![];
    while let Some(b) = stream.next().await {
        match b {
            Ok(b) => batches.push(b),
            Err(e) => return (batches, Some(e)),
        }
    }
    (batches, None)
}

/// [`read_to_end`], all or nothing.
pub async fn read_all<C: Connector>(
    connector: &Arc<C>,
    request: ReadRequest<C::Stream>,
) -> Result<Vec<Batch>, ConnectorError> {
    match read_to_end(connector, request).await {
        (batches, None) => Ok(batches),
        (_, Some(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamState;

    struct Counter {
        left: u32,
        fail_at: Option<u32>,
        ended: Arc<std::sync::Mutex<Option<Option<String>>>>,
    }

    #[async_trait::async_trait]
    impl BatchReader for Counter {
        async fn next_batch(&mut self) -> Result<Option<Batch>, ConnectorError> {
            if self.fail_at == Some(self.left) {
                return Err(ConnectorError::remote("gone", true));
            }
            if self.left == 0 {
                return Ok(None);
            }
            self.left -= 1;
            Ok(Some(Batch {
                fields: Arc::new(vec![]),
                rows: vec![],
                state: StreamState(serde_json::json!(self.left)),
            }))
        }

        fn finished(&mut self, error: Option<&ConnectorError>) {
            *self.ended.lock().unwrap() = Some(error.map(ToString::to_string));
        }
    }

    async fn collect(s: BatchStream) -> Vec<Result<Batch, ConnectorError>> {
        s.collect().await
    }

    #[tokio::test]
    async fn a_reader_streams_its_batches_then_ends_once() {
        let ended = Arc::default();
        let items = collect(batch_stream(Ok(Counter {
            left: 3,
            fail_at: None,
            ended: Arc::clone(&ended),
        })))
        .await;
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(Result::is_ok));
        assert_eq!(*ended.lock().unwrap(), Some(None));
    }

    #[tokio::test]
    async fn the_first_error_ends_the_stream() {
        let ended = Arc::default();
        let items = collect(batch_stream(Ok(Counter {
            left: 3,
            fail_at: Some(1),
            ended: Arc::clone(&ended),
        })))
        .await;
        assert_eq!(items.len(), 3);
        assert!(items[2].is_err());
        assert_eq!(
            *ended.lock().unwrap(),
            Some(Some("source error: gone".to_string()))
        );
        let items = collect(batch_stream::<Counter>(Err(ConnectorError::internal(
            "bad state",
        ))))
        .await;
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
    }

    #[tokio::test]
    async fn problems_name_their_stream() {
        let streams = vec![
            ("a".to_string(), 1),
            ("b".to_string(), 2),
            ("c".to_string(), 3),
        ];
        let problems = problems_per_stream(&streams, |_, n| {
            let n = *n;
            async move {
                match n {
                    1 => Ok(vec![]),
                    2 => Ok(vec!["warn".into()]),
                    _ => Err(ConnectorError::config("broken")),
                }
            }
        })
        .await;
        let got: Vec<_> = problems
            .iter()
            .map(|p| (p.stream.as_deref().unwrap(), p.message.as_str()))
            .collect();
        assert_eq!(got, vec![("b", "warn"), ("c", "config error: broken")]);
    }
}
