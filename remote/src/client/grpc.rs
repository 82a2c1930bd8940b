//! [`RemoteClient`] over tonic, on TCP (optionally TLS) or a unix socket.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

use super::{RemoteClient, RemoteError, RemoteResult, ServerAddress};
use crate::content::ChunkId;
use crate::errors::{ErrorKind, retry_after};
use crate::proto::{
    self, auth_client::AuthClient, commit_client::CommitClient, content_client::ContentClient,
    links_client::LinksClient, search_client::SearchClient, sharing_client::SharingClient,
    trash_client::TrashClient, tree_client::TreeClient, watch_client::WatchClient,
};

/// Largest gRPC message either side sends: a 4 MiB chunk plus framing.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// How long a call refused by the server's rate limit keeps being retried.
const RATE_LIMIT_PATIENCE: Duration = Duration::from_secs(60);

/// How to reach a server.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Extra CA certificate (PEM) to trust for `https://` servers.
    pub ca_cert: Option<PathBuf>,
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            ca_cert: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A client of one server, or of several that serve the same drive (one PostgreSQL and
/// one bucket behind them). Calls go to the current server over one HTTP/2 connection,
/// reconnected by tonic when it breaks; when a server cannot be reached, the client
/// moves on to the next address and sends the call there.
#[derive(Clone)]
pub struct GrpcClient {
    channels: Arc<[Channel]>,
    addresses: Arc<[String]>,
    current: Arc<AtomicUsize>,
    token: Arc<RwLock<Option<String>>>,
}

impl GrpcClient {
    /// Prepares a client; the connection is made on first use, so an unreachable server
    /// shows up as `Unavailable` errors from calls rather than here.
    pub fn connect(address: &ServerAddress, options: &ConnectOptions) -> RemoteResult<Self> {
        Self::connect_any(std::slice::from_ref(address), options)
    }

    /// Like [`GrpcClient::connect`], to whichever of `addresses` answers: the first one
    /// first, then each in turn whenever the current one is unreachable.
    pub fn connect_any(
        addresses: &[ServerAddress],
        options: &ConnectOptions,
    ) -> RemoteResult<Self> {
        if addresses.is_empty() {
            return Err(RemoteError::new(
                ErrorKind::InvalidArgument,
                "no server address given",
            ));
        }
        let channels = addresses
            .iter()
            .map(|address| channel_to(address, options))
            .collect::<RemoteResult<Vec<_>>>()?;
        Ok(GrpcClient {
            channels: channels.into(),
            addresses: addresses.iter().map(ToString::to_string).collect(),
            current: Arc::new(AtomicUsize::new(0)),
            token: Arc::new(RwLock::new(None)),
        })
    }

    /// The address calls go to now.
    pub fn current_address(&self) -> &str {
        &self.addresses[self.current.load(Ordering::Relaxed) % self.addresses.len()]
    }

    /// The current server's channel and its index.
    fn channel(&self) -> (usize, Channel) {
        let index = self.current.load(Ordering::Relaxed) % self.channels.len();
        (index, self.channels[index].clone())
    }

    /// After a call to server `used` failed with `status`: when the server could not be
    /// reached and another address is known, makes the next one current (unless another
    /// call already moved on) and says so.
    fn fail_over(&self, used: usize, status: &tonic::Status) -> bool {
        if self.channels.len() < 2 || status.code() != tonic::Code::Unavailable {
            return false;
        }
        let next = (used + 1) % self.channels.len();
        if self
            .current
            .compare_exchange(used, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(
                from = %self.addresses[used],
                to = %self.addresses[next],
                error = %status.message(),
                "server unreachable; moving to the next address"
            );
        }
        true
    }

    /// The error of a call to server `used` that cannot be sent again (a stream), after
    /// moving on to the next server for the caller's retry if that one went away.
    fn failed(&self, used: usize, status: tonic::Status) -> RemoteError {
        self.fail_over(used, &status);
        RemoteError::from(status)
    }

    /// Maps a streaming reply's errors, moving on to the next server when the stream
    /// broke because its server went away.
    fn follow<T: Send + 'static>(
        &self,
        used: usize,
        stream: tonic::Streaming<T>,
    ) -> BoxStream<'static, RemoteResult<T>> {
        let client = self.clone();
        stream
            .map(move |item| item.map_err(|status| client.failed(used, status)))
            .boxed()
    }

    /// Sets the bearer token sent with every call.
    pub fn set_token(&self, token: Option<String>) {
        if let Ok(mut slot) = self.token.write() {
            *slot = token;
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(token) = self.token.read()
            && let Some(token) = token.as_ref()
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    fn auth(channel: Channel) -> AuthClient<Channel> {
        AuthClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
    }
    fn tree(channel: Channel) -> TreeClient<Channel> {
        TreeClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
    }
    fn content(channel: Channel) -> ContentClient<Channel> {
        ContentClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
    fn commits(channel: Channel) -> CommitClient<Channel> {
        CommitClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
    }
    fn trash(channel: Channel) -> TrashClient<Channel> {
        TrashClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
    }

    fn links(channel: Channel) -> LinksClient<Channel> {
        LinksClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
    }

    fn search_client(channel: Channel) -> SearchClient<Channel> {
        SearchClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
    }

    fn sharing(channel: Channel) -> SharingClient<Channel> {
        SharingClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
    }
}

/// Makes a unary call. One that a rate limit refused (it did nothing) is sent again
/// after the wait the server asked for, for up to [`RATE_LIMIT_PATIENCE`] in all; one
/// whose server could not be reached is sent to each other known server in turn.
macro_rules! unary {
    ($self:ident, $service:ident, $method:ident, $message:expr) => {{
        let message = $message;
        let mut waited = Duration::ZERO;
        let mut moved = 0;
        loop {
            let (used, channel) = $self.channel();
            match GrpcClient::$service(channel)
                .$method($self.request(message.clone()))
                .await
            {
                Ok(reply) => break Ok::<_, RemoteError>(reply),
                Err(status) => match retry_after(&status) {
                    Some(wait) if waited < RATE_LIMIT_PATIENCE => {
                        tracing::debug!(?wait, "rate limited; waiting");
                        waited += wait;
                        tokio::time::sleep(wait).await;
                    }
                    _ if moved + 1 < $self.channels.len() && $self.fail_over(used, &status) => {
                        moved += 1;
                    }
                    _ => break Err(RemoteError::from(status)),
                },
            }
        }
    }};
}

#[async_trait]
impl RemoteClient for GrpcClient {
    async fn login(
        &self,
        user: &str,
        password: &str,
        device: &str,
    ) -> RemoteResult<proto::LoginReply> {
        let request = proto::LoginRequest {
            user: user.to_string(),
            password: password.to_string(),
            device_name: device.to_string(),
        };
        let reply = unary!(self, auth, login, request)?.into_inner();
        self.set_token(Some(reply.token.clone()));
        Ok(reply)
    }

    async fn logout(&self) -> RemoteResult<()> {
        unary!(self, auth, logout, proto::Empty {})?;
        Ok(())
    }

    async fn who_am_i(&self) -> RemoteResult<proto::Session> {
        Ok(unary!(self, auth, who_am_i, proto::Empty {})?.into_inner())
    }

    async fn list_devices(&self) -> RemoteResult<Vec<proto::Device>> {
        Ok(unary!(self, auth, list_devices, proto::Empty {})?
            .into_inner()
            .devices)
    }

    async fn revoke_device(&self, request: proto::RevokeDeviceRequest) -> RemoteResult<()> {
        unary!(self, auth, revoke_device, request)?;
        Ok(())
    }

    async fn quota(&self) -> RemoteResult<proto::Quota> {
        Ok(unary!(self, auth, get_quota, proto::Empty {})?.into_inner())
    }

    async fn lookup(&self, parent: u64, name: &[u8]) -> RemoteResult<proto::Node> {
        let request = proto::LookupRequest {
            parent,
            name: name.to_vec().into(),
        };
        Ok(unary!(self, tree, lookup, request)?.into_inner())
    }

    async fn resolve(&self, path: &[u8]) -> RemoteResult<proto::Node> {
        let request = proto::ResolveRequest {
            path: path.to_vec().into(),
        };
        Ok(unary!(self, tree, resolve, request)?.into_inner())
    }

    async fn stat(&self, id: u64) -> RemoteResult<proto::Node> {
        Ok(unary!(self, tree, stat, proto::StatRequest { id })?.into_inner())
    }

    async fn list(&self, dir: u64, after: &[u8], limit: u32) -> RemoteResult<proto::ListReply> {
        let request = proto::ListRequest {
            dir,
            after: after.to_vec().into(),
            limit,
        };
        Ok(unary!(self, tree, list, request)?.into_inner())
    }

    async fn create(&self, request: proto::CreateRequest) -> RemoteResult<proto::Node> {
        Ok(unary!(self, tree, create, request)?.into_inner())
    }

    async fn link(&self, node: u64, new_parent: u64, new_name: &[u8]) -> RemoteResult<proto::Node> {
        let request = proto::LinkRequest {
            node,
            new_parent,
            new_name: new_name.to_vec().into(),
        };
        Ok(unary!(self, tree, link, request)?.into_inner())
    }

    async fn rename(&self, request: proto::RenameRequest) -> RemoteResult<proto::RenameReply> {
        Ok(unary!(self, tree, rename, request)?.into_inner())
    }

    async fn remove(&self, request: proto::RemoveRequest) -> RemoteResult<()> {
        unary!(self, tree, remove, request)?;
        Ok(())
    }

    async fn remove_batch(&self, requests: Vec<proto::RemoveRequest>) -> RemoteResult<()> {
        let request = proto::RemoveBatchRequest { removes: requests };
        unary!(self, tree, remove_batch, request)?;
        Ok(())
    }

    async fn set_attr(&self, request: proto::SetAttrRequest) -> RemoteResult<proto::Node> {
        Ok(unary!(self, tree, set_attr, request)?.into_inner())
    }

    async fn get_xattr(&self, id: u64, name: &[u8]) -> RemoteResult<Vec<u8>> {
        let request = proto::XattrRequest {
            id,
            name: name.to_vec().into(),
            ..Default::default()
        };
        Ok(unary!(self, tree, get_xattr, request)?
            .into_inner()
            .value
            .to_vec())
    }

    async fn set_xattr(&self, id: u64, name: &[u8], value: &[u8], flags: u32) -> RemoteResult<()> {
        let request = proto::XattrRequest {
            id,
            name: name.to_vec().into(),
            value: value.to_vec().into(),
            flags,
        };
        unary!(self, tree, set_xattr, request)?;
        Ok(())
    }

    async fn list_xattr(&self, id: u64) -> RemoteResult<Vec<Vec<u8>>> {
        let names = unary!(self, tree, list_xattr, proto::StatRequest { id })?.into_inner();
        Ok(names.names.into_iter().map(|name| name.to_vec()).collect())
    }

    async fn remove_xattr(&self, id: u64, name: &[u8]) -> RemoteResult<()> {
        let request = proto::XattrRequest {
            id,
            name: name.to_vec().into(),
            ..Default::default()
        };
        unary!(self, tree, remove_xattr, request)?;
        Ok(())
    }

    async fn have_chunks(&self, ids: &[ChunkId]) -> RemoteResult<Vec<bool>> {
        let request = proto::HaveChunksRequest {
            ids: ids.iter().map(|id| id.0.to_vec().into()).collect(),
        };
        let present = unary!(self, content, have_chunks, request)?
            .into_inner()
            .present;
        if present.len() != ids.len() {
            return Err(RemoteError::new(
                ErrorKind::Internal,
                "server answered for a different number of chunks",
            ));
        }
        Ok(present)
    }

    async fn put_chunks(
        &self,
        chunks: tokio::sync::mpsc::Receiver<proto::ChunkUpload>,
    ) -> RemoteResult<proto::PutChunksReply> {
        let stream = tokio_stream::wrappers::ReceiverStream::new(chunks);
        let (used, channel) = self.channel();
        GrpcClient::content(channel)
            .put_chunks(self.request(stream))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| self.failed(used, status))
    }

    async fn get_chunks(
        &self,
        ranges: Vec<proto::ChunkRange>,
    ) -> RemoteResult<BoxStream<'static, RemoteResult<proto::ChunkData>>> {
        let stream = unary!(
            self,
            content,
            get_chunks,
            proto::GetChunksRequest { ranges }
        )?
        .into_inner();
        Ok(self.follow(self.channel().0, stream))
    }

    async fn get_manifest(&self, node: u64, version: u64) -> RemoteResult<proto::Manifest> {
        let request = proto::GetManifestRequest { node, version };
        Ok(unary!(self, content, get_manifest, request)?.into_inner())
    }

    async fn commit(&self, request: proto::CommitRequest) -> RemoteResult<proto::CommitReply> {
        Ok(unary!(self, commits, commit, request)?.into_inner())
    }

    async fn commit_batch(
        &self,
        requests: Vec<proto::CommitRequest>,
    ) -> RemoteResult<Vec<proto::CommitReply>> {
        let request = proto::CommitBatchRequest { commits: requests };
        Ok(unary!(self, commits, commit_batch, request)?
            .into_inner()
            .replies)
    }

    async fn list_versions(&self, node: u64) -> RemoteResult<Vec<proto::Version>> {
        let request = proto::VersionsRequest { node };
        Ok(unary!(self, commits, list_versions, request)?
            .into_inner()
            .versions)
    }

    async fn restore_version(&self, node: u64, version: u64) -> RemoteResult<proto::CommitReply> {
        let request = proto::RestoreVersionRequest { node, version };
        Ok(unary!(self, commits, restore_version, request)?.into_inner())
    }

    async fn list_trash(&self) -> RemoteResult<Vec<proto::TrashItem>> {
        Ok(unary!(self, trash, list_trash, proto::Empty {})?
            .into_inner()
            .items)
    }

    async fn restore_trash(
        &self,
        request: proto::RestoreTrashRequest,
    ) -> RemoteResult<proto::RestoreTrashReply> {
        Ok(unary!(self, trash, restore_trash, request)?.into_inner())
    }

    async fn empty_trash(&self) -> RemoteResult<u64> {
        Ok(unary!(self, trash, empty_trash, proto::Empty {})?
            .into_inner()
            .purged)
    }

    async fn share(&self, request: proto::ShareRequest) -> RemoteResult<proto::ShareReply> {
        Ok(unary!(self, sharing, share, request)?.into_inner())
    }

    async fn list_shares(&self, node: u64) -> RemoteResult<proto::MemberList> {
        let request = proto::SharesRequest { node };
        Ok(unary!(self, sharing, list_shares, request)?.into_inner())
    }

    async fn revoke_share(&self, node: u64, user: &str) -> RemoteResult<Vec<String>> {
        let request = proto::RevokeShareRequest {
            node,
            user: user.to_string(),
        };
        Ok(unary!(self, sharing, revoke_share, request)?
            .into_inner()
            .revoked)
    }

    async fn add_comment(&self, node: u64, text: &str) -> RemoteResult<proto::Comment> {
        let request = proto::CommentRequest {
            node,
            text: text.to_string(),
        };
        Ok(unary!(self, sharing, add_comment, request)?.into_inner())
    }

    async fn list_comments(&self, node: u64) -> RemoteResult<Vec<proto::Comment>> {
        let request = proto::CommentsRequest { node };
        Ok(unary!(self, sharing, list_comments, request)?
            .into_inner()
            .comments)
    }

    async fn watch(
        &self,
        namespace: u64,
        cursor: u64,
    ) -> RemoteResult<BoxStream<'static, RemoteResult<proto::WatchEvent>>> {
        let request = proto::WatchRequest { namespace, cursor };
        let (used, channel) = self.channel();
        let reply = WatchClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(self.request(request))
            .await
            .map_err(|status| self.failed(used, status))?;
        Ok(self.follow(used, reply.into_inner()))
    }

    async fn create_link(
        &self,
        request: proto::CreateLinkRequest,
    ) -> RemoteResult<proto::CreateLinkReply> {
        Ok(unary!(self, links, create_link, request)?.into_inner())
    }

    async fn list_links(&self) -> RemoteResult<Vec<proto::LinkInfo>> {
        Ok(unary!(self, links, list_links, proto::Empty {})?
            .into_inner()
            .links)
    }

    async fn revoke_link(&self, id: u64) -> RemoteResult<()> {
        unary!(self, links, revoke_link, proto::RevokeLinkRequest { id })?;
        Ok(())
    }

    async fn search(&self, query: &str, limit: u32) -> RemoteResult<Vec<proto::SearchHit>> {
        let request = proto::SearchRequest {
            query: query.to_string(),
            limit,
        };
        Ok(unary!(self, search_client, search, request)?
            .into_inner()
            .hits)
    }
}

/// A lazily connected channel to `address`.
fn channel_to(address: &ServerAddress, options: &ConnectOptions) -> RemoteResult<Channel> {
    let invalid =
        |e: tonic::transport::Error| RemoteError::new(ErrorKind::InvalidArgument, e.to_string());
    let tune = |endpoint: Endpoint| {
        endpoint
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(Some(32 << 20))
            .initial_connection_window_size(Some(64 << 20))
            // Downloaded chunks arrive in a few frames, not 64 of 16 KiB each.
            .max_frame_size(1u32 << 20)
    };
    Ok(match address {
        ServerAddress::Url(url) => {
            let mut endpoint = tune(Endpoint::from_shared(url.clone()).map_err(invalid)?);
            if url.starts_with("https://") {
                let mut tls = ClientTlsConfig::new().with_webpki_roots();
                if let Some(ca) = &options.ca_cert {
                    let pem = std::fs::read(ca).map_err(|e| {
                        RemoteError::new(
                            ErrorKind::InvalidArgument,
                            format!("reading {}: {e}", ca.display()),
                        )
                    })?;
                    tls = tls.ca_certificate(Certificate::from_pem(pem));
                }
                endpoint = endpoint.tls_config(tls).map_err(invalid)?;
            }
            endpoint.connect_lazy()
        }
        ServerAddress::Unix(path) => {
            let path = path.clone();
            // The URI is required by the API but unused: the connector dials the socket.
            tune(Endpoint::from_static("http://loft.invalid")).connect_with_connector_lazy(
                tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }),
            )
        }
    })
}
