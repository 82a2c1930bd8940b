//! Scale-out figures on PostgreSQL + an S3-compatible store, measured with real
//! `loft-server` processes on loopback: commits per second and the Watch fan-out
//! (every commit delivered to every watcher, with its latency) with one server process
//! and with two on the same database and bucket, then chunk put/get throughput through
//! the S3 chunk store.
//!
//! Run by `bench/scale-out` inside `scripts/with-scale-out-services`, which provides
//! `LOFT_TEST_PG_URL`, `LOFT_TEST_S3_ENDPOINT`, `LOFT_TEST_S3_BUCKET` and the AWS_*
//! variables. `LOFT_BENCH_SECONDS` sets how long each commit run lasts (default 10).
//! Prints a Markdown table.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use loft_remote::RemoteClient;
use loft_remote::client::{ConnectOptions, GrpcClient};
use loft_remote::content::{ChunkId, Manifest};
use loft_remote::proto::{self, watch_event::Event};
use loft_server::chunk_store::{ChunkStore, S3Settings};
use tokio::sync::Mutex;

mod support;
use support::{put_one_chunk, watch_live};

const BIN: &str = env!("CARGO_BIN_EXE_loft-server");
const WRITERS: usize = 8;
const WATCHERS: usize = 16;
const PASSWORD: &str = "bench password";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("{name} is not set: run bench/scale-out (it starts PostgreSQL and S3)");
        std::process::exit(2)
    })
}

/// Where the chunks of a fan-out run live.
#[derive(Clone, Copy, PartialEq)]
enum Chunks {
    /// The test S3 server (moto).
    S3,
    /// One directory on this machine, shared by the server processes.
    SharedDir,
}

/// A fresh database on the test PostgreSQL and fresh chunk storage: the store flags.
async fn fresh_stores(tag: &str, chunks: Chunks, dir: &Path) -> Vec<String> {
    let base = env("LOFT_TEST_PG_URL");
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("connecting to LOFT_TEST_PG_URL");
    tokio::spawn(connection);
    let name = format!("loft_bench_{tag}_{}", std::process::id());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("CREATE DATABASE");
    let server = base.rsplit_once('/').expect("URL ends in /DATABASE").0;
    let meta = vec!["--meta".into(), format!("{server}/{name}")];
    let chunks = match chunks {
        Chunks::S3 => vec![
            "--chunks".into(),
            format!("s3://{}/{name}", env("LOFT_TEST_S3_BUCKET")),
            "--s3-endpoint".into(),
            env("LOFT_TEST_S3_ENDPOINT"),
            "--s3-allow-http".into(),
        ],
        Chunks::SharedDir => vec!["--chunks".into(), dir.join("chunks").display().to_string()],
    };
    [meta, chunks].concat()
}

/// A `loft-server serve` process, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &Path, stores: &[String], name: &str) -> Server {
        let port_file = dir.join(format!("{name}.port"));
        let child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit", "off"])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--data")
            .arg(dir.join(name))
            .args(stores)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting loft-server");
        // Owned (and killed when dropped) before anything can fail.
        let mut server = Server {
            child,
            url: String::new(),
        };
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && text.ends_with('\n')
            {
                server.url = format!("http://{}", text.trim());
                return server;
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

async fn login(server: &Server, device: &str) -> (GrpcClient, proto::Session) {
    let address = server.url.parse().unwrap();
    let client = GrpcClient::connect(&address, &ConnectOptions::default()).unwrap();
    let reply = client
        .login("bench", PASSWORD, device)
        .await
        .expect("login");
    (client, reply.session.unwrap())
}

/// Commits and Watch fan-out with `count` server processes.
struct FanOut {
    commits_per_second: f64,
    /// Per commit: uploading its chunk, and the commit call itself (p50).
    put: Duration,
    commit: Duration,
    deliveries: usize,
    expected: usize,
    p50: Duration,
    p99: Duration,
}

async fn fan_out(count: usize, chunks: Chunks, seconds: u64) -> FanOut {
    let dir = tempfile::tempdir().unwrap();
    let tag = format!(
        "s{count}{}",
        if chunks == Chunks::S3 { "s3" } else { "dir" }
    );
    let stores = fresh_stores(&tag, chunks, dir.path()).await;
    let password = dir.path().join("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    let status = Command::new(BIN)
        .args(["user", "add", "bench", "--password-file"])
        .arg(&password)
        .arg("--data")
        .arg(dir.path().join("admin"))
        .args(&stores)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "user add");
    let servers: Vec<Server> = (0..count)
        .map(|i| Server::start(dir.path(), &stores, &format!("server{i}")))
        .collect();

    // Watchers spread over the servers, each from the head of the feed.
    let sent: Arc<Mutex<HashMap<Vec<u8>, Instant>>> = Arc::default();
    let received: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut watching = Vec::new();
    for w in 0..WATCHERS {
        let (client, _) = login(&servers[w % count], &format!("watcher{w}")).await;
        let mut events = watch_live(&client).await;
        let (sent, received) = (sent.clone(), received.clone());
        watching.push(tokio::spawn(async move {
            let _client = client;
            let mut seen = std::collections::HashSet::new();
            while let Some(Ok(event)) = events.next().await {
                if let Some(Event::Change(change)) = event.event {
                    let at = Instant::now();
                    // The first change that names the file (a commit may journal more).
                    if !seen.insert(change.name.to_vec()) {
                        continue;
                    }
                    if let Some(start) = sent.lock().await.get(change.name.as_ref()) {
                        received.lock().await.push(at - *start);
                    }
                }
            }
        }));
    }

    // Writers spread over the servers: one small new file per commit.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut writing = Vec::new();
    for w in 0..WRITERS {
        let (client, session) = login(&servers[w % count], &format!("writer{w}")).await;
        let sent = sent.clone();
        writing.push(tokio::spawn(async move {
            let mut commits = 0usize;
            let mut times = Vec::new();
            while Instant::now() < deadline {
                let name = format!("w{w}-{commits}.txt");
                let data = name.as_bytes();
                let manifest = Manifest::of_bytes(data);
                let started = Instant::now();
                put_one_chunk(&client, data).await;
                let put = started.elapsed();
                let started = Instant::now();
                sent.lock().await.insert(name.clone().into_bytes(), started);
                client
                    .commit(proto::CommitRequest {
                        manifest: Some((&manifest).into()),
                        parent: session.root,
                        name: name.into_bytes().into(),
                        mode: 0o644,
                        ..Default::default()
                    })
                    .await
                    .expect("commit");
                times.push((put, started.elapsed()));
                commits += 1;
            }
            times
        }));
    }
    let started = Instant::now();
    let mut times = Vec::new();
    for task in writing {
        times.extend(task.await.unwrap());
    }
    let commits = times.len();
    let median = |mut values: Vec<Duration>| {
        values.sort();
        values.get(values.len() / 2).copied().unwrap_or_default()
    };
    let put = median(times.iter().map(|t| t.0).collect());
    let commit = median(times.iter().map(|t| t.1).collect());
    let elapsed = started.elapsed();
    // Let the last commits reach every watcher.
    let expected = commits * WATCHERS;
    let wait = Instant::now();
    while received.lock().await.len() < expected && wait.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for task in watching {
        task.abort();
    }
    let mut latencies = received.lock().await.clone();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    FanOut {
        commits_per_second: commits as f64 / elapsed.as_secs_f64(),
        put,
        commit,
        deliveries: latencies.len(),
        expected,
        p50: at(0.5),
        p99: at(0.99),
    }
}

/// MB/s of putting, then getting, `count` chunks of 4 MiB through the S3 chunk store,
/// 8 at a time.
async fn s3_throughput(count: usize) -> (f64, f64) {
    let settings = S3Settings {
        access_key_id: std::env::var("AWS_ACCESS_KEY_ID").ok(),
        secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY").ok(),
        region: std::env::var("AWS_REGION").ok(),
        allow_http: true,
        path_style: true,
        endpoint: Some(env("LOFT_TEST_S3_ENDPOINT")),
    };
    let prefix = format!("bench-{}", std::process::id());
    let store = ChunkStore::s3(&env("LOFT_TEST_S3_BUCKET"), &prefix, &settings)
        .await
        .expect("S3 chunk store");
    let chunks: Vec<(ChunkId, bytes::Bytes)> = (0..count)
        .map(|i| {
            let data: Vec<u8> = (0..4 << 20)
                .map(|b: usize| (b * 31 + i * 7) as u8)
                .collect();
            (ChunkId::of(&data), bytes::Bytes::from(data))
        })
        .collect();
    let bytes = (count * (4 << 20)) as f64;
    let started = Instant::now();
    futures::stream::iter(&chunks)
        .for_each_concurrent(8, |(id, data)| {
            let store = store.clone();
            async move { store.put(id, false, data.clone()).await.expect("put") }
        })
        .await;
    let put = bytes / started.elapsed().as_secs_f64() / 1e6;
    let started = Instant::now();
    futures::stream::iter(&chunks)
        .for_each_concurrent(8, |(id, _)| {
            let store = store.clone();
            async move {
                store.get(id).await.expect("get");
            }
        })
        .await;
    let get = bytes / started.elapsed().as_secs_f64() / 1e6;
    (put, get)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let seconds = std::env::var("LOFT_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    for (chunks, title) in [
        (
            Chunks::SharedDir,
            "PostgreSQL, chunks in one directory shared by the servers",
        ),
        (Chunks::S3, "PostgreSQL + S3 (moto)"),
    ] {
        let one = fan_out(1, chunks, seconds).await;
        let two = fan_out(2, chunks, seconds).await;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!();
        println!("| {title} | 1 server | 2 servers |");
        println!("|---|---|---|");
        println!(
            "| commits/s ({WRITERS} writers, one small new file each, {seconds} s) | {:.0} | {:.0} |",
            one.commits_per_second, two.commits_per_second
        );
        println!(
            "| per commit, p50: chunk upload / commit call | {:.1} ms / {:.1} ms | {:.1} ms / {:.1} ms |",
            ms(one.put),
            ms(one.commit),
            ms(two.put),
            ms(two.commit)
        );
        println!(
            "| Watch deliveries ({WATCHERS} watchers × every commit) | {} of {} | {} of {} |",
            one.deliveries, one.expected, two.deliveries, two.expected
        );
        println!(
            "| commit call start to each watcher, p50 / p99 | {:.1} ms / {:.1} ms | {:.1} ms / {:.1} ms |",
            ms(one.p50),
            ms(one.p99),
            ms(two.p50),
            ms(two.p99)
        );
    }
    let (put, get) = s3_throughput(32).await;
    println!();
    println!("| S3 chunk store (32 × 4 MiB, 8 at a time) | MB/s |");
    println!("|---|---|");
    println!("| put | {put:.0} |");
    println!("| get | {get:.0} |");
}
