//! `loft ls`, `loft rm`, `loft mv`.

use std::ffi::OsStr;
use std::io::Write;

use anyhow::{Result, anyhow, bail};
use loft_remote::proto::{self, NodeKind};

use super::{parent_of, rfc3339, try_resolve};
use crate::paths::{drive_path, parent_and_name, show};
use crate::session::Session;

fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::File => "file",
        NodeKind::Directory => "folder",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::Socket => "socket",
        NodeKind::CharDevice => "char-device",
        NodeKind::BlockDevice => "block-device",
        NodeKind::Unspecified => "unknown",
    }
}

/// Lists a folder (or shows one entry).
pub async fn ls(session: &Session, path: Option<&OsStr>, long: bool, json: bool) -> Result<()> {
    let client = &session.client;
    let path = match path {
        Some(path) => drive_path(path)?,
        None => b"/".to_vec(),
    };
    let node = client
        .resolve(&path)
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    let mut entries: Vec<(Vec<u8>, proto::Node)> = Vec::new();
    if node.kind() == NodeKind::Directory {
        let mut after = Vec::new();
        loop {
            let page = client.list(node.id, &after, 0).await?;
            for entry in page.entries {
                after = entry.name.to_vec();
                entries.push((entry.name.to_vec(), entry.node.unwrap_or_default()));
            }
            if !page.more {
                break;
            }
        }
    } else {
        let name = parent_and_name(&path)
            .map(|(_, n)| n.to_vec())
            .unwrap_or_default();
        entries.push((name, node));
    }
    if json {
        let list: Vec<_> = entries
            .iter()
            .map(|(name, node)| {
                serde_json::json!({
                    "name": String::from_utf8_lossy(name), "kind": kind_name(node.kind()), "size": node.size,
                    "mode": node.mode, "mtime": rfc3339(node.mtime.as_ref()), "id": node.id, "version": node.version,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for (name, node) in entries {
        if long {
            write!(
                out,
                "{:<7} {:04o} {:>12} {}  ",
                kind_name(node.kind()),
                node.mode,
                node.size,
                rfc3339(node.mtime.as_ref())
            )?;
        }
        out.write_all(&name)?;
        if node.kind() == NodeKind::Directory {
            out.write_all(b"/")?;
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Moves an entry to the trash (folders need `recursive` unless empty).
pub async fn rm(session: &Session, path: &OsStr, recursive: bool) -> Result<()> {
    let path = drive_path(path)?;
    let (parent, name) = parent_of(session.client.as_ref(), &path).await?;
    session
        .client
        .remove(proto::RemoveRequest {
            parent: parent.id,
            name: name.into(),
            recursive,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    Ok(())
}

/// Renames or moves an entry; into DST when DST is an existing folder.
pub async fn mv(session: &Session, from: &OsStr, to: &OsStr) -> Result<()> {
    let client = session.client.as_ref();
    let from = drive_path(from)?;
    let mut to = drive_path(to)?;
    let (from_parent, from_name) = parent_of(client, &from).await?;
    if matches!(try_resolve(client, &to).await?, Some(node) if node.kind() == NodeKind::Directory) {
        if !to.ends_with(b"/") {
            to.push(b'/');
        }
        to.extend_from_slice(&from_name);
    }
    let (to_parent, to_name) = parent_of(client, &to).await?;
    if from_parent.id == to_parent.id && from_name == to_name {
        bail!("{} and {} are the same", show(&from), show(&to));
    }
    client
        .rename(proto::RenameRequest {
            parent: from_parent.id,
            name: from_name.into(),
            new_parent: to_parent.id,
            new_name: to_name.into(),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("{} -> {}: {e}", show(&from), show(&to)))?;
    Ok(())
}
