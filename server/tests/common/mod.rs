//! Test stores on both backends: SQLite + a local directory always, PostgreSQL + S3 when
//! the environment names them (`scripts/with-scale-out-services` sets it):
//!
//! - `LOFT_TEST_PG_URL`: a database on a server where the tests may create databases;
//!   each test gets a fresh one.
//! - `LOFT_TEST_S3_ENDPOINT`, `LOFT_TEST_S3_BUCKET` (+ `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`): a bucket; each test gets a fresh prefix.

#![allow(dead_code)]

pub mod grpc;
pub mod world;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use loft_server::chunk_store::S3Settings;
use loft_server::journal_hub::JournalHub;
use loft_server::meta::MetaStore;
use loft_server::{Backend, ChunkLocation, MetaLocation, StorageConfig};

/// Which stores a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A storage configuration and the directory that holds its local part.
pub struct Stores {
    pub dir: tempfile::TempDir,
    pub config: StorageConfig,
}

impl Stores {
    pub async fn meta(&self) -> Arc<dyn MetaStore> {
        self.meta_with(Arc::new(JournalHub::default())).await
    }

    pub async fn meta_with(&self, hub: Arc<JournalHub>) -> Arc<dyn MetaStore> {
        self.config.open_meta(hub).await.expect("opening metadata")
    }

    pub async fn backend(&self) -> Backend {
        Backend::open(&self.config).await.expect("opening stores")
    }

    /// The `loft-server` flags that select these stores.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = vec!["--data".to_string(), self.dir.path().display().to_string()];
        if let MetaLocation::Postgres(url) = &self.config.meta {
            flags.extend(["--meta".to_string(), url.clone()]);
        }
        if let Some(ChunkLocation::S3 { bucket, prefix }) = &self.config.chunks {
            flags.extend(["--chunks".to_string(), format!("s3://{bucket}/{prefix}")]);
            if let Some(endpoint) = &self.config.s3.endpoint {
                flags.extend(["--s3-endpoint".to_string(), endpoint.clone()]);
            }
            if self.config.s3.allow_http {
                flags.push("--s3-allow-http".to_string());
            }
        }
        flags
    }
}

/// Whether the PostgreSQL + S3 backends are configured; tests on them pass vacuously
/// (saying so) when they are not.
pub fn postgres_configured() -> bool {
    let configured = std::env::var_os("LOFT_TEST_PG_URL").is_some();
    if !configured {
        eprintln!("skipped: LOFT_TEST_PG_URL is not set (see scripts/with-scale-out-services)");
    }
    configured
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// A new, empty database on the test server; its URL.
pub async fn fresh_database() -> String {
    let base = std::env::var("LOFT_TEST_PG_URL").expect("LOFT_TEST_PG_URL");
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("connecting to LOFT_TEST_PG_URL");
    tokio::spawn(connection);
    let name = unique("loft_t");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("CREATE DATABASE");
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("LOFT_TEST_PG_URL must end in /DATABASE"),
    }
}

/// A PostgreSQL cluster of the test's own (for tests that restart it), stopped and
/// removed when dropped. Needs `LOFT_TEST_PG_BIN` and root (it runs as `postgres`).
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub url: String,
}

impl PrivatePostgres {
    pub fn start() -> Option<PrivatePostgres> {
        let bin = PathBuf::from(std::env::var_os("LOFT_TEST_PG_BIN")?);
        let dir = tempfile::tempdir().expect("tempdir");
        run(Command::new("chown").arg("postgres:").arg(dir.path()));
        let data = dir.path().join("data");
        run(as_postgres(&bin, "initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data));
        let port = free_port();
        let pg = PrivatePostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin,
            dir,
        };
        pg.pg_ctl("start", port);
        Some(pg)
    }

    fn pg_ctl(&self, action: &str, port: u16) {
        let options = format!(
            "-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.dir.path().display()
        );
        run(as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-m", "fast", "-o", &options, action]));
    }

    fn port(&self) -> u16 {
        self.url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
            .expect("port")
    }

    /// Stops and starts the server (fast shutdown: open connections are cut).
    pub fn restart(&self) {
        self.pg_ctl("restart", self.port());
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn as_postgres(bin: &Path, program: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(bin.join(program));
    command
}

fn run(command: &mut Command) {
    let output = command.stdin(Stdio::null()).output().expect("spawning");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local_addr").port()
}

/// S3 settings and bucket of the test server, if one is configured.
pub fn s3() -> Option<(S3Settings, String)> {
    let endpoint = std::env::var("LOFT_TEST_S3_ENDPOINT").ok()?;
    let bucket = std::env::var("LOFT_TEST_S3_BUCKET").unwrap_or_else(|_| "loft-test".into());
    let settings = S3Settings {
        access_key_id: std::env::var("AWS_ACCESS_KEY_ID").ok(),
        secret_access_key: std::env::var("AWS_SECRET_ACCESS_KEY").ok(),
        region: std::env::var("AWS_REGION").ok(),
        allow_http: endpoint.starts_with("http://"),
        path_style: true,
        endpoint: Some(endpoint),
    };
    Some((settings, bucket))
}

/// Fresh stores of `kind`: PostgreSQL comes with S3 when an S3 server is configured,
/// else with a local chunk directory.
pub async fn stores(kind: Kind) -> Stores {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = match kind {
        Kind::Sqlite => StorageConfig::local(dir.path()),
        Kind::Postgres => {
            let meta = MetaLocation::Postgres(fresh_database().await);
            match s3() {
                Some((settings, bucket)) => StorageConfig {
                    meta,
                    chunks: Some(ChunkLocation::S3 {
                        bucket,
                        prefix: unique("t"),
                    }),
                    s3: settings,
                },
                None => StorageConfig {
                    meta,
                    chunks: Some(ChunkLocation::Local(dir.path().to_path_buf())),
                    s3: S3Settings::default(),
                },
            }
        }
    };
    Stores { dir, config }
}

/// Runs each named `async fn NAME(kind: Kind)` as a test on each backend:
/// `sqlite::NAME` always, `postgres::NAME` when PostgreSQL is configured.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Kind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if $crate::common::postgres_configured() {
                        super::$name($crate::common::Kind::Postgres).await
                    }
                }
            )*
        }
    };
}
