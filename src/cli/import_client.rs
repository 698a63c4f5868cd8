//! The client side of `clusternet import`: streams changes read from CSV to
//! `ImportChanges` in batches, and turns a server error back into the
//! `file:line` of the row that caused it.

use std::{
    ops::ControlFlow,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use tokio_stream::{wrappers::ReceiverStream, StreamExt};

use super::client::{ConnectError, Connection};
use crate::import::{self, Origin, SourcedChange};
use crate::service::{convert::change_to_pb, pb};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server refused a row; earlier batches are in.
    #[error("{origin}: {message}")]
    Row { origin: String, message: String },
    #[error("{}: {}", ended_how(.0), .0.message())]
    Status(tonic::Status),
    /// The connection broke: the server stopped or the network dropped.
    #[error(
        "the connection to the server was lost during the import ({cause}): the server stopped or the network \
         dropped. {}",
        acknowledged_so_far(*.batches, *.revision, .through.as_deref())
    )]
    Lost {
        cause: String,
        /// Batches the server acknowledged as applied and durable.
        batches: u64,
        /// The revision the last of them made.
        revision: u64,
        /// The row of the last change acknowledged.
        through: Option<String>,
    },
    /// The reading thread failed; the batches it read before are in.
    #[error("{0}")]
    Read(String),
}

fn ended_how(status: &tonic::Status) -> &'static str {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Aborted | tonic::Code::Cancelled => "the server stopped the import",
        tonic::Code::DeadlineExceeded => "the import ran out of time",
        _ => "the server refused the import",
    }
}

fn acknowledged_so_far(batches: u64, revision: u64, through: Option<&str>) -> String {
    match (batches, through) {
        (0, _) => "No batch was acknowledged: none is known to be applied.".into(),
        (_, Some(row)) => format!(
            "{batches} batches were acknowledged as applied, through {row} (revision {revision}); send the rows after \
             it again once the server is back."
        ),
        (_, None) => format!("{batches} batches were acknowledged as applied (revision {revision})."),
    }
}

/// Whether a status was made by this client's transport (the connection
/// broke) rather than sent by the server: tonic keeps the transport's error
/// as its source.
fn is_transport(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// Sends the CSV directory `dir`, already checked with `import::check_dir`,
/// in batches of `batch_size`; `on_sent` is told how many changes have gone
/// out after each batch.
///
/// A blocking thread reads the directory again (`import::read_dir`, parsed
/// on every core) into batches while the batches before them are encoded
/// and sent: the upload starts at once and holds a few batches, not the
/// network. Only where each change came from is kept, to trace a refusal
/// back to its row.
pub async fn upload_dir(
    connection: &Connection,
    dir: PathBuf,
    batch_size: usize,
    on_sent: impl Fn(u64) + Send + 'static,
) -> Result<pb::ImportChangesResponse, UploadError> {
    let mut client = connection.network();
    let batch_size = batch_size.max(1);
    // A few batches read ahead: enough to cover a part's parse.
    let (batches_out, batches_in) = tokio::sync::mpsc::channel::<Vec<SourcedChange>>(8);
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(batch_size);
        let read = import::read_dir(&dir, |changes| {
            for change in changes {
                batch.push(change);
                if batch.len() == batch_size {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                    // The upload ended (refused or cut): stop reading.
                    if batches_out.blocking_send(full).is_err() {
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        });
        if !batch.is_empty() {
            let _ = batches_out.blocking_send(batch);
        }
        read
    });
    let origins = Arc::new(Mutex::new(Origins::default()));
    let sent_from = Arc::clone(&origins);
    let mut sent = 0u64;
    let requests = ReceiverStream::new(batches_in).map(move |batch| {
        sent_from.lock().unwrap_or_else(|e| e.into_inner()).extend(&batch);
        sent += batch.len() as u64;
        on_sent(sent);
        pb::ImportBatchesRequest {
            changes: batch.iter().map(|c| change_to_pb(&c.change)).collect(),
        }
    });
    // Each batch is acknowledged once durable: when the connection breaks,
    // the last acknowledgement says what is in.
    let mut acknowledged = pb::BatchApplied::default();
    let uploaded = async {
        let mut events = client.import_batches(requests).await?.into_inner();
        while let Some(event) = events.message().await? {
            match event.event {
                Some(pb::import_batches_response::Event::Applied(applied)) => acknowledged = applied,
                Some(pb::import_batches_response::Event::Summary(summary)) => return Ok(Some(summary)),
                None => {}
            }
        }
        // Ended without the summary a server always sends last: cut.
        Ok(None)
    }
    .await;
    let read = reader
        .await
        .map_err(|e| UploadError::Read(format!("the CSV reader stopped: {e}")))?;
    let origins = origins.lock().unwrap_or_else(|e| e.into_inner());
    let lost = |cause: String| {
        let changes = (acknowledged.batch as usize).saturating_mul(batch_size);
        UploadError::Lost {
            cause,
            batches: acknowledged.batch,
            revision: acknowledged.revision,
            through: changes
                .checked_sub(1)
                .and_then(|last| origins.get(last.min(origins.count.saturating_sub(1))))
                .map(|origin| origin.to_string()),
        }
    };
    match uploaded {
        Ok(None) => Err(lost("the stream ended before the import's summary".into())),
        Ok(Some(response)) => match read {
            Ok(()) => Ok(response),
            // The files changed between the check and the upload: what was
            // read before the bad row is in.
            Err(errors) => Err(UploadError::Row {
                origin: errors[0].origin.to_string(),
                message: format!("{} (the file changed after it was checked)", errors[0].message),
            }),
        },
        Err(status) if is_transport(&status) => Err(lost(status.message().to_string())),
        Err(status) => match locate(status.message(), batch_size).and_then(|index| origins.get(index)) {
            Some(origin) => Err(UploadError::Row {
                origin: origin.to_string(),
                message: format!("{:?}: {}", status.code(), status.message()),
            }),
            None => Err(UploadError::Status(status)),
        },
    }
}

/// Where each change sent came from, kept as runs: a run starts at a
/// change whose row is not the line after the one before it (a new file, a
/// blank line, a quoted line break), and the changes of a run are on
/// consecutive lines. A plain CSV directory is one run per file, so what is
/// kept does not grow with the rows (10M lines of u64 were 80 MB).
#[derive(Default)]
struct Origins {
    /// (index of the run's first change, its origin).
    runs: Vec<(usize, Origin)>,
    count: usize,
}

impl Origins {
    fn extend(&mut self, changes: &[SourcedChange]) {
        for change in changes {
            let follows = self.runs.last().is_some_and(|(first, origin)| {
                origin.file == change.origin.file && origin.line + (self.count - first) as u64 == change.origin.line
            });
            if !follows {
                self.runs.push((self.count, change.origin));
            }
            self.count += 1;
        }
    }

    fn get(&self, index: usize) -> Option<Origin> {
        if index >= self.count {
            return None;
        }
        let run = self.runs.partition_point(|(first, _)| *first <= index).checked_sub(1)?;
        let (first, origin) = self.runs[run];
        Some(Origin {
            file: origin.file,
            line: origin.line + (index - first) as u64,
        })
    }
}

/// Finds the change a server message blames: "batch B (...): changes[I]..."
/// means change I of batch B (1-based), so (B - 1) * batch_size + I overall.
fn locate(message: &str, batch_size: usize) -> Option<usize> {
    let number_after = |marker: &str| -> Option<usize> {
        let rest = &message[message.find(marker)? + marker.len()..];
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let batch = number_after("batch ")?;
    let item = number_after("changes[")?;
    Some((batch.checked_sub(1)?) * batch_size + item)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_server_message_is_traced_to_the_change_it_blames() {
        let message =
            "batch 3 (after 2 applied batches, revision 7): changes[17].upsert_link.target: actor 'x' neither exists";
        assert_eq!(super::locate(message, 100), Some(217));
        assert_eq!(super::locate("storage failure", 100), None);
    }

    #[test]
    fn origins_kept_compactly_give_each_change_its_file_and_line() {
        use crate::import::{Origin, SourcedChange};
        let change = |file: &'static str, line: u64| SourcedChange {
            change: crate::model::Change::DeleteActor {
                id: "a".into(),
                cascade: false,
            },
            origin: Origin { file, line },
        };
        let mut origins = super::Origins::default();
        origins.extend(&[change("clusters.csv", 2), change("actors.csv", 2)]);
        origins.extend(&[change("actors.csv", 4), change("links.csv", 9)]);
        let got: Vec<String> = (0..5).filter_map(|i| origins.get(i)).map(|o| o.to_string()).collect();
        assert_eq!(got, ["clusters.csv:2", "actors.csv:2", "actors.csv:4", "links.csv:9"]);

        // A million rows on consecutive lines, in batches, are one run.
        let mut origins = super::Origins::default();
        for batch in 0..100u64 {
            let changes: Vec<SourcedChange> = (0..10_000)
                .map(|i| change("links.csv", 2 + batch * 10_000 + i))
                .collect();
            origins.extend(&changes);
        }
        assert_eq!(origins.runs.len(), 1);
        assert_eq!(origins.get(654_321).unwrap().to_string(), "links.csv:654323");
        assert!(origins.get(1_000_000).is_none());
    }
}
