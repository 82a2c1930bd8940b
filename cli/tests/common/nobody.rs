//! Calls made as `nobody` (uid and gid 65534, no supplementary groups) in a forked
//! child, for tests of what an unprivileged user may do on a root mount.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The unprivileged user.
pub const NOBODY: libc::uid_t = 65534;

/// What the unprivileged child does; everything is prepared before `fork`, so the child
/// only makes system calls.
pub enum AsNobody {
    Stat(CString),
    OpenRead(CString),
    OpenWrite(CString),
    Create(CString),
    Mkdir(CString),
    Unlink(CString),
    Rmdir(CString),
    Rename(CString, CString),
    Chmod(CString),
    /// Appends one byte.
    Append(CString),
    /// Truncates to nothing.
    Truncate(CString),
    /// Allocates the first 8 KiB (`fallocate`, mode 0).
    Allocate(CString),
}

pub fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// Runs `call` in a child process as `nobody` (no supplementary groups); its errno, or
/// `Ok(())`.
pub fn as_nobody(call: &AsNobody) -> io::Result<()> {
    as_nobody_in(&[], call)
}

/// Runs `call` as `nobody` with supplementary groups `groups` (FUSE passes a caller's
/// own group only; these the mount has to find itself).
pub fn as_nobody_in(groups: &[libc::gid_t], call: &AsNobody) -> io::Result<()> {
    // SAFETY: the child only calls async-signal-safe functions (set*id, the call, _exit)
    // on data prepared before the fork; the parent waits for it.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(NOBODY, NOBODY, NOBODY) != 0
                || libc::setresuid(NOBODY, NOBODY, NOBODY) != 0
            {
                libc::_exit(255);
            }
            let mut stat: libc::stat = std::mem::zeroed();
            let rc = match call {
                AsNobody::Stat(path) => libc::stat(path.as_ptr(), &mut stat),
                AsNobody::OpenRead(path) => libc::open(path.as_ptr(), libc::O_RDONLY),
                AsNobody::OpenWrite(path) => libc::open(path.as_ptr(), libc::O_WRONLY),
                AsNobody::Create(path) => libc::open(
                    path.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    0o644,
                ),
                AsNobody::Mkdir(path) => libc::mkdir(path.as_ptr(), 0o755),
                AsNobody::Unlink(path) => libc::unlink(path.as_ptr()),
                AsNobody::Rmdir(path) => libc::rmdir(path.as_ptr()),
                AsNobody::Rename(from, to) => libc::rename(from.as_ptr(), to.as_ptr()),
                AsNobody::Chmod(path) => libc::chmod(path.as_ptr(), 0o777),
                AsNobody::Append(path) => {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_APPEND);
                    if fd < 0 {
                        fd
                    } else {
                        let written = libc::write(fd, b"x".as_ptr().cast(), 1);
                        libc::close(fd);
                        if written == 1 { 0 } else { -1 }
                    }
                }
                AsNobody::Truncate(path) => libc::truncate(path.as_ptr(), 0),
                AsNobody::Allocate(path) => {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        fd
                    } else {
                        let rc = libc::fallocate(fd, 0, 0, 8192);
                        libc::close(fd);
                        rc
                    }
                }
            };
            libc::_exit(if rc < 0 { *libc::__errno_location() } else { 0 });
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(libc::WIFEXITED(status), "the child died: {status:#x}");
        match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            255 => panic!("the child could not become nobody"),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}
