//! `loft-server`: the Loft server binary. Parses arguments into a [`ServerConfig`] and
//! runs the library; nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use loft_remote::units::{parse_duration, parse_size, read_password_file};
use loft_server::{Backend, Listen, ServerConfig, TlsFiles};

#[derive(Parser)]
#[command(name = "loft-server", version, about = "The Loft cloud drive server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Storage {
    /// Directory for the server's state (SQLite metadata and chunk directory).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API.
    Serve {
        #[command(flatten)]
        storage: Storage,
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
        listen: SocketAddr,
        /// Write `IP:PORT` here (atomically) once the listener accepts.
        #[arg(long, value_name = "F")]
        port_file: Option<PathBuf>,
        /// TLS certificate (PEM); needs --tls-key.
        #[arg(long, value_name = "C", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM); needs --tls-cert.
        #[arg(long, value_name = "K", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Lifetime of login tokens.
        #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = parse_duration)]
        token_ttl: Duration,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user.
    Add {
        name: String,
        #[command(flatten)]
        storage: Storage,
        /// File holding the password (one trailing newline is ignored).
        #[arg(long, value_name = "F")]
        password_file: PathBuf,
    },
    /// Set (or with `none`, remove) a user's quota.
    SetQuota {
        name: String,
        /// SIZE (e.g. 10GiB) or `none`.
        size: String,
        #[command(flatten)]
        storage: Storage,
    },
}

fn main() -> ExitCode {
    loft_remote::binary::run_main("loft-server", "info", run(Cli::parse()))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            storage,
            listen,
            port_file,
            tls_cert,
            tls_key,
            token_ttl,
        } => {
            let backend = Backend::open_local(&storage.data)
                .with_context(|| format!("opening {}", storage.data.display()))?;
            let mut config = ServerConfig::new(storage.data, Listen::Tcp(listen));
            config.port_file = port_file;
            config.token_ttl = token_ttl;
            config.tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => None,
            };
            loft_server::serve(config, backend, shutdown_signal()).await?;
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    storage,
                    password_file,
                },
        } => {
            let password = read_password_file(&password_file)
                .with_context(|| format!("reading {}", password_file.display()))?;
            let backend = Backend::open_local(&storage.data)?;
            let user = loft_server::add_user(&backend, &name, &password).await?;
            println!("added user {} (id {})", user.name, user.id);
            Ok(())
        }
        Command::User {
            command:
                UserCommand::SetQuota {
                    name,
                    size,
                    storage,
                },
        } => {
            let quota = match size.as_str() {
                "none" | "unlimited" => None,
                text => Some(parse_size(text).map_err(anyhow::Error::msg)?),
            };
            let backend = Backend::open_local(&storage.data)?;
            backend.meta.set_quota(&name, quota).await?;
            match quota {
                Some(bytes) => println!("quota of {name}: {bytes} bytes"),
                None => println!("quota of {name}: none"),
            }
            Ok(())
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        bail_never().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Without signal handlers the server runs until killed.
async fn bail_never() {
    std::future::pending::<()>().await
}
