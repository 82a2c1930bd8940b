//! Passwords (argon2id), bearer tokens (256-bit random, stored as SHA-256) and the
//! layer that authenticates every call but `Auth/Login` and applies the rate limits.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use loft_remote::errors::rate_limited;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::error::{Result, ServerError};
use crate::meta::{Caller, MetaStore, now_nanos};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;

/// Path of the one call that needs no token.
const LOGIN_PATH: &str = "/loft.v1.Auth/Login";
/// Prefix that makes Loft tokens recognisable (e.g. by secret scanners).
const TOKEN_PREFIX: &str = "loft_";

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| ServerError::internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ServerError::internal(format!("argon2: {e}")))
}

/// Checks a password against a PHC string; false on any mismatch or malformed hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh bearer token and the hash stored for it.
pub fn new_token() -> (String, [u8; 32]) {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let hash = token_hash(&token);
    (token, hash)
}

/// What the database stores for a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token hash of an authenticated request, kept for `Logout`.
#[derive(Clone, Copy, Debug)]
pub struct TokenHash(pub [u8; 32]);

/// Reads the authenticated caller that [`AuthLayer`] put into the request.
pub fn caller<T>(request: &tonic::Request<T>) -> std::result::Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ServerError::unauthenticated("not signed in").into())
}

/// Tower layer that resolves `authorization: Bearer` into a [`Caller`], or answers
/// UNAUTHENTICATED without reaching the service.
///
/// It also applies the rate limits: per client address before anything else (logins
/// included), per user once the caller is known.
#[derive(Clone)]
pub struct AuthLayer {
    meta: Arc<dyn MetaStore>,
    limiter: Arc<RateLimiter>,
    metrics: Arc<Metrics>,
}

impl AuthLayer {
    pub fn new(meta: Arc<dyn MetaStore>, limiter: Arc<RateLimiter>, metrics: Arc<Metrics>) -> Self {
        AuthLayer {
            meta,
            limiter,
            metrics,
        }
    }
}

/// The client's IP address: `None` over a unix socket (the embedded server), which is
/// not rate limited.
fn client_address<B>(request: &http::Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    let tcp = extensions.get::<TcpConnectInfo>().or_else(|| {
        extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .map(|tls| tls.get_ref())
    });
    tcp.and_then(|info| info.remote_addr())
        .map(|addr| addr.ip())
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            meta: self.meta.clone(),
            limiter: self.limiter.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the gRPC router.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    meta: Arc<dyn MetaStore>,
    limiter: Arc<RateLimiter>,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<std::result::Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let meta = self.meta.clone();
        let limiter = self.limiter.clone();
        let metrics = self.metrics.clone();
        let address = client_address(&request);
        metrics.grpc_call(request.uri().path());
        let refuse = move |wait| {
            metrics.grpc_rate_limited();
            Ok(rate_limited(wait).into_http())
        };
        Box::pin(async move {
            if let Some(address) = address
                && let Err(wait) = limiter.check_address(address)
            {
                return refuse(wait);
            }
            if request.uri().path() == LOGIN_PATH {
                return inner.call(request).await;
            }
            let token = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(token_hash);
            let Some(hash) = token else {
                return Ok(Status::unauthenticated("missing bearer token").into_http());
            };
            match meta.session(hash, now_nanos()).await {
                Ok(Some(caller)) => {
                    if address.is_some()
                        && let Err(wait) = limiter.check_user(caller.user_id)
                    {
                        return refuse(wait);
                    }
                    request.extensions_mut().insert(caller);
                    request.extensions_mut().insert(TokenHash(hash));
                    inner.call(request).await
                }
                Ok(None) => {
                    Ok(Status::unauthenticated("invalid, expired or revoked token").into_http())
                }
                Err(error) => Ok(Status::from(error).into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, hash_a) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.len() >= TOKEN_PREFIX.len() + 43);
        assert_eq!(token_hash(&a), hash_a);
    }
}
