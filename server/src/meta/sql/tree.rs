//! The tree: lookup, listing, create, link, rename, remove, attributes and xattrs, with
//! POSIX semantics. Every change writes its journal row in the same transaction.

use loft_remote::errors::ErrorKind;
use loft_remote::names::{check_name, split_path};
use loft_remote::proto::{self, ChangeKind, NodeKind};

use super::access;
use super::db::{Db, Dialect, args};
use super::journal::{self, Entry};
use super::rows::{self, NodeRow};
use crate::error::{Result, ServerError};
use crate::meta::{
    AttrChange, Caller, Listing, Nanos, NewNode, RemoveOp, RenameOp, RenameOutcome, XattrMode,
};

/// Longest symlink target accepted (PATH_MAX).
const SYMLINK_MAX: usize = 4096;
/// Longest xattr value accepted (the Linux limit).
const XATTR_VALUE_MAX: usize = 64 * 1024;
const LIST_DEFAULT: u32 = 1000;
const LIST_MAX: u32 = 5000;

/// Context of one write: who, when, and through which transaction.
pub struct Write<'a> {
    pub db: &'a dyn Db,
    pub caller: &'a Caller,
    pub now: Nanos,
}

impl Write<'_> {
    pub fn journal(
        &self,
        kind: ChangeKind,
        node: &proto::Node,
        at: (u64, &[u8]),
        from: (u64, &[u8]),
    ) -> Result<u64> {
        self.journal_from(self.caller.device_id, kind, node, at, from)
    }

    /// Journals a change that no device's mirror holds yet (a restore made on the
    /// server): device 0, so every mount applies it, the caller's own included.
    pub fn journal_for_all(
        &self,
        kind: ChangeKind,
        node: &proto::Node,
        at: (u64, &[u8]),
        from: (u64, &[u8]),
    ) -> Result<u64> {
        self.journal_from(0, kind, node, at, from)
    }

    fn journal_from(
        &self,
        device: u64,
        kind: ChangeKind,
        node: &proto::Node,
        at: (u64, &[u8]),
        from: (u64, &[u8]),
    ) -> Result<u64> {
        // An entry belongs to its directory's namespace: the entry of a shared folder's
        // top in its owner's tree (or at a member's root) is that user's own, and only
        // its own feed hears of it. A change of the shared node itself goes to the
        // shared namespace, without naming where anyone keeps it.
        let entry_ns = match at.0 {
            0 => node.namespace,
            parent => rows::node(self.db, parent)?.ns(),
        };
        let (ns, at, from) = if entry_ns == node.namespace {
            (node.namespace, at, from)
        } else if kind == ChangeKind::Modified {
            (node.namespace, (0, &b""[..]), (0, &b""[..]))
        } else {
            (entry_ns, at, from)
        };
        journal::append(
            self.db,
            device,
            self.now,
            Entry {
                ns,
                kind,
                node,
                parent: at.0,
                name: at.1,
                old_parent: from.0,
                old_name: from.1,
            },
        )
    }

    /// Updates a directory's mtime and ctime after one of its entries changed.
    pub fn touch_dir(&self, dir: u64) -> Result<()> {
        self.db.execute(
            "UPDATE inodes SET mtime = ?1, ctime = ?1 WHERE id = ?2",
            args![self.now, dir],
        )?;
        Ok(())
    }

    /// Records that a node's metadata changed (ctime) without other changes.
    fn touch(&self, id: u64) -> Result<()> {
        self.add_nlink(id, 0)
    }

    pub fn add_nlink(&self, id: u64, delta: i64) -> Result<()> {
        self.db.execute(
            "UPDATE inodes SET nlink = CASE WHEN nlink + ?1 < 0 THEN 0 ELSE nlink + ?1 END, ctime = ?2 WHERE id = ?3",
            args![delta, self.now, id],
        )?;
        Ok(())
    }

    /// Removes one link of `row`, found at (parent, name). The last link moves the node
    /// (with everything below it) to the namespace's trash.
    fn drop_link(&self, row: &NodeRow, parent: u64, name: &[u8]) -> Result<()> {
        self.db.execute(
            "DELETE FROM dentries WHERE parent = ?1 AND name = ?2",
            args![parent, name],
        )?;
        if row.is_dir() {
            self.add_nlink(parent, -1)?;
        }
        if !row.is_dir() && row.node.nlink > 1 {
            return self.add_nlink(row.id(), -1);
        }
        self.db.execute(
            "WITH RECURSIVE below(id) AS (SELECT CAST(?1 AS BIGINT) UNION SELECT d.inode FROM dentries d JOIN below ON d.parent = below.id) \
             UPDATE inodes SET trashed = 1, ctime = ?2 WHERE id IN (SELECT id FROM below)",
            args![row.id(), self.now],
        )?;
        let size = super::trash::subtree_size(self.db, row.id())?;
        self.db.execute(
            "INSERT INTO trash(ns, inode, parent, name, deleted, device_id, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (ns, inode) DO UPDATE SET parent = excluded.parent, name = excluded.name, \
             deleted = excluded.deleted, device_id = excluded.device_id, size = excluded.size",
            args![row.ns(), row.id(), parent, name, self.now, self.caller.device_id, size],
        )?;
        Ok(())
    }
}

fn name_ok(name: &[u8]) -> Result<()> {
    check_name(name).map_err(ServerError::from)
}

fn has_children(db: &dyn Db, dir: u64) -> Result<bool> {
    db.query_one(
        "SELECT EXISTS(SELECT 1 FROM dentries WHERE parent = ?1)",
        args![dir],
    )?
    .bool(0)
}

/// The entry (parent, name) of a node, if it still has one.
pub fn any_dentry(db: &dyn Db, id: u64) -> Result<Option<(u64, Vec<u8>)>> {
    // The oldest link: SQLite's implicit rowid, PostgreSQL's identity column.
    let sql = match db.dialect() {
        Dialect::Sqlite => {
            "SELECT parent, name FROM dentries WHERE inode = ?1 ORDER BY rowid LIMIT 1"
        }
        Dialect::Postgres => {
            "SELECT parent, name FROM dentries WHERE inode = ?1 ORDER BY link_id LIMIT 1"
        }
    };
    db.query_opt(sql, args![id])?
        .map(|row| Ok((row.u64(0)?, row.blob(1)?)))
        .transpose()
}

/// True if `dir` is `ancestor` or lies below it.
fn is_within(db: &dyn Db, mut dir: u64, ancestor: u64) -> Result<bool> {
    // Directories have exactly one entry, so walking up is a chain; bound it anyway.
    for _ in 0..4096 {
        if dir == ancestor {
            return Ok(true);
        }
        match any_dentry(db, dir)? {
            Some((parent, _)) if parent != dir => dir = parent,
            _ => return Ok(false),
        }
    }
    Err(ServerError::internal("directory chain too deep"))
}

pub fn lookup(db: &dyn Db, caller: &Caller, parent: u64, name: &[u8]) -> Result<proto::Node> {
    name_ok(name)?;
    access::visible_dir(db, caller, parent)?;
    match rows::child(db, parent, name)? {
        Some(row) if !row.trashed => Ok(row.node),
        _ => Err(ServerError::not_found(format!(
            "{:?}",
            String::from_utf8_lossy(name)
        ))),
    }
}

pub fn resolve(db: &dyn Db, caller: &Caller, path: &[u8]) -> Result<proto::Node> {
    let mut node = access::visible(db, caller, caller.root)?.node;
    for part in split_path(path).map_err(ServerError::from)? {
        if node.kind() != NodeKind::Directory {
            return Err(ServerError::new(
                ErrorKind::NotADirectory,
                "a path component is not a directory",
            ));
        }
        node = lookup(db, caller, node.id, part)
            .map_err(|_| ServerError::not_found(String::from_utf8_lossy(path)))?;
    }
    Ok(node)
}

pub fn stat(db: &dyn Db, caller: &Caller, id: u64) -> Result<proto::Node> {
    Ok(access::visible(db, caller, id)?.node)
}

pub fn list(db: &dyn Db, caller: &Caller, dir: u64, after: &[u8], limit: u32) -> Result<Listing> {
    let row = access::visible_dir(db, caller, dir)?;
    let limit = match limit {
        0 => LIST_DEFAULT,
        n => n.min(LIST_MAX),
    };
    // Whether each entry has xattrs comes along: a device listing the folder then asks
    // for the xattrs of only those that have some (`ls -l` asks for two of every file).
    let sql = format!(
        "SELECT d.name, EXISTS(SELECT 1 FROM xattrs x WHERE x.inode = i.id), {} \
         FROM dentries d JOIN inodes i ON i.id = d.inode \
         WHERE d.parent = ?1 AND d.name > ?2 AND i.trashed = 0 ORDER BY d.name LIMIT ?3",
        rows::node_columns(Some("i"))
    );
    let mut entries = db
        .query(&sql, args![dir, after, limit + 1])?
        .iter()
        .map(|r| {
            let mut node = rows::node_from_row_at(r, 2)?.node;
            node.has_xattrs = Some(r.bool(1)?);
            Ok((r.blob(0)?, node))
        })
        .collect::<Result<Vec<_>>>()?;
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    Ok(Listing {
        entries,
        more,
        cursor: journal::head(db, row.ns())?,
    })
}

fn insert_inode(w: &Write<'_>, ns: u64, op: &NewNode) -> Result<u64> {
    let nlink = if op.kind == NodeKind::Directory { 2 } else { 1 };
    let mtime = op.mtime.unwrap_or(w.now);
    w.db.query_one(
        "INSERT INTO inodes(ns, kind, mode, uid, gid, atime, mtime, ctime, btime, nlink, symlink_target, rdev) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?7, ?8, ?9, ?10) RETURNING id",
        args![
            ns,
            op.kind as i32,
            op.mode & 0o7777,
            op.uid,
            op.gid,
            mtime,
            w.now,
            nlink,
            (op.kind == NodeKind::Symlink).then_some(&op.symlink_target),
            op.rdev,
        ],
    )?
    .u64(0)
}

pub fn create(w: &Write<'_>, op: &NewNode) -> Result<proto::Node> {
    let (node, made) = create_unjournaled(w, op)?;
    if made {
        w.journal(ChangeKind::Created, &node, (op.parent, &op.name), (0, b""))?;
    }
    Ok(node)
}

/// [`create`] without its journal entry, for a caller that journals the node once it
/// is complete (a new file and its first version, one change). Also says whether the
/// node was made (false: a non-exclusive create found it).
pub fn create_unjournaled(w: &Write<'_>, op: &NewNode) -> Result<(proto::Node, bool)> {
    name_ok(&op.name)?;
    if op.kind == NodeKind::Unspecified {
        return Err(ServerError::invalid("node kind missing"));
    }
    if op.kind == NodeKind::Symlink
        && (op.symlink_target.is_empty() || op.symlink_target.len() > SYMLINK_MAX)
    {
        return Err(ServerError::invalid("symlink target must be 1-4096 bytes"));
    }
    let parent = access::writable_dir(w.db, w.caller, op.parent)?;
    if let Some(existing) = rows::child(w.db, op.parent, &op.name)? {
        if !op.exclusive && existing.kind() == op.kind {
            return Ok((existing.node, false));
        }
        return Err(ServerError::new(
            ErrorKind::AlreadyExists,
            "an entry of that name exists",
        ));
    }
    let id = insert_inode(w, parent.ns(), op)?;
    w.db.execute(
        "INSERT INTO dentries(parent, name, inode) VALUES (?1, ?2, ?3)",
        args![op.parent, &op.name, id],
    )?;
    if op.kind == NodeKind::Directory {
        w.add_nlink(op.parent, 1)?;
    }
    w.touch_dir(op.parent)?;
    Ok((rows::node(w.db, id)?.node, true))
}

pub fn link(w: &Write<'_>, id: u64, new_parent: u64, new_name: &[u8]) -> Result<proto::Node> {
    name_ok(new_name)?;
    let row = access::writable(w.db, w.caller, id)?;
    if row.is_dir() {
        return Err(ServerError::new(
            ErrorKind::PermissionDenied,
            "directories cannot be hard-linked",
        ));
    }
    let parent = access::writable_dir(w.db, w.caller, new_parent)?;
    if parent.ns() != row.ns() {
        return Err(ServerError::new(
            ErrorKind::CrossNamespace,
            "hard links cannot cross shared folders",
        ));
    }
    if rows::child(w.db, new_parent, new_name)?.is_some() {
        return Err(ServerError::new(
            ErrorKind::AlreadyExists,
            "an entry of that name exists",
        ));
    }
    w.db.execute(
        "INSERT INTO dentries(parent, name, inode) VALUES (?1, ?2, ?3)",
        args![new_parent, new_name, id],
    )?;
    w.add_nlink(id, 1)?;
    w.touch_dir(new_parent)?;
    let node = rows::node(w.db, id)?.node;
    w.journal(ChangeKind::Created, &node, (new_parent, new_name), (0, b""))?;
    Ok(node)
}

pub fn rename(w: &Write<'_>, op: &RenameOp) -> Result<RenameOutcome> {
    name_ok(&op.name)?;
    name_ok(&op.new_name)?;
    let from_dir = access::writable_dir(w.db, w.caller, op.parent)?;
    let to_dir = access::writable_dir(w.db, w.caller, op.new_parent)?;
    if from_dir.ns() != to_dir.ns() {
        return Err(ServerError::new(
            ErrorKind::CrossNamespace,
            "rename across shared folders",
        ));
    }
    let src = rows::child(w.db, op.parent, &op.name)?
        .filter(|src| op.node == 0 || src.id() == op.node)
        .ok_or_else(|| ServerError::not_found(String::from_utf8_lossy(&op.name)))?;
    let dst = rows::child(w.db, op.new_parent, &op.new_name)?;
    if op.parent == op.new_parent && op.name == op.new_name {
        return Ok(RenameOutcome {
            node: src.node,
            replaced: None,
        });
    }
    if src.is_dir() && is_within(w.db, op.new_parent, src.id())? {
        return Err(ServerError::invalid("cannot move a directory below itself"));
    }
    if op.exchange {
        let dst =
            dst.ok_or_else(|| ServerError::not_found(String::from_utf8_lossy(&op.new_name)))?;
        return exchange(w, op, src, dst);
    }
    let mut replaced = None;
    if let Some(dst) = dst {
        if dst.id() == src.id() {
            // Two links to the same file: POSIX says rename does nothing.
            return Ok(RenameOutcome {
                node: src.node,
                replaced: None,
            });
        }
        if op.no_replace {
            return Err(ServerError::new(ErrorKind::AlreadyExists, "target exists"));
        }
        if src.is_dir() {
            if !dst.is_dir() {
                return Err(ServerError::new(
                    ErrorKind::NotADirectory,
                    "target is not a directory",
                ));
            }
            if has_children(w.db, dst.id())? {
                return Err(ServerError::new(
                    ErrorKind::NotEmpty,
                    "target directory is not empty",
                ));
            }
        } else if dst.is_dir() {
            return Err(ServerError::new(
                ErrorKind::IsADirectory,
                "target is a directory",
            ));
        }
        if src.kind() == NodeKind::File
            && dst.kind() == NodeKind::File
            && src.node.nlink == 1
            && dst.node.nlink == 1
        {
            return super::content::take_over(w, op, src, dst);
        }
        w.drop_link(&dst, op.new_parent, &op.new_name)?;
        w.journal(
            ChangeKind::Removed,
            &dst.node,
            (op.new_parent, &op.new_name),
            (0, b""),
        )?;
        replaced = Some(dst.node);
    }
    w.db.execute(
        "UPDATE dentries SET parent = ?1, name = ?2 WHERE parent = ?3 AND name = ?4",
        args![op.new_parent, &op.new_name, op.parent, &op.name],
    )?;
    if src.is_dir() && op.parent != op.new_parent {
        w.add_nlink(op.parent, -1)?;
        w.add_nlink(op.new_parent, 1)?;
    }
    w.touch(src.id())?;
    w.touch_dir(op.parent)?;
    w.touch_dir(op.new_parent)?;
    let node = rows::node(w.db, src.id())?.node;
    w.journal(
        ChangeKind::Renamed,
        &node,
        (op.new_parent, &op.new_name),
        (op.parent, &op.name),
    )?;
    Ok(RenameOutcome { node, replaced })
}

/// `RENAME_EXCHANGE`: swaps two entries atomically.
fn exchange(w: &Write<'_>, op: &RenameOp, src: NodeRow, dst: NodeRow) -> Result<RenameOutcome> {
    if dst.is_dir() && is_within(w.db, op.parent, dst.id())? {
        return Err(ServerError::invalid("cannot move a directory below itself"));
    }
    let set = "UPDATE dentries SET inode = ?1 WHERE parent = ?2 AND name = ?3";
    w.db.execute(set, args![dst.id(), op.parent, &op.name])?;
    w.db.execute(set, args![src.id(), op.new_parent, &op.new_name])?;
    if op.parent != op.new_parent && src.is_dir() != dst.is_dir() {
        let delta = if src.is_dir() { 1 } else { -1 };
        w.add_nlink(op.new_parent, delta)?;
        w.add_nlink(op.parent, -delta)?;
    }
    for id in [src.id(), dst.id()] {
        w.touch(id)?;
    }
    w.touch_dir(op.parent)?;
    w.touch_dir(op.new_parent)?;
    let src_node = rows::node(w.db, src.id())?.node;
    let dst_node = rows::node(w.db, dst.id())?.node;
    // Clients apply RENAMED by node id, so the second entry does not undo the first.
    w.journal(
        ChangeKind::Renamed,
        &src_node,
        (op.new_parent, &op.new_name),
        (op.parent, &op.name),
    )?;
    w.journal(
        ChangeKind::Renamed,
        &dst_node,
        (op.parent, &op.name),
        (op.new_parent, &op.new_name),
    )?;
    Ok(RenameOutcome {
        node: src_node,
        replaced: Some(dst_node),
    })
}

pub fn remove(w: &Write<'_>, op: &RemoveOp) -> Result<()> {
    name_ok(&op.name)?;
    access::writable_dir(w.db, w.caller, op.parent)?;
    let row = rows::child(w.db, op.parent, &op.name)?
        .filter(|row| op.node == 0 || row.id() == op.node)
        .ok_or_else(|| ServerError::not_found(String::from_utf8_lossy(&op.name)))?;
    if op.directory_only && !row.is_dir() {
        return Err(ServerError::new(
            ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    if op.non_directory_only && row.is_dir() {
        return Err(ServerError::new(ErrorKind::IsADirectory, "is a directory"));
    }
    if row.is_dir() && !op.recursive && has_children(w.db, row.id())? {
        return Err(ServerError::new(ErrorKind::NotEmpty, "directory not empty"));
    }
    if super::sharing::leaves_share(w, &row, op.parent)? {
        return Ok(());
    }
    w.drop_link(&row, op.parent, &op.name)?;
    w.touch_dir(op.parent)?;
    let node = rows::node(w.db, row.id())?.node;
    w.journal(ChangeKind::Removed, &node, (op.parent, &op.name), (0, b""))?;
    Ok(())
}

pub fn set_attr(w: &Write<'_>, change: &AttrChange) -> Result<proto::Node> {
    access::writable(w.db, w.caller, change.id)?;
    w.db.execute(
        "UPDATE inodes SET mode = COALESCE(?1, mode), uid = COALESCE(?2, uid), gid = COALESCE(?3, gid), \
         atime = COALESCE(?4, atime), mtime = COALESCE(?5, mtime), ctime = ?6 WHERE id = ?7",
        args![
            change.mode.map(|m| m & 0o7777),
            change.uid,
            change.gid,
            change.atime,
            change.mtime,
            w.now,
            change.id
        ],
    )?;
    modified(w, change.id)
}

/// Journals a change of a node's attributes and returns its new state.
fn modified(w: &Write<'_>, id: u64) -> Result<proto::Node> {
    let node = rows::node(w.db, id)?.node;
    journal_modified(w, &node)?;
    Ok(node)
}

fn journal_modified(w: &Write<'_>, node: &proto::Node) -> Result<()> {
    let (parent, name) = any_dentry(w.db, node.id)?.unwrap_or_default();
    w.journal(ChangeKind::Modified, node, (parent, &name), (0, b""))?;
    Ok(())
}

fn xattr_name_ok(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.contains(&0) {
        return Err(ServerError::new(
            ErrorKind::NameTooLong,
            "xattr names are 1-255 bytes without NUL",
        ));
    }
    Ok(())
}

pub fn get_xattr(db: &dyn Db, caller: &Caller, id: u64, name: &[u8]) -> Result<Vec<u8>> {
    access::visible(db, caller, id)?;
    db.query_opt(
        "SELECT value FROM xattrs WHERE inode = ?1 AND name = ?2",
        args![id, name],
    )?
    .map(|row| row.blob(0))
    .transpose()?
    .ok_or_else(|| ServerError::new(ErrorKind::NoAttribute, "no such attribute"))
}

pub fn list_xattr(db: &dyn Db, caller: &Caller, id: u64) -> Result<Vec<Vec<u8>>> {
    access::visible(db, caller, id)?;
    db.query(
        "SELECT name FROM xattrs WHERE inode = ?1 ORDER BY name",
        args![id],
    )?
    .iter()
    .map(|row| row.blob(0))
    .collect()
}

pub fn set_xattr(w: &Write<'_>, id: u64, name: &[u8], value: &[u8], mode: XattrMode) -> Result<()> {
    xattr_name_ok(name)?;
    if value.len() > XATTR_VALUE_MAX {
        return Err(ServerError::invalid("xattr values are at most 64 KiB"));
    }
    access::writable(w.db, w.caller, id)?;
    let exists =
        w.db.query_one(
            "SELECT EXISTS(SELECT 1 FROM xattrs WHERE inode = ?1 AND name = ?2)",
            args![id, name],
        )?
        .bool(0)?;
    match (mode, exists) {
        (XattrMode::CreateOnly, true) => {
            return Err(ServerError::new(
                ErrorKind::AlreadyExists,
                "attribute exists",
            ));
        }
        (XattrMode::ReplaceOnly, false) => {
            return Err(ServerError::new(
                ErrorKind::NoAttribute,
                "no such attribute",
            ));
        }
        _ => {}
    }
    w.db.execute(
        "INSERT INTO xattrs(inode, name, value) VALUES (?1, ?2, ?3) \
         ON CONFLICT (inode, name) DO UPDATE SET value = excluded.value",
        args![id, name, value],
    )?;
    w.touch(id)?;
    xattrs_modified(w, id)
}

pub fn remove_xattr(w: &Write<'_>, id: u64, name: &[u8]) -> Result<()> {
    access::writable(w.db, w.caller, id)?;
    let removed = w.db.execute(
        "DELETE FROM xattrs WHERE inode = ?1 AND name = ?2",
        args![id, name],
    )?;
    if removed == 0 {
        return Err(ServerError::new(
            ErrorKind::NoAttribute,
            "no such attribute",
        ));
    }
    w.touch(id)?;
    xattrs_modified(w, id)
}

/// Journals a change of node `id`'s xattrs. The node it carries says whether any
/// are left (`has_xattrs`), which tells the other devices to read them again.
fn xattrs_modified(w: &Write<'_>, id: u64) -> Result<()> {
    let mut node = rows::node(w.db, id)?.node;
    node.has_xattrs = Some(
        w.db.query_one(
            "SELECT EXISTS(SELECT 1 FROM xattrs WHERE inode = ?1)",
            args![id],
        )?
        .bool(0)?,
    );
    journal_modified(w, &node)
}
