//! Chunk records, versions and commits.

use std::collections::BTreeSet;

use loft_remote::content::{ChunkId, Manifest};
use loft_remote::errors::ErrorKind;
use loft_remote::proto::{self, ChangeKind, NodeKind};
use prost::Message;

use super::access;
use super::db::{Db, Row, args};
use super::quota;
use super::rows::{self, NodeRow};
use super::tree::{Write, any_dentry};
use crate::error::{Result, ServerError};
use crate::meta::{
    Caller, ChunkRecord, CommitOp, CommitOutcome, Nanos, RenameOp, RenameOutcome, StoredChunkRef,
    to_timestamp,
};
use loft_remote::conflict_name::conflicted_copy_name;

/// "May the caller use this stored chunk?": it uploaded it recently, or a version it can
/// read references it. Parameters: ?1 chunk id, ?2 user id, ?3 oldest upload time honoured.
const USABLE: &str = "EXISTS(SELECT 1 FROM uploads WHERE user_id = ?2 AND chunk = ?1 AND uploaded > ?3) \
     OR EXISTS(SELECT 1 FROM version_chunks vc JOIN versions v ON v.id = vc.version \
               JOIN inodes i ON i.id = v.inode JOIN ns_members m ON m.ns = i.ns AND m.user_id = ?2 \
               WHERE vc.chunk = ?1)";

fn usable(
    db: &dyn Db,
    caller: &Caller,
    id: &ChunkId,
    upload_cutoff: Nanos,
) -> Result<Option<ChunkRecord>> {
    let sql = format!(
        "SELECT length, stored_length, compressed FROM chunks WHERE id = ?1 AND doomed IS NULL AND ({USABLE})"
    );
    let record = |row: Row| {
        Ok(ChunkRecord {
            id: *id,
            length: row.u32(0)?,
            stored_length: row.u32(1)?,
            compressed: row.bool(2)?,
        })
    };
    db.query_opt(&sql, args![&id.0, caller.user_id, upload_cutoff])?
        .map(record)
        .transpose()
}

pub fn usable_chunks(
    db: &dyn Db,
    caller: &Caller,
    ids: &[ChunkId],
    cutoff: Nanos,
) -> Result<Vec<bool>> {
    ids.iter()
        .map(|id| Ok(usable(db, caller, id, cutoff)?.is_some()))
        .collect()
}

pub fn readable_chunks(
    db: &dyn Db,
    caller: &Caller,
    ids: &[ChunkId],
    cutoff: Nanos,
) -> Result<Vec<Option<ChunkRecord>>> {
    ids.iter()
        .map(|id| usable(db, caller, id, cutoff))
        .collect()
}

pub fn record_chunk(db: &dyn Db, caller: &Caller, chunk: &ChunkRecord, now: Nanos) -> Result<bool> {
    // A pruning pass deletes doomed chunks from the store: the bytes just stored may go
    // with them, so the uploader must send them again once the pass has forgotten them.
    let doomed = db
        .query_opt(
            "SELECT 1 FROM chunks WHERE id = ?1 AND doomed IS NOT NULL",
            args![&chunk.id.0[..]],
        )?
        .is_some();
    if doomed {
        return Err(ServerError::new(
            ErrorKind::Unavailable,
            format!(
                "chunk {} is being deleted; upload it again shortly",
                chunk.id
            ),
        ));
    }
    let inserted = db.execute(
        "INSERT INTO chunks(id, length, stored_length, compressed, created) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (id) DO NOTHING",
        args![&chunk.id.0[..], chunk.length, chunk.stored_length, chunk.compressed, now],
    )?;
    db.execute(
        "INSERT INTO uploads(user_id, chunk, uploaded) VALUES (?1, ?2, ?3) \
         ON CONFLICT (user_id, chunk) DO UPDATE SET uploaded = excluded.uploaded",
        args![caller.user_id, &chunk.id.0[..], now],
    )?;
    Ok(inserted > 0)
}

/// Chunk records in id order after `after`, each with whether a version references it.
pub fn chunk_records(
    db: &dyn Db,
    after: Option<&ChunkId>,
    limit: u32,
) -> Result<Vec<StoredChunkRef>> {
    let after: &[u8] = after.map_or(&[], |id| &id.0[..]);
    let rows = db.query(
        "SELECT c.id, EXISTS(SELECT 1 FROM version_chunks vc WHERE vc.chunk = c.id), c.created \
         FROM chunks c WHERE c.id > ?1 ORDER BY c.id LIMIT ?2",
        args![after, limit],
    )?;
    rows.iter()
        .map(|row| {
            Ok(StoredChunkRef {
                id: ChunkId::from_slice(&row.blob(0)?)?,
                referenced: row.bool(1)?,
                created: row.i64(2)?,
            })
        })
        .collect()
}

fn decode_manifest(blob: &[u8]) -> Result<Manifest> {
    let wire = proto::Manifest::decode(blob)
        .map_err(|e| ServerError::internal(format!("stored manifest: {e}")))?;
    Manifest::try_from(wire).map_err(|e| ServerError::internal(format!("stored manifest: {e}")))
}

pub fn manifest(db: &dyn Db, caller: &Caller, node: u64, version: u64) -> Result<Manifest> {
    let row = access::visible(db, caller, node)?;
    let version = if version == 0 {
        row.node.version
    } else {
        version
    };
    if version == 0 {
        return Ok(Manifest::default());
    }
    let blob = db
        .query_opt(
            "SELECT manifest FROM versions WHERE id = ?1 AND inode = ?2",
            args![version, node],
        )?
        .ok_or_else(|| ServerError::not_found(format!("version {version}")))?
        .blob(0)?;
    decode_manifest(&blob)
}

pub fn versions(db: &dyn Db, caller: &Caller, node: u64) -> Result<Vec<proto::Version>> {
    let row = access::visible(db, caller, node)?;
    let rows = db.query(
        "SELECT v.id, v.size, v.created, COALESCE(d.name, ''), COALESCE(u.name, ''), v.content_hash \
         FROM versions v LEFT JOIN devices d ON d.id = v.device_id LEFT JOIN users u ON u.id = v.user_id \
         WHERE v.inode = ?1 ORDER BY v.id DESC",
        args![node],
    )?;
    rows.iter()
        .map(|r| {
            let id = r.u64(0)?;
            Ok(proto::Version {
                id,
                node,
                size: r.u64(1)?,
                time: Some(to_timestamp(r.i64(2)?)),
                device: r.text(3)?,
                user: r.text(4)?,
                content_hash: r.blob(5)?.into(),
                current: id == row.node.version,
            })
        })
        .collect()
}

/// Deletes a version and releases its chunk references; a chunk whose last reference
/// goes is stamped `released`, from which its grace period runs.
pub fn drop_version(db: &dyn Db, version: u64, now: Nanos) -> Result<()> {
    db.execute(
        "UPDATE chunks SET refs = CASE WHEN refs > 0 THEN refs - 1 ELSE 0 END, \
         released = CASE WHEN refs <= 1 THEN ?2 ELSE released END \
         WHERE id IN (SELECT chunk FROM version_chunks WHERE version = ?1)",
        args![version, now],
    )?;
    db.execute(
        "DELETE FROM version_chunks WHERE version = ?1",
        args![version],
    )?;
    quota::uncount_version(db, version)?;
    db.execute("DELETE FROM versions WHERE id = ?1", args![version])?;
    Ok(())
}

/// The stored manifest of a version.
pub fn stored_manifest(db: &dyn Db, node: u64, version: u64) -> Result<Option<Manifest>> {
    db.query_opt(
        "SELECT manifest FROM versions WHERE id = ?1 AND inode = ?2",
        args![version, node],
    )?
    .map(|row| decode_manifest(&row.blob(0)?))
    .transpose()
}

/// Inserts a version of `node` and takes a reference on each of its distinct chunks;
/// fails with `QuotaExceeded` when its bytes take the namespace's owner over quota.
pub fn insert_version(w: &Write<'_>, node: u64, base: u64, manifest: &Manifest) -> Result<u64> {
    let version = w.db.query_one(
        "INSERT INTO versions(inode, base, size, content_hash, manifest, created, user_id, device_id, ns) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, (SELECT ns FROM inodes WHERE id = ?1)) RETURNING id, ns",
        args![
            node,
            base,
            manifest.size,
            &manifest.content_hash[..],
            proto::Manifest::from(manifest).encode_to_vec(),
            w.now,
            w.caller.user_id,
            w.caller.device_id,
        ],
    )?;
    let (version, ns) = (version.u64(0)?, version.u64(1)?);
    quota::count_version(w.db, ns, manifest.size)?;
    quota::check_after_adding(w.db, ns, manifest.size)?;
    let distinct: BTreeSet<&ChunkId> = manifest.chunks.iter().map(|c| &c.id).collect();
    for chunk in distinct {
        w.db.execute(
            "INSERT INTO version_chunks(version, chunk) VALUES (?1, ?2)",
            args![version, &chunk.0],
        )?;
        w.db.execute(
            "UPDATE chunks SET refs = refs + 1, released = NULL WHERE id = ?1",
            args![&chunk.0],
        )?;
    }
    Ok(version)
}

/// Makes `version` the current content of `node`.
pub fn set_current(
    w: &Write<'_>,
    node: u64,
    version: u64,
    manifest: &Manifest,
    mtime: Nanos,
) -> Result<()> {
    w.db.execute(
        "UPDATE inodes SET version = ?1, size = ?2, content_hash = ?3, mtime = ?4, ctime = ?5 WHERE id = ?6",
        args![version, manifest.size, &manifest.content_hash[..], mtime, w.now, node],
    )?;
    Ok(())
}

/// Where a conflicted copy of `target` goes: beside it, or where it was before it was
/// deleted, or at the drive's root.
fn conflict_home(w: &Write<'_>, target: &NodeRow) -> Result<(u64, Vec<u8>)> {
    if let Some(entry) = any_dentry(w.db, target.id())? {
        return Ok(entry);
    }
    let trashed =
        w.db.query_opt(
            "SELECT parent, name FROM trash WHERE inode = ?1",
            args![target.id()],
        )?
        .map(|row| Ok::<_, ServerError>((row.u64(0)?, row.blob(1)?)))
        .transpose()?;
    if let Some((parent, name)) = trashed {
        if access::writable_dir(w.db, w.caller, parent).is_ok() {
            return Ok((parent, name));
        }
        return Ok((w.caller.root, name));
    }
    Ok((w.caller.root, b"untitled".to_vec()))
}

pub fn commit(w: &Write<'_>, op: &CommitOp, cutoff: Nanos) -> Result<CommitOutcome> {
    op.manifest.validate()?;
    // A file made by this commit is journaled once, as created with its content,
    // not as an empty file and then a modification.
    let (node, made) = match &op.create {
        Some(new) if op.node == 0 => {
            let (node, made) = super::tree::create_unjournaled(w, new)?;
            if made && let Some(atime) = op.atime {
                w.db.execute(
                    "UPDATE inodes SET atime = ?1 WHERE id = ?2",
                    args![atime, node.id],
                )?;
            }
            (node.id, made.then_some((new.parent, new.name.as_slice())))
        }
        Some(_) => {
            return Err(ServerError::invalid(
                "a commit names a node or a file to create, not both",
            ));
        }
        None => (op.node, None),
    };
    // A trashed target is still accepted: its content must survive as a conflicted copy.
    let target = rows::load_node(w.db, node)?
        .filter(|row| {
            access::role(w.db, w.caller, row.ns())
                .ok()
                .flatten()
                .is_some()
        })
        .ok_or_else(|| ServerError::not_found(format!("node {node}")))?;
    access::require_write(w.db, w.caller, &target)?;
    if target.kind() != NodeKind::File {
        return Err(ServerError::new(
            ErrorKind::IsADirectory,
            "only regular files have content",
        ));
    }
    for chunk in &op.manifest.chunks {
        if usable(w.db, w.caller, &chunk.id, cutoff)?.is_none() {
            return Err(ServerError::precondition(format!(
                "chunk {} is neither uploaded by you nor readable by you",
                chunk.id
            )));
        }
    }
    // The content becomes the target's next version; otherwise it goes elsewhere (below).
    let on_target = !target.trashed && target.node.version == op.base_version;
    if let Some(at) = made
        && !on_target
    {
        // The new, empty file is a change of its own.
        w.journal(ChangeKind::Created, &target.node, at, (0, b""))?;
    }
    let mtime = op.mtime.unwrap_or(w.now);
    if on_target {
        let version = insert_version(w, target.id(), op.base_version, &op.manifest)?;
        set_current(w, target.id(), version, &op.manifest, mtime)?;
        let node = rows::node(w.db, target.id())?.node;
        match made {
            Some(at) => w.journal(ChangeKind::Created, &node, at, (0, b""))?,
            None => {
                let (parent, name) = any_dentry(w.db, target.id())?.unwrap_or_default();
                w.journal(ChangeKind::Modified, &node, (parent, &name), (0, b""))?
            }
        };
        return Ok(CommitOutcome {
            node,
            version,
            conflict_name: None,
        });
    }
    // A stale base with the very content the file already has loses nothing: this is a
    // retried commit whose reply was lost, or two devices saving the same bytes.
    if !target.trashed
        && target.node.content_hash.as_ref() == op.manifest.content_hash.as_slice()
        && target.node.size == op.manifest.size
        && target.node.version != 0
    {
        return Ok(CommitOutcome {
            version: target.node.version,
            node: target.node,
            conflict_name: None,
        });
    }
    // The base is stale: keep both. The current file stays; this content goes beside it.
    let (parent, name) = conflict_home(w, &target)?;
    let date = chrono::DateTime::from_timestamp_nanos(w.now)
        .format("%Y-%m-%d")
        .to_string();
    let mut copy_name = Vec::new();
    for attempt in 1..1000 {
        copy_name = conflicted_copy_name(&name, &w.caller.device_name, &date, attempt);
        if rows::child(w.db, parent, &copy_name)?.is_none() {
            break;
        }
    }
    let parent_row = rows::node(w.db, parent)?;
    let copy =
        w.db.query_one(
            "INSERT INTO inodes(ns, kind, mode, uid, gid, atime, mtime, ctime, btime, nlink) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?7, 1) RETURNING id",
            args![
                parent_row.ns(),
                NodeKind::File as i32,
                target.node.mode,
                target.node.uid,
                target.node.gid,
                mtime,
                w.now
            ],
        )?
        .u64(0)?;
    w.db.execute(
        "INSERT INTO dentries(parent, name, inode) VALUES (?1, ?2, ?3)",
        args![parent, &copy_name, copy],
    )?;
    let version = insert_version(w, copy, 0, &op.manifest)?;
    set_current(w, copy, version, &op.manifest, mtime)?;
    w.db.execute(
        "UPDATE inodes SET mtime = ?1, ctime = ?1 WHERE id = ?2",
        args![w.now, parent],
    )?;
    let node = rows::node(w.db, copy)?.node;
    w.journal(ChangeKind::Created, &node, (parent, &copy_name), (0, b""))?;
    Ok(CommitOutcome {
        node,
        version,
        conflict_name: Some(copy_name),
    })
}

/// A file renamed over a file: the target keeps its identity, history and shares, and
/// gets the source's content as a new version (what editors' save-by-rename expects).
pub fn take_over(
    w: &Write<'_>,
    op: &RenameOp,
    src: NodeRow,
    dst: NodeRow,
) -> Result<RenameOutcome> {
    // The source's history goes with its content; its newest version becomes current.
    w.db.execute(
        "UPDATE versions SET inode = ?1 WHERE inode = ?2",
        args![dst.id(), src.id()],
    )?;
    let version = if src.node.version == 0 {
        insert_version(w, dst.id(), dst.node.version, &Manifest::default())?
    } else if src.node.version < dst.node.version {
        // Devices take a file's version to be new only when its number grows: content
        // older than the target's gets a version of its own, numbered after it.
        let manifest = stored_manifest(w.db, dst.id(), src.node.version)?
            .ok_or_else(|| ServerError::internal("a current version without a manifest"))?;
        drop_version(w.db, src.node.version, w.now)?;
        insert_version(w, dst.id(), dst.node.version, &manifest)?
    } else {
        w.db.execute(
            "UPDATE versions SET base = ?1 WHERE id = ?2",
            args![dst.node.version, src.node.version],
        )?;
        src.node.version
    };
    let mtime = src
        .node
        .mtime
        .as_ref()
        .map(crate::meta::from_timestamp)
        .unwrap_or(w.now);
    w.db.execute(
        "UPDATE inodes SET version = ?1, size = ?2, content_hash = ?3, mtime = ?4, ctime = ?5, \
         mode = ?6, uid = ?7, gid = ?8 WHERE id = ?9",
        args![
            version,
            src.node.size,
            &src.node.content_hash[..],
            mtime,
            w.now,
            src.node.mode,
            src.node.uid,
            src.node.gid,
            dst.id()
        ],
    )?;
    // POSIX: the file at the new name is the source, so its xattrs replace the target's.
    w.db.execute("DELETE FROM xattrs WHERE inode = ?1", args![dst.id()])?;
    w.db.execute(
        "UPDATE xattrs SET inode = ?1 WHERE inode = ?2",
        args![dst.id(), src.id()],
    )?;
    w.db.execute(
        "DELETE FROM dentries WHERE parent = ?1 AND name = ?2",
        args![op.parent, &op.name],
    )?;
    w.db.execute("DELETE FROM inodes WHERE id = ?1", args![src.id()])?;
    w.db.execute(
        "UPDATE inodes SET mtime = ?1, ctime = ?1 WHERE id IN (?2, ?3)",
        args![w.now, op.parent, op.new_parent],
    )?;
    w.journal(
        ChangeKind::Removed,
        &src.node,
        (op.parent, &op.name),
        (0, b""),
    )?;
    let node = rows::node(w.db, dst.id())?.node;
    w.journal(
        ChangeKind::Modified,
        &node,
        (op.new_parent, &op.new_name),
        (0, b""),
    )?;
    Ok(RenameOutcome {
        node,
        replaced: Some(dst.node),
    })
}
