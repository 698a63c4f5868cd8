//! The one error type of the domain core. It knows nothing of gRPC: the service
//! layer maps each variant to a status code in one place.

/// A failure of a core operation, with the field it concerns where there is one.
///
/// `field` is a path into the request as the client wrote it, such as
/// `changes[3].upsert_link.weight`, so a message can say exactly what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is malformed whatever the stored data: fix the request.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// The named entity does not exist.
    #[error("{field}: {entity} '{id}' not found")]
    NotFound {
        field: String,
        entity: &'static str,
        id: String,
    },
    /// The input is well formed but conflicts with the stored data.
    #[error("{field}: {message}")]
    FailedPrecondition { field: String, message: String },
    /// The caller's role does not allow this.
    #[error("{field}: {message}")]
    PermissionDenied { field: String, message: String },
    /// A configured limit was exceeded.
    #[error("{message}")]
    ResourceExhausted { message: String },
    /// The caller went away or asked to stop.
    #[error("the analysis was cancelled")]
    Cancelled,
    /// A position outside what is kept or what exists yet (a revision or a
    /// sequence number to resume from).
    #[error("{field}: {message}")]
    OutOfRange { field: String, message: String },
    /// The call's deadline passed before the work was done.
    #[error("{message}")]
    DeadlineExceeded { message: String },
    /// The work was stopped and its results are incomplete (a client that
    /// stopped reading).
    #[error("{message}")]
    Aborted { message: String },
    /// No credentials, or ones that are not known.
    #[error("{message}")]
    Unauthenticated { message: String },
    /// The store is shutting down or was stopped by an earlier storage failure.
    #[error("{message}")]
    Unavailable { message: String },
    /// The disk or the storage engine failed.
    #[error("storage failure: {0}")]
    Storage(String),
    /// Stored bytes could not be decoded: the data directory is damaged or was
    /// written by an incompatible version.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An analysis was stopped through its `Control` (the caller went away, the
/// deadline passed, the server is stopping). Here rather than in `analysis`
/// so that the error module depends on nothing of the crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the analysis was cancelled")]
pub struct Cancelled;

impl From<Cancelled> for Error {
    fn from(_: Cancelled) -> Error {
        Error::Cancelled
    }
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn precondition(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::FailedPrecondition {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(field: impl Into<String>, entity: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            field: field.into(),
            entity,
            id: id.into(),
        }
    }

    /// Puts `prefix` in front of the field path, so an error found inside one
    /// item names the item: `weight` becomes `changes[3].upsert_link.weight`.
    pub fn within(self, prefix: &str) -> Self {
        let join = |field: String| {
            if field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{field}")
            }
        };
        match self {
            Error::InvalidArgument { field, message } => Error::InvalidArgument {
                field: join(field),
                message,
            },
            Error::NotFound { field, entity, id } => Error::NotFound {
                field: join(field),
                entity,
                id,
            },
            Error::FailedPrecondition { field, message } => Error::FailedPrecondition {
                field: join(field),
                message,
            },
            other => other,
        }
    }
}
