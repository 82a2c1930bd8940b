//! The metadata logic both databases share: the tree, content, users and the journal,
//! written once against [`db::Db`]. A backend supplies an [`Engine`] that runs a closure
//! in a read or a write transaction; [`SqlMetaStore`] turns that into a [`MetaStore`].

pub mod access;
pub mod content;
pub mod db;
pub mod history;
pub mod journal;
pub mod links;
pub mod prune;
pub mod quota;
pub mod rows;
pub mod search;
pub mod sharing;
pub mod trash;
pub mod tree;
pub mod users;

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use loft_remote::content::{ChunkId, Manifest};
use loft_remote::proto;

use super::{
    AttrChange, Caller, ChunkRecord, CommentRecord, CommitOp, CommitOutcome, DeviceRecord,
    JournalPage, LinkGrant, LinkRecord, Listing, Membership, MetaStore, Nanos, NewLink, NewNode,
    RemoveOp, RenameOp, RenameOutcome, Role, SearchBacklog, SearchDoc, SearchRow, ShareOutcome,
    Shares, StoredChunkRef, ThrottlePolicy, TrashEntry, TrashTarget, User, XattrMode,
};
use crate::error::{Result, ServerError};
use crate::journal_hub::JournalHub;
use crate::meta::{QuotaUsage, UsageDrift};
use db::Db;
use tree::Write;

/// How long an uploaded but not yet committed chunk stays usable by its uploader.
pub const UPLOAD_GRACE_NANOS: Nanos = 7 * 24 * 3600 * 1_000_000_000;

/// The queue every write takes its turn in: one for now, as SQLite's single writer.
/// Finer queues (per namespace, with chunk reference counts kept apart, since writers of
/// different namespaces share chunk rows) are the next step for write throughput.
const WRITE_QUEUE: Option<u64> = Some(0);

fn upload_cutoff(now: Nanos) -> Nanos {
    now.saturating_sub(UPLOAD_GRACE_NANOS)
}

/// Runs closures in transactions of one database.
///
/// A write closure may run more than once: PostgreSQL retries a transaction that lost a
/// serialization race, so closures must not have effects outside the transaction.
pub trait Engine: Send + Sync + 'static {
    /// Runs `f` in a read-only transaction (a consistent snapshot).
    fn read<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: Fn(&dyn Db, Nanos) -> Result<T> + Send + Sync + 'static;

    /// Runs `f` in a write transaction. With `announce`, other server processes are told
    /// (after commit) that journals or sessions changed. Writes with the same `queue`
    /// key run one at a time, in every server process, so that they do not keep failing
    /// each other's serialization checks.
    fn write<T, F>(
        &self,
        announce: bool,
        queue: Option<u64>,
        f: F,
    ) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: Fn(&dyn Db, Nanos) -> Result<T> + Send + Sync + 'static;

    /// The schema version the database is at.
    fn schema_version(&self) -> impl Future<Output = Result<u32>> + Send;
}

/// A [`MetaStore`] on any [`Engine`].
pub struct SqlMetaStore<E> {
    engine: E,
    hub: Arc<JournalHub>,
}

impl<E: Engine> SqlMetaStore<E> {
    pub fn new(engine: E, hub: Arc<JournalHub>) -> Self {
        SqlMetaStore { engine, hub }
    }

    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// A write that wakes Watch streams (here and, through the engine, elsewhere).
    async fn write<T, F>(&self, queue: Option<u64>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Db, Nanos) -> Result<T> + Send + Sync + 'static,
    {
        let result = self.engine.write(true, queue, f).await;
        if result.is_ok() {
            self.hub.notify();
        }
        result
    }

    /// A write of state no Watch stream follows.
    async fn write_quietly<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Db, Nanos) -> Result<T> + Send + Sync + 'static,
    {
        self.engine.write(false, WRITE_QUEUE, f).await
    }

    /// Runs a tree change as `caller`.
    async fn change<T, F>(&self, caller: &Caller, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Write<'_>) -> Result<T> + Send + Sync + 'static,
    {
        let caller = caller.clone();
        self.write(WRITE_QUEUE, move |db, now| {
            f(&Write {
                db,
                caller: &caller,
                now,
            })
        })
        .await
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Db, Nanos) -> Result<T> + Send + Sync + 'static,
    {
        self.engine.read(f).await
    }
}

#[async_trait]
impl<E: Engine> MetaStore for SqlMetaStore<E> {
    async fn create_user(&self, name: &str, password_hash: &str) -> Result<User> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        self.write_quietly(move |db, now| users::create_user(db, &name, &hash, now))
            .await
    }

    async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let name = name.to_string();
        self.read(move |db, _| users::user_by_name(db, &name)).await
    }

    async fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<()> {
        let name = name.to_string();
        self.write_quietly(move |db, _| users::set_quota(db, &name, quota))
            .await
    }

    async fn quota(&self, caller: &Caller) -> Result<QuotaUsage> {
        let user = caller.user_id;
        self.read(move |db, _| quota::of_user(db, user)).await
    }

    async fn create_session(
        &self,
        user: u64,
        device_name: &str,
        token_hash: [u8; 32],
        expires: Nanos,
    ) -> Result<Caller> {
        let device_name = device_name.to_string();
        self.write_quietly(move |db, now| {
            users::create_session(db, user, &device_name, token_hash, expires, now)
        })
        .await
    }

    async fn session(&self, token_hash: [u8; 32], now: Nanos) -> Result<Option<Caller>> {
        self.read(move |db, _| users::session(db, token_hash, now))
            .await
    }

    async fn end_session(&self, token_hash: [u8; 32]) -> Result<()> {
        self.write_quietly(move |db, _| users::end_session(db, token_hash))
            .await
    }

    async fn list_devices(&self, user: u64) -> Result<Vec<DeviceRecord>> {
        self.read(move |db, _| users::list_devices(db, user)).await
    }

    async fn revoke_device(&self, user: u64, device: u64) -> Result<()> {
        // Wakes every Watch stream, so those of the revoked device end at once.
        self.write(WRITE_QUEUE, move |db, _| {
            users::revoke_device(db, user, device)
        })
        .await
    }

    async fn lookup(&self, caller: &Caller, parent: u64, name: &[u8]) -> Result<proto::Node> {
        let (caller, name) = (caller.clone(), name.to_vec());
        self.read(move |db, _| tree::lookup(db, &caller, parent, &name))
            .await
    }

    async fn resolve(&self, caller: &Caller, path: &[u8]) -> Result<proto::Node> {
        let (caller, path) = (caller.clone(), path.to_vec());
        self.read(move |db, _| tree::resolve(db, &caller, &path))
            .await
    }

    async fn stat(&self, caller: &Caller, id: u64) -> Result<proto::Node> {
        let caller = caller.clone();
        self.read(move |db, _| tree::stat(db, &caller, id)).await
    }

    async fn list(&self, caller: &Caller, dir: u64, after: &[u8], limit: u32) -> Result<Listing> {
        let (caller, after) = (caller.clone(), after.to_vec());
        self.read(move |db, _| tree::list(db, &caller, dir, &after, limit))
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

    async fn remove_many(&self, caller: &Caller, ops: Vec<RemoveOp>) -> Result<()> {
        self.change(caller, move |w| {
            ops.iter().try_for_each(|op| tree::remove(w, op))
        })
        .await
    }

    async fn set_attr(&self, caller: &Caller, change: AttrChange) -> Result<proto::Node> {
        self.change(caller, move |w| tree::set_attr(w, &change))
            .await
    }

    async fn get_xattr(&self, caller: &Caller, id: u64, name: &[u8]) -> Result<Vec<u8>> {
        let (caller, name) = (caller.clone(), name.to_vec());
        self.read(move |db, _| tree::get_xattr(db, &caller, id, &name))
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
        self.read(move |db, _| tree::list_xattr(db, &caller, id))
            .await
    }

    async fn remove_xattr(&self, caller: &Caller, id: u64, name: &[u8]) -> Result<()> {
        let name = name.to_vec();
        self.change(caller, move |w| tree::remove_xattr(w, id, &name))
            .await
    }

    async fn usable_chunks(&self, caller: &Caller, ids: &[ChunkId]) -> Result<Vec<bool>> {
        let (caller, ids) = (caller.clone(), ids.to_vec());
        self.read(move |db, now| content::usable_chunks(db, &caller, &ids, upload_cutoff(now)))
            .await
    }

    async fn readable_chunks(
        &self,
        caller: &Caller,
        ids: &[ChunkId],
    ) -> Result<Vec<Option<ChunkRecord>>> {
        let (caller, ids) = (caller.clone(), ids.to_vec());
        self.read(move |db, now| content::readable_chunks(db, &caller, &ids, upload_cutoff(now)))
            .await
    }

    async fn record_chunk(&self, caller: &Caller, chunk: ChunkRecord) -> Result<bool> {
        let caller = caller.clone();
        self.write_quietly(move |db, now| content::record_chunk(db, &caller, &chunk, now))
            .await
    }

    async fn record_chunks(&self, caller: &Caller, chunks: Vec<ChunkRecord>) -> Result<()> {
        let caller = caller.clone();
        self.write_quietly(move |db, now| {
            for chunk in &chunks {
                content::record_chunk(db, &caller, chunk, now)?;
            }
            Ok(())
        })
        .await
    }

    async fn manifest(&self, caller: &Caller, node: u64, version: u64) -> Result<Manifest> {
        let caller = caller.clone();
        self.read(move |db, _| content::manifest(db, &caller, node, version))
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
        self.read(move |db, _| content::versions(db, &caller, node))
            .await
    }

    async fn restore_version(
        &self,
        caller: &Caller,
        node: u64,
        version: u64,
    ) -> Result<CommitOutcome> {
        self.change(caller, move |w| history::restore_version(w, node, version))
            .await
    }

    async fn list_trash(&self, caller: &Caller) -> Result<Vec<TrashEntry>> {
        let caller = caller.clone();
        self.read(move |db, _| trash::list(db, &caller)).await
    }

    async fn restore_from_trash(
        &self,
        caller: &Caller,
        target: TrashTarget,
    ) -> Result<(proto::Node, Vec<u8>)> {
        self.change(caller, move |w| trash::restore(w, &target))
            .await
    }

    async fn empty_trash(&self, caller: &Caller) -> Result<u64> {
        self.change(caller, trash::empty).await
    }

    async fn journal_since(
        &self,
        caller: &Caller,
        namespace: u64,
        cursor: u64,
        limit: u32,
    ) -> Result<JournalPage> {
        let caller = caller.clone();
        self.read(move |db, _| {
            if access::role(db, &caller, namespace)?.is_none() {
                return Err(ServerError::not_found(format!("namespace {namespace}")));
            }
            journal::since(db, namespace, cursor, limit)
        })
        .await
    }

    async fn create_link(&self, caller: &Caller, link: NewLink) -> Result<LinkRecord> {
        let caller = caller.clone();
        self.write_quietly(move |db, now| links::create(db, &caller, &link, now))
            .await
    }

    async fn list_links(&self, caller: &Caller) -> Result<Vec<LinkRecord>> {
        let caller = caller.clone();
        self.read(move |db, _| links::list(db, &caller)).await
    }

    async fn revoke_link(&self, caller: &Caller, id: u64) -> Result<()> {
        let caller = caller.clone();
        self.write_quietly(move |db, _| links::revoke(db, &caller, id))
            .await
    }

    async fn link_by_secret(&self, secret_hash: [u8; 32]) -> Result<Option<LinkGrant>> {
        self.read(move |db, now| links::by_secret(db, &secret_hash, now))
            .await
    }

    async fn link_by_id(&self, id: u64) -> Result<Option<LinkGrant>> {
        self.read(move |db, now| links::by_id(db, id, now)).await
    }

    async fn count_link_download(&self, id: u64) -> Result<()> {
        self.write_quietly(move |db, _| links::count_download(db, id))
            .await
    }

    async fn password_throttled(
        &self,
        subjects: &[String],
        policy: ThrottlePolicy,
    ) -> Result<Option<Nanos>> {
        let subjects = subjects.to_vec();
        self.read(move |db, now| links::throttled(db, &subjects, policy, now))
            .await
    }

    async fn password_failed(&self, subjects: &[String], policy: ThrottlePolicy) -> Result<()> {
        let subjects = subjects.to_vec();
        self.write_quietly(move |db, now| links::failed(db, &subjects, policy, now))
            .await
    }

    async fn server_secret(&self, name: &str, fresh: [u8; 32]) -> Result<Vec<u8>> {
        let name = name.to_string();
        self.write_quietly(move |db, _| links::server_secret(db, &name, &fresh))
            .await
    }

    async fn feed_since(&self, caller: &Caller, cursor: u64, limit: u32) -> Result<JournalPage> {
        let user = caller.user_id;
        self.read(move |db, _| journal::feed_since(db, user, cursor, limit))
            .await
    }

    async fn memberships(&self, caller: &Caller) -> Result<Vec<Membership>> {
        let caller = caller.clone();
        self.read(move |db, _| sharing::memberships(db, &caller))
            .await
    }

    async fn share(
        &self,
        caller: &Caller,
        node: u64,
        user: &str,
        role: Role,
    ) -> Result<ShareOutcome> {
        let user = user.to_string();
        // Wakes Watch streams: the new member's feed has its new root entry.
        self.change(caller, move |w| sharing::share(w, node, &user, role))
            .await
    }

    async fn shares(&self, caller: &Caller, node: u64) -> Result<Shares> {
        let caller = caller.clone();
        self.read(move |db, _| sharing::shares(db, &caller, node))
            .await
    }

    async fn revoke_share(&self, caller: &Caller, node: u64, user: &str) -> Result<Vec<String>> {
        let user = user.to_string();
        // Wakes every Watch stream, so those of the users who lost access end at once.
        self.change(caller, move |w| sharing::revoke(w, node, &user))
            .await
    }

    async fn add_comment(&self, caller: &Caller, node: u64, text: &str) -> Result<CommentRecord> {
        let text = text.to_string();
        self.change(caller, move |w| sharing::add_comment(w, node, &text))
            .await
    }

    async fn comments(&self, caller: &Caller, node: u64) -> Result<Vec<CommentRecord>> {
        let caller = caller.clone();
        self.read(move |db, _| sharing::comments(db, &caller, node))
            .await
    }

    async fn search_backlog(&self, limit: u32) -> Result<SearchBacklog> {
        self.read(move |db, _| search::backlog(db, limit)).await
    }

    async fn store_search_docs(
        &self,
        docs: Vec<SearchDoc>,
        cursors: Vec<(u64, u64)>,
    ) -> Result<()> {
        self.write_quietly(move |db, _| search::store(db, &docs, &cursors))
            .await
    }

    async fn search_heads(&self, caller: &Caller) -> Result<Vec<(u64, u64)>> {
        let caller = caller.clone();
        self.read(move |db, _| search::heads(db, &caller)).await
    }

    async fn search_covers(&self, heads: Vec<(u64, u64)>) -> Result<bool> {
        self.read(move |db, _| search::covers(db, &heads)).await
    }

    async fn search(
        &self,
        caller: &Caller,
        terms: Vec<String>,
        limit: u32,
    ) -> Result<Vec<SearchRow>> {
        let caller = caller.clone();
        self.read(move |db, _| search::search(db, &caller, &terms, limit))
            .await
    }

    async fn chunk_records(
        &self,
        after: Option<ChunkId>,
        limit: u32,
    ) -> Result<Vec<StoredChunkRef>> {
        self.read(move |db, _| content::chunk_records(db, after.as_ref(), limit))
            .await
    }

    async fn recount_usage(&self, repair: bool) -> Result<Vec<UsageDrift>> {
        if repair {
            self.write_quietly(|db, _| quota::recount(db, true)).await
        } else {
            self.read(|db, _| quota::recount(db, false)).await
        }
    }

    async fn prune_versions(&self, cutoff: Nanos, limit: u32) -> Result<u64> {
        self.write_quietly(move |db, now| history::prune_versions(db, cutoff, limit, now))
            .await
    }

    async fn purge_trash(&self, cutoff: Nanos, limit: u32) -> Result<u64> {
        self.write_quietly(move |db, now| trash::purge_expired(db, cutoff, limit, now))
            .await
    }

    async fn doom_chunks(&self, cutoff: Nanos, limit: u32) -> Result<Vec<ChunkId>> {
        self.write_quietly(move |db, now| prune::doom_chunks(db, cutoff, limit, now))
            .await
    }

    async fn forget_chunks(&self, ids: &[ChunkId]) -> Result<()> {
        let ids = ids.to_vec();
        self.write_quietly(move |db, _| prune::forget_chunks(db, &ids))
            .await
    }

    async fn take_lease(&self, name: &str, holder: &str, ttl: Nanos) -> Result<bool> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.write_quietly(move |db, now| {
            prune::take_lease(db, &name, &holder, now.saturating_add(ttl), now)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.write_quietly(move |db, _| prune::release_lease(db, &name, &holder))
            .await
    }

    async fn schema_version(&self) -> Result<u32> {
        self.engine.schema_version().await
    }
}
