//! The embedded metadata store on SQLite (WAL, one writer, a pool of readers).
//!
//! rusqlite is synchronous, so each operation runs on tokio's blocking pool. Writes take
//! the single writer connection and start with `BEGIN IMMEDIATE`, so a transaction never
//! has to upgrade its lock (which would fail with SQLITE_BUSY under contention).

mod access;
mod content;
mod journal;
mod rows;
mod schema;
mod tree;
mod users;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use loft_remote::content::{ChunkId, Manifest};
use loft_remote::proto;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use super::{
    AttrChange, Caller, ChunkRecord, CommitOp, CommitOutcome, DeviceRecord, JournalPage, Listing,
    MetaStore, Nanos, NewNode, RemoveOp, RenameOp, RenameOutcome, User, XattrMode, now_nanos,
};
use crate::error::{Result, ServerError};
use crate::journal_hub::JournalHub;
use tree::Write;

/// How long an uploaded but not yet committed chunk stays usable by its uploader.
const UPLOAD_GRACE_NANOS: Nanos = 7 * 24 * 3600 * 1_000_000_000;
const READERS_KEPT: usize = 8;

/// Where the database lives.
#[derive(Clone, Debug)]
pub enum SqliteLocation {
    File(PathBuf),
    /// A private in-memory database (tests, simulations); shared by name within the process.
    Memory(String),
}

/// The SQLite [`MetaStore`].
pub struct SqliteMetaStore {
    location: SqliteLocation,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    hub: Arc<JournalHub>,
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
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if matches!(location, SqliteLocation::File(_)) {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk when it returns; nothing acknowledged is lost.
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    Ok(conn)
}

impl SqliteMetaStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path, hub: Arc<JournalHub>) -> Result<Self> {
        Self::open_at(SqliteLocation::File(path.to_path_buf()), hub)
    }

    /// Opens a database at `location`, creating and migrating it if needed.
    pub fn open_at(location: SqliteLocation, hub: Arc<JournalHub>) -> Result<Self> {
        let mut writer = open_connection(&location)?;
        schema::migrate(&mut writer)?;
        Ok(SqliteMetaStore {
            location,
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
            hub,
        })
    }

    /// Runs `f` in a write transaction on the blocking pool; wakes Watch streams after
    /// a successful commit.
    async fn write<T, F>(&self, caller: Option<Caller>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, Option<&Caller>, Nanos) -> Result<T> + Send + 'static,
    {
        let result = self.write_quietly(caller, f).await;
        if result.is_ok() {
            self.hub.notify();
        }
        result
    }

    /// Like [`Self::write`], for changes that write no journal rows.
    async fn write_quietly<T, F>(&self, caller: Option<Caller>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, Option<&Caller>, Nanos) -> Result<T> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer
                .lock()
                .map_err(|_| ServerError::internal("writer lock poisoned"))?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx, caller.as_ref(), now_nanos())?;
            tx.commit()?;
            Ok(value)
        })
        .await
        .map_err(|e| ServerError::internal(format!("metadata task: {e}")))?
    }

    /// Runs a tree change as `caller`.
    async fn change<T, F>(&self, caller: &Caller, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Write<'_, '_>) -> Result<T> + Send + 'static,
    {
        self.write(Some(caller.clone()), move |tx, caller, now| {
            let caller = caller.ok_or_else(|| ServerError::internal("change without caller"))?;
            f(&Write { tx, caller, now })
        })
        .await
    }

    /// Runs `f` in a read transaction (a consistent snapshot) on a pooled connection.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, Nanos) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let location = self.location.clone();
        tokio::task::spawn_blocking(move || {
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
                let value = f(&tx, now_nanos())?;
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
        .map_err(|e| ServerError::internal(format!("metadata task: {e}")))?
    }
}

fn upload_cutoff(now: Nanos) -> Nanos {
    now.saturating_sub(UPLOAD_GRACE_NANOS)
}

#[async_trait]
impl MetaStore for SqliteMetaStore {
    async fn create_user(&self, name: &str, password_hash: &str) -> Result<User> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        self.write_quietly(None, move |tx, _, now| {
            users::create_user(tx, &name, &hash, now)
        })
        .await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let name = name.to_string();
        self.read(move |tx, _| users::user_by_name(tx, &name)).await
    }

    async fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<()> {
        let name = name.to_string();
        self.write_quietly(None, move |tx, _, _| users::set_quota(tx, &name, quota))
            .await
    }

    async fn create_session(
        &self,
        user: u64,
        device_name: &str,
        token_hash: [u8; 32],
        expires: Nanos,
    ) -> Result<Caller> {
        let device_name = device_name.to_string();
        self.write_quietly(None, move |tx, _, now| {
            users::create_session(tx, user, &device_name, token_hash, expires, now)
        })
        .await
    }

    async fn session(&self, token_hash: [u8; 32], now: Nanos) -> Result<Option<Caller>> {
        self.read(move |tx, _| users::session(tx, token_hash, now))
            .await
    }

    async fn end_session(&self, token_hash: [u8; 32]) -> Result<()> {
        self.write_quietly(None, move |tx, _, _| users::end_session(tx, token_hash))
            .await
    }

    async fn list_devices(&self, user: u64) -> Result<Vec<DeviceRecord>> {
        self.read(move |tx, _| users::list_devices(tx, user)).await
    }

    async fn revoke_device(&self, user: u64, device: u64) -> Result<()> {
        self.write(None, move |tx, _, _| users::revoke_device(tx, user, device))
            .await
    }

    async fn lookup(&self, caller: &Caller, parent: u64, name: &[u8]) -> Result<proto::Node> {
        let (caller, name) = (caller.clone(), name.to_vec());
        self.read(move |tx, _| tree::lookup(tx, &caller, parent, &name))
            .await
    }

    async fn resolve(&self, caller: &Caller, path: &[u8]) -> Result<proto::Node> {
        let (caller, path) = (caller.clone(), path.to_vec());
        self.read(move |tx, _| tree::resolve(tx, &caller, &path))
            .await
    }

    async fn stat(&self, caller: &Caller, id: u64) -> Result<proto::Node> {
        let caller = caller.clone();
        self.read(move |tx, _| tree::stat(tx, &caller, id)).await
    }

    async fn list(&self, caller: &Caller, dir: u64, after: &[u8], limit: u32) -> Result<Listing> {
        let (caller, after) = (caller.clone(), after.to_vec());
        self.read(move |tx, _| tree::list(tx, &caller, dir, &after, limit))
            .await
    }

    async fn create(&self, caller: &Caller, op: NewNode) -> Result<proto::Node> {
        self.change(caller, move |w| tree::create(w, &op)).await
    }

    async fn link(
        &self,
        caller: &Caller,
        node: u64,
        new_parent: u64,
        new_name: &[u8],
    ) -> Result<proto::Node> {
        let new_name = new_name.to_vec();
        self.change(caller, move |w| tree::link(w, node, new_parent, &new_name))
            .await
    }

    async fn rename(&self, caller: &Caller, op: RenameOp) -> Result<RenameOutcome> {
        self.change(caller, move |w| tree::rename(w, &op)).await
    }

    async fn remove(&self, caller: &Caller, op: RemoveOp) -> Result<()> {
        self.change(caller, move |w| tree::remove(w, &op)).await
    }

    async fn set_attr(&self, caller: &Caller, change: AttrChange) -> Result<proto::Node> {
        self.change(caller, move |w| tree::set_attr(w, &change))
            .await
    }

    async fn get_xattr(&self, caller: &Caller, id: u64, name: &[u8]) -> Result<Vec<u8>> {
        let (caller, name) = (caller.clone(), name.to_vec());
        self.read(move |tx, _| tree::get_xattr(tx, &caller, id, &name))
            .await
    }

    async fn set_xattr(
        &self,
        caller: &Caller,
        id: u64,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()> {
        let (name, value) = (name.to_vec(), value.to_vec());
        self.change(caller, move |w| tree::set_xattr(w, id, &name, &value, mode))
            .await
    }

    async fn list_xattr(&self, caller: &Caller, id: u64) -> Result<Vec<Vec<u8>>> {
        let caller = caller.clone();
        self.read(move |tx, _| tree::list_xattr(tx, &caller, id))
            .await
    }

    async fn remove_xattr(&self, caller: &Caller, id: u64, name: &[u8]) -> Result<()> {
        let name = name.to_vec();
        self.change(caller, move |w| tree::remove_xattr(w, id, &name))
            .await
    }

    async fn usable_chunks(&self, caller: &Caller, ids: &[ChunkId]) -> Result<Vec<bool>> {
        let (caller, ids) = (caller.clone(), ids.to_vec());
        self.read(move |tx, now| content::usable_chunks(tx, &caller, &ids, upload_cutoff(now)))
            .await
    }

    async fn readable_chunks(
        &self,
        caller: &Caller,
        ids: &[ChunkId],
    ) -> Result<Vec<Option<ChunkRecord>>> {
        let (caller, ids) = (caller.clone(), ids.to_vec());
        self.read(move |tx, now| content::readable_chunks(tx, &caller, &ids, upload_cutoff(now)))
            .await
    }

    async fn record_chunk(&self, caller: &Caller, chunk: ChunkRecord) -> Result<bool> {
        self.write_quietly(Some(caller.clone()), move |tx, caller, now| {
            let caller = caller.ok_or_else(|| ServerError::internal("upload without caller"))?;
            content::record_chunk(tx, caller, &chunk, now)
        })
        .await
    }

    async fn manifest(&self, caller: &Caller, node: u64, version: u64) -> Result<Manifest> {
        let caller = caller.clone();
        self.read(move |tx, _| content::manifest(tx, &caller, node, version))
            .await
    }

    async fn commit(&self, caller: &Caller, op: CommitOp) -> Result<CommitOutcome> {
        self.change(caller, move |w| {
            content::commit(w, &op, upload_cutoff(w.now))
        })
        .await
    }

    async fn commit_many(&self, caller: &Caller, ops: Vec<CommitOp>) -> Result<Vec<CommitOutcome>> {
        self.change(caller, move |w| {
            let cutoff = upload_cutoff(w.now);
            ops.iter()
                .map(|op| content::commit(w, op, cutoff))
                .collect()
        })
        .await
    }

    async fn versions(&self, caller: &Caller, node: u64) -> Result<Vec<proto::Version>> {
        let caller = caller.clone();
        self.read(move |tx, _| content::versions(tx, &caller, node))
            .await
    }

    async fn journal_since(
        &self,
        caller: &Caller,
        namespace: u64,
        cursor: u64,
        limit: u32,
    ) -> Result<JournalPage> {
        let caller = caller.clone();
        self.read(move |tx, _| {
            if access::role(tx, &caller, namespace)?.is_none() {
                return Err(ServerError::not_found(format!("namespace {namespace}")));
            }
            journal::since(tx, namespace, cursor, limit)
        })
        .await
    }
}
