//! Encoding chunks for storage and transfer: zstd (level 3) when it saves at
//! least 5 %, the plaintext otherwise, with a flag saying which.
//!
//! Decoding is written for a server that takes chunks from untrusted clients: it
//! never produces, nor allocates room for, more than the announced length.

use std::cell::RefCell;

use zstd::bulk::{Compressor, Decompressor};

use super::{ChunkId, ContentError, MAX_CHUNK};

/// zstd level: fast enough to keep up with the network and the chunker, and most
/// of the ratio of the slower levels on typical documents and code.
const LEVEL: i32 = 3;

/// Compression is skipped for chunks whose sample saves less than 5 %.
///
/// Much of what a cloud drive holds (photos, video, archives, encrypted files)
/// is already compressed. zstd gives up on such data quickly, but a full level 3
/// pass still runs at only ~3 GB/s, which would cost about a fifth of the upload
/// pipeline's time per core (see `benches/pipeline.rs`) for nothing. So a chunk
/// larger than twice the sample is first judged by compressing `SAMPLE_LEN`
/// bytes gathered from `SAMPLE_PIECES` places spread over it (a sixteenth of a
/// 1 MiB chunk). Spreading the sample catches a chunk that is compressible in
/// only part of its length. The price is that a chunk whose sample misleads is
/// stored raw: that costs some space, never correctness.
const SAMPLE_LEN: usize = 64 * 1024;
const SAMPLE_PIECES: usize = 8;

thread_local! {
    // zstd contexts are costly to set up (level 3 allocates and clears about
    // 1 MiB of tables), so each thread keeps one of each. `None` if creating one
    // failed; compression then just does not happen, and decoding fails.
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> =
        RefCell::new(Compressor::new(LEVEL).ok());
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> =
        RefCell::new(Decompressor::new().ok());
}

/// A chunk as stored and sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// A zstd frame if `compressed`, else the plaintext itself.
    pub data: Vec<u8>,
    /// Whether `data` is zstd-compressed.
    pub compressed: bool,
}

/// The largest compressed size worth keeping for `len` plaintext bytes.
fn keep_limit(len: usize) -> usize {
    len * 95 / 100
}

/// Encodes a chunk's plaintext: zstd level 3 if that saves at least 5 %, raw
/// otherwise. Incompressible-looking chunks are judged on a sample only (see
/// `SAMPLE_LEN`).
pub fn encode(plain: &[u8]) -> Encoded {
    match compress(plain) {
        Some(data) => Encoded {
            data,
            compressed: true,
        },
        None => Encoded {
            data: plain.to_vec(),
            compressed: false,
        },
    }
}

/// Like [`encode`], but takes the plaintext by value, so that a chunk stored
/// raw is not copied.
pub fn encode_owned(plain: Vec<u8>) -> Encoded {
    match compress(&plain) {
        Some(data) => Encoded {
            data,
            compressed: true,
        },
        None => Encoded {
            data: plain,
            compressed: false,
        },
    }
}

/// The compressed form of `plain` if it is worth keeping.
fn compress(plain: &[u8]) -> Option<Vec<u8>> {
    let limit = keep_limit(plain.len());
    if limit == 0 {
        return None;
    }
    // `try_with`: during thread teardown the context may be gone; then the
    // chunk is simply stored raw.
    COMPRESSOR
        .try_with(|cell| {
            let mut cell = cell.borrow_mut();
            let compressor = cell.as_mut()?;
            if plain.len() > 2 * SAMPLE_LEN && !sample_compresses(compressor, plain) {
                return None;
            }
            // Room for exactly what we would keep: zstd stops with "destination
            // too small" as soon as its output outgrows that, so a poor result
            // is neither finished nor copied.
            let mut out = Vec::with_capacity(limit);
            match compressor.compress_to_buffer(plain, &mut out) {
                Ok(n) if n <= limit => Some(out),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

/// Whether a sample spread over `plain` (longer than `SAMPLE_LEN`) saves 5 %.
fn sample_compresses(compressor: &mut Compressor<'static>, plain: &[u8]) -> bool {
    let piece = SAMPLE_LEN / SAMPLE_PIECES;
    let stride = (plain.len() - piece) / (SAMPLE_PIECES - 1);
    let mut sample = Vec::with_capacity(SAMPLE_LEN);
    for i in 0..SAMPLE_PIECES {
        let start = i * stride;
        sample.extend_from_slice(&plain[start..start + piece]);
    }
    let mut out = Vec::with_capacity(keep_limit(sample.len()));
    compressor.compress_to_buffer(&sample, &mut out).is_ok()
}

/// Decodes a chunk that should hold `expected_len` plaintext bytes.
///
/// Safe on hostile input: fails with [`ContentError::Oversized`] if
/// `expected_len` exceeds [`MAX_CHUNK`], and with [`ContentError::Corrupt`] if
/// the data is not exactly `expected_len` bytes once decoded; it never inflates
/// past `expected_len`, so a small frame cannot expand into gigabytes.
pub fn decode(data: &[u8], compressed: bool, expected_len: usize) -> Result<Vec<u8>, ContentError> {
    if expected_len > MAX_CHUNK {
        return Err(ContentError::Oversized(expected_len));
    }
    if !compressed {
        if data.len() != expected_len {
            return Err(ContentError::Corrupt(format!(
                "raw chunk is {} bytes, expected {expected_len}",
                data.len()
            )));
        }
        return Ok(data.to_vec());
    }
    // zstd decompresses single-shot into this buffer's capacity and stops with
    // an error when it is full, so the allocation below bounds the work.
    let mut out = Vec::with_capacity(expected_len);
    // Not the data's fault: zstd could not allocate its context.
    let unavailable = || ContentError::Io(std::io::Error::other("no zstd decompressor available"));
    let written = DECOMPRESSOR
        .try_with(|cell| {
            let mut cell = cell.borrow_mut();
            let decompressor = cell.as_mut().ok_or_else(unavailable)?;
            decompressor
                .decompress_to_buffer(data, &mut out)
                .map_err(|e| ContentError::Corrupt(format!("zstd: {e}")))
        })
        .map_err(|_| unavailable())??;
    if written != expected_len || out.len() != expected_len {
        return Err(ContentError::Corrupt(format!(
            "chunk decompresses to {written} bytes, expected {expected_len}"
        )));
    }
    Ok(out)
}

/// Checks that `plain` hashes to `id`.
pub fn verify(id: &ChunkId, plain: &[u8]) -> Result<(), ContentError> {
    let actual = ChunkId::of(plain);
    if actual == *id {
        Ok(())
    } else {
        Err(ContentError::HashMismatch {
            expected: *id,
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::chunker::tests::random_bytes;
    use super::*;

    /// Text-like bytes: words from a small vocabulary, spaces and newlines.
    fn text(len: usize) -> Vec<u8> {
        const WORDS: [&str; 12] = [
            "loft", "chunk", "manifest", "the", "of", "file", "server", "a", "drive", "version",
            "cloud", "and",
        ];
        let noise = random_bytes(99, len);
        let mut out = Vec::with_capacity(len + 16);
        let mut i = 0;
        while out.len() < len {
            let r = noise[i % noise.len()] as usize;
            out.extend_from_slice(WORDS[r % WORDS.len()].as_bytes());
            out.push(if r.is_multiple_of(9) { b'\n' } else { b' ' });
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn round_trip(plain: &[u8]) -> Encoded {
        let encoded = encode(plain);
        assert_eq!(encode_owned(plain.to_vec()), encoded);
        let decoded = decode(&encoded.data, encoded.compressed, plain.len()).unwrap();
        assert_eq!(decoded, plain);
        if encoded.compressed {
            assert!(encoded.data.len() <= plain.len() * 95 / 100);
        } else {
            assert_eq!(encoded.data, plain);
        }
        encoded
    }

    #[test]
    fn compressible_data_is_compressed() {
        for len in [100, 100_000, 1024 * 1024, MAX_CHUNK] {
            let plain = text(len);
            let encoded = round_trip(&plain);
            assert!(encoded.compressed, "{len} bytes of text stored raw");
            if len >= 100_000 {
                assert!(encoded.data.len() < plain.len() / 2);
            }
        }
    }

    #[test]
    fn random_data_is_stored_raw() {
        for len in [100, 100_000, 1024 * 1024, MAX_CHUNK] {
            let plain = random_bytes(len as u64, len);
            assert!(!round_trip(&plain).compressed);
        }
    }

    #[test]
    fn empty_and_tiny_chunks_round_trip() {
        assert!(!round_trip(&[]).compressed);
        assert!(!round_trip(b"x").compressed);
        assert!(round_trip(&[b'a'; 200]).compressed);
    }

    #[test]
    fn partly_compressible_chunk_is_compressed() {
        // A quarter of zeros at the end: the whole chunk saves ~25 %, and the
        // spread sample must notice although its start is random.
        let mut plain = random_bytes(7, 1024 * 1024);
        plain[768 * 1024..].fill(0);
        assert!(round_trip(&plain).compressed);
    }

    #[test]
    fn small_savings_are_not_kept() {
        // About 2 % of zeros: compressible, but not by 5 %. Both with and
        // without sampling.
        for len in [100_000, 1024 * 1024] {
            let mut plain = random_bytes(8, len);
            let zeros = len / 50;
            plain[len / 2..len / 2 + zeros].fill(0);
            assert!(!round_trip(&plain).compressed, "{len}");
        }
    }

    #[test]
    fn decode_rejects_garbage() {
        let garbage = random_bytes(9, 10_000);
        assert!(matches!(
            decode(&garbage, true, 10_000),
            Err(ContentError::Corrupt(_))
        ));
        assert!(matches!(
            decode(&[], true, 1),
            Err(ContentError::Corrupt(_))
        ));
        // A valid frame with its tail cut off.
        let encoded = encode(&text(100_000));
        let truncated = &encoded.data[..encoded.data.len() - 10];
        assert!(matches!(
            decode(truncated, true, 100_000),
            Err(ContentError::Corrupt(_))
        ));
    }

    #[test]
    fn decode_rejects_wrong_length() {
        let plain = text(100_000);
        let encoded = encode(&plain);
        assert!(encoded.compressed);
        for wrong in [0, 99_999, 100_001, MAX_CHUNK] {
            assert!(matches!(
                decode(&encoded.data, true, wrong),
                Err(ContentError::Corrupt(_))
            ));
        }
        let raw = random_bytes(10, 1000);
        for wrong in [0, 999, 1001] {
            assert!(matches!(
                decode(&raw, false, wrong),
                Err(ContentError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn decode_rejects_oversize() {
        assert!(matches!(
            decode(&[], false, MAX_CHUNK + 1),
            Err(ContentError::Oversized(n)) if n == MAX_CHUNK + 1
        ));
        assert!(matches!(
            decode(&[0; 16], true, usize::MAX),
            Err(ContentError::Oversized(_))
        ));
        // A bomb: 64 MiB of zeros squeezes into a few KiB, but cannot get past
        // the announced (or the maximum) length.
        let bomb = zstd::bulk::compress(&vec![0u8; 64 * 1024 * 1024], 19).unwrap();
        assert!(bomb.len() < 64 * 1024);
        for claimed in [1000, MAX_CHUNK] {
            assert!(matches!(
                decode(&bomb, true, claimed),
                Err(ContentError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn verify_detects_mismatch() {
        let plain = text(5000);
        let id = ChunkId::of(&plain);
        verify(&id, &plain).unwrap();
        let mut tampered = plain.clone();
        tampered[42] ^= 1;
        match verify(&id, &tampered) {
            Err(ContentError::HashMismatch { expected, actual }) => {
                assert_eq!(expected, id);
                assert_eq!(actual, ChunkId::of(&tampered));
            }
            other => panic!("expected a hash mismatch, got {other:?}"),
        }
    }
}
