//! `loft-server`: the Loft server binary. Parses arguments into a [`ServerConfig`] and
//! runs the library; nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use loft_remote::units::{parse_duration, parse_size, read_password_file};
use loft_server::chunk_store::S3Settings;
use loft_server::gateway::GatewayConfig;
use loft_server::journal_hub::JournalHub;
use loft_server::meta::ThrottlePolicy;
use loft_server::prune::PruneConfig;
use loft_server::rate_limit::RateLimits;
use loft_server::search::indexer::IndexConfig;
use loft_server::{Backend, Listen, ServerConfig, StorageConfig, TlsFiles};

#[derive(Parser)]
#[command(name = "loft-server", version, about = "The Loft cloud drive server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Storage {
    /// Directory for the server's local state: the SQLite metadata and the chunk
    /// directory unless --meta / --chunks put them elsewhere.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Metadata database: postgres://USER[:PASSWORD]@HOST:PORT/DATABASE, or sqlite:PATH
    /// [default: SQLite in --data].
    #[arg(long, value_name = "URL", env = "LOFT_META", hide_env_values = true)]
    meta: Option<String>,
    /// Chunk store: s3://BUCKET/PREFIX, or a directory [default: --data].
    #[arg(long, value_name = "URL", env = "LOFT_CHUNKS")]
    chunks: Option<String>,
    #[command(flatten)]
    s3: S3Args,
}

/// S3 settings; each flag falls back to the usual AWS environment variable.
#[derive(Args)]
struct S3Args {
    #[arg(
        long,
        value_name = "ID",
        env = "AWS_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    s3_access_key_id: Option<String>,
    #[arg(
        long,
        value_name = "SECRET",
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    s3_secret_access_key: Option<String>,
    #[arg(long, value_name = "REGION", env = "AWS_REGION")]
    s3_region: Option<String>,
    /// S3-compatible endpoint, e.g. http://127.0.0.1:9000 (also read from AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL", env = "AWS_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Allow a plain-HTTP endpoint.
    #[arg(long, env = "AWS_ALLOW_HTTP", value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    s3_allow_http: bool,
    /// Address buckets as BUCKET.ENDPOINT; by default a custom endpoint is addressed
    /// path-style (ENDPOINT/BUCKET), as most self-hosted stores expect.
    #[arg(long, env = "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
          value_parser = clap::builder::BoolishValueParser::new(),
          num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    s3_virtual_hosted: bool,
}

impl Storage {
    fn config(&self) -> Result<StorageConfig> {
        let endpoint = self
            .s3
            .s3_endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .filter(|endpoint| !endpoint.is_empty());
        let s3 = S3Settings {
            access_key_id: self.s3.s3_access_key_id.clone(),
            secret_access_key: self.s3.s3_secret_access_key.clone(),
            region: self.s3.s3_region.clone(),
            path_style: endpoint.is_some() && !self.s3.s3_virtual_hosted,
            endpoint,
            allow_http: self.s3.s3_allow_http,
        };
        Ok(StorageConfig::new(
            self.data.as_deref(),
            self.meta.as_deref(),
            self.chunks.as_deref(),
            s3,
        )?)
    }

    async fn backend(&self) -> Result<Backend> {
        Ok(Backend::open(&self.config()?).await?)
    }

    async fn meta(&self) -> Result<std::sync::Arc<dyn loft_server::meta::MetaStore>> {
        let hub = std::sync::Arc::new(JournalHub::default());
        Ok(self.config()?.open_meta(hub).await?)
    }
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
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
        /// How long versions that are no longer current are kept.
        #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
        retention: Duration,
        /// How long deleted items stay in the trash [default: --retention].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        trash_retention: Option<Duration>,
        /// How long a chunk nothing references is kept before it is deleted.
        #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_duration)]
        chunk_grace: Duration,
        /// Time between pruning passes (tests shorten it).
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration, hide = true)]
        prune_interval: Duration,
        /// Calls a second allowed per user and per client address, each refilling a
        /// bucket that holds one second's worth: `user=N,ip=N` (either may be `off`), or
        /// `off`. Refused calls answer RESOURCE_EXHAUSTED (HTTP: 429) with the wait, and
        /// Loft clients wait and retry. The embedded server's unix socket is not limited.
        #[arg(long, value_name = "LIMITS", default_value_t = RateLimits::default())]
        rate_limit: RateLimits,
        /// Time between search indexing passes when nothing wakes the indexer (a write
        /// to this server or a search does).
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        search_interval: Duration,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Create or upgrade the metadata schema (every command does this when it finds an
    /// empty or older database; this does only that).
    Migrate {
        #[command(flatten)]
        storage: Storage,
    },
    /// Verify the metadata against the chunk store: every referenced chunk is stored;
    /// stored objects without a record (orphans) and temporary files of chunk writes a
    /// crash interrupted (leftovers) are reported. Changes nothing unless --repair is
    /// given. Exits non-zero when a referenced chunk is missing.
    Check {
        #[command(flatten)]
        storage: Storage,
        /// Delete orphans and leftovers older than --grace.
        #[arg(long)]
        repair: bool,
        /// Orphans younger than this may be uploads in flight and are kept.
        #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_duration)]
        grace: Duration,
    },
}

/// The HTTP gateway: public link pages and downloads, `/healthz`, `/metrics`.
#[derive(Args)]
struct HttpArgs {
    /// Serve the HTTP gateway on this address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Write the gateway's `IP:PORT` here (atomically) once it accepts.
    #[arg(long, value_name = "F", requires = "http")]
    http_port_file: Option<PathBuf>,
    /// URL under which people reach the gateway, used in link URLs
    /// [default: http:// + the --http address].
    #[arg(long, value_name = "URL", requires = "http")]
    public_url: Option<String>,
    /// Wrong link passwords allowed per link and per client address in one window.
    #[arg(long, value_name = "N", default_value = "10", value_parser = clap::value_parser!(u32).range(1..))]
    link_password_attempts: u32,
    /// The window of --link-password-attempts; past the limit, every password is
    /// refused (429) until the window ends.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    link_password_window: Duration,
    /// Lifetime of signed download URLs (and of what a link's password unlocks).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    signed_url_ttl: Duration,
    /// Largest file accepted through an upload link.
    #[arg(long, value_name = "SIZE", default_value = "4GiB", value_parser = parse_size_arg)]
    max_upload: u64,
}

impl HttpArgs {
    fn config(&self) -> Result<Option<GatewayConfig>> {
        let Some(listen) = self.http else {
            return Ok(None);
        };
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            anyhow::bail!("--public-url must start with http:// or https://: {url}");
        }
        let mut config = GatewayConfig::new(listen);
        config.port_file = self.http_port_file.clone();
        config.public_url = self.public_url.clone();
        config.password_throttle = ThrottlePolicy {
            failures: self.link_password_attempts,
            window: i64::try_from(self.link_password_window.as_nanos()).unwrap_or(i64::MAX),
        };
        config.signed_url_ttl = self.signed_url_ttl;
        config.max_upload = self.max_upload;
        Ok(Some(config))
    }
}

fn parse_size_arg(text: &str) -> std::result::Result<u64, String> {
    parse_size(text).map_err(|e| e.to_string())
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
    loft_remote::binary::run_main("loft-server", "info", 0, run(Cli::parse()))
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
            retention,
            trash_retention,
            chunk_grace,
            prune_interval,
            rate_limit,
            search_interval,
            http,
        } => {
            let http = http.config()?;
            let backend = storage.backend().await?;
            let mut config =
                ServerConfig::new(storage.data.unwrap_or_default(), Listen::Tcp(listen));
            config.port_file = port_file;
            config.token_ttl = token_ttl;
            config.prune = PruneConfig {
                retention,
                trash_retention: trash_retention.unwrap_or(retention),
                chunk_grace,
                interval: prune_interval,
            };
            config.search = IndexConfig {
                interval: search_interval,
            };
            config.http = http;
            config.rate_limits = rate_limit;
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
            let meta = storage.meta().await?;
            let user = loft_server::add_user_to(meta.as_ref(), &name, &password).await?;
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
            storage.meta().await?.set_quota(&name, quota).await?;
            match quota {
                Some(bytes) => println!("quota of {name}: {bytes} bytes"),
                None => println!("quota of {name}: none"),
            }
            Ok(())
        }
        Command::Migrate { storage } => {
            let meta = storage.meta().await?;
            println!(
                "metadata schema at version {}",
                meta.schema_version().await?
            );
            Ok(())
        }
        Command::Check {
            storage,
            repair,
            grace,
        } => {
            let backend = storage.backend().await?;
            let report = loft_server::check::check(
                backend.meta.as_ref(),
                &backend.chunks,
                repair.then_some(grace),
            )
            .await?;
            println!(
                "{} chunk records, {} stored chunks",
                report.recorded, report.stored
            );
            for id in &report.missing {
                println!("missing: chunk {id} is referenced by a version but not stored");
            }
            for id in &report.missing_unreferenced {
                println!("missing (unreferenced upload): chunk {id}");
            }
            for orphan in &report.orphans {
                println!("orphan: chunk {} is stored without a record", orphan.id);
            }
            for leftover in &report.leftovers {
                println!(
                    "leftover: {} is the temporary file of an interrupted chunk write",
                    leftover.path
                );
            }
            for drift in &report.usage_drifts {
                println!(
                    "usage: {} is counted as storing {} bytes; its versions hold {}{}",
                    drift.user,
                    drift.counted,
                    drift.stored,
                    if repair { " (count set right)" } else { "" }
                );
            }
            if repair {
                println!("deleted {} orphans older than {grace:?}", report.deleted);
                println!(
                    "deleted {} leftovers older than {grace:?}",
                    report.leftovers_deleted
                );
            }
            if !report.healthy() {
                anyhow::bail!("{} referenced chunks are missing", report.missing.len());
            }
            println!("ok");
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
