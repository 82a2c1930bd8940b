//! The FUSE floor: a file system that keeps names and attributes in memory and stores
//! no bytes, mounted with Loft's options (`default_permissions`, the same number of
//! threads, attribute and entry timeouts, no `FLUSH` for created handles, and, where
//! the kernel allows, passthrough: every handle writes to one shared scratch file,
//! so writes never reach this process, as a new file's writes never reach Loft's). What it
//! costs to create, stat and unlink files here is what the kernel's FUSE path costs
//! before a file system does any work of its own; `bench/run` measures it beside Loft.
//!
//! `cargo run --release -p loft-vfs-linux --example fuse_floor -- MOUNTPOINT` serves
//! until the mount is taken down (`fusermount3 -u MOUNTPOINT`).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use fuser::{
    BackingId, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyCreate,
    ReplyEmpty, ReplyEntry, ReplyWrite, ReplyXattr, Request, SessionACL, WriteFlags,
};

const TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = 1;

#[derive(Default)]
struct Tree {
    /// `(parent, name)` → inode.
    names: HashMap<(u64, OsString), u64>,
    attrs: HashMap<u64, FileAttr>,
    next: u64,
}

struct FloorFs {
    tree: Mutex<Tree>,
    /// The scratch file every passthrough handle writes to (already unlinked).
    scratch: std::fs::File,
    /// Its backing id, registered by the first create; `None` inside: no passthrough.
    backing: Mutex<Option<Option<BackingId>>>,
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

impl FloorFs {
    fn new() -> FloorFs {
        let mut tree = Tree {
            next: ROOT + 1,
            ..Tree::default()
        };
        tree.attrs
            .insert(ROOT, attr(ROOT, FileType::Directory, 0o755, 0, 0));
        let path = std::env::temp_dir().join(format!("fuse-floor-{}", std::process::id()));
        let scratch = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("scratch file");
        let _ = std::fs::remove_file(&path);
        FloorFs {
            tree: Mutex::new(tree),
            scratch,
            backing: Mutex::new(None),
        }
    }

    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: FileType,
        mode: u32,
    ) -> Result<FileAttr, Errno> {
        let mut tree = self.tree.lock().unwrap();
        if tree.names.contains_key(&(parent.0, name.to_owned())) {
            return Err(Errno::EEXIST);
        }
        let ino = tree.next;
        tree.next += 1;
        let made = attr(ino, kind, (mode & 0o7777) as u16, req.uid(), req.gid());
        tree.names.insert((parent.0, name.to_owned()), ino);
        tree.attrs.insert(ino, made);
        Ok(made)
    }

    fn remove(&self, parent: INodeNo, name: &OsStr) -> Result<(), Errno> {
        let mut tree = self.tree.lock().unwrap();
        let ino = tree
            .names
            .remove(&(parent.0, name.to_owned()))
            .ok_or(Errno::ENOENT)?;
        tree.attrs.remove(&ino);
        Ok(())
    }
}

impl Filesystem for FloorFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let passthrough = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok();
        if !passthrough {
            *self.backing.lock().unwrap() = Some(None);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let tree = self.tree.lock().unwrap();
        match tree.names.get(&(parent.0, name.to_owned())) {
            Some(ino) => reply.entry(&TTL, &tree.attrs[ino], Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree.lock().unwrap().attrs.get(&ino.0) {
            Some(attr) => reply.attr(&TTL, attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        match self.make(req, parent, name, FileType::Directory, mode) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let attr = match self.make(req, parent, name, FileType::RegularFile, mode) {
            Ok(attr) => attr,
            Err(error) => return reply.error(error),
        };
        let mut backing = self.backing.lock().unwrap();
        let backing = backing.get_or_insert_with(|| reply.open_backing(&self.scratch).ok());
        let flags = FopenFlags::FOPEN_NOFLUSH;
        match backing {
            Some(id) => {
                reply.created_passthrough(&TTL, &attr, Generation(0), FileHandle(0), flags, id)
            }
            None => reply.created(&TTL, &attr, Generation(0), FileHandle(0), flags),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.written(data.len() as u32);
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

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent, name) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent, name) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }
}

fn main() -> std::io::Result<()> {
    let Some(mountpoint) = std::env::args_os().nth(1) else {
        eprintln!("usage: fuse_floor MOUNTPOINT");
        std::process::exit(2);
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::DefaultPermissions,
        MountOption::FSName("loft-floor".into()),
    ];
    config.acl = SessionACL::Owner;
    config.n_threads = Some(4);
    config.clone_fd = true;
    fuser::Session::new(FloorFs::new(), mountpoint, &config)?.run()
}
