//! The metadata store: users, sessions, the tree, versions, chunk records and the change
//! journal. [`MetaStore`] is the seam between the gRPC services and a database: the
//! embedded server uses [`sqlite::SqliteMetaStore`], scale-out uses
//! [`postgres::PostgresMetaStore`]. Both run the same logic in [`sql`].
//!
//! Every method that changes the tree writes its journal rows in the same transaction,
//! checks the caller's access itself (items the caller may not see are `NotFound`), and
//! wakes Watch streams through the [`crate::journal_hub::JournalHub`] after it commits.

pub mod postgres;
pub mod sql;
pub mod sqlite;

use async_trait::async_trait;
use loft_remote::content::{ChunkId, Manifest};
use loft_remote::proto;

use crate::error::Result;
pub use sql::access::Role;

/// The metadata schema version this build migrates to, on both backends.
pub const SCHEMA_VERSION: u32 = 6;

/// Nanoseconds since the Unix epoch; the unit of every time in the metadata store.
pub type Nanos = i64;

/// A registered user.
#[derive(Clone, Debug)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub password_hash: String,
    /// The user's home namespace and its root directory.
    pub home_ns: u64,
    pub root: u64,
    pub quota: Option<u64>,
}

/// A user's quota and what counts toward it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaUsage {
    /// `None`: no quota.
    pub quota: Option<u64>,
    /// Bytes of every version (current, kept and in the trash) in the namespaces the
    /// user owns.
    pub used: u64,
}

/// Who is calling: resolved from the bearer token by the auth layer.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: u64,
    pub user_name: String,
    pub device_id: u64,
    pub device_name: String,
    pub home_ns: u64,
    pub root: u64,
}

/// A device of a user, as listed by `loft devices list`.
#[derive(Clone, Debug)]
pub struct DeviceRecord {
    pub id: u64,
    pub name: String,
    pub created: Nanos,
    pub last_seen: Nanos,
    pub revoked: bool,
}

/// A new tree entry.
#[derive(Clone, Debug)]
pub struct NewNode {
    pub parent: u64,
    pub name: Vec<u8>,
    pub kind: proto::NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub symlink_target: Vec<u8>,
    pub rdev: u64,
    /// Fail with `AlreadyExists` rather than return an existing entry of the same kind.
    pub exclusive: bool,
    pub mtime: Option<Nanos>,
}

/// A rename request (`rename(2)` with `RENAME_NOREPLACE` / `RENAME_EXCHANGE`).
#[derive(Clone, Debug)]
pub struct RenameOp {
    pub parent: u64,
    pub name: Vec<u8>,
    pub new_parent: u64,
    pub new_name: Vec<u8>,
    pub no_replace: bool,
    pub exchange: bool,
    /// The node meant to move; 0 for whatever `name` holds.
    pub node: u64,
}

/// What a rename did.
#[derive(Clone, Debug)]
pub struct RenameOutcome {
    /// The node now at the new name.
    pub node: proto::Node,
    /// The target that was replaced, if any.
    pub replaced: Option<proto::Node>,
}

/// A remove request (unlink, rmdir, or a recursive delete into the trash).
#[derive(Clone, Debug)]
pub struct RemoveOp {
    pub parent: u64,
    pub name: Vec<u8>,
    pub recursive: bool,
    pub directory_only: bool,
    pub non_directory_only: bool,
    /// The node meant to go; 0 for whatever `name` holds.
    pub node: u64,
}

/// Attribute changes; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct AttrChange {
    pub id: u64,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<Nanos>,
    pub mtime: Option<Nanos>,
}

/// How `set_xattr` treats an existing attribute (the `XATTR_CREATE`/`XATTR_REPLACE` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrMode {
    Any,
    CreateOnly,
    ReplaceOnly,
}

/// A new version of a file's content.
#[derive(Clone, Debug)]
pub struct CommitOp {
    /// The file to write; 0 when `create` names a new file instead.
    pub node: u64,
    /// Create this file (non-exclusively) and commit into it, in one transaction.
    pub create: Option<NewNode>,
    pub base_version: u64,
    pub manifest: Manifest,
    pub mtime: Option<Nanos>,
    /// A file created by the commit gets this access time (its mtime when `None`).
    pub atime: Option<Nanos>,
}

/// Where committed content ended up.
#[derive(Clone, Debug)]
pub struct CommitOutcome {
    pub node: proto::Node,
    pub version: u64,
    /// Set when the base was stale: the content went to a conflicted copy of this name.
    pub conflict_name: Option<Vec<u8>>,
}

/// A stored chunk as recorded in the metadata.
#[derive(Clone, Copy, Debug)]
pub struct ChunkRecord {
    pub id: ChunkId,
    pub length: u32,
    pub stored_length: u32,
    pub compressed: bool,
}

/// A chunk the metadata records, as `loft-server check` sees it.
#[derive(Clone, Copy, Debug)]
pub struct StoredChunkRef {
    pub id: ChunkId,
    /// Some version references it (else it is an upload not yet committed, or garbage).
    pub referenced: bool,
    pub created: Nanos,
}

/// A user whose kept count of stored bytes differs from the sum of its versions, as
/// `loft-server check` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageDrift {
    pub user: String,
    /// What the user row holds (negative, too, when the count went wrong).
    pub counted: i64,
    /// What its versions add up to.
    pub stored: u64,
}

/// An item in the trash, as `loft trash list` shows it.
#[derive(Clone, Debug)]
pub struct TrashEntry {
    /// The item's node id (stable while it is in the trash).
    pub id: u64,
    /// Where it was, from the root of its namespace.
    pub path: Vec<u8>,
    pub kind: proto::NodeKind,
    /// Bytes of the current versions of the files it holds.
    pub size: u64,
    pub deleted: Nanos,
    /// The device that deleted it.
    pub device: String,
}

/// Which trash item to restore.
#[derive(Clone, Debug)]
pub enum TrashTarget {
    Id(u64),
    /// The item's original path; the most recently deleted one when several match.
    Path(Vec<u8>),
}

/// One read of the journal after a cursor.
#[derive(Clone, Debug, Default)]
pub struct JournalPage {
    /// Set when the cursor is older than the retained journal: the client must list the
    /// tree again and continue from this seq.
    pub reset_to: Option<u64>,
    pub changes: Vec<proto::Change>,
    /// The namespace's last seq when the page was read.
    pub head: u64,
}

/// A namespace the caller belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    pub ns: u64,
    /// The namespace's top node.
    pub root: u64,
    pub role: Role,
}

/// What a share did.
#[derive(Clone, Debug)]
pub struct ShareOutcome {
    pub ns: u64,
    /// The new member's name for the item at its drive's root (empty when the user was a
    /// member already and only its role changed).
    pub name: Vec<u8>,
}

/// A member of a shared item.
#[derive(Clone, Debug)]
pub struct MemberRecord {
    pub user: String,
    pub role: Role,
    /// Who granted it (empty for the owner).
    pub granted_by: String,
}

/// The members of a shared item (`ns` 0 and none when it is not shared).
#[derive(Clone, Debug, Default)]
pub struct Shares {
    pub ns: u64,
    pub members: Vec<MemberRecord>,
}

/// A comment on a node.
#[derive(Clone, Debug)]
pub struct CommentRecord {
    pub id: u64,
    pub node: u64,
    pub user: String,
    pub time: Nanos,
    pub text: String,
}

/// A listing page of a directory.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub entries: Vec<(Vec<u8>, proto::Node)>,
    pub more: bool,
    /// Journal seq of the directory's namespace that the listing is consistent with.
    pub cursor: u64,
}

/// What a public link lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkRole {
    /// Open the page, preview and download.
    Viewer = 1,
    /// Upload into the linked folder; nothing can be read.
    Upload = 2,
}

impl LinkRole {
    pub fn from_i64(value: i64) -> Option<LinkRole> {
        match value {
            1 => Some(LinkRole::Viewer),
            2 => Some(LinkRole::Upload),
            _ => None,
        }
    }
}

/// A new public link, as the links service asks the store to record it.
#[derive(Clone, Debug)]
pub struct NewLink {
    pub path: Vec<u8>,
    pub role: LinkRole,
    /// SHA-256 of the secret in the URL; the secret itself is never stored.
    pub secret_hash: [u8; 32],
    /// argon2id PHC string, when the link has a password.
    pub password_hash: Option<String>,
    pub expires: Option<Nanos>,
    pub max_downloads: Option<u64>,
}

/// A public link as stored.
#[derive(Clone, Debug)]
pub struct LinkRecord {
    pub id: u64,
    pub owner: u64,
    pub node: u64,
    /// The drive path the link was created for (display only).
    pub path: Vec<u8>,
    pub role: LinkRole,
    pub password_hash: Option<String>,
    pub created: Nanos,
    pub expires: Option<Nanos>,
    pub max_downloads: Option<u64>,
    pub downloads: u64,
    pub revoked: bool,
}

impl LinkRecord {
    /// Not revoked, not expired and not out of downloads at `now`.
    pub fn live(&self, now: Nanos) -> bool {
        !self.revoked
            && self.expires.is_none_or(|expires| expires > now)
            && self.max_downloads.is_none_or(|max| self.downloads < max)
    }
}

/// A live link and the caller it acts as (its creator, through no device).
#[derive(Clone, Debug)]
pub struct LinkGrant {
    pub link: LinkRecord,
    pub caller: Caller,
}

/// Fixed-window throttle of failed link passwords.
#[derive(Clone, Copy, Debug)]
pub struct ThrottlePolicy {
    /// Failures allowed per subject and window.
    pub failures: u32,
    pub window: Nanos,
}

/// A node whose search document may have changed, as the indexer reads it.
#[derive(Clone, Debug)]
pub struct SearchSource {
    pub inode: u64,
    /// Its name; `None` when the node is gone (deleted, trashed or unlinked).
    pub name: Option<Vec<u8>>,
    pub kind: proto::NodeKind,
    /// The current version's content, for a file that has one.
    pub manifest: Option<Manifest>,
}

/// The indexer's next batch: the nodes changed past its cursors, and the cursors
/// (namespace, journal seq) that indexing them reaches.
#[derive(Clone, Debug, Default)]
pub struct SearchBacklog {
    pub sources: Vec<SearchSource>,
    pub cursors: Vec<(u64, u64)>,
}

/// A node's search document: name and text, or `None` to drop it.
#[derive(Clone, Debug)]
pub struct SearchDoc {
    pub inode: u64,
    pub text: Option<(String, String)>,
}

/// A node that matched a search, with its path in the caller's drive and its text.
#[derive(Clone, Debug)]
pub struct SearchRow {
    pub node: u64,
    pub path: Vec<u8>,
    pub kind: proto::NodeKind,
    pub body: String,
}

/// The metadata operations the services need. Implementations: SQLite (embedded) and,
/// for scale-out, PostgreSQL.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    // -- users, devices, sessions
    async fn create_user(&self, name: &str, password_hash: &str) -> Result<User>;
    async fn user_by_name(&self, name: &str) -> Result<Option<User>>;
    /// Sets (or with `None` removes) a user's quota; it applies from the next commit.
    async fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<()>;
    /// The caller's quota and the bytes it uses (see [`sql::quota`]).
    async fn quota(&self, caller: &Caller) -> Result<QuotaUsage>;
    /// Opens a session for `device_name` (created on first use), returning the caller.
    async fn create_session(
        &self,
        user: u64,
        device_name: &str,
        token_hash: [u8; 32],
        expires: Nanos,
    ) -> Result<Caller>;
    /// The caller behind a token, if the session is live (not expired, not revoked).
    async fn session(&self, token_hash: [u8; 32], now: Nanos) -> Result<Option<Caller>>;
    async fn end_session(&self, token_hash: [u8; 32]) -> Result<()>;
    async fn list_devices(&self, user: u64) -> Result<Vec<DeviceRecord>>;
    /// Revokes a device and every session it holds.
    async fn revoke_device(&self, user: u64, device: u64) -> Result<()>;

    // -- tree
    async fn lookup(&self, caller: &Caller, parent: u64, name: &[u8]) -> Result<proto::Node>;
    async fn resolve(&self, caller: &Caller, path: &[u8]) -> Result<proto::Node>;
    async fn stat(&self, caller: &Caller, id: u64) -> Result<proto::Node>;
    async fn list(&self, caller: &Caller, dir: u64, after: &[u8], limit: u32) -> Result<Listing>;
    async fn create(&self, caller: &Caller, op: NewNode) -> Result<proto::Node>;
    async fn link(
        &self,
        caller: &Caller,
        node: u64,
        new_parent: u64,
        new_name: &[u8],
    ) -> Result<proto::Node>;
    async fn rename(&self, caller: &Caller, op: RenameOp) -> Result<RenameOutcome>;
    async fn remove(&self, caller: &Caller, op: RemoveOp) -> Result<()>;
    /// Several removals in one transaction, in order: all of them, or none.
    async fn remove_many(&self, caller: &Caller, ops: Vec<RemoveOp>) -> Result<()>;
    async fn set_attr(&self, caller: &Caller, change: AttrChange) -> Result<proto::Node>;
    async fn get_xattr(&self, caller: &Caller, id: u64, name: &[u8]) -> Result<Vec<u8>>;
    async fn set_xattr(
        &self,
        caller: &Caller,
        id: u64,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<()>;
    async fn list_xattr(&self, caller: &Caller, id: u64) -> Result<Vec<Vec<u8>>>;
    async fn remove_xattr(&self, caller: &Caller, id: u64, name: &[u8]) -> Result<()>;

    // -- content
    /// For each id: is the chunk stored and usable by the caller (uploaded by it within
    /// the grace period, or referenced by a version it can read)? A hash alone never
    /// grants access.
    async fn usable_chunks(&self, caller: &Caller, ids: &[ChunkId]) -> Result<Vec<bool>>;
    /// For each id: the stored chunk, if the caller may read it.
    async fn readable_chunks(
        &self,
        caller: &Caller,
        ids: &[ChunkId],
    ) -> Result<Vec<Option<ChunkRecord>>>;
    /// Records a chunk that is now durable in the chunk store, uploaded by the caller.
    /// Returns false if the store already had it.
    async fn record_chunk(&self, caller: &Caller, chunk: ChunkRecord) -> Result<bool>;
    /// Records several such chunks in one transaction: all of them, or none.
    async fn record_chunks(&self, caller: &Caller, chunks: Vec<ChunkRecord>) -> Result<()>;
    async fn manifest(&self, caller: &Caller, node: u64, version: u64) -> Result<Manifest>;
    async fn commit(&self, caller: &Caller, op: CommitOp) -> Result<CommitOutcome>;
    /// Several commits in one transaction: all of them, or none.
    async fn commit_many(&self, caller: &Caller, ops: Vec<CommitOp>) -> Result<Vec<CommitOutcome>>;
    async fn versions(&self, caller: &Caller, node: u64) -> Result<Vec<proto::Version>>;
    /// Makes an old version's content current again, as a new version (journaled).
    async fn restore_version(
        &self,
        caller: &Caller,
        node: u64,
        version: u64,
    ) -> Result<CommitOutcome>;

    // -- trash
    async fn list_trash(&self, caller: &Caller) -> Result<Vec<TrashEntry>>;
    /// Puts a trashed item back; returns it and the path it got.
    async fn restore_from_trash(
        &self,
        caller: &Caller,
        target: TrashTarget,
    ) -> Result<(proto::Node, Vec<u8>)>;
    /// Purges the caller's trash now; returns how many items went.
    async fn empty_trash(&self, caller: &Caller) -> Result<u64>;

    // -- journal
    async fn journal_since(
        &self,
        caller: &Caller,
        namespace: u64,
        cursor: u64,
        limit: u32,
    ) -> Result<JournalPage>;

    // -- public links
    /// Records a link to `path`, which the caller must own.
    async fn create_link(&self, caller: &Caller, link: NewLink) -> Result<LinkRecord>;
    /// The caller's links, newest first.
    async fn list_links(&self, caller: &Caller) -> Result<Vec<LinkRecord>>;
    /// Revokes one of the caller's links (others' are `NotFound`).
    async fn revoke_link(&self, caller: &Caller, id: u64) -> Result<()>;
    /// The live link whose secret hashes to `secret_hash`.
    async fn link_by_secret(&self, secret_hash: [u8; 32]) -> Result<Option<LinkGrant>>;
    /// The live link `id`.
    async fn link_by_id(&self, id: u64) -> Result<Option<LinkGrant>>;
    /// Counts one completed download of link `id`.
    async fn count_link_download(&self, id: u64) -> Result<()>;
    /// When any of `subjects` has used up its failed passwords: the time the window
    /// ends. `None`: a password may be tried.
    async fn password_throttled(
        &self,
        subjects: &[String],
        policy: ThrottlePolicy,
    ) -> Result<Option<Nanos>>;
    /// Counts a failed password against each of `subjects`.
    async fn password_failed(&self, subjects: &[String], policy: ThrottlePolicy) -> Result<()>;
    /// The server-wide secret `name`, set to `fresh` if there is none yet (every server
    /// process then reads the same one).
    async fn server_secret(&self, name: &str, fresh: [u8; 32]) -> Result<Vec<u8>>;
    /// The feed of everything the caller belongs to (its home and each shared item),
    /// after `cursor`; positions are the caller's own.
    async fn feed_since(&self, caller: &Caller, cursor: u64, limit: u32) -> Result<JournalPage>;

    // -- sharing
    /// Every namespace the caller belongs to, with its role there.
    async fn memberships(&self, caller: &Caller) -> Result<Vec<Membership>>;
    /// Shares the folder or file `node` with `user` as `role` (or changes its role).
    async fn share(
        &self,
        caller: &Caller,
        node: u64,
        user: &str,
        role: Role,
    ) -> Result<ShareOutcome>;
    async fn shares(&self, caller: &Caller, node: u64) -> Result<Shares>;
    /// Revokes `user` and, cascading, those it shared with; returns who lost access.
    async fn revoke_share(&self, caller: &Caller, node: u64, user: &str) -> Result<Vec<String>>;
    async fn add_comment(&self, caller: &Caller, node: u64, text: &str) -> Result<CommentRecord>;
    async fn comments(&self, caller: &Caller, node: u64) -> Result<Vec<CommentRecord>>;

    // -- search
    /// The indexer's next batch, at most `limit` journal rows.
    async fn search_backlog(&self, limit: u32) -> Result<SearchBacklog>;
    /// Stores documents and moves the indexer's cursors on, in one transaction.
    async fn store_search_docs(&self, docs: Vec<SearchDoc>, cursors: Vec<(u64, u64)>)
    -> Result<()>;
    /// The journal heads (namespace, seq) of everything the caller belongs to.
    async fn search_heads(&self, caller: &Caller) -> Result<Vec<(u64, u64)>>;
    /// Whether the index covers every one of `heads`.
    async fn search_covers(&self, heads: Vec<(u64, u64)>) -> Result<bool>;
    /// The caller's live nodes whose name or text has every one of `terms` (lower-case
    /// words, each matched as a prefix), best first.
    async fn search(
        &self,
        caller: &Caller,
        terms: Vec<String>,
        limit: u32,
    ) -> Result<Vec<SearchRow>>;

    // -- maintenance
    /// Recorded chunks in id order after `after`, at most `limit` of them.
    async fn chunk_records(
        &self,
        after: Option<ChunkId>,
        limit: u32,
    ) -> Result<Vec<StoredChunkRef>>;
    /// Users whose kept count of stored bytes differs from their versions' sum; with
    /// `repair`, each count is set to the sum.
    async fn recount_usage(&self, repair: bool) -> Result<Vec<UsageDrift>>;
    /// Deletes at most `limit` non-current versions created before `cutoff`.
    async fn prune_versions(&self, cutoff: Nanos, limit: u32) -> Result<u64>;
    /// Purges at most `limit` trash items deleted before `cutoff`.
    async fn purge_trash(&self, cutoff: Nanos, limit: u32) -> Result<u64>;
    /// Marks unreferenced chunks idle since before `cutoff` for deletion (see
    /// [`sql::prune`]); returns the chunks to delete from the store.
    async fn doom_chunks(&self, cutoff: Nanos, limit: u32) -> Result<Vec<ChunkId>>;
    /// Forgets doomed chunks that are gone from the store.
    async fn forget_chunks(&self, ids: &[ChunkId]) -> Result<()>;
    /// Takes or extends the lease `name` for `ttl`; false when another holder has it.
    async fn take_lease(&self, name: &str, holder: &str, ttl: Nanos) -> Result<bool>;
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
    /// The version of the database schema.
    async fn schema_version(&self) -> Result<u32>;
}

/// The current time in [`Nanos`].
pub fn now_nanos() -> Nanos {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_nanos()).unwrap_or(i64::MAX)
}

/// Converts [`Nanos`] to the wire's timestamp.
pub fn to_timestamp(nanos: Nanos) -> proto::Timestamp {
    proto::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as u32,
    }
}

/// Converts the wire's timestamp to [`Nanos`], saturating far-away times.
pub fn from_timestamp(ts: &proto::Timestamp) -> Nanos {
    ts.seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(ts.nanos.min(999_999_999)))
}
