//! `POST /u/SECRET` (multipart/form-data): files sent through an upload link are
//! created in the linked folder, as new files committed by the link's creator, so they
//! are journaled and every mount sees them. A name that is taken gets a suffix
//! (`name (1).ext`); nothing is ever replaced.

use std::io::{Seek, Write};
use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use loft_remote::content::{Chunker, ManifestBuilder, encode_owned};
use loft_remote::errors::ErrorKind;
use loft_remote::names::check_name;
use loft_remote::proto::NodeKind;

use super::link::{self, Access};
use super::{Gateway, GatewayError, page};
use crate::meta::{ChunkRecord, CommitOp, LinkGrant, LinkRole, NewNode};

/// Names tried before giving up on finding a free one.
const MAX_SUFFIX: u32 = 1000;

pub async fn receive(
    State(gateway): State<Arc<Gateway>>,
    uri: Uri,
    mut multipart: Multipart,
) -> Result<Response, GatewayError> {
    let (secret, _) = link::secret_and_path(uri.path())?;
    let grant = link::open(&gateway, &secret).await?;
    if grant.link.role != LinkRole::Upload {
        return Err(GatewayError::NotFound);
    }
    let granted = match link::access(&gateway, &grant, uri.query()) {
        Access::Open => None,
        Access::Granted(offered) => Some(offered),
        // Without the grant a correct password gives, nothing is accepted.
        Access::NeedsPassword => return Err(GatewayError::NotFound),
    };
    let folder = gateway.meta.stat(&grant.caller, grant.link.node).await?;
    if folder.kind() != NodeKind::Directory {
        return Err(GatewayError::NotFound);
    }
    let mut created = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| GatewayError::BadRequest(format!("upload: {e}")))?
    {
        let Some(name) = field.file_name().map(str::to_string) else {
            continue;
        };
        // Browsers may send a path; only its last part names the file.
        let name = name
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or_default()
            .as_bytes()
            .to_vec();
        check_name(&name)
            .map_err(|(_, reason)| GatewayError::BadRequest(format!("file name: {reason}")))?;
        let spool = spool(&gateway, field).await?;
        let name = store(&gateway, &grant, folder.id, &name, spool).await?;
        gateway.metrics.link_upload();
        tracing::info!(link = grant.link.id, name = %String::from_utf8_lossy(&name), "uploaded through a link");
        created.push(name);
    }
    if created.is_empty() {
        return Err(GatewayError::BadRequest(
            "no file in the upload (send multipart/form-data with a file field)".into(),
        ));
    }
    Ok(page::upload_form(
        &gateway,
        &grant,
        &secret,
        granted.as_deref(),
        Some(&created),
    )
    .into_response())
}

/// Writes a field to an anonymous temporary file, within the upload limit.
async fn spool(
    gateway: &Gateway,
    mut field: axum::extract::multipart::Field<'_>,
) -> Result<std::fs::File, GatewayError> {
    let limit = gateway.config.max_upload;
    let mut file = tempfile::tempfile().map_err(|e| {
        tracing::error!(%e, "upload: temporary file");
        GatewayError::Internal
    })?;
    let mut written = 0u64;
    while let Some(bytes) = field
        .chunk()
        .await
        .map_err(|e| GatewayError::BadRequest(format!("upload: {e}")))?
    {
        written += bytes.len() as u64;
        if written > limit {
            return Err(GatewayError::TooLarge(limit));
        }
        file.write_all(&bytes).map_err(|e| {
            tracing::error!(%e, "upload: writing the temporary file");
            GatewayError::Internal
        })?;
    }
    file.rewind().map_err(|_| GatewayError::Internal)?;
    Ok(file)
}

/// Chunks, stores and commits the spooled file as a new file in `folder`; returns the
/// name it got.
async fn store(
    gateway: &Gateway,
    grant: &LinkGrant,
    folder: u64,
    name: &[u8],
    file: std::fs::File,
) -> Result<Vec<u8>, GatewayError> {
    let (sender, mut chunks) = tokio::sync::mpsc::channel(2);
    let chunker = tokio::task::spawn_blocking(move || {
        let mut chunker = Chunker::new(std::io::BufReader::new(file));
        for chunk in chunker.by_ref() {
            let chunk = chunk?;
            let (id, length) = (chunk.id, chunk.data.len());
            let encoded = encode_owned(chunk.data);
            if sender.blocking_send((id, length, encoded)).is_err() {
                break;
            }
        }
        Ok::<_, loft_remote::content::ContentError>(chunker.finish())
    });
    let mut builder = ManifestBuilder::new();
    while let Some((id, length, encoded)) = chunks.recv().await {
        let record = ChunkRecord {
            id,
            length: length as u32,
            stored_length: encoded.data.len() as u32,
            compressed: encoded.compressed,
        };
        gateway
            .chunks
            .put(&id, encoded.compressed, encoded.data.into())
            .await?;
        gateway.meta.record_chunk(&grant.caller, record).await?;
        builder
            .push(id, length)
            .map_err(|_| GatewayError::Internal)?;
    }
    let digest = chunker
        .await
        .map_err(|_| GatewayError::Internal)?
        .map_err(|e| {
            tracing::error!(%e, "upload: reading the temporary file");
            GatewayError::Internal
        })?;
    let manifest = builder.finish(digest).map_err(|_| GatewayError::Internal)?;
    for attempt in 0..MAX_SUFFIX {
        let candidate = if attempt == 0 {
            name.to_vec()
        } else {
            suffixed(name, attempt)
        };
        let op = CommitOp {
            node: 0,
            create: Some(NewNode {
                parent: folder,
                name: candidate.clone(),
                kind: NodeKind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                symlink_target: Vec::new(),
                rdev: 0,
                exclusive: true,
                mtime: None,
            }),
            base_version: 0,
            manifest: manifest.clone(),
            mtime: None,
            atime: None,
        };
        match gateway.meta.commit(&grant.caller, op).await {
            Ok(_) => return Ok(candidate),
            Err(error) if error.kind == ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(GatewayError::BadRequest(
        "no free name for the upload in this folder".into(),
    ))
}

/// `name (N).ext`.
fn suffixed(name: &[u8], n: u32) -> Vec<u8> {
    let stem_end = match name.iter().rposition(|&b| b == b'.') {
        Some(0) | None => name.len(),
        Some(dot) => dot,
    };
    let mut out = name[..stem_end].to_vec();
    out.extend_from_slice(format!(" ({n})").as_bytes());
    out.extend_from_slice(&name[stem_end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_names_get_a_number_before_the_extension() {
        assert_eq!(suffixed(b"report.pdf", 1), b"report (1).pdf");
        assert_eq!(suffixed(b"notes", 2), b"notes (2)");
        assert_eq!(suffixed(b".profile", 1), b".profile (1)");
        assert_eq!(suffixed(b"a.tar.gz", 3), b"a.tar (3).gz");
    }
}
