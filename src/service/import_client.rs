//! The client side of `clusternet import`: streams changes read from CSV to
//! `ImportChanges` in batches, and turns a server error back into the
//! `file:line` of the row that caused it.

use super::{
    client::{ConnectError, Connection},
    convert::change_to_pb,
    pb,
};
use crate::import::{Origin, SourcedChange};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server refused a row; earlier batches are in.
    #[error("{origin}: {message}")]
    Row { origin: String, message: String },
    #[error("the server refused the import: {0}")]
    Status(tonic::Status),
}

/// Sends `changes` in batches of `batch_size`; `on_sent` is told how many
/// changes have gone out after each batch.
pub async fn upload(
    connection: &Connection,
    changes: Vec<SourcedChange>,
    batch_size: usize,
    on_sent: impl Fn(u64) + Send + 'static,
) -> Result<pb::ImportChangesResponse, UploadError> {
    let mut client = connection.network();
    let batch_size = batch_size.max(1);
    // Batches are encoded as the stream is read, not all before it: the
    // import starts at once and holds one copy of the network, not two.
    let origins: Vec<Origin> = changes.iter().map(|c| c.origin.clone()).collect();
    let mut changes = changes.into_iter();
    let mut sent = 0u64;
    let batches = std::iter::from_fn(move || {
        let batch: Vec<pb::Change> = changes
            .by_ref()
            .take(batch_size)
            .map(|c| change_to_pb(&c.change))
            .collect();
        if batch.is_empty() {
            return None;
        }
        sent += batch.len() as u64;
        on_sent(sent);
        Some(pb::ImportChangesRequest { changes: batch })
    });
    let stream = tokio_stream::iter(batches);
    match client.import_changes(stream).await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => match locate(status.message(), batch_size) {
            Some(index) if index < origins.len() => Err(UploadError::Row {
                origin: origins[index].to_string(),
                message: format!("{:?}: {}", status.code(), status.message()),
            }),
            _ => Err(UploadError::Status(status)),
        },
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
}
