//! Moving whole files: upload (chunk, ask which chunks the server lacks, send only
//! those) and download (fetch chunks in order, check each, write). Both are pipelines
//! with bounded memory, whatever the file size.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::client::{RemoteClient, RemoteError, RemoteResult};
use crate::content::{
    Chunk, ChunkHasher, ChunkId, Chunker, Cutter, Manifest, ManifestBuilder, decode, encode_owned,
    verify,
};
use crate::errors::ErrorKind;
use crate::proto;

/// Chunks asked about in one HaveChunks call.
const HAVE_BATCH: usize = 64;
/// Chunks asked about in one HaveChunks call of [`upload_small`] (the server takes
/// up to 4096).
const HAVE_MANY: usize = 1024;
/// Chunks (each ≤ 4 MiB) queued between pipeline stages: enough to keep every stage
/// busy; each more costs the upload's peak memory a chunk per queue.
const QUEUE: usize = 2;
/// Chunks compressed at once.
const ENCODERS: usize = 2;
/// Chunks named in one GetChunks call.
const GET_BATCH: usize = 256;
/// Downloaded chunks decoded and verified at once.
const DECODERS: usize = 4;

/// What an upload did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// File size.
    pub bytes: u64,
    /// Chunk payload bytes sent over the wire.
    pub bytes_uploaded: u64,
    /// Chunks in the file.
    pub chunks: u64,
    /// Chunks sent (the rest the server already had for us).
    pub chunks_uploaded: u64,
}

/// What a download did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DownloadStats {
    pub bytes: u64,
    /// Chunk payload bytes received over the wire.
    pub bytes_downloaded: u64,
}

/// Progress callback: called with the number of file bytes just processed.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

fn io_error(error: impl std::fmt::Display) -> RemoteError {
    RemoteError::new(ErrorKind::Internal, format!("local I/O: {error}"))
}

/// Uploads what `reader` yields and returns its manifest, ready to commit. Chunks the
/// server already holds for the caller are not sent, so re-running an interrupted
/// upload sends only what is missing.
pub async fn upload(
    client: Arc<dyn RemoteClient>,
    reader: impl Read + Send + 'static,
    progress: Progress,
) -> RemoteResult<(Manifest, UploadStats)> {
    // Stage 1 (two blocking threads): cut, then hash. Each takes about as long as
    // the other, and on one thread they were the pipeline's slowest stage.
    let stopped = || RemoteError::new(ErrorKind::Unavailable, "upload stopped");
    let (cut_sender, mut cuts) = mpsc::channel(QUEUE);
    let cutting = tokio::task::spawn_blocking(move || -> RemoteResult<()> {
        for cut in Cutter::new(reader) {
            let cut = cut.map_err(io_error)?;
            cut_sender.blocking_send(cut).map_err(|_| stopped())?;
        }
        Ok(())
    });
    let (chunk_sender, mut chunks) = mpsc::channel(QUEUE);
    let hashing = tokio::task::spawn_blocking(move || -> RemoteResult<_> {
        let mut hasher = ChunkHasher::new();
        while let Some(cut) = cuts.blocking_recv() {
            chunk_sender
                .blocking_send(hasher.hash(cut))
                .map_err(|_| stopped())?;
        }
        Ok(hasher.digest())
    });

    // Stage 3 (the wire): one PutChunks stream for the whole file.
    let (upload_sender, uploads) = mpsc::channel::<proto::ChunkUpload>(QUEUE);
    let put = {
        let client = client.clone();
        tokio::spawn(async move { client.put_chunks(uploads).await })
    };

    // Stage 2: ask which chunks are missing, compress those, queue them for the wire.
    let mut builder = ManifestBuilder::new();
    let mut stats = UploadStats::default();
    let mut queued: HashSet<ChunkId> = HashSet::new();
    let mut batch = Vec::with_capacity(HAVE_BATCH);
    let mut finished = false;
    while !finished {
        match chunks.recv().await {
            Some(chunk) => batch.push(chunk),
            None => finished = true,
        }
        // Fill the batch with whatever is ready, without waiting.
        while batch.len() < HAVE_BATCH {
            match chunks.try_recv() {
                Ok(chunk) => batch.push(chunk),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let ids: Vec<ChunkId> = batch.iter().map(|c| c.id).collect();
        let present = client.have_chunks(&ids).await?;
        let mut missing = Vec::new();
        for (chunk, present) in batch.drain(..).zip(present) {
            builder.push(chunk.id, chunk.data.len()).map_err(io_error)?;
            stats.chunks += 1;
            stats.bytes += chunk.data.len() as u64;
            progress(chunk.data.len() as u64);
            if !present && queued.insert(chunk.id) {
                missing.push(chunk);
            }
        }
        let mut encoded = futures::stream::iter(missing)
            .map(|chunk| tokio::task::spawn_blocking(move || chunk_upload(chunk)))
            .buffered(ENCODERS);
        while let Some(result) = encoded.next().await {
            let upload = result.map_err(io_error)?;
            stats.chunks_uploaded += 1;
            stats.bytes_uploaded += upload.data.len() as u64;
            if upload_sender.send(upload).await.is_err() {
                // The stream ended early: its result says why.
                drop(upload_sender);
                return Err(match put.await {
                    Ok(Err(error)) => error,
                    _ => RemoteError::new(ErrorKind::Unavailable, "upload stream closed"),
                });
            }
        }
    }
    drop(upload_sender);
    // A read error ends the cuts early: the cutter's result says so.
    cutting.await.map_err(io_error)??;
    let digest = hashing.await.map_err(io_error)??;
    put.await.map_err(io_error)??;
    let manifest = builder.finish(digest).map_err(io_error)?;
    Ok((manifest, stats))
}

/// A chunk, compressed when that pays, as PutChunks sends it.
fn chunk_upload(chunk: Chunk) -> proto::ChunkUpload {
    let length = chunk.data.len() as u32;
    let encoded = encode_owned(chunk.data);
    proto::ChunkUpload {
        id: chunk.id.0.to_vec().into(),
        data: encoded.data.into(),
        compressed: encoded.compressed,
        length,
    }
}

/// Uploads several small files held in memory at once: one HaveChunks call per
/// [`HAVE_MANY`] chunks and one PutChunks stream for every chunk the server lacks (each
/// sent once, however many files share it). Returns the files' manifests in order.
/// Many small files cost a few calls in all instead of two each.
pub async fn upload_small(
    client: Arc<dyn RemoteClient>,
    contents: Vec<Vec<u8>>,
) -> RemoteResult<(Vec<Manifest>, UploadStats)> {
    let (manifests, unique) = tokio::task::spawn_blocking(move || -> RemoteResult<_> {
        let mut manifests = Vec::with_capacity(contents.len());
        let mut unique: Vec<Chunk> = Vec::new();
        let mut seen: HashSet<ChunkId> = HashSet::new();
        for content in contents {
            let mut chunker = Chunker::new(std::io::Cursor::new(content));
            let mut builder = ManifestBuilder::new();
            for chunk in chunker.by_ref() {
                let chunk = chunk.map_err(io_error)?;
                builder.push(chunk.id, chunk.data.len()).map_err(io_error)?;
                if seen.insert(chunk.id) {
                    unique.push(chunk);
                }
            }
            manifests.push(builder.finish(chunker.finish()).map_err(io_error)?);
        }
        Ok((manifests, unique))
    })
    .await
    .map_err(io_error)??;
    let mut stats = UploadStats {
        bytes: manifests.iter().map(|m| m.size).sum(),
        chunks: manifests.iter().map(|m| m.chunks.len() as u64).sum(),
        ..UploadStats::default()
    };
    let mut missing = Vec::new();
    let mut unique = unique.into_iter().peekable();
    while unique.peek().is_some() {
        let batch: Vec<Chunk> = unique.by_ref().take(HAVE_MANY).collect();
        let ids: Vec<ChunkId> = batch.iter().map(|c| c.id).collect();
        let present = client.have_chunks(&ids).await?;
        missing.extend(
            batch
                .into_iter()
                .zip(present)
                .filter(|(_, present)| !present)
                .map(|(chunk, _)| chunk),
        );
    }
    if missing.is_empty() {
        return Ok((manifests, stats));
    }
    let uploads = tokio::task::spawn_blocking(move || {
        missing.into_iter().map(chunk_upload).collect::<Vec<_>>()
    })
    .await
    .map_err(io_error)?;
    stats.chunks_uploaded = uploads.len() as u64;
    stats.bytes_uploaded = uploads.iter().map(|u| u.data.len() as u64).sum();
    let (sender, receiver) = mpsc::channel(QUEUE);
    let put = tokio::spawn(async move { client.put_chunks(receiver).await });
    for upload in uploads {
        if sender.send(upload).await.is_err() {
            break; // the stream ended early: its result says why
        }
    }
    drop(sender);
    put.await.map_err(io_error)??;
    Ok((manifests, stats))
}

/// Downloads the content described by `manifest` into `writer`, checking every chunk
/// against its id and the whole file against the manifest's hash.
pub async fn download(
    client: Arc<dyn RemoteClient>,
    manifest: &Manifest,
    writer: impl Write + Send + 'static,
    progress: Progress,
) -> RemoteResult<DownloadStats> {
    let received = Arc::new(AtomicU64::new(0));
    // Writing happens on a blocking thread, fed in file order.
    let (piece_sender, mut pieces) = mpsc::channel::<bytes::Bytes>(QUEUE);
    let expected_hash = manifest.content_hash;
    let writer_task = tokio::task::spawn_blocking(move || -> RemoteResult<u64> {
        let mut writer = writer;
        let mut hasher = blake3::Hasher::new();
        let mut written = 0u64;
        while let Some(piece) = pieces.blocking_recv() {
            hasher.update(&piece);
            writer.write_all(&piece).map_err(io_error)?;
            written += piece.len() as u64;
        }
        writer.flush().map_err(io_error)?;
        if *hasher.finalize().as_bytes() != expected_hash {
            return Err(RemoteError::new(
                ErrorKind::Internal,
                "downloaded file does not match its content hash",
            ));
        }
        Ok(written)
    });

    let mut plains = fetch_chunks(client, manifest.chunks.clone(), received.clone());
    let mut got = 0;
    while let Some(plain) = plains.next().await {
        let plain = match plain {
            Ok(plain) => plain,
            Err(error) => {
                drop(piece_sender);
                let _ = writer_task.await;
                return Err(error);
            }
        };
        progress(plain.len() as u64);
        got += 1;
        if piece_sender.send(plain).await.is_err() {
            break;
        }
    }
    if got != manifest.chunks.len() {
        drop(piece_sender);
        return Err(match writer_task.await {
            Ok(Err(error)) => error,
            _ => RemoteError::new(ErrorKind::Unavailable, "download ended early"),
        });
    }
    drop(piece_sender);
    let bytes = writer_task.await.map_err(io_error)??;
    Ok(DownloadStats {
        bytes,
        bytes_downloaded: received.load(Ordering::Relaxed),
    })
}

/// Fetches whole chunks in order, each decoded and checked against its id; counts
/// the payload bytes received in `received`. Up to [`DECODERS`] chunks are decoded at
/// once and [`GET_BATCH`] chunks are named per request.
pub fn fetch_chunks(
    client: Arc<dyn RemoteClient>,
    chunks: Vec<crate::content::ChunkRef>,
    received: Arc<AtomicU64>,
) -> futures::stream::BoxStream<'static, RemoteResult<bytes::Bytes>> {
    let windows: Vec<Vec<crate::content::ChunkRef>> =
        chunks.chunks(GET_BATCH).map(<[_]>::to_vec).collect();
    futures::stream::iter(windows)
        .then(move |window| {
            let client = client.clone();
            let received = received.clone();
            async move {
                let ranges = window
                    .iter()
                    .map(|c| proto::ChunkRange {
                        id: c.id.0.to_vec().into(),
                        offset: 0,
                        length: 0,
                    })
                    .collect();
                let stream = client.get_chunks(ranges).await?;
                let expected = window.len();
                let decoded = stream
                    .zip(futures::stream::iter(window))
                    .map(move |(data, wanted)| decode_piece(data, wanted, received.clone()))
                    .buffered(DECODERS);
                Ok::<_, RemoteError>(counted(decoded, expected))
            }
        })
        .map(|window| match window {
            Ok(stream) => stream.boxed(),
            Err(error) => futures::stream::once(async move { Err(error) }).boxed(),
        })
        .flatten()
        .boxed()
}

/// Ends a window's stream with an error when the server sent fewer chunks than asked.
fn counted(
    stream: impl futures::Stream<Item = RemoteResult<bytes::Bytes>> + Send + 'static,
    expected: usize,
) -> impl futures::Stream<Item = RemoteResult<bytes::Bytes>> + Send + 'static {
    let mut got = 0usize;
    stream
        .map(Some)
        .chain(futures::stream::once(async { None }))
        .filter_map(move |item| {
            let out = match item {
                Some(item) => {
                    got += 1;
                    Some(item)
                }
                None if got < expected => Some(Err(RemoteError::new(
                    ErrorKind::Unavailable,
                    "download ended early",
                ))),
                None => None,
            };
            async move { out }
        })
}

async fn decode_piece(
    data: RemoteResult<proto::ChunkData>,
    wanted: crate::content::ChunkRef,
    received: Arc<AtomicU64>,
) -> RemoteResult<bytes::Bytes> {
    let data = data?;
    received.fetch_add(data.data.len() as u64, Ordering::Relaxed);
    if data.id.as_ref() != wanted.id.0.as_slice() {
        return Err(RemoteError::new(
            ErrorKind::Internal,
            "server sent chunks out of order",
        ));
    }
    tokio::task::spawn_blocking(move || {
        let bad = |e: crate::content::ContentError| {
            RemoteError::new(ErrorKind::Internal, format!("chunk {}: {e}", wanted.id))
        };
        // Raw chunks are checked in place, without a copy.
        let plain = if data.compressed {
            bytes::Bytes::from(decode(&data.data, true, wanted.length as usize).map_err(bad)?)
        } else if data.data.len() == wanted.length as usize {
            data.data
        } else {
            return Err(RemoteError::new(
                ErrorKind::Internal,
                format!("chunk {}: wrong length", wanted.id),
            ));
        };
        verify(&wanted.id, &plain).map_err(bad)?;
        Ok(plain)
    })
    .await
    .map_err(io_error)?
}
