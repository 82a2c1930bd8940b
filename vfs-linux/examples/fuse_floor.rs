//! The FUSE floor: a file system that keeps names and attributes in memory and each
//! regular file's bytes in a local file of its own, mounted with Loft's options
//! (`default_permissions`, the same number of threads, init capabilities, attribute and
//! entry timeouts, cached negative lookups, no `FLUSH` for created handles) and, where
//! the kernel allows, passthrough to that local file, so reads and writes never reach
//! this process, as a local file's never reach Loft's. What a workload costs here is
//! what the kernel's FUSE path and the local files cost before a file system does any
//! work of its own; `bench/run` measures it beside Loft.
//!
//! `cargo run --release -p loft-vfs-linux --example fuse_floor -- MOUNTPOINT [SCRATCH]`
//! serves until the mount is taken down (`fusermount3 -u MOUNTPOINT`). SCRATCH, a
//! directory that must not exist yet, holds the local files (default: `.fuse-floor-PID`
//! beside MOUNTPOINT, on the same disk); it is deleted when the mount goes.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, FileTimes, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BackingId, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};

const TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = 1;

/// What an inode is beyond its attributes.
enum Body {
    Directory {
        parent: u64,
        entries: HashMap<OsString, u64>,
    },
    Symlink(PathBuf),
    /// Bytes in the local file named by the inode number.
    File,
    /// A fifo, socket or device node: attributes only.
    Special,
}

struct Inode {
    attr: FileAttr,
    body: Body,
}

/// A regular file's local file while FUSE handles of it are open, shared by them: the
/// kernel wants one backing id per inode for as long as any handle is open.
struct OpenFile {
    file: Arc<File>,
    backing: Option<BackingId>,
    handles: u32,
}

#[derive(Default)]
struct Tree {
    inodes: HashMap<u64, Inode>,
    /// Open regular files by inode; a handle's number is its inode's.
    open: HashMap<u64, OpenFile>,
    /// Each open directory handle's entries, listed at `opendir` so that offsets stay
    /// stable while the directory changes.
    listings: HashMap<u64, Vec<(OsString, u64)>>,
    next_ino: u64,
    next_listing: u64,
}

struct FloorFs {
    tree: Mutex<Tree>,
    /// Where the local files are.
    scratch: PathBuf,
    /// Whether handles are passthrough; cleared when the kernel refuses.
    passthrough: AtomicBool,
}

fn attr(ino: u64, kind: FileType, perm: u16, uid: u32, gid: u32) -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid,
        gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// A negative entry: node id 0 tells the kernel "no such name" for the timeout, as
/// Loft answers.
fn missing_entry() -> FileAttr {
    FileAttr {
        nlink: 0,
        ..attr(0, FileType::RegularFile, 0, 0, 0)
    }
}

fn system_time(secs: i64, nanos: i64) -> SystemTime {
    let nanos = Duration::from_nanos(nanos as u64);
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos
    }
}

/// Takes a regular file's size, blocks and times from its local file.
fn take_local(attr: &mut FileAttr, local: &File) {
    if let Ok(local) = local.metadata() {
        attr.size = local.size();
        attr.blocks = local.blocks();
        attr.atime = system_time(local.atime(), local.atime_nsec());
        attr.mtime = system_time(local.mtime(), local.mtime_nsec());
        attr.ctime = attr
            .ctime
            .max(system_time(local.ctime(), local.ctime_nsec()));
    }
}

/// An inode's attributes as the tree knows them, with its local file while open.
type Known = (FileAttr, Option<Arc<File>>);

/// The attributes as they are now. While a regular file has open handles, passthrough
/// writes change its size and times without this process hearing of it, so they are
/// read from the open local file; when the last handle closes, they are stored.
fn current((mut attr, open): Known) -> FileAttr {
    if let Some(local) = open {
        take_local(&mut attr, &local);
    }
    attr
}

fn time_of(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Tree {
    fn entries(&self, dir: u64) -> Result<&HashMap<OsString, u64>, Errno> {
        match self.inodes.get(&dir).map(|inode| &inode.body) {
            Some(Body::Directory { entries, .. }) => Ok(entries),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn known(&self, ino: u64) -> Option<Known> {
        let attr = self.inodes.get(&ino)?.attr;
        Some((attr, self.open.get(&ino).map(|open| open.file.clone())))
    }

    fn is_dir(&self, ino: u64) -> bool {
        self.inodes
            .get(&ino)
            .is_some_and(|inode| inode.attr.kind == FileType::Directory)
    }

    fn parent_of(&self, dir: u64) -> Option<u64> {
        match self.inodes.get(&dir).map(|inode| &inode.body) {
            Some(Body::Directory { parent, .. }) => Some(*parent),
            _ => None,
        }
    }

    /// Changes a directory's entries, its times and, for a subdirectory's `..`, its
    /// link count.
    fn change_entries(
        &mut self,
        dir: u64,
        links: i32,
        change: impl FnOnce(&mut HashMap<OsString, u64>),
    ) {
        let Some(inode) = self.inodes.get_mut(&dir) else {
            return;
        };
        if let Body::Directory { entries, .. } = &mut inode.body {
            change(entries);
        }
        let now = SystemTime::now();
        inode.attr.mtime = now;
        inode.attr.ctime = now;
        inode.attr.nlink = inode.attr.nlink.saturating_add_signed(links);
    }

    fn add_entry(&mut self, dir: u64, name: &OsStr, ino: u64) {
        let links = i32::from(self.is_dir(ino));
        self.change_entries(dir, links, |entries| {
            entries.insert(name.to_owned(), ino);
        });
    }

    fn remove_entry(&mut self, dir: u64, name: &OsStr, ino: u64) {
        let links = -i32::from(self.is_dir(ino));
        self.change_entries(dir, links, |entries| {
            entries.remove(name);
        });
    }

    /// Takes one name away from `ino`; true when its local file is to be deleted.
    fn drop_link(&mut self, ino: u64) -> bool {
        let Some(inode) = self.inodes.get_mut(&ino) else {
            return false;
        };
        if inode.attr.kind == FileType::Directory {
            self.inodes.remove(&ino);
            return false;
        }
        inode.attr.nlink = inode.attr.nlink.saturating_sub(1);
        inode.attr.ctime = SystemTime::now();
        self.reap(ino)
    }

    /// Forgets an inode with no name left and no open handle; true when it had a
    /// local file, to be deleted.
    fn reap(&mut self, ino: u64) -> bool {
        let linked = self
            .inodes
            .get(&ino)
            .is_none_or(|inode| inode.attr.nlink > 0);
        if linked || self.open.contains_key(&ino) {
            return false;
        }
        let removed = self.inodes.remove(&ino);
        matches!(removed.map(|inode| inode.body), Some(Body::File))
    }
}

impl FloorFs {
    /// A file system with an empty root owned by whoever owns `scratch`: this process.
    fn new(scratch: PathBuf) -> std::io::Result<FloorFs> {
        let mut tree = Tree {
            next_ino: ROOT + 1,
            next_listing: 1,
            ..Tree::default()
        };
        let owner = std::fs::metadata(&scratch)?;
        let root = Inode {
            attr: attr(ROOT, FileType::Directory, 0o755, owner.uid(), owner.gid()),
            body: Body::Directory {
                parent: ROOT,
                entries: HashMap::new(),
            },
        };
        tree.inodes.insert(ROOT, root);
        Ok(FloorFs {
            tree: Mutex::new(tree),
            scratch,
            passthrough: AtomicBool::new(false),
        })
    }

    fn local_path(&self, ino: u64) -> PathBuf {
        self.scratch.join(ino.to_string())
    }

    fn delete_local(&self, ino: u64) {
        let _ = std::fs::remove_file(self.local_path(ino));
    }

    fn attr_of(&self, ino: u64) -> Option<FileAttr> {
        let known = self.tree.lock().unwrap().known(ino)?;
        Some(current(known))
    }

    /// Makes a name for a new inode; a regular file gets its local file, returned open.
    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: FileType,
        mode: u32,
        body: Body,
    ) -> Result<(FileAttr, Option<File>), Errno> {
        let ino = {
            let mut tree = self.tree.lock().unwrap();
            if tree.entries(parent.0)?.contains_key(name) {
                return Err(Errno::EEXIST);
            }
            let ino = tree.next_ino;
            tree.next_ino += 1;
            ino
        };
        // The local file is made outside the tree's lock, so other requests do not
        // wait behind an ext4 create; the name is checked again after.
        let local = match body {
            Body::File => Some(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(self.local_path(ino))?,
            ),
            _ => None,
        };
        let mut tree = self.tree.lock().unwrap();
        let taken = tree.entries(parent.0).map(|e| e.contains_key(name));
        if taken != Ok(false) {
            drop(tree);
            if local.is_some() {
                self.delete_local(ino);
            }
            return Err(taken.err().unwrap_or(Errno::EEXIST));
        }
        let mut made = attr(ino, kind, (mode & 0o7777) as u16, req.uid(), req.gid());
        if let Body::Symlink(target) = &body {
            made.size = target.as_os_str().len() as u64;
        }
        tree.inodes.insert(ino, Inode { attr: made, body });
        tree.add_entry(parent.0, name, ino);
        Ok((made, local))
    }

    fn remove(&self, parent: INodeNo, name: &OsStr, directory: bool) -> Result<(), Errno> {
        let mut tree = self.tree.lock().unwrap();
        let ino = *tree.entries(parent.0)?.get(name).ok_or(Errno::ENOENT)?;
        match (directory, tree.entries(ino)) {
            (true, Ok(entries)) if !entries.is_empty() => return Err(Errno::ENOTEMPTY),
            (true, Err(_)) => return Err(Errno::ENOTDIR),
            (false, Ok(_)) => return Err(Errno::EISDIR),
            _ => {}
        }
        tree.remove_entry(parent.0, name, ino);
        let delete = tree.drop_link(ino);
        drop(tree);
        if delete {
            self.delete_local(ino);
        }
        Ok(())
    }

    /// Registers a handle of `ino`'s local file. The first handle opens it (or takes
    /// `local`, just created) and, with passthrough, registers it as the backing file.
    fn open_local(
        &self,
        tree: &mut Tree,
        ino: u64,
        local: Option<File>,
        open_backing: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> Result<(), Errno> {
        if let Some(open) = tree.open.get_mut(&ino) {
            open.handles += 1;
            return Ok(());
        }
        let file = match local {
            Some(file) => file,
            None => OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.local_path(ino))?,
        };
        let mut backing = None;
        if self.passthrough.load(Ordering::Relaxed) {
            match open_backing(&file) {
                Ok(id) => backing = Some(id),
                Err(error) => {
                    eprintln!("fuse_floor: passthrough unavailable ({error}); serving I/O here");
                    self.passthrough.store(false, Ordering::Relaxed);
                }
            }
        }
        let open = OpenFile {
            file: Arc::new(file),
            backing,
            handles: 1,
        };
        tree.open.insert(ino, open);
        Ok(())
    }

    /// Calls `add` with each entry of the listing `fh` from position `offset` on (its
    /// name, inode, what is known of it and the position after it) until `add` returns
    /// true: the reply is full. An entry removed since `opendir` is left out.
    fn list(
        &self,
        fh: FileHandle,
        offset: u64,
        mut add: impl FnMut(&OsStr, u64, Known, u64) -> bool,
    ) -> Result<(), Errno> {
        let tree = self.tree.lock().unwrap();
        let listing = tree.listings.get(&fh.0).ok_or(Errno::EBADF)?;
        for (index, (name, ino)) in listing.iter().enumerate().skip(offset as usize) {
            let Some(known) = tree.known(*ino) else {
                continue;
            };
            if add(name, *ino, known, index as u64 + 1) {
                break;
            }
        }
        Ok(())
    }

    fn open_file(&self, ino: u64) -> Result<Arc<File>, Errno> {
        let tree = self.tree.lock().unwrap();
        let open = tree.open.get(&ino).ok_or(Errno::EBADF)?;
        Ok(open.file.clone())
    }
}

impl Filesystem for FloorFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.add_capabilities(
            InitFlags::FUSE_DO_READDIRPLUS
                | InitFlags::FUSE_READDIRPLUS_AUTO
                | InitFlags::FUSE_PARALLEL_DIROPS
                // As Loft: no `security.capability` lookup before every write. (Loft
                // drops set-id bits itself; this floor, a measure only, does not.)
                | InitFlags::FUSE_HANDLE_KILLPRIV_V2
                // As Loft: the kernel enforces and caches POSIX ACLs (this floor has
                // none) and leaves the umask to the file system.
                | InitFlags::FUSE_POSIX_ACL
                | InitFlags::FUSE_DONT_MASK,
        );
        let passthrough = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok();
        self.passthrough.store(passthrough, Ordering::Relaxed);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = {
            let tree = self.tree.lock().unwrap();
            match tree.entries(parent.0) {
                Ok(entries) => Ok(entries.get(name).and_then(|ino| tree.known(*ino))),
                Err(error) => Err(error),
            }
        };
        match found {
            Ok(Some(known)) => reply.entry(&TTL, &current(known), Generation(0)),
            Ok(None) => reply.entry(&TTL, &missing_entry(), Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr_of(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut guard = self.tree.lock().unwrap();
        let tree = &mut *guard;
        let Some(inode) = tree.inodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let is_file = matches!(inode.body, Body::File);
        if size.is_some() && !is_file {
            return reply.error(if inode.attr.kind == FileType::Directory {
                Errno::EISDIR
            } else {
                Errno::EINVAL
            });
        }
        if let Some(mode) = mode {
            inode.attr.perm = (mode & 0o7777) as u16;
        }
        inode.attr.uid = uid.unwrap_or(inode.attr.uid);
        inode.attr.gid = gid.unwrap_or(inode.attr.gid);
        inode.attr.ctime = SystemTime::now();
        let changes_local = is_file && (size.is_some() || atime.is_some() || mtime.is_some());
        if !is_file {
            inode.attr.atime = atime.map_or(inode.attr.atime, time_of);
            inode.attr.mtime = mtime.map_or(inode.attr.mtime, time_of);
        }
        let attr = inode.attr;
        // A regular file's size and times live in its local file.
        let local = match (changes_local, tree.open.get(&ino.0)) {
            (false, _) => None,
            (true, Some(open)) => Some(open.file.clone()),
            (true, None) => match OpenOptions::new().write(true).open(self.local_path(ino.0)) {
                Ok(file) => Some(Arc::new(file)),
                Err(error) => return reply.error(error.into()),
            },
        };
        drop(guard);
        let Some(file) = local else {
            return reply.attr(&TTL, &attr);
        };
        let mut times = FileTimes::new();
        if let Some(atime) = atime {
            times = times.set_accessed(time_of(atime));
        }
        if let Some(mtime) = mtime {
            times = times.set_modified(time_of(mtime));
        }
        let result = size
            .map_or(Ok(()), |size| file.set_len(size))
            .and_then(|()| file.set_times(times));
        if let Err(error) = result {
            return reply.error(error.into());
        }
        let mut tree = self.tree.lock().unwrap();
        let Some(inode) = tree.inodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        take_local(&mut inode.attr, &file);
        reply.attr(&TTL, &inode.attr);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let tree = self.tree.lock().unwrap();
        match tree.inodes.get(&ino.0).map(|inode| &inode.body) {
            Some(Body::Symlink(target)) => reply.data(target.as_os_str().as_bytes()),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let mode = mode & !umask;
        let (kind, body) = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => (FileType::RegularFile, Body::File),
            libc::S_IFIFO => (FileType::NamedPipe, Body::Special),
            libc::S_IFSOCK => (FileType::Socket, Body::Special),
            libc::S_IFCHR => (FileType::CharDevice, Body::Special),
            libc::S_IFBLK => (FileType::BlockDevice, Body::Special),
            _ => return reply.error(Errno::EINVAL),
        };
        match self.make(req, parent, name, kind, mode, body) {
            Ok((mut attr, _)) => {
                if let Some(inode) = self.tree.lock().unwrap().inodes.get_mut(&attr.ino.0) {
                    inode.attr.rdev = rdev;
                }
                attr.rdev = rdev;
                reply.entry(&TTL, &attr, Generation(0))
            }
            Err(error) => reply.error(error),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mode = mode & !umask;
        let body = Body::Directory {
            parent: parent.0,
            entries: HashMap::new(),
        };
        match self.make(req, parent, name, FileType::Directory, mode, body) {
            Ok((attr, _)) => reply.entry(&TTL, &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent, name, false) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent, name, true) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let body = Body::Symlink(target.to_owned());
        match self.make(req, parent, link_name, FileType::Symlink, 0o777, body) {
            Ok((attr, _)) => reply.entry(&TTL, &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let mut tree = self.tree.lock().unwrap();
        let ino = match tree.entries(parent.0).map(|entries| entries.get(name)) {
            Ok(Some(ino)) => *ino,
            Ok(None) => return reply.error(Errno::ENOENT),
            Err(error) => return reply.error(error),
        };
        let replaced = match tree.entries(newparent.0) {
            Ok(entries) => entries.get(newname).copied(),
            Err(error) => return reply.error(error),
        };
        let moves_dir = tree.is_dir(ino);
        if let Some(target) = replaced {
            if target == ino {
                return reply.ok();
            }
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return reply.error(Errno::EEXIST);
            }
            match (moves_dir, tree.entries(target)) {
                (true, Err(_)) => return reply.error(Errno::ENOTDIR),
                (false, Ok(_)) => return reply.error(Errno::EISDIR),
                (true, Ok(entries)) if !entries.is_empty() => {
                    return reply.error(Errno::ENOTEMPTY);
                }
                _ => {}
            }
        }
        if moves_dir && newparent != parent {
            // A directory cannot move into its own subtree.
            let mut ancestor = Some(newparent.0);
            while let Some(dir) = ancestor {
                if dir == ino {
                    return reply.error(Errno::EINVAL);
                }
                ancestor = tree.parent_of(dir).filter(|&up| up != dir);
            }
        }
        let mut delete = None;
        if let Some(target) = replaced {
            tree.remove_entry(newparent.0, newname, target);
            delete = tree.drop_link(target).then_some(target);
        }
        tree.remove_entry(parent.0, name, ino);
        tree.add_entry(newparent.0, newname, ino);
        if let Some(inode) = tree.inodes.get_mut(&ino) {
            inode.attr.ctime = SystemTime::now();
            if let Body::Directory { parent, .. } = &mut inode.body {
                *parent = newparent.0;
            }
        }
        drop(tree);
        if let Some(target) = delete {
            self.delete_local(target);
        }
        reply.ok();
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut tree = self.tree.lock().unwrap();
        match tree.entries(newparent.0) {
            Ok(entries) if entries.contains_key(newname) => return reply.error(Errno::EEXIST),
            Ok(_) => {}
            Err(error) => return reply.error(error),
        }
        let Some(inode) = tree.inodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if inode.attr.kind == FileType::Directory {
            return reply.error(Errno::EPERM);
        }
        inode.attr.nlink += 1;
        inode.attr.ctime = SystemTime::now();
        tree.add_entry(newparent.0, newname, ino.0);
        let known = tree.known(ino.0);
        drop(tree);
        match known {
            Some(known) => reply.entry(&TTL, &current(known), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut tree = self.tree.lock().unwrap();
        match tree.inodes.get(&ino.0).map(|inode| &inode.body) {
            Some(Body::File) => {}
            Some(Body::Directory { .. }) => return reply.error(Errno::EISDIR),
            Some(_) => return reply.error(Errno::EINVAL),
            None => return reply.error(Errno::ENOENT),
        }
        if let Err(error) = self.open_local(&mut tree, ino.0, None, |file| reply.open_backing(file))
        {
            return reply.error(error);
        }
        let fh = FileHandle(ino.0);
        match &tree.open[&ino.0].backing {
            Some(backing) => reply.opened_passthrough(fh, FopenFlags::empty(), backing),
            None => reply.opened(fh, FopenFlags::empty()),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mode = mode & !umask;
        let (attr, local) =
            match self.make(req, parent, name, FileType::RegularFile, mode, Body::File) {
                Ok(made) => made,
                Err(error) => return reply.error(error),
            };
        let ino = attr.ino.0;
        let mut tree = self.tree.lock().unwrap();
        if let Err(error) = self.open_local(&mut tree, ino, local, |file| reply.open_backing(file))
        {
            return reply.error(error);
        }
        // As Loft's: a handle that made its file needs no `FLUSH` on close.
        let flags = FopenFlags::FOPEN_NOFLUSH;
        let fh = FileHandle(ino);
        match &tree.open[&ino].backing {
            Some(backing) => {
                reply.created_passthrough(&TTL, &attr, Generation(0), fh, flags, backing)
            }
            None => reply.created(&TTL, &attr, Generation(0), fh, flags),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let file = match self.open_file(fh.0) {
            Ok(file) => file,
            Err(error) => return reply.error(error),
        };
        let mut data = vec![0; size as usize];
        let mut filled = 0;
        while filled < data.len() {
            match file.read_at(&mut data[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return reply.error(error.into()),
            }
        }
        reply.data(&data[..filled]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = self
            .open_file(fh.0)
            .and_then(|file| Ok(file.write_all_at(data, offset)?));
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(error) => reply.error(error),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let ino = fh.0;
        let mut tree = self.tree.lock().unwrap();
        if let Some(open) = tree.open.get_mut(&ino) {
            open.handles -= 1;
            if open.handles == 0
                && let Some(closed) = tree.open.remove(&ino)
                && let Some(inode) = tree.inodes.get_mut(&ino)
            {
                take_local(&mut inode.attr, &closed.file);
            }
        }
        let delete = tree.reap(ino);
        drop(tree);
        if delete {
            self.delete_local(ino);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.open_file(fh.0).and_then(|file| {
            let synced = if datasync {
                file.sync_data()
            } else {
                file.sync_all()
            };
            Ok(synced?)
        });
        match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut tree = self.tree.lock().unwrap();
        let entries = match tree.entries(ino.0) {
            Ok(entries) => entries,
            Err(error) => return reply.error(error),
        };
        let parent = tree.parent_of(ino.0).unwrap_or(ino.0);
        let mut listing = Vec::with_capacity(entries.len() + 2);
        listing.push((OsString::from("."), ino.0));
        listing.push((OsString::from(".."), parent));
        listing.extend(entries.iter().map(|(name, ino)| (name.clone(), *ino)));
        let fh = tree.next_listing;
        tree.next_listing += 1;
        tree.listings.insert(fh, listing);
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = self.list(fh, offset, |name, ino, (attr, _), next| {
            reply.add(INodeNo(ino), next, attr.kind, name)
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let listed = self.list(fh, offset, |name, ino, known, next| {
            let attr = current(known);
            reply.add(INodeNo(ino), next, name, &TTL, &attr, Generation(0))
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.tree.lock().unwrap().listings.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    /// The numbers of the disk that holds the local files.
    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let Ok(path) = CString::new(self.scratch.as_os_str().as_bytes()) else {
            return reply.error(Errno::EINVAL);
        };
        // SAFETY: `path` is a NUL-terminated string and `disk` a writable statvfs.
        let mut disk: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut disk) } != 0 {
            return reply.error(std::io::Error::last_os_error().into());
        }
        reply.statfs(
            disk.f_blocks,
            disk.f_bfree,
            disk.f_bavail,
            disk.f_files,
            disk.f_ffree,
            disk.f_bsize as u32,
            255,
            disk.f_frsize as u32,
        );
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENODATA);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel checks.
        reply.ok();
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let Some(mountpoint) = args.next().map(PathBuf::from) else {
        eprintln!("usage: fuse_floor MOUNTPOINT [SCRATCH]");
        std::process::exit(2);
    };
    let scratch = args.next().map(PathBuf::from).unwrap_or_else(|| {
        let beside = mountpoint.parent().unwrap_or(Path::new("."));
        beside.join(format!(".fuse-floor-{}", std::process::id()))
    });
    std::fs::create_dir(&scratch)?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::DefaultPermissions,
        MountOption::FSName("loft-floor".into()),
    ];
    config.acl = SessionACL::Owner;
    config.n_threads = Some(4);
    config.clone_fd = true;
    let served = FloorFs::new(scratch.clone())
        .and_then(|fs| fuser::Session::new(fs, &mountpoint, &config))
        .and_then(|session| session.run());
    let _ = std::fs::remove_dir_all(&scratch);
    served
}
