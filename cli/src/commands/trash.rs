//! `loft trash list|restore|empty`.

use std::ffi::OsStr;
use std::io::Write;

use anyhow::{Result, anyhow};
use loft_remote::names::split_path;
use loft_remote::proto::{self, NodeKind};

use super::rfc3339;
use crate::paths::{drive_path, join, show};
use crate::session::Session;

/// Lists the trash, most recently deleted first.
pub async fn list(session: &Session, json: bool) -> Result<()> {
    let items = session.client.list_trash().await?;
    if json {
        let list: Vec<_> = items
            .iter()
            .map(|item| {
                serde_json::json!({
                    "id": item.id, "path": String::from_utf8_lossy(&item.path), "size": item.size,
                    "deleted": rfc3339(item.deleted.as_ref()), "device": item.device,
                    "folder": item.kind() == NodeKind::Directory,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:>8}  {:>12}  {:<20}  PATH", "ID", "SIZE", "DELETED")?;
    for item in items {
        write!(
            out,
            "{:>8}  {:>12}  {:<20}  ",
            item.id,
            item.size,
            rfc3339(item.deleted.as_ref())
        )?;
        out.write_all(&item.path)?;
        if item.kind() == NodeKind::Directory {
            out.write_all(b"/")?;
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Puts an item back at its original path (by path, or by id with `--id`).
pub async fn restore(session: &Session, path: Option<&OsStr>, id: Option<u64>) -> Result<()> {
    let request = match (path, id) {
        (_, Some(id)) => proto::RestoreTrashRequest {
            id,
            ..Default::default()
        },
        (Some(path), None) => {
            let path = drive_path(path)?;
            // The server compares normalized paths: no doubled or trailing slashes.
            let parts = split_path(&path).map_err(|(_, reason)| anyhow!("{reason}"))?;
            proto::RestoreTrashRequest {
                path: join(&parts).into(),
                ..Default::default()
            }
        }
        (None, None) => return Err(anyhow!("name the item to restore: PATH or --id ID")),
    };
    // The server's message names the item (by path or id).
    let reply = session
        .client
        .restore_trash(request)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    println!("restored {}", show(&reply.path));
    Ok(())
}

/// Deletes everything in the trash for good.
pub async fn empty(session: &Session) -> Result<()> {
    let purged = session.client.empty_trash().await?;
    println!("deleted {purged} items from the trash");
    Ok(())
}
