//! Loft's content format: how a file's bytes become chunks, chunk ids, encoded
//! blobs and a manifest.
//!
//! - Chunks are cut by content (FastCDC 2020, 256 KiB / 1 MiB / 4 MiB), so an edit
//!   only changes the chunks around it and unchanged chunks deduplicate.
//! - A chunk's id is the BLAKE3 of its plaintext: the server can check what it
//!   stores, and identical chunks share one id whoever uploads them.
//! - A chunk travels and rests zstd-compressed only when that pays (see [`encode`]).
//! - A file version is a [`Manifest`]: the chunk list, the size and the whole-file
//!   BLAKE3.

mod chunk_id;
mod chunker;
mod codec;
mod manifest;

pub use chunk_id::ChunkId;
pub use chunker::{Chunk, ChunkHasher, Chunker, Cut, Cutter, FileDigest, chunk_boundaries};
pub use codec::{Encoded, decode, encode, encode_owned, verify};
pub use manifest::{ChunkIndex, ChunkRef, Covering, Manifest, ManifestBuilder};

/// Smallest chunk the chunker cuts (only a file's last chunk may be shorter).
pub const MIN_CHUNK: usize = 256 * 1024;
/// Average chunk size the chunker aims for.
pub const AVG_CHUNK: usize = 1024 * 1024;
/// Largest chunk there can be; also the most [`decode`] will ever inflate.
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// What can go wrong reading, checking or decoding content.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A chunk id or content hash was not 32 bytes long.
    #[error("a chunk id is 32 bytes, got {0}")]
    BadIdLength(usize),
    /// A chunk id in text was not hexadecimal.
    #[error("a chunk id is 64 hex digits: {0}")]
    BadIdHex(#[from] hex::FromHexError),
    /// The bytes do not hash to the id they were stored or sent under.
    #[error("hash mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// The id the bytes claimed to have.
        expected: ChunkId,
        /// The id they actually hash to.
        actual: ChunkId,
    },
    /// Encoded data that does not decode to the announced plaintext.
    #[error("corrupt chunk data: {0}")]
    Corrupt(String),
    /// A chunk longer than [`MAX_CHUNK`] was announced or supplied.
    #[error("chunk of {0} bytes exceeds the maximum of {MAX_CHUNK} bytes")]
    Oversized(usize),
    /// A manifest that breaks the format's rules.
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// Reading the file being chunked failed.
    #[error("reading content: {0}")]
    Io(#[from] std::io::Error),
}
