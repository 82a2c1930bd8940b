//! What the server benchmarks share.

use futures::StreamExt;
use futures::stream::BoxStream;
use loft_remote::client::GrpcClient;
use loft_remote::content::{ChunkId, encode};
use loft_remote::proto::{self, watch_event::Event};
use loft_remote::{RemoteClient, RemoteResult};

/// Watches the user's whole feed from its head; returns once the stream is live
/// (after the reset to the head and the caught-up marker).
pub async fn watch_live(
    client: &GrpcClient,
) -> BoxStream<'static, RemoteResult<proto::WatchEvent>> {
    let mut events = client.watch(0, u64::MAX).await.expect("watch");
    loop {
        match events.next().await {
            Some(Ok(proto::WatchEvent {
                event: Some(Event::CaughtUp(_)),
            })) => return events,
            Some(Ok(_)) => continue,
            other => panic!("watch ended: {other:?}"),
        }
    }
}

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
