//! Filling the mirror from the server: the root's id, and a directory's entries the
//! first time something looks inside it.

use std::sync::atomic::Ordering;

use loft_cache::mirror::{Db, Kind, Node, ROOT_INO};
use loft_remote::proto;

use crate::attr::Nanos;
use crate::core::{Vfs, lock};
use crate::error::{VfsError, VfsResult};
use crate::feed::{Effects, drop_stale_names, refresh_node};

fn nanos(time: &Option<proto::Timestamp>) -> Nanos {
    time.as_ref()
        .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
        .unwrap_or(0)
}

/// A wire timestamp from nanoseconds since the epoch.
pub(crate) fn timestamp(nanos: Nanos) -> proto::Timestamp {
    proto::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as u32,
    }
}

/// Copies the server's view of a node into `node` (content fields only when the
/// version changed).
pub(crate) fn apply_remote(node: &mut Node, remote: &proto::Node) {
    node.kind = Kind::from_wire(remote.kind);
    node.mode = remote.mode & 0o7777;
    node.uid = remote.uid;
    node.gid = remote.gid;
    node.rdev = remote.rdev;
    node.atime = nanos(&remote.atime);
    node.mtime = nanos(&remote.mtime);
    node.ctime = nanos(&remote.ctime);
    node.btime = nanos(&remote.btime);
    node.symlink = remote.symlink_target.to_vec();
    if node.kind != Kind::Directory {
        node.nlink = remote.nlink.max(1);
    }
    // Versions only move forwards: a change replayed from the feed after a newer
    // listing leaves the content alone.
    if !node.dirty && remote.version > node.version {
        node.version = remote.version;
        node.manifest = None;
        node.size = remote.size;
    } else if !node.dirty && remote.version == node.version {
        node.size = remote.size;
    }
}

/// Inserts (or refreshes) the node behind a server entry; returns its inode. A known
/// node is refreshed as a change from the feed would: a newer version of a clean
/// file leaves its old bytes behind.
pub(crate) fn upsert_remote(
    db: &Db<'_>,
    remote: &proto::Node,
    pinned: bool,
    effects: &mut Effects,
) -> VfsResult<u64> {
    if let Some(ino) = db.ino_of_remote(remote.id)?
        && db.node(ino)?.is_some()
    {
        refresh_node(db, ino, remote, effects)?;
        return Ok(ino);
    }
    let mut node = Node::new(Kind::from_wire(remote.kind), 0, 0);
    apply_remote(&mut node, remote);
    node.nlink = if node.kind == Kind::Directory {
        2
    } else {
        remote.nlink.max(1)
    };
    node.pinned = pinned;
    node.listed = node.kind != Kind::Directory;
    // A node the server says has no xattrs has none to fetch.
    node.xattrs_listed = remote.has_xattrs == Some(false);
    let ino = db.insert_node(&node)?;
    db.set_remote(ino, remote.id)?;
    Ok(ino)
}

impl Vfs {
    /// The server id of the drive's root, asking the server the first time.
    pub(crate) fn root_remote(&self) -> VfsResult<u64> {
        if let Some(id) = self.mirror.read(|db| db.remote_of(ROOT_INO))? {
            return Ok(id);
        }
        let client = self.client.clone();
        let root = self
            .rt
            .block_on(async move { client.resolve(b"/").await })
            .map_err(|e| self.remote_failed(e))?;
        self.counters.online.store(true, Ordering::Relaxed);
        self.tx(|db| {
            db.set_remote(ROOT_INO, root.id)?;
            if let Some(mut node) = db.node(ROOT_INO)? {
                node.mode = root.mode & 0o7777;
                node.uid = root.uid;
                node.gid = root.gid;
                db.update_node(&node)?;
            }
            Ok(())
        })?;
        Ok(root.id)
    }

    /// Every entry of the server directory `remote`, page by page.
    pub(crate) fn fetch_listing(
        &self,
        remote: u64,
    ) -> Result<Vec<proto::DirEntry>, loft_remote::client::RemoteError> {
        let client = self.client.clone();
        self.rt.block_on(async move {
            let mut entries = Vec::new();
            let mut after = Vec::new();
            loop {
                let page = client.list(remote, &after, 0).await?;
                if let Some(last) = page.entries.last() {
                    after = last.name.to_vec();
                }
                let more = page.more && !page.entries.is_empty();
                entries.extend(page.entries);
                if !more {
                    return Ok(entries);
                }
            }
        })
    }

    /// Makes sure the mirror holds `dir`'s entries. Offline, an unlisted directory
    /// shows what the mirror has (its local entries).
    pub(crate) fn ensure_listed(&self, dir: u64) -> VfsResult<()> {
        let node = self.node(dir)?;
        if node.kind != Kind::Directory {
            return Err(VfsError::NotDir);
        }
        if node.listed {
            return Ok(());
        }
        let _guard = lock(&self.listing_lock);
        if self.node(dir)?.listed {
            return Ok(());
        }
        let remote = if dir == ROOT_INO {
            match self.root_remote() {
                Ok(id) => Some(id),
                Err(VfsError::Offline(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
        } else {
            self.mirror.read(|db| db.remote_of(dir))?
        };
        let Some(remote) = remote else {
            // Created here and not sent yet: nothing on the server to list.
            self.tx(|db| {
                if let Some(mut node) = db.node(dir)? {
                    node.listed = true;
                    db.update_node(&node)?;
                }
                Ok(())
            })?;
            return Ok(());
        };
        let entries = self.fetch_listing(remote);
        let entries = match entries {
            Ok(entries) => entries,
            Err(error) => {
                return match self.remote_failed(error) {
                    VfsError::Offline(_) => Ok(()),
                    other => Err(other),
                };
            }
        };
        self.counters.online.store(true, Ordering::Relaxed);
        let mut effects = Effects::default();
        let mut behind = false;
        self.tx(|db| {
            let Some(parent) = db.node(dir)? else {
                return Ok(());
            };
            let mut subdirs = 0;
            for entry in &entries {
                let Some(remote) = &entry.node else { continue };
                if let Some(known) = db.lookup(dir, &entry.name)? {
                    // A folder listed again (after a conflict, or a folder made
                    // here that proved to be one the server had) may name a file
                    // whose newer version passed this device by: the sync engine
                    // lists the folders again once its journal is drained.
                    behind |= db.remote_of(known)? == Some(remote.id)
                        && db.node(known)?.is_some_and(|n| n.version < remote.version);
                    continue;
                }
                if let Some(known) = db.ino_of_remote(remote.id)?
                    && db.rename_queued_of(known)?
                {
                    continue; // moved here, the move not sent yet
                }
                let ino = upsert_remote(db, remote, parent.pinned, &mut effects)?;
                drop_stale_names(db, ino, remote, &mut effects)?;
                db.add_entry(dir, &entry.name, ino)?;
                if Kind::from_wire(remote.kind) == Kind::Directory {
                    subdirs += 1;
                }
            }
            // Read again: a stale name dropped above may have been in this folder.
            let mut parent = db.node(dir)?.unwrap_or(parent);
            parent.listed = true;
            parent.nlink += subdirs;
            db.update_node(&parent)?;
            Ok(())
        })?;
        // A node met under a new name left its old one, and one met at a newer
        // version its old bytes.
        self.after_changes(effects);
        if behind {
            self.reconcile.store(true, Ordering::Relaxed);
            self.wake.notify_one();
        }
        Ok(())
    }
}
