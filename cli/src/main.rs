//! `loft`: the Loft client. Parses arguments and calls the command modules; the
//! libraries never see argv or the environment (except `LOFT_HOME` read here).

mod commands;
mod config;
mod embedded;
mod home;
mod paths;
mod progress;
mod session;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use home::LoftHome;
use session::Session;

#[derive(Parser)]
#[command(name = "loft", version, about = "Loft: the cloud drive you mount")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign this device in to a server.
    Login {
        /// Server address (http://HOST:PORT or https://...); repeat for fallbacks.
        #[arg(long = "server", value_name = "URL", required = true)]
        servers: Vec<String>,
        #[arg(long)]
        user: String,
        /// File holding the password (a trailing newline is ignored).
        #[arg(long, value_name = "F")]
        password_file: PathBuf,
        /// Name of this device (default: hostname plus a short random id).
        #[arg(long, value_name = "NAME")]
        device: Option<String>,
    },
    /// Sign this device out.
    Logout,
    /// List or revoke this user's devices.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Upload a local file to the drive (a new version if it exists).
    Put {
        local: PathBuf,
        remote: OsString,
        #[arg(long)]
        json: bool,
    },
    /// Download a file from the drive.
    Get {
        remote: OsString,
        local: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List a folder.
    Ls {
        path: Option<OsString>,
        /// Show kind, mode, size and modification time.
        #[arg(short, long)]
        long: bool,
        #[arg(long)]
        json: bool,
    },
    /// Move an entry to the trash.
    Rm {
        path: OsString,
        /// Remove a folder with everything in it.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Rename or move an entry.
    Mv { from: OsString, to: OsString },
    /// List a file's versions, newest first.
    Versions {
        path: OsString,
        #[arg(long)]
        json: bool,
    },
    /// Show the connection and this device.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// List devices.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device (by id or name): its sessions end at once.
    Revoke { device: String },
}

fn main() -> ExitCode {
    loft_remote::binary::run_main("loft", "warn", run(Cli::parse()))
}

async fn run(cli: Cli) -> Result<()> {
    let home = LoftHome::from_env()?;
    match cli.command {
        Command::Login {
            servers,
            user,
            password_file,
            device,
        } => commands::account::login(home, servers, &user, &password_file, device).await,
        Command::Logout => commands::account::logout(home).await,
        command => {
            let session = Session::open(home).await?;
            let result = match command {
                Command::Devices {
                    command: DevicesCommand::List { json },
                } => commands::account::devices_list(&session, json).await,
                Command::Devices {
                    command: DevicesCommand::Revoke { device },
                } => commands::account::devices_revoke(&session, &device).await,
                Command::Put {
                    local,
                    remote,
                    json,
                } => commands::transfer::put(&session, &local, &remote, json).await,
                Command::Get {
                    remote,
                    local,
                    json,
                } => commands::transfer::get(&session, &remote, &local, json).await,
                Command::Ls { path, long, json } => {
                    commands::files::ls(&session, path.as_deref(), long, json).await
                }
                Command::Rm { path, recursive } => {
                    commands::files::rm(&session, &path, recursive).await
                }
                Command::Mv { from, to } => commands::files::mv(&session, &from, &to).await,
                Command::Versions { path, json } => {
                    commands::versions::versions(&session, &path, json).await
                }
                Command::Status { json } => commands::status::status(&session, json).await,
                Command::Login { .. } | Command::Logout => unreachable!("handled above"),
            };
            session.close().await;
            result
        }
    }
}
