//! Body files: one sparse local file per file version held on this device, named
//! `<ino>-<generation>`. Clean chunk ranges are written into it as they are fetched
//! and punched out again when evicted; a dirty file's body holds all its bytes.
//!
//! A removed body is emptied and kept as a spare (up to [`SPARES_KEPT`]), and a new
//! body takes a spare when there is one: a rename instead of freeing an inode and
//! allocating another. Creating and deleting many small files costs far less that way
//! (ext4 searches past recently freed inodes when it allocates one).
//!
//! Removal happens on a thread of its own: a file system call that drops a node does
//! not wait for its body to be emptied or deleted. Bodies a process leaves behind
//! when it ends are strays, swept at the next start.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::SystemTime;

use crate::{CacheError, Result};

/// Empty body files kept for reuse at most.
pub const SPARES_KEPT: usize = 16_384;

/// The directory of body files.
#[derive(Clone, Debug)]
pub struct Bodies {
    dir: PathBuf,
    spares: Arc<Mutex<Spares>>,
    /// Bodies to remove, for the removal thread; `None` on that thread's own copy.
    removals: Option<mpsc::Sender<PathBuf>>,
}

/// Empty files in `dir`, ready to become bodies.
#[derive(Debug)]
struct Spares {
    dir: PathBuf,
    names: Vec<u64>,
    next: u64,
}

impl Spares {
    fn path(&self, name: u64) -> PathBuf {
        self.dir.join(name.to_string())
    }
}

impl Bodies {
    /// Uses (creating) `dir`, and the spare files kept in `dir/spare`.
    pub fn open(dir: &Path) -> Result<Bodies> {
        let spare_dir = dir.join("spare");
        std::fs::create_dir_all(&spare_dir).map_err(CacheError::io(&spare_dir))?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&spare_dir).map_err(CacheError::io(&spare_dir))? {
            let entry = entry.map_err(CacheError::io(&spare_dir))?;
            if let Some(name) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                names.push(name);
            }
        }
        let next = names.iter().max().map_or(0, |n| n + 1);
        let mut bodies = Bodies {
            dir: dir.to_path_buf(),
            spares: Arc::new(Mutex::new(Spares {
                dir: spare_dir,
                names,
                next,
            })),
            removals: None,
        };
        let remover = bodies.clone();
        let (sender, receiver) = mpsc::channel::<PathBuf>();
        std::thread::Builder::new()
            .name("body-removal".into())
            .spawn(move || {
                // Ends when every other copy of the `Bodies` is gone.
                for path in receiver {
                    if let Err(error) = remover.discard(&path) {
                        tracing::warn!("removing a body: {error}");
                    }
                }
            })
            .map_err(CacheError::io(dir))?;
        bodies.removals = Some(sender);
        Ok(bodies)
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, Spares> {
        self.spares.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves a spare to `path` (which it replaces); false when none is left.
    fn take_spare(&self, path: &Path) -> bool {
        let mut spares = self.spares();
        while let Some(name) = spares.names.pop() {
            let spare = spares.path(name);
            if std::fs::rename(&spare, path).is_ok() {
                return true;
            }
        }
        false
    }

    /// Empties the body at `path` and keeps it as a spare; false when the pool is
    /// full (the caller deletes it). A missing body counts as done.
    fn keep_spare(&self, path: &Path) -> Result<bool> {
        let mut spares = self.spares();
        if spares.names.len() >= SPARES_KEPT {
            return Ok(false);
        }
        match empty_for_reuse(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(CacheError::io(path)(e)),
            Ok(()) => {}
        }
        let name = spares.next;
        let spare = spares.path(name);
        std::fs::rename(path, &spare).map_err(CacheError::io(path))?;
        spares.next += 1;
        spares.names.push(name);
        Ok(true)
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

    /// Creates a body that is a copy of nothing: an empty file of `size` (all holes),
    /// modified now.
    pub fn create_body(&self, ino: u64, body: u64, size: u64) -> Result<File> {
        let path = self.path(ino, body);
        let reused = self.take_spare(&path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(CacheError::io(&path))?;
        // Opened truncated: an empty body is made.
        if size > 0 {
            file.set_len(size).map_err(CacheError::io(&path))?;
        }
        if reused {
            file.set_modified(SystemTime::now())
                .map_err(CacheError::io(&path))?;
        }
        Ok(file)
    }

    /// Removes a body (kept as a spare while the pool has room), on the removal
    /// thread; a missing one is fine. Nothing names the body again: a node's next
    /// body has the next generation, and inode numbers are not reused.
    pub fn remove(&self, ino: u64, body: u64) -> Result<()> {
        let path = self.path(ino, body);
        match &self.removals {
            Some(removals) => match removals.send(path) {
                Ok(()) => Ok(()),
                Err(mpsc::SendError(path)) => self.discard(&path),
            },
            None => self.discard(&path),
        }
    }

    fn discard(&self, path: &Path) -> Result<()> {
        if self.keep_spare(path)? {
            return Ok(());
        }
        match std::fs::remove_file(path) {
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

/// Cuts the file at `path` to nothing, keeping its inode, and clears the write-back
/// error its page cache may still carry for the file it was.
///
/// The kernel keeps a file's last write-back error in its inode (`errseq`) and, while
/// nobody has seen it, reports it to the first `fsync` of each descriptor opened after
/// it: a direct write that collides with cached pages leaves `EIO` there, for one. A
/// file made from this spare would then fail its first `fsync` with an error that
/// belongs to a file already deleted. Waiting on the (empty) file's write-back through
/// a descriptor of ours reports the error to us instead, which marks it seen.
fn empty_for_reuse(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new().write(true).truncate(true).open(path)?;
    // SAFETY: sync_file_range on a descriptor we own; no memory is involved. An error
    // it returns is the old file's (the spare, empty, has nothing to write back), and
    // returning it has marked it seen.
    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WAIT_AFTER) };
    Ok(())
}

/// Bytes available to unprivileged users on the file system holding `path`.
pub fn available_space(path: &Path) -> io::Result<u64> {
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
