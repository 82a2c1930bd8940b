//! The crate's one error type.
//!
//! Each variant's doc says which errno the file system layer turns it into; the
//! mapping itself lives there, in one function.

use std::io;
use std::path::PathBuf;

/// Result with [`CacheError`].
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// What can go wrong in the local cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Clean bytes do not fit: the budget is taken by pinned bytes and by files in
    /// use, which are never evicted to make room (`ENOSPC`).
    #[error(
        "cache full: {needed} bytes do not fit in the budget of {budget} bytes \
         ({held} held, none of it evictable now)"
    )]
    Full {
        /// Bytes that were refused.
        needed: u64,
        /// The cache's byte budget.
        budget: u64,
        /// Clean bytes held.
        held: u64,
    },
    /// Writing would leave less free space than the configured reserve on the file
    /// system holding the cache (`ENOSPC`).
    #[error("disk almost full: {available} bytes available, the reserve is {reserve} bytes")]
    DiskFull {
        /// Bytes available to unprivileged users on that file system.
        available: u64,
        /// The configured reserve.
        reserve: u64,
    },
    /// Local state is damaged (`EIO`).
    #[error("local state is corrupt: {0}")]
    Corrupt(String),
    /// A file operation failed (`EIO`).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The SQLite mirror failed (`EIO`).
    #[error("mirror database: {0}")]
    Index(#[from] rusqlite::Error),
}

impl CacheError {
    /// An adapter for `map_err` that names the path an I/O error is about.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> CacheError {
        let path = path.into();
        move |source| CacheError::Io { path, source }
    }
}
