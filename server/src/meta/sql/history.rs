//! Version history: restoring an old version, and pruning versions past the retention.

use loft_remote::proto::{ChangeKind, NodeKind};

use super::access;
use super::content::{drop_version, insert_version, set_current, stored_manifest};
use super::db::{Db, args};
use super::rows;
use super::tree::{Write, any_dentry};
use crate::error::{Result, ServerError};
use crate::meta::{CommitOutcome, Nanos};

/// Makes the content of `version` the current content of `node` again, as a new version
/// that reuses the old manifest (no upload) and takes its own chunk references.
pub fn restore_version(w: &Write<'_>, node: u64, version: u64) -> Result<CommitOutcome> {
    let target = access::visible(w.db, w.caller, node)?;
    if target.kind() != NodeKind::File {
        return Err(ServerError::not_found(format!("version {version}")));
    }
    let manifest = stored_manifest(w.db, node, version)?
        .ok_or_else(|| ServerError::not_found(format!("version {version}")))?;
    access::require_write(w.db, w.caller, &target)?;
    let new_version = insert_version(w, node, target.node.version, &manifest)?;
    set_current(w, node, new_version, &manifest, w.now)?;
    let node_now = rows::node(w.db, node)?.node;
    let (parent, name) = any_dentry(w.db, node)?.unwrap_or_default();
    w.journal_for_all(ChangeKind::Modified, &node_now, (parent, &name), (0, b""))?;
    Ok(CommitOutcome {
        node: node_now,
        version: new_version,
        conflict_name: None,
    })
}

/// Deletes at most `limit` versions created before `cutoff` that are not the current
/// version of their file, releasing their chunk references. Returns how many went.
pub fn prune_versions(db: &dyn Db, cutoff: Nanos, limit: u32, now: Nanos) -> Result<u64> {
    let old = db.query(
        "SELECT v.id FROM versions v JOIN inodes i ON i.id = v.inode \
         WHERE v.created < ?1 AND v.id <> i.version ORDER BY v.created LIMIT ?2",
        args![cutoff, limit],
    )?;
    for row in &old {
        drop_version(db, row.u64(0)?, now)?;
    }
    Ok(old.len() as u64)
}
