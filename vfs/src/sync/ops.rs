//! Sending one queued operation, with local inodes mapped to server ids.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use loft_cache::mirror::{Kind, Op, Queued, ROOT_INO};
use loft_remote::client::RemoteError;
use loft_remote::errors::ErrorKind;
use loft_remote::proto;
use tracing::{debug, warn};

use super::removals::remove_request;
use super::{Applied, NewFile, Stop};
use crate::core::{KernelNote, Vfs, lock};
use crate::error::retry_later;
use crate::feed::{
    Effects, claim_remote, keep_edit_as_new, refresh_node, remove_entry, requeue_created,
};
use crate::listing::{apply_remote, timestamp};

fn unqueued_since(queued: i64) -> Duration {
    let age = crate::attr::now().saturating_sub(queued).max(0);
    Duration::from_nanos(age as u64)
}

impl Vfs {
    /// The server id of a local inode, if the server knows it.
    pub(crate) async fn remote_id(&self, ino: u64) -> Result<Option<u64>, Stop> {
        if let Ok(Some(id)) = self.mirror.read(|db| db.remote_of(ino)) {
            return Ok(Some(id));
        }
        if ino != ROOT_INO {
            return Ok(None);
        }
        match self.client.resolve(b"/").await {
            Ok(root) => {
                let _ = self.mirror.write(|db| db.set_remote(ROOT_INO, root.id));
                Ok(Some(root.id))
            }
            Err(error) => Err(self.sync_failed(error)),
        }
    }

    /// Classifies a failed call: unreachable stops the round; anything else is
    /// returned to the caller as a refusal.
    pub(crate) fn sync_failed(&self, error: RemoteError) -> Stop {
        if error.is_unavailable() {
            self.counters.online.store(false, Ordering::Relaxed);
            warn!("server unreachable, changes stay queued: {}", error.message);
        } else if retry_later(&error) {
            warn!("server busy, changes stay queued: {}", error.message);
        }
        *lock(&self.counters.last_error) = Some(error.to_string());
        Stop::Offline
    }

    fn refused(&self, what: &str, error: &RemoteError) -> Applied {
        warn!("server refused {what}: {error}; the change stays local only");
        self.reconcile.store(true, Ordering::Relaxed);
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        *lock(&self.counters.last_error) = Some(format!("{what}: {error}"));
        Applied::Done
    }

    /// A queued creation of a file that is closed, quiet and dirty: it can go to the
    /// server with its content in one commit. Returns `(ino, parent id, name)`.
    pub(crate) async fn ready_new_file(
        &self,
        queued: &Queued,
    ) -> Result<Option<(u64, u64, Vec<u8>)>, Stop> {
        let Op::Create {
            ino,
            parent,
            name,
            kind,
            ..
        } = &queued.op
        else {
            return Ok(None);
        };
        if *kind != Kind::File as u8 || self.now_local_only(&queued.op) {
            return Ok(None);
        }
        let dirty = matches!(self.mirror.read(|db| db.node(*ino)), Ok(Some(n)) if n.dirty);
        if !dirty || self.writers(*ino) > 0 || self.not_ready_until(*ino).is_some() {
            return Ok(None);
        }
        Ok(self
            .remote_id(*parent)
            .await?
            .map(|parent_id| (*ino, parent_id, name.clone())))
    }

    /// Folds the attribute changes queued right after `queued` for the same node
    /// into it (tar's `chown`, `chmod` and times of each folder: one call instead
    /// of three). Returns the journal positions that sending `queued` now covers:
    /// its own, then those folded into it. Only for a node the server has, so a
    /// folded operation is never compared with the journal's (`rewritten`).
    pub(crate) fn fold_set_attrs(
        &self,
        queued: &mut Queued,
        rest: &mut VecDeque<Queued>,
    ) -> Vec<i64> {
        let mut sent = vec![queued.seq];
        let Op::SetAttr { ino, .. } = queued.op else {
            return sent;
        };
        if !matches!(self.mirror.read(|db| db.remote_of(ino)), Ok(Some(_))) {
            return sent;
        }
        while let Some(next) = rest.front()
            && queued.op.absorb_set_attr(&next.op)
        {
            sent.push(next.seq);
            rest.pop_front();
        }
        sent
    }

    /// Folds the naming of a new file into its creation. `queued` creates the file
    /// under a temporary name, and the operations right after it give the file its
    /// final name and take the temporary one away: git's `link` then `unlink` of each
    /// object it writes, or a `rename` that replaced nothing (rsync's and many
    /// programs' write-then-rename). The file is then created where it ends up, as
    /// one more file of the group, instead of three calls or two. Returns the
    /// journal positions creating `new_file` now covers, its own first.
    ///
    /// Only operations that follow the creation directly are folded, so nothing
    /// else queued can have seen the temporary name. A rename that replaced an
    /// entry is never folded: on the server it makes a new version of the file it
    /// replaces, which keeps that file's history and shares.
    pub(crate) async fn fold_naming_into_creation(
        &self,
        queued: &Queued,
        new_file: &mut NewFile,
        rest: &mut VecDeque<Queued>,
    ) -> Result<Vec<i64>, Stop> {
        let mut sent = vec![queued.seq];
        let Op::Create {
            ino, parent, name, ..
        } = &queued.op
        else {
            return Ok(sent);
        };
        // The operations that may name it can lie past the end of the batch read
        // (or have been queued after it was read): read on as far as they would go.
        if rest.len() < 2 {
            let last = rest.back().map_or(queued.seq, |q| q.seq);
            let wanted = 2 - rest.len() as u32;
            if let Ok(more) = self.mirror.read(|db| db.queued_after(last, wanted)) {
                rest.extend(more);
            }
        }
        let removes_temporary = |op: &Op| {
            matches!(op, Op::Remove { ino: gone, parent: from, name: old, directory: false }
                if gone == ino && from == parent && old == name)
        };
        let (final_parent, final_name, folded) = match (rest.front(), rest.get(1)) {
            (
                Some(Queued {
                    op:
                        Op::Rename {
                            ino: moved,
                            parent: from,
                            name: old,
                            new_parent,
                            new_name,
                            exchange: false,
                            replaced: false,
                            ..
                        },
                    ..
                }),
                _,
            ) if moved == ino && from == parent && old == name => (*new_parent, new_name, 1),
            (
                Some(Queued {
                    op:
                        Op::Link {
                            ino: linked,
                            parent: to,
                            name: new_name,
                        },
                    ..
                }),
                Some(unlink),
            ) if linked == ino && removes_temporary(&unlink.op) => (*to, new_name, 2),
            _ => return Ok(sent),
        };
        let Some(parent_id) = self.remote_id(final_parent).await? else {
            return Ok(sent);
        };
        *new_file = (*ino, parent_id, final_name.clone());
        sent.extend(rest.drain(..folded).map(|op| op.seq));
        Ok(sent)
    }

    /// True when the journal's entry for `queued` changed after it was read.
    fn rewritten(&self, queued: &Queued) -> bool {
        matches!(self.mirror.read(|db| db.queued_op(queued.seq)), Ok(Some(op)) if op != queued.op)
    }

    /// True when the node `op` changes was made local-only after it was queued.
    pub(crate) fn now_local_only(&self, op: &Op) -> bool {
        op.subject().is_some_and(
            |ino| matches!(self.mirror.read(|db| db.node(ino)), Ok(Some(node)) if node.local_only),
        )
    }

    /// After a rename found its source gone: if the target name already holds this
    /// node (the same server node, or a file with the same content), the rename was
    /// carried out before and its reply lost.
    async fn rename_landed(
        &self,
        ino: u64,
        new_parent: u64,
        new_name: &[u8],
    ) -> Option<proto::RenameReply> {
        let there = self.client.lookup(new_parent, new_name).await.ok()?;
        let (remote, local) = self
            .mirror
            .read(|db| Ok::<_, loft_cache::CacheError>((db.remote_of(ino)?, db.node(ino)?)))
            .ok()?;
        let local = local?;
        if Kind::from_wire(there.kind) != local.kind {
            return None;
        }
        let same_node = remote == Some(there.id);
        let same_content = local.kind == Kind::File
            && local
                .manifest
                .as_deref()
                .and_then(|m| Self::decode_manifest(m).ok())
                .is_some_and(|m| {
                    m.content_hash.as_slice() == there.content_hash.as_ref() && m.size == there.size
                });
        (same_node || same_content).then(|| proto::RenameReply {
            node: Some(there),
            ..Default::default()
        })
    }

    /// After a rename found its source gone and had not landed: if the server no
    /// longer has the node at all, this device follows. Unsent edits are kept as a
    /// new file (a folder holding some is made again); anything else goes. A node
    /// moved elsewhere is placed by the change feed.
    async fn rename_source_gone(self: &Arc<Self>, ino: u64) {
        let Ok(Some(id)) = self.mirror.read(|db| db.remote_of(ino)) else {
            return;
        };
        match self.client.stat(id).await {
            Err(e) if e.kind == ErrorKind::NotFound => {}
            _ => return,
        }
        let mut effects = Effects::default();
        let followed = self.tx(|db| {
            let Some(node) = db.node(ino)? else {
                return Ok(());
            };
            if node.kind == Kind::File && node.dirty {
                return keep_edit_as_new(db, &node, &mut effects);
            }
            if let Some((parent, name)) = db.any_entry_of(ino)? {
                remove_entry(db, parent, &name, ino, &mut effects)?;
            }
            Ok(())
        });
        if let Err(error) = followed {
            warn!(ino, "following a node deleted on the server: {error}");
        }
        self.after_changes(effects);
    }

    /// Lists folder `dir` again when it is next looked at, so entries the server
    /// has and this device dropped show again.
    fn show_again(&self, dir: u64) {
        let unlisted = self.tx(|db| {
            if let Some(mut node) = db.node(dir)? {
                node.listed = false;
                db.update_node(&node)?;
            }
            Ok(())
        });
        if let Err(error) = unlisted {
            warn!(dir, "marking a folder to list again: {error}");
        }
        self.tell_kernel(KernelNote::Inode(dir));
    }

    /// Takes an empty file made here off `(parent, name)` and lists the folder
    /// again, so that the server's entry of that name shows instead.
    fn yield_name(&self, ino: u64, parent: u64, name: &[u8]) {
        let yielded = self.tx(|db| {
            let empty = db.node(ino)?.is_some_and(|n| !n.dirty && n.size == 0);
            if !empty || db.lookup(parent, name)? != Some(ino) {
                return Ok(false);
            }
            db.remove_entry(parent, name)?;
            if let Some(mut node) = db.node(ino)? {
                node.nlink = node.nlink.saturating_sub(1);
                db.update_node(&node)?;
            }
            if let Some(mut dir) = db.node(parent)? {
                dir.listed = false;
                db.update_node(&dir)?;
            }
            Ok(true)
        });
        match yielded {
            Ok(true) => {
                if let Ok(node) = self.node(ino)
                    && node.nlink == 0
                    && !self.is_open(ino)
                {
                    let _ = self.forget_node(&node);
                }
                self.tell_kernel(KernelNote::Entry {
                    parent,
                    name: name.to_vec(),
                });
                self.tell_kernel(KernelNote::Inode(parent));
            }
            Ok(false) => {}
            Err(error) => warn!(ino, "giving way to the server's file: {error}"),
        }
    }

    /// True when `ino`'s creation waits in the journal after position `seq`.
    fn created_later(&self, ino: u64, seq: i64) -> bool {
        self.mirror
            .read(|db| db.create_queued_after(ino, seq))
            .unwrap_or(false)
    }

    /// A node in this device's tree that the server does not know and whose
    /// creation is not queued (its mapping went to another inode, or its creation
    /// failed): its creation is queued now, once, so that operations naming it
    /// can follow. False if it was tried before or is not in the tree.
    fn make_again(&self, ino: u64) -> bool {
        if ino == ROOT_INO || !lock(&self.made_again).insert(ino) {
            return false;
        }
        let queued = self.tx(|db| {
            let (Some(node), Some((parent, name))) = (db.node(ino)?, db.any_entry_of(ino)?) else {
                return Ok(false);
            };
            if node.local_only {
                return Ok(false);
            }
            requeue_created(db, parent, &name, &node)?;
            Ok(true)
        });
        match queued {
            Ok(queued) => queued,
            Err(error) => {
                warn!(ino, "queueing a node's creation again: {error}");
                false
            }
        }
    }

    /// Maps a created node to its server node. One that existed already (made by
    /// another device, or by this create sent before) takes the server's attributes,
    /// and a folder is listed again, so that its entries on the server join the ones
    /// made here.
    fn created(self: &Arc<Self>, ino: u64, remote: &proto::Node, existing: bool) {
        debug!(ino, id = remote.id, existing, "created on the server");
        let mut effects = Effects::default();
        let mapped = self.tx(|db| {
            claim_remote(db, ino, remote.id, &mut effects)?;
            if existing && let Some(mut node) = db.node(ino)? {
                apply_remote(&mut node, remote);
                if node.kind == Kind::Directory {
                    node.listed = false;
                }
                db.update_node(&node)?;
            }
            Ok(())
        });
        if let Err(error) = mapped {
            warn!(ino, "recording a created node: {error}");
        }
        self.after_changes(effects);
        if existing {
            self.tell_kernel(KernelNote::Inode(ino));
        }
    }

    /// Sends `queued.op`.
    pub(crate) async fn apply(self: &Arc<Self>, queued: &Queued) -> Result<Applied, Stop> {
        if self.now_local_only(&queued.op) {
            return Ok(Applied::Done);
        }
        macro_rules! ids {
            ($($ino:expr),+) => {
                ( $( match self.remote_id($ino).await? {
                    Some(id) => id,
                    None if self.created_later($ino, queued.seq) || self.make_again($ino) => {
                        // Its node is to be made again further on (a folder deleted
                        // elsewhere, kept here for what it held): wait behind it.
                        if let Err(error) = self.mirror.write(|db| db.push(&queued.op, queued.queued)) {
                            warn!("updating the outbound journal: {error}");
                        }
                        return Ok(Applied::Done);
                    }
                    None if self.rewritten(queued) => return Ok(Applied::Rewritten),
                    None => {
                        warn!(?queued.op, "skipped: a node it names is unknown to the server");
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        // The node it changes may be left with nothing queued to
                        // send it (its creation went the same way): checked once,
                        // as a stranded node.
                        if let Some(subject) = queued.op.subject() {
                            self.strand_once(subject);
                        }
                        return Ok(Applied::Done);
                    }
                } ),+ )
            };
        }
        debug!(seq = queued.seq, op = ?queued.op, "sending");
        let outcome = match &queued.op {
            Op::Create {
                ino,
                parent,
                name,
                kind,
                mode,
                uid,
                gid,
                rdev,
                symlink,
                mtime,
            } => {
                if self.remote_id(*ino).await?.is_some() {
                    // Made on the server meanwhile: a commit in flight when the
                    // creation was queued (another device had deleted the file) came
                    // back as a conflicted copy. Creating it again would put an
                    // empty file under the old name.
                    debug!(ino, "already on the server; not created again");
                    return Ok(Applied::Done);
                }
                let parent_id = ids!(*parent);
                if *kind == Kind::File as u8 {
                    let node = self.mirror.read(|db| db.node(*ino)).ok().flatten();
                    if let Some(node) = node.filter(|n| n.dirty) {
                        let busy = self.writers(*ino) > 0 || self.not_ready_until(*ino).is_some();
                        if busy && unqueued_since(queued.queued) < self.config.create_wait {
                            return Ok(Applied::Wait);
                        }
                        if !busy {
                            self.upload_new(node.ino, parent_id, name).await?;
                            return Ok(Applied::Done);
                        }
                    }
                }
                let request = proto::CreateRequest {
                    parent: parent_id,
                    name: name.clone().into(),
                    kind: i32::from(*kind),
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    symlink_target: symlink.clone().into(),
                    rdev: *rdev,
                    // A folder of that name on the server is taken as this one:
                    // another device made it too, or this create was sent before and
                    // its reply lost. Anything else must be new.
                    exclusive: *kind != Kind::Directory as u8,
                    mtime: Some(timestamp(*mtime)),
                };
                let sent_mtime = request.mtime;
                match self.client.create(request).await {
                    Ok(node) => {
                        let existing = node.mtime != sent_mtime;
                        self.created(*ino, &node, existing);
                        Ok(())
                    }
                    Err(e) if e.kind == ErrorKind::NotFound => {
                        lock(&self.stranded).insert(*ino);
                        Err(e)
                    }
                    Err(e) if e.kind == ErrorKind::AlreadyExists && *kind == Kind::File as u8 => {
                        // An empty file made here while the name was taken there
                        // (or sent before, its reply lost): the server's file shows.
                        self.yield_name(*ino, *parent, name);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Op::Link { ino, parent, name } => {
                let (node, parent) = ids!(*ino, *parent);
                self.client.link(node, parent, name).await.map(|_| ())
            }
            Op::Rename {
                ino,
                parent,
                name,
                new_parent,
                new_name,
                no_replace,
                exchange,
                ..
            } => {
                let (parent_id, new_parent_id) = ids!(*parent, *new_parent);
                // The node itself, so that a name another device gave to another
                // node since (or a conflict that forked this one) is not moved.
                let node = self.remote_id(*ino).await?.unwrap_or(0);
                let request = proto::RenameRequest {
                    parent: parent_id,
                    name: name.clone().into(),
                    new_parent: new_parent_id,
                    new_name: new_name.clone().into(),
                    no_replace: *no_replace,
                    exchange: *exchange,
                    node,
                };
                let renamed = match self.client.rename(request).await {
                    Err(e) if e.kind == ErrorKind::NotFound => self
                        .rename_landed(*ino, new_parent_id, new_name)
                        .await
                        .ok_or(e),
                    other => other,
                };
                match renamed {
                    Ok(reply) => {
                        if let Some(node) = reply.node {
                            // Over a file, the target keeps its id and history and
                            // the moved content becomes its new version.
                            let mut effects = Effects::default();
                            let _ = self.tx(|db| {
                                // Only then: the node's own later versions reach it
                                // through the feed, with their content.
                                let took_target = db.remote_of(*ino)? != Some(node.id);
                                claim_remote(db, *ino, node.id, &mut effects)?;
                                if took_target
                                    && let Some(mut local) = db.node(*ino)?
                                    && local.kind == Kind::File
                                    && local.version != node.version
                                {
                                    // What moved is the server's current content of
                                    // the source, which another device may have
                                    // edited since this one last saw it.
                                    let same = local.manifest.as_deref().is_some_and(|m| {
                                        Self::decode_manifest(m).is_ok_and(|m| {
                                            m.content_hash[..] == node.content_hash[..]
                                        })
                                    });
                                    if local.dirty || same {
                                        local.version = node.version;
                                        db.update_node(&local)?;
                                    } else {
                                        refresh_node(db, *ino, &node, &mut effects)?;
                                    }
                                }
                                Ok(())
                            });
                            self.after_changes(effects);
                            self.renamed_here
                                .record(*ino, *new_parent, new_name, node.id);
                        }
                        Ok(())
                    }
                    Err(e) if e.kind == ErrorKind::NotFound => {
                        self.rename_source_gone(*ino).await;
                        Err(e)
                    }
                    Err(e) => Err(e),
                }
            }
            Op::Remove {
                ino,
                parent,
                name,
                directory,
            } => {
                let parent_id = ids!(*parent);
                // The node itself, so that what another device put under the name
                // since is not taken away with it.
                let node = match *ino {
                    0 => 0,
                    ino => match self.remote_id(ino).await? {
                        Some(node) => node,
                        None => {
                            debug!(ino, "not removed on the server: it never reached it");
                            return Ok(Applied::Done);
                        }
                    },
                };
                let request = remove_request(parent_id, name, *directory, node);
                match self.client.remove(request).await {
                    Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
                    Err(e) if e.kind == ErrorKind::NotEmpty => {
                        // Empty here, not there: another device put something in
                        // it. The folder comes back with what the server holds.
                        self.show_again(*parent);
                        Err(e)
                    }
                    other => other,
                }
            }
            Op::SetAttr {
                ino,
                mode,
                uid,
                gid,
                atime,
                mtime,
            } => {
                let id = ids!(*ino);
                let request = proto::SetAttrRequest {
                    id,
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    atime: atime.map(timestamp),
                    mtime: mtime.map(timestamp),
                };
                self.client.set_attr(request).await.map(|_| ())
            }
            Op::SetXattr { ino, name, value } => {
                let id = ids!(*ino);
                self.client.set_xattr(id, name, value, 0).await
            }
            Op::RemoveXattr { ino, name } => {
                let id = ids!(*ino);
                match self.client.remove_xattr(id, name).await {
                    Err(e) if e.kind == ErrorKind::NoAttribute => Ok(()),
                    other => other,
                }
            }
        };
        match outcome {
            Ok(()) => Ok(Applied::Done),
            Err(error) if retry_later(&error) => Err(self.sync_failed(error)),
            Err(error) => Ok(self.refused(&format!("{:?}", queued.op), &error)),
        }
    }
}
