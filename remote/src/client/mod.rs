//! The typed client: [`RemoteClient`] is what the rest of the client side talks to;
//! [`GrpcClient`] implements it over tonic. Tests wrap it to inject faults.

mod address;
mod grpc;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::content::ChunkId;
use crate::errors::{ErrorKind, kind_of};
use crate::proto;

pub use address::ServerAddress;
pub use grpc::{ConnectOptions, GrpcClient};

/// An error from the server or the connection to it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub kind: ErrorKind,
    pub message: String,
}

impl RemoteError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RemoteError {
            kind,
            message: message.into(),
        }
    }

    /// True when the server could not be reached (retry later, work offline).
    pub fn is_unavailable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }

    /// True when the same call may succeed later: the server was unreachable, or its
    /// rate limit refused the call (which then did nothing).
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::RateLimited)
    }
}

impl From<tonic::Status> for RemoteError {
    fn from(status: tonic::Status) -> Self {
        let kind = kind_of(&status);
        let message = match status.message() {
            "" => format!("{:?}", status.code()),
            text => text.to_string(),
        };
        RemoteError { kind, message }
    }
}

impl From<tonic::transport::Error> for RemoteError {
    fn from(error: tonic::transport::Error) -> Self {
        RemoteError::new(
            ErrorKind::Unavailable,
            format!("cannot reach the server: {error}"),
        )
    }
}

/// Result of remote calls.
pub type RemoteResult<T> = Result<T, RemoteError>;

/// Every call Loft's client side makes to a server.
#[async_trait]
pub trait RemoteClient: Send + Sync + 'static {
    async fn login(
        &self,
        user: &str,
        password: &str,
        device: &str,
    ) -> RemoteResult<proto::LoginReply>;
    async fn logout(&self) -> RemoteResult<()>;
    async fn who_am_i(&self) -> RemoteResult<proto::Session>;
    async fn list_devices(&self) -> RemoteResult<Vec<proto::Device>>;
    async fn revoke_device(&self, request: proto::RevokeDeviceRequest) -> RemoteResult<()>;
    /// The caller's quota and the bytes that count toward it.
    async fn quota(&self) -> RemoteResult<proto::Quota>;

    async fn lookup(&self, parent: u64, name: &[u8]) -> RemoteResult<proto::Node>;
    async fn resolve(&self, path: &[u8]) -> RemoteResult<proto::Node>;
    async fn stat(&self, id: u64) -> RemoteResult<proto::Node>;
    async fn list(&self, dir: u64, after: &[u8], limit: u32) -> RemoteResult<proto::ListReply>;
    async fn create(&self, request: proto::CreateRequest) -> RemoteResult<proto::Node>;
    async fn link(&self, node: u64, new_parent: u64, new_name: &[u8]) -> RemoteResult<proto::Node>;
    async fn rename(&self, request: proto::RenameRequest) -> RemoteResult<proto::RenameReply>;
    async fn remove(&self, request: proto::RemoveRequest) -> RemoteResult<()>;
    /// Several removals in one server transaction, in order: all, or none (the first
    /// failure's error).
    async fn remove_batch(&self, requests: Vec<proto::RemoveRequest>) -> RemoteResult<()>;
    async fn set_attr(&self, request: proto::SetAttrRequest) -> RemoteResult<proto::Node>;
    async fn get_xattr(&self, id: u64, name: &[u8]) -> RemoteResult<Vec<u8>>;
    async fn set_xattr(&self, id: u64, name: &[u8], value: &[u8], flags: u32) -> RemoteResult<()>;
    async fn list_xattr(&self, id: u64) -> RemoteResult<Vec<Vec<u8>>>;
    async fn remove_xattr(&self, id: u64, name: &[u8]) -> RemoteResult<()>;

    /// Which of `ids` the server holds and the caller may use.
    async fn have_chunks(&self, ids: &[ChunkId]) -> RemoteResult<Vec<bool>>;
    /// Uploads a stream of encoded chunks; each is stored as soon as it arrives (and
    /// recorded together with the ones stored around it), so an interrupted upload
    /// keeps what got through.
    /// The producer sends into a channel, so it can chunk on another thread while the
    /// upload runs, with the channel's capacity bounding memory.
    async fn put_chunks(
        &self,
        chunks: tokio::sync::mpsc::Receiver<proto::ChunkUpload>,
    ) -> RemoteResult<proto::PutChunksReply>;
    /// Downloads chunk ranges, in request order.
    async fn get_chunks(
        &self,
        ranges: Vec<proto::ChunkRange>,
    ) -> RemoteResult<BoxStream<'static, RemoteResult<proto::ChunkData>>>;
    async fn get_manifest(&self, node: u64, version: u64) -> RemoteResult<proto::Manifest>;
    async fn commit(&self, request: proto::CommitRequest) -> RemoteResult<proto::CommitReply>;
    /// Commits several files in one transaction: all or none.
    async fn commit_batch(
        &self,
        requests: Vec<proto::CommitRequest>,
    ) -> RemoteResult<Vec<proto::CommitReply>>;
    async fn list_versions(&self, node: u64) -> RemoteResult<Vec<proto::Version>>;
    /// Makes an old version's content current again (a new version, no upload).
    async fn restore_version(&self, node: u64, version: u64) -> RemoteResult<proto::CommitReply>;

    async fn list_trash(&self) -> RemoteResult<Vec<proto::TrashItem>>;
    async fn restore_trash(
        &self,
        request: proto::RestoreTrashRequest,
    ) -> RemoteResult<proto::RestoreTrashReply>;
    /// Purges the trash; returns how many items went.
    async fn empty_trash(&self) -> RemoteResult<u64>;

    /// Shares a folder or file with a user (or changes the user's role).
    async fn share(&self, request: proto::ShareRequest) -> RemoteResult<proto::ShareReply>;
    /// The members of a shared item.
    async fn list_shares(&self, node: u64) -> RemoteResult<proto::MemberList>;
    /// Revokes a member (and those it shared with); returns who lost access.
    async fn revoke_share(&self, node: u64, user: &str) -> RemoteResult<Vec<String>>;
    async fn add_comment(&self, node: u64, text: &str) -> RemoteResult<proto::Comment>;
    async fn list_comments(&self, node: u64) -> RemoteResult<Vec<proto::Comment>>;

    /// Follows a namespace's journal from `cursor`; namespace 0 is the caller's feed
    /// over every namespace it belongs to.
    async fn watch(
        &self,
        namespace: u64,
        cursor: u64,
    ) -> RemoteResult<BoxStream<'static, RemoteResult<proto::WatchEvent>>>;

    /// Creates a public link; the reply holds the URL with its secret.
    async fn create_link(
        &self,
        request: proto::CreateLinkRequest,
    ) -> RemoteResult<proto::CreateLinkReply>;
    /// The caller's public links.
    async fn list_links(&self) -> RemoteResult<Vec<proto::LinkInfo>>;
    async fn revoke_link(&self, id: u64) -> RemoteResult<()>;

    // -- search
    /// Names and text content within what the caller can read, best first; `limit` 0
    /// is the server's default.
    async fn search(&self, query: &str, limit: u32) -> RemoteResult<Vec<proto::SearchHit>>;
}
