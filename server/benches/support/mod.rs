//! What the server benchmarks share.

use loft_remote::RemoteClient;
use loft_remote::client::GrpcClient;
use loft_remote::content::{ChunkId, encode};
use loft_remote::proto;

/// Uploads `data` as one chunk (a small file's only chunk).
pub async fn put_one_chunk(client: &GrpcClient, data: &[u8]) {
    let encoded = encode(data);
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender
        .send(proto::ChunkUpload {
            id: ChunkId::of(data).0.to_vec().into(),
            data: encoded.data.into(),
            compressed: encoded.compressed,
            length: data.len() as u32,
        })
        .await
        .expect("the channel is open");
    drop(sender);
    client.put_chunks(receiver).await.expect("put");
}
