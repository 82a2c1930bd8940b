//! Hydration: fetching the chunks behind a byte range into a file's body, within the
//! cache budget, and evicting least-recently-used clean ranges to make room.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use loft_cache::bodies::punch_hole;
use loft_cache::mirror::Held;
use loft_remote::client::RemoteError;
use loft_remote::transfer::fetch_chunks;
use tracing::{debug, warn};

use crate::attr::now;
use crate::core::{Layout, OpenFile, Vfs, lock};
use crate::error::{VfsError, VfsResult};

/// Whether a caller waits for chunks another thread is already fetching.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    Yes,
    /// Read-ahead: skip chunks in flight.
    No,
}

impl Vfs {
    /// Registers a user of `ino`'s body (a handle or an internal task), loading the
    /// set of held chunks on first use.
    pub(crate) fn enter_file(&self, ino: u64, body: u64, write: bool) -> VfsResult<()> {
        let mut files = lock(&self.files);
        if let Some(file) = files.get_mut(&ino) {
            file.users += 1;
            file.writers += u32::from(write);
            if file.body != body {
                // A new body generation: its chunk set starts from the ledger.
                file.body = body;
                file.held = self.held_set(ino, body)?;
            }
            return Ok(());
        }
        let held = self.held_set(ino, body)?;
        files.insert(
            ino,
            OpenFile {
                users: 1,
                writers: u32::from(write),
                direct: 0,
                busy: 0,
                body,
                held,
                fetching: HashSet::new(),
            },
        );
        Ok(())
    }

    fn held_set(&self, ino: u64, body: u64) -> VfsResult<HashSet<u64>> {
        Ok(self
            .mirror
            .read(|db| db.held_chunks(ino, body))?
            .into_iter()
            .collect())
    }

    /// Undoes [`Vfs::enter_file`]; returns true when that was the last user.
    pub(crate) fn leave_file(&self, ino: u64, write: bool, direct: bool) -> bool {
        let mut files = lock(&self.files);
        let Some(file) = files.get_mut(&ino) else {
            return true;
        };
        file.users = file.users.saturating_sub(1);
        if write {
            file.writers = file.writers.saturating_sub(1);
        }
        if direct {
            file.direct = file.direct.saturating_sub(1);
        }
        if file.users == 0 {
            files.remove(&ino);
            drop(files);
            for body in lock(&self.stale_bodies).remove(&ino).unwrap_or_default() {
                if let Err(error) = self.bodies.remove(ino, body) {
                    debug!(ino, "removing an old body: {error}");
                }
            }
            return true;
        }
        false
    }

    pub(crate) fn writers(&self, ino: u64) -> u32 {
        lock(&self.files).get(&ino).map_or(0, |f| f.writers)
    }

    /// True when every chunk of `layout` is held for `ino`.
    pub(crate) fn all_held(&self, ino: u64, layout: &Layout) -> bool {
        let files = lock(&self.files);
        files
            .get(&ino)
            .is_some_and(|f| f.held.len() >= layout.manifest.chunks.len())
    }

    /// Marks `ino` busy (its ranges are not evicted) until the guard drops.
    pub(crate) fn busy(&self, ino: u64) -> BusyGuard<'_> {
        if let Some(file) = lock(&self.files).get_mut(&ino) {
            file.busy += 1;
        }
        BusyGuard { vfs: self, ino }
    }

    /// Makes the chunks `first..=last` of `ino`'s body local. `file` is that body.
    pub(crate) fn fetch_chunks(
        &self,
        ino: u64,
        body: u64,
        layout: &Layout,
        file: &Arc<File>,
        wanted: impl IntoIterator<Item = usize>,
        wait: Wait,
    ) -> VfsResult<()> {
        let wanted: Vec<usize> = wanted.into_iter().collect();
        let mine = {
            let mut files = lock(&self.files);
            loop {
                let Some(open) = files.get_mut(&ino) else {
                    return Err(VfsError::BadHandle);
                };
                if open.body != body {
                    return Err(VfsError::Io("file changed while reading".into()));
                }
                let in_flight = wanted.iter().any(|i| {
                    open.fetching.contains(&(*i as u64)) && !open.held.contains(&(*i as u64))
                });
                if in_flight && wait == Wait::Yes {
                    files = self.fetched.wait(files).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                let mine: Vec<usize> = wanted
                    .iter()
                    .copied()
                    .filter(|i| {
                        !open.held.contains(&(*i as u64)) && !open.fetching.contains(&(*i as u64))
                    })
                    .collect();
                for i in &mine {
                    open.fetching.insert(*i as u64);
                }
                if !mine.is_empty() {
                    open.busy += 1;
                }
                break mine;
            }
        };
        if mine.is_empty() {
            return Ok(());
        }
        let result = self.fetch_owned(ino, body, layout, file, &mine);
        {
            let mut files = lock(&self.files);
            if let Some(open) = files.get_mut(&ino) {
                for i in &mine {
                    open.fetching.remove(&(*i as u64));
                }
                open.busy = open.busy.saturating_sub(1);
                if let Ok(done) = &result
                    && open.body == body
                {
                    open.held.extend(done.iter().map(|i| *i as u64));
                }
            }
            self.fetched.notify_all();
        }
        match result {
            Ok(done) if done.len() == mine.len() => Ok(()),
            Ok(_) => Err(VfsError::Io("download ended early".into())),
            Err(error) => Err(error),
        }
    }

    /// Downloads `mine` (chunk indexes this caller owns) into the body and records
    /// them in the ledger. Returns the indexes written.
    fn fetch_owned(
        &self,
        ino: u64,
        body: u64,
        layout: &Layout,
        file: &Arc<File>,
        mine: &[usize],
    ) -> VfsResult<Vec<usize>> {
        let bytes: u64 = mine
            .iter()
            .map(|i| u64::from(layout.manifest.chunks[*i].length))
            .sum();
        self.reserve(bytes)?;
        let refs: Vec<_> = mine.iter().map(|i| layout.manifest.chunks[*i]).collect();
        let client = self.client.clone();
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = received.clone();
        let file = file.clone();
        let offsets: Vec<(usize, u64)> = mine
            .iter()
            .map(|i| (*i, layout.index.start_of(*i).unwrap_or(0)))
            .collect();
        let written: Result<Vec<usize>, (Vec<usize>, VfsError)> = self.rt.block_on(async move {
            let mut stream = fetch_chunks(client, refs, counter);
            let mut written = Vec::new();
            for (index, offset) in offsets {
                match stream.next().await {
                    Some(Ok(plain)) => {
                        if let Err(e) = write_chunk(&file, &plain, offset) {
                            return Err((written, VfsError::from(e)));
                        }
                        if let Err(e) =
                            self.chunk_landed(ino, body, index, offset, plain.len() as u64)
                        {
                            return Err((written, e));
                        }
                        written.push(index);
                    }
                    Some(Err(error)) => return Err((written, self.remote_failed(error))),
                    None => {
                        return Err((written, VfsError::Io("download ended early".into())));
                    }
                }
            }
            Ok(written)
        });
        self.counters
            .bytes_downloaded
            .fetch_add(received.load(Ordering::Relaxed), Ordering::Relaxed);
        let (written, error) = match written {
            Ok(written) => (written, None),
            Err((written, error)) => (written, Some(error)),
        };
        let written_bytes: u64 = written
            .iter()
            .map(|i| u64::from(layout.manifest.chunks[*i].length))
            .sum();
        // Give back the reservation of what did not arrive.
        self.held_total
            .fetch_sub(bytes - written_bytes, Ordering::Relaxed);
        match error {
            Some(error) => Err(error),
            None => Ok(written),
        }
    }

    /// Makes one fetched chunk readable at once, so a reader waiting for it does not
    /// wait for the rest of its batch.
    fn chunk_landed(
        &self,
        ino: u64,
        body: u64,
        idx: usize,
        offset: u64,
        len: u64,
    ) -> VfsResult<()> {
        let held = Held {
            ino,
            body,
            idx: idx as u64,
            offset,
            len,
        };
        self.mirror.write(|db| db.hold(held, now()))?;
        let mut files = lock(&self.files);
        if let Some(open) = files.get_mut(&ino)
            && open.body == body
        {
            open.held.insert(idx as u64);
            open.fetching.remove(&(idx as u64));
        }
        drop(files);
        self.fetched.notify_all();
        Ok(())
    }

    /// Notes a failed server call: an unreachable server flips the mount offline.
    pub(crate) fn remote_failed(&self, error: RemoteError) -> VfsError {
        if error.is_unavailable() {
            if self.counters.online.swap(false, Ordering::Relaxed) {
                warn!("server unreachable, working offline: {}", error.message);
            }
            VfsError::Offline(format!(
                "bytes not held on this device and the server is unreachable: {}",
                error.message
            ))
        } else {
            if error.kind == loft_remote::errors::ErrorKind::NotFound {
                // Something this device shows is gone on the server: once the
                // journal is drained, the folders are listed again.
                self.reconcile.store(true, Ordering::Relaxed);
                self.wake.notify_one();
            }
            VfsError::from(error)
        }
    }

    /// Reserves `bytes` of the budget for clean data, evicting least recently used
    /// unpinned ranges of files not in use; fails with ENOSPC when that is not enough.
    pub(crate) fn reserve(&self, bytes: u64) -> VfsResult<()> {
        let _guard = lock(&self.budget_lock);
        let budget = self.config.cache_size;
        let mut offset = 0u32;
        loop {
            let held = self.held_total.load(Ordering::Relaxed);
            if held + bytes <= budget {
                self.held_total.fetch_add(bytes, Ordering::Relaxed);
                *lock(&self.counters.cache_full) = None;
                return Ok(());
            }
            let candidates = self.mirror.read(|db| db.eviction_candidates(256, offset))?;
            if candidates.is_empty() {
                let error = loft_cache::CacheError::Full {
                    needed: bytes,
                    budget,
                    held,
                };
                warn!("{error}");
                *lock(&self.counters.cache_full) = Some(error.to_string());
                return Err(error.into());
            }
            let mut evicted_any = false;
            for held in candidates {
                if self.held_total.load(Ordering::Relaxed) + bytes <= budget {
                    break;
                }
                if self.evict(held)? {
                    evicted_any = true;
                }
            }
            if !evicted_any {
                offset += 256;
            }
        }
    }

    /// Drops one clean range unless its file is in use; true if dropped.
    fn evict(&self, held: Held) -> VfsResult<bool> {
        {
            let mut files = lock(&self.files);
            if let Some(open) = files.get_mut(&held.ino) {
                if open.busy > 0 || open.direct > 0 {
                    return Ok(false);
                }
                if open.body == held.body {
                    open.held.remove(&held.idx);
                }
            }
            // Punch while holding `files`, so no reader starts on this range meanwhile.
            match std::fs::OpenOptions::new()
                .write(true)
                .open(self.bodies.path(held.ino, held.body))
            {
                Ok(file) => punch_hole(&file, held.offset, held.len)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.mirror.write(|db| db.release(held))?;
        self.unhold(held.len);
        debug!(ino = held.ino, idx = held.idx, "evicted");
        Ok(true)
    }

    /// After clean bytes were added without a reservation (a commit made a dirty file
    /// clean): evict others until the budget holds again, as far as possible.
    pub(crate) fn trim_to_budget(&self) {
        if self.held_total.load(Ordering::Relaxed) <= self.config.cache_size {
            return;
        }
        if self.reserve(0).is_err() {
            debug!("cache over budget: the rest is pinned or in use");
        }
    }
}

/// Keeps an inode's ranges from eviction while alive.
pub(crate) struct BusyGuard<'v> {
    vfs: &'v Vfs,
    ino: u64,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if let Some(file) = lock(&self.vfs.files).get_mut(&self.ino) {
            file.busy = file.busy.saturating_sub(1);
        }
    }
}

/// Writes a fetched chunk into its range of a body, which is a hole (never written,
/// or punched out when evicted). A chunk of zeros stays a hole, so a sparse file
/// (a disk image, a preallocated database) does not fill the disk when it is read:
/// only its last byte is written, so that the body reaches the chunk's end.
fn write_chunk(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    let all_zeros = bytes.first() == Some(&0) && bytes.iter().all(|b| *b == 0);
    if all_zeros {
        file.write_all_at(&[0], offset + bytes.len() as u64 - 1)
    } else {
        file.write_all_at(bytes, offset)
    }
}
