//! `loft.v1.Commit`: new versions and version history.

use std::sync::Arc;

use loft_remote::content::Manifest;
use loft_remote::proto::{self, NodeKind, commit_server::Commit};
use tonic::{Request, Response, Status};

use super::{State, batch_size_ok};
use crate::auth::caller;
use crate::error::ServerError;
use crate::meta::{CommitOp, NewNode, from_timestamp};

pub struct CommitApi(pub Arc<State>);

#[tonic::async_trait]
impl Commit for CommitApi {
    async fn commit(
        &self,
        request: Request<proto::CommitRequest>,
    ) -> Result<Response<proto::CommitReply>, Status> {
        let caller = caller(&request)?;
        let op = commit_op(request.into_inner())?;
        let outcome = self.0.meta.commit(&caller, op).await?;
        Ok(Response::new(reply(outcome)))
    }

    async fn commit_batch(
        &self,
        request: Request<proto::CommitBatchRequest>,
    ) -> Result<Response<proto::CommitBatchReply>, Status> {
        let caller = caller(&request)?;
        let commits = request.into_inner().commits;
        batch_size_ok(commits.len(), "commits")?;
        let ops = commits
            .into_iter()
            .map(commit_op)
            .collect::<Result<Vec<_>, _>>()?;
        let outcomes = self.0.meta.commit_many(&caller, ops).await?;
        Ok(Response::new(proto::CommitBatchReply {
            replies: outcomes.into_iter().map(reply).collect(),
        }))
    }

    async fn list_versions(
        &self,
        request: Request<proto::VersionsRequest>,
    ) -> Result<Response<proto::VersionList>, Status> {
        let caller = caller(&request)?;
        let versions = self
            .0
            .meta
            .versions(&caller, request.get_ref().node)
            .await?;
        Ok(Response::new(proto::VersionList { versions }))
    }

    async fn restore_version(
        &self,
        request: Request<proto::RestoreVersionRequest>,
    ) -> Result<Response<proto::CommitReply>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let outcome = self
            .0
            .meta
            .restore_version(&caller, r.node, r.version)
            .await?;
        Ok(Response::new(reply(outcome)))
    }
}

fn commit_op(r: proto::CommitRequest) -> Result<CommitOp, ServerError> {
    let manifest = r
        .manifest
        .ok_or_else(|| ServerError::invalid("commit without a manifest"))?;
    let manifest = Manifest::try_from(manifest).map_err(ServerError::from)?;
    let create = (r.node == 0).then(|| NewNode {
        parent: r.parent,
        name: r.name.to_vec(),
        kind: NodeKind::File,
        mode: r.mode,
        uid: r.uid,
        gid: r.gid,
        symlink_target: Vec::new(),
        rdev: 0,
        exclusive: false,
        mtime: r.mtime.as_ref().map(from_timestamp),
    });
    Ok(CommitOp {
        node: r.node,
        create,
        base_version: r.base_version,
        manifest,
        mtime: r.mtime.as_ref().map(from_timestamp),
        atime: r.atime.as_ref().map(from_timestamp),
    })
}

fn reply(outcome: crate::meta::CommitOutcome) -> proto::CommitReply {
    proto::CommitReply {
        node: Some(outcome.node),
        version: outcome.version,
        conflict: outcome.conflict_name.is_some(),
        conflict_name: outcome.conflict_name.unwrap_or_default().into(),
    }
}
