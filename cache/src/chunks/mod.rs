//! The chunk cache: plaintext chunks of this device, under a byte budget.
//!
//! # Layout
//!
//! ```text
//! DIR/index.sqlite      the index (SQLite, WAL): one row per chunk, plus pins
//! DIR/ab/<64 hex id>    a chunk's plaintext, in the fan-out directory of its first byte
//! DIR/tmp/              files being written; renamed into place when complete
//! DIR/lock              held (flock) by the process that has the cache open
//! ```
//!
//! # States
//!
//! A chunk is absent or present in one [`ChunkState`]; independently, any number of
//! holders ([`PinOwner`]) may pin its id, present or not (pin first, then hydrate).
//!
//! ```text
//!            insert(Clean)               insert(Dirty)
//!   absent ───────────────▶ Clean ─────────────────────▶ Dirty
//!      ▲                      │  ◀───────────────────────  │
//!      │  evict / remove      │       mark_clean           │
//!      └──────────────────────┘                            │
//!      ▲  (only when no pin holds it)                      │
//!      └─── corrupt or missing file found on read ─────────┘
//! ```
//!
//! - `Clean`: the server has the bytes; the cache may drop them.
//! - `Dirty`: the bytes may exist only here (written locally, not yet uploaded). A dirty
//!   chunk is written durably (file and directory synced, index committed with
//!   `synchronous=FULL`) before `insert` returns, and is never evicted or removed.
//!   "Dirty" describes the bytes, not a writer: once the server has them any pending
//!   commit that references them can rely on the server, so one flag is enough.
//!   Inserting a clean chunk never downgrades a dirty one.
//! - Pinned: counted per holder (a `(chunk, owner)` row), so two pinned files sharing a
//!   chunk keep it until both let go. A pinned chunk is never evicted.
//!
//! # Budget
//!
//! All present bytes count against the budget, pinned and dirty ones included. After
//! every operation either the total is within the budget or nothing evictable is left:
//!
//! - a clean insert evicts clean unpinned chunks, least recently used first, to make
//!   room; if pinned and dirty bytes alone leave no room it fails with
//!   [`CacheError::Full`](crate::CacheError::Full) having evicted and written nothing
//!   (the design's "refuses to hydrate more and says so");
//! - a dirty insert always succeeds as far as the budget goes (nothing written is ever
//!   dropped) and evicts what it can afterwards;
//! - any insert fails with [`CacheError::DiskFull`](crate::CacheError::DiskFull) when it
//!   would leave less than [`CacheConfig::disk_reserve`] free on the file system;
//! - `unpin`, `mark_clean` and `set_budget` evict down to the budget at once.
//!
//! "Recently used" is a logical clock bumped by every insert and read. Reads record it
//! in memory and the index learns it in batches (and before any eviction), so a read
//! costs no database write.
//!
//! # Crash safety
//!
//! Files are written under `tmp/` and renamed into place before their index row is
//! committed. [`ChunkCache::open`] repairs whatever a crash left: temporary files are
//! removed, rows whose file is missing or has the wrong size are dropped, and files
//! without a row are re-indexed as clean if their bytes hash to their name, deleted
//! otherwise. Clean files are not synced: after a power cut one may be short or
//! garbled, which recovery (size) or the first read (hash) catches.
//!
//! Every read of a whole chunk checks its hash. [`ChunkCache::read_range`] checks the
//! whole chunk the first time this process reads it, and trusts it afterwards.

mod cache;
mod files;
mod index;
mod ledger;
mod platform;
mod recovery;

pub use cache::ChunkCache;
pub(crate) use index::SCHEMA_VERSION;
pub use recovery::RecoveryReport;

/// Default for [`CacheConfig::disk_reserve`]: 1 GiB.
pub const DEFAULT_DISK_RESERVE: u64 = 1 << 30;

/// Name of the index database inside the cache directory.
pub const INDEX_FILE: &str = "index.sqlite";

/// How a cache is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most bytes the cache keeps (`--cache-size`). Dirty chunks may push it beyond.
    pub budget: u64,
    /// Free space to leave on the file system holding the cache: an insert that would
    /// leave less fails with `DiskFull`, dirty or not. Not enforced where the platform
    /// cannot report free space (non-Unix).
    pub disk_reserve: u64,
}

impl CacheConfig {
    /// A budget with the default disk reserve.
    pub fn with_budget(budget: u64) -> CacheConfig {
        CacheConfig {
            budget,
            disk_reserve: DEFAULT_DISK_RESERVE,
        }
    }
}

/// Whether a present chunk's bytes are also on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkState {
    /// The server has these bytes: the chunk may be evicted (unless pinned).
    Clean,
    /// Written locally and not yet uploaded: kept, whatever the budget, until
    /// [`ChunkCache::mark_clean`].
    Dirty,
}

/// Someone holding pins: a file (by inode), a `loft pin` request, a hydration in
/// progress. Any `u64` the caller keeps stable while the pins should last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PinOwner(pub u64);

/// What the cache knows about one present chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Length of the plaintext in bytes.
    pub length: u64,
    /// Clean or dirty.
    pub state: ChunkState,
    /// How many owners pin it.
    pub pins: u64,
}

/// Bytes in the cache by kind. The three kinds are disjoint: a dirty chunk counts as
/// dirty whether pinned or not, so `clean + pinned + dirty == total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Clean, unpinned: what eviction may take.
    pub clean_bytes: u64,
    /// Clean and pinned.
    pub pinned_bytes: u64,
    /// Dirty (pinned or not).
    pub dirty_bytes: u64,
    /// All present chunks.
    pub total_bytes: u64,
    /// The current budget.
    pub budget: u64,
    /// Number of present chunks.
    pub chunks: u64,
}
