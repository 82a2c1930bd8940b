//! Uploading a dirty file and committing it as a version, on the version it was
//! written on top of. Only chunks the server lacks are sent.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use loft_cache::mirror::{Db, Held, Kind, Node, Op};
use loft_remote::client::RemoteResult;
use loft_remote::content::{ChunkIndex, Manifest};
use loft_remote::errors::ErrorKind;
use loft_remote::proto;
use loft_remote::transfer::{UploadStats, upload, upload_small};
use tracing::{debug, info, warn};

use super::Stop;
use crate::attr::now;
use crate::core::{KernelNote, Vfs, lock};
use crate::error::{VfsResult, retry_later};
use crate::feed::{Effects, claim_remote, keep_edit_as_new};
use crate::listing::timestamp;

/// A file uploaded and ready to commit.
struct Prepared {
    ino: u64,
    generation: u64,
    base_version: u64,
    manifest: Manifest,
    request: proto::CommitRequest,
}

/// A dirty file as its upload starts.
struct Snapshot {
    node: Node,
    /// The change generation the upload carries: the file is clean after the commit
    /// only if nothing changed it meanwhile.
    generation: u64,
    file: std::fs::File,
}

/// Largest file uploaded with others in one batch; bigger ones stream on their own.
const SMALL_FILE: u64 = 1 << 20;
/// Bytes of small files held in memory for one batch upload.
const SMALL_BATCH_BYTES: u64 = 32 << 20;

/// Where a commit puts its content.
enum Target<'a> {
    /// The existing server node.
    Existing(u64),
    /// A new file `name` in server directory `parent`.
    New { parent: u64, name: &'a [u8] },
}

impl Vfs {
    /// Uploads a new file and creates it on the server with that content as its
    /// first version, in one commit.
    pub(crate) async fn upload_new(
        self: &Arc<Self>,
        ino: u64,
        parent: u64,
        name: &[u8],
    ) -> Result<(), Stop> {
        self.upload(ino, Target::New { parent, name }).await
    }

    /// Uploads a dirty file the server already knows.
    pub(crate) async fn upload_existing(self: &Arc<Self>, ino: u64) -> Result<(), Stop> {
        let Ok(Some(remote)) = self.mirror.read(|db| db.remote_of(ino)) else {
            return Ok(());
        };
        self.upload(ino, Target::Existing(remote)).await
    }

    async fn upload(self: &Arc<Self>, ino: u64, target: Target<'_>) -> Result<(), Stop> {
        let Some(prepared) = self.prepare(ino, target).await? else {
            return Ok(());
        };
        let reply = self.client.commit(prepared.request.clone()).await;
        self.finish(prepared, reply)
    }

    /// Uploads new files and creates them all in one commit batch (falling back to
    /// one commit each if the batch is refused). `files`: `(ino, parent id, name)`.
    /// Small files are read whole and uploaded together (a few calls for the batch);
    /// the others stream one by one.
    pub(crate) async fn upload_new_batch(
        self: &Arc<Self>,
        files: &[(u64, u64, Vec<u8>)],
    ) -> Result<(), Stop> {
        let mut prepared = Vec::new();
        let mut small: Vec<(Node, u64, Target<'_>)> = Vec::new();
        let mut contents = Vec::new();
        let mut small_bytes = 0;
        for (ino, parent, name) in files {
            let target = Target::New {
                parent: *parent,
                name,
            };
            let Some(snapshot) = self.snapshot(*ino) else {
                continue;
            };
            let size = snapshot.node.size;
            if size <= SMALL_FILE && small_bytes + size <= SMALL_BATCH_BYTES {
                let mut content = Vec::with_capacity(size as usize);
                if let Err(error) = (&snapshot.file).take(size).read_to_end(&mut content) {
                    warn!(ino, "reading a dirty file to upload: {error}");
                    continue;
                }
                small_bytes += size;
                contents.push(content);
                small.push((snapshot.node, snapshot.generation, target));
            } else if let Some(one) = self.prepare_from(snapshot, target).await? {
                prepared.push(one);
            }
        }
        if !small.is_empty() {
            let uploaded = upload_small(self.client.clone(), contents).await;
            if let Some(manifests) = self.uploaded("a batch of new files", uploaded)? {
                for ((node, generation, target), manifest) in small.into_iter().zip(manifests) {
                    prepared.extend(self.prepared(node, generation, target, manifest));
                }
            }
        }
        if prepared.is_empty() {
            return Ok(());
        }
        let requests = prepared.iter().map(|p| p.request.clone()).collect();
        match self.client.commit_batch(requests).await {
            Ok(replies) if replies.len() == prepared.len() => {
                for (one, reply) in prepared.into_iter().zip(replies) {
                    self.finish(one, Ok(reply))?;
                }
                Ok(())
            }
            Err(error) if retry_later(&error) => Err(self.sync_failed(error)),
            _ => {
                // Refused as a whole: commit one by one so one bad file cannot hold
                // back the others.
                for one in prepared {
                    let reply = self.client.commit(one.request.clone()).await;
                    self.finish(one, reply)?;
                }
                Ok(())
            }
        }
    }

    /// Uploads a dirty file's chunks and builds its commit; `None` when there is
    /// nothing to commit (or it failed for good and was logged).
    async fn prepare(
        self: &Arc<Self>,
        ino: u64,
        target: Target<'_>,
    ) -> Result<Option<Prepared>, Stop> {
        match self.snapshot(ino) {
            Some(snapshot) => self.prepare_from(snapshot, target).await,
            None => Ok(None),
        }
    }

    async fn prepare_from(
        self: &Arc<Self>,
        snapshot: Snapshot,
        target: Target<'_>,
    ) -> Result<Option<Prepared>, Stop> {
        let Snapshot {
            node,
            generation,
            file,
        } = snapshot;
        let reader = file.take(node.size);
        let uploaded = upload(self.client.clone(), reader, Arc::new(|_| {})).await;
        let what = format!("upload of inode {}", node.ino);
        let Some(manifest) = self.uploaded(&what, uploaded)? else {
            return Ok(None);
        };
        Ok(self.prepared(node, generation, target, manifest))
    }

    /// A dirty file as its upload starts: its node, change generation and body.
    fn snapshot(&self, ino: u64) -> Option<Snapshot> {
        let Ok(Some(node)) = self.mirror.read(|db| db.node(ino)) else {
            return None;
        };
        if !node.dirty || node.kind != Kind::File {
            return None;
        }
        let generation = lock(&self.pending).get(&ino).map_or(0, |p| p.generation);
        let path = self.bodies.path(ino, node.body);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) => {
                warn!(
                    ino,
                    "dirty file without a body ({error}); committing it empty"
                );
                self.bodies.create_body(ino, node.body, 0).ok();
                std::fs::File::open(&path).ok()?
            }
        };
        Some(Snapshot {
            node,
            generation,
            file,
        })
    }

    /// The outcome of an upload, its bytes counted: `Err` when the server is
    /// unreachable (the round stops), `None` when it failed for good (logged).
    fn uploaded<T>(
        &self,
        what: &str,
        result: RemoteResult<(T, UploadStats)>,
    ) -> Result<Option<T>, Stop> {
        match result {
            Ok((done, stats)) => {
                self.counters
                    .bytes_uploaded
                    .fetch_add(stats.bytes_uploaded, Ordering::Relaxed);
                Ok(Some(done))
            }
            Err(error) if retry_later(&error) => Err(self.sync_failed(error)),
            Err(error) => {
                warn!("{what} failed: {error}");
                *lock(&self.counters.last_error) = Some(error.to_string());
                Ok(None)
            }
        }
    }

    /// The commit of an uploaded file; `None` when an existing file's content turned
    /// out unchanged (it is clean again at once).
    fn prepared(
        &self,
        node: Node,
        generation: u64,
        target: Target<'_>,
        manifest: Manifest,
    ) -> Option<Prepared> {
        let ino = node.ino;
        if let (Target::Existing(_), Some(stored)) = (&target, &node.manifest)
            && let Ok(stored) = Self::decode_manifest(stored)
            && stored.content_hash == manifest.content_hash
            && stored.size == manifest.size
        {
            self.finish_clean(ino, generation, &manifest, node.version);
            return None;
        }
        let (node_id, parent, name, atime) = match target {
            Target::Existing(id) => (id, 0, Vec::new(), None),
            Target::New { parent, name } => (0, parent, name.to_vec(), Some(node.atime)),
        };
        let request = proto::CommitRequest {
            node: node_id,
            base_version: node.version,
            manifest: Some(proto::Manifest::from(&manifest)),
            mtime: Some(timestamp(node.mtime)),
            atime: atime.map(timestamp),
            parent,
            name: name.into(),
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
        };
        Some(Prepared {
            ino,
            generation,
            base_version: node.version,
            manifest,
            request,
        })
    }

    /// Records the server's answer to a commit.
    fn finish(
        self: &Arc<Self>,
        prepared: Prepared,
        reply: Result<proto::CommitReply, loft_remote::client::RemoteError>,
    ) -> Result<(), Stop> {
        let Prepared {
            ino,
            generation,
            base_version,
            manifest,
            request,
        } = prepared;
        let prepared_node = request.node;
        if !matches!(&reply, Ok(reply) if !reply.conflict) {
            self.reconcile.store(true, Ordering::Relaxed);
        }
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) if retry_later(&error) => return Err(self.sync_failed(error)),
            Err(error) if error.kind == ErrorKind::QuotaExceeded => {
                warn!(
                    ino,
                    "commit refused, over quota; the file stays local: {error}"
                );
                *lock(&self.counters.last_error) = Some(error.to_string());
                self.quota_refused(ino);
                return Ok(());
            }
            Err(error) if error.kind == ErrorKind::NotFound && prepared_node == 0 => {
                // The folder it goes into is gone on the server: the file stays
                // dirty and stranded (`sync::stranded`).
                info!(ino, "a new file's folder is gone on the server: {error}");
                lock(&self.stranded).insert(ino);
                self.wake.notify_one();
                return Ok(());
            }
            Err(error) if error.kind == ErrorKind::NotFound => {
                // The server node is gone: these bytes become a new file where the
                // file is here.
                let mut effects = Effects::default();
                let kept = self.tx(|db| match db.node(ino)? {
                    Some(node) if node.dirty => keep_edit_as_new(db, &node, &mut effects),
                    _ => Ok(()),
                });
                if let Err(kept) = kept {
                    warn!(ino, "keeping a file whose server node is gone: {kept}");
                }
                self.after_changes(effects);
                self.wake.notify_one();
                return Ok(());
            }
            Err(error) => {
                warn!(ino, "commit refused: {error}");
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                *lock(&self.counters.last_error) = Some(error.to_string());
                // Keep the bytes; stop retrying a commit the server will not take.
                self.finish_clean(ino, generation, &manifest, base_version);
                return Ok(());
            }
        };
        self.quota_committed(ino);
        let Some(committed) = reply.node else {
            return Ok(());
        };
        debug!(
            ino,
            id = committed.id,
            version = reply.version,
            conflict = reply.conflict,
            "committed"
        );
        let mut effects = Effects::default();
        let claimed = self.tx(|db| {
            claim_remote(db, ino, committed.id, &mut effects)?;
            if prepared_node == 0 {
                send_attributes_changed_since(db, ino, &request)?;
            }
            Ok(())
        });
        if let Err(error) = claimed {
            warn!(ino, "recording a committed file's server id: {error}");
        }
        self.after_changes(effects);
        if reply.conflict {
            self.became_conflicted_copy(ino, &reply.conflict_name);
        }
        self.finish_clean(ino, generation, &manifest, reply.version);
        Ok(())
    }

    /// Records a committed version; the file turns clean unless it changed meanwhile
    /// (then it stays dirty, now based on `version`).
    fn finish_clean(&self, ino: u64, generation: u64, manifest: &Manifest, version: u64) {
        let encoded = Self::encode_manifest(manifest);
        let index = ChunkIndex::new(manifest);
        let stamp = now();
        // Holding `files` keeps writers from opening the file meanwhile.
        let mut files = lock(&self.files);
        let writers = files.get(&ino).map_or(0, |f| f.writers);
        let unchanged = writers == 0
            && lock(&self.pending)
                .get(&ino)
                .is_none_or(|p| p.generation == generation);
        let result = self.tx(|db| {
            let Some(mut node) = db.node(ino)? else {
                return Ok(0);
            };
            node.version = version;
            node.manifest = Some(encoded.clone());
            if !unchanged || node.size != manifest.size {
                db.update_node(&node)?;
                return Ok(0);
            }
            node.dirty = false;
            node.local_bytes = 0;
            db.update_node(&node)?;
            for (idx, chunk) in manifest.chunks.iter().enumerate() {
                db.hold(
                    Held {
                        ino,
                        body: node.body,
                        idx: idx as u64,
                        offset: index.start_of(idx).unwrap_or(0),
                        len: chunk.length.into(),
                    },
                    stamp,
                )?;
            }
            Ok(manifest.size)
        });
        match result {
            Ok(held) if held > 0 || (unchanged && manifest.size == 0) => {
                lock(&self.pending).remove(&ino);
                if let Some(open) = files.get_mut(&ino) {
                    open.held = (0..manifest.chunks.len() as u64).collect();
                }
                self.held_total.fetch_add(held, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(error) => warn!(ino, "recording a commit: {error}"),
        }
        drop(files);
        self.trim_to_budget();
    }

    /// The server kept someone else's content under this file's name and put ours
    /// beside it: the local entry takes the conflicted copy's name, and the
    /// directory is listed again to show the other version.
    fn became_conflicted_copy(&self, ino: u64, conflict_name: &[u8]) {
        let moved = self.tx(|db| {
            let Some((parent, name)) = db.any_entry_of(ino)? else {
                return Ok(None);
            };
            db.remove_entry(parent, &name)?;
            db.add_entry(parent, conflict_name, ino)?;
            if let Some(mut dir) = db.node(parent)? {
                dir.listed = false;
                db.update_node(&dir)?;
            }
            Ok(Some((parent, name)))
        });
        if let Ok(Some((parent, name))) = moved {
            info!(
                "conflict: {} kept as {}",
                String::from_utf8_lossy(&name),
                String::from_utf8_lossy(conflict_name)
            );
            self.tell_kernel(KernelNote::Entry {
                parent,
                name: name.clone(),
            });
            self.tell_kernel(KernelNote::Inode(parent));
        }
    }
}

/// A new file's mode, owner and time changed after its creation was sent (they went
/// with it, `tree::goes_in_its_creation`): they follow as a change of their own.
fn send_attributes_changed_since(
    db: &Db<'_>,
    ino: u64,
    sent: &proto::CommitRequest,
) -> VfsResult<()> {
    let Some(node) = db.node(ino)? else {
        return Ok(());
    };
    let changed = |now: u32, then: u32| (now != then).then_some(now);
    let (mode, uid, gid) = (
        changed(node.mode, sent.mode),
        changed(node.uid, sent.uid),
        changed(node.gid, sent.gid),
    );
    let mtime = (sent.mtime != Some(timestamp(node.mtime))).then_some(node.mtime);
    let atime = (sent.atime != Some(timestamp(node.atime))).then_some(node.atime);
    if mode.is_some() || uid.is_some() || gid.is_some() || mtime.is_some() || atime.is_some() {
        let change = Op::SetAttr {
            ino,
            mode,
            uid,
            gid,
            atime,
            mtime,
        };
        db.queue(&change, now())?;
    }
    Ok(())
}
