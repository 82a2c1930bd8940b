//! Watch fan-out of one `loft-server`: one writer commits small new files one after
//! another while 16 clients watch the feed; every change must reach every watcher.
//! Measures the writer's change rate, the changes delivered per second (each change
//! counted once per watcher) and the delay from the start of each commit call to each
//! delivery.
//!
//! Run by `bench/run` against the server it starts on loopback. Environment:
//! `LOFT_BENCH_SERVER` (the server's URL), `LOFT_BENCH_PASSWORD_FILE` (the password of
//! `LOFT_BENCH_USER`, default `bench`), `LOFT_BENCH_CHANGES` (default 1000),
//! `LOFT_BENCH_WATCHERS` (default 16). Prints one JSON line.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use loft_remote::RemoteClient;
use loft_remote::client::{ConnectOptions, GrpcClient};
use loft_remote::content::Manifest;
use loft_remote::proto::{self, watch_event::Event};

mod support;
use support::{put_one_chunk, watch_live};

/// How long the watchers may take, after the last commit, to receive everything.
const DRAIN: Duration = Duration::from_secs(30);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("{name} is not set: bench/run runs this benchmark against its server");
        std::process::exit(2)
    })
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The name of the writer's `k`th file, and back.
fn file_name(k: usize) -> String {
    format!("fan-out-{k:07}")
}

fn file_index(name: &[u8]) -> Option<usize> {
    std::str::from_utf8(name)
        .ok()?
        .strip_prefix("fan-out-")?
        .parse()
        .ok()
}

struct Login {
    url: String,
    user: String,
    password: String,
}

impl Login {
    async fn device(&self, device: &str) -> (GrpcClient, proto::Session) {
        let address = self.url.parse().expect("LOFT_BENCH_SERVER: a server URL");
        let client = GrpcClient::connect(&address, &ConnectOptions::default()).expect("connect");
        let reply = client
            .login(&self.user, &self.password, device)
            .await
            .expect("login");
        (client, reply.session.expect("a session"))
    }
}

/// Per watcher: when each of the writer's changes arrived, in arrival order.
type Arrivals = Arc<Mutex<Vec<(usize, Instant)>>>;

/// Logs a watcher in and follows the feed from its head; returns once the stream is
/// live, with a task that records the first arrival of each of the writer's files
/// until it has all `changes` of them.
async fn watcher(
    login: &Login,
    w: usize,
    changes: usize,
) -> (tokio::task::JoinHandle<()>, Arrivals) {
    let (client, _) = login.device(&format!("fan-out-watcher{w}")).await;
    let mut events = watch_live(&client).await;
    let arrivals: Arrivals = Arc::default();
    let record = arrivals.clone();
    let task = tokio::spawn(async move {
        let _client = client;
        let mut seen = vec![false; changes];
        let mut count = 0;
        while count < changes {
            let Some(Ok(event)) = events.next().await else {
                return;
            };
            if let Some(Event::Change(change)) = event.event {
                let at = Instant::now();
                // The first change that names the file (a commit may journal more).
                if let Some(k) = file_index(&change.name)
                    && k < changes
                    && !seen[k]
                {
                    seen[k] = true;
                    count += 1;
                    record.lock().unwrap().push((k, at));
                }
            }
        }
    });
    (task, arrivals)
}

/// One small new file: its chunk is uploaded, then the commit call. Returns when the
/// commit call started.
async fn write_one(client: &GrpcClient, root: u64, k: usize) -> Instant {
    let name = file_name(k);
    let data = name.as_bytes();
    put_one_chunk(client, data).await;
    let started = Instant::now();
    client
        .commit(proto::CommitRequest {
            manifest: Some((&Manifest::of_bytes(data)).into()),
            parent: root,
            name: name.into_bytes().into(),
            mode: 0o644,
            ..Default::default()
        })
        .await
        .expect("commit");
    started
}

/// The value at quantile `q` of sorted `values` (nearest rank).
fn quantile(values: &[Duration], q: f64) -> Duration {
    let i = ((values.len() as f64 * q) as usize).min(values.len().saturating_sub(1));
    values.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let login = Login {
        url: env("LOFT_BENCH_SERVER"),
        user: std::env::var("LOFT_BENCH_USER").unwrap_or_else(|_| "bench".into()),
        password: std::fs::read_to_string(env("LOFT_BENCH_PASSWORD_FILE"))
            .expect("reading LOFT_BENCH_PASSWORD_FILE")
            .trim_end_matches('\n')
            .to_string(),
    };
    let changes = env_usize("LOFT_BENCH_CHANGES", 1000).max(1);
    let watchers = env_usize("LOFT_BENCH_WATCHERS", 16).max(1);

    let mut watching = Vec::new();
    for w in 0..watchers {
        watching.push(watcher(&login, w, changes).await);
    }

    let (client, session) = login.device("fan-out-writer").await;
    let mut sent = Vec::with_capacity(changes);
    for k in 0..changes {
        sent.push(write_one(&client, session.root, k).await);
    }
    let written = Instant::now();
    let first = sent[0];

    let mut delays = Vec::with_capacity(changes * watchers);
    let mut last = first;
    for (task, arrivals) in watching {
        let abort = task.abort_handle();
        if tokio::time::timeout_at((written + DRAIN).into(), task)
            .await
            .is_err()
        {
            abort.abort();
        }
        for &(k, at) in arrivals.lock().unwrap().iter() {
            delays.push(at - sent[k]);
            last = last.max(at);
        }
    }
    delays.sort();
    let expected = changes * watchers;
    println!(
        "{{\"changes\": {changes}, \"watchers\": {watchers}, \"deliveries\": {}, \"expected\": {expected}, \
         \"writer_per_s\": {:.1}, \"delivered_per_s\": {:.1}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}}}",
        delays.len(),
        changes as f64 / (written - first).as_secs_f64(),
        delays.len() as f64 / (last - first).as_secs_f64(),
        ms(quantile(&delays, 0.5)),
        ms(quantile(&delays, 0.99)),
    );
}
