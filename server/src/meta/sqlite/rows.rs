//! Mapping between rows and wire types.

use loft_remote::proto;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::error::{Result, ServerError};
use crate::meta::{Nanos, to_timestamp};

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
pub fn node_from_row(row: &Row<'_>) -> rusqlite::Result<NodeRow> {
    node_from_row_at(row, 0)
}

/// Reads a row whose [`node_columns`] start at column `at`.
pub fn node_from_row_at(row: &Row<'_>, at: usize) -> rusqlite::Result<NodeRow> {
    let time = |index: usize| -> rusqlite::Result<Option<proto::Timestamp>> {
        Ok(Some(to_timestamp(row.get::<_, Nanos>(at + index)?)))
    };
    let node = proto::Node {
        id: row.get::<_, i64>(at)? as u64,
        kind: row.get(at + 1)?,
        mode: row.get(at + 2)?,
        uid: row.get(at + 3)?,
        gid: row.get(at + 4)?,
        size: row.get::<_, i64>(at + 5)? as u64,
        atime: time(6)?,
        mtime: time(7)?,
        ctime: time(8)?,
        btime: time(9)?,
        nlink: row.get(at + 10)?,
        symlink_target: row
            .get::<_, Option<Vec<u8>>>(at + 11)?
            .unwrap_or_default()
            .into(),
        rdev: row.get::<_, i64>(at + 12)? as u64,
        version: row.get::<_, i64>(at + 13)? as u64,
        namespace: row.get::<_, i64>(at + 14)? as u64,
        content_hash: row
            .get::<_, Option<Vec<u8>>>(at + 15)?
            .unwrap_or_default()
            .into(),
    };
    Ok(NodeRow {
        node,
        trashed: row.get::<_, i64>(at + 16)? != 0,
    })
}

/// Loads a node by id, trashed or not.
pub fn load_node(tx: &Transaction<'_>, id: u64) -> Result<Option<NodeRow>> {
    let sql = format!("SELECT {} FROM inodes WHERE id = ?1", node_columns(None));
    Ok(tx
        .query_row(&sql, params![id as i64], node_from_row)
        .optional()?)
}

/// Loads a node that must exist.
pub fn node(tx: &Transaction<'_>, id: u64) -> Result<NodeRow> {
    load_node(tx, id)?.ok_or_else(|| ServerError::not_found(format!("node {id}")))
}

/// The child `name` of `parent`, if any.
pub fn child(tx: &Transaction<'_>, parent: u64, name: &[u8]) -> Result<Option<NodeRow>> {
    let sql = format!(
        "SELECT {} FROM inodes WHERE id = (SELECT inode FROM dentries WHERE parent = ?1 AND name = ?2)",
        node_columns(None)
    );
    Ok(tx
        .query_row(&sql, params![parent as i64, name], node_from_row)
        .optional()?)
}
