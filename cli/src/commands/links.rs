//! `loft link create|list|revoke`: public links served by the server's HTTP gateway.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use loft_remote::proto;
use loft_remote::units::read_password_file;

use super::rfc3339;
use crate::paths::{drive_path, show};
use crate::session::Session;

/// What a link lets its holder do.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LinkRoleArg {
    /// Open the page, preview and download.
    Viewer,
    /// Upload files into the linked folder; nothing can be read.
    Upload,
}

/// Options of `loft link create`, filled by the argument parser.
pub struct CreateArgs<'a> {
    pub path: &'a OsStr,
    pub expires: Option<Duration>,
    pub password_file: Option<&'a Path>,
    pub role: LinkRoleArg,
    pub max_downloads: Option<u64>,
    pub json: bool,
}

fn role_name(role: i32) -> &'static str {
    match proto::LinkRole::try_from(role) {
        Ok(proto::LinkRole::LinkUpload) => "upload",
        _ => "viewer",
    }
}

/// Creates a link and prints its URL first.
pub async fn create(session: &Session, args: CreateArgs<'_>) -> Result<()> {
    let path = drive_path(args.path)?;
    let password = match args.password_file {
        Some(file) => {
            let password =
                read_password_file(file).with_context(|| format!("reading {}", file.display()))?;
            if password.is_empty() {
                return Err(anyhow!("{}: the password is empty", file.display()));
            }
            password
        }
        None => String::new(),
    };
    if args.max_downloads == Some(0) {
        return Err(anyhow!("--max-downloads must be at least 1"));
    }
    let expires_in = match args.expires {
        Some(duration) if duration.as_secs() == 0 => {
            return Err(anyhow!("--expires must be at least 1s"));
        }
        Some(duration) => duration.as_secs(),
        None => 0,
    };
    let role = match args.role {
        LinkRoleArg::Viewer => proto::LinkRole::LinkViewer,
        LinkRoleArg::Upload => proto::LinkRole::LinkUpload,
    };
    let reply = session
        .client
        .create_link(proto::CreateLinkRequest {
            path: path.clone().into(),
            role: role as i32,
            expires_in,
            password,
            max_downloads: args.max_downloads.unwrap_or(0),
        })
        .await
        .map_err(|e| anyhow!("{}: {e}", show(&path)))?;
    let link = reply.link.unwrap_or_default();
    let expires = link.expires.as_ref().map(|t| rfc3339(Some(t)));
    if args.json {
        let value = serde_json::json!({ "id": link.id, "url": reply.url, "expires": expires });
        println!("{value}");
        return Ok(());
    }
    println!("{}", reply.url);
    println!(
        "link {} ({}) to {}, expires {}{}",
        link.id,
        role_name(link.role),
        show(&path),
        expires.as_deref().unwrap_or("never"),
        if link.has_password {
            ", password protected"
        } else {
            ""
        }
    );
    Ok(())
}

/// Lists the caller's links, newest first.
pub async fn list(session: &Session, json: bool) -> Result<()> {
    let links = session.client.list_links().await?;
    if json {
        let list: Vec<_> = links
            .iter()
            .map(|l| {
                serde_json::json!({
                    "id": l.id,
                    "path": show(&l.path),
                    "role": role_name(l.role),
                    "created": rfc3339(l.created.as_ref()),
                    "expires": l.expires.as_ref().map(|t| rfc3339(Some(t))),
                    "password": l.has_password,
                    "max_downloads": (l.max_downloads > 0).then_some(l.max_downloads),
                    "downloads": l.downloads,
                    "revoked": l.revoked,
                    "live": l.live,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    for l in links {
        let state = if l.revoked {
            "revoked"
        } else if l.live {
            "live"
        } else {
            "ended"
        };
        let downloads = match l.max_downloads {
            0 => format!("{} downloads", l.downloads),
            max => format!("{}/{max} downloads", l.downloads),
        };
        println!(
            "{:>6}  {:<7} {:<7} {}  expires {}  {downloads}{}",
            l.id,
            state,
            role_name(l.role),
            show(&l.path),
            l.expires
                .as_ref()
                .map_or_else(|| "never".to_string(), |t| rfc3339(Some(t))),
            if l.has_password { "  password" } else { "" }
        );
    }
    Ok(())
}

/// Revokes a link: it answers 404 from then on.
pub async fn revoke(session: &Session, id: &str) -> Result<()> {
    let id: u64 = id
        .parse()
        .map_err(|_| anyhow!("{id}: link ids are numbers (see `loft link list`)"))?;
    session
        .client
        .revoke_link(id)
        .await
        .map_err(|e| anyhow!("link {id}: {e}"))?;
    println!("revoked link {id}");
    Ok(())
}
