//! `loft.v1.Tree`: the namespace operations.

use std::sync::Arc;

use loft_remote::proto::{self, tree_server::Tree};
use tonic::{Request, Response, Status};

use super::{State, batch_size_ok};
use crate::auth::caller;
use crate::meta::{AttrChange, NewNode, RemoveOp, RenameOp, XattrMode, from_timestamp};

pub struct TreeApi(pub Arc<State>);

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Tree for TreeApi {
    async fn lookup(&self, request: Request<proto::LookupRequest>) -> Reply<proto::Node> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        Ok(Response::new(
            self.0.meta.lookup(&caller, r.parent, &r.name).await?,
        ))
    }

    async fn resolve(&self, request: Request<proto::ResolveRequest>) -> Reply<proto::Node> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        Ok(Response::new(self.0.meta.resolve(&caller, &r.path).await?))
    }

    async fn stat(&self, request: Request<proto::StatRequest>) -> Reply<proto::Node> {
        let caller = caller(&request)?;
        Ok(Response::new(
            self.0.meta.stat(&caller, request.get_ref().id).await?,
        ))
    }

    async fn list(&self, request: Request<proto::ListRequest>) -> Reply<proto::ListReply> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let listing = self.0.meta.list(&caller, r.dir, &r.after, r.limit).await?;
        Ok(Response::new(proto::ListReply {
            entries: listing
                .entries
                .into_iter()
                .map(|(name, node)| proto::DirEntry {
                    name: name.into(),
                    node: Some(node),
                })
                .collect(),
            more: listing.more,
            cursor: listing.cursor,
        }))
    }

    async fn create(&self, request: Request<proto::CreateRequest>) -> Reply<proto::Node> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let op = NewNode {
            parent: r.parent,
            kind: r.kind(),
            name: r.name.to_vec(),
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
            symlink_target: r.symlink_target.to_vec(),
            rdev: r.rdev,
            exclusive: r.exclusive,
            mtime: r.mtime.as_ref().map(from_timestamp),
        };
        Ok(Response::new(self.0.meta.create(&caller, op).await?))
    }

    async fn link(&self, request: Request<proto::LinkRequest>) -> Reply<proto::Node> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        Ok(Response::new(
            self.0
                .meta
                .link(&caller, r.node, r.new_parent, &r.new_name)
                .await?,
        ))
    }

    async fn rename(&self, request: Request<proto::RenameRequest>) -> Reply<proto::RenameReply> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let op = RenameOp {
            parent: r.parent,
            name: r.name.to_vec(),
            new_parent: r.new_parent,
            new_name: r.new_name.to_vec(),
            no_replace: r.no_replace,
            exchange: r.exchange,
            node: r.node,
        };
        let outcome = self.0.meta.rename(&caller, op).await?;
        Ok(Response::new(proto::RenameReply {
            node: Some(outcome.node),
            replaced: outcome.replaced,
        }))
    }

    async fn remove(&self, request: Request<proto::RemoveRequest>) -> Reply<proto::Empty> {
        let caller = caller(&request)?;
        let op = remove_op(request.into_inner());
        self.0.meta.remove(&caller, op).await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn remove_batch(
        &self,
        request: Request<proto::RemoveBatchRequest>,
    ) -> Reply<proto::Empty> {
        let caller = caller(&request)?;
        let removes = request.into_inner().removes;
        batch_size_ok(removes.len(), "removals")?;
        let ops = removes.into_iter().map(remove_op).collect();
        self.0.meta.remove_many(&caller, ops).await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn set_attr(&self, request: Request<proto::SetAttrRequest>) -> Reply<proto::Node> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let change = AttrChange {
            id: r.id,
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
            atime: r.atime.as_ref().map(from_timestamp),
            mtime: r.mtime.as_ref().map(from_timestamp),
        };
        Ok(Response::new(self.0.meta.set_attr(&caller, change).await?))
    }

    async fn get_xattr(&self, request: Request<proto::XattrRequest>) -> Reply<proto::XattrValue> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let value = self.0.meta.get_xattr(&caller, r.id, &r.name).await?;
        Ok(Response::new(proto::XattrValue {
            value: value.into(),
        }))
    }

    async fn set_xattr(&self, request: Request<proto::XattrRequest>) -> Reply<proto::Empty> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let mode = match r.flags {
            1 => XattrMode::CreateOnly,
            2 => XattrMode::ReplaceOnly,
            _ => XattrMode::Any,
        };
        self.0
            .meta
            .set_xattr(&caller, r.id, &r.name, &r.value, mode)
            .await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn list_xattr(&self, request: Request<proto::StatRequest>) -> Reply<proto::XattrNames> {
        let caller = caller(&request)?;
        let names = self
            .0
            .meta
            .list_xattr(&caller, request.get_ref().id)
            .await?;
        Ok(Response::new(proto::XattrNames {
            names: names.into_iter().map(Into::into).collect(),
        }))
    }

    async fn remove_xattr(&self, request: Request<proto::XattrRequest>) -> Reply<proto::Empty> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        self.0.meta.remove_xattr(&caller, r.id, &r.name).await?;
        Ok(Response::new(proto::Empty {}))
    }
}

fn remove_op(r: proto::RemoveRequest) -> RemoveOp {
    RemoveOp {
        parent: r.parent,
        name: r.name.to_vec(),
        recursive: r.recursive,
        directory_only: r.directory_only,
        non_directory_only: r.non_directory_only,
        node: r.node,
    }
}
