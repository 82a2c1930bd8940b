//! `loft put` and `loft get`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use loft_remote::RemoteError;
use loft_remote::content::Manifest;
use loft_remote::errors::ErrorKind;
use loft_remote::proto::{self, NodeKind};
use loft_remote::transfer::{download, upload};

use super::{make_folders, try_resolve};
use crate::paths::{drive_path, parent_and_name, show};
use crate::progress::bytes_bar;
use crate::session::Session;

/// How long `put` keeps retrying while the server is unreachable.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);
const RETRY_FIRST_DELAY: std::time::Duration = std::time::Duration::from_millis(200);
const RETRY_MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// Uploads a local file as a new version of REMOTE (creating it and its folders if
/// needed). The commit names the version it replaces, so it never conflicts with itself.
pub async fn put(session: &Session, local: &Path, remote: &OsStr, json: bool) -> Result<()> {
    let file =
        std::fs::File::open(local).with_context(|| format!("opening {}", local.display()))?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        bail!("{}: only regular files can be put", local.display());
    }
    let client = session.client.clone();
    let mut path = drive_path(remote)?;
    let local_name = local
        .file_name()
        .ok_or_else(|| anyhow!("{}: no file name", local.display()))?;
    // `put f /dir/` or `put f /existing-dir` puts the file inside the folder.
    let into_dir = path.ends_with(b"/")
        || matches!(try_resolve(client.as_ref(), &path).await?, Some(node) if node.kind() == NodeKind::Directory);
    if into_dir {
        if !path.ends_with(b"/") {
            path.push(b'/');
        }
        path.extend_from_slice(local_name.as_bytes());
    }
    let (parents, name) =
        parent_and_name(&path).ok_or_else(|| anyhow!("cannot put onto the drive root"))?;
    let who = client.who_am_i().await?;
    let parent = make_folders(client.as_ref(), who.root, &parents).await?;
    // An existing file gets a new version on top of the one seen here; a new one is
    // created by the commit itself, so nobody sees it empty.
    let (node, base_version) = match client.lookup(parent.id, name).await {
        Ok(node) if node.kind() == NodeKind::File => (node.id, node.version),
        Ok(_) => bail!("{}: not a regular file", show(&path)),
        Err(e) if e.kind == ErrorKind::NotFound => (0, 0),
        Err(e) => bail!("{}: {e}", show(&path)),
    };
    let mtime = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| proto::Timestamp {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        });
    let (bar, progress) = bytes_bar(metadata.len(), "put");
    // A server that goes away mid-upload is waited for; each new attempt sends only the
    // chunks the server does not hold yet.
    let started = std::time::Instant::now();
    let mut delay = RETRY_FIRST_DELAY;
    let (reply, stats) = loop {
        bar.set_position(0);
        let attempt = async {
            let file = std::fs::File::open(local).map_err(|e| {
                RemoteError::new(ErrorKind::Internal, format!("{}: {e}", local.display()))
            })?;
            let (manifest, stats) = upload(client.clone(), file, progress.clone()).await?;
            let reply = client
                .commit(proto::CommitRequest {
                    node,
                    base_version,
                    manifest: Some(proto::Manifest::from(&manifest)),
                    mtime,
                    parent: parent.id,
                    name: name.to_vec().into(),
                    mode: metadata.permissions().mode() & 0o7777,
                    uid: metadata.uid(),
                    gid: metadata.gid(),
                    atime: None,
                })
                .await?;
            Ok::<_, RemoteError>((reply, stats))
        };
        match attempt.await {
            Ok(done) => break done,
            Err(e) if e.is_transient() && started.elapsed() < RETRY_FOR => {
                bar.suspend(|| eprintln!("loft: {e}; retrying in {} ms", delay.as_millis()));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX_DELAY);
            }
            Err(e) => bail!("{}: {e}", show(&path)),
        }
    };
    bar.finish_and_clear();
    if reply.conflict {
        eprintln!(
            "loft: {} changed on another device meanwhile; this content was saved as {:?}",
            show(&path),
            String::from_utf8_lossy(&reply.conflict_name)
        );
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bytes": stats.bytes, "bytes_uploaded": stats.bytes_uploaded,
                "chunks": stats.chunks, "chunks_uploaded": stats.chunks_uploaded,
            })
        );
    } else {
        println!(
            "{}: {} bytes, {} of {} chunks uploaded ({} bytes)",
            show(&path),
            stats.bytes,
            stats.chunks_uploaded,
            stats.chunks,
            stats.bytes_uploaded
        );
    }
    Ok(())
}

/// Downloads REMOTE's current version to LOCAL (inside it, if LOCAL is a folder). The
/// bytes go to a temporary file that replaces LOCAL only once all of them check out.
pub async fn get(session: &Session, remote: &OsStr, local: &Path, json: bool) -> Result<()> {
    let client = session.client.clone();
    let path = drive_path(remote)?;
    let node = client
        .resolve(&path)
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    if node.kind() != NodeKind::File {
        bail!("{}: not a regular file", show(&path));
    }
    let manifest = client
        .get_manifest(node.id, 0)
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    let manifest = Manifest::try_from(manifest).map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    let target: PathBuf = if local.is_dir() {
        let (_, name) =
            parent_and_name(&path).ok_or_else(|| anyhow!("cannot get the drive root"))?;
        local.join(OsStr::from_bytes(name))
    } else {
        local.to_path_buf()
    };
    let mut partial = target.clone().into_os_string();
    partial.push(".loft-part");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let (bar, progress) = bytes_bar(manifest.size, "get");
    let result = download(
        client,
        &manifest,
        std::io::BufWriter::with_capacity(1 << 20, file),
        progress,
    )
    .await;
    bar.finish_and_clear();
    let stats = match result {
        Ok(stats) => stats,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            bail!("{}: {e}", show(&path));
        }
    };
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(node.mode & 0o777))?;
    std::fs::rename(&partial, &target).with_context(|| format!("writing {}", target.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"bytes": stats.bytes, "bytes_downloaded": stats.bytes_downloaded})
        );
    } else {
        println!(
            "{}: {} bytes ({} downloaded)",
            target.display(),
            stats.bytes,
            stats.bytes_downloaded
        );
    }
    Ok(())
}
