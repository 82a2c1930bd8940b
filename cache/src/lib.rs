//! Loft's client-side durable state, kept under the data directory of one device.
//!
//! This crate will hold:
//!
//! - the **mirror** of the metadata tree and the change-feed cursor,
//! - the **chunk cache**: plaintext chunks with a byte budget, LRU eviction, and
//!   pinned and dirty chunks that are never evicted ([`chunks`]),
//! - the **staging area** for files being written,
//! - the **outbound journal** of changes not yet committed on the server.
//!
//! Only the chunk cache exists so far. Everything here is synchronous (SQLite through
//! `rusqlite`, plain file I/O): async callers run it on blocking threads.

#![warn(missing_docs)]

pub mod chunks;
mod error;

pub use error::{CacheError, Result};
