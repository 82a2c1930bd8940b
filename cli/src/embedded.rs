//! The embedded server: with no server configured, one `loft` process of a device runs
//! the server in-process (SQLite and a chunk directory under the data directory) on a
//! unix socket; the others connect to that socket. The owner holds an exclusive flock.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use loft_server::connection_gauge::ConnectionGauge;
use loft_server::{Backend, Listen, ServerConfig};
use rand::RngCore;
use tokio::sync::oneshot;

use crate::config::{load_token, save_token};
use crate::home::LoftHome;

/// The user that owns the embedded server's drive.
pub const LOCAL_USER: &str = "local";
/// Embedded sessions last as long as the device does.
const LOCAL_TOKEN_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// How long to wait for another process that is starting the embedded server.
const START_WAIT: Duration = Duration::from_secs(15);

/// Longest an owner keeps serving other processes after its own command is done.
const LINGER_MAX: Duration = Duration::from_secs(600);

/// An embedded server run by this process; it stops when dropped.
pub struct EmbeddedServer {
    _lock: std::fs::File,
    stop: Option<oneshot::Sender<()>>,
    connections: ConnectionGauge,
}

impl EmbeddedServer {
    /// Waits until no other process is connected (other `loft` commands that found this
    /// server running), so that stopping it does not cut their work short.
    pub async fn linger(&self) {
        let deadline = tokio::time::Instant::now() + LINGER_MAX;
        let mut idle_since = tokio::time::Instant::now();
        while tokio::time::Instant::now() < deadline {
            if self.connections.open() > 0 {
                idle_since = tokio::time::Instant::now();
            } else if idle_since.elapsed() > Duration::from_millis(200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Takes an exclusive flock on `path` (created if missing) without waiting; `None`
/// when another process holds it.
pub fn try_lock(path: &Path) -> Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    Ok(locked.then_some(file))
}

async fn socket_accepts(path: &Path) -> bool {
    tokio::net::UnixStream::connect(path).await.is_ok()
}

/// How this process uses the device's embedded server.
pub enum Embedded {
    /// This process runs it.
    Owner(EmbeddedServer),
    /// Another process runs it. The connection that found it stays open while this
    /// process runs: the owner keeps serving while any connection is open, and this
    /// process's own gRPC connection comes a moment after (an owner whose command
    /// ended in between used to stop, and the command here failed with "connection
    /// refused").
    Guest { _connection: tokio::net::UnixStream },
}

/// Makes sure an embedded server serves this device, starting one in this process if
/// none runs.
pub async fn ensure(home: &LoftHome, device: &str) -> Result<Embedded> {
    home.create()?;
    let socket = home.embedded_socket();
    let deadline = tokio::time::Instant::now() + START_WAIT;
    loop {
        if let Ok(held) = tokio::net::UnixStream::connect(&socket).await {
            if load_token(home)?.is_none() {
                return Err(anyhow!(
                    "the embedded server of {} is run by another process and this device has no token; \
                     stop that process and try again",
                    home.data_dir.display()
                ));
            }
            return Ok(Embedded::Guest { _connection: held });
        }
        if let Some(lock) = try_lock(&home.embedded_lock())? {
            return start(home, device, lock).await.map(Embedded::Owner);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow!(
                "another process holds the embedded server lock but does not serve"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(home: &LoftHome, device: &str, lock: std::fs::File) -> Result<EmbeddedServer> {
    let dir = home.embedded_dir();
    let backend = Backend::open_local(&dir)
        .with_context(|| format!("opening the embedded server in {}", dir.display()))?;
    provision(home, &backend, device).await?;
    let socket = home.embedded_socket();
    let config = ServerConfig::new(dir, Listen::Unix(socket.clone()));
    let connections = config.connections.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(error) = loft_server::serve(config, backend, shutdown).await {
            tracing::error!(%error, "embedded server stopped");
        }
    });
    let deadline = tokio::time::Instant::now() + START_WAIT;
    while !socket_accepts(&socket).await {
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow!(
                "the embedded server did not start listening on {}",
                socket.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(EmbeddedServer {
        _lock: lock,
        stop: Some(stop),
        connections,
    })
}

/// Creates the local user and a token for this device when they are missing.
async fn provision(home: &LoftHome, backend: &Backend, device: &str) -> Result<()> {
    let meta = &backend.meta;
    let user = match meta.user_by_name(LOCAL_USER).await? {
        Some(user) => user,
        None => {
            let mut secret = [0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            loft_server::add_user(backend, LOCAL_USER, &password).await?
        }
    };
    if let Some(token) = load_token(home)?
        && meta
            .session(
                loft_server::auth::token_hash(&token),
                loft_server::meta::now_nanos(),
            )
            .await?
            .is_some()
    {
        return Ok(());
    }
    let (token, hash) = loft_server::auth::new_token();
    let ttl = LOCAL_TOKEN_TTL.as_nanos() as i64;
    meta.create_session(user.id, device, hash, loft_server::meta::now_nanos() + ttl)
        .await?;
    save_token(home, &token)
}
