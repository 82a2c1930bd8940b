//! Extended attributes: stored in the mirror and queued for the server, fetched from
//! it the first time a node's are asked for. `user.loft.pin` (read-write) and
//! `user.loft.state` (read-only) and `user.loft.ignore` (read-write) are Loft's own
//! and never stored. POSIX ACLs are xattrs too, with rules of their own (`acl`).

use loft_cache::mirror::{Db, Op};

use crate::acl::{self, Acl};
use crate::attr::{Nanos, now};
use crate::core::Vfs;
use crate::error::{VfsError, VfsResult};
use crate::ignore::IGNORE_XATTR;
use crate::setid::Groups;

pub(crate) const PIN: &[u8] = b"user.loft.pin";
pub(crate) const STATE: &[u8] = b"user.loft.state";

/// setxattr flags.
const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;

/// EEXIST for `XATTR_CREATE` of a name that `exists`, ENODATA for `XATTR_REPLACE` of
/// one that does not.
pub(crate) fn check_xattr_flags(flags: i32, exists: bool) -> VfsResult<()> {
    if flags & XATTR_CREATE != 0 && exists {
        return Err(VfsError::Exists);
    }
    if flags & XATTR_REPLACE != 0 && !exists {
        return Err(VfsError::NoAttribute);
    }
    Ok(())
}

/// Stores `value` as xattr `name` of `ino` (removes it when `None`) and queues the
/// change for the server. False when there was nothing to remove.
pub(crate) fn store_xattr(
    db: &Db<'_>,
    ino: u64,
    name: &[u8],
    value: Option<&[u8]>,
    stamp: Nanos,
) -> VfsResult<bool> {
    let name = name.to_vec();
    match value {
        Some(value) => {
            db.set_xattr(ino, &name, value)?;
            let value = value.to_vec();
            db.queue(&Op::SetXattr { ino, name, value }, stamp)?;
        }
        None => {
            if !db.remove_xattr(ino, &name)? {
                return Ok(false);
            }
            db.queue(&Op::RemoveXattr { ino, name }, stamp)?;
        }
    }
    Ok(true)
}

impl Vfs {
    /// Fetches a node's xattrs from the server once (when it has a server id).
    pub(crate) fn ensure_xattrs(&self, ino: u64) -> VfsResult<()> {
        let node = self.node(ino)?;
        if node.xattrs_listed {
            return Ok(());
        }
        let Some(remote) = self.mirror.read(|db| db.remote_of(ino))? else {
            return Ok(());
        };
        let client = self.client.clone();
        let fetched = self.rt.block_on(async move {
            let names = client.list_xattr(remote).await?;
            let mut pairs = Vec::new();
            for name in names {
                match client.get_xattr(remote, &name).await {
                    Ok(value) => pairs.push((name, value)),
                    Err(e) if e.kind == loft_remote::errors::ErrorKind::NoAttribute => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(pairs)
        });
        let pairs = match fetched {
            Ok(pairs) => pairs,
            Err(error) => {
                return match self.remote_failed(error) {
                    // Offline: show what is known locally.
                    VfsError::Offline(_) => Ok(()),
                    other => Err(other),
                };
            }
        };
        self.tx(|db| {
            for (name, value) in &pairs {
                if db.xattr(ino, name)?.is_none() {
                    db.set_xattr(ino, name, value)?;
                }
            }
            if let Some(mut node) = db.node(ino)? {
                node.xattrs_listed = true;
                db.update_node(&node)?;
            }
            Ok(())
        })
    }

    pub fn getxattr(&self, ino: u64, name: &[u8]) -> VfsResult<Vec<u8>> {
        if name == PIN {
            let node = self.node(ino)?;
            return Ok(if node.pinned {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            });
        }
        if name == STATE {
            return Ok(self.file_state(ino)?.as_str().as_bytes().to_vec());
        }
        if name == IGNORE_XATTR {
            let node = self.node(ino)?;
            return Ok(if node.local_only { b"1" } else { b"0" }.to_vec());
        }
        self.ensure_xattrs(ino)?;
        self.mirror
            .read(|db| db.xattr(ino, name))?
            .ok_or(VfsError::NoAttribute)
    }

    pub fn listxattr(&self, ino: u64) -> VfsResult<Vec<Vec<u8>>> {
        self.ensure_xattrs(ino)?;
        Ok(self.mirror.read(|db| db.xattr_names(ino))?)
    }

    /// Sets xattr `name`; a POSIX ACL takes the steps of [`acl::store_acl`] inside the
    /// same transaction. `caller`: the groups of an unprivileged caller (`None` for a
    /// privileged one), which decide whether setting an ACL keeps the set-group-ID
    /// bit.
    pub fn setxattr(
        &self,
        ino: u64,
        name: &[u8],
        value: &[u8],
        flags: i32,
        caller: Option<&impl Groups>,
    ) -> VfsResult<()> {
        if name == PIN {
            return match value {
                b"1" => self.set_pinned(ino, true),
                b"0" => self.set_pinned(ino, false),
                _ => Err(VfsError::Invalid("user.loft.pin takes 1 or 0")),
            };
        }
        if name == STATE {
            return Err(VfsError::NotPermitted);
        }
        if name == IGNORE_XATTR {
            return match value {
                b"1" => self.set_local_only(ino, true),
                b"0" => self.set_local_only(ino, false),
                _ => Err(VfsError::Invalid("user.loft.ignore takes 1 or 0")),
            };
        }
        if name.is_empty() || name.len() > 255 {
            return Err(VfsError::Range);
        }
        let acl = if name == acl::ACCESS || name == acl::DEFAULT {
            Some(Acl::parse(value)?)
        } else if name.starts_with(b"system.posix_acl_") {
            return Err(VfsError::NotSupported);
        } else {
            None
        };
        self.check_writable(ino)?;
        self.ensure_xattrs(ino)?;
        let stamp = now();
        self.tx(|db| {
            let mut node = db.node(ino)?.ok_or(VfsError::NotFound)?;
            check_xattr_flags(flags, db.xattr(ino, name)?.is_some())?;
            match &acl {
                Some(acl) => acl::store_acl(db, &mut node, name, acl, value, caller, stamp)?,
                None => {
                    store_xattr(db, ino, name, Some(value), stamp)?;
                }
            }
            node.ctime = stamp;
            db.update_node(&node)?;
            Ok(())
        })?;
        self.wake.notify_one();
        Ok(())
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> VfsResult<()> {
        if name == PIN || name == STATE {
            return Err(VfsError::NotPermitted);
        }
        self.check_writable(ino)?;
        self.ensure_xattrs(ino)?;
        let stamp = now();
        self.tx(|db| {
            let mut node = db.node(ino)?.ok_or(VfsError::NotFound)?;
            if !store_xattr(db, ino, name, None, stamp)? {
                return Err(VfsError::NoAttribute);
            }
            node.ctime = stamp;
            db.update_node(&node)?;
            Ok(())
        })?;
        self.wake.notify_one();
        Ok(())
    }
}
