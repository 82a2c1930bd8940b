//! The core's one error type. Each variant says the errno it stands for; the
//! platform adapters translate, each in one function.

use loft_cache::CacheError;
use loft_remote::client::RemoteError;
use loft_remote::errors::ErrorKind;

pub type VfsResult<T> = Result<T, VfsError>;

#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    /// ENOENT
    #[error("no such file or directory")]
    NotFound,
    /// EEXIST
    #[error("file exists")]
    Exists,
    /// ENOTEMPTY
    #[error("directory not empty")]
    NotEmpty,
    /// ENOTDIR
    #[error("not a directory")]
    NotDir,
    /// EISDIR
    #[error("is a directory")]
    IsDir,
    /// ENAMETOOLONG
    #[error("name too long")]
    NameTooLong,
    /// EINVAL
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// EPERM
    #[error("operation not permitted")]
    NotPermitted,
    /// EACCES
    #[error("permission denied")]
    Access,
    /// EXDEV
    #[error("cross-device link")]
    CrossDevice,
    /// ENODATA
    #[error("no such attribute")]
    NoAttribute,
    /// ERANGE
    #[error("buffer too small")]
    Range,
    /// ENOSPC: the cache budget or the free-disk reserve.
    #[error("no space: {0}")]
    NoSpace(String),
    /// EDQUOT
    #[error("quota exceeded")]
    Quota,
    /// EBADF
    #[error("bad file handle")]
    BadHandle,
    /// EOPNOTSUPP
    #[error("operation not supported")]
    NotSupported,
    /// ENXIO: `lseek` to data or a hole at or past the end of the file.
    #[error("no data or hole at or past this offset")]
    PastEnd,
    /// EIO: bytes not held locally while the server is unreachable.
    #[error("offline: {0}")]
    Offline(String),
    /// EIO
    #[error("I/O error: {0}")]
    Io(String),
}

impl From<CacheError> for VfsError {
    fn from(error: CacheError) -> Self {
        match error {
            CacheError::Full { .. } | CacheError::DiskFull { .. } => {
                VfsError::NoSpace(error.to_string())
            }
            other => VfsError::Io(other.to_string()),
        }
    }
}

impl From<std::io::Error> for VfsError {
    fn from(error: std::io::Error) -> Self {
        match error.raw_os_error() {
            Some(libc::ENOSPC) => VfsError::NoSpace(error.to_string()),
            _ => VfsError::Io(error.to_string()),
        }
    }
}

impl From<RemoteError> for VfsError {
    fn from(error: RemoteError) -> Self {
        match error.kind {
            ErrorKind::NotFound => VfsError::NotFound,
            ErrorKind::AlreadyExists => VfsError::Exists,
            ErrorKind::PermissionDenied => VfsError::Access,
            ErrorKind::NameTooLong => VfsError::NameTooLong,
            ErrorKind::QuotaExceeded => VfsError::Quota,
            ErrorKind::NoAttribute => VfsError::NoAttribute,
            ErrorKind::Unavailable => VfsError::Offline(error.message),
            _ => VfsError::Io(error.to_string()),
        }
    }
}

/// True for errors that mean "not now": the server is not reachable, or its rate limit
/// refused the call (which then did nothing). The work is kept and retried later.
pub fn retry_later(error: &RemoteError) -> bool {
    error.is_transient()
}
