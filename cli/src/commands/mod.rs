//! One module per group of `loft` commands.

pub mod account;
pub mod conflicts;
pub mod files;
pub mod links;
pub mod mounted;
pub mod quota;
pub mod search;
pub mod sharing;
pub mod status;
pub mod transfer;
pub mod trash;
pub mod versions;

use anyhow::{Result, anyhow};
use loft_remote::RemoteClient;
use loft_remote::errors::ErrorKind;
use loft_remote::proto::{self, NodeKind};

use crate::paths::{parent_and_name, show};

/// Resolves the directory holding `path` and the last name in it.
pub async fn parent_of(client: &dyn RemoteClient, path: &[u8]) -> Result<(proto::Node, Vec<u8>)> {
    let (parents, name) =
        parent_and_name(path).ok_or_else(|| anyhow!("the drive root has no parent"))?;
    let parent = client
        .resolve(&crate::paths::join(&parents))
        .await
        .map_err(|e| anyhow!("{}: {e}", show(path)))?;
    if parent.kind() != NodeKind::Directory {
        return Err(anyhow!("{}: a parent is not a folder", show(path)));
    }
    Ok((parent, name.to_vec()))
}

/// Resolves `path`, or `None` if nothing is there.
pub async fn try_resolve(client: &dyn RemoteClient, path: &[u8]) -> Result<Option<proto::Node>> {
    match client.resolve(path).await {
        Ok(node) => Ok(Some(node)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!("{}: {e}", show(path))),
    }
}

/// Creates the folders of `parts` that are missing (like `mkdir -p`), returning the last.
pub async fn make_folders(
    client: &dyn RemoteClient,
    root: u64,
    parts: &[&[u8]],
) -> Result<proto::Node> {
    let mut dir = client.stat(root).await?;
    for part in parts {
        dir = client
            .create(proto::CreateRequest {
                parent: dir.id,
                name: part.to_vec().into(),
                kind: NodeKind::Directory as i32,
                mode: 0o755,
                exclusive: false,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("creating folder {}: {e}", String::from_utf8_lossy(part)))?;
    }
    Ok(dir)
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(time: Option<&proto::Timestamp>) -> String {
    let time = time.cloned().unwrap_or_default();
    chrono::DateTime::from_timestamp(time.seconds, time.nanos)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
