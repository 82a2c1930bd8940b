//! The embedded metadata store on SQLite (WAL, one writer, a pool of readers).
//!
//! rusqlite is synchronous, so each operation runs on tokio's blocking pool. Writes take
//! the single writer connection and start with `BEGIN IMMEDIATE`, so a transaction never
//! has to upgrade its lock (which would fail with SQLITE_BUSY under contention).

mod db;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::sql::db::Db;
use super::sql::{Engine, SqlMetaStore};
use super::{Nanos, now_nanos};
use crate::error::{Result, ServerError};
use crate::journal_hub::JournalHub;
use db::SqliteDb;

const READERS_KEPT: usize = 8;

/// Where the database lives.
#[derive(Clone, Debug)]
pub enum SqliteLocation {
    File(PathBuf),
    /// A private in-memory database (tests, simulations); shared by name within the process.
    Memory(String),
}

/// The SQLite [`super::MetaStore`].
pub type SqliteMetaStore = SqlMetaStore<SqliteEngine>;

/// Runs transactions on SQLite connections.
pub struct SqliteEngine {
    location: SqliteLocation,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

fn open_connection(location: &SqliteLocation) -> Result<Connection> {
    let conn = match location {
        SqliteLocation::File(path) => Connection::open(path)?,
        SqliteLocation::Memory(name) => Connection::open_with_flags(
            format!("file:{name}?mode=memory&cache=shared"),
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI,
        )?,
    };
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Every statement of the store stays prepared (there are about 70): parsing SQL
    // again on each call cost a third of the CPU of creating small files.
    conn.set_prepared_statement_cache_capacity(256);
    // Plans do not depend on bound values: without this SQLite re-prepared the session
    // lookup (and others) on almost every call, a fifth of the server's CPU.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if matches!(location, SqliteLocation::File(_)) {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk when it returns; nothing acknowledged is lost.
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    Ok(conn)
}

impl SqlMetaStore<SqliteEngine> {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path, hub: Arc<JournalHub>) -> Result<Self> {
        Self::open_at(SqliteLocation::File(path.to_path_buf()), hub)
    }

    /// Opens a database at `location`, creating and migrating it if needed.
    pub fn open_at(location: SqliteLocation, hub: Arc<JournalHub>) -> Result<Self> {
        let mut writer = open_connection(&location)?;
        let (from, to) = schema::migrate(&mut writer)?;
        if from != to {
            tracing::info!(from, to, "migrated the SQLite metadata schema");
        }
        let engine = SqliteEngine {
            location,
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
        };
        Ok(SqlMetaStore::new(engine, hub))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServerError::internal(format!("metadata task: {e}")))?
}

impl Engine for SqliteEngine {
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Db, Nanos) -> Result<T> + Send + Sync + 'static,
    {
        let readers = self.readers.clone();
        let location = self.location.clone();
        blocking(move || {
            let pooled = readers
                .lock()
                .map_err(|_| ServerError::internal("reader pool poisoned"))?
                .pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&location)?,
            };
            let result = (|| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let value = f(&SqliteDb(&tx), now_nanos())?;
                tx.finish()?;
                Ok(value)
            })();
            if let Ok(mut pool) = readers.lock()
                && pool.len() < READERS_KEPT
            {
                pool.push(conn);
            }
            result
        })
        .await
    }

    /// One writer: `announce` has nothing to do, as every stream is in this process, and
    /// every write is queued behind the one writer connection anyway.
    async fn write<T, F>(&self, _announce: bool, _queue: Option<u64>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Db, Nanos) -> Result<T> + Send + Sync + 'static,
    {
        let writer = self.writer.clone();
        blocking(move || {
            let mut conn = writer
                .lock()
                .map_err(|_| ServerError::internal("writer lock poisoned"))?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&SqliteDb(&tx), now_nanos())?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }

    async fn schema_version(&self) -> Result<u32> {
        let writer = self.writer.clone();
        blocking(move || {
            let conn = writer
                .lock()
                .map_err(|_| ServerError::internal("writer lock poisoned"))?;
            schema::version(&conn)
        })
        .await
    }
}
