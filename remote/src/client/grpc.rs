//! [`RemoteClient`] over tonic, on TCP (optionally TLS) or a unix socket.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

use super::{RemoteClient, RemoteError, RemoteResult, ServerAddress};
use crate::content::ChunkId;
use crate::errors::ErrorKind;
use crate::proto::{
    self, auth_client::AuthClient, commit_client::CommitClient, content_client::ContentClient,
    links_client::LinksClient, search_client::SearchClient, sharing_client::SharingClient,
    trash_client::TrashClient, tree_client::TreeClient, watch_client::WatchClient,
};

/// Largest gRPC message either side sends: a 4 MiB chunk plus framing.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

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

/// A client on one HTTP/2 connection (reconnected by tonic when it breaks).
#[derive(Clone)]
pub struct GrpcClient {
    channel: Channel,
    token: Arc<RwLock<Option<String>>>,
}

impl GrpcClient {
    /// Prepares a client; the connection is made on first use, so an unreachable server
    /// shows up as `Unavailable` errors from calls rather than here.
    pub fn connect(address: &ServerAddress, options: &ConnectOptions) -> RemoteResult<Self> {
        let invalid = |e: tonic::transport::Error| {
            RemoteError::new(ErrorKind::InvalidArgument, e.to_string())
        };
        let tune = |endpoint: Endpoint| {
            endpoint
                .connect_timeout(options.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(20))
                .keep_alive_timeout(Duration::from_secs(20))
                .keep_alive_while_idle(true)
                .initial_stream_window_size(Some(32 << 20))
                .initial_connection_window_size(Some(64 << 20))
        };
        let channel = match address {
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
        };
        Ok(GrpcClient {
            channel,
            token: Arc::new(RwLock::new(None)),
        })
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

    fn auth(&self) -> AuthClient<Channel> {
        AuthClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }
    fn tree(&self) -> TreeClient<Channel> {
        TreeClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }
    fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
    fn commits(&self) -> CommitClient<Channel> {
        CommitClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }
    fn trash(&self) -> TrashClient<Channel> {
        TrashClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    fn links(&self) -> LinksClient<Channel> {
        LinksClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    fn search_client(&self) -> SearchClient<Channel> {
        SearchClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    fn sharing(&self) -> SharingClient<Channel> {
        SharingClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }
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
        let reply = self.auth().login(request).await?.into_inner();
        self.set_token(Some(reply.token.clone()));
        Ok(reply)
    }

    async fn logout(&self) -> RemoteResult<()> {
        self.auth().logout(self.request(proto::Empty {})).await?;
        Ok(())
    }

    async fn who_am_i(&self) -> RemoteResult<proto::Session> {
        Ok(self
            .auth()
            .who_am_i(self.request(proto::Empty {}))
            .await?
            .into_inner())
    }

    async fn list_devices(&self) -> RemoteResult<Vec<proto::Device>> {
        Ok(self
            .auth()
            .list_devices(self.request(proto::Empty {}))
            .await?
            .into_inner()
            .devices)
    }

    async fn revoke_device(&self, request: proto::RevokeDeviceRequest) -> RemoteResult<()> {
        self.auth().revoke_device(self.request(request)).await?;
        Ok(())
    }

    async fn lookup(&self, parent: u64, name: &[u8]) -> RemoteResult<proto::Node> {
        let request = proto::LookupRequest {
            parent,
            name: name.to_vec().into(),
        };
        Ok(self
            .tree()
            .lookup(self.request(request))
            .await?
            .into_inner())
    }

    async fn resolve(&self, path: &[u8]) -> RemoteResult<proto::Node> {
        let request = proto::ResolveRequest {
            path: path.to_vec().into(),
        };
        Ok(self
            .tree()
            .resolve(self.request(request))
            .await?
            .into_inner())
    }

    async fn stat(&self, id: u64) -> RemoteResult<proto::Node> {
        Ok(self
            .tree()
            .stat(self.request(proto::StatRequest { id }))
            .await?
            .into_inner())
    }

    async fn list(&self, dir: u64, after: &[u8], limit: u32) -> RemoteResult<proto::ListReply> {
        let request = proto::ListRequest {
            dir,
            after: after.to_vec().into(),
            limit,
        };
        Ok(self.tree().list(self.request(request)).await?.into_inner())
    }

    async fn create(&self, request: proto::CreateRequest) -> RemoteResult<proto::Node> {
        Ok(self
            .tree()
            .create(self.request(request))
            .await?
            .into_inner())
    }

    async fn link(&self, node: u64, new_parent: u64, new_name: &[u8]) -> RemoteResult<proto::Node> {
        let request = proto::LinkRequest {
            node,
            new_parent,
            new_name: new_name.to_vec().into(),
        };
        Ok(self.tree().link(self.request(request)).await?.into_inner())
    }

    async fn rename(&self, request: proto::RenameRequest) -> RemoteResult<proto::RenameReply> {
        Ok(self
            .tree()
            .rename(self.request(request))
            .await?
            .into_inner())
    }

    async fn remove(&self, request: proto::RemoveRequest) -> RemoteResult<()> {
        self.tree().remove(self.request(request)).await?;
        Ok(())
    }

    async fn set_attr(&self, request: proto::SetAttrRequest) -> RemoteResult<proto::Node> {
        Ok(self
            .tree()
            .set_attr(self.request(request))
            .await?
            .into_inner())
    }

    async fn get_xattr(&self, id: u64, name: &[u8]) -> RemoteResult<Vec<u8>> {
        let request = proto::XattrRequest {
            id,
            name: name.to_vec().into(),
            ..Default::default()
        };
        Ok(self
            .tree()
            .get_xattr(self.request(request))
            .await?
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
        self.tree().set_xattr(self.request(request)).await?;
        Ok(())
    }

    async fn list_xattr(&self, id: u64) -> RemoteResult<Vec<Vec<u8>>> {
        let names = self
            .tree()
            .list_xattr(self.request(proto::StatRequest { id }))
            .await?
            .into_inner();
        Ok(names.names.into_iter().map(|name| name.to_vec()).collect())
    }

    async fn remove_xattr(&self, id: u64, name: &[u8]) -> RemoteResult<()> {
        let request = proto::XattrRequest {
            id,
            name: name.to_vec().into(),
            ..Default::default()
        };
        self.tree().remove_xattr(self.request(request)).await?;
        Ok(())
    }

    async fn have_chunks(&self, ids: &[ChunkId]) -> RemoteResult<Vec<bool>> {
        let request = proto::HaveChunksRequest {
            ids: ids.iter().map(|id| id.0.to_vec().into()).collect(),
        };
        let present = self
            .content()
            .have_chunks(self.request(request))
            .await?
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
        Ok(self
            .content()
            .put_chunks(self.request(stream))
            .await?
            .into_inner())
    }

    async fn get_chunks(
        &self,
        ranges: Vec<proto::ChunkRange>,
    ) -> RemoteResult<BoxStream<'static, RemoteResult<proto::ChunkData>>> {
        let stream = self
            .content()
            .get_chunks(self.request(proto::GetChunksRequest { ranges }))
            .await?
            .into_inner();
        Ok(stream.map(|item| item.map_err(RemoteError::from)).boxed())
    }

    async fn get_manifest(&self, node: u64, version: u64) -> RemoteResult<proto::Manifest> {
        let request = proto::GetManifestRequest { node, version };
        Ok(self
            .content()
            .get_manifest(self.request(request))
            .await?
            .into_inner())
    }

    async fn commit(&self, request: proto::CommitRequest) -> RemoteResult<proto::CommitReply> {
        Ok(self
            .commits()
            .commit(self.request(request))
            .await?
            .into_inner())
    }

    async fn commit_batch(
        &self,
        requests: Vec<proto::CommitRequest>,
    ) -> RemoteResult<Vec<proto::CommitReply>> {
        let request = proto::CommitBatchRequest { commits: requests };
        Ok(self
            .commits()
            .commit_batch(self.request(request))
            .await?
            .into_inner()
            .replies)
    }

    async fn list_versions(&self, node: u64) -> RemoteResult<Vec<proto::Version>> {
        let request = proto::VersionsRequest { node };
        Ok(self
            .commits()
            .list_versions(self.request(request))
            .await?
            .into_inner()
            .versions)
    }

    async fn restore_version(&self, node: u64, version: u64) -> RemoteResult<proto::CommitReply> {
        let request = proto::RestoreVersionRequest { node, version };
        Ok(self
            .commits()
            .restore_version(self.request(request))
            .await?
            .into_inner())
    }

    async fn list_trash(&self) -> RemoteResult<Vec<proto::TrashItem>> {
        Ok(self
            .trash()
            .list_trash(self.request(proto::Empty {}))
            .await?
            .into_inner()
            .items)
    }

    async fn restore_trash(
        &self,
        request: proto::RestoreTrashRequest,
    ) -> RemoteResult<proto::RestoreTrashReply> {
        Ok(self
            .trash()
            .restore_trash(self.request(request))
            .await?
            .into_inner())
    }

    async fn empty_trash(&self) -> RemoteResult<u64> {
        Ok(self
            .trash()
            .empty_trash(self.request(proto::Empty {}))
            .await?
            .into_inner()
            .purged)
    }

    async fn share(&self, request: proto::ShareRequest) -> RemoteResult<proto::ShareReply> {
        Ok(self
            .sharing()
            .share(self.request(request))
            .await?
            .into_inner())
    }

    async fn list_shares(&self, node: u64) -> RemoteResult<proto::MemberList> {
        let request = proto::SharesRequest { node };
        Ok(self
            .sharing()
            .list_shares(self.request(request))
            .await?
            .into_inner())
    }

    async fn revoke_share(&self, node: u64, user: &str) -> RemoteResult<Vec<String>> {
        let request = proto::RevokeShareRequest {
            node,
            user: user.to_string(),
        };
        Ok(self
            .sharing()
            .revoke_share(self.request(request))
            .await?
            .into_inner()
            .revoked)
    }

    async fn add_comment(&self, node: u64, text: &str) -> RemoteResult<proto::Comment> {
        let request = proto::CommentRequest {
            node,
            text: text.to_string(),
        };
        Ok(self
            .sharing()
            .add_comment(self.request(request))
            .await?
            .into_inner())
    }

    async fn list_comments(&self, node: u64) -> RemoteResult<Vec<proto::Comment>> {
        let request = proto::CommentsRequest { node };
        Ok(self
            .sharing()
            .list_comments(self.request(request))
            .await?
            .into_inner()
            .comments)
    }

    async fn watch(
        &self,
        namespace: u64,
        cursor: u64,
    ) -> RemoteResult<BoxStream<'static, RemoteResult<proto::WatchEvent>>> {
        let request = proto::WatchRequest { namespace, cursor };
        let stream = WatchClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(self.request(request))
            .await?
            .into_inner();
        Ok(stream.map(|item| item.map_err(RemoteError::from)).boxed())
    }

    async fn create_link(
        &self,
        request: proto::CreateLinkRequest,
    ) -> RemoteResult<proto::CreateLinkReply> {
        Ok(self
            .links()
            .create_link(self.request(request))
            .await?
            .into_inner())
    }

    async fn list_links(&self) -> RemoteResult<Vec<proto::LinkInfo>> {
        Ok(self
            .links()
            .list_links(self.request(proto::Empty {}))
            .await?
            .into_inner()
            .links)
    }

    async fn revoke_link(&self, id: u64) -> RemoteResult<()> {
        self.links()
            .revoke_link(self.request(proto::RevokeLinkRequest { id }))
            .await?;
        Ok(())
    }

    async fn search(&self, query: &str, limit: u32) -> RemoteResult<Vec<proto::SearchHit>> {
        let request = proto::SearchRequest {
            query: query.to_string(),
            limit,
        };
        Ok(self
            .search_client()
            .search(self.request(request))
            .await?
            .into_inner()
            .hits)
    }
}
