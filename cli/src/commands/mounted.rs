//! Commands that talk to this home's live mount: `unmount`, `sync`, `status` of a
//! mount or a path in it, `pin` and `online-only`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::home::LoftHome;
use crate::mount::control::{Request, ask};
use crate::mount::record::{DirState, MountRecord, dir_state};

pub(crate) fn live_mount(home: &LoftHome) -> Result<MountRecord> {
    MountRecord::live(home).ok_or_else(|| anyhow!("no live mount for this LOFT_HOME"))
}

/// `loft unmount DIR`.
pub async fn unmount(home: &LoftHome, dir: &Path) -> Result<()> {
    let wanted = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if let Some(record) = MountRecord::live(home).filter(|r| r.mountpoint == wanted) {
        let reply = ask(
            &home.mount_socket(),
            &Request::Unmount {
                timeout_ms: 600_000,
            },
        )
        .await?;
        if !reply["synced"].as_bool().unwrap_or(false) {
            let pending = reply["pending"].as_u64().unwrap_or(0);
            println!(
                "offline: {pending} changes stay queued in the local journal and are sent at the next mount"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while crate::mount::record::process_alive(record.pid) {
            if Instant::now() > deadline {
                bail!(
                    "{} is still mounted (files open on it?); see {}",
                    dir.display(),
                    home.mount_log().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        return Ok(());
    }
    match dir_state(dir) {
        DirState::DeadMount => {
            let status = std::process::Command::new("fusermount3")
                .arg("-uz")
                .arg(dir)
                .status()?;
            if !status.success() {
                bail!("could not detach the dead mount at {}", dir.display());
            }
            Ok(())
        }
        DirState::Mounted => bail!("{} is not mounted by this LOFT_HOME", dir.display()),
        _ => bail!("{} is not mounted", dir.display()),
    }
}

/// `loft sync`.
pub async fn sync(home: &LoftHome, timeout: Duration) -> Result<()> {
    live_mount(home)?;
    let reply = ask(
        &home.mount_socket(),
        &Request::Sync {
            timeout_ms: timeout.as_millis() as u64,
        },
    )
    .await?;
    if reply["synced"].as_bool().unwrap_or(false) {
        return Ok(());
    }
    let pending = reply["pending"].as_u64().unwrap_or(0);
    if !reply["online"].as_bool().unwrap_or(false) {
        bail!("offline: {pending} changes are queued and not yet on the server");
    }
    bail!("timed out: {pending} changes are not yet on the server")
}

/// The live mount's status, if one runs.
pub async fn mount_status(home: &LoftHome) -> Option<Value> {
    MountRecord::live(home)?;
    ask(&home.mount_socket(), &Request::Status).await.ok()
}

/// The drive path of `path`, which must be inside the live mount.
pub(crate) fn drive_path(record: &MountRecord, path: &Path) -> Result<Vec<u8>> {
    let full = path
        .canonicalize()
        .with_context(|| format!("{}", path.display()))?;
    let rest = full.strip_prefix(&record.mountpoint).map_err(|_| {
        anyhow!(
            "{} is not inside the mount at {}",
            path.display(),
            record.mountpoint.display()
        )
    })?;
    let mut out = b"/".to_vec();
    out.extend_from_slice(rest.as_os_str().as_bytes());
    Ok(out)
}

/// `loft status PATH`.
pub async fn path_status(home: &LoftHome, path: &Path, json: bool) -> Result<()> {
    let record = live_mount(home)?;
    let drive = drive_path(&record, path)?;
    let reply = ask(&home.mount_socket(), &Request::PathStatus { path: drive }).await?;
    if json {
        println!("{reply}");
    } else {
        println!(
            "{}: {}{}, {} of {} bytes local",
            path.display(),
            reply["state"].as_str().unwrap_or("?"),
            if reply["pinned"].as_bool().unwrap_or(false) {
                ", pinned"
            } else {
                ""
            },
            reply["local_bytes"],
            reply["size"]
        );
    }
    Ok(())
}

fn set_pin(path: &Path, pinned: bool) -> std::io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let value: &[u8] = if pinned { b"1" } else { b"0" };
    // SAFETY: NUL-terminated path and name; `value` is valid for its length.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c"user.loft.pin".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Every file under `root` (or `root` itself), with its size.
fn files_under(root: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let meta = std::fs::symlink_metadata(root).with_context(|| format!("{}", root.display()))?;
    if !meta.is_dir() {
        return Ok(if meta.is_file() {
            vec![(root.to_path_buf(), meta.len())]
        } else {
            Vec::new()
        });
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push((entry.path(), entry.metadata()?.len()));
            }
        }
    }
    Ok(out)
}

/// `loft pin` (`pinned`) and `loft online-only`.
pub async fn pin(home: &LoftHome, paths: &[PathBuf], pinned: bool) -> Result<()> {
    let record = live_mount(home)?;
    let mut failed = Vec::new();
    for path in paths {
        drive_path(&record, path)?;
        let files = files_under(path)?;
        let total: u64 = files.iter().map(|(_, size)| size).sum();
        let (bar, progress) = crate::progress::bytes_bar(
            if pinned { total } else { 0 },
            if pinned { "pinning" } else { "freeing" },
        );
        for (file, size) in files {
            let one = file.clone();
            let result = tokio::task::spawn_blocking(move || set_pin(&one, pinned)).await?;
            match result {
                Ok(()) => progress(if pinned { size } else { 0 }),
                Err(error) => failed.push(format!("{}: {error}", file.display())),
            }
        }
        let top = path.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || set_pin(&top, pinned)).await? {
            failed.push(format!("{}: {error}", path.display()));
        }
        bar.finish_and_clear();
    }
    if failed.is_empty() {
        return Ok(());
    }
    for line in &failed {
        eprintln!("loft: {line}");
    }
    bail!(
        "{} file(s) could not be {}",
        failed.len(),
        if pinned { "fetched" } else { "freed" }
    )
}
