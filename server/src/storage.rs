//! Where a server keeps its state: the metadata database and the chunk store, as given
//! by `--data`, `--meta URL` and `--chunks URL`.
//!
//! Defaults are the embedded ones: SQLite at `DATA/meta.sqlite` and a chunk directory
//! `DATA`. `--meta postgres://…` and `--chunks s3://bucket/prefix` select the scale-out
//! backends; several server processes may share them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::chunk_store::{ChunkStore, S3Settings};
use crate::error::{Result, ServerError};
use crate::journal_hub::JournalHub;
use crate::meta::MetaStore;
use crate::meta::postgres::PostgresMetaStore;
use crate::meta::sqlite::SqliteMetaStore;

/// The metadata database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaLocation {
    Sqlite(PathBuf),
    /// A `postgres://` URL (it may carry a password: never print it).
    Postgres(String),
}

/// The chunk store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl MetaLocation {
    /// `postgres://…` / `postgresql://…`, `sqlite:PATH` / `sqlite://PATH`.
    pub fn parse(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            crate::meta::postgres::parse_url(url)?;
            return Ok(MetaLocation::Postgres(url.to_string()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            && !path.is_empty()
        {
            return Ok(MetaLocation::Sqlite(PathBuf::from(path)));
        }
        Err(ServerError::invalid(
            "--meta takes postgres://USER@HOST:PORT/DATABASE or sqlite:PATH",
        ))
    }
}

impl ChunkLocation {
    /// `s3://BUCKET[/PREFIX]`, `file://DIR` or a plain directory.
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid = (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
            if !valid {
                return Err(ServerError::invalid(format!(
                    "--chunks s3://BUCKET/PREFIX: {bucket:?} is not a valid bucket name"
                )));
            }
            return Ok(ChunkLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if url.contains("://") && !url.starts_with("file://") {
            return Err(ServerError::invalid(
                "--chunks takes s3://BUCKET/PREFIX or a directory",
            ));
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.is_empty() {
            return Err(ServerError::invalid("--chunks: empty directory"));
        }
        Ok(ChunkLocation::Local(PathBuf::from(path)))
    }
}

/// Where a server keeps its state; filled by the binary from flags and environment.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    pub meta: MetaLocation,
    /// `None` when no chunk store was given and there is no data directory (commands
    /// that only touch metadata, such as `user add`, need none).
    pub chunks: Option<ChunkLocation>,
    pub s3: S3Settings,
}

impl StorageConfig {
    /// The locations given by `--data DIR`, `--meta URL` and `--chunks URL`.
    pub fn new(
        data: Option<&Path>,
        meta: Option<&str>,
        chunks: Option<&str>,
        s3: S3Settings,
    ) -> Result<Self> {
        let meta = match (meta, data) {
            (Some(url), _) => MetaLocation::parse(url)?,
            (None, Some(dir)) => MetaLocation::Sqlite(dir.join("meta.sqlite")),
            (None, None) => {
                return Err(ServerError::invalid(
                    "give --data DIR, or --meta URL (and --chunks URL)",
                ));
            }
        };
        let chunks = match (chunks, data) {
            (Some(url), _) => Some(ChunkLocation::parse(url)?),
            (None, Some(dir)) => Some(ChunkLocation::Local(dir.to_path_buf())),
            (None, None) => None,
        };
        Ok(StorageConfig { meta, chunks, s3 })
    }

    /// The embedded default under `dir`.
    pub fn local(dir: &Path) -> Self {
        StorageConfig {
            meta: MetaLocation::Sqlite(dir.join("meta.sqlite")),
            chunks: Some(ChunkLocation::Local(dir.to_path_buf())),
            s3: S3Settings::default(),
        }
    }

    /// Opens (and if needed creates and migrates) the metadata store.
    pub fn open_meta(&self, hub: Arc<JournalHub>) -> BoxFuture<'_, Result<Arc<dyn MetaStore>>> {
        Box::pin(async move {
            Ok(match &self.meta {
                MetaLocation::Sqlite(path) => {
                    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir)?;
                    }
                    let path = path.clone();
                    let store =
                        tokio::task::spawn_blocking(move || SqliteMetaStore::open(&path, hub))
                            .await
                            .map_err(ServerError::internal)??;
                    Arc::new(store) as Arc<dyn MetaStore>
                }
                MetaLocation::Postgres(url) => {
                    Arc::new(PostgresMetaStore::connect(url, hub).await?)
                }
            })
        })
    }

    /// Opens the chunk store.
    pub fn open_chunks(&self) -> BoxFuture<'_, Result<ChunkStore>> {
        Box::pin(async move {
            match &self.chunks {
                Some(ChunkLocation::Local(dir)) => {
                    let dir = dir.clone();
                    tokio::task::spawn_blocking(move || {
                        std::fs::create_dir_all(&dir)?;
                        ChunkStore::local(&dir)
                    })
                    .await
                    .map_err(ServerError::internal)?
                }
                Some(ChunkLocation::S3 { bucket, prefix }) => {
                    ChunkStore::s3(bucket, prefix, &self.s3).await
                }
                None => Err(ServerError::invalid(
                    "no chunk store: give --chunks URL or --data DIR",
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_backends() {
        assert_eq!(
            MetaLocation::parse("postgres://loft@db:5432/loft").unwrap(),
            MetaLocation::Postgres("postgres://loft@db:5432/loft".into())
        );
        assert_eq!(
            MetaLocation::parse("sqlite:/var/lib/loft/meta.sqlite").unwrap(),
            MetaLocation::Sqlite("/var/lib/loft/meta.sqlite".into())
        );
        assert!(MetaLocation::parse("mysql://db/loft").is_err());
        assert_eq!(
            ChunkLocation::parse("s3://loft-chunks/eu/one/").unwrap(),
            ChunkLocation::S3 {
                bucket: "loft-chunks".into(),
                prefix: "eu/one".into()
            }
        );
        assert_eq!(
            ChunkLocation::parse("s3://loft-chunks").unwrap(),
            ChunkLocation::S3 {
                bucket: "loft-chunks".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            ChunkLocation::parse("/srv/chunks").unwrap(),
            ChunkLocation::Local("/srv/chunks".into())
        );
    }

    #[test]
    fn bad_urls_say_what_is_expected() {
        for url in ["s3://", "s3://UPPER/x", "s3://a/x", "gs://bucket/x", ""] {
            let error = ChunkLocation::parse(url).unwrap_err();
            assert!(error.message.contains("--chunks"), "{url}: {error}");
        }
        assert!(MetaLocation::parse("postgres://host:notaport/db").is_err());
        let none = StorageConfig::new(None, None, None, S3Settings::default()).unwrap_err();
        assert!(none.message.contains("--data"), "{none}");
    }
}
