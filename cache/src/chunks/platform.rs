//! The few OS calls std does not offer: free space, directory sync and an exclusive
//! lock on the cache directory. Only Unix implements them; elsewhere they do nothing
//! (no free-space check, no directory sync, no lock), which is said where it matters.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::error::{CacheError, Result};

/// Bytes available to unprivileged users on the file system holding `path`, or `None`
/// where the platform cannot tell.
#[cfg(unix)]
pub(crate) fn available_space(path: &Path) -> io::Result<Option<u64>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable
    // memory of the right type; statvfs initialises it when it returns 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    // The field widths differ between platforms (u32 on some, u64 on Linux).
    #[allow(clippy::unnecessary_cast)]
    let bytes = (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64);
    Ok(Some(bytes))
}

/// Bytes available on the file system holding `path`: unknown on this platform.
#[cfg(not(unix))]
pub(crate) fn available_space(_path: &Path) -> io::Result<Option<u64>> {
    Ok(None)
}

/// Creates directory `path` and any missing parents, readable only by the owner where
/// the platform has modes: the cache holds the plaintext of private files.
pub(crate) fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Makes the entries of directory `path` (creations, renames, removals) durable.
#[cfg(unix)]
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Directory sync: NTFS journals its metadata, and a directory cannot be opened as a
/// plain file there.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// An exclusive lock on a cache directory, held as long as this value lives.
///
/// Two processes sharing a cache directory would delete each other's temporary files
/// at startup and disagree about the budget, so the second one is refused.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// Name of the lock file inside the cache directory.
pub(crate) const LOCK_FILE: &str = "lock";

/// Locks the cache directory `dir` (which must exist), failing with
/// [`CacheError::Locked`] if another process (or another open cache in this process)
/// holds it.
pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(CacheError::io(&path))?;
    try_lock(&file).map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            CacheError::Locked(dir.to_path_buf())
        } else {
            CacheError::Io { path, source: e }
        }
    })?;
    Ok(DirLock { _file: file })
}

/// `flock(LOCK_EX | LOCK_NB)`: tied to the open file, so it is released when the
/// file is closed, including when the process dies.
#[cfg(unix)]
fn try_lock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    // SAFETY: flock on a file descriptor we own for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn created_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b");
        create_private_dir(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn free_space_is_known_on_unix() {
        let dir = tempfile::tempdir().unwrap();
        let space = available_space(dir.path()).unwrap();
        assert_eq!(space.is_some(), cfg!(unix));
    }

    #[cfg(unix)]
    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_dir(dir.path()).unwrap();
        assert!(matches!(lock_dir(dir.path()), Err(CacheError::Locked(_))));
        drop(first);
        lock_dir(dir.path()).unwrap();
    }
}
