//! Finding a link from the secret in its URL, paths inside a link, and the URLs the
//! gateway hands out (pages, signed downloads, grants).

use loft_remote::proto::{self, NodeKind};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::{Gateway, GatewayError};
use crate::link_secret::{MAX_SECRET_LEN, secret_hash};
use crate::meta::{LinkGrant, now_nanos};

/// Characters kept as they are in a URL path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one name (any bytes) as a path segment.
pub fn encode_segment(name: &[u8]) -> String {
    percent_encoding::percent_encode(name, SEGMENT).to_string()
}

/// Percent-encodes a query value.
pub fn encode_query(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// The decoded segments of `path` after its first `skip` segments (`/l/SECRET/a/b` with
/// `skip` 2 → `[a, b]`). Empty segments (a trailing slash) are dropped.
pub fn segments_after(path: &str, skip: usize) -> Vec<Vec<u8>> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .skip(skip)
        .map(|segment| percent_decode_str(segment).collect())
        .collect()
}

/// The live link behind `secret`, or `NotFound`.
pub async fn open(gateway: &Gateway, secret: &str) -> Result<LinkGrant, GatewayError> {
    if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
        return Err(GatewayError::NotFound);
    }
    gateway
        .meta
        .link_by_secret(secret_hash(secret))
        .await?
        .ok_or(GatewayError::NotFound)
}

/// The node at `segments` below the linked node, as the link's creator sees it.
pub async fn resolve(
    gateway: &Gateway,
    grant: &LinkGrant,
    segments: &[Vec<u8>],
) -> Result<proto::Node, GatewayError> {
    let mut node = gateway.meta.stat(&grant.caller, grant.link.node).await?;
    for name in segments {
        if node.kind() != NodeKind::Directory {
            return Err(GatewayError::NotFound);
        }
        node = gateway.meta.lookup(&grant.caller, node.id, name).await?;
    }
    Ok(node)
}

/// The name the linked item had when it was linked.
pub fn link_name(grant: &LinkGrant) -> Vec<u8> {
    grant
        .link
        .path
        .rsplit(|&b| b == b'/')
        .find(|part| !part.is_empty())
        .map_or_else(|| b"Drive".to_vec(), <[u8]>::to_vec)
}

/// Seconds since the Unix epoch when something made now stops being valid.
pub fn expiry(gateway: &Gateway) -> i64 {
    now_nanos() / 1_000_000_000 + gateway.config.signed_url_ttl.as_secs() as i64
}

/// A signed download URL (path only) for `segments` inside the link.
pub fn download_url(gateway: &Gateway, grant: &LinkGrant, segments: &[Vec<u8>]) -> String {
    let expires = expiry(gateway);
    let joined = segments.join(&b'/');
    let signature = gateway
        .signer
        .sign_download(grant.link.id, &joined, expires);
    let path: Vec<String> = segments.iter().map(|s| encode_segment(s)).collect();
    format!(
        "{}/d/{}/{}?exp={expires}&sig={signature}",
        gateway.base_path,
        grant.link.id,
        path.join("/")
    )
}

/// The page URL of `segments` inside the link, carrying `grant` when there is one.
pub fn page_url(
    gateway: &Gateway,
    secret: &str,
    segments: &[Vec<u8>],
    grant: Option<&str>,
) -> String {
    let mut url = format!("{}/l/{secret}", gateway.base_path);
    for segment in segments {
        url.push('/');
        url.push_str(&encode_segment(segment));
    }
    if let Some(grant) = grant {
        url.push_str("?grant=");
        url.push_str(&encode_query(grant));
    }
    url
}

/// The secret of a `/KIND/SECRET[/PATH…]` path and the decoded segments after it;
/// `NotFound` without one.
pub fn secret_and_path(path: &str) -> Result<(String, Vec<Vec<u8>>), GatewayError> {
    let mut parts = segments_after(path, 1).into_iter();
    let secret = parts.next().ok_or(GatewayError::NotFound)?;
    Ok((
        String::from_utf8_lossy(&secret).into_owned(),
        parts.collect(),
    ))
}

/// What a request may do with a link's password.
pub enum Access {
    /// The link has no password.
    Open,
    /// The request carries a valid grant (given for the right password).
    Granted(String),
    /// The link has a password and the request no valid grant.
    NeedsPassword,
}

/// Whether the request whose query is `query` may use `grant`'s link.
pub fn access(gateway: &Gateway, grant: &LinkGrant, query: Option<&str>) -> Access {
    if grant.link.password_hash.is_none() {
        return Access::Open;
    }
    match grant_param(query) {
        Some(offered)
            if gateway
                .signer
                .check_grant(grant.link.id, &offered, now_nanos()) =>
        {
            Access::Granted(offered)
        }
        _ => Access::NeedsPassword,
    }
}

/// The `grant` query parameter, if any.
pub fn grant_param(query: Option<&str>) -> Option<String> {
    form_pairs(query)
        .into_iter()
        .find(|(key, _)| key == "grant")
        .map(|(_, value)| value)
}

/// The pairs of a query string.
pub fn form_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                percent_decode_str(&text.replace('+', " "))
                    .decode_utf8()
                    .ok()
                    .map(|t| t.into_owned())
            };
            Some((decode(key)?, decode(value)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_any_bytes() {
        let name = b"a b/%\xff.txt".to_vec();
        let encoded = encode_segment(&name);
        assert!(!encoded.contains('/'));
        let path = format!("/d/7/dir/{encoded}");
        assert_eq!(segments_after(&path, 2), vec![b"dir".to_vec(), name]);
    }

    #[test]
    fn queries_parse() {
        assert_eq!(
            grant_param(Some("x=1&grant=12.ab%2Bc")),
            Some("12.ab+c".to_string())
        );
        assert_eq!(grant_param(None), None);
        assert_eq!(
            form_pairs(Some("password=a+b%21")),
            vec![("password".to_string(), "a b!".to_string())]
        );
    }
}
