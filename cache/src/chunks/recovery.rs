//! Startup repair: makes the index and the chunk files agree again after a crash, a
//! power cut or a hand in the directory.

use std::collections::HashSet;

use loft_remote::content::{ChunkId, MAX_CHUNK};

use super::ChunkState;
use super::files::{ChunkFiles, Found, remove_file};
use super::index::Index;
use crate::error::Result;

/// What [`ChunkCache::open`](super::ChunkCache::open) repaired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Files under `tmp/` deleted (writes interrupted).
    pub temp_removed: usize,
    /// Index rows dropped because their file was missing or had the wrong length.
    pub rows_dropped: usize,
    /// Of those, dirty ones: local writes that are lost.
    pub dirty_lost: usize,
    /// Files without a row whose bytes match their name, indexed as clean.
    pub reindexed: usize,
    /// Files without a row that are not (or no longer) a valid chunk, deleted.
    pub strays_removed: usize,
}

impl RecoveryReport {
    /// Whether anything had to be repaired.
    pub fn changed_anything(&self) -> bool {
        *self != RecoveryReport::default()
    }
}

/// Repairs `index` and `files`. Checking the hash of every indexed file would make
/// every start read the whole cache, so indexed files are checked by length here and
/// by hash when read; only files without a row are hashed.
pub(crate) fn recover(index: &mut Index, files: &ChunkFiles) -> Result<RecoveryReport> {
    let mut report = RecoveryReport {
        temp_removed: files.clear_temp()?,
        ..RecoveryReport::default()
    };

    let mut indexed = HashSet::new();
    let mut dropped = Vec::new();
    for (id, row) in index.rows()? {
        match files.length(&id)? {
            Some(length) if length == row.length => {
                indexed.insert(id);
            }
            found => {
                if found.is_some() {
                    files.remove(&id)?;
                }
                if row.state == ChunkState::Dirty {
                    report.dirty_lost += 1;
                    tracing::error!(chunk = %id, file_length = ?found, expected = row.length,
                        "dirty chunk lost: its file is missing or damaged");
                } else {
                    tracing::warn!(chunk = %id, file_length = ?found, expected = row.length,
                        "dropping cached chunk whose file is missing or damaged");
                }
                dropped.push(id);
            }
        }
    }
    index.delete(&dropped)?;
    report.rows_dropped = dropped.len();

    let mut reindex = Vec::new();
    for found in files.scan()? {
        match found {
            Found::Chunk { id, .. } if indexed.contains(&id) => {}
            Found::Chunk { id, length } => {
                if length <= MAX_CHUNK as u64 && hashes_to(files, &id)? {
                    reindex.push((id, length));
                } else {
                    tracing::warn!(chunk = %id, "deleting unindexed chunk file that does not match its name");
                    files.remove(&id)?;
                    report.strays_removed += 1;
                }
            }
            Found::Stray(path) => {
                tracing::warn!(path = %path.display(), "deleting stray file in the chunk cache");
                remove_file(&path)?;
                report.strays_removed += 1;
            }
        }
    }
    // A file without a row comes from an insert that never returned (or a relaxed
    // commit lost in a power cut), so nobody was promised it: clean is right.
    index.insert_found(&reindex)?;
    report.reindexed = reindex.len();

    if report.changed_anything() {
        tracing::info!(?report, "chunk cache repaired");
    }
    Ok(report)
}

fn hashes_to(files: &ChunkFiles, id: &ChunkId) -> Result<bool> {
    Ok(files
        .read(id)?
        .is_some_and(|data| ChunkId::of(&data) == *id))
}
