//! The crate's one error type.
//!
//! Each variant's doc says which errno the file system layer turns it into; the
//! mapping itself lives there, in one function.

use std::io;
use std::path::PathBuf;

use loft_remote::content::{ChunkId, ContentError};

/// Result with [`CacheError`].
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// What can go wrong in the local cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A clean chunk does not fit: the budget is taken by pinned and dirty chunks,
    /// which are never evicted to make room (`ENOSPC`).
    #[error(
        "chunk cache full: {needed} bytes do not fit in the budget of {budget} bytes, \
         {unevictable} of which are pinned or dirty"
    )]
    Full {
        /// Size of the chunk that was refused.
        needed: u64,
        /// The cache's byte budget.
        budget: u64,
        /// Bytes held by pinned and dirty chunks (and inserts in flight).
        unevictable: u64,
    },
    /// Writing would leave less free space than the configured reserve on the file
    /// system holding the cache (`ENOSPC`).
    #[error(
        "disk almost full: writing {needed} bytes would leave less than the reserve of \
         {reserve} bytes ({available} bytes available)"
    )]
    DiskFull {
        /// Bytes the write needed.
        needed: u64,
        /// Bytes available to unprivileged users on that file system.
        available: u64,
        /// The configured reserve.
        reserve: u64,
    },
    /// A cached chunk is damaged (its bytes do not hash to its id, or a dirty chunk's
    /// file vanished). It has been dropped from the cache (`EIO`).
    #[error("cached chunk {id} is corrupt: {reason}")]
    Corrupt {
        /// The damaged chunk.
        id: ChunkId,
        /// What was wrong with it.
        reason: String,
    },
    /// Bytes handed to the cache are not the chunk they claim to be, or are too long
    /// to be a chunk; nothing was stored (`EIO`).
    #[error("chunk refused: {0}")]
    Rejected(#[from] ContentError),
    /// Another process has the cache directory open (`EBUSY`).
    #[error("cache directory {} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// The index was written by a newer version of Loft (`EIO`).
    #[error("cache index has schema version {0}, this build knows up to {known}", known = crate::chunks::SCHEMA_VERSION)]
    UnknownSchema(i64),
    /// A file operation failed (`EIO`).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The SQLite index failed (`EIO`).
    #[error("cache index: {0}")]
    Index(#[from] rusqlite::Error),
}

impl CacheError {
    /// An adapter for `map_err` that names the path an I/O error is about.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> CacheError {
        let path = path.into();
        move |source| CacheError::Io { path, source }
    }
}
