//! [`ChunkCache`], the chunk cache's public face.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use loft_remote::content::{self, ChunkId, ContentError, MAX_CHUNK};

use super::files::ChunkFiles;
use super::index::{Durability, Index, Row};
use super::ledger::Ledger;
use super::platform::{self, DirLock};
use super::recovery::{self, RecoveryReport};
use super::{CacheConfig, CacheStats, ChunkInfo, ChunkState, INDEX_FILE, PinOwner};
use crate::error::{CacheError, Result};

/// The chunk cache of one device (see the [module docs](super) for states, budget and
/// crash safety).
///
/// `Send + Sync`: share it behind an `Arc` and call it from blocking threads. Every
/// call may touch the disk.
///
/// Locking: one mutex, around the ledger (index and counters); it is never held
/// while taking another lock. Chunk bytes are written to temporary files and read
/// outside it, but a file at its final path is only created (renamed into place) or
/// deleted while it is held, together with its index row, so whenever the mutex is
/// free the index and the directory agree. A read outside the lock that finds a file
/// missing or wrong therefore looks again under the lock before calling it corrupt.
pub struct ChunkCache {
    files: ChunkFiles,
    disk_reserve: u64,
    recovery: RecoveryReport,
    ledger: Mutex<Ledger>,
    /// Released last, after the database is closed.
    _dir_lock: DirLock,
}

/// Bytes counted in [`Ledger::reserved`] for an insert between its room check and its
/// index row; given back by [`Reservation::release`], or on drop when the insert
/// fails in between.
struct Reservation<'a> {
    cache: &'a ChunkCache,
    bytes: u64,
}

impl<'a> Reservation<'a> {
    fn new(cache: &'a ChunkCache, ledger: &mut Ledger, bytes: u64) -> Reservation<'a> {
        ledger.reserved += bytes;
        Reservation { cache, bytes }
    }

    fn release(mut self, ledger: &mut Ledger) {
        ledger.reserved -= self.bytes;
        self.bytes = 0;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.cache.lock().reserved -= self.bytes;
        }
    }
}

/// What a second look at a chunk found.
enum Recheck {
    Good(Vec<u8>),
    Gone,
    Damaged(String),
}

impl ChunkCache {
    /// Opens the cache in `dir` (created if missing, mode 0700 on Unix; an existing
    /// directory keeps its mode), repairs what a crash left
    /// behind (see [`RecoveryReport`]) and evicts down to the budget.
    ///
    /// Fails with [`CacheError::Locked`] if another process has `dir` open.
    #[tracing::instrument(level = "debug", skip(config), fields(dir = %dir.display()))]
    pub fn open(dir: &Path, config: CacheConfig) -> Result<ChunkCache> {
        platform::create_private_dir(dir).map_err(CacheError::io(dir))?;
        let dir_lock = platform::lock_dir(dir)?;
        let files = ChunkFiles::create(dir)?;
        let mut index = Index::open(&dir.join(INDEX_FILE))?;
        let recovery = recovery::recover(&mut index, &files)?;
        let mut ledger = Ledger::new(index, config.budget)?;
        ledger.evict_to_budget(&files)?;
        Ok(ChunkCache {
            files,
            disk_reserve: config.disk_reserve,
            recovery,
            ledger: Mutex::new(ledger),
            _dir_lock: dir_lock,
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        self.files.root()
    }

    /// What [`open`](Self::open) had to repair.
    pub fn recovery(&self) -> RecoveryReport {
        self.recovery
    }

    /// The ledger, recounted if a panic poisoned the lock (the index is
    /// transactional, so it is the truth to recount from).
    fn lock(&self) -> MutexGuard<'_, Ledger> {
        match self.ledger.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                if let Err(e) = guard.recount() {
                    tracing::error!(error = %e, "cannot recount the chunk cache after a panic");
                }
                self.ledger.clear_poison();
                guard
            }
        }
    }

    /// Stores chunk `id` with plaintext `data`.
    ///
    /// `data` must hash to `id` and be at most [`MAX_CHUNK`] bytes
    /// ([`CacheError::Rejected`] otherwise). Inserting a chunk that is present only
    /// counts as a use, except that a dirty insert of a clean chunk makes it dirty.
    ///
    /// A clean insert evicts to make room or fails with [`CacheError::Full`]; a dirty
    /// one is stored durably whatever the budget. Either fails with
    /// [`CacheError::DiskFull`] if the disk would fall below the reserve. When an
    /// insert fails, nothing has been written.
    #[tracing::instrument(level = "debug", skip(self, data), fields(len = data.len()))]
    pub fn insert(&self, id: &ChunkId, data: &[u8], state: ChunkState) -> Result<()> {
        if data.len() > MAX_CHUNK {
            return Err(ContentError::Oversized(data.len()).into());
        }
        content::verify(id, data)?;
        let length = data.len() as u64;
        let durable = state == ChunkState::Dirty;

        // 1. Under the lock: is there anything to do, is there room?
        let reservation = {
            let mut ledger = self.lock();
            match ledger.index.row(id)? {
                Some(row) if state == ChunkState::Clean || row.state == ChunkState::Dirty => {
                    ledger.touch(id)?;
                    return Ok(());
                }
                // Clean becoming dirty: the bytes are rewritten durably, since the
                // clean file was never synced.
                Some(_) => {
                    self.check_disk(length)?;
                    Reservation::new(self, &mut ledger, 0)
                }
                None => {
                    self.check_disk(length)?;
                    if state == ChunkState::Clean {
                        ledger.make_room(&self.files, length)?;
                    }
                    Reservation::new(self, &mut ledger, length)
                }
            }
        };

        // 2. Without the lock: write the bytes.
        let temp = self.files.write_temp(id, data, durable)?;

        // 3. Under the lock: put them in place and index them. Another insert of the
        // same chunk may have finished meanwhile, or an eviction removed it.
        let mut ledger = self.lock();
        reservation.release(&mut ledger);
        match ledger.index.row(id)? {
            Some(row) if state == ChunkState::Clean || row.state == ChunkState::Dirty => {
                drop(temp);
                ledger.touch(id)?;
            }
            Some(_) => {
                self.files.install(temp, id, true)?;
                ledger
                    .index
                    .set_state(&[*id], ChunkState::Dirty, Durability::Durable)?;
                ledger.touch(id)?;
            }
            None => {
                self.files.install(temp, id, durable)?;
                let access = ledger.tick();
                let durability = if durable {
                    Durability::Durable
                } else {
                    Durability::Relaxed
                };
                let row = Row { length, state };
                if let Err(e) = ledger.index.insert(id, row, access, durability) {
                    if let Err(e) = self.files.remove(id) {
                        tracing::warn!(chunk = %id, error = %e, "cannot delete unindexed chunk file");
                    }
                    return Err(e);
                }
                ledger.total += length;
            }
        }
        ledger.verified.insert(*id);
        // Dirty bytes may have pushed the total over the budget (or the budget shrank
        // while this insert was writing).
        ledger.evict_to_budget(&self.files)?;
        Ok(())
    }

    /// Fails with `DiskFull` if writing `needed` bytes would leave less than the
    /// reserve free.
    fn check_disk(&self, needed: u64) -> Result<()> {
        let root = self.files.root();
        let Some(available) = platform::available_space(root).map_err(CacheError::io(root))? else {
            return Ok(());
        };
        if available < needed.saturating_add(self.disk_reserve) {
            return Err(CacheError::DiskFull {
                needed,
                available,
                reserve: self.disk_reserve,
            });
        }
        Ok(())
    }

    /// All of chunk `id`, checked against its hash, or `None` if it is not cached.
    /// Counts as a use.
    ///
    /// Bytes that do not match give [`CacheError::Corrupt`] and the chunk is dropped
    /// (fetch it again). A clean chunk whose file vanished is simply not cached; a
    /// dirty one is `Corrupt`.
    pub fn get(&self, id: &ChunkId) -> Result<Option<Vec<u8>>> {
        if self.touch_if_present(id)?.is_none() {
            return Ok(None);
        }
        self.read_checked(id)
    }

    /// Up to `len` bytes of chunk `id` from `offset` (fewer past its end, none from
    /// beyond it), or `None` if it is not cached. Counts as a use.
    ///
    /// The first read of a chunk in this process reads and checks all of it (errors as
    /// for [`get`](Self::get)); later ones read only the range.
    pub fn read_range(&self, id: &ChunkId, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        let Some((length, verified)) = self.touch_if_present(id)? else {
            return Ok(None);
        };
        if verified {
            let start = offset.min(length);
            let wanted = offset.saturating_add(len).min(length) - start;
            if let Some(bytes) = self.files.read_range(id, start, wanted)?
                && bytes.len() as u64 == wanted
            {
                return Ok(Some(bytes));
            }
            // Short or missing: evicted meanwhile, or damaged; the full read sorts it out.
        }
        let Some(data) = self.read_checked(id)? else {
            return Ok(None);
        };
        let clamp = |n: u64| n.min(data.len() as u64) as usize;
        Ok(Some(
            data[clamp(offset)..clamp(offset.saturating_add(len))].to_vec(),
        ))
    }

    /// Whether chunk `id` is cached. Not a use.
    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.lock().index.row(id)?.is_some())
    }

    /// The file holding chunk `id`'s plaintext, if cached (e.g. to copy from when
    /// staging a write). Counts as a use.
    ///
    /// The file is not checked against the hash, and unless the chunk is pinned or
    /// dirty it may be evicted at any moment: pin it first, or open the file at once
    /// (an open file stays readable after eviction on Unix).
    pub fn path_of(&self, id: &ChunkId) -> Result<Option<PathBuf>> {
        Ok(self.touch_if_present(id)?.map(|_| self.files.path(id)))
    }

    /// State, length and pin count of chunk `id`, if cached. Not a use.
    pub fn info(&self, id: &ChunkId) -> Result<Option<ChunkInfo>> {
        self.lock().index.info(id)
    }

    /// Records a use of chunk `id`; returns its length and whether this process has
    /// already checked its bytes, or `None` if it is not cached.
    fn touch_if_present(&self, id: &ChunkId) -> Result<Option<(u64, bool)>> {
        let mut ledger = self.lock();
        let Some(row) = ledger.index.row(id)? else {
            return Ok(None);
        };
        ledger.touch(id)?;
        Ok(Some((row.length, ledger.verified.contains(id))))
    }

    /// Reads all of chunk `id` and checks its hash.
    fn read_checked(&self, id: &ChunkId) -> Result<Option<Vec<u8>>> {
        if let Some(data) = self.files.read(id)?
            && ChunkId::of(&data) == *id
        {
            self.lock().verified.insert(*id);
            return Ok(Some(data));
        }
        self.recheck(id)
    }

    /// Looks again, under the lock, at a chunk that a read found missing or damaged
    /// (it may have been evicted or replaced since) and drops it if it is broken.
    fn recheck(&self, id: &ChunkId) -> Result<Option<Vec<u8>>> {
        let mut ledger = self.lock();
        let Some(row) = ledger.index.row(id)? else {
            return Ok(None);
        };
        let found = match self.files.read(id)? {
            Some(data) if ChunkId::of(&data) == *id => Recheck::Good(data),
            Some(data) => Recheck::Damaged(format!(
                "its {} bytes hash to {}",
                data.len(),
                ChunkId::of(&data)
            )),
            None => Recheck::Gone,
        };
        let reason = match (found, row.state) {
            (Recheck::Good(data), _) => {
                ledger.verified.insert(*id);
                return Ok(Some(data));
            }
            (Recheck::Gone, ChunkState::Clean) => None,
            (Recheck::Gone, ChunkState::Dirty) => Some("its file is missing".to_owned()),
            (Recheck::Damaged(reason), _) => Some(reason),
        };
        ledger.forget(&self.files, id, row.length)?;
        match reason {
            None => {
                tracing::warn!(chunk = %id, "cached chunk file vanished; dropped");
                Ok(None)
            }
            Some(reason) => {
                tracing::error!(chunk = %id, state = ?row.state, %reason, "corrupt chunk dropped");
                Err(CacheError::Corrupt { id: *id, reason })
            }
        }
    }

    /// Pins `ids` for `owner`: they are not evicted while any owner pins them. Ids
    /// need not be cached yet (pin, then hydrate). Pinning twice is pinning once.
    pub fn pin(&self, owner: PinOwner, ids: &[ChunkId]) -> Result<()> {
        self.lock().index.pin(owner, ids)
    }

    /// Drops `owner`'s pins on `ids`, then evicts down to the budget.
    pub fn unpin(&self, owner: PinOwner, ids: &[ChunkId]) -> Result<()> {
        let mut ledger = self.lock();
        ledger.index.unpin(owner, ids)?;
        ledger.evict_to_budget(&self.files)?;
        Ok(())
    }

    /// Drops all of `owner`'s pins, then evicts down to the budget.
    pub fn unpin_all(&self, owner: PinOwner) -> Result<()> {
        let mut ledger = self.lock();
        ledger.index.unpin_all(owner)?;
        ledger.evict_to_budget(&self.files)?;
        Ok(())
    }

    /// Records that the server now has `ids` (uploaded): they become clean and
    /// evictable, and the cache evicts down to the budget. Ids that are not cached or
    /// already clean are ignored, so a retried upload may call this again.
    pub fn mark_clean(&self, ids: &[ChunkId]) -> Result<()> {
        let mut ledger = self.lock();
        ledger
            .index
            .set_state(ids, ChunkState::Clean, Durability::Durable)?;
        ledger.evict_to_budget(&self.files)?;
        Ok(())
    }

    /// Ids of all dirty chunks (for the outbound journal to reconcile at startup).
    pub fn dirty_ids(&self) -> Result<Vec<ChunkId>> {
        self.lock().index.dirty_ids()
    }

    /// Drops chunk `id` if it is clean and unpinned; returns whether it did. Pinned
    /// and dirty chunks stay: their holders rely on them.
    pub fn remove(&self, id: &ChunkId) -> Result<bool> {
        let mut ledger = self.lock();
        let Some(row) = ledger.index.row(id)? else {
            return Ok(false);
        };
        if row.state == ChunkState::Dirty || ledger.index.pin_count(id)? > 0 {
            return Ok(false);
        }
        ledger.forget(&self.files, id, row.length)?;
        Ok(true)
    }

    /// Evicts least recently used clean unpinned chunks until the cache is within
    /// its budget or nothing evictable is left; returns the bytes freed. Every
    /// operation already does this when needed; this is for callers that want to be
    /// sure (e.g. before reporting usage).
    pub fn evict_to_budget(&self) -> Result<u64> {
        self.lock().evict_to_budget(&self.files)
    }

    /// Changes the budget and evicts down to it; returns the bytes freed.
    pub fn set_budget(&self, budget: u64) -> Result<u64> {
        let mut ledger = self.lock();
        ledger.budget = budget;
        ledger.evict_to_budget(&self.files)
    }

    /// The current budget.
    pub fn budget(&self) -> u64 {
        self.lock().budget
    }

    /// Bytes by kind.
    pub fn stats(&self) -> Result<CacheStats> {
        let ledger = self.lock();
        let stats = ledger.index.stats()?;
        Ok(CacheStats {
            budget: ledger.budget,
            ..stats
        })
    }
}

impl Drop for ChunkCache {
    /// Writes the reads still remembered in memory, so the next start knows what was
    /// used recently.
    fn drop(&mut self) {
        if let Err(e) = self.lock().flush_touches() {
            tracing::warn!(error = %e, "cannot record the last chunk reads");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn cache_is_send_and_sync() {
        assert_send_sync::<ChunkCache>();
    }

    #[test]
    fn failed_insert_gives_its_reservation_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = CacheConfig {
            budget: 100,
            disk_reserve: 0,
        };
        let cache = ChunkCache::open(dir.path(), config).unwrap();
        // Make writing the temporary file fail after the room check.
        fs::remove_dir(dir.path().join("tmp")).unwrap();
        let data = [7u8; 60];
        let id = ChunkId::of(&data);
        assert!(matches!(
            cache.insert(&id, &data, ChunkState::Clean),
            Err(CacheError::Io { .. })
        ));
        assert_eq!(cache.lock().reserved, 0);
        fs::create_dir(dir.path().join("tmp")).unwrap();
        // Had the 60 bytes stayed reserved, this would not fit.
        cache.insert(&id, &data, ChunkState::Clean).unwrap();
        assert!(cache.contains(&id).unwrap());
    }

    #[test]
    fn read_range_trusts_a_chunk_only_after_checking_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = CacheConfig {
            budget: 1 << 20,
            disk_reserve: 0,
        };
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let id = ChunkId::of(&data);
        {
            let cache = ChunkCache::open(dir.path(), config).unwrap();
            cache.insert(&id, &data, ChunkState::Clean).unwrap();
            assert!(cache.lock().verified.contains(&id));
        }
        let cache = ChunkCache::open(dir.path(), config).unwrap();
        assert!(!cache.lock().verified.contains(&id));
        assert_eq!(
            cache.read_range(&id, 10, 5).unwrap().unwrap(),
            &data[10..15]
        );
        assert!(cache.lock().verified.contains(&id));
        assert_eq!(
            cache.read_range(&id, 990, 100).unwrap().unwrap(),
            &data[990..]
        );
        assert_eq!(cache.read_range(&id, 2000, 1).unwrap().unwrap(), b"");
    }
}
