//! The FUSE side of a Loft mount: a thin `fuser::Filesystem` over [`loft_vfs::Vfs`]
//! ([`fs`]), errno mapping in one place ([`errno`]), and mounting with kernel cache
//! invalidation sent from a thread of its own ([`mount`]).

mod errno;
mod fs;
mod mount;

pub use mount::{MountOptions, Mounted, mount, unmount_path};
