//! `GET /d/LINK/PATH?exp=…&sig=…`: a signed download, streamed chunk by chunk from the
//! chunk store, with single-range `Range` support (206, or 416 when the range lies
//! outside the file). A download whose last piece (the file's last byte) is taken by
//! the connection counts as a completed download of the link (what `--max-downloads`
//! limits).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use futures::StreamExt;
use loft_remote::content::{ChunkId, ChunkIndex, decode};
use loft_remote::proto::NodeKind;

use super::link::{self, encode_segment, form_pairs, segments_after};
use super::media::content_type;
use super::{Gateway, GatewayError};
use crate::meta::{ChunkRecord, LinkGrant, LinkRole, now_nanos};

/// Chunks read ahead of the client.
const READ_AHEAD: usize = 4;

/// An inclusive byte range of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// What a `Range` header asks of a file of `size` bytes: `Ok(None)` for the whole file
/// (no header, another unit, several ranges or a malformed one: RFC 9110 lets a server
/// ignore those), `Err(())` when the range lies outside the file.
#[allow(clippy::result_unit_err)]
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<ByteRange>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        // bytes=-N: the last N bytes.
        (Err(_), Ok(suffix)) if first.is_empty() => {
            if suffix == 0 || size == 0 {
                return Err(());
            }
            ByteRange {
                start: size.saturating_sub(suffix),
                end: size - 1,
            }
        }
        // bytes=A-
        (Ok(start), Err(_)) if last.is_empty() => {
            if start >= size {
                return Err(());
            }
            ByteRange {
                start,
                end: size - 1,
            }
        }
        // bytes=A-B
        (Ok(start), Ok(end)) => {
            if start > end {
                return Ok(None);
            }
            if start >= size {
                return Err(());
            }
            ByteRange {
                start,
                end: end.min(size - 1),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(range))
}

/// Reads the plaintext of one stored chunk.
async fn plain_chunk(
    gateway: &Gateway,
    id: ChunkId,
    record: ChunkRecord,
) -> Result<Bytes, GatewayError> {
    let stored = gateway.chunks.get(&id).await?;
    if !stored.compressed {
        return Ok(stored.data);
    }
    let length = record.length as usize;
    let plain = tokio::task::spawn_blocking(move || decode(&stored.data, true, length))
        .await
        .map_err(|_| GatewayError::Internal)?
        .map_err(|_| GatewayError::Internal)?;
    Ok(Bytes::from(plain))
}

/// The file a download URL names inside its link.
async fn target(
    gateway: &Gateway,
    grant: &LinkGrant,
    segments: &[Vec<u8>],
) -> Result<loft_remote::proto::Node, GatewayError> {
    let linked = gateway.meta.stat(&grant.caller, grant.link.node).await?;
    let node = if linked.kind() == NodeKind::File {
        // A file link names the file by its name only.
        if segments.len() != 1 {
            return Err(GatewayError::NotFound);
        }
        linked
    } else {
        link::resolve(gateway, grant, segments).await?
    };
    if node.kind() != NodeKind::File {
        return Err(GatewayError::NotFound);
    }
    Ok(node)
}

/// Counts a completed download of link `id`.
async fn count_download(gateway: &Gateway, id: u64) {
    gateway.metrics.link_download();
    if let Err(error) = gateway.meta.count_link_download(id).await {
        tracing::warn!(%error, link = id, "counting a download");
    }
}

pub async fn serve(
    State(gateway): State<Arc<Gateway>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, GatewayError> {
    let mut parts = segments_after(uri.path(), 1).into_iter();
    let link_id = parts
        .next()
        .and_then(|id| String::from_utf8(id).ok())
        .and_then(|id| id.parse::<u64>().ok())
        .ok_or(GatewayError::NotFound)?;
    let segments: Vec<Vec<u8>> = parts.collect();
    let query = form_pairs(uri.query());
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, v)| v.clone())
    };
    let expires = param("exp")
        .and_then(|e| e.parse::<i64>().ok())
        .ok_or(GatewayError::BadSignature)?;
    let signature = param("sig").ok_or(GatewayError::BadSignature)?;
    let joined = segments.join(&b'/');
    if !gateway
        .signer
        .check_download(link_id, &joined, expires, &signature, now_nanos())
    {
        return Err(GatewayError::BadSignature);
    }
    let grant = gateway
        .meta
        .link_by_id(link_id)
        .await?
        .filter(|grant| grant.link.role == LinkRole::Viewer)
        .ok_or(GatewayError::NotFound)?;
    let node = target(&gateway, &grant, &segments).await?;
    let manifest = gateway.meta.manifest(&grant.caller, node.id, 0).await?;
    let ids: Vec<ChunkId> = manifest.chunks.iter().map(|c| c.id).collect();
    let records = gateway
        .meta
        .readable_chunks(&grant.caller, &ids)
        .await?
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or(GatewayError::NotFound)?;

    let size = manifest.size;
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = parse_range(range_header, size).map_err(|()| GatewayError::Unsatisfiable(size))?;
    let (start, end_exclusive) = match range {
        Some(range) => (range.start, range.end + 1),
        None => (0, size),
    };
    let reaches_end = end_exclusive == size;

    // (chunk, record, cut from, cut to) for every chunk overlapping the range.
    let index = ChunkIndex::new(&manifest);
    let pieces: Vec<_> = index
        .covering(&manifest, start, end_exclusive - start)
        .map(|(i, chunk_start, chunk)| {
            let from = start.saturating_sub(chunk_start) as usize;
            let to = (end_exclusive - chunk_start).min(u64::from(chunk.length)) as usize;
            (chunk.id, records[i], from, to)
        })
        .collect();
    let pieces_total = pieces.len();
    let link_id = grant.link.id;
    if pieces_total == 0 && reaches_end {
        count_download(&gateway, link_id).await;
    }
    let streaming = gateway.clone();
    let counting = gateway.clone();
    let body = futures::stream::iter(pieces)
        .map(move |(id, record, from, to)| {
            let gateway = streaming.clone();
            async move {
                let bytes = plain_chunk(&gateway, id, record).await?;
                if to > bytes.len() || from > to {
                    tracing::error!(chunk = %id, "stored chunk shorter than recorded");
                    return Err(GatewayError::Internal);
                }
                Ok(bytes.slice(from..to))
            }
        })
        .buffered(READ_AHEAD)
        .enumerate()
        // In order, as the connection takes each piece: the last one taken completes
        // the download.
        .then(move |(index, piece)| {
            let gateway = counting.clone();
            async move {
                if let Ok(bytes) = &piece {
                    gateway.metrics.bytes_served(bytes.len() as u64);
                    if reaches_end && index + 1 == pieces_total {
                        count_download(&gateway, link_id).await;
                    }
                }
                piece.map_err(|e| std::io::Error::other(format!("{e:?}")))
            }
        });
    let body = Body::from_stream(body);

    let name = segments.last().cloned().unwrap_or_default();
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&name)),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(end_exclusive - start),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename*=UTF-8''{}",
        encode_segment(&name)
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(value) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end_exclusive - 1))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end: u64) -> Result<Option<ByteRange>, ()> {
        Ok(Some(ByteRange { start, end }))
    }

    #[test]
    fn ranges_parse_as_rfc_9110_says() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), range(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), range(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), range(90, 99));
        assert_eq!(parse_range(Some("bytes=-500"), 100), range(0, 99));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), range(50, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=200-300"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=-0"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=0-"), 0), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=9-3"), 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=x-3"), 100), Ok(None));
    }
}
