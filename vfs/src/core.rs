//! The core's shared state: the mirror, body files, open files and handles,
//! counters, and the channel to the kernel adapter.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use loft_cache::bodies::Bodies;
use loft_cache::mirror::{Db, Mirror, Node};
use loft_remote::RemoteClient;
use loft_remote::content::{ChunkIndex, Manifest};
use tokio::runtime::Handle;

use crate::attr::{Attr, now};
use crate::config::VfsConfig;
use crate::error::{VfsError, VfsResult};

/// A file version's chunk layout, shared by the handles reading it.
pub(crate) struct Layout {
    pub manifest: Manifest,
    pub index: ChunkIndex,
}

impl Layout {
    pub fn new(manifest: Manifest) -> Arc<Layout> {
        let index = ChunkIndex::new(&manifest);
        Arc::new(Layout { manifest, index })
    }
}

/// Per-inode state while any handle (or an internal user such as pin) has it open.
pub(crate) struct OpenFile {
    pub users: u32,
    pub writers: u32,
    /// Handles that read the body without checking which chunks are held (it was
    /// whole when they opened): the body must not be punched under them.
    pub direct: u32,
    /// Reads in progress: their chunk ranges must not be evicted under them.
    pub busy: u32,
    /// Body generation the clean-chunk sets below describe.
    pub body: u64,
    pub held: HashSet<u64>,
    pub fetching: HashSet<u64>,
}

/// One open file handle.
pub(crate) struct FileHandle {
    pub ino: u64,
    pub write: bool,
    pub file: Arc<File>,
    /// Chunk layout when some bytes may not be local; `None` when the body is whole.
    pub layout: Option<Arc<Layout>>,
    pub body: u64,
    pub passthrough: AtomicBool,
    /// End of the previous read, to spot sequential access.
    pub next_offset: AtomicU64,
    /// Read-ahead has been started up to here.
    pub prefetched_until: AtomicU64,
}

/// A directory handle: the entries as they were at opendir.
pub(crate) struct DirHandle {
    /// The directory. While a handle holds it, a removed directory keeps its node (so
    /// `fstat` on the descriptor still works); the last `releasedir` forgets it.
    pub ino: u64,
    pub entries: Vec<(Vec<u8>, u64)>,
}

/// Content changes of a dirty file not yet uploaded.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pending {
    /// Bumped by every change to the bytes.
    pub generation: u64,
    /// Not uploaded before this instant (the debounce after the last close).
    pub ready_at: Option<Instant>,
}

/// Something the kernel must forget, sent by the core and applied by the adapter on
/// its own thread (never from inside a handler).
#[derive(Clone, Debug)]
pub enum KernelNote {
    /// Cached attributes and pages of an inode.
    Inode(u64),
    /// A cached name in a directory.
    Entry { parent: u64, name: Vec<u8> },
    /// A name removed by another device: the kernel drops it and the inode's link.
    Delete {
        parent: u64,
        child: u64,
        name: Vec<u8>,
    },
}

/// What `open` hands to the adapter.
pub struct Opened {
    pub fh: u64,
    /// The whole file's bytes are local in this file: the adapter may let the kernel
    /// read and write it directly (FUSE passthrough).
    pub backing: Option<Arc<File>>,
    /// Handles opened before a remote change still read the older version: this one
    /// must bypass the kernel's page cache, which theirs fill.
    pub bypass_page_cache: bool,
    pub attr: Attr,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub bytes_downloaded: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub online: AtomicBool,
    pub cache_full: Mutex<Option<String>>,
    pub passthrough: AtomicBool,
    pub rejected: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// The change feed's position: the last journal seq applied.
    pub cursor: AtomicU64,
    /// `cursor` moved past changes of this device only and is not saved yet.
    pub cursor_unsaved: AtomicBool,
    /// When the cursor was last saved (ns since the epoch).
    pub cursor_saved_at: AtomicI64,
    /// When the feed last applied changes or caught up (ns since the epoch; 0: never).
    pub last_sync: AtomicI64,
}

/// The file system core. Cheap to share: adapters hold an `Arc<Vfs>`.
pub struct Vfs {
    pub(crate) mirror: Mirror,
    pub(crate) bodies: Bodies,
    pub(crate) client: Arc<dyn RemoteClient>,
    pub(crate) rt: Handle,
    pub(crate) config: VfsConfig,
    pub(crate) files: Mutex<HashMap<u64, OpenFile>>,
    /// Signalled when a chunk fetch ends (waiters hold `files`).
    pub(crate) fetched: Condvar,
    pub(crate) handles: Mutex<HashMap<u64, Arc<FileHandle>>>,
    pub(crate) dirs: Mutex<HashMap<u64, Arc<DirHandle>>>,
    pub(crate) next_handle: AtomicU64,
    pub(crate) budget_lock: Mutex<()>,
    /// Clean bytes held plus bytes reserved by fetches in flight.
    pub(crate) held_total: AtomicU64,
    pub(crate) pending: Mutex<HashMap<u64, Pending>>,
    /// Bodies of versions replaced remotely while handles still read them; removed
    /// when the file's last user leaves.
    pub(crate) stale_bodies: Mutex<HashMap<u64, Vec<u64>>>,
    /// Nodes whose creation the server refused because their folder was not
    /// found there (`sync::stranded`).
    pub(crate) stranded: Mutex<BTreeSet<u64>>,
    /// Nodes this device removed (their removal queued): the feed does not bring
    /// them back from their own creation's journal entry (`feed::own_still_holds`).
    pub(crate) removed_here: Mutex<BTreeSet<u64>>,
    /// Nodes whose creation was queued again because an operation named them
    /// unmapped (`sync::ops`); once each per run.
    pub(crate) made_again: Mutex<HashSet<u64>>,
    /// Files another device removed while a handle here had them open, with the
    /// name they had (`removed_while_open`).
    pub(crate) removed_while_open: Mutex<HashMap<u64, (u64, Vec<u8>)>>,
    /// Set when this device's view may have drifted from the server's (it was
    /// offline, the server refused or forked a change, or did not find a node this
    /// device shows): once the journal is
    /// drained, the listed folders are listed again (`sync::run_sync`).
    pub(crate) reconcile: AtomicBool,
    pub(crate) counters: Counters,
    pub(crate) wake: tokio::sync::Notify,
    pub(crate) listing_lock: Mutex<()>,
    pub(crate) ignore_rules: crate::ignore::IgnoreRules,
    pub(crate) kernel: OnceLock<Box<dyn Fn(KernelNote) + Send + Sync>>,
    /// The shared items in the drive and the user's roles there (see `shares`).
    pub(crate) shared: Mutex<crate::shares::SharedRoots>,
    /// The user's quota as last heard, and files refused for it.
    pub(crate) quota: crate::quota::QuotaView,
    /// Renames the server carried out whose own change has not come back through
    /// the feed yet (`renamed_here`).
    pub(crate) renamed_here: crate::renamed_here::RenamedHere,
    /// This core itself, for work it hands to background tasks.
    pub(crate) me: Weak<Vfs>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Vfs {
    /// Opens the mirror and body files under `config.cache_dir`. Nothing is asked of
    /// the server here: a mount comes up offline from its mirror.
    pub fn new(
        config: VfsConfig,
        client: Arc<dyn RemoteClient>,
        rt: Handle,
    ) -> VfsResult<Arc<Vfs>> {
        std::fs::create_dir_all(&config.cache_dir)?;
        let mirror = Mirror::open(&config.cache_dir.join("mirror.db"), now())?;
        let bodies = Bodies::open(&config.cache_dir.join("bodies"))?;
        let held = mirror.read(|db| db.held_bytes())?;
        let vfs = Arc::new_cyclic(|me| Vfs {
            mirror,
            bodies,
            client,
            rt,
            config,
            files: Mutex::new(HashMap::new()),
            fetched: Condvar::new(),
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            budget_lock: Mutex::new(()),
            held_total: AtomicU64::new(held),
            pending: Mutex::new(HashMap::new()),
            stale_bodies: Mutex::new(HashMap::new()),
            stranded: Mutex::new(BTreeSet::new()),
            removed_here: Mutex::new(BTreeSet::new()),
            made_again: Mutex::new(HashSet::new()),
            removed_while_open: Mutex::new(HashMap::new()),
            reconcile: AtomicBool::new(false),
            counters: Counters::default(),
            wake: tokio::sync::Notify::new(),
            listing_lock: Mutex::new(()),
            ignore_rules: Default::default(),
            kernel: OnceLock::new(),
            shared: Mutex::new(Default::default()),
            quota: Default::default(),
            renamed_here: Default::default(),
            me: me.clone(),
        });
        vfs.recover()?;
        vfs.load_shares();
        Ok(vfs)
    }

    /// After a crash: forget orphans (unlinked files whose last user is gone), take
    /// dirty files' size and time from their bodies, drop unknown body files.
    fn recover(&self) -> VfsResult<()> {
        let dirty = self.tx(|db| {
            let dirty = db.dirty_files()?;
            Ok(dirty)
        })?;
        for ino in &dirty {
            self.persist_body_attrs(*ino)?;
            lock(&self.pending).insert(*ino, Pending::default());
        }
        let orphans: Vec<Node> = self.mirror.read(|db| db.orphans())?;
        for node in orphans {
            self.forget_node(&node)?;
        }
        let known: HashSet<(u64, u64)> = self.mirror.read(|db| db.bodies_in_use())?;
        for (ino, body) in self.bodies.list()? {
            if !known.contains(&(ino, body)) {
                self.bodies.remove(ino, body)?;
            }
        }
        Ok(())
    }

    /// Sets how the core tells the kernel to drop cached names and attributes.
    pub fn set_kernel_notes(&self, notes: Box<dyn Fn(KernelNote) + Send + Sync>) {
        let _ = self.kernel.set(notes);
    }

    pub(crate) fn tell_kernel(&self, note: KernelNote) {
        if let Some(notes) = self.kernel.get() {
            notes(note);
        }
    }

    pub fn config(&self) -> &VfsConfig {
        &self.config
    }

    /// Records that the kernel serves handle `fh` by passthrough.
    pub fn mark_passthrough(&self, fh: u64) {
        let Some(handle) = lock(&self.handles).get(&fh).cloned() else {
            return;
        };
        handle.passthrough.store(true, Ordering::SeqCst);
        self.counters.passthrough.store(true, Ordering::Relaxed);
    }

    /// A write transaction on the mirror.
    pub(crate) fn tx<T>(&self, f: impl FnOnce(&Db<'_>) -> VfsResult<T>) -> VfsResult<T> {
        self.mirror.write(f)
    }

    /// A read of the mirror.
    pub(crate) fn rx<T>(&self, f: impl FnOnce(&Db<'_>) -> VfsResult<T>) -> VfsResult<T> {
        self.mirror.read(f)
    }

    pub(crate) fn node(&self, ino: u64) -> VfsResult<Node> {
        self.mirror
            .read(|db| db.node(ino))?
            .ok_or(VfsError::NotFound)
    }

    pub(crate) fn handle(&self, fh: u64) -> VfsResult<Arc<FileHandle>> {
        lock(&self.handles)
            .get(&fh)
            .cloned()
            .ok_or(VfsError::BadHandle)
    }

    pub(crate) fn new_handle_id(&self) -> u64 {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    /// Drops a node that no entry names and nothing holds open: its row, ledger rows
    /// and body files.
    pub(crate) fn forget_node(&self, node: &Node) -> VfsResult<()> {
        let freed = self.tx(|db| {
            let freed = db.release_all(node.ino)?;
            db.delete_node(node.ino)?;
            Ok(freed)
        })?;
        self.unhold(freed);
        lock(&self.pending).remove(&node.ino);
        // One body generation per node; stray ones are swept at the next start.
        self.bodies.remove(node.ino, node.body)?;
        Ok(())
    }

    /// True while a file handle, an internal user or a directory handle holds `ino`.
    /// Takes `bytes` of clean data off the budget's count.
    pub(crate) fn unhold(&self, bytes: u64) {
        let _ = self
            .held_total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_sub(bytes))
            });
    }

    pub(crate) fn is_open(&self, ino: u64) -> bool {
        lock(&self.files).contains_key(&ino) || lock(&self.dirs).values().any(|d| d.ino == ino)
    }

    pub(crate) fn attr_of(&self, node: &Node) -> Attr {
        Attr::of(node, self.config.owner)
    }
}
