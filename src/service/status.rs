//! The one place where core errors become gRPC statuses, with google.rpc
//! rich details (tonic-types) a program can act on without parsing the
//! message: `BadRequest` names the field on INVALID_ARGUMENT,
//! `PreconditionFailure` on FAILED_PRECONDITION, `ResourceInfo` the entity
//! on NOT_FOUND, and `RetryInfo` says when to call again on
//! RESOURCE_EXHAUSTED and UNAVAILABLE.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;

/// The retry delay suggested when a limit is reached: long enough for a slot
/// or a queue to move.
pub const RETRY_BUSY: Duration = Duration::from_secs(1);
/// The retry delay suggested while the server stops or restarts.
pub const RETRY_RESTART: Duration = Duration::from_secs(5);

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        // An id no entity can have (control characters, oversize) is a bad
        // argument, not a missing entity, wherever it is looked up.
        if let Error::NotFound { field, id, .. } = &error {
            if let Err(invalid) = crate::model::validate_id(field, id) {
                return Status::from(invalid);
            }
        }
        let message = capped(error.to_string());
        let (code, details) = match &error {
            Error::InvalidArgument { field, message } => (
                Code::InvalidArgument,
                ErrorDetails::with_bad_request_violation(capped_field(field), capped(message.clone())),
            ),
            Error::NotFound { field, entity, id } => (
                Code::NotFound,
                ErrorDetails::with_resource_info(
                    *entity,
                    capped(id.clone()),
                    "",
                    format!("{}: not found", capped_field(field)),
                ),
            ),
            Error::FailedPrecondition { field, message } => (
                Code::FailedPrecondition,
                ErrorDetails::with_precondition_failure_violation(
                    "STATE",
                    capped_field(field),
                    capped(message.clone()),
                ),
            ),
            Error::PermissionDenied { .. } => (Code::PermissionDenied, ErrorDetails::new()),
            Error::ResourceExhausted { .. } => {
                (Code::ResourceExhausted, ErrorDetails::with_retry_info(Some(RETRY_BUSY)))
            }
            Error::Unavailable { .. } => (Code::Unavailable, ErrorDetails::with_retry_info(Some(RETRY_RESTART))),
            Error::Cancelled => (Code::Cancelled, ErrorDetails::new()),
            Error::OutOfRange { field, message } => (
                Code::OutOfRange,
                ErrorDetails::with_bad_request_violation(capped_field(field), capped(message.clone())),
            ),
            Error::DeadlineExceeded { .. } => (Code::DeadlineExceeded, ErrorDetails::new()),
            Error::Aborted { .. } => (Code::Aborted, ErrorDetails::new()),
            Error::Unauthenticated { .. } => (Code::Unauthenticated, ErrorDetails::new()),
            Error::Storage(_) | Error::Corrupt(_) => {
                tracing::error!(%error, "internal error");
                (Code::Internal, ErrorDetails::new())
            }
        };
        Status::with_error_details(code, message, details)
    }
}

/// `status` told with a new message, its code and details kept. The
/// details carry a message of their own (google.rpc.Status), which tools
/// such as grpcurl show first: copied as bytes, they kept the old one.
pub fn retold(status: &Status, message: String) -> Status {
    Status::with_error_details(status.code(), capped(message), status.get_error_details())
}

/// RESOURCE_EXHAUSTED with a retry delay: a limit of the server was reached.
pub fn busy(message: impl Into<String>) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        capped(message.into()),
        ErrorDetails::with_retry_info(Some(RETRY_BUSY)),
    )
}

/// RESOURCE_EXHAUSTED without a retry delay: the request can never fit this
/// server's limits as they are.
pub fn too_large(message: impl Into<String>) -> Status {
    Status::new(Code::ResourceExhausted, capped(message.into()))
}

/// INTERNAL: a task of the server's own failed (a panic in a blocking task).
pub fn internal(what: &str, error: impl std::fmt::Display) -> Status {
    tracing::error!(%error, "{what} failed");
    Status::internal(capped(format!("{what} failed: {error}")))
}

/// UNAVAILABLE with a retry delay: the server is stopping.
pub fn stopping(message: impl Into<String>) -> Status {
    Status::with_error_details(
        Code::Unavailable,
        capped(message.into()),
        ErrorDetails::with_retry_info(Some(RETRY_RESTART)),
    )
}

/// What a status made by tonic's decoder should have been, or None when it
/// is not one: a message over the size limit is RESOURCE_EXHAUSTED (the gRPC
/// convention; tonic says OUT_OF_RANGE) and one that does not decode is the
/// client's error, INVALID_ARGUMENT (tonic says INTERNAL).
pub fn from_decoder(status: &Status) -> Option<Status> {
    let message = status.message();
    match status.code() {
        Code::OutOfRange if message.contains("message length too large") => Some(too_large(format!(
            "the request message is too large ({}); send smaller batches",
            message.trim_start_matches("Error, decoded message length too large: ")
        ))),
        Code::Internal if message.starts_with("failed to decode Protobuf message") => {
            Some(Status::invalid_argument(capped(format!(
                "the request message is not valid protobuf: {}",
                message.trim_start_matches("failed to decode Protobuf message: ")
            ))))
        }
        _ => None,
    }
}

/// Longest status message sent, in bytes. A message may quote client input
/// (an id it did not find, a value it refused); the trailer must not carry
/// megabytes back.
pub const MAX_MESSAGE_BYTES: usize = 1_024;
/// A field path in the details, at most: a 3 MB `overrides` key would
/// otherwise travel whole in `grpc-status-details-bin`, past what standard
/// clients accept in metadata (16 kB), and the client would see
/// RESOURCE_EXHAUSTED instead of the INVALID_ARGUMENT it was sent.
pub const MAX_FIELD_BYTES: usize = 256;

/// A field path cut to [`MAX_FIELD_BYTES`], marked when cut.
fn capped_field(field: &str) -> String {
    capped_to(field.to_string(), MAX_FIELD_BYTES)
}

/// `message` cut to [`MAX_MESSAGE_BYTES`] at a character boundary, marked
/// when cut.
pub fn capped(message: String) -> String {
    capped_to(message, MAX_MESSAGE_BYTES)
}

/// `message` cut to `max` bytes at a character boundary, marked when cut.
pub fn capped_to(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut end = max;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("… (cut)");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "界".repeat(1_000); // 3,000 bytes
        let cut = capped(long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES + "… (cut)".len());
        assert!(cut.ends_with("… (cut)"));
        assert_eq!(capped("short".into()), "short");
    }
}
