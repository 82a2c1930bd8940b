//! Loft's client-side durable state, kept under the cache directory of one device:
//!
//! - the **mirror** ([`mirror`]): the drive's tree as this device knows it, the
//!   change-feed cursor, the ledger of clean bytes held locally (LRU by last access)
//!   and the **outbound journal** of changes not yet committed on the server;
//! - the **body files** ([`bodies`]): one sparse local file per file, holding the
//!   chunks fetched so far (clean) or all bytes of a file being written (dirty, the
//!   staging area). Whole local files are what FUSE passthrough needs.
//!
//! Everything here is synchronous (SQLite through `rusqlite`, plain file I/O).

pub mod bodies;
mod error;
pub mod mirror;

pub use error::{CacheError, Result};
