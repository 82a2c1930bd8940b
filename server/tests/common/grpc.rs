//! Requests a test makes through the gRPC client: folders, files, shares, and content
//! uploaded and committed.

use loft_remote::client::GrpcClient;
use loft_remote::content::{ChunkId, Manifest, encode};
use loft_remote::proto::{self, NodeKind, Role};
use loft_remote::{RemoteClient, RemoteResult};

pub fn dir(parent: u64, name: &str) -> proto::CreateRequest {
    proto::CreateRequest {
        parent,
        name: name.as_bytes().to_vec().into(),
        kind: NodeKind::Directory as i32,
        mode: 0o755,
        exclusive: true,
        ..Default::default()
    }
}

pub fn file(parent: u64, name: &str) -> proto::CreateRequest {
    proto::CreateRequest {
        kind: NodeKind::File as i32,
        mode: 0o644,
        ..dir(parent, name)
    }
}

pub fn share(node: u64, user: &str, role: Role) -> proto::ShareRequest {
    proto::ShareRequest {
        node,
        user: user.to_string(),
        role: role as i32,
    }
}

/// Uploads `data` as chunks and returns its manifest.
pub async fn upload(client: &GrpcClient, data: &[u8]) -> RemoteResult<Manifest> {
    let manifest = Manifest::of_bytes(data);
    let mut offset = 0usize;
    let mut chunks = Vec::new();
    for chunk in &manifest.chunks {
        let plain = &data[offset..offset + chunk.length as usize];
        offset += chunk.length as usize;
        chunks.push(chunk_upload(chunk.id, plain));
    }
    put_chunks(client, chunks).await.map(|_| manifest)
}

/// Chunk `id` (of the bytes `plain`), encoded as a client sends it.
pub fn chunk_upload(id: ChunkId, plain: &[u8]) -> proto::ChunkUpload {
    let encoded = encode(plain);
    proto::ChunkUpload {
        id: id.0.to_vec().into(),
        data: encoded.data.into(),
        compressed: encoded.compressed,
        length: plain.len() as u32,
    }
}

/// Sends `uploads` as one PutChunks stream.
pub async fn put_chunks(
    client: &GrpcClient,
    uploads: Vec<proto::ChunkUpload>,
) -> RemoteResult<proto::PutChunksReply> {
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    let send = async move {
        for upload in uploads {
            let _ = sender.send(upload).await;
        }
    };
    let (reply, ()) = tokio::join!(client.put_chunks(receiver), send);
    reply
}

pub fn commit_new(parent: u64, name: &str, manifest: &Manifest) -> proto::CommitRequest {
    proto::CommitRequest {
        manifest: Some(manifest.into()),
        parent,
        name: name.as_bytes().to_vec().into(),
        mode: 0o644,
        ..Default::default()
    }
}

/// Uploads `data` and commits it as the new file `name` in `parent`.
pub async fn put(client: &GrpcClient, parent: u64, name: &str, data: &[u8]) -> proto::CommitReply {
    let manifest = upload(client, data).await.unwrap();
    client
        .commit(commit_new(parent, name, &manifest))
        .await
        .unwrap()
}
