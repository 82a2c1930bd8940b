//! A connected, signed-in client for one command: to the configured server, or to
//! the embedded one.

use std::sync::Arc;

use anyhow::{Result, anyhow};
use loft_remote::RemoteClient;
use loft_remote::client::{ConnectOptions, GrpcClient, ServerAddress};

use crate::config::{ClientConfig, load_token};
use crate::embedded::{self, Embedded};
use crate::home::LoftHome;

/// What commands work with.
pub struct Session {
    pub home: LoftHome,
    pub config: ClientConfig,
    pub client: Arc<dyn RemoteClient>,
    /// The same client, for what only a gRPC client knows (which server it talks to).
    pub grpc: GrpcClient,
    /// Set when the session uses the embedded server: run by this process (kept
    /// alive for the command), or by another one that keeps it alive for this one.
    embedded: Option<Embedded>,
}

/// This device's name: from the config, else `hostname-xxxx`.
pub fn device_name(config: &ClientConfig) -> String {
    config.device.clone().unwrap_or_else(default_device_name)
}

/// `hostname` plus a short random id, so two devices on one host differ.
pub fn default_device_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{host}-{:04x}", rand::random::<u16>())
}

impl Session {
    /// Ends the session; if this process runs the embedded server, it keeps serving
    /// the other processes that use it until they are done, then stops it.
    pub async fn close(self) {
        let Session {
            client,
            grpc,
            embedded,
            ..
        } = self;
        drop(client);
        drop(grpc);
        if let Some(Embedded::Owner(server)) = embedded {
            server.close().await;
        }
    }

    /// Connects as the signed-in user of `home`.
    pub async fn open(home: LoftHome) -> Result<Session> {
        Self::open_at(home, None).await
    }

    /// Like [`Session::open`], to `server` instead of the configured one if given.
    pub async fn open_at(home: LoftHome, server: Option<String>) -> Result<Session> {
        let config = ClientConfig::load(&home)?;
        let options = ConnectOptions {
            ca_cert: config.ca_cert.clone(),
            ..Default::default()
        };
        let chosen = match server {
            Some(server) => vec![server],
            None => config.servers.clone(),
        };
        let (addresses, embedded) = if chosen.is_empty() {
            let mut config = config.clone();
            if config.device.is_none() {
                // The embedded server's device is named once and remembered.
                config.device = Some(default_device_name());
                config.save(&home)?;
            }
            let embedded = embedded::ensure(&home, &device_name(&config)).await?;
            (
                vec![ServerAddress::Unix(home.embedded_socket())],
                Some(embedded),
            )
        } else {
            let addresses = chosen
                .iter()
                .map(|server| server.parse::<ServerAddress>().map_err(anyhow::Error::msg))
                .collect::<Result<Vec<_>>>()?;
            (addresses, None)
        };
        let token = load_token(&home)?.ok_or_else(|| {
            anyhow!("not signed in: run `loft login --server URL --user NAME --password-file F`")
        })?;
        let client = GrpcClient::connect_any(&addresses, &options)?;
        client.set_token(Some(token));
        let config = ClientConfig::load(&home)?;
        Ok(Session {
            home,
            config,
            client: Arc::new(client.clone()),
            grpc: client,
            embedded,
        })
    }
}
