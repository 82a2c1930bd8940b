//! Helpers shared by the chunk cache's integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::Path;

use loft_cache::chunks::{CacheConfig, ChunkCache};
use loft_remote::content::ChunkId;

/// A config with `budget` and no disk reserve, so tests do not depend on free space.
pub fn config(budget: u64) -> CacheConfig {
    CacheConfig {
        budget,
        disk_reserve: 0,
    }
}

/// Opens a cache in `dir` with `budget` and no disk reserve.
pub fn open(dir: &Path, budget: u64) -> ChunkCache {
    ChunkCache::open(dir, config(budget)).expect("open cache")
}

/// `len` deterministic bytes derived from `seed` (distinct seeds give distinct chunks).
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(&seed.to_le_bytes());
    while out.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A chunk: its id and bytes.
pub fn chunk(seed: u64, len: usize) -> (ChunkId, Vec<u8>) {
    let data = bytes(seed, len);
    (ChunkId::of(&data), data)
}

/// Where the cache keeps chunk `id` (the layout is documented: `DIR/ab/<hex>`).
pub fn file_of(dir: &Path, id: &ChunkId) -> std::path::PathBuf {
    let hex = id.to_hex();
    dir.join(&hex[..2]).join(hex)
}

/// Every file in the fan-out directories and `tmp/`, as paths relative to `dir`.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_dir() {
            continue;
        }
        let sub = entry.file_name().to_string_lossy().into_owned();
        for file in fs::read_dir(entry.path()).unwrap() {
            out.push(format!(
                "{sub}/{}",
                file.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

/// Sum of the sizes of the chunk files on disk.
pub fn bytes_on_disk(dir: &Path) -> u64 {
    files_in(dir)
        .iter()
        .filter(|f| !f.starts_with("tmp/"))
        .map(|f| fs::metadata(dir.join(f)).unwrap().len())
        .sum()
}
