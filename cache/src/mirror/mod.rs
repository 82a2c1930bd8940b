//! The mirror: the device's copy of the drive's tree (nodes, entries, xattrs), the
//! ledger of clean bytes held in local body files, the outbound journal and settings,
//! in one SQLite database (WAL). Every local change is all or nothing, so the mirror
//! and the journal never disagree after a crash; changes are committed in groups
//! (`group`).

mod group;
mod node_cache;
mod outbox;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

pub use group::COMMIT_WINDOW;
pub use outbox::{Op, Queued};

use crate::{CacheError, Result};

/// Inode number of the drive's root.
pub const ROOT_INO: u64 = 1;

/// Node kinds, numbered as on the wire (`NodeKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    File = 1,
    Directory = 2,
    Symlink = 3,
    Fifo = 4,
    Socket = 5,
    CharDevice = 6,
    BlockDevice = 7,
}

impl Kind {
    /// From the wire number; unknown numbers are files.
    pub fn from_wire(n: i32) -> Kind {
        match n {
            2 => Kind::Directory,
            3 => Kind::Symlink,
            4 => Kind::Fifo,
            5 => Kind::Socket,
            6 => Kind::CharDevice,
            7 => Kind::BlockDevice,
            _ => Kind::File,
        }
    }
}

/// One inode as this device knows it. Times are nanoseconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub ino: u64,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub btime: i64,
    pub nlink: u32,
    pub symlink: Vec<u8>,
    pub version: u64,
    pub manifest: Option<Vec<u8>>,
    pub dirty: bool,
    pub pinned: bool,
    pub listed: bool,
    pub xattrs_listed: bool,
    pub body: u64,
    pub local_bytes: u64,
    /// Kept on this device only (`.loftignore`, `user.loft.ignore`): never sent.
    pub local_only: bool,
}

impl Node {
    /// A new node of `kind` with everything else zero.
    pub fn new(kind: Kind, mode: u32, now: i64) -> Node {
        Node {
            ino: 0,
            kind,
            mode,
            uid: 0,
            gid: 0,
            rdev: 0,
            size: 0,
            atime: now,
            mtime: now,
            ctime: now,
            btime: now,
            nlink: 0,
            symlink: Vec::new(),
            version: 0,
            manifest: None,
            dirty: false,
            pinned: false,
            listed: false,
            xattrs_listed: false,
            body: 0,
            local_bytes: 0,
            local_only: false,
        }
    }
}

/// A clean chunk range held in a body file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub ino: u64,
    pub body: u64,
    pub idx: u64,
    pub offset: u64,
    pub len: u64,
}

/// The mirror database.
pub struct Mirror {
    group: Arc<group::Group>,
    path: PathBuf,
}

/// The columns of a node, in the order [`node_from_row`] reads them; a macro so that
/// statements can be built with `concat!` at compile time.
macro_rules! node_columns {
    () => {
        "ino, kind, mode, uid, gid, rdev, size, atime, mtime, ctime, \
         btime, nlink, symlink, version, manifest, dirty, pinned, listed, xattrs_listed, body, \
         local_bytes, local_only"
    };
}
const NODE_COLUMNS: &str = node_columns!();

/// `?1` = the inode (NULL: assign one), `?2..=?22` = the other columns in
/// [`NODE_COLUMNS`] order; shared by insert and update.
fn node_params(ino: Option<u64>, node: &Node) -> [Box<dyn rusqlite::ToSql + '_>; 22] {
    [
        Box::new(ino),
        Box::new(node.kind as u8),
        Box::new(node.mode),
        Box::new(node.uid),
        Box::new(node.gid),
        Box::new(node.rdev),
        Box::new(node.size),
        Box::new(node.atime),
        Box::new(node.mtime),
        Box::new(node.ctime),
        Box::new(node.btime),
        Box::new(node.nlink),
        Box::new(&node.symlink),
        Box::new(node.version),
        Box::new(&node.manifest),
        Box::new(node.dirty),
        Box::new(node.pinned),
        Box::new(node.listed),
        Box::new(node.xattrs_listed),
        Box::new(node.body),
        Box::new(node.local_bytes),
        Box::new(node.local_only),
    ]
}

fn node_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Node> {
    Ok(Node {
        ino: r.get(0)?,
        kind: Kind::from_wire(r.get(1)?),
        mode: r.get(2)?,
        uid: r.get(3)?,
        gid: r.get(4)?,
        rdev: r.get(5)?,
        size: r.get(6)?,
        atime: r.get(7)?,
        mtime: r.get(8)?,
        ctime: r.get(9)?,
        btime: r.get(10)?,
        nlink: r.get(11)?,
        symlink: r.get(12)?,
        version: r.get(13)?,
        manifest: r.get(14)?,
        dirty: r.get(15)?,
        pinned: r.get(16)?,
        listed: r.get(17)?,
        xattrs_listed: r.get(18)?,
        body: r.get(19)?,
        local_bytes: r.get(20)?,
        local_only: r.get(21)?,
    })
}

impl Mirror {
    /// Opens (creating if needed) the mirror at `path`; a new mirror gets a root
    /// directory with `root_mode`.
    pub fn open(path: &Path, now: i64) -> Result<Mirror> {
        let mut conn = Connection::open(path).map_err(CacheError::from)?;
        // One process owns the mirror (the mount lock sees to it): no file lock and
        // no shared-memory index per transaction. A mount process that is still
        // exiting is waited for.
        conn.busy_timeout(std::time::Duration::from_secs(60))?;
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Commits reach the OS at once (a killed process loses only the changes of
        // the open group, `group`); `sync_wal` makes them durable against power loss
        // when a caller fsyncs.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        // Each change runs in a savepoint (`group`), whose undo records SQLite keeps
        // in a sub-journal. On disk, that is a temporary file that, once a group has
        // grown past 64 KiB, takes two writes per page each change touches (about
        // forty for a new file) for as long as the connection lives; in memory, it is
        // emptied each time a change is released.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(64);
        // Plans do not depend on bound values, so cached statements are never
        // re-prepared when the values change.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        schema::migrate(&mut conn)?;
        let nodes = node_cache::NodeCache::default();
        Db(&conn, &nodes).key_old_operations()?;
        let has_root: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM nodes WHERE ino = ?1)",
            [ROOT_INO],
            |r| r.get(0),
        )?;
        if !has_root {
            let mut root = Node::new(Kind::Directory, 0o755, now);
            root.ino = ROOT_INO;
            root.nlink = 2;
            Db(&conn, &nodes).insert_node(&root)?;
        }
        Ok(Mirror {
            group: group::Group::start(conn),
            path: path.to_path_buf(),
        })
    }

    /// Runs `f` on the database (no change: for reads). It sees every change made so
    /// far, committed or not.
    pub fn read<T, E: From<CacheError>>(
        &self,
        f: impl FnOnce(&Db<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let state = self.group.lock();
        f(&Db(&state.conn, &state.nodes))
    }

    /// Runs `f` as one change: kept if `f` returns `Ok`, undone otherwise; committed
    /// within [`COMMIT_WINDOW`].
    pub fn write<T, E: From<CacheError>>(
        &self,
        f: impl FnOnce(&Db<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.group.change(|state| f(&Db(&state.conn, &state.nodes)))
    }

    /// Makes every change made so far durable against power loss.
    pub fn sync_wal(&self) -> Result<()> {
        self.group.commit()?;
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        match std::fs::File::open(&wal) {
            Ok(file) => file.sync_data().map_err(CacheError::io(PathBuf::from(wal))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::io(PathBuf::from(wal))(e)),
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.group.close();
    }
}

/// The journal's index columns of `op`: `(subject, to_parent, to_name)`.
fn index_keys(op: &Op) -> (i64, Option<i64>, Option<&[u8]>) {
    let (to_parent, to_name) = op.made_entry().unzip();
    (
        op.indexed_node() as i64,
        to_parent.map(|p| p as i64),
        to_name,
    )
}

/// The mirror's operations, inside [`Mirror::read`] or [`Mirror::write`].
pub struct Db<'c>(&'c Connection, &'c node_cache::NodeCache);

impl Db<'_> {
    pub fn node(&self, ino: u64) -> Result<Option<Node>> {
        if let Some(node) = self.1.get(ino) {
            return Ok(Some(node));
        }
        // A literal: the most frequent statement is neither formatted nor allocated.
        const SQL: &str = concat!("SELECT ", node_columns!(), " FROM nodes WHERE ino = ?1");
        let node = self
            .0
            .prepare_cached(SQL)?
            .query_row([ino], node_from_row)
            .optional()?;
        if let Some(node) = &node {
            self.1.put(node);
        }
        Ok(node)
    }

    /// Inserts `node`; `node.ino == 0` assigns a fresh inode number.
    pub fn insert_node(&self, node: &Node) -> Result<u64> {
        let ino = (node.ino != 0).then_some(node.ino);
        self.0
            .prepare_cached(
                "INSERT INTO nodes(ino, kind, mode, uid, gid, rdev, size, atime, mtime, ctime, \
                 btime, nlink, symlink, version, manifest, dirty, pinned, listed, xattrs_listed, \
                 body, local_bytes, local_only) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                 ?17, ?18, ?19, ?20, ?21, ?22)",
            )?
            .execute(rusqlite::params_from_iter(node_params(ino, node)))?;
        let ino = self.0.last_insert_rowid() as u64;
        self.1.put(&Node {
            ino,
            ..node.clone()
        });
        Ok(ino)
    }

    /// Writes every column of `node`.
    pub fn update_node(&self, node: &Node) -> Result<()> {
        let updated = self
            .0
            .prepare_cached(
                "UPDATE nodes SET kind = ?2, mode = ?3, uid = ?4, gid = ?5, rdev = ?6, \
                 size = ?7, atime = ?8, mtime = ?9, ctime = ?10, btime = ?11, nlink = ?12, \
                 symlink = ?13, version = ?14, manifest = ?15, dirty = ?16, pinned = ?17, \
                 listed = ?18, xattrs_listed = ?19, body = ?20, local_bytes = ?21, \
                 local_only = ?22 WHERE ino = ?1",
            )?
            .execute(rusqlite::params_from_iter(node_params(
                Some(node.ino),
                node,
            )))?;
        if updated == 1 {
            self.1.put(node);
        } else {
            self.1.forget(node.ino);
        }
        Ok(())
    }

    /// Forgets a node (its xattrs and ledger rows too); its id mapping stays.
    pub fn delete_node(&self, ino: u64) -> Result<()> {
        tracing::trace!(ino, "node forgotten");
        self.1.forget(ino);
        self.0
            .prepare_cached("DELETE FROM nodes WHERE ino = ?1")?
            .execute([ino])?;
        self.0
            .prepare_cached("DELETE FROM xattrs WHERE ino = ?1")?
            .execute([ino])?;
        self.0
            .prepare_cached("DELETE FROM present WHERE ino = ?1")?
            .execute([ino])?;
        Ok(())
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<u64>> {
        Ok(self
            .0
            .prepare_cached("SELECT ino FROM dentries WHERE parent = ?1 AND name = ?2")?
            .query_row(params![parent, name], |r| r.get(0))
            .optional()?)
    }

    /// The entries of `dir`, by name.
    pub fn entries(&self, dir: u64) -> Result<Vec<(Vec<u8>, u64)>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT name, ino FROM dentries WHERE parent = ?1 ORDER BY name")?;
        let rows = stmt.query_map([dir], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn has_entries(&self, dir: u64) -> Result<bool> {
        Ok(self
            .0
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM dentries WHERE parent = ?1)")?
            .query_row([dir], |r| r.get(0))?)
    }

    /// Some entry naming `ino` (its parent and name), if any.
    pub fn any_entry_of(&self, ino: u64) -> Result<Option<(u64, Vec<u8>)>> {
        Ok(self
            .0
            .prepare_cached("SELECT parent, name FROM dentries WHERE ino = ?1 LIMIT 1")?
            .query_row([ino], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    pub fn add_entry(&self, parent: u64, name: &[u8], ino: u64) -> Result<()> {
        tracing::trace!(parent, name = %String::from_utf8_lossy(name), ino, "entry added");
        self.0
            .prepare_cached(
                "INSERT OR REPLACE INTO dentries(parent, name, ino) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![parent, name, ino])?;
        Ok(())
    }

    pub fn remove_entry(&self, parent: u64, name: &[u8]) -> Result<()> {
        tracing::trace!(parent, name = %String::from_utf8_lossy(name), "entry removed");
        self.0
            .prepare_cached("DELETE FROM dentries WHERE parent = ?1 AND name = ?2")?
            .execute(params![parent, name])?;
        Ok(())
    }

    pub fn remote_of(&self, ino: u64) -> Result<Option<u64>> {
        Ok(self
            .0
            .prepare_cached("SELECT remote FROM idmap WHERE ino = ?1")?
            .query_row([ino], |r| r.get(0))
            .optional()?)
    }

    pub fn ino_of_remote(&self, remote: u64) -> Result<Option<u64>> {
        Ok(self
            .0
            .prepare_cached("SELECT ino FROM idmap WHERE remote = ?1")?
            .query_row([remote], |r| r.get(0))
            .optional()?)
    }

    /// Maps `ino` to `remote`, dropping any other inode's claim on that id.
    pub fn set_remote(&self, ino: u64, remote: u64) -> Result<()> {
        tracing::trace!(ino, remote, "server id mapped");
        self.0
            .prepare_cached("DELETE FROM idmap WHERE remote = ?1 OR ino = ?2")?
            .execute(params![remote, ino])?;
        self.0
            .prepare_cached("INSERT INTO idmap(ino, remote) VALUES (?1, ?2)")?
            .execute(params![ino, remote])?;
        Ok(())
    }

    pub fn xattr(&self, ino: u64, name: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .0
            .prepare_cached("SELECT value FROM xattrs WHERE ino = ?1 AND name = ?2")?
            .query_row(params![ino, name], |r| r.get(0))
            .optional()?)
    }

    pub fn xattr_names(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT name FROM xattrs WHERE ino = ?1 ORDER BY name")?;
        let rows = stmt.query_map([ino], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_xattr(&self, ino: u64, name: &[u8], value: &[u8]) -> Result<()> {
        self.0
            .prepare_cached("INSERT OR REPLACE INTO xattrs(ino, name, value) VALUES (?1, ?2, ?3)")?
            .execute(params![ino, name, value])?;
        Ok(())
    }

    /// Forgets every xattr of `ino`.
    pub fn clear_xattrs(&self, ino: u64) -> Result<()> {
        self.0
            .prepare_cached("DELETE FROM xattrs WHERE ino = ?1")?
            .execute([ino])?;
        Ok(())
    }

    /// Removes an xattr; false if there was none.
    pub fn remove_xattr(&self, ino: u64, name: &[u8]) -> Result<bool> {
        Ok(self
            .0
            .prepare_cached("DELETE FROM xattrs WHERE ino = ?1 AND name = ?2")?
            .execute(params![ino, name])?
            > 0)
    }

    // ---------------------------------------------------------------- ledger

    /// Chunk indexes of `ino`'s body `body` held locally.
    pub fn held_chunks(&self, ino: u64, body: u64) -> Result<Vec<u64>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT idx FROM present WHERE ino = ?1 AND body = ?2")?;
        let rows = stmt.query_map([ino, body], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records a clean chunk range as held (and adds it to the node's local bytes).
    pub fn hold(&self, held: Held, access: i64) -> Result<()> {
        let added = self
            .0
            .prepare_cached(
                "INSERT OR IGNORE INTO present(ino, body, idx, offset, len, access) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                held.ino,
                held.body,
                held.idx,
                held.offset,
                held.len,
                access
            ])?;
        if added > 0 {
            self.1.forget(held.ino);
            self.0
                .prepare_cached("UPDATE nodes SET local_bytes = local_bytes + ?2 WHERE ino = ?1")?
                .execute(params![held.ino, held.len])?;
        }
        Ok(())
    }

    /// Forgets one held range (after its bytes were dropped).
    pub fn release(&self, held: Held) -> Result<()> {
        let removed = self
            .0
            .prepare_cached("DELETE FROM present WHERE ino = ?1 AND body = ?2 AND idx = ?3")?
            .execute(params![held.ino, held.body, held.idx])?;
        if removed > 0 {
            self.1.forget(held.ino);
            self.0
                .prepare_cached(
                    "UPDATE nodes SET local_bytes = MAX(local_bytes - ?2, 0) WHERE ino = ?1",
                )?
                .execute(params![held.ino, held.len])?;
        }
        Ok(())
    }

    /// Forgets every held range of `ino`; returns the bytes they held.
    pub fn release_all(&self, ino: u64) -> Result<u64> {
        let bytes: u64 = self
            .0
            .prepare_cached("SELECT COALESCE(SUM(len), 0) FROM present WHERE ino = ?1")?
            .query_row([ino], |r| r.get(0))?;
        self.0
            .prepare_cached("DELETE FROM present WHERE ino = ?1")?
            .execute([ino])?;
        Ok(bytes)
    }

    /// Marks `ino`'s held ranges as used now.
    pub fn touch(&self, ino: u64, access: i64) -> Result<()> {
        self.0
            .prepare_cached("UPDATE present SET access = ?2 WHERE ino = ?1")?
            .execute(params![ino, access])?;
        Ok(())
    }

    /// Clean bytes held, all files.
    pub fn held_bytes(&self) -> Result<u64> {
        Ok(self
            .0
            .prepare_cached("SELECT COALESCE(SUM(len), 0) FROM present")?
            .query_row([], |r| r.get(0))?)
    }

    /// Least recently used ranges of unpinned files, oldest first.
    pub fn eviction_candidates(&self, limit: u32, skip: u32) -> Result<Vec<Held>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT p.ino, p.body, p.idx, p.offset, p.len FROM present p \
             JOIN nodes n ON n.ino = p.ino WHERE n.pinned = 0 \
             ORDER BY p.access LIMIT ?1 OFFSET ?2",
        )?;
        let rows = stmt.query_map([limit, skip], |r| {
            Ok(Held {
                ino: r.get(0)?,
                body: r.get(1)?,
                idx: r.get(2)?,
                offset: r.get(3)?,
                len: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---------------------------------------------------------------- outbox

    /// Queues `op` unless the node it changes is local-only; true if queued.
    pub fn queue(&self, op: &Op, now: i64) -> Result<bool> {
        if let Some(ino) = op.subject()
            && self.node(ino)?.is_some_and(|n| n.local_only)
        {
            return Ok(false);
        }
        self.push(op, now)?;
        Ok(true)
    }

    pub fn push(&self, op: &Op, now: i64) -> Result<()> {
        let text = serde_json::to_string(op).expect("operations serialize");
        let (subject, to_parent, to_name) = index_keys(op);
        self.0
            .prepare_cached(
                "INSERT INTO outbox(op, queued, subject, to_parent, to_name) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![text, now, subject, to_parent, to_name])?;
        Ok(())
    }

    /// Fills in the index keys of operations queued before the journal had them.
    fn key_old_operations(&self) -> Result<()> {
        let rows: Vec<(i64, String)> = {
            let mut stmt = self
                .0
                .prepare("SELECT seq, op FROM outbox WHERE subject IS NULL")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (seq, text) in rows {
            let op: Op = serde_json::from_str(&text)
                .map_err(|e| CacheError::Corrupt(format!("outbox row {seq}: {e}")))?;
            let (subject, to_parent, to_name) = index_keys(&op);
            self.0.execute(
                "UPDATE outbox SET subject = ?2, to_parent = ?3, to_name = ?4 WHERE seq = ?1",
                params![seq, subject, to_parent, to_name],
            )?;
        }
        Ok(())
    }

    /// Queued operations that name folder `from` as a parent name folder `to`
    /// instead: `from` was found to be a stale view of the server folder `to` took.
    pub fn repoint_queued_parent(&self, from: u64, to: u64) -> Result<()> {
        let rows: Vec<(i64, String)> = {
            let mut stmt = self.0.prepare_cached(
                "SELECT seq, op FROM outbox WHERE json_extract(op, '$.Create.parent') = ?1 \
                 OR json_extract(op, '$.Link.parent') = ?1 \
                 OR json_extract(op, '$.Remove.parent') = ?1 \
                 OR json_extract(op, '$.Rename.parent') = ?1 \
                 OR json_extract(op, '$.Rename.new_parent') = ?1",
            )?;
            let rows = stmt.query_map([from as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (seq, text) in rows {
            let mut op: Op = serde_json::from_str(&text)
                .map_err(|e| CacheError::Corrupt(format!("outbox row {seq}: {e}")))?;
            if !op.repoint_parent(from, to) {
                continue;
            }
            let text = serde_json::to_string(&op).expect("operations serialize");
            let (subject, to_parent, to_name) = index_keys(&op);
            self.0.execute(
                "UPDATE outbox SET op = ?2, subject = ?3, to_parent = ?4, to_name = ?5 \
                 WHERE seq = ?1",
                params![seq, text, subject, to_parent, to_name],
            )?;
        }
        Ok(())
    }

    /// The first `limit` queued operations, oldest first.
    pub fn queued(&self, limit: u32) -> Result<Vec<Queued>> {
        self.queued_after(i64::MIN, limit)
    }

    /// Up to `limit` queued operations after position `seq`, in order.
    pub fn queued_after(&self, seq: i64, limit: u32) -> Result<Vec<Queued>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT seq, op, queued FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![seq, limit], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, text, queued) = row?;
            let op = serde_json::from_str(&text)
                .map_err(|e| CacheError::Corrupt(format!("outbox row {seq}: {e}")))?;
            out.push(Queued { seq, op, queued });
        }
        Ok(out)
    }

    /// The operation queued at position `seq`, if it is still queued.
    pub fn queued_op(&self, seq: i64) -> Result<Option<Op>> {
        let text: Option<String> = self
            .0
            .prepare_cached("SELECT op FROM outbox WHERE seq = ?1")?
            .query_row([seq], |r| r.get(0))
            .optional()?;
        text.map(|text| {
            serde_json::from_str(&text)
                .map_err(|e| CacheError::Corrupt(format!("outbox row {seq}: {e}")))
        })
        .transpose()
    }

    pub fn unqueue(&self, seq: i64) -> Result<()> {
        self.0
            .prepare_cached("DELETE FROM outbox WHERE seq = ?1")?
            .execute([seq])?;
        Ok(())
    }

    /// True when the creation of `ino` is queued after position `seq`.
    pub fn create_queued_after(&self, ino: u64, seq: i64) -> Result<bool> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM outbox WHERE subject = ?2 AND seq > ?1 \
                 AND json_extract(op, '$.Create.ino') = ?2)",
            )?
            .query_row(params![seq, ino as i64], |r| r.get(0))?)
    }

    /// True when a queued rename or link puts an entry at `(parent, name)`: the
    /// entry there is a change made here, not yet on the server.
    pub fn name_queued(&self, parent: u64, name: &[u8]) -> Result<bool> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM outbox WHERE to_parent = ?1 AND to_name = ?2)",
            )?
            .query_row(params![parent as i64, name], |r| r.get(0))?)
    }

    /// True when any queued operation changes node `ino`.
    pub fn queued_for(&self, ino: u64) -> Result<bool> {
        Ok(self
            .0
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM outbox WHERE subject = ?1)")?
            .query_row(params![ino as i64], |r| r.get(0))?)
    }

    /// True when a queued rename moves node `ino`.
    pub fn rename_queued_of(&self, ino: u64) -> Result<bool> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM outbox WHERE subject = ?1 \
                 AND json_extract(op, '$.Rename.ino') = ?1)",
            )?
            .query_row(params![ino as i64], |r| r.get(0))?)
    }

    /// True when a queued removal takes node `ino` away.
    pub fn remove_queued_of(&self, ino: u64) -> Result<bool> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM outbox WHERE subject = ?1 \
                 AND json_extract(op, '$.Remove.ino') = ?1)",
            )?
            .query_row(params![ino as i64], |r| r.get(0))?)
    }

    /// Where the last queued rename of node `ino` puts it: `(new_parent, new_name)`.
    pub fn last_rename_of(&self, ino: u64) -> Result<Option<(u64, Vec<u8>)>> {
        let text: Option<String> = self
            .0
            .prepare_cached(
                "SELECT op FROM outbox WHERE subject = ?1 AND json_extract(op, '$.Rename.ino') = ?1 \
                 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![ino as i64], |r| r.get(0))
            .optional()?;
        let Some(text) = text else {
            return Ok(None);
        };
        match serde_json::from_str(&text) {
            Ok(Op::Rename {
                new_parent,
                new_name,
                ..
            }) => Ok(Some((new_parent, new_name))),
            Ok(_) => Ok(None),
            Err(e) => Err(CacheError::Corrupt(format!("outbox rename of {ino}: {e}"))),
        }
    }

    pub fn queued_count(&self) -> Result<u64> {
        Ok(self
            .0
            .prepare_cached("SELECT COUNT(*) FROM outbox")?
            .query_row([], |r| r.get(0))?)
    }

    /// Files with local changes not yet committed.
    /// Files with local changes, local-only ones included.
    pub fn dirty_files(&self) -> Result<Vec<u64>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT ino FROM nodes WHERE dirty = 1 ORDER BY ino")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Files with local changes that are to reach the server.
    pub fn unsent_files(&self) -> Result<Vec<u64>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT ino FROM nodes WHERE dirty = 1 AND local_only = 0 ORDER BY ino",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---------------------------------------------------------------- settings

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .0
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.0
            .prepare_cached("INSERT OR REPLACE INTO settings(key, value) VALUES (?1, ?2)")?
            .execute(params![key, value])?;
        Ok(())
    }

    pub fn remove_setting(&self, key: &str) -> Result<()> {
        self.0
            .prepare_cached("DELETE FROM settings WHERE key = ?1")?
            .execute([key])?;
        Ok(())
    }
}

impl Db<'_> {
    /// Folders whose entries the mirror holds: listed ones, and ones marked to be
    /// listed again (those a feed reset or a late change lists again).
    pub fn listed_dirs(&self) -> Result<Vec<u64>> {
        let mut stmt = self.0.prepare(
            "SELECT ino FROM nodes WHERE kind = ?1 \
                 AND (listed OR EXISTS(SELECT 1 FROM dentries WHERE parent = nodes.ino)) \
                 ORDER BY ino",
        )?;
        let rows = stmt.query_map([Kind::Directory as u8], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets which server node `ino` was (it is to be created there again).
    pub fn forget_remote(&self, ino: u64) -> Result<()> {
        tracing::trace!(ino, "server id forgotten");
        self.0
            .prepare_cached("DELETE FROM idmap WHERE ino = ?1")?
            .execute([ino])?;
        Ok(())
    }

    /// Entries whose name contains `marker`, as `(parent, name, ino)`.
    pub fn entries_named_like(&self, marker: &[u8]) -> Result<Vec<(u64, Vec<u8>, u64)>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT parent, name, ino FROM dentries WHERE instr(name, ?1) > 0")?;
        let rows = stmt.query_map([marker], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Nodes no entry names (unlinked while open when the process ended).
    pub fn orphans(&self) -> Result<Vec<Node>> {
        let sql = format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE ino != {ROOT_INO} AND \
             NOT EXISTS(SELECT 1 FROM dentries d WHERE d.ino = nodes.ino)"
        );
        let mut stmt = self.0.prepare(&sql)?;
        let rows = stmt.query_map([], node_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// `(ino, body)` of every file node: the body files that may exist.
    pub fn bodies_in_use(&self) -> Result<std::collections::HashSet<(u64, u64)>> {
        let mut stmt = self
            .0
            .prepare("SELECT ino, body FROM nodes WHERE kind = 1")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
