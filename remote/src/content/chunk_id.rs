//! Chunk ids: the BLAKE3 of a chunk's plaintext.

use std::fmt;
use std::str::FromStr;

use super::ContentError;

/// A chunk's identity: the 32-byte BLAKE3 hash of its plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Length of an id in bytes.
    pub const LEN: usize = 32;

    /// The id of `data` (its BLAKE3 hash).
    pub fn of(data: &[u8]) -> ChunkId {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    /// An id from raw bytes, as found on the wire; they must be exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Result<ChunkId, ContentError> {
        <[u8; 32]>::try_from(bytes)
            .map(ChunkId)
            .map_err(|_| ContentError::BadIdLength(bytes.len()))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    /// Twelve hex digits are plenty to tell ids apart in logs and test output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({}…)", hex::encode(&self.0[..6]))
    }
}

impl FromStr for ChunkId {
    type Err = ContentError;

    /// Parses 64 hex digits (either case).
    fn from_str(s: &str) -> Result<ChunkId, ContentError> {
        if s.len() != 2 * Self::LEN {
            // Report the byte length the text would decode to, like `from_slice`.
            return Err(ContentError::BadIdLength(s.len() / 2));
        }
        let mut id = [0u8; 32];
        hex::decode_to_slice(s, &mut id)?;
        Ok(ChunkId(id))
    }
}

impl AsRef<[u8]> for ChunkId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_is_blake3() {
        let id = ChunkId::of(b"hello");
        assert_eq!(id.as_bytes(), blake3::hash(b"hello").as_bytes());
        // Known BLAKE3 test vector for the empty input.
        assert_eq!(
            ChunkId::of(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn hex_round_trip() {
        let id = ChunkId::of(b"round trip");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text, id.to_hex());
        assert_eq!(text.parse::<ChunkId>().unwrap(), id);
        assert_eq!(text.to_uppercase().parse::<ChunkId>().unwrap(), id);
    }

    #[test]
    fn from_str_rejects_bad_text() {
        assert!(matches!(
            "abcd".parse::<ChunkId>(),
            Err(ContentError::BadIdLength(2))
        ));
        let not_hex = "z".repeat(64);
        assert!(matches!(
            not_hex.parse::<ChunkId>(),
            Err(ContentError::BadIdHex(_))
        ));
        // 64 bytes of text but not 64 characters: must not panic.
        let multibyte = "é".repeat(32);
        assert!(multibyte.parse::<ChunkId>().is_err());
    }

    #[test]
    fn from_slice_checks_length() {
        let id = ChunkId::of(b"x");
        assert_eq!(ChunkId::from_slice(id.as_bytes()).unwrap(), id);
        assert!(matches!(
            ChunkId::from_slice(&[0u8; 31]),
            Err(ContentError::BadIdLength(31))
        ));
        assert!(matches!(
            ChunkId::from_slice(&[0u8; 33]),
            Err(ContentError::BadIdLength(33))
        ));
        assert!(matches!(
            ChunkId::from_slice(&[]),
            Err(ContentError::BadIdLength(0))
        ));
    }

    #[test]
    fn debug_abbreviates() {
        let id = ChunkId([0xab; 32]);
        assert_eq!(format!("{id:?}"), "ChunkId(abababababab…)");
    }

    #[test]
    fn ordering_follows_bytes() {
        assert!(ChunkId([0; 32]) < ChunkId([1; 32]));
    }
}
