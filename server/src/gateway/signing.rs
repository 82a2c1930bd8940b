//! Expiring signed URLs: HMAC-SHA256 with the server secret (kept in the metadata
//! store, so every server process verifies what another signed).
//!
//! A download signature covers the link id, the path inside the link and the expiry; a
//! grant (what a correct password earns for browsing a folder or uploading) covers the
//! link id and the expiry. Each message starts with its purpose, so one never passes
//! for the other.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::meta::Nanos;

type HmacSha256 = Hmac<Sha256>;

/// Name of the signing key in the store's `server_secrets`.
pub const KEY_NAME: &str = "gateway-url-signing";

/// Signs and checks URLs with the server secret.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

fn message(purpose: &str, link: u64, path: &[u8], expires: i64) -> Vec<u8> {
    let mut message = Vec::with_capacity(purpose.len() + path.len() + 32);
    message.extend_from_slice(purpose.as_bytes());
    message.push(0);
    message.extend_from_slice(&link.to_be_bytes());
    message.extend_from_slice(&expires.to_be_bytes());
    message.extend_from_slice(path);
    message
}

impl Signer {
    pub fn new(key: Vec<u8>) -> Signer {
        Signer { key }
    }

    fn mac(&self, message: &[u8]) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(message);
        mac
    }

    fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.mac(message).finalize().into_bytes())
    }

    /// True if `signature` (hex) is right for `message` (compared in constant time).
    fn verify(&self, message: &[u8], signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(bytes) => self.mac(message).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    /// Signature of a download of `path` (inside link `link`) valid until `expires`
    /// (Unix seconds).
    pub fn sign_download(&self, link: u64, path: &[u8], expires: i64) -> String {
        self.sign(&message("download", link, path, expires))
    }

    /// Checks a download signature and that it has not expired at `now`.
    pub fn check_download(
        &self,
        link: u64,
        path: &[u8],
        expires: i64,
        signature: &str,
        now: Nanos,
    ) -> bool {
        now / 1_000_000_000 < expires
            && self.verify(&message("download", link, path, expires), signature)
    }

    /// A grant for link `link` until `expires` (Unix seconds), as `EXPIRES.SIGNATURE`.
    pub fn grant(&self, link: u64, expires: i64) -> String {
        format!(
            "{expires}.{}",
            self.sign(&message("grant", link, b"", expires))
        )
    }

    /// Checks a grant made by [`Signer::grant`].
    pub fn check_grant(&self, link: u64, grant: &str, now: Nanos) -> bool {
        let Some((expires, signature)) = grant.split_once('.') else {
            return false;
        };
        let Ok(expires) = expires.parse::<i64>() else {
            return false;
        };
        now / 1_000_000_000 < expires
            && self.verify(&message("grant", link, b"", expires), signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Nanos = 1_000 * 1_000_000_000;

    #[test]
    fn downloads_verify_until_they_expire() {
        let signer = Signer::new(vec![7; 32]);
        let signature = signer.sign_download(3, b"a/b.txt", 1_060);
        assert!(signer.check_download(3, b"a/b.txt", 1_060, &signature, NOW));
        assert!(!signer.check_download(3, b"a/b.txt", 1_060, &signature, 1_060 * 1_000_000_000));
        assert!(!signer.check_download(4, b"a/b.txt", 1_060, &signature, NOW));
        assert!(!signer.check_download(3, b"a/c.txt", 1_060, &signature, NOW));
        assert!(!signer.check_download(3, b"a/b.txt", 1_061, &signature, NOW));
        assert!(!signer.check_download(3, b"a/b.txt", 1_060, "zz", NOW));
        let other = Signer::new(vec![8; 32]);
        assert!(!other.check_download(3, b"a/b.txt", 1_060, &signature, NOW));
    }

    #[test]
    fn grants_are_not_downloads() {
        let signer = Signer::new(vec![7; 32]);
        let grant = signer.grant(3, 1_060);
        assert!(signer.check_grant(3, &grant, NOW));
        assert!(!signer.check_grant(4, &grant, NOW));
        assert!(!signer.check_grant(3, "1060", NOW));
        let (expires, signature) = grant.split_once('.').unwrap();
        assert!(!signer.check_download(3, b"", expires.parse().unwrap(), signature, NOW));
    }
}
