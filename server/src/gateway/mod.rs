//! The HTTP gateway (axum, on the server's tokio runtime): public link pages, signed
//! downloads with Range support, uploads through upload links, `/healthz` and
//! `/metrics`.
//!
//! A link acts as its creator through the metadata store's ordinary access checks, so
//! what the creator can no longer read, the link cannot serve either. Revoked, expired
//! and used-up links answer 404, like links that never existed.

mod download;
mod link;
mod media;
mod page;
mod password;
pub mod signing;
mod upload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use loft_remote::errors::ErrorKind;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::chunk_store::ChunkStore;
use crate::error::{Result, ServerError};
use crate::meta::{MetaStore, ThrottlePolicy};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use signing::Signer;

/// How the gateway runs; filled by the binary's argument parser.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Written atomically with `IP:PORT\n` once the listener accepts.
    pub port_file: Option<PathBuf>,
    /// Scheme, host and optional path prefix under which people reach the gateway;
    /// default `http://` + the listening address.
    pub public_url: Option<String>,
    /// Failed link passwords allowed per link and per client address.
    pub password_throttle: ThrottlePolicy,
    /// Lifetime of signed download URLs and of what a correct password grants.
    pub signed_url_ttl: Duration,
    /// Largest file accepted through an upload link.
    pub max_upload: u64,
}

impl GatewayConfig {
    pub fn new(listen: SocketAddr) -> Self {
        GatewayConfig {
            listen,
            port_file: None,
            public_url: None,
            password_throttle: ThrottlePolicy {
                failures: 10,
                window: 15 * 60 * 1_000_000_000,
            },
            signed_url_ttl: Duration::from_secs(3600),
            max_upload: 4 << 30,
        }
    }
}

/// What every gateway handler shares.
pub struct Gateway {
    pub meta: Arc<dyn MetaStore>,
    pub chunks: ChunkStore,
    pub signer: Signer,
    pub config: GatewayConfig,
    pub metrics: Arc<Metrics>,
    /// The server's rate limits (per client address here: link visitors have no user).
    pub limiter: Arc<RateLimiter>,
    /// Path prefix of the public URL ("" or "/prefix"), put before every link made.
    pub base_path: String,
}

/// A gateway listener bound before the gRPC server starts, so that link URLs can name
/// its real address.
pub struct Bound {
    listener: TcpListener,
    pub public_url: String,
}

/// Binds the gateway's listener and settles its public URL.
pub async fn bind(config: &GatewayConfig) -> Result<Bound> {
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        ServerError::new(
            ErrorKind::Unavailable,
            format!("HTTP gateway on {}: {e}", config.listen),
        )
    })?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "HTTP gateway listening");
    if let Some(file) = &config.port_file {
        crate::server::write_atomically(file, &format!("{local}\n"))?;
    }
    let public_url = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{local}"),
    };
    Ok(Bound {
        listener,
        public_url,
    })
}

/// The path part of a public URL (`https://host/drive` → `/drive`), without a trailing
/// slash.
fn base_path(public_url: &str) -> String {
    let after_scheme = public_url
        .split_once("://")
        .map_or(public_url, |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(at) => after_scheme[at..].trim_end_matches('/').to_string(),
        None => String::new(),
    }
}

/// Serves the gateway on `bound` until `stop` turns true.
pub async fn run(
    bound: Bound,
    config: GatewayConfig,
    meta: Arc<dyn MetaStore>,
    chunks: ChunkStore,
    metrics: Arc<Metrics>,
    limiter: Arc<RateLimiter>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut fresh = [0u8; 32];
    rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut fresh)
        .map_err(|e| ServerError::internal(format!("random number generator: {e}")))?;
    let key = meta.server_secret(signing::KEY_NAME, fresh).await?;
    let gateway = Arc::new(Gateway {
        meta,
        chunks,
        signer: Signer::new(key),
        base_path: base_path(&bound.public_url),
        config,
        metrics,
        limiter,
    });
    let app = router(gateway);
    axum::serve(
        bound.listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    })
    .await
    .map_err(|e| ServerError::internal(format!("HTTP gateway: {e}")))
}

fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/l/{secret}", get(page::show).post(password::submit))
        .route("/l/{secret}/{*path}", get(page::show))
        .route(
            "/u/{secret}",
            axum::routing::post(upload::receive).layer(DefaultBodyLimit::disable()),
        )
        .route("/d/{link}/{*path}", get(download::serve))
        .fallback(|| async { GatewayError::NotFound })
        .layer(middleware::from_fn_with_state(gateway.clone(), limit))
        .layer(middleware::from_fn_with_state(gateway.clone(), record))
        .with_state(gateway)
}

/// The route label of a request in `loft_http_requests_total`.
fn route_of(method: &axum::http::Method, path: &str) -> &'static str {
    match path {
        "/healthz" => "healthz",
        "/metrics" => "metrics",
        _ if path.starts_with("/l/") && *method == axum::http::Method::POST => "password",
        _ if path.starts_with("/l/") => "page",
        _ if path.starts_with("/d/") => "download",
        _ if path.starts_with("/u/") => "upload",
        _ => "other",
    }
}

/// Counts every request by route and status.
async fn record(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let route = route_of(request.method(), request.uri().path());
    let response = next.run(request).await;
    gateway
        .metrics
        .http_request(route, response.status().as_u16());
    response
}

/// Refuses a request (429, `Retry-After`) when its client address has used up its rate.
async fn limit(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(address) = address
        && let Err(wait) = gateway.limiter.check_address(address)
    {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        return GatewayError::RateLimited(seconds).into_response();
    }
    next.run(request).await
}

/// 200 `ok` when the metadata store answers.
async fn healthz(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway.meta.schema_version().await {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(error) => {
            tracing::warn!(%error, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "metadata store unavailable\n",
            )
                .into_response()
        }
    }
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gateway.metrics.render(),
    )
        .into_response()
}

/// Why a gateway request was refused; each becomes a small page with its status.
#[derive(Debug)]
pub enum GatewayError {
    /// Nothing there, or nothing the caller may see (revoked, expired and used-up links
    /// too): never says which.
    NotFound,
    /// A signed URL that is wrong or has expired.
    BadSignature,
    BadRequest(String),
    /// Too many wrong passwords; retry after this many seconds.
    Throttled(u64),
    /// The client's address used up its rate limit; retry after this many seconds.
    RateLimited(u64),
    /// A Range that does not overlap the file (its size).
    Unsatisfiable(u64),
    TooLarge(u64),
    Unavailable,
    Internal,
}

impl From<ServerError> for GatewayError {
    fn from(error: ServerError) -> Self {
        match error.kind {
            ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::NotADirectory => {
                GatewayError::NotFound
            }
            ErrorKind::InvalidArgument | ErrorKind::InvalidName | ErrorKind::NameTooLong => {
                GatewayError::BadRequest(error.message)
            }
            ErrorKind::Unavailable => {
                tracing::warn!(error = %error.message, "gateway: store unavailable");
                GatewayError::Unavailable
            }
            _ => {
                tracing::error!(error = %error.message, "gateway: internal error");
                GatewayError::Internal
            }
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            GatewayError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "This link does not exist, has expired or was revoked.".to_string(),
            ),
            GatewayError::BadSignature => (
                StatusCode::FORBIDDEN,
                "Link expired",
                "This download link is invalid or has expired. Open the shared link again."
                    .to_string(),
            ),
            GatewayError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, "Bad request", message.clone())
            }
            GatewayError::Throttled(seconds) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                format!("Too many wrong passwords. Try again in {seconds} seconds."),
            ),
            GatewayError::RateLimited(seconds) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                format!("Too many requests from your address. Try again in {seconds} seconds."),
            ),
            GatewayError::Unsatisfiable(_) => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "Range not satisfiable",
                "The requested range is outside the file.".to_string(),
            ),
            GatewayError::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                format!("Uploads are limited to {limit} bytes."),
            ),
            GatewayError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The drive is unavailable right now. Try again shortly.".to_string(),
            ),
            GatewayError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                "Something went wrong on the server.".to_string(),
            ),
        };
        let mut response = (status, page::message(title, &text)).into_response();
        let headers = response.headers_mut();
        match self {
            GatewayError::Throttled(seconds) | GatewayError::RateLimited(seconds) => {
                headers.insert(header::RETRY_AFTER, seconds.into());
            }
            GatewayError::Unsatisfiable(size) => {
                if let Ok(value) = format!("bytes */{size}").parse() {
                    headers.insert(header::CONTENT_RANGE, value);
                }
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_come_from_public_urls() {
        assert_eq!(base_path("http://127.0.0.1:8080"), "");
        assert_eq!(base_path("https://files.example/"), "");
        assert_eq!(base_path("https://example.invalid/drive/"), "/drive");
    }
}
