//! Shares and comments. Sharing a folder (or file) of one's home makes it a namespace of
//! its own: its nodes move to the new namespace, whose members each get an entry for it
//! at the root of their drive. A member's role decides what it may do there (see
//! [`access`]); only owners share and revoke, never granting more than they hold, and a
//! revoke also removes everyone the revoked user had shared with, transitively.

use loft_remote::errors::ErrorKind;
use loft_remote::names::check_name;
use loft_remote::proto::{ChangeKind, NodeKind};

use super::access::{self, Role};
use super::db::{Db, args};
use super::journal::{self, Entry};
use super::rows::{self, NodeRow};
use super::tree::{Write, any_dentry};
use super::users::user_by_name;
use crate::error::{Result, ServerError};
use crate::meta::{Caller, CommentRecord, MemberRecord, Membership, ShareOutcome, Shares};
use crate::mount_name::numbered_name;

/// Longest comment accepted, in bytes.
pub const COMMENT_MAX: usize = 4096;
/// How many numbered names are tried for a member's root entry.
const NAME_ATTEMPTS: u32 = 1000;

/// A namespace's owner and top node.
struct Namespace {
    id: u64,
    owner: u64,
    root: u64,
}

fn namespace(db: &dyn Db, id: u64) -> Result<Namespace> {
    let row = db
        .query_opt(
            "SELECT owner, root FROM namespaces WHERE id = ?1",
            args![id],
        )?
        .ok_or_else(|| ServerError::internal(format!("namespace {id} has no row")))?;
    Ok(Namespace {
        id,
        owner: row.u64(0)?,
        root: row.u64(1)?,
    })
}

fn is_home(db: &dyn Db, ns: u64) -> Result<bool> {
    db.query_one(
        "SELECT EXISTS(SELECT 1 FROM users WHERE home_ns = ?1)",
        args![ns],
    )?
    .bool(0)
}

/// The shared namespace whose top is `row`, if `row` is the top of one.
fn shared_namespace_of(db: &dyn Db, row: &NodeRow) -> Result<Option<Namespace>> {
    let ns = namespace(db, row.ns())?;
    if ns.root == row.id() && !is_home(db, ns.id)? {
        return Ok(Some(ns));
    }
    Ok(None)
}

fn user_name(db: &dyn Db, id: u64) -> Result<String> {
    Ok(db
        .query_opt("SELECT name FROM users WHERE id = ?1", args![id])?
        .map(|row| row.text(0))
        .transpose()?
        .unwrap_or_default())
}

fn denied(message: &str) -> ServerError {
    ServerError::new(ErrorKind::PermissionDenied, message)
}

/// Shares the item `node` with `user_name` as `role`, or changes that user's role.
pub fn share(w: &Write<'_>, node: u64, user_name: &str, role: Role) -> Result<ShareOutcome> {
    let row = access::visible(w.db, w.caller, node)?;
    if !matches!(row.kind(), NodeKind::Directory | NodeKind::File) {
        return Err(ServerError::invalid("only folders and files can be shared"));
    }
    let held = access::role(w.db, w.caller, row.ns())?.unwrap_or(Role::Viewer);
    if held < Role::Owner {
        return Err(denied("only an owner can share"));
    }
    if role > held {
        return Err(denied("a share cannot grant more than you hold"));
    }
    let target = user_by_name(w.db, user_name)?
        .ok_or_else(|| ServerError::not_found(format!("user {user_name}")))?;
    if target.id == w.caller.user_id {
        return Err(ServerError::invalid("you cannot share with yourself"));
    }
    let ns = match shared_namespace_of(w.db, &row)? {
        Some(ns) => ns,
        None => make_namespace(w, &row)?,
    };
    if target.id == ns.owner {
        return Err(ServerError::precondition(format!(
            "{user_name} owns this shared item; the owner's role does not change"
        )));
    }
    let existing = w.db.query_opt(
        "SELECT role FROM ns_members WHERE ns = ?1 AND user_id = ?2",
        args![ns.id, target.id],
    )?;
    if existing.is_some() {
        w.db.execute(
            "UPDATE ns_members SET role = ?1, granted_by = ?2 WHERE ns = ?3 AND user_id = ?4",
            args![role as i64, w.caller.user_id, ns.id, target.id],
        )?;
        return Ok(ShareOutcome {
            ns: ns.id,
            name: Vec::new(),
        });
    }
    w.db.execute(
        "INSERT INTO ns_members(ns, user_id, role, granted_by) VALUES (?1, ?2, ?3, ?4)",
        args![ns.id, target.id, role as i64, w.caller.user_id],
    )?;
    let name = place_at_root(w, &row, target.root, target.home_ns)?;
    Ok(ShareOutcome { ns: ns.id, name })
}

/// Turns `row` (a folder or file of the caller's home) into a namespace of its own,
/// owned by the caller.
fn make_namespace(w: &Write<'_>, row: &NodeRow) -> Result<Namespace> {
    let home = namespace(w.db, row.ns())?;
    if !is_home(w.db, home.id)? || home.owner != w.caller.user_id {
        return Err(ServerError::precondition(
            "only a shared folder itself can be shared again, not something inside it",
        ));
    }
    if row.id() == home.root {
        return Err(ServerError::invalid(
            "the drive's root cannot be shared; share a folder in it",
        ));
    }
    if !row.is_dir() && row.node.nlink > 1 {
        return Err(ServerError::precondition(
            "a file with several hard links cannot be shared",
        ));
    }
    let id =
        w.db.query_one(
            "INSERT INTO namespaces(owner, root) VALUES (?1, ?2) RETURNING id",
            args![w.caller.user_id, row.id()],
        )?
        .u64(0)?;
    // Everything below moves, except what already is in another namespace (a folder
    // shared with the caller that it moved here cannot be, but an earlier share can).
    w.db.execute(
        "WITH RECURSIVE below(id) AS (SELECT CAST(?1 AS BIGINT) UNION \
         SELECT d.inode FROM dentries d JOIN below ON d.parent = below.id \
         JOIN inodes i ON i.id = d.inode WHERE i.ns = ?2) \
         UPDATE inodes SET ns = ?3 WHERE id IN (SELECT id FROM below)",
        args![row.id(), home.id, id],
    )?;
    w.db.execute(
        "UPDATE comments SET ns = ?1 WHERE ns = ?2 AND inode IN (SELECT id FROM inodes WHERE ns = ?1)",
        args![id, home.id],
    )?;
    // Versions follow their files, so a namespace's stored bytes stay one indexed sum.
    w.db.execute(
        "UPDATE versions SET ns = ?1 WHERE ns = ?2 AND inode IN (SELECT id FROM inodes WHERE ns = ?1)",
        args![id, home.id],
    )?;
    w.db.execute(
        "INSERT INTO ns_members(ns, user_id, role, granted_by) VALUES (?1, ?2, ?3, 0)",
        args![id, w.caller.user_id, Role::Owner as i64],
    )?;
    Ok(Namespace {
        id,
        owner: w.caller.user_id,
        root: row.id(),
    })
}

/// Gives a new member an entry for the shared item at its drive's root, under the
/// item's own name or a numbered one, and tells the member's feed.
fn place_at_root(w: &Write<'_>, row: &NodeRow, root: u64, home_ns: u64) -> Result<Vec<u8>> {
    let own = any_dentry(w.db, row.id())?
        .map(|(_, name)| name)
        .unwrap_or_else(|| b"shared".to_vec());
    let mut name = None;
    for number in 1..=NAME_ATTEMPTS {
        let candidate = numbered_name(&own, number, row.is_dir());
        if check_name(&candidate).is_ok() && rows::child(w.db, root, &candidate)?.is_none() {
            name = Some(candidate);
            break;
        }
    }
    let name = name.ok_or_else(|| {
        ServerError::new(ErrorKind::AlreadyExists, "no free name at the drive's root")
    })?;
    w.db.execute(
        "INSERT INTO dentries(parent, name, inode) VALUES (?1, ?2, ?3)",
        args![root, &name, row.id()],
    )?;
    if row.is_dir() {
        w.add_nlink(root, 1)?;
    }
    w.touch_dir(root)?;
    let node = rows::node(w.db, row.id())?.node;
    journal::append(
        w.db,
        w.caller.device_id,
        w.now,
        Entry {
            ns: home_ns,
            kind: ChangeKind::Created,
            node: &node,
            parent: root,
            name: &name,
            old_parent: 0,
            old_name: b"",
        },
    )?;
    Ok(name)
}

/// Who holds the shared item `node`, with their roles. Any member may ask; an item
/// that is not shared has no members.
pub fn shares(db: &dyn Db, caller: &Caller, node: u64) -> Result<Shares> {
    let row = access::visible(db, caller, node)?;
    let Some(ns) = shared_namespace_of(db, &row)? else {
        return Ok(Shares::default());
    };
    let rows = db.query(
        "SELECT u.name, m.role, COALESCE(g.name, '') FROM ns_members m \
         JOIN users u ON u.id = m.user_id LEFT JOIN users g ON g.id = m.granted_by \
         WHERE m.ns = ?1 ORDER BY m.role DESC, u.name",
        args![ns.id],
    )?;
    let members = rows
        .iter()
        .map(|r| {
            Ok(MemberRecord {
                user: r.text(0)?,
                role: Role::from_i64(r.i64(1)?)
                    .ok_or_else(|| ServerError::internal("unknown role in ns_members"))?,
                granted_by: r.text(2)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Shares { ns: ns.id, members })
}

/// Ends `user_name`'s membership of the shared item `node`, and with it that of
/// everyone it had shared with. Owners may revoke anyone but the item's owner; any
/// member may revoke itself (leave). Returns the names of everyone removed.
pub fn revoke(w: &Write<'_>, node: u64, user_name: &str) -> Result<Vec<String>> {
    let row = access::visible(w.db, w.caller, node)?;
    let ns = shared_namespace_of(w.db, &row)?
        .ok_or_else(|| ServerError::precondition("this item is not shared"))?;
    let held = access::role(w.db, w.caller, ns.id)?.unwrap_or(Role::Viewer);
    let target = user_by_name(w.db, user_name)?
        .ok_or_else(|| ServerError::not_found(format!("user {user_name}")))?;
    if target.id != w.caller.user_id && held < Role::Owner {
        return Err(denied("only an owner can revoke others"));
    }
    if target.id == ns.owner {
        return Err(ServerError::precondition(format!(
            "{user_name} owns this shared item and cannot be removed"
        )));
    }
    let member = w.db.query_opt(
        "SELECT 1 FROM ns_members WHERE ns = ?1 AND user_id = ?2",
        args![ns.id, target.id],
    )?;
    if member.is_none() {
        return Err(ServerError::not_found(format!(
            "{user_name} is not a member of this shared item"
        )));
    }
    revoke_cascading(w, &ns, target.id)
}

fn revoke_cascading(w: &Write<'_>, ns: &Namespace, user: u64) -> Result<Vec<String>> {
    let mut pending = vec![user];
    let mut removed = Vec::new();
    while let Some(user) = pending.pop() {
        if user == ns.owner {
            continue;
        }
        let gone = w.db.execute(
            "DELETE FROM ns_members WHERE ns = ?1 AND user_id = ?2",
            args![ns.id, user],
        )?;
        if gone == 0 {
            continue;
        }
        remove_root_entries(w, ns, user)?;
        removed.push(user_name(w.db, user)?);
        for row in w.db.query(
            "SELECT user_id FROM ns_members WHERE ns = ?1 AND granted_by = ?2",
            args![ns.id, user],
        )? {
            pending.push(row.u64(0)?);
        }
    }
    Ok(removed)
}

/// Removes every entry a former member had for the shared item (wherever in its home
/// it put it) and tells the member's feed.
fn remove_root_entries(w: &Write<'_>, ns: &Namespace, user: u64) -> Result<()> {
    let home =
        w.db.query_one("SELECT home_ns FROM users WHERE id = ?1", args![user])?
            .u64(0)?;
    let entries = w.db.query(
        "SELECT d.parent, d.name FROM dentries d JOIN inodes p ON p.id = d.parent \
         WHERE d.inode = ?1 AND p.ns = ?2",
        args![ns.root, home],
    )?;
    let node = rows::node(w.db, ns.root)?;
    for entry in entries {
        let (parent, name) = (entry.u64(0)?, entry.blob(1)?);
        w.db.execute(
            "DELETE FROM dentries WHERE parent = ?1 AND name = ?2",
            args![parent, &name],
        )?;
        if node.is_dir() {
            w.add_nlink(parent, -1)?;
        }
        w.touch_dir(parent)?;
        journal::append(
            w.db,
            w.caller.device_id,
            w.now,
            Entry {
                ns: home,
                kind: ChangeKind::Removed,
                node: &node.node,
                parent,
                name: &name,
                old_parent: 0,
                old_name: b"",
            },
        )?;
    }
    Ok(())
}

/// Removing a member's own entry for a shared item means leaving the share (the
/// item's owner removing it from its home trashes it, as any delete). True when the
/// remove was such a leave and is done.
pub fn leaves_share(w: &Write<'_>, row: &NodeRow, parent: u64) -> Result<bool> {
    let parent_ns = rows::node(w.db, parent)?.ns();
    if parent_ns == row.ns() {
        return Ok(false);
    }
    let Some(ns) = shared_namespace_of(w.db, row)? else {
        return Ok(false);
    };
    if ns.owner == w.caller.user_id {
        return Ok(false);
    }
    revoke_cascading(w, &ns, w.caller.user_id)?;
    Ok(true)
}

/// Every namespace the caller belongs to, with its top node and the caller's role.
pub fn memberships(db: &dyn Db, caller: &Caller) -> Result<Vec<Membership>> {
    db.query(
        "SELECT m.ns, n.root, m.role FROM ns_members m JOIN namespaces n ON n.id = m.ns \
         WHERE m.user_id = ?1 ORDER BY m.ns",
        args![caller.user_id],
    )?
    .iter()
    .map(|r| {
        Ok(Membership {
            ns: r.u64(0)?,
            root: r.u64(1)?,
            role: Role::from_i64(r.i64(2)?)
                .ok_or_else(|| ServerError::internal("unknown role in ns_members"))?,
        })
    })
    .collect()
}

/// Adds a comment to `node`: commenters and above.
pub fn add_comment(w: &Write<'_>, node: u64, text: &str) -> Result<CommentRecord> {
    let text = text.trim();
    if text.is_empty() || text.len() > COMMENT_MAX {
        return Err(ServerError::invalid(format!(
            "a comment is 1-{COMMENT_MAX} bytes of text"
        )));
    }
    let row = access::visible(w.db, w.caller, node)?;
    let role = access::role(w.db, w.caller, row.ns())?.unwrap_or(Role::Viewer);
    if role < Role::Commenter {
        return Err(denied("viewers cannot comment"));
    }
    let id =
        w.db.query_one(
            "SELECT COALESCE(MAX(id), 0) + 1 FROM comments WHERE ns = ?1",
            args![row.ns()],
        )?
        .u64(0)?;
    w.db.execute(
        "INSERT INTO comments(ns, id, inode, user_id, time, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![row.ns(), id, node, w.caller.user_id, w.now, text],
    )?;
    Ok(CommentRecord {
        id,
        node,
        user: w.caller.user_name.clone(),
        time: w.now,
        text: text.to_string(),
    })
}

/// The comments on `node`, oldest first: anyone who can read it.
pub fn comments(db: &dyn Db, caller: &Caller, node: u64) -> Result<Vec<CommentRecord>> {
    let row = access::visible(db, caller, node)?;
    db.query(
        "SELECT c.id, COALESCE(u.name, ''), c.time, c.body FROM comments c \
         LEFT JOIN users u ON u.id = c.user_id WHERE c.ns = ?1 AND c.inode = ?2 ORDER BY c.id",
        args![row.ns(), node],
    )?
    .iter()
    .map(|r| {
        Ok(CommentRecord {
            id: r.u64(0)?,
            node,
            user: r.text(1)?,
            time: r.i64(2)?,
            text: r.text(3)?,
        })
    })
    .collect()
}
