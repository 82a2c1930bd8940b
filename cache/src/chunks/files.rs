//! Where chunk bytes live on disk: `DIR/ab/<64 hex id>`, written under `DIR/tmp/`
//! and renamed into place.
//!
//! This module only moves bytes; it knows nothing of budgets or states. The cache
//! creates and removes files at their final paths only while it holds its lock, so
//! the index and the directory agree whenever the lock is free (see `cache.rs`).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use loft_remote::content::{ChunkId, MAX_CHUNK};

use super::platform::sync_dir;
use crate::error::{CacheError, Result};

/// Directory for files being written.
const TEMP_DIR: &str = "tmp";

/// The chunk files of one cache directory.
#[derive(Debug)]
pub(crate) struct ChunkFiles {
    root: PathBuf,
    temp: PathBuf,
    /// Makes temporary names unique within the process (the directory lock makes
    /// the process unique).
    next_temp: AtomicU64,
}

/// A file under `tmp/`, deleted when dropped unless [`ChunkFiles::install`] moved it.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    installed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.installed
            && let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove temporary chunk file");
        }
    }
}

/// Something found in a fan-out directory (recovery).
#[derive(Debug)]
pub(crate) enum Found {
    /// A file whose name is a chunk id in the right fan-out directory.
    Chunk { id: ChunkId, length: u64 },
    /// Anything else: a file that Loft did not put there under that name.
    Stray(PathBuf),
}

fn fanout_name(byte: u8) -> String {
    format!("{byte:02x}")
}

impl ChunkFiles {
    /// Uses `root` (which must exist), creating `tmp/` and the 256 fan-out
    /// directories up front so that installing a file only has to sync its own.
    pub fn create(root: &Path) -> Result<ChunkFiles> {
        let temp = root.join(TEMP_DIR);
        fs::create_dir_all(&temp).map_err(CacheError::io(&temp))?;
        for byte in 0..=u8::MAX {
            let dir = root.join(fanout_name(byte));
            fs::create_dir_all(&dir).map_err(CacheError::io(&dir))?;
        }
        sync_dir(root).map_err(CacheError::io(root))?;
        Ok(ChunkFiles {
            root: root.to_path_buf(),
            temp,
            next_temp: AtomicU64::new(0),
        })
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn fanout(&self, id: &ChunkId) -> PathBuf {
        self.root.join(fanout_name(id.0[0]))
    }

    /// Final path of chunk `id`.
    pub fn path(&self, id: &ChunkId) -> PathBuf {
        self.fanout(id).join(id.to_hex())
    }

    /// Writes `data` to a new temporary file, synced if `durable`.
    pub fn write_temp(&self, id: &ChunkId, data: &[u8], durable: bool) -> Result<TempFile> {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let path = self.temp.join(format!("{}.{n}", id.to_hex()));
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(CacheError::io(&path))?;
        // From here on, dropping `temp` cleans up.
        let temp = TempFile {
            path,
            installed: false,
        };
        file.write_all(data).map_err(CacheError::io(&temp.path))?;
        if durable {
            file.sync_all().map_err(CacheError::io(&temp.path))?;
        }
        Ok(temp)
    }

    /// Renames `temp` to chunk `id`'s final path (replacing any file there), syncing
    /// the directory if `durable`.
    pub fn install(&self, mut temp: TempFile, id: &ChunkId, durable: bool) -> Result<()> {
        let path = self.path(id);
        fs::rename(&temp.path, &path).map_err(CacheError::io(&path))?;
        temp.installed = true;
        if durable {
            let dir = self.fanout(id);
            sync_dir(&dir).map_err(CacheError::io(&dir))?;
        }
        Ok(())
    }

    /// All of chunk `id`'s bytes (at most `MAX_CHUNK + 1`), or `None` if there is no
    /// file.
    pub fn read(&self, id: &ChunkId) -> Result<Option<Vec<u8>>> {
        let path = self.path(id);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::Io { path, source: e }),
        };
        let mut data = Vec::new();
        // No chunk is longer than MAX_CHUNK: a longer file is damaged, and one byte
        // more is enough for its hash not to match.
        file.take(MAX_CHUNK as u64 + 1)
            .read_to_end(&mut data)
            .map_err(CacheError::io(&path))?;
        Ok(Some(data))
    }

    /// Up to `len` bytes of chunk `id` from `offset` (fewer at the end of the file),
    /// or `None` if there is no file.
    pub fn read_range(&self, id: &ChunkId, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        let path = self.path(id);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::Io { path, source: e }),
        };
        file.seek(SeekFrom::Start(offset))
            .map_err(CacheError::io(&path))?;
        let mut data = Vec::new();
        file.take(len)
            .read_to_end(&mut data)
            .map_err(CacheError::io(&path))?;
        Ok(Some(data))
    }

    /// Length of chunk `id`'s file, or `None` if there is none.
    pub fn length(&self, id: &ChunkId) -> Result<Option<u64>> {
        let path = self.path(id);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::Io { path, source: e }),
        }
    }

    /// Deletes chunk `id`'s file; returns whether there was one.
    pub fn remove(&self, id: &ChunkId) -> Result<bool> {
        remove_file(&self.path(id))
    }

    /// Deletes everything under `tmp/`; returns how many entries went.
    pub fn clear_temp(&self) -> Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.temp).map_err(CacheError::io(&self.temp))? {
            let path = entry.map_err(CacheError::io(&self.temp))?.path();
            let result = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            result.map_err(CacheError::io(&path))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Lists the files of every fan-out directory. Subdirectories there are not
    /// Loft's and are left alone.
    pub fn scan(&self) -> Result<Vec<Found>> {
        let mut found = Vec::new();
        for byte in 0..=u8::MAX {
            let dir = self.root.join(fanout_name(byte));
            for entry in fs::read_dir(&dir).map_err(CacheError::io(&dir))? {
                let entry = entry.map_err(CacheError::io(&dir))?;
                let path = entry.path();
                let meta = entry.metadata().map_err(CacheError::io(&path))?;
                if meta.is_dir() {
                    tracing::warn!(path = %path.display(), "unexpected directory in the chunk cache");
                    continue;
                }
                let id = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| name.parse::<ChunkId>().ok())
                    // Exactly the name `path` would give, in the right directory.
                    .filter(|id| {
                        id.0[0] == byte && Some(id.to_hex().as_str()) == entry.file_name().to_str()
                    });
                found.push(match id {
                    Some(id) => Found::Chunk {
                        id,
                        length: meta.len(),
                    },
                    None => Found::Stray(path),
                });
            }
        }
        Ok(found)
    }
}

/// Deletes a file; returns whether it existed.
pub(crate) fn remove_file(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CacheError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_install_read() {
        let dir = tempfile::tempdir().unwrap();
        let files = ChunkFiles::create(dir.path()).unwrap();
        let data = b"some chunk bytes";
        let id = ChunkId::of(data);
        assert_eq!(files.read(&id).unwrap(), None);
        let temp = files.write_temp(&id, data, true).unwrap();
        files.install(temp, &id, true).unwrap();
        let hex = id.to_hex();
        assert_eq!(files.path(&id), dir.path().join(&hex[..2]).join(&hex));
        assert_eq!(files.read(&id).unwrap().unwrap(), data);
        assert_eq!(files.read_range(&id, 5, 5).unwrap().unwrap(), b"chunk");
        assert_eq!(files.read_range(&id, 11, 100).unwrap().unwrap(), b"bytes");
        assert_eq!(files.read_range(&id, 100, 1).unwrap().unwrap(), b"");
        assert_eq!(files.length(&id).unwrap(), Some(data.len() as u64));
        assert!(files.remove(&id).unwrap());
        assert!(!files.remove(&id).unwrap());
        assert_eq!(files.read_range(&id, 0, 1).unwrap(), None);
    }

    #[test]
    fn dropped_temp_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let files = ChunkFiles::create(dir.path()).unwrap();
        let id = ChunkId::of(b"x");
        drop(files.write_temp(&id, b"x", false).unwrap());
        assert_eq!(fs::read_dir(dir.path().join(TEMP_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn scan_tells_chunks_from_strays() {
        let dir = tempfile::tempdir().unwrap();
        let files = ChunkFiles::create(dir.path()).unwrap();
        let id = ChunkId::of(b"x");
        fs::write(files.path(&id), b"x").unwrap();
        // A valid id in the wrong fan-out directory, an upper-case name, junk.
        let other = ChunkId([id.0[0].wrapping_add(1); 32]);
        fs::write(files.fanout(&other).join(id.to_hex()), b"x").unwrap();
        fs::write(files.fanout(&id).join(id.to_hex().to_uppercase()), b"x").unwrap();
        fs::write(files.fanout(&id).join("junk"), b"x").unwrap();
        fs::create_dir(files.fanout(&id).join("subdir")).unwrap();
        let found = files.scan().unwrap();
        let chunks: Vec<_> = found
            .iter()
            .filter_map(|f| match f {
                Found::Chunk { id, length } => Some((*id, *length)),
                Found::Stray(_) => None,
            })
            .collect();
        assert_eq!(chunks, [(id, 1)]);
        assert_eq!(found.len(), 4);
    }
}
