//! Deduplication must not become an oracle: a user cannot learn whether another user
//! stores a chunk, nor use or read it without having its bytes.

mod common;

use common::*;
use futures::StreamExt;
use loft_remote::client::GrpcClient;
use loft_remote::content::{ChunkId, Manifest, encode};
use loft_remote::errors::ErrorKind;
use loft_remote::proto;
use loft_remote::{RemoteClient, RemoteError};

fn expect_err<T: std::fmt::Debug>(result: Result<T, RemoteError>, kind: ErrorKind, what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected {kind:?}, got {value:?}"),
        Err(error) => assert_eq!(error.kind, kind, "{what}: {error:?}"),
    }
}

/// Reads a GetChunks answer to its end; the first error, if any.
async fn get_chunks_error(client: &GrpcClient, id: ChunkId) -> Option<RemoteError> {
    let range = proto::ChunkRange {
        id: id.0.to_vec().into(),
        offset: 0,
        length: 0,
    };
    let mut stream = match client.get_chunks(vec![range]).await {
        Ok(stream) => stream,
        Err(error) => return Some(error),
    };
    while let Some(item) = stream.next().await {
        if let Err(error) = item {
            return Some(error);
        }
    }
    None
}

/// Uploads `chunks` (each one chunk's plaintext) in one raw PutChunks stream.
async fn put_all(client: &GrpcClient, chunks: &[Vec<u8>]) -> proto::PutChunksReply {
    let (sender, receiver) = tokio::sync::mpsc::channel(chunks.len().max(1));
    for plain in chunks {
        let encoded = encode(plain);
        sender
            .send(proto::ChunkUpload {
                id: ChunkId::of(plain).0.to_vec().into(),
                data: encoded.data.into(),
                compressed: encoded.compressed,
                length: plain.len() as u32,
            })
            .await
            .unwrap();
    }
    drop(sender);
    client.put_chunks(receiver).await.expect("put_chunks")
}

fn commit_request(node: u64, manifest: &Manifest) -> proto::CommitRequest {
    proto::CommitRequest {
        node,
        base_version: 0,
        manifest: Some(proto::Manifest::from(manifest)),
        mtime: None,
        atime: None,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_cannot_probe_or_borrow_each_others_chunks() {
    let server = TestServer::start();
    server.add_user("alice");
    server.add_user("bob");

    // Alice stores a file.
    let alice = Device::login(&server, "alice", "alice-laptop");
    let work = tempfile::tempdir().unwrap();
    let secret = random_bytes(5 * MIB, 11);
    let path = work.path().join("secret.bin");
    std::fs::write(&path, &secret).unwrap();
    alice.put(&path, "/secret.bin");
    let manifest = Manifest::of_bytes(&secret);
    let ids: Vec<ChunkId> = manifest.chunks.iter().map(|c| c.id).collect();
    assert!(ids.len() >= 2);
    for id in &ids {
        assert!(
            server.chunk_path(&id.to_hex()).exists(),
            "alice's chunk {id} is not stored"
        );
    }
    let alice_client = alice.client(&server);
    let alice_session = alice_client.who_am_i().await.unwrap();
    let alice_node = alice_client.resolve(b"/secret.bin").await.unwrap();
    assert_eq!(
        alice_client.have_chunks(&ids).await.unwrap(),
        vec![true; ids.len()]
    );

    // Bob asks about them: the answer is the same as for chunks nobody stores.
    let (bob, bob_session) = login_client(&server, "bob", "bob-laptop").await;
    assert_eq!(
        bob.have_chunks(&ids).await.unwrap(),
        vec![false; ids.len()],
        "HaveChunks leaks alice's chunks"
    );
    let unknown = ChunkId::of(b"nobody stores this");
    assert_eq!(bob.have_chunks(&[unknown]).await.unwrap(), vec![false]);

    // Committing them without uploading fails the same way as for unknown chunks.
    let before = server.snapshot();
    let stolen = new_file(&bob, bob_session.root, b"stolen.bin").await;
    let after_create = server.snapshot();
    expect_err(
        bob.commit(commit_request(stolen.id, &manifest)).await,
        ErrorKind::FailedPrecondition,
        "borrowing commit",
    );
    let bogus = Manifest::of_bytes(&random_bytes(MIB, 12));
    expect_err(
        bob.commit(commit_request(stolen.id, &bogus)).await,
        ErrorKind::FailedPrecondition,
        "bogus commit",
    );
    assert_eq!(
        server.snapshot(),
        after_create,
        "refused commits changed the server's state"
    );
    assert_eq!(after_create.versions, before.versions);
    assert!(bob.list_versions(stolen.id).await.unwrap().is_empty());

    // Reading them: not found, exactly like a chunk that does not exist.
    for id in ids.iter().copied().chain([unknown]) {
        let error = get_chunks_error(&bob, id)
            .await
            .unwrap_or_else(|| panic!("bob read chunk {id}"));
        assert_eq!(error.kind, ErrorKind::NotFound, "{error:?}");
    }
    // Nor can bob reach alice's file, its manifest or her journal.
    expect_err(
        bob.stat(alice_node.id).await,
        ErrorKind::NotFound,
        "stat of alice's file",
    );
    expect_err(
        bob.get_manifest(alice_node.id, 0).await,
        ErrorKind::NotFound,
        "alice's manifest",
    );
    expect_err(
        bob.list_versions(alice_node.id).await,
        ErrorKind::NotFound,
        "alice's versions",
    );
    match bob.watch(alice_session.namespace, 0).await {
        Ok(_) => panic!("bob watches alice's journal"),
        Err(error) => assert_eq!(error.kind, ErrorKind::NotFound, "{error:?}"),
    }

    // Once bob has uploaded the bytes himself, they are his to use.
    let (uploaded, stats) = upload_bytes(bob.clone(), secret.clone()).await;
    assert_eq!(uploaded, manifest);
    assert_eq!(
        stats.chunks_uploaded as usize,
        ids.len(),
        "bob was told some chunks exist: {stats:?}"
    );
    assert_eq!(bob.have_chunks(&ids).await.unwrap(), vec![true; ids.len()]);
    let reply = bob
        .commit(commit_request(stolen.id, &manifest))
        .await
        .expect("commit after uploading");
    assert!(!reply.conflict);
    assert!(get_chunks_error(&bob, ids[0]).await.is_none());
    // Deduplicated on the server all the same.
    assert_eq!(server.chunk_files(), before.chunk_files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_replies_do_not_reveal_other_users_chunks() {
    let server = TestServer::start();
    server.add_user("alice");
    server.add_user("bob");
    let (alice, _) = login_client(&server, "alice", "alice-laptop").await;
    let (bob, _) = login_client(&server, "bob", "bob-laptop").await;

    let blobs = |seed: u64| -> Vec<Vec<u8>> {
        (0..3).map(|i| random_bytes(300 * 1024, seed + i)).collect()
    };
    let theirs = blobs(100);
    let fresh = blobs(200);
    let alice_reply = put_all(&alice, &theirs).await;
    assert_eq!(alice_reply.already_had, 0);

    // Bob uploads chunks alice already stored, and chunks nobody stored: he must not be
    // able to tell the two apart from the replies.
    let reply_for_alices = put_all(&bob, &theirs).await;
    let reply_for_fresh = put_all(&bob, &fresh).await;
    assert_eq!(
        reply_for_alices, reply_for_fresh,
        "PutChunks tells bob which chunks another user already stores"
    );

    // Re-uploading his own chunks may say so: that is no news to bob.
    let again = put_all(&bob, &fresh).await;
    assert_eq!(again.stored + again.already_had, fresh.len() as u32);
}
