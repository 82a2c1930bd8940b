//! `loft`: the Loft client. Parses arguments and calls the command modules; the
//! libraries never see argv or the environment (except `LOFT_HOME` read here).

mod commands;
mod config;
mod embedded;
mod home;
mod mount;
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
    /// Show the bytes that count toward your quota, and the quota.
    Quota {
        #[arg(long)]
        json: bool,
    },
    /// List a file's versions, newest first.
    Versions {
        path: OsString,
        #[arg(long)]
        json: bool,
    },
    /// Make an old version of a file current again (as a new version).
    Restore {
        path: OsString,
        /// The version's id (from `loft versions`).
        #[arg(long, value_name = "ID")]
        version: u64,
    },
    /// List, restore or empty the trash.
    Trash {
        #[command(subcommand)]
        command: TrashCommand,
    },
    /// Share a folder or file with a user (or change the user's role); see also
    /// `share list` and `share revoke`.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Share {
        #[command(subcommand)]
        action: Option<ShareCommand>,
        /// The folder or file (a drive path).
        #[arg(required = true)]
        path: Option<OsString>,
        /// Who to share with.
        #[arg(required = true)]
        user: Option<String>,
        #[arg(long, value_enum, required = true)]
        role: Option<commands::sharing::RoleArg>,
    },
    /// Comment on a file or folder (commenters, editors and owners).
    Comment { path: OsString, text: String },
    /// List the comments on a file or folder, oldest first.
    Comments {
        path: OsString,
        #[arg(long)]
        json: bool,
    },
    /// Find files and folders by name or by words in their text (text, Markdown, source
    /// code), online-only ones and shared ones included. Prints `PATH<TAB>snippet`.
    Search {
        /// Words to look for; each must match the start of a word.
        query: String,
        /// Most hits to show (0: the server's default).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show the connection, this device and its mount; with PATH, what of it is local.
    Status {
        path: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Mount the drive at DIR (in the background unless --foreground).
    Mount {
        dir: PathBuf,
        /// Server to use instead of the configured one (or the embedded one).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Budget for clean cached bytes, e.g. 64MiB, 10GiB.
        #[arg(long, value_name = "SIZE", default_value = "10GiB", value_parser = parse_size)]
        cache_size: u64,
        /// Writes fail with ENOSPC when less than this is free on the cache's disk.
        #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = parse_size)]
        disk_reserve: u64,
        /// Quiet time after the last close before a version is uploaded.
        #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = parse_duration)]
        upload_debounce: std::time::Duration,
        /// Nice levels below the mount's request threads at which its background work
        /// runs (uploads, the change feed, the embedded server); 0: the same.
        #[arg(long, value_name = "N", default_value_t = mount::BACKGROUND_NICE,
              value_parser = clap::value_parser!(i32).range(0..=19))]
        background_nice: i32,
        /// FUSE mount options, comma-separated (fsname=…, allow_other, ro, …).
        #[arg(short = 'o', value_name = "OPTS")]
        options: Vec<String>,
        /// Stay in the foreground (logs on stderr).
        #[arg(long)]
        foreground: bool,
        /// Print nothing on success (as mount helpers do).
        #[arg(long, hide = true)]
        quiet: bool,
    },
    /// Unmount after every queued change is on the server (offline: keep them queued).
    Unmount { dir: PathBuf },
    /// Wait until every queued change of this device is on the server.
    Sync {
        #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Keep files on this device (recursive); returns when all are local.
    Pin {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Drop the local bytes of files (recursive); they stay visible as placeholders.
    #[command(alias = "unpin")]
    OnlineOnly {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Public links to files and folders, served by the server's HTTP gateway.
    Link {
        #[command(subcommand)]
        command: LinkCommand,
    },
    /// List conflicted copies in the mounted drive, or settle one.
    Conflicts {
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<ConflictsCommand>,
    },
}

#[derive(Subcommand)]
enum TrashCommand {
    /// Deleted items, most recent first: id, size, deletion time, original path.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Put an item back at its original path (`name (restored)` if that is taken).
    Restore {
        /// The item's original path (the most recently deleted one if several match).
        #[arg(required_unless_present = "id")]
        path: Option<OsString>,
        /// The item's id (from `loft trash list`) instead of its path.
        #[arg(long, value_name = "ID", conflicts_with = "path")]
        id: Option<u64>,
    },
    /// Delete everything in the trash for good.
    Empty,
}

#[derive(Subcommand)]
enum LinkCommand {
    /// Create a link to PATH; prints its URL as the first line.
    Create {
        path: OsString,
        /// The link stops working after this long (30s, 12h, 7d) [default: never].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<std::time::Duration>,
        /// Ask for the password in this file (a trailing newline is ignored).
        #[arg(long, value_name = "F")]
        password_file: Option<PathBuf>,
        /// viewer: open and download; upload: upload into a folder, nothing readable.
        #[arg(long, value_enum, default_value = "viewer")]
        role: commands::links::LinkRoleArg,
        /// The link stops working after this many completed downloads.
        #[arg(long, value_name = "N")]
        max_downloads: Option<u64>,
        /// Print {"id", "url", "expires"}.
        #[arg(long)]
        json: bool,
    },
    /// List your links (their URLs are shown only when created).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a link: it answers 404 from then on.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum ShareCommand {
    /// Who holds a shared folder or file, with their roles.
    List {
        path: OsString,
        #[arg(long)]
        json: bool,
    },
    /// Take a user's access away, and that of everyone the user shared with.
    Revoke { path: OsString, user: String },
}

#[derive(Subcommand)]
enum ConflictsCommand {
    /// Settle the conflict of PATH (the conflicted copy, or the file it conflicts with).
    Resolve {
        path: PathBuf,
        /// mine: this device's version wins; theirs: the other device's; both: keep
        /// both, the copy renamed to `name (DEVICE).ext`.
        #[arg(long, value_enum)]
        keep: commands::conflicts::Keep,
    },
}

fn parse_size(text: &str) -> Result<u64, String> {
    loft_remote::units::parse_size(text).map_err(|e| e.to_string())
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    loft_remote::units::parse_duration(text).map_err(|e| e.to_string())
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
    let cli = match mount_helper_args() {
        Some(args) => Cli::parse_from(args),
        None => Cli::parse(),
    };
    // A mount answers the kernel on threads of its own and does the rest on the
    // runtime, which yields to them.
    let runtime_nice = match &cli.command {
        Command::Mount {
            foreground: true,
            background_nice,
            ..
        } => *background_nice,
        _ => 0,
    };
    loft_remote::binary::run_main("loft", "warn", runtime_nice, run(cli))
}

/// Invoked as `mount.fuse.loft SOURCE DIR [-o OPTS]` (by `mount -t fuse.loft` or
/// fstab): SOURCE is the LOFT_HOME directory, or `loft` for the default one.
fn mount_helper_args() -> Option<Vec<OsString>> {
    let mut args = std::env::args_os();
    let program = PathBuf::from(args.next()?);
    if program.file_name()? != "mount.fuse.loft" {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut iter = rest.into_iter();
    while let Some(arg) = iter.next() {
        if arg == "-o" {
            options.extend(iter.next());
        } else if arg.to_string_lossy().starts_with('-') {
            // -n, -s, -v from mount(8): nothing to do.
        } else {
            positional.push(arg);
        }
    }
    let mut out: Vec<OsString> = vec!["loft".into(), "mount".into(), "--quiet".into()];
    match positional.as_slice() {
        [source, dir] => {
            if source != "loft" {
                // SAFETY: set before any other thread exists.
                unsafe { std::env::set_var("LOFT_HOME", source) };
            }
            out.push(dir.clone());
        }
        _ => {
            eprintln!("usage: mount.fuse.loft SOURCE DIR [-o OPTIONS]");
            std::process::exit(2);
        }
    }
    // The source shows in the mount table as given (what `umount SOURCE` and
    // tools matching mounts by source expect).
    let named = options.iter().any(|o| {
        o.to_string_lossy()
            .split(',')
            .any(|o| o.starts_with("fsname="))
    });
    if !named {
        let mut fsname = OsString::from("fsname=");
        fsname.push(&positional[0]);
        options.push(fsname);
    }
    for option in options {
        out.push("-o".into());
        out.push(option);
    }
    Some(out)
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
        Command::Mount {
            dir,
            server,
            cache_size,
            disk_reserve,
            upload_debounce,
            background_nice,
            options,
            foreground,
            quiet,
        } => {
            let args = mount::MountArgs {
                quiet,
                dir,
                server,
                cache_size,
                disk_reserve,
                upload_debounce,
                background_nice,
                options,
                foreground,
            };
            mount::mount(home, args).await
        }
        Command::Unmount { dir } => commands::mounted::unmount(&home, &dir).await,
        Command::Sync { timeout } => commands::mounted::sync(&home, timeout).await,
        Command::Pin { paths } => commands::mounted::pin(&home, &paths, true).await,
        Command::OnlineOnly { paths } => commands::mounted::pin(&home, &paths, false).await,
        Command::Conflicts { json, action } => match action {
            None => commands::conflicts::list(&home, json).await,
            Some(ConflictsCommand::Resolve { path, keep }) => {
                commands::conflicts::resolve(&home, &path, keep).await
            }
        },
        Command::Status {
            path: Some(path),
            json,
        } => commands::mounted::path_status(&home, &path, json).await,
        Command::Status { path: None, json } if json => {
            if let Some(status) = commands::mounted::mount_status(&home).await {
                println!("{status}");
                return Ok(());
            }
            let session = Session::open(home).await?;
            let result = commands::status::status(&session, json).await;
            session.close().await;
            result
        }
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
                Command::Link {
                    command:
                        LinkCommand::Create {
                            path,
                            expires,
                            password_file,
                            role,
                            max_downloads,
                            json,
                        },
                } => {
                    let args = commands::links::CreateArgs {
                        path: &path,
                        expires,
                        password_file: password_file.as_deref(),
                        role,
                        max_downloads,
                        json,
                    };
                    commands::links::create(&session, args).await
                }
                Command::Link {
                    command: LinkCommand::List { json },
                } => commands::links::list(&session, json).await,
                Command::Link {
                    command: LinkCommand::Revoke { id },
                } => commands::links::revoke(&session, &id).await,
                Command::Share {
                    action: Some(ShareCommand::List { path, json }),
                    ..
                } => commands::sharing::list(&session, &path, json).await,
                Command::Share {
                    action: Some(ShareCommand::Revoke { path, user }),
                    ..
                } => commands::sharing::revoke(&session, &path, &user).await,
                Command::Share {
                    action: None,
                    path: Some(path),
                    user: Some(user),
                    role: Some(role),
                } => commands::sharing::share(&session, &path, &user, role).await,
                Command::Share { .. } => Err(anyhow::anyhow!(
                    "usage: loft share PATH USER --role owner|editor|commenter|viewer"
                )),
                Command::Comment { path, text } => {
                    commands::sharing::comment(&session, &path, &text).await
                }
                Command::Comments { path, json } => {
                    commands::sharing::comments(&session, &path, json).await
                }
                Command::Quota { json } => commands::quota::quota(&session, json).await,
                Command::Search { query, limit, json } => {
                    commands::search::search(&session, &query, limit, json).await
                }
                Command::Versions { path, json } => {
                    commands::versions::versions(&session, &path, json).await
                }
                Command::Restore { path, version } => {
                    commands::versions::restore(&session, &path, version).await
                }
                Command::Trash { command } => match command {
                    TrashCommand::List { json } => commands::trash::list(&session, json).await,
                    TrashCommand::Restore { path, id } => {
                        commands::trash::restore(&session, path.as_deref(), id).await
                    }
                    TrashCommand::Empty => commands::trash::empty(&session).await,
                },
                Command::Status { json, .. } => {
                    let mount = commands::mounted::mount_status(&session.home).await;
                    commands::status::status(&session, json).await?;
                    if let Some(mount) = mount {
                        print_mount_status(&mount);
                    }
                    Ok(())
                }
                _ => unreachable!("handled above"),
            };
            session.close().await;
            result
        }
    }
}

fn print_mount_status(status: &serde_json::Value) {
    println!(
        "mount:  {} ({}{})",
        status["mountpoint"].as_str().unwrap_or("?"),
        if status["online"].as_bool().unwrap_or(false) {
            "online"
        } else {
            "offline"
        },
        if status["passthrough"].as_bool().unwrap_or(false) {
            ", passthrough"
        } else {
            ""
        }
    );
    println!(
        "cache:  {} of {} bytes",
        status["cache_bytes"], status["cache_budget"]
    );
    println!("queued: {} changes", status["queued_uploads"]);
    if let Some(full) = status["cache_full"].as_str() {
        println!("cache full: {full}");
    }
}
