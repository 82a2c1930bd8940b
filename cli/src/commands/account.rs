//! `loft login`, `loft logout`, `loft devices`.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use loft_remote::RemoteClient;
use loft_remote::client::{ConnectOptions, GrpcClient, ServerAddress};
use loft_remote::proto;
use loft_remote::units::read_password_file;

use crate::config::{ClientConfig, load_token, remove_token, save_token};
use crate::home::LoftHome;
use crate::session::{Session, default_device_name};

pub async fn login(
    home: LoftHome,
    servers: Vec<String>,
    user: &str,
    password_file: &Path,
    device: Option<String>,
) -> Result<()> {
    let password = read_password_file(password_file)
        .with_context(|| format!("reading {}", password_file.display()))?;
    if servers.is_empty() {
        return Err(anyhow!(
            "--server is required (the embedded server needs no login)"
        ));
    }
    let addresses = servers
        .iter()
        .map(|s| s.parse::<ServerAddress>().map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let mut config = ClientConfig::load(&home)?;
    let device = device
        .or(config.device.clone())
        .unwrap_or_else(default_device_name);
    let options = ConnectOptions {
        ca_cert: config.ca_cert.clone(),
        ..Default::default()
    };
    let client = GrpcClient::connect_any(&addresses, &options)?;
    let reply = client
        .login(user, &password, &device)
        .await
        .map_err(|e| anyhow!("login failed: {e}"))?;
    config.servers = servers;
    config.user = Some(user.to_string());
    config.device = Some(device.clone());
    config.save(&home)?;
    save_token(&home, &reply.token)?;
    println!(
        "signed in as {user} on {} (device {device})",
        client.current_address()
    );
    Ok(())
}

pub async fn logout(home: LoftHome) -> Result<()> {
    let config = ClientConfig::load(&home)?;
    // The token is dropped locally whatever the server says.
    if load_token(&home)?.is_some()
        && !config.servers.is_empty()
        && let Ok(session) = Session::open(home.clone()).await
    {
        let _ = session.client.logout().await;
    }
    remove_token(&home)?;
    println!("signed out");
    Ok(())
}

pub async fn devices_list(session: &Session, json: bool) -> Result<()> {
    let devices = session.client.list_devices().await?;
    if json {
        let list: Vec<_> = devices
            .iter()
            .map(|d| {
                serde_json::json!({
                    "id": d.id, "name": d.name, "created": d.created, "last_seen": d.last_seen,
                    "revoked": d.revoked, "current": d.current,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    for d in devices {
        let when = super::rfc3339(Some(&proto::Timestamp {
            seconds: d.last_seen,
            nanos: 0,
        }));
        let state = if d.revoked {
            "revoked"
        } else if d.current {
            "this device"
        } else {
            ""
        };
        println!("{:>4}  {:<32} last seen {when}  {state}", d.id, d.name);
    }
    Ok(())
}

pub async fn devices_revoke(session: &Session, device: &str) -> Result<()> {
    let request = match device.parse::<u64>() {
        Ok(id) => proto::RevokeDeviceRequest {
            id,
            name: String::new(),
        },
        Err(_) => proto::RevokeDeviceRequest {
            id: 0,
            name: device.to_string(),
        },
    };
    session
        .client
        .revoke_device(request)
        .await
        .map_err(|e| anyhow!("{device}: {e}"))?;
    println!("revoked {device}");
    Ok(())
}
