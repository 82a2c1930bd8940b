//! Access checks: every tree operation asks here whether the caller may see or change
//! a node. What the caller may not see is `NotFound`, so errors never leak existence.

use loft_remote::errors::ErrorKind;
use rusqlite::{OptionalExtension, Transaction, params};

use super::rows::{NodeRow, load_node};
use crate::error::{Result, ServerError};
use crate::meta::Caller;

/// A member's role in a namespace; higher values include the lower ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer = 1,
    Commenter = 2,
    Editor = 3,
    Owner = 4,
}

impl Role {
    pub fn from_i64(value: i64) -> Option<Role> {
        match value {
            1 => Some(Role::Viewer),
            2 => Some(Role::Commenter),
            3 => Some(Role::Editor),
            4 => Some(Role::Owner),
            _ => None,
        }
    }
}

/// The caller's role in namespace `ns`, if any.
pub fn role(tx: &Transaction<'_>, caller: &Caller, ns: u64) -> Result<Option<Role>> {
    let role: Option<i64> = tx
        .query_row(
            "SELECT role FROM ns_members WHERE ns = ?1 AND user_id = ?2",
            params![ns as i64, caller.user_id as i64],
            |row| row.get(0),
        )
        .optional()?;
    Ok(role.and_then(Role::from_i64))
}

/// A live (not trashed) node that the caller can read.
pub fn visible(tx: &Transaction<'_>, caller: &Caller, id: u64) -> Result<NodeRow> {
    match load_node(tx, id)? {
        Some(row) if !row.trashed && role(tx, caller, row.ns())?.is_some() => Ok(row),
        _ => Err(ServerError::not_found(format!("node {id}"))),
    }
}

/// A live node that the caller can change.
pub fn writable(tx: &Transaction<'_>, caller: &Caller, id: u64) -> Result<NodeRow> {
    let row = visible(tx, caller, id)?;
    require_write(tx, caller, &row)?;
    Ok(row)
}

/// Fails with `PermissionDenied` unless the caller may change nodes of `row`'s namespace.
pub fn require_write(tx: &Transaction<'_>, caller: &Caller, row: &NodeRow) -> Result<()> {
    match role(tx, caller, row.ns())? {
        Some(role) if role >= Role::Editor => Ok(()),
        _ => Err(ServerError::new(
            ErrorKind::PermissionDenied,
            "read-only access to this folder",
        )),
    }
}

/// A live directory that the caller can read.
pub fn visible_dir(tx: &Transaction<'_>, caller: &Caller, id: u64) -> Result<NodeRow> {
    let row = visible(tx, caller, id)?;
    if !row.is_dir() {
        return Err(ServerError::new(
            ErrorKind::NotADirectory,
            format!("node {id} is not a directory"),
        ));
    }
    Ok(row)
}

/// A live directory that the caller can change.
pub fn writable_dir(tx: &Transaction<'_>, caller: &Caller, id: u64) -> Result<NodeRow> {
    let row = visible_dir(tx, caller, id)?;
    require_write(tx, caller, &row)?;
    Ok(row)
}
