//! The pruning worker: deletes versions past the retention (never a file's current
//! one), purges trash items past the trash retention, and deletes from the chunk store
//! the chunks nothing references any more once their grace period is over.
//!
//! Only one pass runs at a time across every server process sharing the metadata
//! store: a pass holds the `prune` lease (a row in the store, so the same on SQLite and
//! PostgreSQL) and, within a process, a mutex.

use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};

use crate::chunk_store::ChunkStore;
use crate::error::Result;
use crate::meta::{MetaStore, Nanos, now_nanos};

/// How long unreferenced chunks and unrecorded objects are kept by default: an upload
/// in flight, or a commit about to reference a chunk, is never cut short within it.
/// `loft-server check --repair` uses the same default for orphans.
pub const DEFAULT_CHUNK_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Default retention of non-current versions and of trash items.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

const LEASE: &str = "prune";
/// A pass renews the lease after each batch; a holder that died loses it after this.
const LEASE_TTL: Duration = Duration::from_secs(10 * 60);
/// Rows per transaction.
const BATCH: u32 = 500;

/// What the worker keeps and how often it looks; filled by the binary's flags.
#[derive(Clone, Debug)]
pub struct PruneConfig {
    /// Non-current versions older than this are deleted.
    pub retention: Duration,
    /// Trash items deleted longer ago than this are purged.
    pub trash_retention: Duration,
    /// Chunks unreferenced for less than this are kept.
    pub chunk_grace: Duration,
    /// Time between passes.
    pub interval: Duration,
}

impl Default for PruneConfig {
    fn default() -> Self {
        PruneConfig {
            retention: DEFAULT_RETENTION,
            trash_retention: DEFAULT_RETENTION,
            chunk_grace: DEFAULT_CHUNK_GRACE,
            interval: Duration::from_secs(3600),
        }
    }
}

/// The points in time a pass prunes up to (exclusive).
#[derive(Clone, Copy, Debug)]
pub struct Cutoffs {
    pub versions: Nanos,
    pub trash: Nanos,
    pub chunks: Nanos,
}

impl Cutoffs {
    /// The cutoffs of `config` at time `now`.
    pub fn at(config: &PruneConfig, now: Nanos) -> Cutoffs {
        let before = |age: Duration| now.saturating_sub(nanos(age));
        Cutoffs {
            versions: before(config.retention),
            trash: before(config.trash_retention),
            chunks: before(config.chunk_grace),
        }
    }
}

fn nanos(duration: Duration) -> Nanos {
    Nanos::try_from(duration.as_nanos()).unwrap_or(Nanos::MAX)
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub versions: u64,
    pub trash_items: u64,
    pub chunks_deleted: u64,
}

/// Runs pruning passes over one pair of stores.
pub struct Pruner {
    meta: Arc<dyn MetaStore>,
    chunks: ChunkStore,
    /// Names this process in the lease.
    holder: String,
    running: Mutex<()>,
}

impl Pruner {
    pub fn new(meta: Arc<dyn MetaStore>, chunks: ChunkStore) -> Pruner {
        Pruner {
            meta,
            chunks,
            holder: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            running: Mutex::new(()),
        }
    }

    /// One pass up to `cutoffs`; `None` when another pass holds the lease.
    pub fn run_pass<'a>(&'a self, cutoffs: Cutoffs) -> BoxFuture<'a, Result<Option<PruneReport>>> {
        Box::pin(async move {
            let Ok(_running) = self.running.try_lock() else {
                return Ok(None);
            };
            let ttl = nanos(LEASE_TTL);
            if !self.meta.take_lease(LEASE, &self.holder, ttl).await? {
                return Ok(None);
            }
            let result = self.pass(cutoffs, ttl).await;
            self.meta.release_lease(LEASE, &self.holder).await?;
            result.map(Some)
        })
    }

    async fn pass(&self, cutoffs: Cutoffs, ttl: Nanos) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        loop {
            let pruned = self.meta.prune_versions(cutoffs.versions, BATCH).await?;
            report.versions += pruned;
            if pruned < u64::from(BATCH) {
                break;
            }
            self.renew(ttl).await?;
        }
        loop {
            let purged = self.meta.purge_trash(cutoffs.trash, BATCH).await?;
            report.trash_items += purged;
            if purged < u64::from(BATCH) {
                break;
            }
            self.renew(ttl).await?;
        }
        // Released references come first, so that chunks they freed and whose grace is
        // over go in this same pass.
        loop {
            let doomed = self.meta.doom_chunks(cutoffs.chunks, BATCH).await?;
            for id in &doomed {
                self.chunks.delete(id).await?;
            }
            self.meta.forget_chunks(&doomed).await?;
            report.chunks_deleted += doomed.len() as u64;
            if doomed.len() < BATCH as usize {
                break;
            }
            self.renew(ttl).await?;
        }
        Ok(report)
    }

    async fn renew(&self, ttl: Nanos) -> Result<()> {
        if !self.meta.take_lease(LEASE, &self.holder, ttl).await? {
            return Err(crate::error::ServerError::internal(
                "the pruning lease was lost mid-pass",
            ));
        }
        Ok(())
    }

    /// Runs a pass every `config.interval` until `stop` turns true.
    pub fn run(
        self: Arc<Self>,
        config: PruneConfig,
        mut stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                match self.run_pass(Cutoffs::at(&config, now_nanos())).await {
                    Ok(Some(report)) if report != PruneReport::default() => {
                        tracing::info!(?report, "pruned");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "pruning pass failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(config.interval) => {}
                    _ = stop.wait_for(|stopping| *stopping) => return,
                }
            }
        })
    }
}
