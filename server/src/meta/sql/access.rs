//! Access checks: every tree operation asks here whether the caller may see or change
//! a node. What the caller may not see is `NotFound`, so errors never leak existence.

use loft_remote::errors::ErrorKind;

use super::db::{Db, args};
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
pub fn role(db: &dyn Db, caller: &Caller, ns: u64) -> Result<Option<Role>> {
    let row = db.query_opt(
        "SELECT role FROM ns_members WHERE ns = ?1 AND user_id = ?2",
        args![ns, caller.user_id],
    )?;
    Ok(match row {
        Some(row) => Role::from_i64(row.i64(0)?),
        None => None,
    })
}

/// A live (not trashed) node that the caller can read.
pub fn visible(db: &dyn Db, caller: &Caller, id: u64) -> Result<NodeRow> {
    match load_node(db, id)? {
        Some(row) if !row.trashed && role(db, caller, row.ns())?.is_some() => Ok(row),
        _ => Err(ServerError::not_found(format!("node {id}"))),
    }
}

/// A live node that the caller can change.
pub fn writable(db: &dyn Db, caller: &Caller, id: u64) -> Result<NodeRow> {
    let row = visible(db, caller, id)?;
    require_write(db, caller, &row)?;
    Ok(row)
}

/// Fails with `PermissionDenied` unless the caller may change nodes of `row`'s namespace.
pub fn require_write(db: &dyn Db, caller: &Caller, row: &NodeRow) -> Result<()> {
    match role(db, caller, row.ns())? {
        Some(role) if role >= Role::Editor => Ok(()),
        _ => Err(ServerError::new(
            ErrorKind::PermissionDenied,
            "read-only access to this folder",
        )),
    }
}

/// A live directory that the caller can read.
pub fn visible_dir(db: &dyn Db, caller: &Caller, id: u64) -> Result<NodeRow> {
    let row = visible(db, caller, id)?;
    if !row.is_dir() {
        return Err(ServerError::new(
            ErrorKind::NotADirectory,
            format!("node {id} is not a directory"),
        ));
    }
    Ok(row)
}

/// A live directory that the caller can change.
pub fn writable_dir(db: &dyn Db, caller: &Caller, id: u64) -> Result<NodeRow> {
    let row = visible_dir(db, caller, id)?;
    require_write(db, caller, &row)?;
    Ok(row)
}
