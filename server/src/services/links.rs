//! `loft.v1.Links`: creating, listing and revoking public links. The store decides who
//! may link what; the URL is built from the gateway's public URL.

use std::sync::Arc;

use loft_remote::proto::{self, links_server::Links};
use tonic::{Request, Response, Status};

use super::State;
use crate::auth::{caller, hash_password};
use crate::error::ServerError;
use crate::link_secret::{link_url, new_secret};
use crate::meta::{LinkRecord, LinkRole, NewLink, now_nanos, to_timestamp};

/// Longest link password accepted (argon2 takes any length; this bounds the work).
const MAX_PASSWORD: usize = 1024;

pub struct LinksApi(pub Arc<State>);

fn role_of(role: proto::LinkRole) -> LinkRole {
    match role {
        proto::LinkRole::LinkUpload => LinkRole::Upload,
        proto::LinkRole::LinkViewer | proto::LinkRole::Unspecified => LinkRole::Viewer,
    }
}

/// The wire form of a stored link.
pub fn link_info(link: &LinkRecord) -> proto::LinkInfo {
    let role = match link.role {
        LinkRole::Viewer => proto::LinkRole::LinkViewer,
        LinkRole::Upload => proto::LinkRole::LinkUpload,
    };
    proto::LinkInfo {
        id: link.id,
        path: link.path.clone().into(),
        role: role as i32,
        created: Some(to_timestamp(link.created)),
        expires: link.expires.map(to_timestamp),
        has_password: link.password_hash.is_some(),
        max_downloads: link.max_downloads.unwrap_or(0),
        downloads: link.downloads,
        revoked: link.revoked,
        live: link.live(now_nanos()),
    }
}

#[tonic::async_trait]
impl Links for LinksApi {
    async fn create_link(
        &self,
        request: Request<proto::CreateLinkRequest>,
    ) -> Result<Response<proto::CreateLinkReply>, Status> {
        let caller = caller(&request)?;
        let wanted = request.into_inner();
        let Some(public_url) = self.0.public_url.clone() else {
            return Err(ServerError::precondition(
                "this server has no HTTP gateway for links: start it with --http ADDR",
            )
            .into());
        };
        if wanted.password.len() > MAX_PASSWORD {
            return Err(ServerError::invalid(format!(
                "link passwords are at most {MAX_PASSWORD} bytes"
            ))
            .into());
        }
        let expires = match wanted.expires_in {
            0 => None,
            seconds => {
                let nanos = i64::try_from(seconds)
                    .ok()
                    .and_then(|s| s.checked_mul(1_000_000_000))
                    .ok_or_else(|| ServerError::invalid("expiry too far in the future"))?;
                Some(now_nanos().saturating_add(nanos))
            }
        };
        let password_hash = match wanted.password.as_str() {
            "" => None,
            password => {
                let password = password.to_string();
                Some(
                    tokio::task::spawn_blocking(move || hash_password(&password))
                        .await
                        .map_err(ServerError::internal)??,
                )
            }
        };
        let (secret, secret_hash) = new_secret()?;
        let link = NewLink {
            path: wanted.path.to_vec(),
            role: role_of(wanted.role()),
            secret_hash,
            password_hash,
            expires,
            max_downloads: (wanted.max_downloads > 0).then_some(wanted.max_downloads),
        };
        let link = self.0.meta.create_link(&caller, link).await?;
        tracing::info!(link = link.id, user = %caller.user_name, "link created");
        Ok(Response::new(proto::CreateLinkReply {
            link: Some(link_info(&link)),
            url: link_url(&public_url, &secret),
        }))
    }

    async fn list_links(
        &self,
        request: Request<proto::Empty>,
    ) -> Result<Response<proto::LinkList>, Status> {
        let caller = caller(&request)?;
        let links = self.0.meta.list_links(&caller).await?;
        Ok(Response::new(proto::LinkList {
            links: links.iter().map(link_info).collect(),
        }))
    }

    async fn revoke_link(
        &self,
        request: Request<proto::RevokeLinkRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().id;
        self.0.meta.revoke_link(&caller, id).await?;
        tracing::info!(link = id, user = %caller.user_name, "link revoked");
        Ok(Response::new(proto::Empty {}))
    }
}
