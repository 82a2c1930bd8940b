//! `loft.v1.Search`: names and text content, within what the caller can read.

use std::sync::Arc;

use loft_remote::proto::{self, search_server::Search};
use tonic::{Request, Response, Status};

use super::State;
use crate::auth::caller;
use crate::search;

pub struct SearchApi(pub Arc<State>);

#[tonic::async_trait]
impl Search for SearchApi {
    async fn search(
        &self,
        request: Request<proto::SearchRequest>,
    ) -> Result<Response<proto::SearchReply>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let hits = search::search(
            self.0.meta.as_ref(),
            &self.0.indexer,
            &caller,
            &request.query,
            request.limit,
        )
        .await?;
        Ok(Response::new(proto::SearchReply {
            hits: hits
                .into_iter()
                .map(|hit| proto::SearchHit {
                    path: hit.path.into(),
                    node: hit.node,
                    snippet: hit.snippet,
                    kind: hit.kind as i32,
                })
                .collect(),
        }))
    }
}
