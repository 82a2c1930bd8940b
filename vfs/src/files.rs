//! File contents: open, read, write, truncate, fsync, release. A clean file's body
//! holds the chunks fetched so far; opening for write makes the whole file local and
//! dirty, and the last close hands it to the sync engine.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use loft_cache::mirror::{Kind, Node};
use loft_remote::content::Manifest;
use loft_remote::proto;
use tracing::warn;

use crate::attr::{Attr, Nanos, now};
use crate::core::{FileHandle, Layout, Opened, Vfs, lock};
use crate::error::{VfsError, VfsResult};
use crate::fetch::Wait;

/// How a file is opened.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    pub write: bool,
    pub truncate: bool,
}

/// Nanoseconds since the epoch as a `SystemTime`.
pub fn system_time(nanos: Nanos) -> SystemTime {
    if nanos >= 0 {
        UNIX_EPOCH + std::time::Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH - std::time::Duration::from_nanos(nanos.unsigned_abs())
    }
}

/// A `SystemTime` as nanoseconds since the epoch (negative before it).
pub fn nanos_of(time: SystemTime) -> Nanos {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

impl Vfs {
    pub(crate) fn decode_manifest(bytes: &[u8]) -> VfsResult<Manifest> {
        let wire = <proto::Manifest as prost::Message>::decode(bytes)
            .map_err(|e| VfsError::Io(format!("stored manifest: {e}")))?;
        Manifest::try_from(wire).map_err(|e| VfsError::Io(format!("stored manifest: {e}")))
    }

    pub(crate) fn encode_manifest(manifest: &Manifest) -> Vec<u8> {
        prost::Message::encode_to_vec(&proto::Manifest::from(manifest))
    }

    /// The chunk layout of a clean file's current version, fetching its manifest
    /// from the server the first time.
    pub(crate) fn layout_of(&self, node: &Node) -> VfsResult<Option<Arc<Layout>>> {
        if node.dirty || node.version == 0 || node.size == 0 {
            return Ok(None);
        }
        if let Some(bytes) = &node.manifest {
            return Ok(Some(Layout::new(Self::decode_manifest(bytes)?)));
        }
        let remote = self
            .mirror
            .read(|db| db.remote_of(node.ino))?
            .ok_or_else(|| VfsError::Io("file has a version but no server id".into()))?;
        let client = self.client.clone();
        let version = node.version;
        let wire = self
            .rt
            .block_on(async move { client.get_manifest(remote, version).await })
            .map_err(|e| self.remote_failed(e))?;
        let manifest =
            Manifest::try_from(wire.clone()).map_err(|e| VfsError::Io(format!("manifest: {e}")))?;
        let encoded = prost::Message::encode_to_vec(&wire);
        let ino = node.ino;
        self.tx(|db| {
            if let Some(mut node) = db.node(ino)?
                && node.version == version
            {
                node.manifest = Some(encoded);
                db.update_node(&node)?;
            }
            Ok(())
        })?;
        Ok(Some(Layout::new(manifest)))
    }

    fn body_file(&self, node: &Node) -> VfsResult<Arc<File>> {
        let file = self.bodies.open_body(node.ino, node.body)?;
        if !node.dirty && file.metadata()?.len() != node.size {
            file.set_len(node.size)?;
        }
        Ok(Arc::new(file))
    }

    /// Opens a regular file.
    pub fn open(&self, ino: u64, mode: OpenMode) -> VfsResult<Opened> {
        let node = self.node(ino)?;
        match node.kind {
            Kind::Directory => return Err(VfsError::IsDir),
            Kind::File => {}
            _ => return Err(VfsError::Invalid("not a regular file")),
        }
        if mode.write {
            self.check_writable(ino)?;
        }
        self.open_node(node, mode, None)
    }

    /// Opens `node`, a regular file, on `body` if the caller has its body file open
    /// already (a file `create` has just made), else on its body file.
    pub(crate) fn open_node(
        &self,
        node: Node,
        mode: OpenMode,
        body: Option<File>,
    ) -> VfsResult<Opened> {
        let ino = node.ino;
        self.enter_file(ino, node.body, mode.write)?;
        self.open_entered(node, mode, body)
            .inspect_err(|_| _ = self.leave_file(ino, mode.write, false))
    }

    fn open_entered(
        &self,
        mut node: Node,
        mode: OpenMode,
        body: Option<File>,
    ) -> VfsResult<Opened> {
        let ino = node.ino;
        if mode.write {
            if !node.dirty {
                let keep = if mode.truncate { 0 } else { node.size };
                node = self.make_dirty(node, keep)?;
            }
            self.bump(ino);
        }
        let layout = self.layout_of(&node)?;
        let file = match body {
            Some(file) => Arc::new(file),
            None => self.body_file(&node)?,
        };
        if layout.is_some() {
            self.mirror.write(|db| db.touch(ino, now()))?;
        }
        let whole = match &layout {
            None => true,
            Some(layout) => self.all_held(ino, layout),
        };
        if whole && let Some(open) = lock(&self.files).get_mut(&ino) {
            open.direct += 1;
        }
        let bypass_page_cache = lock(&self.handles)
            .values()
            .any(|h| h.ino == ino && h.body != node.body);
        let fh = self.new_handle_id();
        let handle = Arc::new(FileHandle {
            ino,
            write: mode.write,
            file: file.clone(),
            layout: if whole { None } else { layout },
            body: node.body,
            passthrough: AtomicBool::new(false),
            next_offset: AtomicU64::new(0),
            prefetched_until: AtomicU64::new(0),
        });
        lock(&self.handles).insert(fh, handle);
        let attr = self.getattr(ino)?;
        Ok(Opened {
            fh,
            backing: whole.then_some(file),
            bypass_page_cache,
            attr,
        })
    }

    /// Makes a clean file dirty: its first `keep` bytes are fetched (the rest is
    /// cut), its clean ranges stop counting against the budget, and it waits for
    /// upload.
    pub(crate) fn make_dirty(&self, node: Node, keep: u64) -> VfsResult<Node> {
        let ino = node.ino;
        let keep = keep.min(node.size);
        if keep > 0
            && let Some(layout) = self.layout_of(&node)?
        {
            let file = self.body_file(&node)?;
            let wanted: Vec<usize> = layout
                .index
                .covering(&layout.manifest, 0, keep)
                .map(|(i, _, _)| i)
                .collect();
            self.enter_file(ino, node.body, false)?;
            let fetched = self.fetch_chunks(ino, node.body, &layout, &file, wanted, Wait::Yes);
            self.leave_file(ino, false, false);
            fetched?;
        }
        let file = self.bodies.open_body(ino, node.body)?;
        file.set_len(keep)?;
        let freed = self.tx(|db| {
            let freed = db.release_all(ino)?;
            let mut node = db.node(ino)?.ok_or(VfsError::NotFound)?;
            node.dirty = true;
            node.size = keep;
            node.local_bytes = keep;
            db.update_node(&node)?;
            Ok(freed)
        })?;
        self.unhold(freed);
        if let Some(open) = lock(&self.files).get_mut(&ino) {
            open.held.clear();
        }
        lock(&self.pending).entry(ino).or_default();
        self.node(ino)
    }

    /// A dirty file with no writers left is uploaded once it has been quiet for the
    /// debounce.
    pub(crate) fn upload_after_debounce(&self, ino: u64) {
        if let Some(pending) = lock(&self.pending).get_mut(&ino) {
            pending.ready_at = Some(Instant::now() + self.config.upload_debounce);
        }
        self.wake.notify_one();
    }

    /// Notes a change to a dirty file's bytes.
    pub(crate) fn bump(&self, ino: u64) {
        let mut pending = lock(&self.pending);
        let entry = pending.entry(ino).or_default();
        entry.generation += 1;
        entry.ready_at = None;
    }

    /// A dirty file's size and modification time, from its body. The body is read
    /// inside the transaction: a `setattr` that sets the time (on both, in its own
    /// transaction) may run at once on another thread, and must not be undone by a
    /// time read before it.
    pub(crate) fn persist_body_attrs(&self, ino: u64) -> VfsResult<()> {
        let Some(node) = self.mirror.read(|db| db.node(ino))? else {
            return Ok(());
        };
        if !node.dirty {
            return Ok(());
        }
        // Most closes follow a flush that stored the same: no transaction then.
        if let Ok(meta) = std::fs::metadata(self.bodies.path(ino, node.body))
            && meta.len() == node.size
            && meta.modified().map(nanos_of).ok() == Some(node.mtime)
        {
            return Ok(());
        }
        self.tx(|db| {
            let Some(mut node) = db.node(ino)? else {
                return Ok(());
            };
            if !node.dirty {
                return Ok(());
            }
            let meta = match std::fs::metadata(self.bodies.path(ino, node.body)) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    warn!(ino, "dirty file lost its body; keeping it empty");
                    self.bodies.create_body(ino, node.body, 0)?.metadata()?
                }
                Err(e) => return Err(e.into()),
            };
            let size = meta.len();
            let mtime = meta.modified().map(nanos_of).unwrap_or(node.mtime);
            if size != node.size || mtime != node.mtime {
                node.size = size;
                node.local_bytes = size;
                node.ctime = node.ctime.max(mtime);
                node.mtime = mtime;
                db.update_node(&node)?;
            }
            Ok(())
        })
    }

    pub fn read(self: &Arc<Self>, fh: u64, offset: u64, size: u32) -> VfsResult<Vec<u8>> {
        let handle = self.handle(fh)?;
        let _busy = self.busy(handle.ino);
        if let Some(layout) = &handle.layout {
            let end = offset
                .saturating_add(u64::from(size))
                .min(layout.manifest.size);
            if offset >= end {
                return Ok(Vec::new());
            }
            let wanted: Vec<usize> = layout
                .index
                .covering(&layout.manifest, offset, end - offset)
                .map(|(i, _, _)| i)
                .collect();
            if self.is_stale(&handle) {
                return self.read_stale(layout, offset, end);
            }
            let sequential = handle.next_offset.swap(end, Ordering::Relaxed) == offset;
            if sequential {
                self.read_ahead(&handle, layout, end);
            }
            let fetched = self.fetch_chunks(
                handle.ino,
                handle.body,
                layout,
                &handle.file,
                wanted,
                Wait::Yes,
            );
            if fetched.is_err() && self.is_stale(&handle) {
                // A new version arrived meanwhile: this handle keeps its own.
                return self.read_stale(layout, offset, end);
            }
            fetched?;
            return read_at(&handle.file, offset, (end - offset) as usize);
        }
        read_at(&handle.file, offset, size as usize)
    }

    /// True when the file's content was replaced remotely after `handle` was opened.
    fn is_stale(&self, handle: &FileHandle) -> bool {
        lock(&self.files)
            .get(&handle.ino)
            .is_some_and(|open| open.body != handle.body)
    }

    /// Reads `offset..end` of the version a handle opened before it was replaced
    /// remotely: its chunks come straight from the server, not into the cache.
    fn read_stale(&self, layout: &Layout, offset: u64, end: u64) -> VfsResult<Vec<u8>> {
        let covering: Vec<usize> = layout
            .index
            .covering(&layout.manifest, offset, end - offset)
            .map(|(i, _, _)| i)
            .collect();
        let Some(&first) = covering.first() else {
            return Ok(Vec::new());
        };
        let start = layout.index.start_of(first).unwrap_or(0);
        let refs: Vec<_> = covering
            .iter()
            .map(|i| layout.manifest.chunks[*i])
            .collect();
        let client = self.client.clone();
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let joined = self.rt.block_on(async move {
            let mut stream = loft_remote::transfer::fetch_chunks(client, refs, counter);
            let mut joined = Vec::new();
            while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                joined.extend_from_slice(&chunk?);
            }
            Ok::<_, loft_remote::client::RemoteError>(joined)
        });
        self.counters
            .bytes_downloaded
            .fetch_add(received.load(Ordering::Relaxed), Ordering::Relaxed);
        let joined = joined.map_err(|e| self.remote_failed(e))?;
        let from = (offset - start) as usize;
        let to = ((end - start) as usize).min(joined.len());
        Ok(joined.get(from..to).unwrap_or_default().to_vec())
    }

    /// Starts fetching the chunks after a sequential read in the background.
    fn read_ahead(self: &Arc<Self>, handle: &Arc<FileHandle>, layout: &Arc<Layout>, end: u64) {
        let window = self.config.read_ahead;
        let until = handle.prefetched_until.load(Ordering::Relaxed);
        if end + window / 2 <= until || end >= layout.manifest.size {
            return;
        }
        let from = until.max(end);
        let to = (end + window).min(layout.manifest.size);
        handle.prefetched_until.store(to, Ordering::Relaxed);
        let wanted: Vec<usize> = layout
            .index
            .covering(&layout.manifest, from, to - from)
            .map(|(i, _, _)| i)
            .collect();
        let vfs = self.clone();
        let handle = handle.clone();
        let layout = layout.clone();
        self.rt.spawn_blocking(move || {
            let _busy = vfs.busy(handle.ino);
            let _ = vfs.fetch_chunks(
                handle.ino,
                handle.body,
                &layout,
                &handle.file,
                wanted,
                Wait::No,
            );
        });
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> VfsResult<u32> {
        let handle = self.handle(fh)?;
        if !handle.write {
            return Err(VfsError::BadHandle);
        }
        self.check_disk_reserve()?;
        if !data.is_empty() {
            self.check_quota_room(handle.ino)?;
        }
        handle.file.write_all_at(data, offset)?;
        self.bump(handle.ino);
        Ok(data.len() as u32)
    }

    /// `fallocate` of a file open for writing, whose bytes are all in its body: mode 0
    /// (reserve, growing the file), `FALLOC_FL_KEEP_SIZE` (reserve past the end),
    /// `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE` (deallocate: the range reads as
    /// zeros) and `FALLOC_FL_ZERO_RANGE` (with or without `KEEP_SIZE`). The body file
    /// does it; the new content goes up as the file's next version. Other modes
    /// (collapse, insert, unshare) are not supported.
    pub fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> VfsResult<()> {
        let handle = self.handle(fh)?;
        let supported =
            libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
        if mode & !supported != 0 {
            return Err(VfsError::NotSupported);
        }
        if !handle.write {
            return Err(VfsError::BadHandle);
        }
        let punch = mode & libc::FALLOC_FL_PUNCH_HOLE != 0;
        let end = offset.saturating_add(len);
        // The body's length, when the call may allocate (all but a punch).
        let mut current = 0;
        if !punch {
            // What may be allocated: up to the end of the range.
            self.check_disk_reserve()?;
            current = handle.file.metadata()?.len();
            let available = self.bodies.available_space()?;
            if end.saturating_sub(current) > available.saturating_sub(self.config.disk_reserve) {
                return Err(VfsError::NoSpace(format!(
                    "cannot reserve {} bytes: {available} available",
                    end - current
                )));
            }
        }
        if mode == 0 {
            // Growing the body is all a reservation needs here: its blocks are
            // allocated as they are written, against the disk reserve checked above.
            if current < end {
                handle.file.set_len(end)?;
                self.bump(handle.ino);
            }
            return Ok(());
        }
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(VfsError::Invalid("fallocate range out of bounds"));
        };
        // SAFETY: the descriptor is the handle's open body file; fallocate reads no
        // memory of ours.
        let done = unsafe { libc::fallocate(handle.file.as_raw_fd(), mode, offset, len) };
        if done != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if mode != libc::FALLOC_FL_KEEP_SIZE {
            self.bump(handle.ino);
        }
        Ok(())
    }

    pub(crate) fn check_disk_reserve(&self) -> VfsResult<()> {
        let available = self.bodies.available_space()?;
        if available < self.config.disk_reserve {
            let error = loft_cache::CacheError::DiskFull {
                available,
                reserve: self.config.disk_reserve,
            };
            warn!("write refused: {error}");
            return Err(error.into());
        }
        Ok(())
    }

    /// `fsync`: the file's bytes and the mirror reach the disk. EDQUOT (after that)
    /// when the server refused the file's last commit for quota.
    pub fn fsync(&self, fh: u64) -> VfsResult<()> {
        let handle = self.handle(fh)?;
        if handle.write {
            handle.file.sync_all()?;
            self.persist_body_attrs(handle.ino)?;
        }
        self.mirror.sync_wal()?;
        self.check_commit_refused(handle.ino)
    }

    /// `lseek` with `SEEK_DATA` (`data`) or `SEEK_HOLE`: where the next data or hole at
    /// or after `offset` starts. A handle whose body holds every byte asks the body,
    /// so holes written as holes show; otherwise the file is all data (what is not
    /// local is not known to be a hole), as the kernel answers for a file system that
    /// cannot tell. ENXIO at or past the end.
    pub fn seek_data_or_hole(&self, fh: u64, offset: u64, data: bool) -> VfsResult<u64> {
        let handle = self.handle(fh)?;
        if handle.layout.is_none() {
            let whence = if data {
                libc::SEEK_DATA
            } else {
                libc::SEEK_HOLE
            };
            let offset = i64::try_from(offset).map_err(|_| VfsError::PastEnd)?;
            // SAFETY: lseek on a descriptor the handle owns; no memory is involved.
            let at = unsafe { libc::lseek(handle.file.as_raw_fd(), offset, whence) };
            if at < 0 {
                let error = std::io::Error::last_os_error();
                return Err(match error.raw_os_error() {
                    Some(libc::ENXIO) => VfsError::PastEnd,
                    _ => error.into(),
                });
            }
            return Ok(at as u64);
        }
        let size = self.node(handle.ino)?.size;
        if offset >= size {
            return Err(VfsError::PastEnd);
        }
        Ok(if data { offset } else { size })
    }

    /// `close` of a handle (every `close(2)` of a descriptor): EDQUOT when the server
    /// refused the file's last commit for quota; the bytes stay local either way.
    pub fn flush(&self, fh: u64) -> VfsResult<()> {
        let handle = self.handle(fh)?;
        if handle.write {
            self.persist_body_attrs(handle.ino)?;
            self.check_commit_refused(handle.ino)?;
        }
        Ok(())
    }

    pub fn release(&self, fh: u64) -> VfsResult<()> {
        let Some(handle) = lock(&self.handles).remove(&fh) else {
            return Err(VfsError::BadHandle);
        };
        let ino = handle.ino;
        if handle.write {
            self.persist_body_attrs(ino)?;
        }
        let last = self.leave_file(ino, handle.write, handle.layout.is_none());
        if last
            && let Some(node) = self.mirror.read(|db| db.node(ino))?
            && node.nlink == 0
            && !self.keep_if_written_after_removal(&node)?
        {
            if node.dirty && !lock(&self.removed_here).contains(&ino) {
                // Written after another device's removal reached the mirror and
                // before the feed finished applying it: the feed keeps it
                // (`after_changes`).
                return Ok(());
            }
            return self.forget_node(&node);
        }
        if handle.write && self.writers(ino) == 0 {
            self.upload_after_debounce(ino);
        }
        Ok(())
    }

    /// Truncates or extends a file to `size`.
    pub(crate) fn set_size(&self, ino: u64, size: u64) -> VfsResult<()> {
        let mut node = self.node(ino)?;
        match node.kind {
            Kind::Directory => return Err(VfsError::IsDir),
            Kind::File => {}
            _ => return Err(VfsError::Invalid("not a regular file")),
        }
        if !node.dirty {
            node = self.make_dirty(node, size)?;
        }
        if size > node.size {
            self.check_disk_reserve()?;
        }
        let file = self.bodies.open_body(ino, node.body)?;
        file.set_len(size)?;
        let stamp = now();
        file.set_modified(system_time(stamp))?;
        self.tx(|db| {
            if let Some(mut node) = db.node(ino)? {
                node.size = size;
                node.local_bytes = size;
                node.mtime = stamp;
                node.ctime = stamp;
                db.update_node(&node)?;
            }
            Ok(())
        })?;
        self.bump(ino);
        if self.writers(ino) == 0 {
            self.upload_after_debounce(ino);
        }
        Ok(())
    }

    /// Attributes, with a dirty file's size and time taken from its body while it is
    /// being written.
    pub fn getattr(&self, ino: u64) -> VfsResult<Attr> {
        let node = self.node(ino)?;
        let mut attr = self.attr_of(&node);
        if node.dirty
            && self.writers(ino) > 0
            && let Ok(meta) = std::fs::metadata(self.bodies.path(ino, node.body))
        {
            attr.size = meta.len();
            attr.blocks = meta.len().div_ceil(512).max(u64::from(meta.len() > 0));
            if let Ok(modified) = meta.modified() {
                attr.mtime = nanos_of(modified);
                attr.ctime = attr.ctime.max(attr.mtime);
            }
        }
        Ok(attr)
    }
}

fn read_at(file: &File, offset: u64, len: usize) -> VfsResult<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(done);
    Ok(buf)
}
