//! The server's one error type. Its gRPC status (and so the client's errno) is derived
//! in one place, [`From<ServerError> for Status`].

use loft_remote::errors::{ErrorKind, status};
use tonic::Status;

/// An error of any server layer: a kind the client can act on, and a message for people.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ServerError {
    pub kind: ErrorKind,
    pub message: String,
}

/// Result of server operations.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

impl ServerError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ServerError {
            kind,
            message: message.into(),
        }
    }
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::NotFound, format!("{what} not found"))
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::FailedPrecondition, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, message.to_string())
    }
}

impl From<ServerError> for Status {
    fn from(error: ServerError) -> Status {
        if error.kind == ErrorKind::Internal {
            tracing::error!(error = %error.message, "internal error");
        }
        status(error.kind, error.message)
    }
}

impl From<rusqlite::Error> for ServerError {
    fn from(error: rusqlite::Error) -> Self {
        ServerError::internal(format!("metadata store: {error}"))
    }
}

/// A PostgreSQL error as people should read it: the server's message when it sent one.
pub fn postgres_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.to_string(),
        None => {
            let mut message = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            message
        }
    }
}

/// Errors the database reported are internal; a lost connection, or the database
/// shutting down or out of resources (SQLSTATE classes 08, 57 and 53), is `Unavailable`,
/// so clients retry.
impl From<tokio_postgres::Error> for ServerError {
    fn from(error: tokio_postgres::Error) -> Self {
        let message = format!("metadata store: {}", postgres_message(&error));
        let transient = match error.code() {
            None => true,
            Some(code) => ["08", "57", "53"]
                .iter()
                .any(|class| code.code().starts_with(class)),
        };
        if transient {
            ServerError::new(ErrorKind::Unavailable, message)
        } else {
            ServerError::internal(message)
        }
    }
}

impl From<deadpool_postgres::PoolError> for ServerError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        let message = match &error {
            deadpool_postgres::PoolError::Backend(error) => postgres_message(error),
            other => other.to_string(),
        };
        ServerError::new(
            ErrorKind::Unavailable,
            format!("metadata store: no PostgreSQL connection: {message}"),
        )
    }
}

impl From<object_store::Error> for ServerError {
    fn from(error: object_store::Error) -> Self {
        match error {
            object_store::Error::NotFound { path, .. } => {
                ServerError::not_found(format!("stored object {path}"))
            }
            other => ServerError::new(ErrorKind::Unavailable, format!("chunk store: {other}")),
        }
    }
}

impl From<std::io::Error> for ServerError {
    fn from(error: std::io::Error) -> Self {
        ServerError::internal(format!("I/O: {error}"))
    }
}

impl From<loft_remote::content::ContentError> for ServerError {
    fn from(error: loft_remote::content::ContentError) -> Self {
        ServerError::invalid(error.to_string())
    }
}

impl From<(ErrorKind, &'static str)> for ServerError {
    fn from((kind, message): (ErrorKind, &'static str)) -> Self {
        ServerError::new(kind, message)
    }
}
