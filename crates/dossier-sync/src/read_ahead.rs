//! A stream's next batch is read while the current one is written, so that the source and
//! the store work at the same time. One batch waits at most, so memory stays bounded; a batch
//! read ahead but never written is read again by the next run, as its state was not committed.

use dossier_connector::ConnectorError;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Stops the reading task when the batches are dropped (a failed or cancelled run).
struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// `batches`, read one batch ahead on a task of its own.
pub(crate) fn read_ahead<T: Send + 'static>(
    mut batches: BoxStream<'static, Result<T, ConnectorError>>,
) -> BoxStream<'static, Result<T, ConnectorError>> {
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        while let Some(batch) = batches.next().await {
            let failed = batch.is_err();
            if tx.send(batch).await.is_err() || failed {
                break;
            }
        }
    });
    futures::stream::unfold(
        (rx, AbortOnDrop(Some(task))),
        |(mut rx, mut task)| async move {
            if let Some(batch) = rx.recv().await {
                return Some((batch, (rx, task)));
            }
            // The channel closes when the reader ends; a reader that panicked must not pass
            // for a stream read to its end (a full refresh would then delete what it missed).
            let handle = task.0.take()?;
            match handle.await {
                Ok(()) => None,
                Err(e) => Some((
                    Err(ConnectorError::internal(format!(
                        "the task reading the stream failed: {e}"
                    ))),
                    (rx, task),
                )),
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dossier_connector::{Batch, StreamState};

    fn batch(n: i64) -> Batch {
        Batch {
            fields: Default::default(),
            rows: vec![],
            state: StreamState(serde_json::json!({ "n": n })),
        }
    }

    #[tokio::test]
    async fn batches_come_in_order_and_end() {
        let source = futures::stream::iter((0..5).map(|n| Ok(batch(n)))).boxed();
        let got: Vec<_> = read_ahead(source)
            .map(|b| b.unwrap().state.0["n"].as_i64().unwrap())
            .collect()
            .await;
        assert_eq!(got, [0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_reader_that_panics_ends_in_an_error_not_in_an_end() {
        let source = futures::stream::iter(0..3)
            .map(|n| {
                assert!(n < 2, "reader broke");
                Ok(batch(n))
            })
            .boxed();
        let got: Vec<_> = read_ahead(source).collect().await;
        assert_eq!(got.len(), 3);
        assert!(got[..2].iter().all(Result::is_ok));
        let err = got[2].as_ref().unwrap_err().to_string();
        assert!(err.contains("the task reading the stream failed"), "{err}");
    }

    #[tokio::test]
    async fn reading_stops_at_the_first_error() {
        let source = futures::stream::iter(vec![
            Ok(batch(0)),
            Err(ConnectorError::remote("gone", true)),
            Ok(batch(2)),
        ])
        .boxed();
        let got: Vec<_> = read_ahead(source).collect().await;
        assert_eq!(got.len(), 2);
        assert!(got[1].is_err());
    }
}
