//! `loft.v1.Auth`: login, logout, devices, the caller's quota.

use std::sync::Arc;

use loft_remote::errors::ErrorKind;
use loft_remote::proto::{self, auth_server::Auth};
use tonic::{Request, Response, Status};

use super::State;
use crate::auth::{TokenHash, caller, new_token, verify_password};
use crate::error::ServerError;
use crate::meta::{Caller, Membership, now_nanos};

/// A valid PHC string that no password matches: unknown users cost as much as known ones,
/// so response times do not tell which names exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3oBv0QjHIUXdXtVl5pj8mA7M4HJ4yqD+2oXGa1lYxw4";

pub struct AuthApi(pub Arc<State>);

pub fn session_of(caller: &Caller, memberships: &[Membership]) -> proto::Session {
    proto::Session {
        user_id: caller.user_id,
        user: caller.user_name.clone(),
        device_id: caller.device_id,
        device_name: caller.device_name.clone(),
        root: caller.root,
        namespace: caller.home_ns,
        memberships: memberships
            .iter()
            .map(|m| proto::Membership {
                namespace: m.ns,
                root: m.root,
                role: super::role_to_wire(m.role) as i32,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl Auth for AuthApi {
    async fn login(
        &self,
        request: Request<proto::LoginRequest>,
    ) -> Result<Response<proto::LoginReply>, Status> {
        let login = request.into_inner();
        let user = self.0.meta.user_by_name(&login.user).await?;
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| DUMMY_HASH.to_string());
        let password = login.password.clone();
        let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(ServerError::internal)?;
        let user = match user {
            Some(user) if matches => user,
            _ => return Err(ServerError::unauthenticated("wrong user name or password").into()),
        };
        let device = if login.device_name.is_empty() {
            "unnamed".to_string()
        } else {
            login.device_name
        };
        let (token, hash) = new_token();
        let ttl = i64::try_from(self.0.token_ttl.as_nanos()).unwrap_or(i64::MAX);
        let caller = self
            .0
            .meta
            .create_session(user.id, &device, hash, now_nanos().saturating_add(ttl))
            .await?;
        tracing::info!(user = %caller.user_name, device = %caller.device_name, "login");
        Ok(Response::new(proto::LoginReply {
            token,
            session: Some(session_of(
                &caller,
                &self.0.meta.memberships(&caller).await?,
            )),
        }))
    }

    async fn logout(
        &self,
        request: Request<proto::Empty>,
    ) -> Result<Response<proto::Empty>, Status> {
        let hash = request
            .extensions()
            .get::<TokenHash>()
            .copied()
            .ok_or_else(|| ServerError::unauthenticated("not signed in"))?;
        self.0.meta.end_session(hash.0).await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn who_am_i(
        &self,
        request: Request<proto::Empty>,
    ) -> Result<Response<proto::Session>, Status> {
        let caller = caller(&request)?;
        let memberships = self.0.meta.memberships(&caller).await?;
        Ok(Response::new(session_of(&caller, &memberships)))
    }

    async fn list_devices(
        &self,
        request: Request<proto::Empty>,
    ) -> Result<Response<proto::DeviceList>, Status> {
        let caller = caller(&request)?;
        let devices = self.0.meta.list_devices(caller.user_id).await?;
        let devices = devices
            .into_iter()
            .map(|d| proto::Device {
                id: d.id,
                current: d.id == caller.device_id,
                name: d.name,
                created: d.created / 1_000_000_000,
                last_seen: d.last_seen / 1_000_000_000,
                revoked: d.revoked,
            })
            .collect();
        Ok(Response::new(proto::DeviceList { devices }))
    }

    async fn get_quota(
        &self,
        request: Request<proto::Empty>,
    ) -> Result<Response<proto::Quota>, Status> {
        let caller = caller(&request)?;
        let usage = self.0.meta.quota(&caller).await?;
        Ok(Response::new(proto::Quota {
            quota: usage.quota,
            used: usage.used,
        }))
    }

    async fn revoke_device(
        &self,
        request: Request<proto::RevokeDeviceRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let caller = caller(&request)?;
        let wanted = request.into_inner();
        let devices = self.0.meta.list_devices(caller.user_id).await?;
        let device = devices
            .iter()
            .find(|d| {
                (wanted.id != 0 && d.id == wanted.id)
                    || (!wanted.name.is_empty() && d.name == wanted.name)
            })
            .ok_or_else(|| ServerError::new(ErrorKind::NotFound, "no such device"))?;
        self.0.meta.revoke_device(caller.user_id, device.id).await?;
        Ok(Response::new(proto::Empty {}))
    }
}
