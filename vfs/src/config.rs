//! How a mount behaves; filled from the command line.

use std::path::PathBuf;
use std::time::Duration;

/// Default cache budget: clean (re-downloadable) bytes kept on this device.
pub const DEFAULT_CACHE_SIZE: u64 = 10 << 30;
/// Default free-disk reserve: below it, writes fail with ENOSPC.
pub const DEFAULT_DISK_RESERVE: u64 = 512 << 20;

#[derive(Clone, Debug)]
pub struct VfsConfig {
    /// Holds the mirror database and the body files.
    pub cache_dir: PathBuf,
    /// Byte budget for clean cached bytes (pinned ones included).
    pub cache_size: u64,
    /// Writes fail with ENOSPC when less than this is free on the cache's disk.
    pub disk_reserve: u64,
    /// Quiet time after the last close before a version is uploaded.
    pub upload_debounce: Duration,
    /// How long a new file's creation waits for its first close, so that it reaches
    /// the server with its content in one commit.
    pub create_wait: Duration,
    /// Sequential reads fetch this much beyond the read.
    pub read_ahead: u64,
    /// When set, every node is shown as owned by this uid/gid (an unprivileged
    /// mount); else owners are stored and shown as given.
    pub owner: Option<(u32, u32)>,
    /// This device's name, used in conflicted copies.
    pub device: String,
    /// The longest pause between tries to reach the server (5 s; simulations shorten
    /// it).
    pub retry_cap: Duration,
    /// A change feed that delivers nothing for this long is taken as broken and
    /// followed again. The server says "caught up" at least every 5 s on an idle
    /// stream, so only a stream stuck on the way (a half-open connection) is silent.
    pub feed_silence: Duration,
}

impl VfsConfig {
    pub fn new(cache_dir: PathBuf) -> VfsConfig {
        VfsConfig {
            cache_dir,
            cache_size: DEFAULT_CACHE_SIZE,
            disk_reserve: DEFAULT_DISK_RESERVE,
            upload_debounce: Duration::from_millis(50),
            create_wait: Duration::from_secs(2),
            read_ahead: 16 << 20,
            owner: None,
            device: String::new(),
            retry_cap: crate::backoff::MAX_BACKOFF,
            feed_silence: Duration::from_secs(20),
        }
    }
}
