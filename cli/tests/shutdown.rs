//! `loft-server` stops promptly on SIGTERM, even with long-lived calls open.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use loft_remote::RemoteClient;
use loft_remote::content::ChunkId;
use loft_remote::proto::{self, watch_event::Event};

/// What `loft-server` promises: gone within 5 s of SIGTERM.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_with_a_watch_open() {
    let mut server = TestServer::start();
    server.add_user("alice");
    let (client, _) = login_client(&server, "alice", "laptop").await;
    let mut watch = client.watch(0, 0).await.expect("watch");
    let caught_up = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = watch.next().await {
            if let Some(Event::CaughtUp(cursor)) = event.expect("watch event").event {
                return Some(cursor);
            }
        }
        None
    })
    .await
    .expect("the watch never caught up");
    assert!(caught_up.is_some(), "the watch ended before catching up");

    // Also a half-open upload stream that never finishes on its own.
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let data = random_bytes(4096, 41);
    sender
        .send(proto::ChunkUpload {
            id: ChunkId::of(&data).0.to_vec().into(),
            length: data.len() as u32,
            data: data.into(),
            compressed: false,
        })
        .await
        .unwrap();
    let upload = {
        let client = client.clone();
        tokio::spawn(async move { client.put_chunks(receiver).await })
    };
    wait_for(
        "the open upload's first chunk to be stored",
        DEADLINE,
        || (server.chunk_files().len() == 1).then_some(()),
    );

    let (took, status) = tokio::task::block_in_place(|| server.terminate(SHUTDOWN_LIMIT));
    assert!(took < SHUTDOWN_LIMIT, "shutdown took {took:?}");
    assert!(
        status.success(),
        "loft-server exited with {status} on SIGTERM:\n{}",
        server.log()
    );

    // Both streams end instead of hanging.
    let end = tokio::time::timeout(DEADLINE, watch.next())
        .await
        .expect("the watch stream hangs after shutdown");
    assert!(
        !matches!(end, Some(Ok(_))),
        "the watch stream produced an event after shutdown: {end:?}"
    );
    let upload = tokio::time::timeout(DEADLINE, upload)
        .await
        .expect("the upload hangs after shutdown")
        .unwrap();
    assert!(
        upload.is_err(),
        "an unfinished upload stream succeeded: {upload:?}"
    );
    drop(sender);

    // Nothing acknowledged is lost: the server comes back with its state.
    server.restart();
    let device = Device::login(&server, "alice", "laptop");
    device.ok(&["ls", "/"]);
}

#[test]
fn sigterm_stops_an_idle_server() {
    let mut server = TestServer::start();
    server.add_user("alice");
    let device = Device::login(&server, "alice", "laptop");
    device.ok(&["ls", "/"]);
    let (took, status) = server.terminate(SHUTDOWN_LIMIT);
    assert!(took < SHUTDOWN_LIMIT, "shutdown took {took:?}");
    assert!(
        status.success(),
        "loft-server exited with {status} on SIGTERM"
    );
    // And a client then gets a clear error, not a hang.
    let stderr = device.fails(&["ls", "/"]);
    assert!(stderr.starts_with("loft: "), "unclear message: {stderr}");
}
