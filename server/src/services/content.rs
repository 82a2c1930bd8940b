//! `loft.v1.Content`: chunk upload and download, scoped to what the caller may use.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use loft_remote::content::{ChunkId, MAX_CHUNK, decode, verify};
use loft_remote::errors::ErrorKind;
use loft_remote::proto::{self, content_server::Content};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{State, chunk_records};
use crate::auth::caller;
use crate::error::{Result, ServerError};
use crate::meta::{Caller, ChunkRecord};

/// Most ids or ranges one request may name.
const MAX_IDS: usize = 4096;
/// Uploads verified and stored at once per stream (hashing runs on the blocking pool).
const UPLOAD_PARALLELISM: usize = 4;
/// Chunks read ahead of the client per download stream.
const DOWNLOAD_READ_AHEAD: usize = 8;

pub struct ContentApi(pub Arc<State>);

enum Stored {
    New,
    AlreadyHad,
}

fn chunk_id(bytes: &[u8]) -> Result<ChunkId> {
    ChunkId::from_slice(bytes).map_err(ServerError::from)
}

/// Verifies one uploaded chunk against its id and stores it durably; the caller
/// records it. Nothing is stored for a chunk whose bytes do not match.
async fn store_one(
    state: &State,
    caller: &Caller,
    upload: proto::ChunkUpload,
) -> Result<(Stored, ChunkRecord)> {
    let id = chunk_id(&upload.id)?;
    let length = upload.length as usize;
    if length == 0 || length > MAX_CHUNK {
        return Err(ServerError::invalid(format!(
            "chunk {id}: length {length} out of range"
        )));
    }
    if upload.data.len() > MAX_CHUNK + 4096 || (!upload.compressed && upload.data.len() != length) {
        return Err(ServerError::invalid(format!(
            "chunk {id}: data does not match its length"
        )));
    }
    let compressed = upload.compressed;
    let data = upload.data.clone();
    let check = move || -> Result<()> {
        let checked = if compressed {
            decode(&data, true, length).and_then(|plain| verify(&id, &plain))
        } else {
            verify(&id, &data)
        };
        checked.map_err(|e| ServerError::invalid(format!("chunk {id} rejected: {e}")))
    };
    // Whether someone else stores this chunk must not show, neither in the reply nor in
    // the time it takes: unless the caller could already use it, its bytes are written
    // (content-addressed, so an overwrite writes the same bytes). Either way they are
    // checked against the id.
    let had = state
        .meta
        .usable_chunks(caller, &[id])
        .await?
        .first()
        .copied()
        .unwrap_or(false)
        && state.chunks.contains(&id).await?;
    if had {
        tokio::task::spawn_blocking(check)
            .await
            .map_err(ServerError::internal)??;
    } else {
        state
            .chunks
            .put_checked(&id, compressed, upload.data.clone(), Some(check))
            .await?;
    }
    let record = ChunkRecord {
        id,
        length: upload.length,
        stored_length: upload.data.len() as u32,
        compressed,
    };
    let stored = if had { Stored::AlreadyHad } else { Stored::New };
    Ok((stored, record))
}

/// Reads one requested range of a chunk the caller may read (`record` is `None` when it
/// may not, or when no such chunk exists: the two look the same).
async fn read_range(
    state: &State,
    range: proto::ChunkRange,
    id: ChunkId,
    record: Option<ChunkRecord>,
) -> Result<proto::ChunkData> {
    let record = record
        .ok_or_else(|| ServerError::new(ErrorKind::NotFound, format!("chunk {id} not found")))?;
    let stored = state.chunks.get(&id).await?;
    let whole = range.offset == 0 && (range.length == 0 || range.length == record.length);
    if whole {
        return Ok(proto::ChunkData {
            id: range.id,
            offset: 0,
            data: stored.data,
            compressed: stored.compressed,
            length: record.length,
        });
    }
    let end = if range.length == 0 {
        record.length
    } else {
        range.offset.saturating_add(range.length)
    };
    if range.offset >= record.length || end > record.length {
        return Err(ServerError::invalid(format!(
            "range {}+{} outside chunk {id}",
            range.offset, range.length
        )));
    }
    let plain = if stored.compressed {
        let data = stored.data.clone();
        let length = record.length as usize;
        bytes::Bytes::from(
            tokio::task::spawn_blocking(move || decode(&data, true, length))
                .await
                .map_err(ServerError::internal)??,
        )
    } else {
        stored.data
    };
    Ok(proto::ChunkData {
        id: range.id,
        offset: range.offset,
        data: plain.slice(range.offset as usize..end as usize),
        compressed: false,
        length: end - range.offset,
    })
}

#[tonic::async_trait]
impl Content for ContentApi {
    async fn have_chunks(
        &self,
        request: Request<proto::HaveChunksRequest>,
    ) -> std::result::Result<Response<proto::HaveChunksReply>, Status> {
        let caller = caller(&request)?;
        let ids = &request.get_ref().ids;
        if ids.len() > MAX_IDS {
            return Err(ServerError::invalid(format!("at most {MAX_IDS} ids per request")).into());
        }
        let ids = ids
            .iter()
            .map(|id| chunk_id(id))
            .collect::<Result<Vec<_>>>()?;
        let present = self.0.meta.usable_chunks(&caller, &ids).await?;
        Ok(Response::new(proto::HaveChunksReply { present }))
    }

    async fn put_chunks(
        &self,
        request: Request<Streaming<proto::ChunkUpload>>,
    ) -> std::result::Result<Response<proto::PutChunksReply>, Status> {
        let caller = caller(&request)?;
        let state = self.0.clone();
        let (records, recorded) = chunk_records::start(state.meta.clone(), caller.clone());
        let mut results = request
            .into_inner()
            .map(move |message| {
                let (state, caller, records) = (state.clone(), caller.clone(), records.clone());
                async move {
                    let upload = message?;
                    // A store runs to completion even if the client goes away meanwhile,
                    // and the recorder records it: a chunk written but not recorded
                    // would be sent again on resume.
                    tokio::spawn(async move {
                        let (stored, record) = store_one(&state, &caller, upload).await?;
                        let _ = records.send(record);
                        Ok::<_, ServerError>(stored)
                    })
                    .await
                    .map_err(|e| Status::from(ServerError::internal(e)))?
                    .map_err(Status::from)
                }
            })
            .buffer_unordered(UPLOAD_PARALLELISM);
        let mut reply = proto::PutChunksReply::default();
        while let Some(result) = results.next().await {
            match result? {
                Stored::New => reply.stored += 1,
                Stored::AlreadyHad => reply.already_had += 1,
            }
        }
        // The last sender goes with the stream: the recorder then finishes.
        drop(results);
        recorded
            .await
            .map_err(|e| Status::from(ServerError::internal(e)))??;
        Ok(Response::new(reply))
    }

    type GetChunksStream =
        Pin<Box<dyn Stream<Item = std::result::Result<proto::ChunkData, Status>> + Send>>;

    async fn get_chunks(
        &self,
        request: Request<proto::GetChunksRequest>,
    ) -> std::result::Result<Response<Self::GetChunksStream>, Status> {
        let caller = caller(&request)?;
        let ranges = request.into_inner().ranges;
        if ranges.len() > MAX_IDS {
            return Err(
                ServerError::invalid(format!("at most {MAX_IDS} ranges per request")).into(),
            );
        }
        let ids = ranges
            .iter()
            .map(|r| chunk_id(&r.id))
            .collect::<Result<Vec<_>>>()?;
        // One permission check for the whole request, before any byte is read.
        let records = self.0.meta.readable_chunks(&caller, &ids).await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(DOWNLOAD_READ_AHEAD);
        let state = self.0.clone();
        tokio::spawn(async move {
            let mut pieces = futures::stream::iter(ranges.into_iter().zip(ids).zip(records))
                .map(|((range, id), record)| read_range(&state, range, id, record))
                .buffered(DOWNLOAD_READ_AHEAD);
            while let Some(piece) = pieces.next().await {
                let failed = piece.is_err();
                if sender.send(piece.map_err(Status::from)).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn get_manifest(
        &self,
        request: Request<proto::GetManifestRequest>,
    ) -> std::result::Result<Response<proto::Manifest>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let manifest = self.0.meta.manifest(&caller, r.node, r.version).await?;
        Ok(Response::new(proto::Manifest::from(&manifest)))
    }
}
