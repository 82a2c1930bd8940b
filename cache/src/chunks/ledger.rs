//! The cache's mutable state, kept behind its one lock: the index plus what is
//! counted in memory (total bytes, in-flight reservations, the access clock, reads
//! not yet written to the index, chunks already verified), and eviction.

use std::collections::{HashMap, HashSet};

use loft_remote::content::ChunkId;

use super::files::ChunkFiles;
use super::index::Index;
use crate::error::{CacheError, Result};

/// Reads remembered in memory before they are written to the index in one batch.
const TOUCH_BATCH: usize = 1024;

/// The state behind [`ChunkCache`](super::ChunkCache)'s lock.
pub(crate) struct Ledger {
    pub index: Index,
    /// Most bytes to keep (dirty chunks may push the total beyond).
    pub budget: u64,
    /// Sum of the lengths of all indexed chunks.
    pub total: u64,
    /// Bytes of inserts between their room check and their index row: counted as
    /// unevictable so that concurrent inserts cannot overcommit the budget.
    pub reserved: u64,
    /// The logical clock for "least recently used".
    clock: i64,
    /// Latest access per chunk not yet in the index.
    touched: HashMap<ChunkId, i64>,
    /// Chunks whose file this process has hashed (or written): ranged reads trust them.
    pub verified: HashSet<ChunkId>,
}

impl Ledger {
    /// Takes over `index`, counting what it holds.
    pub fn new(index: Index, budget: u64) -> Result<Ledger> {
        Ok(Ledger {
            total: index.total_bytes()?,
            clock: index.max_access()? + 1,
            index,
            budget,
            reserved: 0,
            touched: HashMap::new(),
            verified: HashSet::new(),
        })
    }

    /// Recounts what can be recounted after a panic while the lock was held (the
    /// index is transactional; the counters might not be).
    pub fn recount(&mut self) -> Result<()> {
        self.total = self.index.total_bytes()?;
        Ok(())
    }

    /// The next value of the access clock.
    pub fn tick(&mut self) -> i64 {
        let now = self.clock;
        self.clock += 1;
        now
    }

    /// Records a read of `id` (written to the index later, in a batch).
    pub fn touch(&mut self, id: &ChunkId) -> Result<()> {
        let now = self.tick();
        self.touched.insert(*id, now);
        if self.touched.len() >= TOUCH_BATCH {
            self.flush_touches()?;
        }
        Ok(())
    }

    /// Writes the remembered reads to the index.
    pub fn flush_touches(&mut self) -> Result<()> {
        if self.touched.is_empty() {
            return Ok(());
        }
        let accesses: Vec<_> = self.touched.iter().map(|(id, at)| (*id, *at)).collect();
        self.index.touch(&accesses)?;
        self.touched.clear();
        Ok(())
    }

    /// Makes room for a new clean chunk of `needed` bytes, evicting least recently
    /// used chunks if needed, or fails with `Full` having evicted nothing.
    pub fn make_room(&mut self, files: &ChunkFiles, needed: u64) -> Result<()> {
        let used = self
            .total
            .saturating_add(self.reserved)
            .saturating_add(needed);
        if used <= self.budget {
            return Ok(());
        }
        // Walking the LRU order stops as soon as enough is found, so a full cache
        // (the usual state) pays for a few rows, not for a scan of the whole index.
        let victims = self.eviction_candidates(used - self.budget)?;
        if victims.iter().map(|(_, length)| length).sum::<u64>() < used - self.budget {
            let unevictable = self.index.unevictable_bytes()? + self.reserved;
            return Err(CacheError::Full {
                needed,
                budget: self.budget,
                unevictable,
            });
        }
        self.evict(files, &victims)?;
        Ok(())
    }

    /// Evicts until the total (with reservations) is within the budget, or nothing
    /// evictable is left; returns the bytes freed.
    pub fn evict_to_budget(&mut self, files: &ChunkFiles) -> Result<u64> {
        let used = self.total.saturating_add(self.reserved);
        if used <= self.budget {
            return Ok(0);
        }
        let victims = self.eviction_candidates(used - self.budget)?;
        self.evict(files, &victims)
    }

    /// Clean unpinned chunks, least recently used first, adding up to at least
    /// `bytes` if there are enough.
    fn eviction_candidates(&mut self, bytes: u64) -> Result<Vec<(ChunkId, u64)>> {
        // The order must see every read so far.
        self.flush_touches()?;
        self.index.eviction_candidates(bytes)
    }

    /// Drops `victims`; returns the bytes freed.
    fn evict(&mut self, files: &ChunkFiles, victims: &[(ChunkId, u64)]) -> Result<u64> {
        let ids: Vec<ChunkId> = victims.iter().map(|(id, _)| *id).collect();
        // Rows go first: if the process dies before the files do, recovery finds files
        // without rows and re-indexes or deletes them. The other way round, a reader
        // could find a row without its file.
        self.index.delete(&ids)?;
        let mut freed = 0;
        for (id, length) in victims {
            self.forget_counted(id, *length);
            freed += length;
            if let Err(e) = files.remove(id) {
                // The row is gone; recovery deletes the file at the next start.
                tracing::warn!(chunk = %id, error = %e, "cannot delete evicted chunk file");
            }
        }
        if !victims.is_empty() {
            tracing::debug!(chunks = victims.len(), bytes = freed, "evicted");
        }
        Ok(freed)
    }

    /// Drops chunk `id` of `length` bytes: row, file and counters.
    pub fn forget(&mut self, files: &ChunkFiles, id: &ChunkId, length: u64) -> Result<()> {
        self.index.delete(&[*id])?;
        self.forget_counted(id, length);
        files.remove(id)?;
        Ok(())
    }

    /// Adjusts the in-memory state for a chunk whose row was deleted.
    fn forget_counted(&mut self, id: &ChunkId, length: u64) {
        self.total = self.total.saturating_sub(length);
        self.verified.remove(id);
        self.touched.remove(id);
    }
}
