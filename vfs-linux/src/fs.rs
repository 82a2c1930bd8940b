//! `fuser::Filesystem` over the core: each method converts arguments, calls
//! [`Vfs`], and converts the answer. Files whose bytes are all local are handed to
//! the kernel by passthrough where it allows; an inode is served either all by
//! passthrough or all through this process, as the kernel requires.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};
use loft_vfs::{
    Attr, Caller, Groups, Kind, OpenMode, Opened, SetAttr, TimeSet, Vfs, VfsError, has_setid,
    nanos_of, system_time,
};
use tracing::{info, warn};

use crate::errno::errno;

/// How long the kernel may trust attributes and names without asking again. Loft
/// invalidates them itself when it changes something the kernel may have cached.
pub(crate) const TTL: Duration = Duration::from_secs(1);

/// Flags of a handle made by `create`. Its `close` sends no `FLUSH`: all that a flush
/// does for an open handle (the body's size and time into the mirror, a refused
/// commit's EDQUOT) is done by the `RELEASE` that follows, and a file this handle
/// created has no commit yet to refuse. The caller waits one round trip less per new
/// file.
const CREATED: FopenFlags = FopenFlags::FOPEN_NOFLUSH;

/// A backing file registered for passthrough, shared by an inode's handles.
struct Backing {
    id: BackingId,
    users: u32,
}

#[derive(Default)]
struct Modes {
    backings: HashMap<u64, Backing>,
    /// Handles of each inode served through this process.
    cached: HashMap<u64, u32>,
    /// Each open handle: its inode and whether it is passthrough.
    handles: HashMap<u64, (u64, bool)>,
}

pub(crate) struct LoftFs {
    vfs: Arc<Vfs>,
    passthrough: AtomicBool,
    /// The kernel enforces POSIX ACLs (`FUSE_POSIX_ACL`).
    acls: AtomicBool,
    modes: Mutex<Modes>,
}

/// SELinux labels are not kept, and asking for one is answered as by a file system
/// without them (`EOPNOTSUPP`). Where SELinux runs, the kernel labels a FUSE mount
/// itself and does not ask. Elsewhere `ls -l` asks for the label of every entry, a
/// FUSE round trip the kernel does not cache; told that the file system does not
/// support it, `ls` stops asking for the rest of the drive.
const SELINUX_LABEL: &[u8] = b"security.selinux";

/// The groups of an unprivileged caller: the one the kernel passes (its file system
/// group) and the supplementary groups of its thread, which FUSE does not pass and
/// which are read from /proc only when a rule asks. The caller is waiting on the
/// request, so its thread is there to read.
struct CallerGroups {
    gid: u32,
    pid: u32,
}

impl Groups for CallerGroups {
    fn contains(&self, gid: u32) -> bool {
        gid == self.gid || supplementary_groups(self.pid).contains(&gid)
    }
}

/// The supplementary groups of thread `pid` (none when they cannot be read).
fn supplementary_groups(pid: u32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The groups of `req`'s caller, whoever it is (the kernel flags a write that must
/// drop set-id bits only for a caller without CAP_FSETID).
fn groups(req: &Request) -> CallerGroups {
    CallerGroups {
        gid: req.gid(),
        pid: req.pid(),
    }
}

/// The groups of `req`'s caller when it is unprivileged (not root), which the set-id
/// rules need; `None` for root.
fn unprivileged(req: &Request) -> Option<CallerGroups> {
    (req.uid() != 0).then(|| groups(req))
}

/// The creator of a node: the caller of `req` with its `umask`.
fn caller(req: &Request, umask: u32) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        umask,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Directory => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.blocks,
        atime: system_time(attr.atime),
        mtime: system_time(attr.mtime),
        ctime: system_time(attr.ctime),
        crtime: system_time(attr.btime),
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: attr.rdev,
        blksize: 4096,
        flags: 0,
    }
}

/// A negative entry: node id 0 tells the kernel "no such name" for the timeout.
fn missing_entry() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn time_set(time: TimeOrNow) -> TimeSet {
    match time {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(nanos_of(t)),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_mode(flags: OpenFlags) -> OpenMode {
    OpenMode {
        write: !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY),
        truncate: flags.0 & libc::O_TRUNC != 0,
    }
}

/// How a handle is served.
enum Serve {
    Cached,
    Passthrough,
}

impl LoftFs {
    /// `acls`: ask the kernel for POSIX ACLs (it may not offer them).
    pub(crate) fn new(vfs: Arc<Vfs>, passthrough: bool, acls: bool) -> LoftFs {
        LoftFs {
            vfs,
            passthrough: AtomicBool::new(passthrough),
            acls: AtomicBool::new(acls),
            modes: Mutex::new(Modes::default()),
        }
    }

    /// Decides passthrough or not for a new handle, registering a backing file
    /// through `open_backing` when this inode has none yet.
    fn choose(
        &self,
        opened: &Opened,
        open_backing: impl FnOnce(&std::fs::File) -> std::io::Result<BackingId>,
    ) -> Result<Serve, Errno> {
        let ino = opened.attr.ino;
        let mut modes = lock(&self.modes);
        if let Some(backing) = modes.backings.get_mut(&ino) {
            backing.users += 1;
            modes.handles.insert(opened.fh, (ino, true));
            return Ok(Serve::Passthrough);
        }
        let cached = modes.cached.get(&ino).copied().unwrap_or(0);
        // A set-id file is written through this process, which drops the bits as
        // the kernel asks (`FUSE_WRITE_KILL_SUIDGID`); by passthrough nothing would.
        let setid = has_setid(u32::from(opened.attr.perm));
        if let (Some(file), 0, true, false) = (
            &opened.backing,
            cached,
            self.passthrough.load(Ordering::Relaxed),
            setid,
        ) {
            match open_backing(file) {
                Ok(id) => {
                    modes.backings.insert(ino, Backing { id, users: 1 });
                    modes.handles.insert(opened.fh, (ino, true));
                    self.vfs.mark_passthrough(opened.fh);
                    return Ok(Serve::Passthrough);
                }
                Err(error) => {
                    info!("passthrough unavailable ({error}); serving reads in-process");
                    self.passthrough.store(false, Ordering::Relaxed);
                }
            }
        }
        *modes.cached.entry(ino).or_default() += 1;
        modes.handles.insert(opened.fh, (ino, false));
        Ok(Serve::Cached)
    }

    fn forget_handle(&self, fh: u64) {
        let mut modes = lock(&self.modes);
        let Some((ino, passthrough)) = modes.handles.remove(&fh) else {
            return;
        };
        if passthrough {
            if let Some(backing) = modes.backings.get_mut(&ino) {
                backing.users -= 1;
                if backing.users == 0 {
                    modes.backings.remove(&ino);
                }
            }
        } else if let Some(count) = modes.cached.get_mut(&ino) {
            *count -= 1;
            if *count == 0 {
                modes.cached.remove(&ino);
            }
        }
    }

    fn entry(&self, reply: ReplyEntry, result: Result<Attr, VfsError>) {
        match result {
            Ok(attr) => reply.entry(&TTL, &file_attr(&attr), Generation(0)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn empty(&self, reply: ReplyEmpty, result: Result<(), VfsError>) {
        match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
        }
    }
}

fn bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

/// With fuser's threads, each request runs on a worker; the core is `Sync`.
impl Filesystem for LoftFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.add_capabilities(
            InitFlags::FUSE_DO_READDIRPLUS
                | InitFlags::FUSE_READDIRPLUS_AUTO
                | InitFlags::FUSE_PARALLEL_DIROPS
                // Loft drops set-id bits itself (see `setattr` and `write`). The
                // kernel then stops asking for `security.capability` before every
                // write, a round trip each that made 4 KiB writes several times
                // slower, also through passthrough.
                | InitFlags::FUSE_HANDLE_KILLPRIV_V2,
        );
        // POSIX ACLs: the kernel enforces them and caches each inode's; Loft stores
        // them and applies the umask itself (see `loft_vfs::acl`).
        // Unless mounted with `noacl`.
        if self.acls.load(Ordering::Relaxed) {
            let acls = config
                .add_capabilities(InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK)
                .is_ok();
            if !acls {
                info!("kernel does not offer POSIX ACLs");
            }
            self.acls.store(acls, Ordering::Relaxed);
        }
        if self.passthrough.load(Ordering::Relaxed) {
            let ok = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(2).is_ok();
            if !ok {
                info!("kernel does not offer passthrough");
                self.passthrough.store(false, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.vfs.lookup(parent.0, bytes(name)) {
            // A missing name is cached by the kernel like a found one (node id 0): the
            // change feed invalidates it when another device creates the name.
            Err(VfsError::NotFound) => reply.entry(&TTL, &missing_entry(), Generation(0)),
            result => self.entry(reply, result),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.vfs.getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // With `FUSE_HANDLE_KILLPRIV_V2` the kernel leaves the set-id bits to the file
        // system: a change of owner drops them, and so does a change of size by a
        // caller other than root (the kernel's test is CAP_FSETID, which fuser does
        // not pass on). So does a change of nothing at all: what the kernel still
        // sends when a caller without CAP_FSETID writes or allocates in a set-id file
        // (`file_remove_privs`), once it has taken out the bits it leaves to Loft.
        // Dropping them here, before the write, returns the new mode to the kernel's
        // attribute cache in this reply.
        let caller = unprivileged(req);
        let unprivileged = caller.is_some();
        let empty = [mode, uid, gid].iter().all(Option::is_none)
            && size.is_none()
            && atime.is_none()
            && mtime.is_none()
            && ctime.is_none();
        let drops_setid =
            uid.is_some() || gid.is_some() || (unprivileged && (size.is_some() || empty));
        let mode = match mode {
            None if drops_setid => match self.vfs.mode_without_setid(ino.0, caller.as_ref()) {
                Ok(mode) => mode,
                Err(error) => return reply.error(errno(&error)),
            },
            mode => mode,
        };
        let change = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
        };
        match self.vfs.setattr(ino.0, change) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.vfs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(error) => reply.error(errno(&error)),
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
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => Kind::File,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            _ => return reply.error(Errno::EINVAL),
        };
        let result = self.vfs.mknod(
            parent.0,
            bytes(name),
            kind,
            mode & 0o7777,
            u64::from(rdev),
            caller(req, umask),
        );
        self.entry(reply, result);
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
        let result = self
            .vfs
            .mkdir(parent.0, bytes(name), mode & 0o7777, caller(req, umask));
        self.entry(reply, result);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, self.vfs.unlink(parent.0, bytes(name)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty(reply, self.vfs.rmdir(parent.0, bytes(name)));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = self.vfs.symlink(
            parent.0,
            bytes(link_name),
            target.as_os_str().as_bytes(),
            req.uid(),
            req.gid(),
        );
        self.entry(reply, result);
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
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let result = self.vfs.rename(
            parent.0,
            bytes(name),
            newparent.0,
            bytes(newname),
            flags.contains(RenameFlags::RENAME_NOREPLACE),
            flags.contains(RenameFlags::RENAME_EXCHANGE),
        );
        self.empty(reply, result);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.entry(reply, self.vfs.link(ino.0, newparent.0, bytes(newname)));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let opened = match self.vfs.open(ino.0, open_mode(flags)) {
            Ok(opened) => opened,
            Err(error) => return reply.error(errno(&error)),
        };
        let fh = opened.fh;
        match self.choose(&opened, |file| reply.open_backing(file)) {
            Ok(Serve::Passthrough) => {
                let modes = lock(&self.modes);
                let backing = &modes.backings[&opened.attr.ino].id;
                reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), backing);
            }
            Ok(Serve::Cached) => {
                // Handles of an older version fill the page cache; this one reads
                // the new version past it.
                let flags = if opened.bypass_page_cache {
                    FopenFlags::FOPEN_DIRECT_IO
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), flags)
            }
            Err(error) => {
                let _ = self.vfs.release(fh);
                reply.error(error);
            }
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let opened = match self.vfs.create(
            parent.0,
            bytes(name),
            mode & 0o7777,
            caller(req, umask),
            write,
        ) {
            Ok(opened) => opened,
            Err(error) => return reply.error(errno(&error)),
        };
        let fh = opened.fh;
        let attr = file_attr(&opened.attr);
        match self.choose(&opened, |file| reply.open_backing(file)) {
            Ok(Serve::Passthrough) => {
                let modes = lock(&self.modes);
                let backing = &modes.backings[&opened.attr.ino].id;
                reply.created_passthrough(
                    &TTL,
                    &attr,
                    Generation(0),
                    FileHandle(fh),
                    CREATED,
                    backing,
                );
            }
            Ok(Serve::Cached) => reply.created(&TTL, &attr, Generation(0), FileHandle(fh), CREATED),
            Err(error) => {
                let _ = self.vfs.release(fh);
                reply.error(error);
            }
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
        match self.vfs.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(error) => {
                if matches!(error, VfsError::Offline(_) | VfsError::NoSpace(_)) {
                    warn!("read failed: {error}");
                }
                reply.error(errno(&error))
            }
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // Set by the kernel for a writer without CAP_FSETID.
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID)
            && let Err(error) = self.vfs.drop_setid(ino.0, &groups(req))
        {
            return reply.error(errno(&error));
        }
        match self.vfs.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.empty(reply, self.vfs.flush(fh.0));
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
        self.forget_handle(fh.0);
        self.empty(reply, self.vfs.release(fh.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.empty(reply, self.vfs.fsync(fh.0));
    }

    /// Only `SEEK_DATA` and `SEEK_HOLE` reach the file system.
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let data = match whence {
            libc::SEEK_DATA => true,
            libc::SEEK_HOLE => false,
            _ => return reply.error(Errno::EINVAL),
        };
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(Errno::ENXIO);
        };
        match self.vfs.seek_data_or_hole(fh.0, offset, data) {
            Ok(at) => reply.offset(at as i64),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.vfs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = self.vfs.readdir(ino.0, fh.0, offset, |name, attr, next| {
            reply.add(
                INodeNo(attr.ino),
                next,
                file_type(attr.kind),
                OsStr::from_bytes(name),
            )
        });
        match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let result = self.vfs.readdir(ino.0, fh.0, offset, |name, attr, next| {
            reply.add(
                INodeNo(attr.ino),
                next,
                OsStr::from_bytes(name),
                &TTL,
                &file_attr(attr),
                Generation(0),
            )
        });
        match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
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
        self.vfs.releasedir(fh.0);
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
        self.empty(reply, self.vfs.sync_metadata());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.vfs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks,
                s.free,
                s.available,
                s.files,
                s.files_free,
                4096,
                255,
                4096,
            ),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let name = bytes(name);
        if name == SELINUX_LABEL {
            return reply.error(Errno::EOPNOTSUPP);
        }
        if name.starts_with(b"system.posix_acl_") && !self.acls.load(Ordering::Relaxed) {
            // The kernel would not enforce it: stored but not enforced would be worse
            // than refused.
            return reply.error(Errno::EOPNOTSUPP);
        }
        let caller = unprivileged(req);
        self.empty(
            reply,
            self.vfs
                .setxattr(ino.0, name, value, flags, caller.as_ref()),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = bytes(name);
        if name == SELINUX_LABEL {
            return reply.error(Errno::EOPNOTSUPP);
        }
        match self.vfs.getxattr(ino.0, name) {
            Ok(value) => xattr_reply(reply, &value, size),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.vfs.listxattr(ino.0) {
            Ok(names) => {
                let mut list = Vec::new();
                for name in names {
                    list.extend_from_slice(&name);
                    list.push(0);
                }
                xattr_reply(reply, &list, size);
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    /// No ioctl is Loft's. Tools probe files with some (Python's `open` asks whether
    /// a file is a terminal): ENOTTY answers them, as a disk file system does.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = bytes(name);
        if name == SELINUX_LABEL {
            return reply.error(Errno::EOPNOTSUPP);
        }
        self.empty(reply, self.vfs.removexattr(ino.0, name));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.empty(reply, self.vfs.fallocate(fh.0, offset, length, mode));
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel checks.
        reply.ok();
    }
}

fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}
