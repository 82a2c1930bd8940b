//! Mapping between rows and wire types.

use loft_remote::proto;

use super::db::{Db, Row, args};
use crate::error::{Result, ServerError};
use crate::meta::to_timestamp;

/// The columns [`node_from_row`] reads, in order.
const COLUMNS: [&str; 17] = [
    "id",
    "kind",
    "mode",
    "uid",
    "gid",
    "size",
    "atime",
    "mtime",
    "ctime",
    "btime",
    "nlink",
    "symlink_target",
    "rdev",
    "version",
    "ns",
    "content_hash",
    "trashed",
];

/// The node columns as a select list, each qualified with `table.` when given.
pub fn node_columns(table: Option<&str>) -> String {
    let qualify = |column: &&str| match table {
        Some(table) => format!("{table}.{column}"),
        None => column.to_string(),
    };
    COLUMNS.iter().map(qualify).collect::<Vec<_>>().join(", ")
}

/// A node row with the flags the wire type does not carry.
#[derive(Clone, Debug)]
pub struct NodeRow {
    pub node: proto::Node,
    pub trashed: bool,
}

impl NodeRow {
    pub fn id(&self) -> u64 {
        self.node.id
    }
    pub fn kind(&self) -> proto::NodeKind {
        self.node.kind()
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == proto::NodeKind::Directory
    }
    pub fn ns(&self) -> u64 {
        self.node.namespace
    }
}

/// Reads a row selected with [`node_columns`].
pub fn node_from_row(row: &Row) -> Result<NodeRow> {
    node_from_row_at(row, 0)
}

/// Reads a row whose [`node_columns`] start at column `at`.
pub fn node_from_row_at(row: &Row, at: usize) -> Result<NodeRow> {
    let time = |index: usize| -> Result<Option<proto::Timestamp>> {
        Ok(Some(to_timestamp(row.i64(at + index)?)))
    };
    let node = proto::Node {
        id: row.u64(at)?,
        kind: row.i64(at + 1)? as i32,
        mode: row.u32(at + 2)?,
        uid: row.u32(at + 3)?,
        gid: row.u32(at + 4)?,
        size: row.u64(at + 5)?,
        atime: time(6)?,
        mtime: time(7)?,
        ctime: time(8)?,
        btime: time(9)?,
        nlink: row.u32(at + 10)?,
        symlink_target: row.opt_blob(at + 11)?.unwrap_or_default().into(),
        rdev: row.u64(at + 12)?,
        version: row.u64(at + 13)?,
        namespace: row.u64(at + 14)?,
        content_hash: row.opt_blob(at + 15)?.unwrap_or_default().into(),
        has_xattrs: None,
    };
    Ok(NodeRow {
        node,
        trashed: row.bool(at + 16)?,
    })
}

/// Loads a node by id, trashed or not.
pub fn load_node(db: &dyn Db, id: u64) -> Result<Option<NodeRow>> {
    let sql = format!("SELECT {} FROM inodes WHERE id = ?1", node_columns(None));
    db.query_opt(&sql, args![id])?
        .map(|row| node_from_row(&row))
        .transpose()
}

/// Loads a node that must exist.
pub fn node(db: &dyn Db, id: u64) -> Result<NodeRow> {
    load_node(db, id)?.ok_or_else(|| ServerError::not_found(format!("node {id}")))
}

/// The child `name` of `parent`, if any.
pub fn child(db: &dyn Db, parent: u64, name: &[u8]) -> Result<Option<NodeRow>> {
    let sql = format!(
        "SELECT {} FROM inodes WHERE id = (SELECT inode FROM dentries WHERE parent = ?1 AND name = ?2)",
        node_columns(None)
    );
    db.query_opt(&sql, args![parent, name])?
        .map(|row| node_from_row(&row))
        .transpose()
}
