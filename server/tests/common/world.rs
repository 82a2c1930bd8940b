//! A real server on loopback, in this process: gRPC on a free port and the HTTP gateway
//! on another, over the stores of a test, stopped when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use loft_remote::RemoteClient;
use loft_remote::client::{ConnectOptions, GrpcClient, ServerAddress};
use loft_remote::proto;
use loft_server::gateway::GatewayConfig;
use loft_server::{Backend, Listen, ServerConfig, add_user};

use super::{Kind, Stores, stores};

/// Every user's password in a [`World`].
pub const PASSWORD: &str = "secret";
const START_DEADLINE: Duration = Duration::from_secs(10);

pub struct World {
    pub stores: Stores,
    pub backend: Backend,
    pub address: ServerAddress,
    /// The HTTP gateway (links, `/healthz`, `/metrics`).
    pub http: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl World {
    pub async fn start(kind: Kind) -> World {
        let stores = stores(kind).await;
        let backend = stores.backend().await;
        let dir = stores.dir.path();
        let port_file = dir.join("port");
        let http_port_file = dir.join("http-port");
        let mut config = ServerConfig::new(
            dir.to_path_buf(),
            Listen::Tcp("127.0.0.1:0".parse().unwrap()),
        );
        config.port_file = Some(port_file.clone());
        let mut http = GatewayConfig::new("127.0.0.1:0".parse().unwrap());
        http.port_file = Some(http_port_file.clone());
        config.http = Some(http);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = backend.clone();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            loft_server::serve(config, serving, shutdown)
                .await
                .expect("serving");
        });
        let address = format!("http://{}", port_of(&port_file).await)
            .parse()
            .unwrap();
        let http = port_of(&http_port_file).await.parse().unwrap();
        World {
            stores,
            backend,
            address,
            http,
            stop: Some(stop),
        }
    }

    /// Adds `name` and signs it in.
    pub async fn user(&self, name: &str) -> (GrpcClient, proto::Session) {
        add_user(&self.backend, name, PASSWORD).await.unwrap();
        self.login(name).await
    }

    pub async fn login(&self, name: &str) -> (GrpcClient, proto::Session) {
        let client = self.client(None);
        let reply = client.login(name, PASSWORD, "device").await.unwrap();
        client.set_token(Some(reply.token));
        (client, reply.session.unwrap())
    }

    /// A client of this server presenting `token` (none: anonymous).
    pub fn client(&self, token: Option<String>) -> GrpcClient {
        let client = GrpcClient::connect(&self.address, &ConnectOptions::default()).unwrap();
        client.set_token(token);
        client
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The `IP:PORT` a starting server writes to `file`.
async fn port_of(file: &Path) -> String {
    tokio::time::timeout(START_DEADLINE, async {
        loop {
            if let Ok(text) = std::fs::read_to_string(file)
                && text.ends_with('\n')
            {
                return text.trim().to_string();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the server did not start")
}
