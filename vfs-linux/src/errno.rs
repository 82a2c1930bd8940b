//! The one place where core errors become errno values.

use fuser::Errno;
use loft_vfs::VfsError;

pub(crate) fn errno(error: &VfsError) -> Errno {
    Errno::from_i32(match error {
        VfsError::NotFound => libc::ENOENT,
        VfsError::Exists => libc::EEXIST,
        VfsError::NotEmpty => libc::ENOTEMPTY,
        VfsError::NotDir => libc::ENOTDIR,
        VfsError::IsDir => libc::EISDIR,
        VfsError::NameTooLong => libc::ENAMETOOLONG,
        VfsError::Invalid(_) => libc::EINVAL,
        VfsError::NotPermitted => libc::EPERM,
        VfsError::Access => libc::EACCES,
        VfsError::CrossDevice => libc::EXDEV,
        VfsError::NoAttribute => libc::ENODATA,
        VfsError::Range => libc::ERANGE,
        VfsError::NoSpace(_) => libc::ENOSPC,
        VfsError::Quota => libc::EDQUOT,
        VfsError::BadHandle => libc::EBADF,
        VfsError::NotSupported => libc::EOPNOTSUPP,
        VfsError::PastEnd => libc::ENXIO,
        VfsError::Offline(_) | VfsError::Io(_) => libc::EIO,
    })
}
