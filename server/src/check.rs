//! `loft-server check`: the metadata against the chunk store, and each user's count
//! of stored bytes against its versions.
//!
//! Every chunk a version references must be stored; a stored object that no chunk
//! record names is an orphan (an upload that failed before it was recorded, or garbage
//! a crash left behind). Checking changes nothing; repair deletes orphans older than a
//! grace period, so that an upload in flight (stored, not yet recorded) is never lost,
//! and the temporary files of chunk writes a crash interrupted (leftovers), after the
//! same grace. A user's kept count of stored bytes (what quotas are checked against)
//! that differs from the sum of its versions is reported; repair sets it to the sum.

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::time::Duration;

use loft_remote::content::ChunkId;

use crate::chunk_store::{ChunkStore, Leftover, ListedChunk};
use crate::error::Result;
use crate::meta::{MetaStore, StoredChunkRef, UsageDrift};

const PAGE: u32 = 5000;

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Chunk records in the metadata.
    pub recorded: usize,
    /// Chunk objects in the store.
    pub stored: usize,
    /// Referenced by a version but not stored: data loss, to be investigated.
    pub missing: Vec<ChunkId>,
    /// Recorded (uploaded, not referenced) but not stored: harmless, the uploader
    /// uploads again when the record's grace period ends.
    pub missing_unreferenced: Vec<ChunkId>,
    /// Stored without a record.
    pub orphans: Vec<ListedChunk>,
    /// Orphans deleted by a repair.
    pub deleted: usize,
    /// Temporary files of interrupted chunk writes.
    pub leftovers: Vec<Leftover>,
    /// Leftovers deleted by a repair.
    pub leftovers_deleted: usize,
    /// Users whose count of stored bytes was off (set right by a repair).
    pub usage_drifts: Vec<UsageDrift>,
}

impl CheckReport {
    /// True when nothing a version needs is missing.
    pub fn healthy(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Checks `meta` against `chunks`; with `repair`, deletes orphans and leftovers
/// older than it.
pub fn check<'a>(
    meta: &'a dyn MetaStore,
    chunks: &'a ChunkStore,
    repair: Option<Duration>,
) -> BoxFuture<'a, Result<CheckReport>> {
    Box::pin(async move {
        // List the store first: an object stored after the listing and recorded before the
        // metadata scan is then simply not seen, never mistaken for an orphan.
        let listing = chunks.list().await?;
        let mut stored: HashMap<ChunkId, ListedChunk> = listing
            .chunks
            .into_iter()
            .map(|chunk| (chunk.id, chunk))
            .collect();
        let mut report = CheckReport {
            stored: stored.len(),
            leftovers: listing.leftovers,
            ..CheckReport::default()
        };
        let mut after = None;
        loop {
            let page: Vec<StoredChunkRef> = meta.chunk_records(after, PAGE).await?;
            for record in &page {
                report.recorded += 1;
                if stored.remove(&record.id).is_none() {
                    if record.referenced {
                        report.missing.push(record.id);
                    } else {
                        report.missing_unreferenced.push(record.id);
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.id),
                _ => break,
            }
        }
        report.usage_drifts = meta.recount_usage(repair.is_some()).await?;
        report.orphans = stored.into_values().collect();
        report.orphans.sort_by_key(|orphan| orphan.id.0);
        if let Some(grace) = repair {
            let cutoff =
                now_ms().saturating_sub(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
            for orphan in &report.orphans {
                if orphan.modified_ms <= cutoff {
                    chunks.delete(&orphan.id).await?;
                    report.deleted += 1;
                }
            }
            for leftover in &report.leftovers {
                if leftover.modified_ms <= cutoff {
                    chunks.delete_leftover(leftover).await?;
                    report.leftovers_deleted += 1;
                }
            }
        }
        Ok(report)
    })
}

fn now_ms() -> i64 {
    crate::meta::now_nanos() / 1_000_000
}
