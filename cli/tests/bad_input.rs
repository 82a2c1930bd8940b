//! Bad input of every kind is refused with a clear error and changes nothing: wrong
//! passwords, forged, expired and revoked tokens, chunks that lie about their id,
//! commits of chunks the caller never uploaded, invalid names, oversized batches,
//! undecodable messages.

mod common;

use std::time::Duration;

use bytes::BufMut;
use common::*;
use loft_remote::content::{ChunkId, Manifest, encode};
use loft_remote::errors::ErrorKind;
use loft_remote::proto::{self, NodeKind};
use loft_remote::{RemoteClient, RemoteError};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// The message `loft` prints for a token the server does not accept.
const BAD_TOKEN: &str = "invalid, expired or revoked token";

fn assert_kind<T: std::fmt::Debug>(
    result: Result<T, RemoteError>,
    kind: ErrorKind,
    what: &str,
) -> RemoteError {
    match result {
        Ok(value) => panic!("{what}: expected {kind:?}, got success: {value:?}"),
        Err(error) => {
            assert_eq!(error.kind, kind, "{what}: {error:?}");
            error
        }
    }
}

/// A `loft_...` token the server never issued.
fn forged_token() -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let noise = random_bytes(43, 99);
    let body: String = noise
        .iter()
        .map(|b| alphabet[(*b % 64) as usize] as char)
        .collect();
    format!("loft_{body}")
}

#[test]
fn wrong_password_signs_nobody_in() {
    let server = TestServer::start();
    server.add_user("alice");
    let before = server.snapshot();

    let device = Device::new("laptop");
    for (user, password) in [
        ("alice", "not the password"),
        ("alice", ""),
        ("mallory", "whatever"),
    ] {
        let output = device.try_login(&server, user, password);
        assert!(
            !output.status.success(),
            "login as {user} with {password:?} succeeded: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The same answer whether the user exists or not.
        assert!(
            stderr.contains("login failed: wrong user name or password"),
            "unclear message: {stderr}"
        );
        assert!(
            !device.token_file().exists(),
            "a failed login left a token file"
        );
        assert!(
            !device.path().join("config.toml").exists(),
            "a failed login configured a server"
        );
    }
    assert_eq!(
        server.snapshot(),
        before,
        "a failed login changed the server's state"
    );

    // The right password still works, and writes a private token file.
    let device = Device::login(&server, "alice", "laptop");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(device.token_file())
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_missing_tokens_are_unauthenticated() {
    let server = TestServer::start();
    server.add_user("alice");
    let device = Device::login(&server, "alice", "laptop");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("f.txt");
    std::fs::write(&file, "hello\n").unwrap();
    device.put(&file, "/f.txt");
    let before = server.snapshot();

    std::fs::write(device.token_file(), format!("{}\n", forged_token())).unwrap();
    let stderr = device.fails(&["ls", "/"]);
    assert!(stderr.contains(BAD_TOKEN), "unclear message: {stderr}");
    std::fs::write(&file, "changed\n").unwrap();
    let stderr = device.fails(&["put", &file.to_string_lossy(), "/g.txt"]);
    assert!(stderr.contains(BAD_TOKEN), "unclear message: {stderr}");
    let status = device.json(&["status", "--json"]);
    assert_eq!(status["signed_in"], false, "{status}");
    assert_eq!(status["online"], true, "the server did answer: {status}");

    let client = raw_client(&server);
    assert_kind(
        client.who_am_i().await,
        ErrorKind::Unauthenticated,
        "no token",
    );
    assert_kind(
        client.have_chunks(&[ChunkId::of(b"x")]).await,
        ErrorKind::Unauthenticated,
        "no token",
    );
    client.set_token(Some(forged_token()));
    assert_kind(
        client.who_am_i().await,
        ErrorKind::Unauthenticated,
        "forged token",
    );
    assert_kind(
        client.resolve(b"/f.txt").await,
        ErrorKind::Unauthenticated,
        "forged token",
    );
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let data = b"sneaky".to_vec();
    sender
        .send(proto::ChunkUpload {
            id: ChunkId::of(&data).0.to_vec().into(),
            length: 6,
            data: data.into(),
            compressed: false,
        })
        .await
        .unwrap();
    drop(sender);
    assert_kind(
        client.put_chunks(receiver).await,
        ErrorKind::Unauthenticated,
        "forged token upload",
    );

    assert_eq!(
        server.snapshot(),
        before,
        "requests with a bad token changed the server's state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_unauthenticated() {
    let server = TestServer::start_with(&["--token-ttl", "3s"]);
    server.add_user("alice");
    let device = Device::login(&server, "alice", "laptop");
    let (client, _) = login_client(&server, "alice", "script").await;
    // Valid at first...
    let status = device.json(&["status", "--json"]);
    assert_eq!(
        status["signed_in"], true,
        "a fresh token was refused: {status}"
    );
    client.who_am_i().await.expect("a fresh token was refused");

    // ... until the TTL passes.
    wait_for("the CLI's token to expire", DEADLINE, || {
        let status = device.json(&["status", "--json"]);
        (status["signed_in"] == false).then_some(())
    });
    let text = device.ok(&["status"]);
    assert!(
        text.contains(BAD_TOKEN),
        "`loft status` does not say why: {text}"
    );
    let stderr = device.fails(&["ls", "/"]);
    assert!(stderr.contains(BAD_TOKEN), "unclear message: {stderr}");

    let deadline = std::time::Instant::now() + DEADLINE;
    let error = loop {
        match client.who_am_i().await {
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "the raw client's token never expired"
            ),
            Err(error) => break error,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(error.kind, ErrorKind::Unauthenticated, "{error:?}");
    assert_eq!(error.kind.code(), Code::Unauthenticated);
    assert_kind(
        client.list(1, b"", 0).await,
        ErrorKind::Unauthenticated,
        "expired token",
    );

    // Signing in again gives a working token.
    let device = Device::login(&server, "alice", "laptop");
    device.ok(&["ls", "/"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_device_is_locked_out() {
    let server = TestServer::start();
    server.add_user("alice");
    let laptop = Device::login(&server, "alice", "laptop");
    let phone = Device::login(&server, "alice", "phone");
    phone.ok(&["ls", "/"]);
    let phone_client = phone.client(&server);
    phone_client.who_am_i().await.expect("phone signed in");
    let mut feed = phone_client
        .watch(0, 0)
        .await
        .expect("phone follows its drive");

    let devices = laptop.json(&["devices", "list", "--json"]);
    let names: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["laptop", "phone"]);
    laptop.ok(&["devices", "revoke", "phone"]);
    // The phone's open change feed ends at once, refused.
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            match futures::StreamExt::next(&mut feed).await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Some(error.kind),
                None => return None,
            }
        }
    })
    .await
    .expect("the revoked device's Watch stream stayed open");
    assert_eq!(ended, Some(ErrorKind::Unauthenticated));

    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("f.txt");
    std::fs::write(&file, "from the stolen phone\n").unwrap();
    let before = server.snapshot();
    let stderr = phone.fails(&["ls", "/"]);
    assert!(stderr.contains(BAD_TOKEN), "unclear message: {stderr}");
    let stderr = phone.fails(&["put", &file.to_string_lossy(), "/f.txt"]);
    assert!(stderr.contains(BAD_TOKEN), "unclear message: {stderr}");
    assert_kind(
        phone_client.who_am_i().await,
        ErrorKind::Unauthenticated,
        "revoked device",
    );
    assert_eq!(
        server.snapshot(),
        before,
        "a revoked device changed the server's state"
    );

    let devices = laptop.json(&["devices", "list", "--json"]);
    let phone_entry = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "phone")
        .expect("phone listed");
    assert_eq!(phone_entry["revoked"], true, "{devices}");
    let laptop_entry = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "laptop")
        .expect("laptop listed");
    assert_eq!(laptop_entry["revoked"], false);
    assert_eq!(laptop_entry["current"], true);
    laptop.ok(&["ls", "/"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_bytes_must_match_their_id() {
    let server = TestServer::start();
    server.add_user("alice");
    let (client, _) = login_client(&server, "alice", "laptop").await;
    let before = server.snapshot();

    let claimed = random_bytes(300 * 1024, 5);
    let sent = random_bytes(300 * 1024, 6);
    let zeros = vec![0u8; 300 * 1024];
    let compressed_zeros = encode(&zeros);
    assert!(compressed_zeros.compressed);
    let cases = [
        // Raw bytes of other content under the claimed id.
        proto::ChunkUpload {
            id: ChunkId::of(&claimed).0.to_vec().into(),
            data: sent.clone().into(),
            compressed: false,
            length: sent.len() as u32,
        },
        // A valid zstd frame of other content under the claimed id.
        proto::ChunkUpload {
            id: ChunkId::of(&claimed).0.to_vec().into(),
            data: compressed_zeros.data.clone().into(),
            compressed: true,
            length: zeros.len() as u32,
        },
        // The right bytes, but a plaintext length that does not match.
        proto::ChunkUpload {
            id: ChunkId::of(&zeros).0.to_vec().into(),
            data: compressed_zeros.data.clone().into(),
            compressed: true,
            length: zeros.len() as u32 - 1,
        },
        // Garbage that claims to be zstd.
        proto::ChunkUpload {
            id: ChunkId::of(&claimed).0.to_vec().into(),
            data: sent[..4096].to_vec().into(),
            compressed: true,
            length: claimed.len() as u32,
        },
        // An id that is not 32 bytes.
        proto::ChunkUpload {
            id: vec![1u8; 31].into(),
            data: sent.clone().into(),
            compressed: false,
            length: sent.len() as u32,
        },
    ];
    for (i, upload) in cases.into_iter().enumerate() {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        sender.send(upload).await.unwrap();
        drop(sender);
        let error = assert_kind(
            client.put_chunks(receiver).await,
            ErrorKind::InvalidArgument,
            &format!("case {i}"),
        );
        assert!(!error.message.is_empty());
    }
    for content in [&claimed, &sent, &zeros] {
        let id = ChunkId::of(content);
        assert!(
            !server.chunk_path(&id.to_hex()).exists(),
            "an object was stored under {id}"
        );
        assert_eq!(client.have_chunks(&[id]).await.unwrap(), vec![false]);
    }
    assert_eq!(
        server.snapshot(),
        before,
        "rejected chunks changed the server's state"
    );

    // The honest upload of the same bytes is accepted.
    let (_, stats) = upload_bytes(client.clone(), claimed.clone()).await;
    assert_eq!(stats.chunks_uploaded, 1);
    assert!(server.chunk_path(&ChunkId::of(&claimed).to_hex()).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_of_chunks_never_uploaded_fails() {
    let server = TestServer::start();
    server.add_user("alice");
    let (client, session) = login_client(&server, "alice", "laptop").await;
    let file = new_file(&client, session.root, b"ghost.txt").await;
    let before = server.snapshot();

    let content = random_bytes(2 * MIB, 7);
    let manifest = Manifest::of_bytes(&content);
    let commit = |manifest: proto::Manifest| proto::CommitRequest {
        node: file.id,
        base_version: 0,
        manifest: Some(manifest),
        mtime: None,
        atime: None,
        ..Default::default()
    };
    let error = assert_kind(
        client
            .commit(commit(proto::Manifest::from(&manifest)))
            .await,
        ErrorKind::FailedPrecondition,
        "commit",
    );
    assert_eq!(error.kind.code(), Code::FailedPrecondition);

    // Uploading only some of the chunks is not enough either.
    let first_chunk = content[..manifest.chunks[0].length as usize].to_vec();
    upload_bytes(client.clone(), first_chunk).await;
    let after_partial = server.snapshot();
    assert_kind(
        client
            .commit(commit(proto::Manifest::from(&manifest)))
            .await,
        ErrorKind::FailedPrecondition,
        "commit",
    );

    // A manifest that breaks the format's rules is refused outright.
    let mut lying = proto::Manifest::from(&manifest);
    lying.size += 1;
    assert_kind(
        client.commit(commit(lying)).await,
        ErrorKind::InvalidArgument,
        "inconsistent manifest",
    );

    let node = client.stat(file.id).await.unwrap();
    assert_eq!(node.version, 0, "a failed commit changed the file");
    assert_eq!(node.size, 0);
    assert!(
        client.list_versions(file.id).await.unwrap().is_empty(),
        "a failed commit created a version"
    );
    let after = server.snapshot();
    assert_eq!(
        after, after_partial,
        "failed commits changed the server's state"
    );
    assert_eq!(after.versions, before.versions);
    assert_eq!(after.journal, before.journal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batches_are_refused_and_change_nothing() {
    let server = TestServer::start();
    server.add_user("alice");
    let (client, session) = login_client(&server, "alice", "laptop").await;
    new_file(&client, session.root, b"kept.txt").await;
    let before = server.snapshot();
    // One more than a batch may hold, each naming a file that exists.
    let removes = vec![
        proto::RemoveRequest {
            parent: session.root,
            name: b"kept.txt".to_vec().into(),
            ..Default::default()
        };
        1025
    ];
    let error = assert_kind(
        client.remove_batch(removes).await,
        ErrorKind::InvalidArgument,
        "1025 removals",
    );
    assert!(error.message.contains("at most 1024"), "{error:?}");
    let commits = vec![proto::CommitRequest::default(); 1025];
    assert_kind(
        client.commit_batch(commits).await,
        ErrorKind::InvalidArgument,
        "1025 commits",
    );
    assert_eq!(
        server.snapshot(),
        before,
        "a refused batch changed the server"
    );
    client.lookup(session.root, b"kept.txt").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_are_refused() {
    let server = TestServer::start();
    server.add_user("alice");
    let (client, session) = login_client(&server, "alice", "laptop").await;
    let existing = new_file(&client, session.root, b"ok.txt").await;
    let before = server.snapshot();

    let long = vec![b'x'; 256];
    let bad: [(&[u8], ErrorKind); 8] = [
        (b"a/b", ErrorKind::InvalidName),
        (b"/", ErrorKind::InvalidName),
        (b"a\0b", ErrorKind::InvalidName),
        (b"\0", ErrorKind::InvalidName),
        (b".", ErrorKind::InvalidName),
        (b"..", ErrorKind::InvalidName),
        (b"", ErrorKind::InvalidName),
        (&long, ErrorKind::NameTooLong),
    ];
    for (name, kind) in bad {
        let what = format!("name {:?}", String::from_utf8_lossy(name));
        for node_kind in [NodeKind::File, NodeKind::Directory] {
            let request = proto::CreateRequest {
                parent: session.root,
                name: name.to_vec().into(),
                kind: node_kind as i32,
                mode: 0o755,
                exclusive: true,
                ..Default::default()
            };
            let error = assert_kind(
                client.create(request).await,
                kind,
                &format!("create {what}"),
            );
            assert_eq!(error.kind.code(), Code::InvalidArgument, "{what}");
        }
        let rename = proto::RenameRequest {
            parent: session.root,
            name: b"ok.txt".to_vec().into(),
            new_parent: session.root,
            new_name: name.to_vec().into(),
            ..Default::default()
        };
        assert_kind(
            client.rename(rename).await,
            kind,
            &format!("rename to {what}"),
        );
        assert_kind(
            client.link(existing.id, session.root, name).await,
            kind,
            &format!("link as {what}"),
        );
    }
    assert_eq!(
        server.snapshot(),
        before,
        "invalid names changed the server's state"
    );
    let listing = client.list(session.root, b"", 0).await.unwrap();
    let names: Vec<&[u8]> = listing.entries.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(names, [b"ok.txt"]);

    // 255 bytes is the limit, not past it; names need not be UTF-8.
    for name in [vec![b'y'; 255], b"\xff\xfe not utf-8".to_vec()] {
        let request = proto::CreateRequest {
            parent: session.root,
            name: name.into(),
            kind: NodeKind::File as i32,
            mode: 0o644,
            exclusive: true,
            ..Default::default()
        };
        client
            .create(request)
            .await
            .expect("a valid name was refused");
    }

    // The CLI refuses bad drive paths before sending anything.
    let device = Device::login(&server, "alice", "laptop-cli");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("f.txt");
    std::fs::write(&file, "x").unwrap();
    let before = server.snapshot();
    let too_long = format!("/{}", "z".repeat(256));
    for path in ["/a/../b", "/./b", "relative", too_long.as_str()] {
        let stderr = device.fails(&["put", &file.to_string_lossy(), path]);
        assert!(
            stderr.starts_with("loft: "),
            "unclear message for {path}: {stderr}"
        );
    }
    assert_eq!(server.snapshot().inodes, before.inodes);
    assert_eq!(server.snapshot().chunk_files, before.chunk_files);
}

// ------------------------------------------------------------------ undecodable messages

/// Sends raw bytes as the messages of a `Content/PutChunks` stream.
#[derive(Clone, Copy, Default)]
struct RawCodec;
struct RawEncoder;
struct ReplyDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ReplyDecoder {
    type Item = proto::PutChunksReply;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        proto::PutChunksReply::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = proto::PutChunksReply;
    type Encoder = RawEncoder;
    type Decoder = ReplyDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ReplyDecoder {
        ReplyDecoder
    }
}

async fn put_raw(
    server: &TestServer,
    token: &str,
    messages: Vec<Vec<u8>>,
) -> Result<proto::PutChunksReply, Status> {
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(futures::stream::iter(messages));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/loft.v1.Content/PutChunks");
    grpc.client_streaming(request, path, RawCodec)
        .await
        .map(|reply| reply.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_chunk_streams_are_refused() {
    let mut server = TestServer::start();
    server.add_user("alice");
    let device = Device::login(&server, "alice", "laptop");
    let client = device.client(&server);
    let token = device.token();
    let before = server.snapshot();

    let chunk = random_bytes(300 * 1024, 8);
    let valid = proto::ChunkUpload {
        id: ChunkId::of(&chunk).0.to_vec().into(),
        data: chunk.clone().into(),
        compressed: false,
        length: chunk.len() as u32,
    }
    .encode_to_vec();
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("garbage", vec![vec![0xff; 64]]),
        // Field 1 (bytes) sent with the 64-bit wire type.
        (
            "wire type mismatch",
            vec![vec![0x09, 1, 2, 3, 4, 5, 6, 7, 8]],
        ),
        // A valid message cut in the middle of its data field.
        ("truncated message", vec![valid[..valid.len() / 2].to_vec()]),
        ("truncated length prefix", vec![vec![0x12, 0xff, 0xff]]),
    ];
    for (what, messages) in cases {
        let status = match put_raw(&server, &token, messages).await {
            Ok(reply) => panic!("{what}: accepted: {reply:?}"),
            Err(status) => status,
        };
        assert!(
            matches!(status.code(), Code::Internal | Code::InvalidArgument),
            "{what}: unexpected status {status:?}"
        );
        assert!(!status.message().is_empty(), "{what}: empty message");
        assert!(
            server.is_running(),
            "{what}: the server died:\n{}",
            server.log()
        );
        client
            .who_am_i()
            .await
            .unwrap_or_else(|e| panic!("{what}: the server stopped answering: {e:?}"));
    }
    assert!(!server.chunk_path(&ChunkId::of(&chunk).to_hex()).exists());
    assert_eq!(server.snapshot().chunk_files, before.chunk_files);
    assert_eq!(server.snapshot().chunks, before.chunks);
    assert_eq!(server.snapshot().uploads, before.uploads);

    // The same connection path with a well-formed message works (the harness is sound).
    let reply = put_raw(&server, &token, vec![valid])
        .await
        .expect("a valid message was refused");
    assert_eq!(reply.stored, 1);
}
