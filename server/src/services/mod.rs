//! The gRPC services. They translate between the wire and [`crate::meta::MetaStore`] /
//! [`crate::chunk_store::ChunkStore`]; every permission decision is made in the store.

mod auth;
mod chunk_records;
mod commit;
mod content;
mod links;
mod search;
mod sharing;
mod trash;
mod tree;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use loft_remote::proto;
use tokio::sync::watch as watch_channel;

use crate::chunk_store::ChunkStore;
use crate::error::ServerError;
use crate::journal_hub::JournalHub;
use crate::meta::MetaStore;
use crate::search::indexer::Indexer;

pub use auth::AuthApi;
pub use commit::CommitApi;
pub use content::ContentApi;
pub use links::{LinksApi, link_info};
pub use search::SearchApi;
pub use sharing::{SharingApi, role_from_wire, role_to_wire};
pub use trash::TrashApi;
pub use tree::TreeApi;
pub use watch::WatchApi;

/// Largest gRPC message either side sends: a 4 MiB chunk plus framing.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Items (commits, removals) in one batch call at most.
const MAX_BATCH: usize = 1024;

/// Refuses a batch call of more than [`MAX_BATCH`] `what`.
fn batch_size_ok(len: usize, what: &str) -> Result<(), ServerError> {
    if len > MAX_BATCH {
        return Err(ServerError::invalid(format!(
            "a batch holds at most {MAX_BATCH} {what}, not {len}"
        )));
    }
    Ok(())
}

/// What every service shares.
pub struct State {
    pub meta: Arc<dyn MetaStore>,
    pub chunks: ChunkStore,
    pub hub: Arc<JournalHub>,
    /// Woken by searches that wait for the index to catch up.
    pub indexer: Arc<Indexer>,
    pub token_ttl: Duration,
    /// Base of link URLs (the HTTP gateway's public URL); `None` without a gateway.
    pub public_url: Option<String>,
    /// Turns true when the server is shutting down; long-lived streams end then.
    pub shutdown: watch_channel::Receiver<bool>,
}

/// All Loft services, ready to add to a tonic router.
pub fn routes(state: Arc<State>) -> tonic::service::Routes {
    tonic::service::Routes::new(
        proto::auth_server::AuthServer::new(AuthApi(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(
        proto::tree_server::TreeServer::new(TreeApi(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(
        proto::content_server::ContentServer::new(ContentApi(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(
        proto::commit_server::CommitServer::new(CommitApi(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(
        proto::trash_server::TrashServer::new(TrashApi(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(
        proto::links_server::LinksServer::new(LinksApi(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(
        proto::sharing_server::SharingServer::new(SharingApi(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(
        proto::search_server::SearchServer::new(SearchApi(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(
        proto::watch_server::WatchServer::new(WatchApi(state))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
}
