//! The trash: deleted items (moved here by [`super::tree`]'s last unlink) listed,
//! restored to where they were, emptied, and purged once past the retention.
//!
//! A trashed item keeps its inode, its versions (so its chunk references) and, for a
//! folder, everything below it, all marked `trashed` and so invisible. Its `trash` row
//! remembers the entry it had (parent, name), when and from which device it went, and
//! its size. Purging deletes all of that and releases the chunk references.

use loft_remote::errors::ErrorKind;
use loft_remote::proto::{self, ChangeKind, NodeKind};

use super::access::{self, Role};
use super::content::drop_version;
use super::db::{Db, args};
use super::rows;
use super::tree::{Write, any_dentry};
use crate::error::{Result, ServerError};
use crate::meta::{Caller, Nanos, NewNode, TrashEntry, TrashTarget};
use loft_remote::conflict_name::restored_name;

/// Every inode of the tree rooted at ?1 (itself included), through the entries below it.
const SUBTREE: &str = "WITH RECURSIVE below(id) AS (SELECT CAST(?1 AS BIGINT) UNION \
     SELECT d.inode FROM dentries d JOIN below ON d.parent = below.id)";

/// Bytes of the current versions of the files in the tree rooted at `id`.
pub fn subtree_size(db: &dyn Db, id: u64) -> Result<u64> {
    // Each inode of the subtree is looked up by its id: written as a join, SQLite
    // may scan every inode of the store and probe the subtree for each.
    db.query_one(
        &format!(
            "{SUBTREE} SELECT CAST(COALESCE(SUM((SELECT i.size FROM inodes i \
             WHERE i.id = below.id AND i.kind = ?2)), 0) AS BIGINT) FROM below"
        ),
        args![id, NodeKind::File as i32],
    )?
    .u64(0)
}

fn subtree(db: &dyn Db, id: u64) -> Result<Vec<u64>> {
    db.query(&format!("{SUBTREE} SELECT id FROM below"), args![id])?
        .iter()
        .map(|row| row.u64(0))
        .collect()
}

fn namespace_root(db: &dyn Db, ns: u64) -> Result<u64> {
    db.query_one("SELECT root FROM namespaces WHERE id = ?1", args![ns])?
        .u64(0)
}

/// The path (from the namespace's root) of entry `name` in `parent`, following trash
/// rows where a folder on the way is itself in the trash.
fn original_path(db: &dyn Db, root: u64, parent: u64, name: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut parts = vec![name.to_vec()];
    let mut dir = parent;
    for _ in 0..4096 {
        if dir == root {
            break;
        }
        let entry = match any_dentry(db, dir)? {
            Some(entry) => Some(entry),
            None => db
                .query_opt(
                    "SELECT parent, name FROM trash WHERE inode = ?1",
                    args![dir],
                )?
                .map(|row| Ok::<_, ServerError>((row.u64(0)?, row.blob(1)?)))
                .transpose()?,
        };
        match entry {
            Some((up, part)) if up != dir => {
                parts.push(part);
                dir = up;
            }
            // Nothing is known above: the item goes back to the root.
            _ => break,
        }
    }
    parts.reverse();
    Ok(parts)
}

fn join_path(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut path = Vec::new();
    for part in parts {
        path.push(b'/');
        path.extend_from_slice(part);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    path
}

/// A trash row with what listing it needs.
struct TrashRow {
    ns: u64,
    inode: u64,
    parent: u64,
    name: Vec<u8>,
    deleted: Nanos,
    size: u64,
    device: String,
    kind: i32,
}

/// Trash rows of the namespaces where the caller holds at least role `least`, newest
/// first.
fn rows_of(db: &dyn Db, caller: &Caller, least: Role) -> Result<Vec<TrashRow>> {
    db.query(
        "SELECT t.ns, t.inode, t.parent, t.name, t.deleted, t.size, COALESCE(d.name, ''), i.kind \
         FROM trash t JOIN ns_members m ON m.ns = t.ns AND m.user_id = ?1 \
         JOIN inodes i ON i.id = t.inode LEFT JOIN devices d ON d.id = t.device_id \
         WHERE m.role >= ?2 ORDER BY t.deleted DESC, t.inode DESC",
        args![caller.user_id, least as i64],
    )?
    .iter()
    .map(|row| {
        Ok(TrashRow {
            ns: row.u64(0)?,
            inode: row.u64(1)?,
            parent: row.u64(2)?,
            name: row.blob(3)?,
            deleted: row.i64(4)?,
            size: row.u64(5)?,
            device: row.text(6)?,
            kind: row.i64(7)? as i32,
        })
    })
    .collect()
}

/// The trash of every namespace the caller may change: editors of a shared folder see
/// (and may restore) what was deleted there.
pub fn list(db: &dyn Db, caller: &Caller) -> Result<Vec<TrashEntry>> {
    rows_of(db, caller, Role::Editor)?
        .into_iter()
        .map(|row| {
            let root = namespace_root(db, row.ns)?;
            Ok(TrashEntry {
                id: row.inode,
                path: join_path(&original_path(db, root, row.parent, &row.name)?),
                kind: NodeKind::try_from(row.kind).unwrap_or(NodeKind::Unspecified),
                size: row.size,
                deleted: row.deleted,
                device: row.device,
            })
        })
        .collect()
}

/// Puts a trashed item back where it was: under its old name, or `name (restored).ext`
/// when that is taken; folders on its old path that are gone are created again.
pub fn restore(w: &Write<'_>, target: &TrashTarget) -> Result<(proto::Node, Vec<u8>)> {
    // Everything this journals (folders made again included) is new to every mount,
    // the caller's own too: journal it as no device's.
    let caller = Caller {
        device_id: 0,
        ..w.caller.clone()
    };
    let w = &Write {
        db: w.db,
        caller: &caller,
        now: w.now,
    };
    let mut chosen = None;
    for row in rows_of(w.db, w.caller, Role::Editor)? {
        let matches = match target {
            TrashTarget::Id(id) => row.inode == *id,
            TrashTarget::Path(path) => {
                let root = namespace_root(w.db, row.ns)?;
                join_path(&original_path(w.db, root, row.parent, &row.name)?) == *path
            }
        };
        if matches {
            chosen = Some(row);
            break;
        }
    }
    let row = chosen.ok_or_else(|| match target {
        TrashTarget::Id(id) => ServerError::not_found(format!("trash item {id}")),
        TrashTarget::Path(path) => ServerError::new(
            ErrorKind::NotFound,
            format!("{} is not in the trash", String::from_utf8_lossy(path)),
        ),
    })?;
    let parent = restore_parent(w, &row)?;
    let mut name = row.name.clone();
    let mut attempt = 1;
    while rows::child(w.db, parent, &name)?.is_some() {
        if attempt >= 1000 {
            return Err(ServerError::new(
                ErrorKind::AlreadyExists,
                "no free name to restore to",
            ));
        }
        name = restored_name(&row.name, attempt);
        attempt += 1;
    }
    let below = subtree(w.db, row.inode)?;
    for id in &below {
        w.db.execute(
            "UPDATE inodes SET trashed = 0, ctime = ?1 WHERE id = ?2",
            args![w.now, *id],
        )?;
    }
    w.db.execute(
        "DELETE FROM trash WHERE ns = ?1 AND inode = ?2",
        args![row.ns, row.inode],
    )?;
    w.db.execute(
        "INSERT INTO dentries(parent, name, inode) VALUES (?1, ?2, ?3)",
        args![parent, &name, row.inode],
    )?;
    if row.kind == NodeKind::Directory as i32 {
        w.add_nlink(parent, 1)?;
    }
    w.touch_dir(parent)?;
    // Every node comes back with its own entry, parents first, so that a mount that
    // forgot the folder's contents learns them again from the feed.
    let node = rows::node(w.db, row.inode)?.node;
    w.journal_for_all(ChangeKind::Created, &node, (parent, &name), (0, b""))?;
    for id in below.iter().skip(1) {
        let child = rows::node(w.db, *id)?.node;
        let (at, child_name) = any_dentry(w.db, *id)?.unwrap_or_default();
        w.journal_for_all(ChangeKind::Created, &child, (at, &child_name), (0, b""))?;
    }
    let root = namespace_root(w.db, row.ns)?;
    let path = join_path(&original_path(w.db, root, parent, &name)?);
    Ok((node, path))
}

/// The live folder a trashed item goes back into: its old parent, or, when that is gone
/// (deleted, or in the trash itself), a new folder at the old path.
fn restore_parent(w: &Write<'_>, row: &TrashRow) -> Result<u64> {
    if access::writable_dir(w.db, w.caller, row.parent).is_ok() {
        return Ok(row.parent);
    }
    let root = namespace_root(w.db, row.ns)?;
    let parts = original_path(w.db, root, row.parent, &row.name)?;
    let mut dir = root;
    for part in &parts[..parts.len().saturating_sub(1)] {
        let made = super::tree::create(
            w,
            &NewNode {
                parent: dir,
                name: part.clone(),
                kind: NodeKind::Directory,
                mode: 0o755,
                uid: 0,
                gid: 0,
                symlink_target: Vec::new(),
                rdev: 0,
                exclusive: false,
                mtime: None,
            },
        )
        .map_err(|e| {
            ServerError::new(
                ErrorKind::FailedPrecondition,
                format!(
                    "cannot recreate folder {:?} to restore into: {e}",
                    String::from_utf8_lossy(part)
                ),
            )
        })?;
        dir = made.id;
    }
    Ok(dir)
}

/// Deletes a trashed item for good: its tree, versions and trash row.
fn purge(db: &dyn Db, ns: u64, inode: u64, now: Nanos) -> Result<()> {
    let below = subtree(db, inode)?;
    for id in &below {
        db.execute("DELETE FROM dentries WHERE parent = ?1", args![*id])?;
    }
    for id in &below {
        if any_dentry(db, *id)?.is_some() {
            // A hard link outside the deleted folder keeps the file alive.
            db.execute(
                "UPDATE inodes SET trashed = 0, nlink = (SELECT COUNT(*) FROM dentries WHERE inode = ?1) \
                 WHERE id = ?1",
                args![*id],
            )?;
            continue;
        }
        let versions = db.query("SELECT id FROM versions WHERE inode = ?1", args![*id])?;
        for version in &versions {
            drop_version(db, version.u64(0)?, now)?;
        }
        db.execute("DELETE FROM xattrs WHERE inode = ?1", args![*id])?;
        db.execute("DELETE FROM trash WHERE inode = ?1", args![*id])?;
        db.execute("DELETE FROM inodes WHERE id = ?1", args![*id])?;
    }
    db.execute(
        "DELETE FROM trash WHERE ns = ?1 AND inode = ?2",
        args![ns, inode],
    )?;
    Ok(())
}

/// Purges every item in the trash of the namespaces the caller owns. An editor of a
/// shared folder cannot destroy for good what its owner might still want back.
pub fn empty(w: &Write<'_>) -> Result<u64> {
    let rows = rows_of(w.db, w.caller, Role::Owner)?;
    for row in &rows {
        purge(w.db, row.ns, row.inode, w.now)?;
    }
    Ok(rows.len() as u64)
}

/// Purges at most `limit` items deleted before `cutoff`; returns how many.
pub fn purge_expired(db: &dyn Db, cutoff: Nanos, limit: u32, now: Nanos) -> Result<u64> {
    let rows = db.query(
        "SELECT ns, inode FROM trash WHERE deleted < ?1 ORDER BY deleted LIMIT ?2",
        args![cutoff, limit],
    )?;
    for row in &rows {
        purge(db, row.u64(0)?, row.u64(1)?, now)?;
    }
    Ok(rows.len() as u64)
}
