//! Chunk uploads through the gRPC service of a real server on loopback, on SQLite and
//! (when configured) PostgreSQL + S3. The server records stored chunks in batches: a
//! stream of more chunks than a batch leaves every one usable, and a stream that
//! fails on a bad chunk leaves that chunk unusable.

#[macro_use]
mod common;

use common::Kind;
use common::grpc::{chunk_upload, put_chunks};
use common::world::World;
use loft_remote::RemoteClient;
use loft_remote::content::ChunkId;
use loft_remote::errors::ErrorKind;
use loft_remote::proto;

/// More than the server records per transaction, and not a multiple of it.
const CHUNKS: u32 = 150;

/// A small chunk of its own for each `seed`, encoded as a client sends it.
fn chunk(seed: u32) -> (ChunkId, proto::ChunkUpload) {
    let plain = format!("chunk number {seed}\n").repeat(20).into_bytes();
    let id = ChunkId::of(&plain);
    (id, chunk_upload(id, &plain))
}

async fn every_chunk_of_a_long_stream_is_recorded(kind: Kind) {
    let world = World::start(kind).await;
    let (client, _) = world.user("ann").await;
    let (ids, uploads): (Vec<_>, Vec<_>) = (0..CHUNKS).map(chunk).unzip();
    assert_eq!(
        client.have_chunks(&ids).await.unwrap(),
        vec![false; ids.len()]
    );

    let reply = put_chunks(&client, uploads.clone()).await.unwrap();
    assert_eq!((reply.stored, reply.already_had), (CHUNKS, 0));
    assert_eq!(
        client.have_chunks(&ids).await.unwrap(),
        vec![true; ids.len()]
    );

    // The same stream again finds every chunk there already.
    let reply = put_chunks(&client, uploads).await.unwrap();
    assert_eq!((reply.stored, reply.already_had), (0, CHUNKS));
}

async fn a_stream_with_a_bad_chunk_fails_and_the_bad_chunk_is_not_usable(kind: Kind) {
    let world = World::start(kind).await;
    let (client, _) = world.user("ann").await;
    let (ids, mut uploads): (Vec<_>, Vec<_>) = (0..CHUNKS).map(chunk).unzip();
    let bad = 100;
    // Its bytes are another chunk's.
    uploads[bad].data = uploads[bad + 1].data.clone();
    uploads[bad].length = uploads[bad + 1].length;

    let error = put_chunks(&client, uploads.clone()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidArgument, "{error}");
    assert!(!client.have_chunks(&ids[bad..=bad]).await.unwrap()[0]);

    // Sent again without the bad chunk, everything else is there.
    uploads.remove(bad);
    put_chunks(&client, uploads).await.unwrap();
    let have = client.have_chunks(&ids).await.unwrap();
    let expected: Vec<bool> = (0..ids.len()).map(|i| i != bad).collect();
    assert_eq!(have, expected);
}

on_both_backends!(
    every_chunk_of_a_long_stream_is_recorded,
    a_stream_with_a_bad_chunk_fails_and_the_bad_chunk_is_not_usable,
);
