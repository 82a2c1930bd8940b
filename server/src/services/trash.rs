//! `loft.v1.Trash`: deleted items, listed, restored and purged.

use std::sync::Arc;

use loft_remote::proto::{self, trash_server::Trash};
use tonic::{Request, Response, Status};

use super::State;
use crate::auth::caller;
use crate::error::ServerError;
use crate::meta::{TrashTarget, to_timestamp};

pub struct TrashApi(pub Arc<State>);

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Trash for TrashApi {
    async fn list_trash(&self, request: Request<proto::Empty>) -> Reply<proto::TrashList> {
        let caller = caller(&request)?;
        let items = self.0.meta.list_trash(&caller).await?;
        Ok(Response::new(proto::TrashList {
            items: items
                .into_iter()
                .map(|item| proto::TrashItem {
                    id: item.id,
                    path: item.path.into(),
                    kind: item.kind as i32,
                    size: item.size,
                    deleted: Some(to_timestamp(item.deleted)),
                    device: item.device,
                })
                .collect(),
        }))
    }

    async fn restore_trash(
        &self,
        request: Request<proto::RestoreTrashRequest>,
    ) -> Reply<proto::RestoreTrashReply> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let target = match (r.id, r.path.is_empty()) {
            (0, true) => {
                return Err(ServerError::invalid("name a trash item by id or by path").into());
            }
            (0, false) => TrashTarget::Path(r.path.to_vec()),
            (id, _) => TrashTarget::Id(id),
        };
        let (node, path) = self.0.meta.restore_from_trash(&caller, target).await?;
        Ok(Response::new(proto::RestoreTrashReply {
            node: Some(node),
            path: path.into(),
        }))
    }

    async fn empty_trash(&self, request: Request<proto::Empty>) -> Reply<proto::EmptyTrashReply> {
        let caller = caller(&request)?;
        let purged = self.0.meta.empty_trash(&caller).await?;
        Ok(Response::new(proto::EmptyTrashReply { purged }))
    }
}
