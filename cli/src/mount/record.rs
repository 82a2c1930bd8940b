//! `mount.json`: which directory this home has mounted, served by which process.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::home::LoftHome;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountRecord {
    pub pid: u32,
    pub mountpoint: PathBuf,
}

impl MountRecord {
    pub fn save(&self, home: &LoftHome) -> Result<()> {
        let path = home.mount_record();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(tmp, path)?;
        Ok(())
    }

    /// The record of a live mount process of `home`, if there is one.
    pub fn live(home: &LoftHome) -> Option<MountRecord> {
        let text = std::fs::read(home.mount_record()).ok()?;
        let record: MountRecord = serde_json::from_slice(&text).ok()?;
        process_alive(record.pid).then_some(record)
    }

    pub fn remove(home: &LoftHome) {
        let _ = std::fs::remove_file(home.mount_record());
    }
}

/// True while `pid` runs. An exited process not yet reaped (a zombie: the mount
/// process is detached, and not every init reaps promptly) counts as gone.
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The state follows the command name, which is in parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    state != Some("Z")
}

/// What is at `dir`: nothing, a plain directory, a live mount, or a dead FUSE mount
/// whose process is gone (ENOTCONN, or ECONNABORTED when the kernel tore the
/// connection down with a request in flight).
#[derive(Debug, PartialEq, Eq)]
pub enum DirState {
    Missing,
    NotADirectory,
    Plain,
    Mounted,
    DeadMount,
}

pub fn dir_state(dir: &Path) -> DirState {
    match std::fs::metadata(dir) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {
            DirState::DeadMount
        }
        Err(_) => DirState::Missing,
        Ok(meta) if !meta.is_dir() => DirState::NotADirectory,
        Ok(_) if is_mountpoint(dir) => DirState::Mounted,
        Ok(_) => DirState::Plain,
    }
}

/// True when `dir` is listed as a mount point in /proc/self/mountinfo.
pub fn is_mountpoint(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = dir.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| point == wanted)
}
