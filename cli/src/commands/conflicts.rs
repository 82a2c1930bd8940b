//! `loft conflicts`: the conflicted copies in the mounted drive, and settling one.
//! Settling works through the mount like any other change (a rename or a delete), so
//! it is local at once and reaches the server and the other devices by the feed.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::ValueEnum;
use loft_vfs::Conflict;

use super::mounted::{drive_path, live_mount};
use crate::home::LoftHome;
use crate::mount::control::{Request, ask};
use crate::mount::record::MountRecord;

/// Which side of a conflict stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Keep {
    /// This device's version.
    Mine,
    /// The other device's version.
    Theirs,
    /// Both: the copy stays beside the file under a plain name.
    Both,
}

async fn conflicts(home: &LoftHome) -> Result<Vec<Conflict>> {
    let reply = ask(&home.mount_socket(), &Request::Conflicts).await?;
    let list = reply
        .get("conflicts")
        .cloned()
        .ok_or_else(|| anyhow!("the mount sent no conflict list"))?;
    Ok(serde_json::from_value(list)?)
}

/// `loft conflicts [--json]`.
pub async fn list(home: &LoftHome, json: bool) -> Result<()> {
    live_mount(home)?;
    let found = conflicts(home).await?;
    if json {
        println!("{}", serde_json::to_string(&found)?);
        return Ok(());
    }
    if found.is_empty() {
        println!("no conflicts");
    }
    for conflict in &found {
        println!(
            "{}\n    conflicts with {} (copy from {}{})",
            conflict.path,
            conflict.original,
            conflict.device,
            if conflict.mine { ", this device" } else { "" }
        );
    }
    Ok(())
}

fn in_mount(record: &MountRecord, drive: &str) -> PathBuf {
    record.mountpoint.join(drive.trim_start_matches('/'))
}

/// `loft conflicts resolve PATH --keep mine|theirs|both`.
pub async fn resolve(home: &LoftHome, path: &Path, keep: Keep) -> Result<()> {
    let record = live_mount(home)?;
    let drive = String::from_utf8_lossy(&drive_path(&record, path)?).into_owned();
    let found = conflicts(home).await?;
    let matching: Vec<&Conflict> = found
        .iter()
        .filter(|c| c.path == drive || c.original == drive)
        .collect();
    let conflict = match matching.as_slice() {
        [] => bail!("{}: no conflict here", path.display()),
        [one] => (*one).clone(),
        _ => bail!(
            "{}: several conflicted copies; name the copy to settle: {}",
            path.display(),
            matching
                .iter()
                .map(|c| c.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let copy = in_mount(&record, &conflict.path);
    let original = in_mount(&record, &conflict.original);
    let outcome =
        tokio::task::spawn_blocking(move || settle(&copy, &original, &conflict, keep)).await??;
    println!("{outcome}");
    Ok(())
}

fn settle(copy: &Path, original: &Path, conflict: &Conflict, keep: Keep) -> Result<String> {
    let copy_wins = match keep {
        Keep::Mine => conflict.mine,
        Keep::Theirs => !conflict.mine,
        Keep::Both => {
            let target = plain_name(original, &conflict.device);
            std::fs::rename(copy, &target)?;
            return Ok(format!("kept both: {}", target.display()));
        }
    };
    if copy_wins {
        // A rename over the file commits the copy's content as its new version.
        std::fs::rename(copy, original)?;
        Ok(format!("{} now has the copy's content", original.display()))
    } else {
        std::fs::remove_file(copy)?;
        Ok(format!("removed {}", copy.display()))
    }
}

/// `name (DEVICE).ext` beside `original`, numbered when taken.
fn plain_name(original: &Path, device: &str) -> PathBuf {
    let stem = original
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = original
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let dir = original.parent().unwrap_or(Path::new("/"));
    (1..)
        .map(|n| {
            let number = if n > 1 {
                format!(" {n}")
            } else {
                String::new()
            };
            dir.join(format!("{stem} ({device}{number}){ext}"))
        })
        .find(|candidate| !candidate.exists())
        .unwrap_or_else(|| original.to_path_buf())
}
