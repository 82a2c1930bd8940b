//! The change journal: appended in the same transaction as the change it describes.

use loft_remote::proto;
use prost::Message;
use rusqlite::{OptionalExtension, Transaction, params};

use crate::error::Result;
use crate::meta::{JournalPage, Nanos, to_timestamp};

/// One journal row to append.
pub struct Entry<'a> {
    pub kind: proto::ChangeKind,
    pub node: &'a proto::Node,
    pub parent: u64,
    pub name: &'a [u8],
    pub old_parent: u64,
    pub old_name: &'a [u8],
}

/// Appends `entry` to the journal of the node's namespace and returns its seq.
///
/// The counter row is bumped with one upsert so that the sequence stays gap-free and in
/// commit order: the row lock (SQLite: the write lock) is held until commit.
pub fn append(tx: &Transaction<'_>, device_id: u64, now: Nanos, entry: Entry<'_>) -> Result<u64> {
    let ns = entry.node.namespace as i64;
    let seq: i64 = tx.query_row(
        "INSERT INTO ns_seq(ns, last_seq) VALUES (?1, 1) \
         ON CONFLICT (ns) DO UPDATE SET last_seq = ns_seq.last_seq + 1 RETURNING last_seq",
        params![ns],
        |row| row.get(0),
    )?;
    tx.execute(
        "INSERT INTO journal(ns, seq, kind, inode, parent, name, old_parent, old_name, \
         device_id, time, node) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            ns,
            seq,
            entry.kind as i32,
            entry.node.id as i64,
            entry.parent as i64,
            entry.name,
            entry.old_parent as i64,
            entry.old_name,
            device_id as i64,
            now,
            entry.node.encode_to_vec(),
        ],
    )?;
    Ok(seq as u64)
}

/// The namespace's last seq (0 when it has no journal yet).
pub fn head(tx: &Transaction<'_>, ns: u64) -> Result<u64> {
    let seq: Option<i64> = tx
        .query_row(
            "SELECT last_seq FROM ns_seq WHERE ns = ?1",
            params![ns as i64],
            |row| row.get(0),
        )
        .optional()?;
    Ok(seq.unwrap_or(0) as u64)
}

/// Reads up to `limit` changes after `cursor`.
pub fn since(tx: &Transaction<'_>, ns: u64, cursor: u64, limit: u32) -> Result<JournalPage> {
    let head = head(tx, ns)?;
    let oldest: Option<i64> = tx.query_row(
        "SELECT MIN(seq) FROM journal WHERE ns = ?1",
        params![ns as i64],
        |row| row.get(0),
    )?;
    // Rows before `oldest` were pruned: a cursor that would need them must re-list.
    let pruned = match oldest {
        Some(oldest) => cursor.saturating_add(1) < oldest as u64,
        None => cursor < head,
    };
    if pruned || cursor > head {
        return Ok(JournalPage {
            reset_to: Some(head),
            changes: Vec::new(),
            head,
        });
    }
    let mut statement = tx.prepare_cached(
        "SELECT seq, kind, parent, name, old_parent, old_name, device_id, time, node \
         FROM journal WHERE ns = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = statement.query_map(params![ns as i64, cursor as i64, limit], |row| {
        let node: Vec<u8> = row.get(8)?;
        Ok(proto::Change {
            namespace: ns,
            seq: row.get::<_, i64>(0)? as u64,
            kind: row.get(1)?,
            node: proto::Node::decode(node.as_slice()).ok(),
            parent: row.get::<_, i64>(2)? as u64,
            name: row.get::<_, Vec<u8>>(3)?.into(),
            old_parent: row.get::<_, i64>(4)? as u64,
            old_name: row.get::<_, Vec<u8>>(5)?.into(),
            device_id: row.get::<_, i64>(6)? as u64,
            time: Some(to_timestamp(row.get(7)?)),
        })
    })?;
    let changes = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(JournalPage {
        reset_to: None,
        changes,
        head,
    })
}
