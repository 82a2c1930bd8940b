//! `loft search QUERY`: names and text content, within what the user can read.

use std::io::Write;

use anyhow::Result;
use loft_remote::proto::NodeKind;

use crate::session::Session;

/// Prints the hits, best first: one per line, the drive path, a tab, then the snippet
/// (or, with `json`, an array of `{path, node, kind, snippet}`).
pub async fn search(session: &Session, query: &str, limit: u32, json: bool) -> Result<()> {
    let hits = session.client.search(query, limit).await?;
    if json {
        let list: Vec<_> = hits
            .iter()
            .map(|hit| {
                let kind = match hit.kind() {
                    NodeKind::Directory => "folder",
                    NodeKind::Symlink => "symlink",
                    _ => "file",
                };
                serde_json::json!({
                    "path": String::from_utf8_lossy(&hit.path), "node": hit.node,
                    "kind": kind, "snippet": hit.snippet,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    for hit in hits {
        out.write_all(&hit.path)?;
        writeln!(out, "\t{}", hit.snippet)?;
    }
    Ok(())
}
