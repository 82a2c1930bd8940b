//! The namespace: lookup, create, remove, rename, link, attributes and directory
//! listings. Every change is applied to the mirror and queued for the server in one
//! transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use loft_cache::mirror::{Db, Kind, Node, Op, ROOT_INO};
use loft_remote::names::NAME_MAX;

use crate::acl;
use crate::attr::{Attr, Nanos, now};
use crate::core::{DirHandle, Opened, Vfs, lock};
use crate::error::{VfsError, VfsResult};
use crate::files::{OpenMode, system_time};
use crate::ignore::mark_tree;
use crate::xattr::store_xattr;

/// A time to set: a given instant or "now".
#[derive(Clone, Copy, Debug)]
pub enum TimeSet {
    At(Nanos),
    Now,
}

/// The attribute changes of one `setattr`.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
}

pub(crate) fn check_name(name: &[u8]) -> VfsResult<()> {
    if name.len() > NAME_MAX {
        return Err(VfsError::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(VfsError::Invalid("bad name"));
    }
    Ok(())
}

pub(crate) const S_ISGID: u32 = 0o2000;

/// How long a new file waits for the close that hands it to the sync engine (the
/// close sets the real debounce); a crash forgets it, and recovery uploads the file.
const UNTIL_CLOSED: Duration = Duration::from_secs(24 * 3600);

/// Who creates a node: its owner, and the umask that applies unless the folder has a
/// default ACL (0 when the caller has applied it already).
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub umask: u32,
}

/// What a new node is.
pub(crate) struct NewNode<'a> {
    pub kind: Kind,
    pub mode: u32,
    /// Its owner, and the umask that applies unless the folder has a default ACL.
    pub caller: Caller,
    pub rdev: u64,
    pub symlink: &'a [u8],
}

fn dir_node(db: &Db<'_>, ino: u64) -> VfsResult<Node> {
    let node = db.node(ino)?.ok_or(VfsError::NotFound)?;
    if node.kind != Kind::Directory {
        return Err(VfsError::NotDir);
    }
    Ok(node)
}

fn touch_dir(db: &Db<'_>, dir: &mut Node, stamp: Nanos, nlink_delta: i32) -> VfsResult<()> {
    dir.mtime = stamp;
    dir.ctime = stamp;
    dir.nlink = (dir.nlink as i64 + i64::from(nlink_delta)).max(2) as u32;
    db.update_node(dir)?;
    Ok(())
}

/// How many removals made here `Vfs::removed_here` remembers.
const REMOVED_HERE_KEPT: usize = 100_000;

impl Vfs {
    pub fn lookup(&self, parent: u64, name: &[u8]) -> VfsResult<Attr> {
        if name.len() > NAME_MAX {
            return Err(VfsError::NameTooLong);
        }
        self.ensure_listed(parent)?;
        let ino = self
            .mirror
            .read(|db| db.lookup(parent, name))?
            .ok_or(VfsError::NotFound)?;
        self.getattr(ino)
    }

    pub fn readlink(&self, ino: u64) -> VfsResult<Vec<u8>> {
        let node = self.node(ino)?;
        if node.kind != Kind::Symlink {
            return Err(VfsError::Invalid("not a symlink"));
        }
        Ok(node.symlink)
    }

    /// Creates a node (not yet opened) and queues its creation.
    pub(crate) fn make_node(&self, parent: u64, name: &[u8], new: NewNode<'_>) -> VfsResult<Node> {
        check_name(name)?;
        self.check_writable(parent)?;
        self.ensure_listed(parent)?;
        let local_only = self.is_ignored(parent, name, new.kind == Kind::Directory)?;
        let symlink = new.kind == Kind::Symlink;
        if !symlink {
            self.ensure_xattrs(parent)?;
        }
        let stamp = now();
        let node = self.tx(|db| {
            let mut dir = dir_node(db, parent)?;
            if db.lookup(parent, name)?.is_some() {
                return Err(VfsError::Exists);
            }
            let inherited = if symlink {
                acl::Inherited::nothing(new.mode)
            } else {
                acl::inherit(
                    db,
                    parent,
                    new.mode,
                    new.caller.umask,
                    new.kind == Kind::Directory,
                )?
            };
            let mut node = Node::new(new.kind, inherited.mode & 0o7777, stamp);
            node.uid = new.caller.uid;
            node.gid = new.caller.gid;
            if dir.mode & S_ISGID != 0 {
                node.gid = dir.gid;
                if new.kind == Kind::Directory {
                    node.mode |= S_ISGID;
                }
            }
            node.rdev = new.rdev;
            node.symlink = new.symlink.to_vec();
            node.size = new.symlink.len() as u64;
            node.nlink = if new.kind == Kind::Directory { 2 } else { 1 };
            node.listed = true;
            node.xattrs_listed = true;
            node.pinned = dir.pinned;
            node.dirty = new.kind == Kind::File;
            node.local_only = local_only;
            node.ino = db.insert_node(&node)?;
            if node.kind == Kind::File {
                // Not uploaded before the caller has made the body file and, for
                // `create`, opened and closed it: a sync round in between would commit
                // it empty. Marked before the creation is queued, which a sync round
                // may see as soon as this transaction ends.
                lock(&self.pending).entry(node.ino).or_default().ready_at =
                    Some(Instant::now() + UNTIL_CLOSED);
            }
            db.add_entry(parent, name, node.ino)?;
            touch_dir(db, &mut dir, stamp, i32::from(new.kind == Kind::Directory))?;
            db.queue(&Op::create_of(&node, parent, name.to_vec()), stamp)?;
            if let Some(access) = &inherited.access {
                store_xattr(db, node.ino, acl::ACCESS, Some(access), stamp)?;
            }
            if let Some(default) = &inherited.default {
                store_xattr(db, node.ino, acl::DEFAULT, Some(default), stamp)?;
            }
            Ok(node)
        })?;
        self.wake.notify_one();
        Ok(node)
    }

    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32, caller: Caller) -> VfsResult<Attr> {
        let node = self.make_node(
            parent,
            name,
            NewNode {
                kind: Kind::Directory,
                mode,
                caller,
                rdev: 0,
                symlink: b"",
            },
        )?;
        Ok(self.attr_of(&node))
    }

    /// mknod: regular files, fifos, sockets and device nodes.
    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        kind: Kind,
        mode: u32,
        rdev: u64,
        caller: Caller,
    ) -> VfsResult<Attr> {
        if kind == Kind::Directory || kind == Kind::Symlink {
            return Err(VfsError::Invalid("mknod of a directory or symlink"));
        }
        let node = self.make_node(
            parent,
            name,
            NewNode {
                kind,
                mode,
                caller,
                rdev,
                symlink: b"",
            },
        )?;
        if kind == Kind::File {
            self.bodies.create_body(node.ino, node.body, 0)?;
            self.upload_after_debounce(node.ino);
        }
        Ok(self.attr_of(&node))
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> VfsResult<Attr> {
        if target.len() > 4095 {
            return Err(VfsError::NameTooLong);
        }
        let node = self.make_node(
            parent,
            name,
            NewNode {
                kind: Kind::Symlink,
                mode: 0o777,
                caller: Caller { uid, gid, umask: 0 },
                rdev: 0,
                symlink: target,
            },
        )?;
        Ok(self.attr_of(&node))
    }

    /// create: a new regular file, opened.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        caller: Caller,
        write: bool,
    ) -> VfsResult<Opened> {
        let node = self.make_node(
            parent,
            name,
            NewNode {
                kind: Kind::File,
                mode,
                caller,
                rdev: 0,
                symlink: b"",
            },
        )?;
        let ino = node.ino;
        // Opened on the body file just made, with the node just written: neither is
        // read again.
        let mode = OpenMode {
            write,
            truncate: false,
        };
        let opened = self
            .bodies
            .create_body(ino, node.body, 0)
            .map_err(VfsError::from)
            .and_then(|body| self.open_node(node, mode, Some(body)));
        if opened.is_err() || !write {
            // No close will hand it to the sync engine.
            self.upload_after_debounce(ino);
        }
        opened
    }

    /// Drops one link of `ino` (already removed from its directory, in `db`). A node
    /// nobody names and nobody has open is forgotten by the caller afterwards.
    /// Takes a link from `ino` (a name removed here: unlink, rmdir, a rename over it).
    fn unlink_node(&self, db: &Db<'_>, ino: u64, stamp: Nanos) -> VfsResult<Option<Node>> {
        let Some(mut node) = db.node(ino)? else {
            return Ok(None);
        };
        let mut removed_here = lock(&self.removed_here);
        removed_here.insert(ino);
        // Inodes only grow: the oldest removals, whose journal entries came back long
        // ago, go first.
        while removed_here.len() > REMOVED_HERE_KEPT {
            removed_here.pop_first();
        }
        drop(removed_here);
        node.nlink = if node.kind == Kind::Directory {
            0
        } else {
            node.nlink.saturating_sub(1)
        };
        node.ctime = stamp;
        db.update_node(&node)?;
        Ok(Some(node))
    }

    fn forget_if_unused(&self, node: Option<Node>) -> VfsResult<()> {
        if let Some(node) = node
            && node.nlink == 0
            && !self.is_open(node.ino)
        {
            self.forget_node(&node)?;
        }
        Ok(())
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> VfsResult<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> VfsResult<()> {
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: u64, name: &[u8], directory: bool) -> VfsResult<()> {
        if name.len() > NAME_MAX {
            return Err(VfsError::NameTooLong);
        }
        self.ensure_listed(parent)?;
        let target = self
            .mirror
            .read(|db| db.lookup(parent, name))?
            .ok_or(VfsError::NotFound)?;
        // What the server never had (a change it refused, or one not sent yet) may go
        // even from a folder this user may only read: that changes nothing there.
        if let Err(denied) = self.check_writable(parent)
            && self.mirror.read(|db| db.remote_of(target))?.is_some()
        {
            return Err(denied);
        }
        let node = self.node(target)?;
        match (directory, node.kind == Kind::Directory) {
            (true, false) => return Err(VfsError::NotDir),
            (false, true) => return Err(VfsError::IsDir),
            (true, true) => self.ensure_listed(target)?,
            _ => {}
        }
        let stamp = now();
        let gone = self.tx(|db| {
            let mut dir = dir_node(db, parent)?;
            if db.lookup(parent, name)? != Some(target) {
                return Err(VfsError::NotFound);
            }
            if directory && db.has_entries(target)? {
                return Err(VfsError::NotEmpty);
            }
            db.remove_entry(parent, name)?;
            touch_dir(db, &mut dir, stamp, -i32::from(directory))?;
            if !node.local_only {
                db.queue(
                    &Op::Remove {
                        ino: node.ino,
                        parent,
                        name: name.to_vec(),
                        directory,
                    },
                    stamp,
                )?;
            }
            self.unlink_node(db, target, stamp)
        })?;
        self.forget_if_unused(gone)?;
        self.wake.notify_one();
        Ok(())
    }

    /// True if `ancestor` is `ino` or one of its parents.
    fn is_ancestor(db: &Db<'_>, ancestor: u64, mut ino: u64) -> VfsResult<bool> {
        for _ in 0..4096 {
            if ino == ancestor {
                return Ok(true);
            }
            if ino == ROOT_INO {
                return Ok(false);
            }
            match db.any_entry_of(ino)? {
                Some((parent, _)) => ino = parent,
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        no_replace: bool,
        exchange: bool,
    ) -> VfsResult<()> {
        check_name(new_name)?;
        if name.len() > NAME_MAX {
            return Err(VfsError::NameTooLong);
        }
        self.check_writable(parent)?;
        self.check_writable(new_parent)?;
        self.check_same_share(parent, new_parent)?;
        self.ensure_listed(parent)?;
        self.ensure_listed(new_parent)?;
        let existing = self.mirror.read(|db| db.lookup(new_parent, new_name))?;
        // A directory replaced must be known to be empty.
        if let Some(existing) = existing
            && self.node(existing)?.kind == Kind::Directory
        {
            self.ensure_listed(existing)?;
        }
        // Checked here: `files` is never taken inside a mirror transaction.
        let existing_open = existing.is_some_and(|ino| self.is_open(ino));
        // A local-only node moved where nothing is ignored starts syncing.
        let publish = match self.mirror.read(|db| db.lookup(parent, name))? {
            Some(source) => {
                let node = self.node(source)?;
                node.local_only
                    && !self.is_ignored(new_parent, new_name, node.kind == Kind::Directory)?
            }
            None => false,
        };
        let stamp = now();
        let replaced = self.tx(|db| {
            let source = db.lookup(parent, name)?.ok_or(VfsError::NotFound)?;
            let source_node = db.node(source)?.ok_or(VfsError::NotFound)?;
            let target = db.lookup(new_parent, new_name)?;
            let mut from_dir = dir_node(db, parent)?;
            let mut to_dir = dir_node(db, new_parent)?;
            let moving_dir = source_node.kind == Kind::Directory;
            if moving_dir && Self::is_ancestor(db, source, new_parent)? {
                return Err(VfsError::Invalid("cannot move a directory into itself"));
            }
            if target == Some(source) {
                return Ok(None);
            }
            let mut replaced = None;
            if exchange {
                let target = target.ok_or(VfsError::NotFound)?;
                let target_node = db.node(target)?.ok_or(VfsError::NotFound)?;
                if target_node.kind == Kind::Directory && Self::is_ancestor(db, target, parent)? {
                    return Err(VfsError::Invalid("cannot move a directory into itself"));
                }
                db.add_entry(parent, name, target)?;
                db.add_entry(new_parent, new_name, source)?;
                if parent != new_parent {
                    let delta =
                        i32::from(moving_dir) - i32::from(target_node.kind == Kind::Directory);
                    touch_dir(db, &mut from_dir, stamp, -delta)?;
                    touch_dir(db, &mut to_dir, stamp, delta)?;
                } else {
                    touch_dir(db, &mut from_dir, stamp, 0)?;
                }
                for ino in [source, target] {
                    if let Some(mut node) = db.node(ino)? {
                        node.ctime = stamp;
                        db.update_node(&node)?;
                    }
                }
            } else {
                if let Some(target) = target {
                    if no_replace {
                        return Err(VfsError::Exists);
                    }
                    let target_node = db.node(target)?.ok_or(VfsError::NotFound)?;
                    match (moving_dir, target_node.kind == Kind::Directory) {
                        (true, false) => return Err(VfsError::NotDir),
                        (false, true) => return Err(VfsError::IsDir),
                        (true, true) if db.has_entries(target)? => {
                            return Err(VfsError::NotEmpty);
                        }
                        _ => {}
                    }
                    db.remove_entry(new_parent, new_name)?;
                    if target_node.kind == Kind::Directory {
                        to_dir.nlink = to_dir.nlink.saturating_sub(1).max(2);
                    }
                    replaced = self.unlink_node(db, target, stamp)?;
                }
                db.remove_entry(parent, name)?;
                db.add_entry(new_parent, new_name, source)?;
                if parent == new_parent {
                    touch_dir(db, &mut from_dir, stamp, 0)?;
                } else {
                    touch_dir(db, &mut from_dir, stamp, -i32::from(moving_dir))?;
                    let mut to_dir = dir_node(db, new_parent)?;
                    touch_dir(db, &mut to_dir, stamp, i32::from(moving_dir))?;
                }
                if let Some(mut node) = db.node(source)? {
                    node.ctime = stamp;
                    db.update_node(&node)?;
                }
            }
            let into_local_only = dir_node(db, new_parent)?.local_only;
            let took_place = match replaced.as_ref() {
                Some(old) if publish && !exchange && !existing_open => {
                    take_place_of(db, &source_node, old, stamp)?
                }
                _ => false,
            };
            if took_place {
                // An editor's save through a temporary file the ignore rules keep
                // local: the file is the next version of the one it replaced on the
                // server, whose history and shares carry on. Nothing more to queue.
            } else if publish && source_node.local_only && !exchange {
                // The server learns of it as a new entry, replacing what it had there.
                if let Some(old) = replaced.as_ref().filter(|n| !n.local_only) {
                    db.push(
                        &Op::Remove {
                            ino: old.ino,
                            parent: new_parent,
                            name: new_name.to_vec(),
                            directory: old.kind == Kind::Directory,
                        },
                        stamp,
                    )?;
                }
                mark_tree(db, source, false, stamp)?;
            } else if into_local_only && !source_node.local_only && !exchange {
                // Into a folder the server does not have: gone from the server.
                db.queue(
                    &Op::Remove {
                        ino: source_node.ino,
                        parent,
                        name: name.to_vec(),
                        directory: moving_dir,
                    },
                    stamp,
                )?;
                mark_tree(db, source, true, stamp)?;
            } else {
                db.queue(
                    &Op::Rename {
                        ino: source,
                        parent,
                        name: name.to_vec(),
                        new_parent,
                        new_name: new_name.to_vec(),
                        no_replace,
                        exchange,
                        replaced: target.is_some(),
                    },
                    stamp,
                )?;
            }
            Ok(replaced)
        })?;
        self.forget_if_unused(replaced)?;
        self.wake.notify_one();
        Ok(())
    }

    pub fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> VfsResult<Attr> {
        check_name(new_name)?;
        self.check_writable(new_parent)?;
        self.check_same_share(ino, new_parent)?;
        self.ensure_listed(new_parent)?;
        let stamp = now();
        self.tx(|db| {
            let mut node = db.node(ino)?.ok_or(VfsError::NotFound)?;
            if node.kind == Kind::Directory {
                return Err(VfsError::NotPermitted);
            }
            let mut dir = dir_node(db, new_parent)?;
            if db.lookup(new_parent, new_name)?.is_some() {
                return Err(VfsError::Exists);
            }
            db.add_entry(new_parent, new_name, ino)?;
            node.nlink += 1;
            node.ctime = stamp;
            db.update_node(&node)?;
            touch_dir(db, &mut dir, stamp, 0)?;
            db.queue(
                &Op::Link {
                    ino,
                    parent: new_parent,
                    name: new_name.to_vec(),
                },
                stamp,
            )?;
            Ok(())
        })?;
        self.wake.notify_one();
        // Through getattr: a file open for writing takes its size and time from its
        // body, and the kernel caches what link answers (the mirror's size would
        // shrink the open file to what was last persisted).
        self.getattr(ino)
    }

    pub fn setattr(&self, ino: u64, change: SetAttr) -> VfsResult<Attr> {
        self.check_writable(ino)?;
        if change.mode.is_some() {
            // A chmod rewrites the access ACL, if any.
            self.ensure_xattrs(ino)?;
        }
        if let Some(size) = change.size {
            self.set_size(ino, size)?;
        }
        let stamp = now();
        let resolve = |t: TimeSet| match t {
            TimeSet::At(n) => n,
            TimeSet::Now => stamp,
        };
        let atime = change.atime.map(resolve);
        let mtime = change.mtime.map(resolve);
        let any = change.mode.is_some()
            || change.uid.is_some()
            || change.gid.is_some()
            || atime.is_some()
            || mtime.is_some();
        if any {
            let queued = self.tx(|db| {
                let mut node = db.node(ino)?.ok_or(VfsError::NotFound)?;
                let mut acl_changed = false;
                if let Some(mode) = change.mode {
                    node.mode = mode & 0o7777;
                    acl_changed = acl::follow_chmod(db, ino, node.mode, stamp)?;
                }
                if let Some(uid) = change.uid {
                    node.uid = uid;
                }
                if let Some(gid) = change.gid {
                    node.gid = gid;
                }
                if let Some(atime) = atime {
                    node.atime = atime;
                }
                if let Some(mtime) = mtime {
                    node.mtime = mtime;
                    if node.dirty {
                        // A dirty file's body carries its time until it is
                        // committed; set in this transaction so that a `release`
                        // reading the body on another thread sees one or the other.
                        if let Ok(file) = self.bodies.open_body(ino, node.body) {
                            file.set_modified(system_time(mtime))?;
                        }
                    }
                }
                node.ctime = stamp;
                db.update_node(&node)?;
                // tar's `futimens`, `fchown` and `fchmod` of each new file (and `cp
                // -a`'s, which sets the access time too) go in its creation: no call
                // to the server each, and nothing for the sync engine to do.
                let change = Op::SetAttr {
                    ino,
                    mode: change.mode.map(|m| m & 0o7777),
                    uid: change.uid,
                    gid: change.gid,
                    atime,
                    mtime,
                };
                Ok(queue_attr_change(db, &node, &change, stamp)? || acl_changed)
            })?;
            if queued {
                self.wake.notify_one();
            }
        }
        self.getattr(ino)
    }

    pub fn opendir(&self, ino: u64) -> VfsResult<u64> {
        self.ensure_listed(ino)?;
        let entries = self.mirror.read(|db| db.entries(ino))?;
        let fh = self.new_handle_id();
        lock(&self.dirs).insert(fh, Arc::new(DirHandle { ino, entries }));
        Ok(fh)
    }

    /// Entries of an open directory from position `offset` (0 is "."), as
    /// `(name, attributes, next offset)`.
    pub fn readdir(
        &self,
        dir: u64,
        fh: u64,
        offset: u64,
        mut each: impl FnMut(&[u8], &Attr, u64) -> bool,
    ) -> VfsResult<()> {
        let handle = if offset == 0 {
            // From the start (opendir or rewinddir): entries as they are now.
            let fresh = Arc::new(DirHandle {
                ino: dir,
                entries: self.mirror.read(|db| db.entries(dir))?,
            });
            let mut dirs = lock(&self.dirs);
            if !dirs.contains_key(&fh) {
                return Err(VfsError::BadHandle);
            }
            dirs.insert(fh, fresh.clone());
            fresh
        } else {
            lock(&self.dirs)
                .get(&fh)
                .cloned()
                .ok_or(VfsError::BadHandle)?
        };
        let mut position = offset;
        if position == 0 {
            let attr = self.getattr(dir)?;
            if each(b".", &attr, 1) {
                return Ok(());
            }
            position = 1;
        }
        if position == 1 {
            let parent = if dir == ROOT_INO {
                ROOT_INO
            } else {
                self.mirror
                    .read(|db| db.any_entry_of(dir))?
                    .map_or(ROOT_INO, |(p, _)| p)
            };
            let attr = self.getattr(parent).or_else(|_| self.getattr(dir))?;
            if each(b"..", &attr, 2) {
                return Ok(());
            }
            position = 2;
        }
        for (index, (name, ino)) in handle
            .entries
            .iter()
            .enumerate()
            .skip(position as usize - 2)
        {
            let Ok(attr) = self.getattr(*ino) else {
                continue; // removed since opendir
            };
            if each(name, &attr, index as u64 + 3) {
                break;
            }
        }
        Ok(())
    }

    pub fn releasedir(&self, fh: u64) {
        let Some(handle) = lock(&self.dirs).remove(&fh) else {
            return;
        };
        // A directory removed while open was kept for its handles: the last one
        // forgets it.
        if let Ok(node) = self.mirror.read(|db| db.node(handle.ino))
            && let Err(error) = self.forget_if_unused(node)
        {
            tracing::warn!(ino = handle.ino, "forgetting a removed directory: {error}");
        }
    }
}

/// Makes the local-only file `source`, just renamed over `old`, the server's file
/// `old` was, when it can: `old` is a file the server has and this was its last
/// name. Its content then goes up as that file's next version, and its mode and
/// owner follow if they differ. True if it did.
fn take_place_of(db: &Db<'_>, source: &Node, old: &Node, stamp: Nanos) -> VfsResult<bool> {
    if source.kind != Kind::File || !source.local_only || old.kind != Kind::File {
        return Ok(false);
    }
    if old.local_only || old.nlink > 0 {
        return Ok(false);
    }
    let Some(remote) = db.remote_of(old.ino)? else {
        return Ok(false);
    };
    let ino = source.ino;
    let mut node = db.node(ino)?.ok_or(VfsError::NotFound)?;
    db.set_remote(ino, remote)?;
    node.local_only = false;
    node.dirty = true;
    node.version = old.version;
    db.update_node(&node)?;
    if (node.mode, node.uid, node.gid) != (old.mode, old.uid, old.gid) {
        db.queue(
            &Op::SetAttr {
                ino,
                mode: Some(node.mode),
                uid: Some(node.uid),
                gid: Some(node.gid),
                atime: None,
                mtime: None,
            },
            stamp,
        )?;
    }
    Ok(true)
}

/// Queues `change`, an `Op::SetAttr` of `node` (as updated), for the server, unless it
/// goes in the node's creation. True when queued.
pub(crate) fn queue_attr_change(
    db: &Db<'_>,
    node: &Node,
    change: &Op,
    stamp: Nanos,
) -> VfsResult<bool> {
    if goes_in_its_creation(db, node)? {
        return Ok(false);
    }
    db.queue(change, stamp)?;
    Ok(true)
}

/// True when a change of `node`'s mode, owner or times reaches the server with its
/// creation: a new file whose first commit is still to be sent carries them
/// as they are then (and a commit already on its way is checked against them when its
/// answer comes, `sync::commit`).
fn goes_in_its_creation(db: &Db<'_>, node: &Node) -> VfsResult<bool> {
    Ok(node.kind == Kind::File
        && node.dirty
        && db.remote_of(node.ino)?.is_none()
        && db.create_queued_after(node.ino, 0)?)
}
