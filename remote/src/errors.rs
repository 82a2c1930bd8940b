//! Error kinds that cross the wire.
//!
//! A gRPC status code alone cannot tell ENOTEMPTY from EISDIR, so every error status
//! Loft sends carries its [`ErrorKind`] in the `loft-error` metadata entry. The server
//! builds statuses with [`status`]; clients read them back with [`kind_of`].

use std::time::Duration;

use tonic::{Code, Status};

/// Metadata key holding the [`ErrorKind`] of an error status.
pub const ERROR_KIND_KEY: &str = "loft-error";

/// Every kind, for parsing.
const ALL: [ErrorKind; 17] = [
    ErrorKind::NotFound,
    ErrorKind::NoAttribute,
    ErrorKind::AlreadyExists,
    ErrorKind::NotEmpty,
    ErrorKind::NotADirectory,
    ErrorKind::IsADirectory,
    ErrorKind::InvalidName,
    ErrorKind::NameTooLong,
    ErrorKind::InvalidArgument,
    ErrorKind::PermissionDenied,
    ErrorKind::Unauthenticated,
    ErrorKind::FailedPrecondition,
    ErrorKind::QuotaExceeded,
    ErrorKind::RateLimited,
    ErrorKind::CrossNamespace,
    ErrorKind::Unavailable,
    ErrorKind::Internal,
];

/// What went wrong, precisely enough for a client to pick the POSIX errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    NotFound,
    /// An extended attribute that does not exist (ENODATA).
    NoAttribute,
    AlreadyExists,
    NotEmpty,
    NotADirectory,
    IsADirectory,
    InvalidName,
    NameTooLong,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    /// The request names something the caller may not use (e.g. a chunk it never
    /// uploaded and cannot read).
    FailedPrecondition,
    QuotaExceeded,
    RateLimited,
    CrossNamespace,
    Unavailable,
    Internal,
}

impl ErrorKind {
    /// The stable text sent in the `loft-error` metadata entry.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::NoAttribute => "no-attribute",
            ErrorKind::AlreadyExists => "already-exists",
            ErrorKind::NotEmpty => "not-empty",
            ErrorKind::NotADirectory => "not-a-directory",
            ErrorKind::IsADirectory => "is-a-directory",
            ErrorKind::InvalidName => "invalid-name",
            ErrorKind::NameTooLong => "name-too-long",
            ErrorKind::InvalidArgument => "invalid-argument",
            ErrorKind::PermissionDenied => "permission-denied",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::FailedPrecondition => "failed-precondition",
            ErrorKind::QuotaExceeded => "quota-exceeded",
            ErrorKind::RateLimited => "rate-limited",
            ErrorKind::CrossNamespace => "cross-namespace",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    fn parse(text: &str) -> Option<ErrorKind> {
        ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// The gRPC code that carries this kind.
    pub fn code(self) -> Code {
        match self {
            ErrorKind::NotFound | ErrorKind::NoAttribute => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::NotEmpty
            | ErrorKind::NotADirectory
            | ErrorKind::IsADirectory
            | ErrorKind::FailedPrecondition
            | ErrorKind::CrossNamespace => Code::FailedPrecondition,
            ErrorKind::InvalidName | ErrorKind::NameTooLong | ErrorKind::InvalidArgument => {
                Code::InvalidArgument
            }
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::QuotaExceeded | ErrorKind::RateLimited => Code::ResourceExhausted,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Internal => Code::Internal,
        }
    }

    /// The kind implied by a bare gRPC code (a status from something other than Loft).
    fn from_code(code: Code) -> ErrorKind {
        match code {
            Code::NotFound => ErrorKind::NotFound,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::FailedPrecondition | Code::Aborted => ErrorKind::FailedPrecondition,
            Code::ResourceExhausted => ErrorKind::RateLimited,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

/// Builds an error status that carries `kind`.
pub fn status(kind: ErrorKind, message: impl Into<String>) -> Status {
    let mut status = Status::new(kind.code(), message);
    status.metadata_mut().insert(
        ERROR_KIND_KEY,
        tonic::metadata::MetadataValue::from_static(kind.as_str()),
    );
    status
}

/// Metadata key of a rate-limited call's wait, in milliseconds.
const RETRY_AFTER_KEY: &str = "loft-retry-after-ms";

/// The status of a call refused by a rate limit: nothing was done, and it may be sent
/// again after `wait`.
pub fn rate_limited(wait: Duration) -> Status {
    let millis = wait.as_millis().max(1);
    let mut status = status(
        ErrorKind::RateLimited,
        format!("rate limit reached; try again in {millis} ms"),
    );
    if let Ok(value) = millis.to_string().parse() {
        status.metadata_mut().insert(RETRY_AFTER_KEY, value);
    }
    status
}

/// How long to wait before sending again a call that a rate limit refused; `None` for
/// any other error.
pub fn retry_after(status: &Status) -> Option<Duration> {
    if kind_of(status) != ErrorKind::RateLimited {
        return None;
    }
    let millis = status
        .metadata()
        .get(RETRY_AFTER_KEY)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse().ok())
        .unwrap_or(1000);
    Some(Duration::from_millis(millis))
}

/// Reads the kind of an error status, falling back to its gRPC code.
///
/// Loft's server marks every error it sends; an unmarked UNKNOWN or INTERNAL status comes
/// from the transport (a connection cut mid-call, a broken HTTP/2 stream), so it counts as
/// `Unavailable`: worth retrying.
pub fn kind_of(status: &Status) -> ErrorKind {
    let marked = status
        .metadata()
        .get(ERROR_KIND_KEY)
        .and_then(|value| value.to_str().ok())
        .and_then(ErrorKind::parse);
    match (marked, status.code()) {
        (Some(kind), _) => kind,
        (None, Code::Unknown | Code::Internal) => ErrorKind::Unavailable,
        (None, code) => ErrorKind::from_code(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limited_status_carries_its_wait() {
        let refused = rate_limited(Duration::from_millis(250));
        assert_eq!(kind_of(&refused), ErrorKind::RateLimited);
        assert_eq!(retry_after(&refused), Some(Duration::from_millis(250)));
        assert_eq!(retry_after(&status(ErrorKind::QuotaExceeded, "full")), None);
    }

    #[test]
    fn kind_survives_a_status_round_trip() {
        for kind in [
            ErrorKind::NotEmpty,
            ErrorKind::NameTooLong,
            ErrorKind::QuotaExceeded,
        ] {
            assert_eq!(kind_of(&status(kind, "x")), kind);
        }
    }

    #[test]
    fn foreign_status_maps_by_code() {
        assert_eq!(
            kind_of(&Status::unavailable("down")),
            ErrorKind::Unavailable
        );
        assert_eq!(kind_of(&Status::not_found("x")), ErrorKind::NotFound);
        assert_eq!(
            kind_of(&Status::unknown("transport error")),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind_of(&status(ErrorKind::Internal, "bug")),
            ErrorKind::Internal
        );
    }
}
