//! Mounting a device's drive with the real `loft mount` (FUSE) for end-to-end tests,
//! and reading the mount's status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{DEADLINE, Device, describe, wait_for};

/// How long a change may take to reach another mount (the sync target).
pub const SYNC: Duration = Duration::from_secs(5);

/// Waits until `path` reads as `content` (another device's change arriving).
#[track_caller]
pub fn wait_content(path: &Path, content: &[u8]) {
    wait_content_within(path, content, SYNC);
}

/// Like [`wait_content`], with its own deadline.
#[track_caller]
pub fn wait_content_within(path: &Path, content: &[u8], deadline: Duration) {
    let what = format!(
        "{} to read {:?}",
        path.display(),
        String::from_utf8_lossy(content)
    );
    wait_for(&what, deadline, || {
        (std::fs::read(path).ok().as_deref() == Some(content)).then_some(())
    });
}

/// A directory others may enter (FUSE with allow_other, tests that switch users).
pub fn open_dir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// A live mount of a device's drive; unmounted (or detached) when dropped.
pub struct Mount<'d> {
    pub device: &'d Device,
    /// Keeps the mount directory's parent alive; taken by [`Mount::kill9`].
    parent: Option<tempfile::TempDir>,
    dir: PathBuf,
}

impl Device {
    /// `loft mount DIR EXTRA…`, which must succeed.
    pub fn mount(&self, extra: &[&str]) -> Mount<'_> {
        let parent = open_dir("loft-mnt-");
        let dir = parent.path().join("drive");
        std::fs::create_dir(&dir).expect("mount dir");
        self.mount_at(parent, dir, extra)
    }

    /// Mounts at `dir` (inside `parent`, which the mount keeps alive).
    pub fn mount_at(&self, parent: tempfile::TempDir, dir: PathBuf, extra: &[&str]) -> Mount<'_> {
        let dir_arg = dir.to_string_lossy().into_owned();
        let mut args = vec!["mount", dir_arg.as_str()];
        args.extend_from_slice(extra);
        let output = self.run(&args);
        assert!(
            output.status.success(),
            "loft mount failed: {}\nlog:\n{}",
            describe(&output),
            self.mount_log()
        );
        Mount {
            device: self,
            parent: Some(parent),
            dir,
        }
    }

    /// The background mount process's log.
    pub fn mount_log(&self) -> String {
        std::fs::read_to_string(self.path().join("mount.log")).unwrap_or_default()
    }

    /// The device's local cache (mirror and body files).
    pub fn cache_dir(&self) -> PathBuf {
        self.path().join("cache")
    }
}

impl Mount<'_> {
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `loft status --json` of this mount.
    pub fn status(&self) -> serde_json::Value {
        self.device.json(&["status", "--json"])
    }

    /// `loft status PATH --json` for `rel` inside the mount.
    pub fn path_status(&self, rel: &str) -> serde_json::Value {
        let path = self.dir.join(rel).to_string_lossy().into_owned();
        self.device.json(&["status", &path, "--json"])
    }

    pub fn bytes_downloaded(&self) -> u64 {
        self.status()["bytes_downloaded"]
            .as_u64()
            .expect("bytes_downloaded")
    }

    /// The mount process's pid.
    pub fn pid(&self) -> u32 {
        self.status()["pid"].as_u64().expect("pid") as u32
    }

    /// `loft sync`, which must succeed.
    pub fn sync(&self) {
        self.device.ok(&["sync", "--timeout", "120s"]);
    }

    /// `loft unmount`, which must succeed; the directory is then a plain directory.
    pub fn unmount(mut self) {
        let dir = self.dir.to_string_lossy().into_owned();
        let output = self.device.run(&["unmount", &dir]);
        assert!(
            output.status.success(),
            "loft unmount failed: {}\nlog:\n{}",
            describe(&output),
            self.device.mount_log()
        );
        self.dir = PathBuf::new();
    }

    /// Waits until the mount process is gone (after a kill). A zombie counts as gone:
    /// the mount process is detached, and not every init reaps orphans promptly.
    pub fn wait_gone(&self, pid: u32) {
        wait_for("the mount process to exit", DEADLINE, || {
            // SAFETY: signal 0 only checks existence.
            let exists = unsafe { libc::kill(pid as i32, 0) } == 0;
            (!exists || is_zombie(pid)).then_some(())
        });
    }

    /// Kills the mount process with SIGKILL and waits until it is gone. The directory
    /// is left a dead FUSE mount; it is returned with the parent that keeps it, so
    /// that [`Device::mount_at`] can mount there again.
    pub fn kill9(mut self) -> (tempfile::TempDir, PathBuf) {
        let pid = self.pid();
        super::signal(pid, libc::SIGKILL);
        self.wait_gone(pid);
        let dir = std::mem::take(&mut self.dir);
        (self.parent.take().expect("the mount's parent"), dir)
    }

    /// Forgets this mount without unmounting (it was killed or unmounted by hand).
    pub fn forget(mut self) {
        self.dir = PathBuf::new();
    }
}

/// True when `pid` has exited and waits to be reaped.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        if self.dir.as_os_str().is_empty() {
            return;
        }
        let dir = self.dir.to_string_lossy().into_owned();
        let output = self.device.run(&["unmount", &dir]);
        if !output.status.success() {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
