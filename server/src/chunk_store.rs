//! Chunk bytes on an `object_store` backend: a local directory for the embedded server,
//! an S3-compatible bucket (under a key prefix) for scale-out.
//!
//! Objects are content-addressed (`chunks/ab/<hex id>`), so writing one twice writes the
//! same bytes and needs no conditional PUT. Each object is one format byte (0: raw,
//! 1: zstd) followed by the encoded chunk, so the store describes itself.
//!
//! `object_store`'s local backend writes a temporary file and renames it into place but
//! never fsyncs, so the local store syncs the file and its directory itself before a put
//! returns: a chunk is durable before any version that references it commits. An S3 PUT
//! is durable when it is acknowledged; Loft never relies on conditional PUTs, which
//! several S3-compatible stores ignore.

use futures::future::BoxFuture;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use loft_remote::content::ChunkId;
use loft_remote::errors::ErrorKind;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tokio::runtime::Handle;

use crate::error::{Result, ServerError};

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// A chunk as stored: its encoding and the encoded bytes.
#[derive(Clone, Debug)]
pub struct StoredChunk {
    pub compressed: bool,
    pub data: Bytes,
}

/// How to reach an S3-compatible store; filled from flags or the `AWS_*` variables by
/// the binary.
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub region: Option<String>,
    /// e.g. `http://127.0.0.1:9000`; unset means AWS itself.
    pub endpoint: Option<String>,
    /// Allow plain-HTTP endpoints (local test servers).
    pub allow_http: bool,
    /// Address buckets as `endpoint/bucket` (most self-hosted stores) rather than
    /// `bucket.endpoint`.
    pub path_style: bool,
}

/// A stored chunk object, as a listing of the store sees it.
#[derive(Clone, Copy, Debug)]
pub struct ListedChunk {
    pub id: ChunkId,
    /// Milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

/// What a listing of the store finds: chunk objects, and the temporary files of
/// writes a crash interrupted (a local store's; nothing else names them).
#[derive(Debug, Default)]
pub struct Listing {
    pub chunks: Vec<ListedChunk>,
    pub leftovers: Vec<Leftover>,
}

/// The temporary file of an interrupted chunk write.
#[derive(Clone, Debug)]
pub struct Leftover {
    /// Its object path in the store.
    pub path: String,
    /// Milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

/// How the temporary file of a chunk write ends (`write_durably`).
const LEFTOVER_SUFFIX: &str = ".partial";

/// Where chunk bytes live.
#[derive(Clone)]
pub struct ChunkStore {
    store: Arc<dyn ObjectStore>,
    /// Set for the local backend, which must be fsync'd by hand.
    local_root: Option<PathBuf>,
}

/// A stored object's bytes as a chunk: a format byte, then the chunk.
fn stored(id: &ChunkId, bytes: Bytes) -> Result<StoredChunk> {
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

    /// A store in `bucket` under `prefix` on an S3-compatible server. Fails with a clear
    /// error when the bucket cannot be listed (wrong name, endpoint or credentials).
    pub fn s3<'a>(
        bucket: &'a str,
        prefix: &'a str,
        settings: &'a S3Settings,
    ) -> BoxFuture<'a, Result<Self>> {
        Box::pin(async move {
            // The dependency graph enables two rustls crypto backends (ring for tonic,
            // aws-lc-rs for the S3 client), so rustls cannot pick one itself. Installing
            // fails harmlessly when a provider is already installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(settings.region.as_deref().unwrap_or("us-east-1"))
                .with_virtual_hosted_style_request(!settings.path_style)
                .with_retry(RetryConfig {
                    max_retries: 4,
                    retry_timeout: Duration::from_secs(30),
                    ..RetryConfig::default()
                })
                .with_client_options(
                    ClientOptions::new()
                        .with_connect_timeout(Duration::from_secs(5))
                        .with_timeout(Duration::from_secs(120)),
                )
                // After the client options, which would otherwise reset it.
                .with_allow_http(settings.allow_http);
            if let Some(endpoint) = &settings.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(key) = &settings.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &settings.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            let store = builder
                .build()
                .map_err(|e| ServerError::invalid(format!("S3 settings: {e}")))?;
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(store)
            } else {
                Arc::new(PrefixStore::new(store, prefix))
            };
            let where_ = format!(
                "s3://{bucket}/{prefix} at {}",
                settings.endpoint.as_deref().unwrap_or("AWS")
            );
            // One listing proves the endpoint, the bucket and the credentials.
            store
                .list_with_delimiter(Some(&ObjectPath::from("chunks")))
                .await
                .map_err(|e| {
                    ServerError::new(
                        ErrorKind::Unavailable,
                        format!("cannot use the chunk store {where_}: {e}"),
                    )
                })?;
            Ok(Self::remote(store))
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
    pub fn put<'a>(
        &'a self,
        id: &'a ChunkId,
        compressed: bool,
        data: Bytes,
    ) -> BoxFuture<'a, Result<()>> {
        self.put_checked(id, compressed, data, None::<fn() -> Result<()>>)
    }

    /// Stores an encoded chunk durably once `check`, if any, has passed; nothing is
    /// stored when it fails. On a local store the check, the write and the fsyncs are
    /// one job on the blocking pool, not a hop there and back for each; a remote store
    /// takes a hop for the check only.
    pub fn put_checked<'a>(
        &'a self,
        id: &'a ChunkId,
        compressed: bool,
        data: Bytes,
        check: Option<impl FnOnce() -> Result<()> + Send + 'static>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match &self.local_root {
                Some(root) => {
                    let path = root.join(key(id).as_ref());
                    let id = *id;
                    blocking(move || {
                        check.map_or(Ok(()), |check| check())?;
                        write_durably(&path, &id, compressed, &data)
                    })
                    .await
                }
                None => {
                    if let Some(check) = check {
                        blocking(check).await?;
                    }
                    // The format byte and the chunk go as two parts of one object, so
                    // the chunk's bytes are sent from the buffer they arrived in.
                    let object = PutPayload::from_iter([format_byte(compressed), data]);
                    self.store.put(&key(id), object).await?;
                    Ok(())
                }
            }
        })
    }

    /// Reads a stored chunk.
    pub fn get<'a>(&'a self, id: &'a ChunkId) -> BoxFuture<'a, Result<StoredChunk>> {
        Box::pin(async move {
            let bytes = self.store.get(&key(id)).await?.bytes().await?;
            stored(id, bytes)
        })
    }

    /// Reads a stored chunk on a thread outside `runtime`'s workers, for work that reads
    /// many: a local store's file is read right here (not through a hop to the blocking
    /// pool and back per chunk), other stores are read through `runtime`.
    pub fn get_blocking(&self, id: &ChunkId, runtime: &Handle) -> Result<StoredChunk> {
        match &self.local_root {
            Some(root) => match std::fs::read(root.join(key(id).as_ref())) {
                Ok(bytes) => stored(id, Bytes::from(bytes)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    Err(ServerError::not_found(format!("stored chunk {id}")))
                }
                Err(error) => Err(error.into()),
            },
            None => runtime.block_on(self.get(id)),
        }
    }

    /// Whether the store holds the chunk.
    pub fn contains<'a>(&'a self, id: &'a ChunkId) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            match self.store.head(&key(id)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(other) => Err(other.into()),
            }
        })
    }
}

impl ChunkStore {
    /// Every chunk object in the store, and the temporary files of interrupted writes.
    pub fn list<'a>(&'a self) -> BoxFuture<'a, Result<Listing>> {
        Box::pin(async move {
            let objects: Vec<_> = self
                .store
                .list(Some(&ObjectPath::from("chunks")))
                .try_collect()
                .await?;
            let mut listing = Listing::default();
            for object in objects {
                let Some(name) = object.location.filename() else {
                    continue;
                };
                let modified_ms = object.last_modified.timestamp_millis();
                if name.ends_with(LEFTOVER_SUFFIX) {
                    listing.leftovers.push(Leftover {
                        path: object.location.to_string(),
                        modified_ms,
                    });
                } else if let Ok(bytes) = hex::decode(name)
                    && let Ok(id) = ChunkId::from_slice(&bytes)
                {
                    listing.chunks.push(ListedChunk { id, modified_ms });
                }
            }
            Ok(listing)
        })
    }

    /// Deletes the temporary file of an interrupted write.
    pub fn delete_leftover<'a>(&'a self, leftover: &'a Leftover) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = ObjectPath::from(leftover.path.as_str());
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(other) => Err(other.into()),
            }
        })
    }

    /// Deletes a chunk object (garbage collection of orphans).
    pub fn delete<'a>(&'a self, id: &'a ChunkId) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.store.delete(&key(id)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(other) => Err(other.into()),
            }
        })
    }
}

fn format_byte(compressed: bool) -> Bytes {
    Bytes::from_static(if compressed { &[ZSTD] } else { &[RAW] })
}

/// Runs `job` on the blocking pool.
async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| ServerError::internal(format!("chunk store task: {e}")))?
}

/// Writes chunk `id` at `path` (a local store's object) so that it is on disk when
/// this returns: into a temporary file beside it, synced, renamed into place, and the
/// folder synced. A failure leaves no partial object.
fn write_durably(path: &Path, id: &ChunkId, compressed: bool, data: &[u8]) -> Result<()> {
    let failed = |error: std::io::Error| {
        ServerError::new(
            ErrorKind::Unavailable,
            format!("chunk store: writing chunk {id}: {error}"),
        )
    };
    let dir = path
        .parent()
        .ok_or_else(|| ServerError::internal(format!("chunk {id} has no folder")))?;
    // Not a chunk id, so listing the store passes it over.
    let temp = dir.join(format!(
        "{}.{:016x}{LEFTOVER_SUFFIX}",
        id.to_hex(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut file = std::fs::File::create_new(&temp)?;
        file.write_all(&format_byte(compressed))?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(failed(error));
    }
    sync_dir(dir).map_err(failed)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
