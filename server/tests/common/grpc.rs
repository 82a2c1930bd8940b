//! Requests a test makes through the gRPC client: folders, files, shares, and content
//! uploaded and committed.

use loft_remote::client::GrpcClient;
use loft_remote::content::{Manifest, encode};
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
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    let mut offset = 0usize;
    let mut chunks = Vec::new();
    for chunk in &manifest.chunks {
        let plain = &data[offset..offset + chunk.length as usize];
        offset += chunk.length as usize;
        let encoded = encode(plain);
        chunks.push(proto::ChunkUpload {
            id: chunk.id.0.to_vec().into(),
            data: encoded.data.into(),
            compressed: encoded.compressed,
            length: plain.len() as u32,
        });
    }
    let send = async move {
        for chunk in chunks {
            let _ = sender.send(chunk).await;
        }
    };
    let (reply, ()) = tokio::join!(client.put_chunks(receiver), send);
    reply.map(|_| manifest)
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
