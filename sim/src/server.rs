//! The server of a simulation: the real services over SQLite in a memory-backed
//! directory (`/dev/shm` where there is one; a file, so that the database runs as in
//! production, with WAL) and an in-memory chunk store, on a loopback port that stays
//! the same across restarts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use loft_remote::client::ServerAddress;
use loft_server::journal_hub::JournalHub;
use loft_server::meta::sqlite::SqliteMetaStore;
use loft_server::{Backend, Listen, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const USER: &str = "sim";
pub const PASSWORD: &str = "sim-password";

pub struct SimServer {
    backend: Backend,
    /// Holds the metadata database.
    dir: tempfile::TempDir,
    addr: SocketAddr,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl SimServer {
    /// Opens the stores (named after `seed`, private to this run) and starts serving.
    pub async fn start(seed: u64) -> Result<SimServer> {
        let shm = std::path::Path::new("/dev/shm");
        let parent = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("loft-sim-{seed}-"))
            .tempdir_in(parent)?;
        let hub = Arc::new(JournalHub::default());
        let meta = SqliteMetaStore::open(&database(dir.path()), hub.clone())?;
        let chunks = loft_server::chunk_store::ChunkStore::remote(Arc::new(
            object_store::memory::InMemory::new(),
        ));
        let backend = Backend {
            meta: Arc::new(meta),
            chunks,
            hub,
        };
        loft_server::add_user(&backend, USER, PASSWORD).await?;
        // A port of our own, kept for restarts.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut server = SimServer {
            backend,
            dir,
            addr,
            running: None,
        };
        server.up().await?;
        Ok(server)
    }

    pub fn address(&self) -> ServerAddress {
        format!("http://{}", self.addr)
            .parse()
            .expect("a loopback URL")
    }

    /// Every content hash the server keeps as a version of any file, in the drive or
    /// in the trash (read from its database directly: the API shows live files only).
    pub fn version_hashes(&self) -> Result<Vec<[u8; 32]>> {
        let db = rusqlite::Connection::open_with_flags(
            database(self.dir.path()),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let mut query = db.prepare("SELECT content_hash FROM versions")?;
        let hashes = query
            .query_map([], |row| row.get::<_, Vec<u8>>(0))?
            .filter_map(|hash| hash.ok()?.try_into().ok())
            .collect();
        Ok(hashes)
    }

    pub fn is_up(&self) -> bool {
        self.running.is_some()
    }

    /// Starts serving again (after [`SimServer::down`]) and waits until it accepts.
    pub async fn up(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let config = ServerConfig::new(std::env::temp_dir(), Listen::Tcp(self.addr));
        let backend = self.backend.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = loft_server::serve(config, backend, shutdown).await {
                tracing::error!("simulated server: {error}");
            }
        });
        self.running = Some((stop, task));
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(anyhow!(
            "the simulated server did not come up on {}",
            self.addr
        ))
    }

    /// Stops serving: open streams break and calls fail until [`SimServer::up`].
    pub async fn down(&mut self) -> Result<()> {
        let Some((stop, task)) = self.running.take() else {
            return Ok(());
        };
        let _ = stop.send(());
        task.await.context("stopping the simulated server")?;
        Ok(())
    }
}

/// The metadata database in the server's directory.
fn database(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("meta.sqlite")
}
