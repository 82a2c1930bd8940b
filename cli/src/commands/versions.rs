//! `loft versions`.

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
    let versions = session.client.list_versions(node.id).await?;
    if json {
        let list: Vec<_> = versions
            .iter()
            .map(|v| {
                serde_json::json!({
                    "id": v.id, "size": v.size, "time": rfc3339(v.time.as_ref()), "device": v.device,
                    "user": v.user, "current": v.current, "hash": loft_hex(&v.content_hash),
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    for v in versions {
        let mark = if v.current { " (current)" } else { "" };
        println!(
            "{:>8}  {:>12} bytes  {}  {}{mark}",
            v.id,
            v.size,
            rfc3339(v.time.as_ref()),
            v.device
        );
    }
    Ok(())
}

fn loft_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
