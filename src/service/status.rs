//! The one place where core errors become gRPC statuses.

use tonic::{Code, Status};

use crate::error::Error;

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let code = match &error {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound { .. } => Code::NotFound,
            Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::ResourceExhausted { .. } => Code::ResourceExhausted,
            Error::Unavailable { .. } => Code::Unavailable,
            Error::Cancelled => Code::Cancelled,
            Error::Storage(_) | Error::Corrupt(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(%error, "internal error");
        }
        Status::new(code, capped(error.to_string()))
    }
}

/// Longest status message sent, in bytes. A message may quote client input
/// (an id it did not find, a value it refused); the trailer must not carry
/// megabytes back.
pub const MAX_MESSAGE_BYTES: usize = 1_024;

/// `message` cut to [`MAX_MESSAGE_BYTES`] at a character boundary, marked
/// when cut.
pub fn capped(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
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
