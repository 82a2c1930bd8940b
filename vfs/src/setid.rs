//! Set-user-ID and set-group-ID bits are dropped when a file's content or owner
//! changes, as on a local disk: a program that someone else could change must not
//! keep running with its owner's rights. The platform adapter says when (the Linux
//! kernel leaves it to the file system once it is told the file system does it);
//! the rule is here.

use loft_cache::mirror::Kind;

use crate::core::Vfs;
use crate::error::VfsResult;
use crate::tree::{S_ISGID, SetAttr};

const S_ISUID: u32 = 0o4000;
const S_IXGRP: u32 = 0o0010;

/// The groups of an unprivileged caller, for the rules that depend on whether it is in
/// a file's group. The platform adapter knows where to find them.
pub trait Groups {
    fn contains(&self, gid: u32) -> bool;
}

/// `mode` without the set-id bits a change by `caller` drops: set-user-ID always;
/// set-group-ID when the group may execute the file, or when the caller is
/// unprivileged (`Some`) and not in the file's group `gid` (without group execute
/// the bit marks mandatory locking, which the group's own members keep).
fn without_setid(mode: u32, gid: u32, caller: Option<&impl Groups>) -> u32 {
    let mode = mode & !S_ISUID;
    let outsider = caller.is_some_and(|groups| !groups.contains(gid));
    if mode & S_IXGRP != 0 || outsider {
        mode & !S_ISGID
    } else {
        mode
    }
}

/// True when permission bits `perm` hold a set-id bit a write may drop.
pub fn has_setid(perm: u32) -> bool {
    perm & (S_ISUID | S_ISGID) != 0
}

impl Vfs {
    /// `ino`'s mode without the set-id bits a change by `caller` drops (`None`: a
    /// privileged caller; `Some`: an unprivileged one and its groups). `None` when it
    /// is a folder or has none to drop.
    pub fn mode_without_setid(
        &self,
        ino: u64,
        caller: Option<&impl Groups>,
    ) -> VfsResult<Option<u32>> {
        let node = self.node(ino)?;
        if node.kind == Kind::Directory || !has_setid(node.mode) {
            return Ok(None);
        }
        let mode = without_setid(node.mode, node.gid, caller);
        Ok((mode != node.mode).then_some(mode))
    }

    /// Drops `ino`'s set-id bits as a write by an unprivileged caller in `groups`
    /// does.
    pub fn drop_setid(&self, ino: u64, groups: &impl Groups) -> VfsResult<()> {
        if let Some(mode) = self.mode_without_setid(ino, Some(groups))? {
            let change = SetAttr {
                mode: Some(mode),
                ..SetAttr::default()
            };
            self.setattr(ino, change)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller in that one group.
    impl Groups for u32 {
        fn contains(&self, gid: u32) -> bool {
            *self == gid
        }
    }

    #[test]
    fn set_user_id_always_goes_set_group_id_with_group_execute_or_an_outsider() {
        let privileged = None::<&u32>;
        assert_eq!(without_setid(0o4755, 0, privileged), 0o755);
        assert_eq!(without_setid(0o2755, 0, privileged), 0o755);
        assert_eq!(without_setid(0o6711, 0, privileged), 0o711);
        // Set-group-ID without group execute marks mandatory locking: the group's
        // own members keep it, others drop it.
        assert_eq!(without_setid(0o2644, 100, privileged), 0o2644);
        assert_eq!(without_setid(0o6644, 100, Some(&100)), 0o2644);
        assert_eq!(without_setid(0o2664, 100, Some(&65534)), 0o664);
        // A member through a supplementary group is a member.
        struct Both(u32, u32);
        impl Groups for Both {
            fn contains(&self, gid: u32) -> bool {
                gid == self.0 || gid == self.1
            }
        }
        assert_eq!(without_setid(0o2664, 100, Some(&Both(65534, 100))), 0o2664);
        assert!(has_setid(0o2644));
        assert!(!has_setid(0o1777));
    }
}
