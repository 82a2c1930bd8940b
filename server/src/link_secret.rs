//! Link secrets: 256 random bits from the operating system's CSPRNG, independent of any
//! id, shown once in the link's URL and stored only as their SHA-256.

use base64::Engine;
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use crate::error::{Result, ServerError};

/// Longest secret accepted in a URL (longer input is rejected before hashing).
pub const MAX_SECRET_LEN: usize = 64;

/// A fresh secret (URL-safe text) and the hash the store keeps.
pub fn new_secret() -> Result<(String, [u8; 32])> {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| ServerError::internal(format!("random number generator: {e}")))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = secret_hash(&secret);
    Ok((secret, hash))
}

/// What the store keeps for `secret`.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The URL of the link page for `secret` under the gateway's public URL.
pub fn link_url(public_url: &str, secret: &str) -> String {
    format!("{}/l/{secret}", public_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_hashed() {
        let (a, hash_a) = new_secret().unwrap();
        let (b, _) = new_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "256 bits in base64url");
        assert_eq!(secret_hash(&a), hash_a);
        assert_eq!(
            link_url("http://example.invalid:8080/", &a),
            format!("http://example.invalid:8080/l/{a}")
        );
    }
}
