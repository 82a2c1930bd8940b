//! What a file or the whole mount holds locally, for `loft status` and the
//! `user.loft.state` xattr.

use std::sync::atomic::Ordering;

use loft_cache::mirror::{Kind, Node};
use serde::Serialize;

use crate::core::{Vfs, lock};
use crate::error::VfsResult;

/// How much of a file is on this device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileState {
    /// Nothing local: a placeholder.
    OnlineOnly,
    /// Some chunks local.
    Partial,
    /// Every byte local and committed.
    Hydrated,
    /// Local changes not yet committed.
    Dirty,
    /// Kept on this device only (ignored): never sent to the server.
    LocalOnly,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::OnlineOnly => "online-only",
            FileState::Partial => "partial",
            FileState::Hydrated => "hydrated",
            FileState::Dirty => "dirty",
            FileState::LocalOnly => "local-only",
        }
    }
}

/// `loft status PATH --json`.
#[derive(Clone, Debug, Serialize)]
pub struct PathStatus {
    pub state: FileState,
    pub pinned: bool,
    pub size: u64,
    pub local_bytes: u64,
}

/// `loft status --json` for a mount.
#[derive(Clone, Debug, Serialize)]
pub struct MountStatus {
    pub online: bool,
    pub cache_bytes: u64,
    pub cache_budget: u64,
    pub queued_uploads: u64,
    pub bytes_downloaded: u64,
    pub bytes_uploaded: u64,
    pub passthrough: bool,
    /// Why the last hydration was refused, while the cache stays full.
    pub cache_full: Option<String>,
    /// Changes the server refused (logged with the reason).
    pub rejected_changes: u64,
    pub last_error: Option<String>,
    /// When the change feed last applied changes or caught up (RFC 3339), if ever.
    pub last_sync: Option<String>,
    /// The change feed's position: the last journal seq applied.
    pub cursor: u64,
    /// Conflicted copies in the mirror.
    pub conflicts: u64,
}

impl Vfs {
    pub(crate) fn file_state(&self, ino: u64) -> VfsResult<FileState> {
        Ok(self.path_status(ino)?.state)
    }

    /// A file's state; for a directory, the sum over everything below it.
    pub fn path_status(&self, ino: u64) -> VfsResult<PathStatus> {
        let node = self.node(ino)?;
        let mut status = self.local_status(&node)?;
        if node.local_only {
            status.state = FileState::LocalOnly;
        }
        Ok(status)
    }

    fn local_status(&self, node: &Node) -> VfsResult<PathStatus> {
        let node = node.clone();
        let ino = node.ino;
        if node.kind == Kind::Directory {
            let (mut size, mut local, mut dirty) = (0u64, 0u64, false);
            let mut stack = vec![ino];
            while let Some(dir) = stack.pop() {
                // A folder never listed on this device (after a wiped cache) holds no
                // entries in the mirror yet: summing it unlisted would report 0 bytes.
                self.ensure_listed(dir)?;
                for (_, child) in self.mirror.read(|db| db.entries(dir))? {
                    let Some(child) = self.mirror.read(|db| db.node(child))? else {
                        continue;
                    };
                    match child.kind {
                        Kind::Directory => stack.push(child.ino),
                        Kind::File => {
                            size += child.size;
                            local += if child.dirty {
                                child.size
                            } else {
                                child.local_bytes.min(child.size)
                            };
                            dirty |= child.dirty && !child.local_only;
                        }
                        _ => {}
                    }
                }
            }
            return Ok(PathStatus {
                state: classify(dirty, size, local),
                pinned: node.pinned,
                size,
                local_bytes: local,
            });
        }
        let attr = self.getattr(ino)?;
        let local = if node.dirty {
            attr.size
        } else {
            node.local_bytes.min(node.size)
        };
        Ok(PathStatus {
            state: classify(node.dirty, attr.size, local),
            pinned: node.pinned,
            size: attr.size,
            local_bytes: local,
        })
    }

    pub fn mount_status(&self) -> VfsResult<MountStatus> {
        let (queued, dirty) =
            self.rx(|db| Ok((db.queued_count()?, db.unsent_files()?.len() as u64)))?;
        Ok(MountStatus {
            online: self.counters.online.load(Ordering::Relaxed),
            cache_bytes: self.held_total.load(Ordering::Relaxed),
            cache_budget: self.config.cache_size,
            queued_uploads: queued + dirty,
            bytes_downloaded: self.counters.bytes_downloaded.load(Ordering::Relaxed),
            bytes_uploaded: self.counters.bytes_uploaded.load(Ordering::Relaxed),
            passthrough: self.counters.passthrough.load(Ordering::Relaxed),
            cache_full: lock(&self.counters.cache_full).clone(),
            rejected_changes: self.counters.rejected.load(Ordering::Relaxed),
            last_error: lock(&self.counters.last_error).clone(),
            last_sync: match self.counters.last_sync.load(Ordering::Relaxed) {
                0 => None,
                nanos => Some(rfc3339(nanos)),
            },
            cursor: self.counters.cursor.load(Ordering::Relaxed),
            conflicts: self.conflicts()?.len() as u64,
        })
    }

    /// Resolves a drive path (`/a/b`) to an inode, listing directories on the way.
    pub fn resolve(&self, path: &[u8]) -> VfsResult<u64> {
        let mut ino = crate::ROOT_INO;
        for part in path.split(|b| *b == b'/').filter(|p| !p.is_empty()) {
            ino = self.lookup(ino, part)?.ino;
        }
        Ok(ino)
    }
}

fn classify(dirty: bool, size: u64, local: u64) -> FileState {
    if dirty {
        FileState::Dirty
    } else if local >= size {
        FileState::Hydrated
    } else if local == 0 {
        FileState::OnlineOnly
    } else {
        FileState::Partial
    }
}

/// What `statfs` reports: with a quota, the quota as the size and the usage as used
/// space (available space no more than the cache disk has); else the cache disk's space.
#[derive(Clone, Copy, Debug)]
pub struct FsStats {
    pub blocks: u64,
    pub free: u64,
    pub available: u64,
    pub files: u64,
    pub files_free: u64,
}

impl Vfs {
    /// Space figures in 4 KiB blocks, from the file system holding the cache.
    pub fn statfs(&self) -> VfsResult<FsStats> {
        let path = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
            self.config.cache_dir.as_os_str(),
        ))
        .map_err(|_| crate::VfsError::Invalid("cache path"))?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is NUL-terminated; `stat` is writable memory of the right type.
        if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: statvfs returned 0, so it filled `stat`.
        let stat = unsafe { stat.assume_init() };
        #[allow(clippy::unnecessary_cast)]
        let scale = |blocks: u64| blocks.saturating_mul(stat.f_frsize as u64) / 4096;
        // Writes stop at the disk reserve, so that is not offered as free space.
        let reserve = self.config.disk_reserve / 4096;
        #[allow(clippy::unnecessary_cast)]
        let disk = FsStats {
            blocks: scale(stat.f_blocks as u64),
            free: scale(stat.f_bfree as u64).saturating_sub(reserve),
            available: scale(stat.f_bavail as u64).saturating_sub(reserve),
            files: u64::MAX >> 8,
            files_free: u64::MAX >> 9,
        };
        let Some(usage) = self.quota_usage() else {
            return Ok(disk);
        };
        // Whole blocks: the quota rounds down, the usage up, so neither is overstated.
        let blocks = usage.quota / 4096;
        let free = blocks.saturating_sub(usage.used.div_ceil(4096));
        Ok(FsStats {
            blocks,
            free,
            available: free.min(disk.available),
            ..disk
        })
    }

    /// `fsyncdir`: the mirror reaches the disk.
    pub fn sync_metadata(&self) -> VfsResult<()> {
        Ok(self.mirror.sync_wal()?)
    }
}

/// A time as RFC 3339 in UTC, to the millisecond.
fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_795_651_200_123_000_000),
            "2026-11-26T00:00:00.123Z"
        );
    }
}
