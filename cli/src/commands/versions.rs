//! `loft versions`, `loft restore`.

use std::ffi::OsStr;

use anyhow::{Result, anyhow};

use super::rfc3339;
use crate::paths::{drive_path, show};
use crate::session::Session;

/// Lists a file's versions, newest first.
pub async fn versions(session: &Session, path: &OsStr, json: bool) -> Result<()> {
    let path = drive_path(path)?;
    let node = session
        .client
        .resolve(&path)
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    let versions = session
        .client
        .list_versions(node.id)
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    if json {
        let list: Vec<_> = versions
            .iter()
            .map(|v| {
                serde_json::json!({
                    "id": v.id, "size": v.size, "time": rfc3339(v.time.as_ref()), "device": v.device,
                    "author": v.user, "user": v.user, "current": v.current,
                    "hash": loft_hex(&v.content_hash),
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    println!(
        "{:>8}  {:>12}  {:<20}  {:<16}  {:<12}",
        "ID", "SIZE", "TIME", "DEVICE", "AUTHOR"
    );
    for v in versions {
        let mark = if v.current { "  current" } else { "" };
        println!(
            "{:>8}  {:>12}  {:<20}  {:<16}  {:<12}{mark}",
            v.id,
            v.size,
            rfc3339(v.time.as_ref()),
            v.device,
            v.user
        );
    }
    Ok(())
}

/// Makes version `version` of a file its current content again (a new version).
pub async fn restore(session: &Session, path: &OsStr, version: u64) -> Result<()> {
    let path = drive_path(path)?;
    let node = session
        .client
        .resolve(&path)
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    let reply = session
        .client
        .restore_version(node.id, version)
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    println!(
        "restored {} to the content of version {version} (new version {})",
        show(&path),
        reply.version
    );
    Ok(())
}

fn loft_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
