//! `loft share`, `loft share list`, `loft share revoke`, `loft comment`, `loft comments`.
//! The server decides every call; these only resolve paths and print.

use std::ffi::OsStr;

use anyhow::{Result, anyhow};
use clap::ValueEnum;
use loft_remote::proto;

use super::rfc3339;
use crate::paths::{drive_path, show};
use crate::session::Session;

/// A role on a shared item, as typed on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Reads, writes, and shares or revokes.
    Owner,
    /// Reads and writes.
    Editor,
    /// Reads and comments.
    Commenter,
    /// Reads only.
    Viewer,
}

impl RoleArg {
    fn wire(self) -> proto::Role {
        match self {
            RoleArg::Owner => proto::Role::Owner,
            RoleArg::Editor => proto::Role::Editor,
            RoleArg::Commenter => proto::Role::Commenter,
            RoleArg::Viewer => proto::Role::Viewer,
        }
    }
}

/// The lower-case name of a wire role.
fn role_name(role: i32) -> &'static str {
    match proto::Role::try_from(role) {
        Ok(proto::Role::Owner) => "owner",
        Ok(proto::Role::Editor) => "editor",
        Ok(proto::Role::Commenter) => "commenter",
        Ok(proto::Role::Viewer) => "viewer",
        _ => "unknown",
    }
}

async fn resolve(session: &Session, path: &OsStr) -> Result<(Vec<u8>, proto::Node)> {
    let path = drive_path(path)?;
    let node = session
        .client
        .resolve(&path)
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    Ok((path, node))
}

/// `loft share PATH USER --role R`.
pub async fn share(session: &Session, path: &OsStr, user: &str, role: RoleArg) -> Result<()> {
    let (path, node) = resolve(session, path).await?;
    let reply = session
        .client
        .share(proto::ShareRequest {
            node: node.id,
            user: user.to_string(),
            role: role.wire() as i32,
        })
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    let role = role_name(role.wire() as i32);
    if reply.name.is_empty() {
        println!("{user} is now {role} of {}", show(&path));
    } else {
        println!(
            "shared {} with {user} as {role}; {user} sees it as /{}",
            show(&path),
            show(&reply.name)
        );
    }
    Ok(())
}

/// `loft share list PATH [--json]`.
pub async fn list(session: &Session, path: &OsStr, json: bool) -> Result<()> {
    let (path, node) = resolve(session, path).await?;
    let list = session
        .client
        .list_shares(node.id)
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    if json {
        let members: Vec<_> = list
            .members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "user": m.user, "role": role_name(m.role), "granted_by": m.granted_by,
                })
            })
            .collect();
        let out = serde_json::json!({ "shared": list.namespace != 0, "members": members });
        println!("{out}");
        return Ok(());
    }
    if list.namespace == 0 {
        println!("{} is not shared", show(&path));
        return Ok(());
    }
    for m in list.members {
        let by = if m.granted_by.is_empty() {
            String::new()
        } else {
            format!("  (shared by {})", m.granted_by)
        };
        println!("{}\t{}{by}", m.user, role_name(m.role));
    }
    Ok(())
}

/// `loft share revoke PATH USER`.
pub async fn revoke(session: &Session, path: &OsStr, user: &str) -> Result<()> {
    let (path, node) = resolve(session, path).await?;
    let revoked = session
        .client
        .revoke_share(node.id, user)
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    println!("revoked {} from {}", revoked.join(", "), show(&path));
    Ok(())
}

/// `loft comment PATH TEXT`.
pub async fn comment(session: &Session, path: &OsStr, text: &str) -> Result<()> {
    let (path, node) = resolve(session, path).await?;
    let comment = session
        .client
        .add_comment(node.id, text)
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    println!("comment {} added to {}", comment.id, show(&path));
    Ok(())
}

/// `loft comments PATH [--json]`.
pub async fn comments(session: &Session, path: &OsStr, json: bool) -> Result<()> {
    let (path, node) = resolve(session, path).await?;
    let comments = session
        .client
        .list_comments(node.id)
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    if json {
        let list: Vec<_> = comments
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id, "user": c.user, "time": rfc3339(c.time.as_ref()), "text": c.text,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    for c in comments {
        println!("{}  {}: {}", rfc3339(c.time.as_ref()), c.user, c.text);
    }
    Ok(())
}
