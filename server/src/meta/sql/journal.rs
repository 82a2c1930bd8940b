//! The change journal: appended in the same transaction as the change it describes.

use loft_remote::proto;
use prost::Message;

use super::db::{Db, Row, args};
use crate::error::Result;
use crate::meta::{JournalPage, Nanos, to_timestamp};

/// One journal row to append.
pub struct Entry<'a> {
    /// The namespace whose journal gets the row.
    pub ns: u64,
    pub kind: proto::ChangeKind,
    pub node: &'a proto::Node,
    pub parent: u64,
    pub name: &'a [u8],
    pub old_parent: u64,
    pub old_name: &'a [u8],
}

/// Appends `entry` to its namespace's journal and to the feed of every member of that
/// namespace, and returns its seq in the namespace.
///
/// The counter row is bumped with one upsert so that the sequence stays gap-free and in
/// commit order: the row lock (SQLite: the write lock) is held until commit, and a
/// rolled-back transaction gives its number back. The same statement runs on both
/// databases; a PostgreSQL `SEQUENCE` would leave gaps and could commit out of order.
pub fn append(db: &dyn Db, device_id: u64, now: Nanos, entry: Entry<'_>) -> Result<u64> {
    let ns = entry.ns;
    let seq = db
        .query_one(
            "INSERT INTO ns_seq(ns, last_seq) VALUES (?1, 1) \
             ON CONFLICT (ns) DO UPDATE SET last_seq = ns_seq.last_seq + 1 RETURNING last_seq",
            args![ns],
        )?
        .u64(0)?;
    db.execute(
        "INSERT INTO journal(ns, seq, kind, inode, parent, name, old_parent, old_name, \
         device_id, time, node) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        args![
            ns,
            seq,
            entry.kind as i32,
            entry.node.id,
            entry.parent,
            entry.name,
            entry.old_parent,
            entry.old_name,
            device_id,
            now,
            entry.node.encode_to_vec(),
        ],
    )?;
    // Members in ascending order, so that concurrent writers lock feed rows in one order.
    let members = db.query(
        "SELECT user_id FROM ns_members WHERE ns = ?1 ORDER BY user_id",
        args![ns],
    )?;
    for member in members {
        let user = member.u64(0)?;
        let position = db
            .query_one(
                "INSERT INTO user_seq(user_id, last_seq) VALUES (?1, 1) \
                 ON CONFLICT (user_id) DO UPDATE SET last_seq = user_seq.last_seq + 1 \
                 RETURNING last_seq",
                args![user],
            )?
            .u64(0)?;
        db.execute(
            "INSERT INTO user_feed(user_id, seq, ns, ns_seq) VALUES (?1, ?2, ?3, ?4)",
            args![user, position, ns, seq],
        )?;
    }
    Ok(seq)
}

/// The namespace's last seq (0 when it has no journal yet).
pub fn head(db: &dyn Db, ns: u64) -> Result<u64> {
    match db.query_opt("SELECT last_seq FROM ns_seq WHERE ns = ?1", args![ns])? {
        Some(row) => row.u64(0),
        None => Ok(0),
    }
}

/// Reads up to `limit` changes after `cursor`.
pub fn since(db: &dyn Db, ns: u64, cursor: u64, limit: u32) -> Result<JournalPage> {
    let head = head(db, ns)?;
    let oldest = db
        .query_one("SELECT MIN(seq) FROM journal WHERE ns = ?1", args![ns])?
        .opt_i64(0)?;
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
    let rows = db.query(
        "SELECT seq, kind, parent, name, old_parent, old_name, device_id, time, node \
         FROM journal WHERE ns = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        args![ns, cursor, limit],
    )?;
    let changes = rows
        .iter()
        .map(|row| change_of(row, ns, row.u64(0)?))
        .collect::<Result<Vec<_>>>()?;
    Ok(JournalPage {
        reset_to: None,
        changes,
        head,
    })
}

/// A change from a row of `seq, kind, parent, name, old_parent, old_name, device_id,
/// time, node`; `seq` is the row's journal seq, `position` where the reader sees it.
fn change_of(row: &Row, ns: u64, position: u64) -> Result<proto::Change> {
    Ok(proto::Change {
        namespace: ns,
        seq: position,
        kind: row.i64(1)? as i32,
        node: proto::Node::decode(row.blob(8)?.as_slice()).ok(),
        parent: row.u64(2)?,
        name: row.blob(3)?.into(),
        old_parent: row.u64(4)?,
        old_name: row.blob(5)?.into(),
        device_id: row.u64(6)?,
        time: Some(to_timestamp(row.i64(7)?)),
        namespace_seq: row.u64(0)?,
    })
}

/// The last position of a user's feed (0 when it has none yet).
pub fn feed_head(db: &dyn Db, user: u64) -> Result<u64> {
    match db.query_opt(
        "SELECT last_seq FROM user_seq WHERE user_id = ?1",
        args![user],
    )? {
        Some(row) => row.u64(0),
        None => Ok(0),
    }
}

/// Reads up to `limit` changes of a user's feed after `cursor`: the journals of every
/// namespace the user belongs to, in the order they were written. Rows of namespaces
/// the user has left since are skipped.
pub fn feed_since(db: &dyn Db, user: u64, cursor: u64, limit: u32) -> Result<JournalPage> {
    let head = feed_head(db, user)?;
    let oldest = db
        .query_one(
            "SELECT MIN(seq) FROM user_feed WHERE user_id = ?1",
            args![user],
        )?
        .opt_i64(0)?;
    let pruned = match oldest {
        Some(oldest) => cursor.saturating_add(1) < oldest as u64,
        None => cursor < head,
    };
    // The feed names journal rows; one pruned from its namespace's journal leaves a gap
    // the client cannot see, so it lists again.
    let next_gone = db
        .query_opt(
            "SELECT NOT EXISTS(SELECT 1 FROM journal j WHERE j.ns = f.ns AND j.seq = f.ns_seq) \
             FROM user_feed f WHERE f.user_id = ?1 AND f.seq > ?2 ORDER BY f.seq LIMIT 1",
            args![user, cursor],
        )?
        .map(|row| row.bool(0))
        .transpose()?
        .unwrap_or(false);
    if pruned || next_gone || cursor > head {
        return Ok(JournalPage {
            reset_to: Some(head),
            changes: Vec::new(),
            head,
        });
    }
    let rows = db.query(
        "SELECT j.seq, j.kind, j.parent, j.name, j.old_parent, j.old_name, j.device_id, \
         j.time, j.node, f.seq, f.ns FROM user_feed f \
         JOIN journal j ON j.ns = f.ns AND j.seq = f.ns_seq \
         WHERE f.user_id = ?1 AND f.seq > ?2 \
         AND EXISTS(SELECT 1 FROM ns_members m WHERE m.ns = f.ns AND m.user_id = f.user_id) \
         ORDER BY f.seq LIMIT ?3",
        args![user, cursor, limit],
    )?;
    let changes = rows
        .iter()
        .map(|row| change_of(row, row.u64(10)?, row.u64(9)?))
        .collect::<Result<Vec<_>>>()?;
    Ok(JournalPage {
        reset_to: None,
        changes,
        head,
    })
}
