//! Opening the stores and serving gRPC on TCP (optionally TLS) or a unix socket.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::auth::AuthLayer;
use crate::chunk_store::ChunkStore;
use crate::error::{Result, ServerError};
use crate::gateway::{self, GatewayConfig};
use crate::journal_hub::JournalHub;
use crate::meta::MetaStore;
use crate::meta::sqlite::SqliteMetaStore;
use crate::metrics::Metrics;
use crate::prune::{PruneConfig, Pruner};
use crate::rate_limit::{RateLimiter, RateLimits};
use crate::search::indexer::{IndexConfig, Indexer};
use crate::services::{State, routes};
use crate::storage::StorageConfig;

/// How long open calls and streams get to finish after a shutdown request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Where the server listens.
#[derive(Clone, Debug)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Certificate and key (PEM files) for TLS on the TCP listener.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything `loft-server serve` needs; filled by the binary's argument parser.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Directory for local state (empty when every store is remote).
    pub data_dir: PathBuf,
    pub listen: Listen,
    /// Written atomically with `IP:PORT\n` once the listener accepts.
    pub port_file: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
    /// Lifetime of a login session's token.
    pub token_ttl: Duration,
    /// Retention of versions and trash, and how the pruning worker runs.
    pub prune: PruneConfig,
    /// How the search indexer runs.
    pub search: IndexConfig,
    /// The HTTP gateway (links, `/healthz`, `/metrics`), when wanted.
    pub http: Option<GatewayConfig>,
    /// Token buckets per user and per client address (gRPC and HTTP).
    pub rate_limits: RateLimits,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, listen: Listen) -> Self {
        ServerConfig {
            data_dir,
            listen,
            port_file: None,
            tls: None,
            token_ttl: Duration::from_secs(90 * 24 * 3600),
            prune: PruneConfig::default(),
            search: IndexConfig::default(),
            http: None,
            rate_limits: RateLimits::default(),
        }
    }
}

/// The stores behind a server.
#[derive(Clone)]
pub struct Backend {
    pub meta: Arc<dyn MetaStore>,
    pub chunks: ChunkStore,
    pub hub: Arc<JournalHub>,
}

impl Backend {
    /// The embedded default: SQLite and a chunk directory under `data_dir`.
    pub fn open_local(data_dir: &Path) -> Result<Backend> {
        std::fs::create_dir_all(data_dir)?;
        let hub = Arc::new(JournalHub::default());
        let meta = SqliteMetaStore::open(&data_dir.join("meta.sqlite"), hub.clone())?;
        let chunks = ChunkStore::local(data_dir)?;
        Ok(Backend {
            meta: Arc::new(meta),
            chunks,
            hub,
        })
    }

    /// The stores `config` names (SQLite or PostgreSQL; a directory or S3).
    pub fn open(config: &StorageConfig) -> BoxFuture<'_, Result<Backend>> {
        Box::pin(async move {
            let hub = Arc::new(JournalHub::default());
            let meta = config.open_meta(hub.clone()).await?;
            let chunks = config.open_chunks().await?;
            Ok(Backend { meta, chunks, hub })
        })
    }
}

/// Writes `contents` to `path` so that readers see all of it or nothing.
pub(crate) fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Drops idle rate-limit buckets once a minute until `stop`.
async fn forget_idle_buckets(limiter: Arc<RateLimiter>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => limiter.forget_idle(),
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// Serves until `shutdown` completes; then gives open calls [`SHUTDOWN_GRACE`] to end.
pub fn serve(
    config: ServerConfig,
    backend: Backend,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> BoxFuture<'static, Result<()>> {
    serve_boxed(config, backend, Box::pin(shutdown))
}

// The server's public async entry points return boxed futures made here, in this crate:
// the state machine of an `async fn` is otherwise compiled again in every crate that
// awaits it (the server binary, each test binary, the client's embedded server), which
// multiplied the release build's time.
fn serve_boxed(
    config: ServerConfig,
    backend: Backend,
    shutdown: BoxFuture<'static, ()>,
) -> BoxFuture<'static, Result<()>> {
    Box::pin(serve_until(config, backend, shutdown))
}

async fn serve_until(
    config: ServerConfig,
    backend: Backend,
    shutdown: BoxFuture<'static, ()>,
) -> Result<()> {
    let (stop_sender, stop) = watch::channel(false);
    let pruner = Arc::new(Pruner::new(backend.meta.clone(), backend.chunks.clone()));
    let pruning = tokio::spawn(pruner.run(config.prune.clone(), stop.clone()));
    let indexer = Arc::new(Indexer::new(backend.meta.clone(), backend.chunks.clone()));
    let indexing = tokio::spawn(indexer.clone().run(
        config.search.clone(),
        backend.hub.clone(),
        stop.clone(),
    ));
    let metrics = Arc::new(Metrics::default());
    let limiter = Arc::new(RateLimiter::new(config.rate_limits));
    let forgetting = tokio::spawn(forget_idle_buckets(limiter.clone(), stop.clone()));
    // The gateway binds first, so that link URLs name the address it really got.
    let http = match &config.http {
        Some(http) => Some((gateway::bind(http).await?, http.clone())),
        None => None,
    };
    let state = Arc::new(State {
        meta: backend.meta.clone(),
        chunks: backend.chunks.clone(),
        hub: backend.hub,
        indexer,
        token_ttl: config.token_ttl,
        public_url: http.as_ref().map(|(bound, _)| bound.public_url.clone()),
        shutdown: stop.clone(),
    });
    let gateway = http.map(|(bound, http)| {
        tokio::spawn(gateway::run(
            bound,
            http,
            backend.meta.clone(),
            backend.chunks.clone(),
            metrics.clone(),
            limiter.clone(),
            stop.clone(),
        ))
    });
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .tcp_nodelay(true)
        // What a client may send ahead of the server's reading. Over loopback 32 MiB
        // per stream only parked chunks in the server's memory (peak 88-94 MiB against
        // 62-66 MiB in a 1 GiB upload, at the same speed); 8 MiB still fills a
        // 160 MB/s stream at 50 ms round trip.
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        // A chunk (1 MiB on average) arrives in a few frames, not 64 of 16 KiB, each
        // a wakeup and a copy.
        .max_frame_size(Some(1 << 20));
    if let Some(tls) = &config.tls {
        let identity = Identity::from_pem(std::fs::read(&tls.cert)?, std::fs::read(&tls.key)?);
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| ServerError::invalid(format!("TLS: {e}")))?;
    }
    let router = builder
        .layer(AuthLayer::new(backend.meta, limiter, metrics.clone()))
        .add_routes(routes(state));
    let mut stopped = stop.clone();
    let graceful = async move {
        let _ = stopped.wait_for(|stopping| *stopping).await;
    };
    let serving = async {
        match &config.listen {
            Listen::Tcp(addr) => {
                let listener = tokio::net::TcpListener::bind(addr).await?;
                let local = listener.local_addr()?;
                tracing::info!(%local, "listening");
                if let Some(file) = &config.port_file {
                    write_atomically(file, &format!("{local}\n"))?;
                }
                // tonic applies its `tcp_nodelay` only to listeners it binds itself: set
                // it on each accepted socket, or Nagle's algorithm holds back a small
                // reply until the client's delayed ACK (40 ms on Linux) for every call.
                let accepted = metrics.clone();
                let incoming = TcpListenerStream::new(listener).map(move |stream| {
                    accepted.grpc_connection();
                    stream.and_then(|s| s.set_nodelay(true).map(|()| s))
                });
                router
                    .serve_with_incoming_shutdown(incoming, graceful)
                    .await
                    .map_err(|e| ServerError::internal(format!("server: {e}")))
            }
            Listen::Unix(path) => {
                let _ = std::fs::remove_file(path);
                let listener = tokio::net::UnixListener::bind(path)?;
                tracing::info!(path = %path.display(), "listening");
                let incoming = UnixListenerStream::new(listener);
                router
                    .serve_with_incoming_shutdown(incoming, graceful)
                    .await
                    .map_err(|e| ServerError::internal(format!("server: {e}")))
            }
        }
    };
    tokio::pin!(serving);
    let gateway_failed = async {
        match gateway {
            Some(task) => match task.await {
                Ok(Ok(())) => std::future::pending().await,
                Ok(Err(error)) => error,
                Err(error) => ServerError::internal(format!("HTTP gateway: {error}")),
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = &mut serving => return result,
        error = gateway_failed => return Err(error),
        () = shutdown => {}
    }
    tracing::info!("shutting down");
    let _ = stop_sender.send(true);
    pruning.abort();
    forgetting.abort();
    indexing.abort();
    match tokio::time::timeout(SHUTDOWN_GRACE, serving).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("calls still open after the grace period; closing them");
            Ok(())
        }
    }
}

/// Adds a user to the store behind `backend`.
pub fn add_user<'a>(
    backend: &'a Backend,
    name: &'a str,
    password: &'a str,
) -> BoxFuture<'a, Result<crate::meta::User>> {
    Box::pin(async move { add_user_to(backend.meta.as_ref(), name, password).await })
}

/// Adds a user to `meta`.
pub fn add_user_to<'a>(
    meta: &'a dyn MetaStore,
    name: &'a str,
    password: &'a str,
) -> BoxFuture<'a, Result<crate::meta::User>> {
    Box::pin(async move {
        if password.is_empty() {
            return Err(ServerError::invalid("empty password"));
        }
        let password = password.to_string();
        let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
            .await
            .map_err(ServerError::internal)??;
        meta.create_user(name, &hash).await
    })
}
