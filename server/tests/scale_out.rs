//! Several `loft-server` processes on one PostgreSQL + one S3 bucket behave as one
//! server: a commit through one reaches Watch streams on the other, content uploaded
//! through one is readable through the other, and concurrent commits on the same base
//! through different servers produce exactly one conflicted copy. Also the commands'
//! answers to bad input: an unreachable database, a bad chunk URL, a missing bucket.

#[macro_use]
mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Kind;
use futures::StreamExt;
use loft_remote::client::{ConnectOptions, GrpcClient, ServerAddress};
use loft_remote::content::Manifest;
use loft_remote::proto::{self, watch_event::Event};
use loft_remote::{RemoteClient, RemoteResult};
use loft_server::ChunkLocation;

const BIN: &str = env!("CARGO_BIN_EXE_loft-server");
const DEADLINE: Duration = Duration::from_secs(5);

fn loft_server(args: &[&str], flags: &[String]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(flags)
        .env("LOFT_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("running loft-server")
}

fn add_user(stores: &common::Stores, name: &str) {
    let password = stores.dir.path().join("password");
    std::fs::write(&password, "secret\n").unwrap();
    let output = loft_server(
        &[
            "user",
            "add",
            name,
            "--password-file",
            password.to_str().unwrap(),
        ],
        &stores.flags(),
    );
    assert!(
        output.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A `loft-server serve` process, killed when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(stores: &common::Stores, name: &str) -> Server {
        let port_file = stores.dir.path().join(format!("{name}.port"));
        let log = std::fs::File::create(stores.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .args(stores.flags())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting loft-server");
        let mut server = Server {
            child,
            address: String::new(),
        };
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && text.ends_with('\n')
            {
                server.address = format!("http://{}", text.trim());
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "loft-server {name} exited with {status}: {}",
                    log_of(stores, name)
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_of(stores: &common::Stores, name: &str) -> String {
    std::fs::read_to_string(stores.dir.path().join(format!("{name}.log"))).unwrap_or_default()
}

async fn client(server: &Server, device: &str) -> (GrpcClient, proto::Session) {
    let address: ServerAddress = server.address.parse().unwrap();
    let client = GrpcClient::connect(&address, &ConnectOptions::default()).unwrap();
    let reply = client.login("alice", "secret", device).await.unwrap();
    client.set_token(Some(reply.token));
    (client, reply.session.unwrap())
}

fn commit_request(
    node: u64,
    base: u64,
    parent: u64,
    name: &str,
    m: &Manifest,
) -> proto::CommitRequest {
    proto::CommitRequest {
        node,
        base_version: base,
        manifest: Some(m.into()),
        mtime: None,
        atime: None,
        parent,
        name: name.as_bytes().to_vec().into(),
        mode: 0o644,
        uid: 0,
        gid: 0,
    }
}

async fn read_all(client: &GrpcClient, manifest: &proto::Manifest) -> Vec<u8> {
    let ranges = manifest
        .chunks
        .iter()
        .map(|chunk| proto::ChunkRange {
            id: chunk.id.clone(),
            offset: 0,
            length: 0,
        })
        .collect();
    let mut stream = client.get_chunks(ranges).await.unwrap();
    let mut data = Vec::new();
    while let Some(piece) = stream.next().await {
        let piece = piece.unwrap();
        let plain =
            loft_remote::content::decode(&piece.data, piece.compressed, piece.length as usize)
                .expect("decoding a chunk");
        data.extend(plain);
    }
    data
}

/// Waits on `events` for a change naming `name`.
async fn wait_for_change(
    events: &mut futures::stream::BoxStream<'static, RemoteResult<proto::WatchEvent>>,
    name: &str,
) -> proto::Change {
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = events.next().await {
            if let Some(Event::Change(change)) = event.unwrap().event
                && change.name.as_ref() == name.as_bytes()
            {
                return change;
            }
        }
        panic!("the Watch stream ended");
    })
    .await;
    found.unwrap_or_else(|_| panic!("no change for {name} within {DEADLINE:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_database_serve_one_drive() {
    if !common::postgres_configured() {
        return;
    }
    let stores = common::stores(Kind::Postgres).await;
    add_user(&stores, "alice");
    let a = Server::start(&stores, "a");
    let b = Server::start(&stores, "b");
    let (client_a, session) = client(&a, "laptop").await;
    let (client_b, _) = client(&b, "desktop").await;
    let root = session.root;

    // A Watch stream on B, caught up before anything happens.
    let mut events = client_b.watch(0, 0).await.unwrap();
    tokio::time::timeout(DEADLINE, async {
        while let Some(event) = events.next().await {
            if let Some(Event::CaughtUp(_)) = event.unwrap().event {
                return;
            }
        }
    })
    .await
    .expect("caught up");

    // A commit through A reaches B's stream, and B serves the bytes A uploaded.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let manifest = common::grpc::upload(&client_a, &data).await.unwrap();
    let reply = client_a
        .commit(commit_request(0, 0, root, "hello.bin", &manifest))
        .await
        .unwrap();
    let change = wait_for_change(&mut events, "hello.bin").await;
    let node = change.node.unwrap();
    assert_eq!(node.id, reply.node.as_ref().unwrap().id);
    let stored = client_b.get_manifest(node.id, 0).await.unwrap();
    assert_eq!(read_all(&client_b, &stored).await, data);

    // The same base committed through both servers at once: one wins, the other
    // becomes exactly one conflicted copy.
    let base = reply.version;
    let one = common::grpc::upload(&client_a, b"from the laptop")
        .await
        .unwrap();
    let two = common::grpc::upload(&client_b, b"from the desktop")
        .await
        .unwrap();
    let (r1, r2) = tokio::join!(
        client_a.commit(commit_request(node.id, base, 0, "", &one)),
        client_b.commit(commit_request(node.id, base, 0, "", &two)),
    );
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(
        [r1.conflict, r2.conflict].iter().filter(|c| **c).count(),
        1,
        "{r1:?} {r2:?}"
    );
    let listing = client_b.list(root, b"", 100).await.unwrap();
    let names: Vec<String> = listing
        .entries
        .iter()
        .map(|entry| String::from_utf8_lossy(&entry.name).into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(
        names
            .iter()
            .filter(|n| n.contains("conflicted copy"))
            .count(),
        1,
        "{names:?}"
    );
    drop((a, b));
}

/// A server whose database goes away and comes back keeps serving: its pool reconnects
/// and its LISTEN connection resumes waking Watch streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_survives_a_postgresql_restart() {
    if !common::postgres_configured() {
        return;
    }
    // A cluster of its own: restarting the shared one would cut every other test.
    let Some(pg) = common::PrivatePostgres::start() else {
        eprintln!("skipped: LOFT_TEST_PG_BIN is not set");
        return;
    };
    let mut stores = common::stores(Kind::Postgres).await;
    stores.config.meta = loft_server::MetaLocation::Postgres(pg.url.clone());
    add_user(&stores, "alice");
    let a = Server::start(&stores, "a");
    let b = Server::start(&stores, "b");
    let (client_a, session) = client(&a, "laptop").await;
    let (client_b, _) = client(&b, "desktop").await;
    let mut events = client_b.watch(0, 0).await.unwrap();

    pg.restart();

    // Calls may fail while the database is down; once it is back they succeed again,
    // and B's stream sees A's change.
    let start = Instant::now();
    let manifest = loop {
        let data = b"after the restart".to_vec();
        match tokio::time::timeout(Duration::from_secs(5), async {
            let manifest = Manifest::of_bytes(&data);
            client_a
                .have_chunks(&[manifest.chunks[0].id])
                .await
                .map(|_| ())
        })
        .await
        {
            Ok(Ok(())) => break common::grpc::upload(&client_a, &data).await.unwrap(),
            _ if start.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => panic!("server A did not recover: {other:?}"),
        }
    };
    let mut reply = None;
    for _ in 0..50 {
        match client_a
            .commit(commit_request(0, 0, session.root, "after.txt", &manifest))
            .await
        {
            Ok(ok) => {
                reply = Some(ok);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(reply.is_some(), "no commit succeeded after the restart");
    wait_for_change(&mut events, "after.txt").await;
    drop((a, b));
}

/// A TCP proxy in front of the test S3 server that can cut every connection (moto keeps
/// objects in memory, so stopping it would lose them).
struct CuttableProxy {
    address: String,
    cut: tokio::sync::watch::Sender<bool>,
}

impl CuttableProxy {
    async fn start(target: String) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watch.borrow() {
                    continue; // dropped: connection closed at once
                }
                let mut watch = watch.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        CuttableProxy { address, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// The chunk store unreachable in the middle of an upload: the upload fails cleanly,
/// nothing can commit a version naming the chunk, and once the store is back the upload
/// and the commit go through and `check` finds every referenced chunk stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_chunk_store_fails_uploads_cleanly() {
    if !common::postgres_configured() {
        return;
    }
    let mut stores = common::stores(Kind::Postgres).await;
    let Some(endpoint) = stores.config.s3.endpoint.clone() else {
        eprintln!("skipped: LOFT_TEST_S3_ENDPOINT is not set");
        return;
    };
    let proxy = CuttableProxy::start(endpoint.trim_start_matches("http://").to_string()).await;
    stores.config.s3.endpoint = Some(proxy.address.clone());
    add_user(&stores, "alice");
    let server = Server::start(&stores, "a");
    let (client, session) = client(&server, "laptop").await;

    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    proxy.set_cut(true);
    let manifest = Manifest::of_bytes(&data);
    let upload = common::grpc::chunk_upload(manifest.chunks[0].id, &data);
    let failed = common::grpc::put_chunks(&client, vec![upload]).await;
    assert!(failed.is_err(), "an upload into a cut store succeeded");
    let refused = client
        .commit(commit_request(0, 0, session.root, "cut.bin", &manifest))
        .await;
    assert!(
        refused.is_err(),
        "a commit named a chunk that is not stored"
    );

    proxy.set_cut(false);
    let manifest = common::grpc::upload(&client, &data).await.unwrap();
    client
        .commit(commit_request(0, 0, session.root, "cut.bin", &manifest))
        .await
        .unwrap();
    let backend = stores.backend().await;
    let report = loft_server::check::check(backend.meta.as_ref(), &backend.chunks, None)
        .await
        .unwrap();
    assert!(report.healthy(), "{report:?}");
    assert_eq!(report.stored, 1, "{report:?}");
    drop(server);
}

/// Servers starting together on an empty database: one migrates, the others wait for
/// the advisory lock and find the schema in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_starting_together_migrate_once() {
    if !common::postgres_configured() {
        return;
    }
    let url = common::fresh_database().await;
    let opens = (0..6).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let hub = std::sync::Arc::new(loft_server::journal_hub::JournalHub::default());
            loft_server::meta::postgres::PostgresMetaStore::connect(&url, hub).await
        })
    });
    for open in futures::future::join_all(opens).await {
        let meta = open.unwrap().expect("connect and migrate");
        assert_eq!(
            loft_server::meta::MetaStore::schema_version(&meta)
                .await
                .unwrap(),
            loft_server::meta::SCHEMA_VERSION
        );
    }
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = loft_server(
        &["migrate"],
        &[
            "--meta".into(),
            "postgres://loft@127.0.0.1:1/loft".into(),
            "--data".into(),
            dir.path().display().to_string(),
        ],
    );
    assert!(!output.status.success());
    let error = stderr_of(&output);
    assert!(
        error.contains("cannot connect to PostgreSQL at 127.0.0.1:1/loft"),
        "{error}"
    );
}

#[test]
fn bad_storage_urls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    for (flag, url, expected) in [
        ("--chunks", "s3://Not_A_Bucket/x", "not a valid bucket name"),
        ("--chunks", "gs://bucket/x", "--chunks takes"),
        ("--meta", "mysql://db/loft", "--meta takes"),
        ("--meta", "postgres://db:port/loft", "bad PostgreSQL URL"),
    ] {
        let output = loft_server(
            &["check"],
            &[flag.into(), url.into(), "--data".into(), data.clone()],
        );
        assert!(!output.status.success(), "{url} accepted");
        let error = stderr_of(&output);
        assert!(error.contains(expected), "{url}: {error}");
    }
    let output = loft_server(&["migrate"], &[]);
    assert!(!output.status.success());
    assert!(
        stderr_of(&output).contains("--data"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn a_missing_bucket_or_unreachable_store_fails_at_start() {
    let Some((settings, _)) = common::s3() else {
        eprintln!("skipped: LOFT_TEST_S3_ENDPOINT is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let endpoint = settings.endpoint.unwrap();
    for (endpoint, bucket) in [
        (endpoint.as_str(), "no-such-bucket"),
        ("http://127.0.0.1:1", "loft-test"),
    ] {
        let output = Command::new(BIN)
            .args(["check", "--data", &data, "--chunks"])
            .arg(format!("s3://{bucket}/x"))
            .args(["--s3-endpoint", endpoint, "--s3-allow-http"])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{bucket} at {endpoint} accepted");
        let error = stderr_of(&output);
        assert!(
            error.contains(&format!(
                "cannot use the chunk store s3://{bucket}/x at {endpoint}"
            )),
            "{error}"
        );
    }
}

/// `check` finds nothing wrong in a fresh store, reports an orphan object (and, in a
/// local store, the temporary file of a write a crash interrupted), and `--repair`
/// deletes them only once they are older than the grace period.
async fn check_reports_and_repairs_orphans(backend: Kind) {
    let stores = common::stores(backend).await;
    let opened = stores.backend().await;
    let id = loft_remote::content::ChunkId::of(b"orphan");
    opened
        .chunks
        .put(&id, false, bytes::Bytes::from_static(b"orphan"))
        .await
        .unwrap();
    let hex = id.to_hex();
    let fan_out = stores.dir.path().join("chunks").join(&hex[..2]);
    let leftover = fan_out.join(format!("{hex}.00000000000000ff.partial"));
    let local = fan_out.join(&hex).exists();
    let on_disk = matches!(stores.config.chunks, Some(ChunkLocation::Local(_)));
    assert_eq!(local, on_disk, "where the chunk went");
    if local {
        std::fs::write(&leftover, b"half a chunk").unwrap();
    }
    let flags = stores.flags();
    let run = |args: &[&str]| {
        let output = loft_server(args, &flags);
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (ok, out) = run(&["check"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("orphan: chunk {id}")), "{out}");
    let leftovers = usize::from(local);
    assert_eq!(out.matches("leftover: ").count(), leftovers, "{out}");
    let (ok, out) = run(&["check", "--repair"]);
    assert!(ok && out.contains("deleted 0 orphans"), "{out}");
    assert!(out.contains("deleted 0 leftovers"), "{out}");
    assert!(opened.chunks.contains(&id).await.unwrap());
    assert_eq!(leftover.exists(), local);
    let (ok, out) = run(&["check", "--repair", "--grace", "0s"]);
    assert!(ok && out.contains("deleted 1 orphans"), "{out}");
    assert!(
        out.contains(&format!("deleted {leftovers} leftovers")),
        "{out}"
    );
    assert!(!opened.chunks.contains(&id).await.unwrap());
    assert!(!leftover.exists());
    let (ok, out) = run(&["migrate"]);
    let version = format!(
        "metadata schema at version {}",
        loft_server::meta::SCHEMA_VERSION
    );
    assert!(ok && out.contains(&version), "{out}");
}

on_both_backends!(check_reports_and_repairs_orphans);
