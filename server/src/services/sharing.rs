//! `loft.v1.Sharing`: shares with roles, and comments. The store decides every call.

use std::sync::Arc;

use loft_remote::proto::{self, sharing_server::Sharing};
use tonic::{Request, Response, Status};

use super::State;
use crate::auth::caller;
use crate::error::ServerError;
use crate::meta::{CommentRecord, Role, to_timestamp};

pub struct SharingApi(pub Arc<State>);

type Reply<T> = Result<Response<T>, Status>;

/// The wire's role as the store's.
pub fn role_from_wire(role: i32) -> Result<Role, ServerError> {
    match proto::Role::try_from(role) {
        Ok(proto::Role::Viewer) => Ok(Role::Viewer),
        Ok(proto::Role::Commenter) => Ok(Role::Commenter),
        Ok(proto::Role::Editor) => Ok(Role::Editor),
        Ok(proto::Role::Owner) => Ok(Role::Owner),
        _ => Err(ServerError::invalid(
            "role must be owner, editor, commenter or viewer",
        )),
    }
}

/// The store's role as the wire's.
pub fn role_to_wire(role: Role) -> proto::Role {
    match role {
        Role::Viewer => proto::Role::Viewer,
        Role::Commenter => proto::Role::Commenter,
        Role::Editor => proto::Role::Editor,
        Role::Owner => proto::Role::Owner,
    }
}

fn comment_to_wire(comment: CommentRecord) -> proto::Comment {
    proto::Comment {
        id: comment.id,
        node: comment.node,
        user: comment.user,
        time: Some(to_timestamp(comment.time)),
        text: comment.text,
    }
}

#[tonic::async_trait]
impl Sharing for SharingApi {
    async fn share(&self, request: Request<proto::ShareRequest>) -> Reply<proto::ShareReply> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let role = role_from_wire(r.role)?;
        let outcome = self.0.meta.share(&caller, r.node, &r.user, role).await?;
        tracing::info!(user = %caller.user_name, to = %r.user, ?role, node = r.node, "share");
        Ok(Response::new(proto::ShareReply {
            namespace: outcome.ns,
            name: outcome.name.into(),
        }))
    }

    async fn list_shares(
        &self,
        request: Request<proto::SharesRequest>,
    ) -> Reply<proto::MemberList> {
        let caller = caller(&request)?;
        let shares = self.0.meta.shares(&caller, request.get_ref().node).await?;
        Ok(Response::new(proto::MemberList {
            namespace: shares.ns,
            members: shares
                .members
                .into_iter()
                .map(|m| proto::Member {
                    user: m.user,
                    role: role_to_wire(m.role) as i32,
                    granted_by: m.granted_by,
                })
                .collect(),
        }))
    }

    async fn revoke_share(
        &self,
        request: Request<proto::RevokeShareRequest>,
    ) -> Reply<proto::RevokeShareReply> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let revoked = self.0.meta.revoke_share(&caller, r.node, &r.user).await?;
        tracing::info!(user = %caller.user_name, ?revoked, node = r.node, "revoke share");
        Ok(Response::new(proto::RevokeShareReply { revoked }))
    }

    async fn add_comment(&self, request: Request<proto::CommentRequest>) -> Reply<proto::Comment> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let comment = self.0.meta.add_comment(&caller, r.node, &r.text).await?;
        Ok(Response::new(comment_to_wire(comment)))
    }

    async fn list_comments(
        &self,
        request: Request<proto::CommentsRequest>,
    ) -> Reply<proto::CommentList> {
        let caller = caller(&request)?;
        let comments = self
            .0
            .meta
            .comments(&caller, request.get_ref().node)
            .await?;
        Ok(Response::new(proto::CommentList {
            comments: comments.into_iter().map(comment_to_wire).collect(),
        }))
    }
}
