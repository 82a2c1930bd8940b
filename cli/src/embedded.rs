//! The embedded server: with no server configured, one `loft` process of a device runs
//! the server in-process (SQLite and a chunk directory under the data directory) on a
//! unix socket; the others connect to that socket.
//!
//! Two flocks keep the processes in step. The owner holds `server.lock` exclusively
//! while it runs the server. Each other process holds `server.users` shared from before
//! it connects until it exits; the owner stops only once it can hold `server.users`
//! exclusively, and keeps holding it until the server has stopped, so a process can
//! never connect to a server that is about to stop: it waits, finds the socket dead,
//! and runs the server itself.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use loft_server::{Backend, Listen, ServerConfig};
use rand::RngCore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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

/// Longest the owner waits for its server to finish the calls in flight once stopped.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// An embedded server run by this process; it stops when dropped.
pub struct EmbeddedServer {
    _lock: std::fs::File,
    users: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<()>>,
}

impl EmbeddedServer {
    /// Stops the server once no other process uses it (other `loft` commands that found
    /// it running), so that stopping it does not cut their work short, and returns
    /// when it has stopped. Processes that come meanwhile wait for the stop and then
    /// run the server themselves.
    pub async fn close(mut self) {
        let deadline = tokio::time::Instant::now() + LINGER_MAX;
        let users = loop {
            match try_flock(&self.users, libc::LOCK_EX) {
                Ok(Some(users)) => break Some(users),
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(None) => break None,
                Err(error) => {
                    tracing::warn!(%error, "embedded server: cannot tell whether others use it");
                    break None;
                }
            }
        };
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = tokio::time::timeout(STOP_WAIT, serving).await;
        }
        drop(users);
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
    try_flock(path, libc::LOCK_EX)
}

/// Takes a flock (`LOCK_EX` or `LOCK_SH`) on `path` (created if missing) without
/// waiting; `None` when another process holds a conflicting one.
fn try_flock(path: &Path, operation: libc::c_int) -> Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let locked = unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) } == 0;
    Ok(locked.then_some(file))
}

async fn socket_accepts(path: &Path) -> bool {
    tokio::net::UnixStream::connect(path).await.is_ok()
}

/// How this process uses the device's embedded server.
pub enum Embedded {
    /// This process runs it.
    Owner(EmbeddedServer),
    /// Another process runs it; the shared flock on `server.users` keeps it serving
    /// while this process lives.
    Guest { _users: std::fs::File },
}

/// Makes sure an embedded server serves this device, starting one in this process if
/// none runs.
pub async fn ensure(home: &LoftHome, device: &str) -> Result<Embedded> {
    home.create()?;
    let socket = home.embedded_socket();
    let deadline = tokio::time::Instant::now() + START_WAIT;
    loop {
        // None while an owner is stopping: wait for it to be gone.
        if let Some(users) = try_flock(&home.embedded_users(), libc::LOCK_SH)?
            && socket_accepts(&socket).await
        {
            if load_token(home)?.is_none() {
                return Err(anyhow!(
                    "the embedded server of {} is run by another process and this device has no token; \
                     stop that process and try again",
                    home.data_dir.display()
                ));
            }
            return Ok(Embedded::Guest { _users: users });
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
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
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
        users: home.embedded_users(),
        stop: Some(stop),
        serving: Some(serving),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn is_owner(embedded: &Embedded) -> bool {
        matches!(embedded, Embedded::Owner(_))
    }

    /// A fresh home and the process that runs its embedded server.
    async fn first_process() -> (tempfile::TempDir, LoftHome, EmbeddedServer) {
        let dir = tempfile::tempdir().unwrap();
        let home = LoftHome::single(dir.path().to_path_buf());
        let Embedded::Owner(owner) = ensure(&home, "solo").await.unwrap() else {
            panic!("the first process did not run the server");
        };
        (dir, home, owner)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_owner_stops_only_when_no_guest_is_left_and_a_newcomer_takes_over() {
        let (_dir, home, owner) = first_process().await;
        let guest = ensure(&home, "solo").await.unwrap();
        assert!(!is_owner(&guest), "a second process started its own server");

        // The owner's command is done, but a guest still uses the server.
        let closing = tokio::spawn(owner.close());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!closing.is_finished(), "the owner stopped under a guest");
        assert!(socket_accepts(&home.embedded_socket()).await);

        // Once the guest is gone the owner stops, and the next process runs the server.
        drop(guest);
        closing.await.unwrap();
        assert!(
            !socket_accepts(&home.embedded_socket()).await,
            "the server still accepts after its owner closed it"
        );
        let newcomer = ensure(&home, "solo").await.unwrap();
        assert!(
            is_owner(&newcomer),
            "the next process did not run the server"
        );
        assert!(socket_accepts(&home.embedded_socket()).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_process_arriving_while_the_owner_stops_waits_and_runs_the_server() {
        let (_dir, home, owner) = first_process().await;
        // What the owner holds from deciding to stop until its server has stopped.
        let stopping = try_flock(&home.embedded_users(), libc::LOCK_EX)
            .unwrap()
            .expect("no guest holds server.users");
        let arriving = tokio::spawn({
            let home = home.clone();
            async move { ensure(&home, "solo").await.map(|e| is_owner(&e)) }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !arriving.is_finished(),
            "a process joined a server whose owner is stopping"
        );
        // The owner's process ends (its lock on `server.lock` goes with it).
        drop(owner);
        assert!(
            arriving.await.unwrap().unwrap(),
            "the arriving process did not run the server itself"
        );
        drop(stopping);
    }
}
