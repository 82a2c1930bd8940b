//! `POST /l/SECRET` with `password=…` (form-encoded): the password of a protected link.
//! Right: 303 to a signed download URL (a file link) or to the page with a grant (a
//! folder or upload link). Wrong: 403 and the form again. Failed passwords are counted
//! per link and per client address in the metadata store (so every server process
//! sees them); past the limit every attempt, right or wrong, answers 429 until the
//! window ends.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use loft_remote::proto::NodeKind;

use super::link::{self, form_pairs, link_name, page_url};
use super::{Gateway, GatewayError, page};
use crate::auth::verify_password;
use crate::meta::{LinkRole, now_nanos};

/// Longest password form accepted.
const MAX_FORM: usize = 4096;

pub async fn submit(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let (secret, _) = link::secret_and_path(uri.path())?;
    let grant = link::open(&gateway, &secret).await?;
    if body.len() > MAX_FORM {
        return Err(GatewayError::BadRequest("form too large".into()));
    }
    let form = std::str::from_utf8(&body)
        .map_err(|_| GatewayError::BadRequest("the form is not UTF-8".into()))?;
    let password = form_pairs(Some(form))
        .into_iter()
        .find(|(key, _)| key == "password")
        .map(|(_, value)| value)
        .ok_or_else(|| GatewayError::BadRequest("send password=… (form-encoded)".into()))?;

    if let Some(hash) = grant.link.password_hash.clone() {
        let policy = gateway.config.password_throttle;
        let subjects = [
            format!("link:{}", grant.link.id),
            format!("ip:{}", peer.ip()),
        ];
        if let Some(until) = gateway.meta.password_throttled(&subjects, policy).await? {
            gateway.metrics.password_throttled();
            let seconds = (until - now_nanos()).max(0) / 1_000_000_000 + 1;
            return Err(GatewayError::Throttled(seconds as u64));
        }
        let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|_| GatewayError::Internal)?;
        if !matches {
            gateway.metrics.password_failure();
            gateway.meta.password_failed(&subjects, policy).await?;
            tracing::info!(link = grant.link.id, peer = %peer.ip(), "wrong link password");
            let action = page_url(&gateway, &secret, &[], None);
            let form = page::password_form(&link_name(&grant), &action, Some("Wrong password."));
            return Ok((StatusCode::FORBIDDEN, form).into_response());
        }
    }

    let node = gateway.meta.stat(&grant.caller, grant.link.node).await?;
    let location = if grant.link.role == LinkRole::Viewer && node.kind() == NodeKind::File {
        link::download_url(&gateway, &grant, &[link_name(&grant)])
    } else {
        let signed = gateway.signer.grant(grant.link.id, link::expiry(&gateway));
        page_url(&gateway, &secret, &[], Some(&signed))
    };
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location)],
        page::message("Opening", "Opening the link…"),
    )
        .into_response())
}
