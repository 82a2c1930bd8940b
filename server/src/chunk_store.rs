//! Chunk bytes on an `object_store` backend: a local directory for the embedded server.
//!
//! Objects are content-addressed (`chunks/ab/<hex id>`), so writing one twice writes the
//! same bytes and needs no conditional PUT. Each object is one format byte (0: raw,
//! 1: zstd) followed by the encoded chunk, so the store describes itself.
//!
//! `object_store`'s local backend writes a temporary file and renames it into place but
//! never fsyncs, so the local store syncs the file and its directory itself before a put
//! returns: a chunk is durable before any version that references it commits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use loft_remote::content::ChunkId;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Result, ServerError};

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// A chunk as stored: its encoding and the encoded bytes.
#[derive(Clone, Debug)]
pub struct StoredChunk {
    pub compressed: bool,
    pub data: Bytes,
}

/// Where chunk bytes live.
#[derive(Clone)]
pub struct ChunkStore {
    store: Arc<dyn ObjectStore>,
    /// Set for the local backend, which must be fsync'd by hand.
    local_root: Option<PathBuf>,
}

fn key(id: &ChunkId) -> ObjectPath {
    let hex = id.to_hex();
    ObjectPath::from(format!("chunks/{}/{}", &hex[..2], hex))
}

impl ChunkStore {
    /// A store in a local directory (created if missing).
    pub fn local(dir: &Path) -> Result<Self> {
        let chunks = dir.join("chunks");
        // The 256 fan-out directories exist up front, so a put only syncs its own one.
        for byte in 0..=255u8 {
            std::fs::create_dir_all(chunks.join(format!("{byte:02x}")))?;
        }
        sync_dir(&chunks)?;
        sync_dir(dir)?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(ServerError::from)?;
        Ok(ChunkStore {
            store: Arc::new(store),
            local_root: Some(dir.to_path_buf()),
        })
    }

    /// A store on any `object_store` backend that is durable when a put returns (S3).
    pub fn remote(store: Arc<dyn ObjectStore>) -> Self {
        ChunkStore {
            store,
            local_root: None,
        }
    }

    /// Stores an encoded chunk durably.
    pub async fn put(&self, id: &ChunkId, compressed: bool, data: &[u8]) -> Result<()> {
        let mut object = Vec::with_capacity(data.len() + 1);
        object.push(if compressed { ZSTD } else { RAW });
        object.extend_from_slice(data);
        let key = key(id);
        self.store.put(&key, PutPayload::from(object)).await?;
        if let Some(root) = &self.local_root {
            let path = root.join(key.as_ref());
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::fs::File::open(&path)?.sync_all()?;
                match path.parent() {
                    Some(dir) => sync_dir(dir),
                    None => Ok(()),
                }
            })
            .await
            .map_err(|e| ServerError::internal(format!("fsync task: {e}")))??;
        }
        Ok(())
    }

    /// Reads a stored chunk.
    pub async fn get(&self, id: &ChunkId) -> Result<StoredChunk> {
        let bytes = self.store.get(&key(id)).await?.bytes().await?;
        match bytes.first() {
            Some(&RAW) => Ok(StoredChunk {
                compressed: false,
                data: bytes.slice(1..),
            }),
            Some(&ZSTD) => Ok(StoredChunk {
                compressed: true,
                data: bytes.slice(1..),
            }),
            _ => Err(ServerError::internal(format!(
                "stored chunk {id} has an unknown format"
            ))),
        }
    }

    /// Whether the store holds the chunk.
    pub async fn contains(&self, id: &ChunkId) -> Result<bool> {
        match self.store.head(&key(id)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(other) => Err(other.into()),
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
