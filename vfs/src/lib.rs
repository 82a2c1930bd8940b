//! Loft's platform-neutral file system core.
//!
//! [`Vfs`] answers the calls a kernel adapter receives (lookup, getattr, read, write,
//! rename, …) from the device's mirror (`loft_cache::mirror`), fetching directory
//! listings and chunk ranges from the server when they are not held locally, and
//! queueing every local change in the outbound journal. The sync engine
//! ([`Vfs::run_sync`]) sends queued changes and uploads dirty files in order, so
//! offline edits replay when the server comes back.
//!
//! Files are local-first: a change is durable in the mirror and the body file before
//! the call returns; the server learns of it shortly after. Reads of placeholders
//! fetch only the chunks covering the range, plus read-ahead when sequential.

mod acl;
mod attr;
mod backoff;
mod config;
mod conflicts;
mod core;
mod delivery;
mod error;
mod feed;
mod fetch;
mod files;
mod ignore;
mod listing;
mod pin;
mod quota;
mod removed_while_open;
mod renamed_here;
mod setid;
mod shares;
mod status;
mod sync;
mod tree;
mod xattr;

pub use attr::{Attr, Nanos, now};
pub use backoff::MAX_BACKOFF;
pub use config::{DEFAULT_CACHE_SIZE, DEFAULT_DISK_RESERVE, VfsConfig};
pub use conflicts::{Conflict, parse_conflict_name};
pub use core::{KernelNote, Opened, Vfs};
pub use error::{VfsError, VfsResult};
pub use files::{OpenMode, nanos_of, system_time};
pub use ignore::{DEFAULT_IGNORES, IGNORE_FILE};
pub use loft_cache::mirror::{Kind, ROOT_INO};
pub use setid::{Groups, has_setid};
pub use status::{FileState, FsStats, MountStatus, PathStatus};
pub use tree::{Caller, SetAttr, TimeSet};
