//! Body files: one sparse local file per file version held on this device, named
//! `<ino>-<generation>`. Clean chunk ranges are written into it as they are fetched
//! and punched out again when evicted; a dirty file's body holds all its bytes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::{CacheError, Result};

/// The directory of body files.
#[derive(Clone, Debug)]
pub struct Bodies {
    dir: PathBuf,
}

impl Bodies {
    /// Uses (creating) `dir`.
    pub fn open(dir: &Path) -> Result<Bodies> {
        std::fs::create_dir_all(dir).map_err(CacheError::io(dir))?;
        Ok(Bodies {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, ino: u64, body: u64) -> PathBuf {
        self.dir.join(format!("{ino}-{body}"))
    }

    /// Opens a body read-write, creating it empty if missing.
    pub fn open_body(&self, ino: u64, body: u64) -> Result<File> {
        let path = self.path(ino, body);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(CacheError::io(path))
    }

    /// Creates a body that is a copy of nothing: an empty file of `size` (all holes).
    pub fn create_body(&self, ino: u64, body: u64, size: u64) -> Result<File> {
        let path = self.path(ino, body);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(CacheError::io(&path))?;
        file.set_len(size).map_err(CacheError::io(&path))?;
        Ok(file)
    }

    /// Deletes a body; a missing one is fine.
    pub fn remove(&self, ino: u64, body: u64) -> Result<()> {
        let path = self.path(ino, body);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CacheError::io(path)(e)),
            _ => Ok(()),
        }
    }

    /// Every body file, as `(ino, generation)`.
    pub fn list(&self) -> Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(CacheError::io(&self.dir))? {
            let entry = entry.map_err(CacheError::io(&self.dir))?;
            let name = entry.file_name();
            let Some((ino, body)) = name.to_str().and_then(|n| n.split_once('-')) else {
                continue;
            };
            if let (Ok(ino), Ok(body)) = (ino.parse(), body.parse()) {
                out.push((ino, body));
            }
        }
        Ok(out)
    }

    /// Bytes available to unprivileged users on the file system holding the bodies.
    pub fn available_space(&self) -> io::Result<u64> {
        available_space(&self.dir)
    }
}

/// Frees the disk blocks of `offset..offset + len` in `file`, keeping its size.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: fallocate on a descriptor we own; no memory is involved.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes available to unprivileged users on the file system holding `path`.
pub fn available_space(path: &Path) -> io::Result<u64> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `stat` points to writable memory of the
    // right type; statvfs initialises it when it returns 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}
