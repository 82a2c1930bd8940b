//! POSIX access control lists, kept as the xattrs `system.posix_acl_access` and
//! `system.posix_acl_default` in the Linux kernel's binary form, so every device
//! shows and enforces the same list. The kernel checks access against them (it asks
//! for the list of an inode once and caches it); what it leaves to the file system
//! is here, as a local disk does it:
//!
//! - setting an access list sets the mode's permission bits from it, and a list that
//!   says no more than the mode is not stored;
//! - `chmod` rewrites the owner, group-class and other entries of the access list;
//! - a new node in a folder with a default list gets an access list from it, masked
//!   by the mode it was created with (a new folder inherits the default list too);
//!   in a folder without one the caller's umask applies.

use loft_cache::mirror::{Db, Kind, Node, Op};

use crate::attr::Nanos;
use crate::error::{VfsError, VfsResult};
use crate::setid::Groups;
use crate::tree::{S_ISGID, queue_attr_change};
use crate::xattr::store_xattr;

pub(crate) const ACCESS: &[u8] = b"system.posix_acl_access";
pub(crate) const DEFAULT: &[u8] = b"system.posix_acl_default";

/// The only version of the kernel's format.
const VERSION: u32 = 2;
const HEADER: usize = 4;
const ENTRY: usize = 8;

const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// One entry: a tag, permissions (rwx as 4, 2, 1) and, for named users and groups,
/// the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// An access control list as the kernel encodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Acl {
    entries: Vec<Entry>,
}

impl Acl {
    /// Reads the kernel's form; EINVAL for anything else, or for a list without its
    /// owner, group or other entry.
    pub fn parse(bytes: &[u8]) -> VfsResult<Acl> {
        let invalid = VfsError::Invalid("not a POSIX ACL");
        if bytes.len() < HEADER || !(bytes.len() - HEADER).is_multiple_of(ENTRY) {
            return Err(invalid);
        }
        if u32::from_le_bytes(bytes[..HEADER].try_into().expect("4 bytes")) != VERSION {
            return Err(invalid);
        }
        let entries: Vec<Entry> = bytes[HEADER..]
            .chunks_exact(ENTRY)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]) & 0o7,
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        let has = |tag| entries.iter().any(|e| e.tag == tag);
        let known = entries
            .iter()
            .all(|e| [USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER].contains(&e.tag));
        if !known || !has(USER_OBJ) || !has(GROUP_OBJ) || !has(OTHER) {
            return Err(invalid);
        }
        Ok(Acl { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + ENTRY * self.entries.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    /// True when the list says no more than permission bits can (owner, group and
    /// other entries only).
    pub fn is_minimal(&self) -> bool {
        self.entries
            .iter()
            .all(|e| matches!(e.tag, USER_OBJ | GROUP_OBJ | OTHER))
    }

    fn perm_of(&self, tag: u16) -> Option<u32> {
        self.entries
            .iter()
            .find(|e| e.tag == tag)
            .map(|e| u32::from(e.perm))
    }

    /// The group class: the mask when there is one, else the owning group.
    fn group_class(&self) -> u16 {
        if self.entries.iter().any(|e| e.tag == MASK) {
            MASK
        } else {
            GROUP_OBJ
        }
    }

    /// The permission bits (0777) the list stands for.
    pub fn permission_bits(&self) -> u32 {
        let owner = self.perm_of(USER_OBJ).unwrap_or(0);
        let group = self.perm_of(self.group_class()).unwrap_or(0);
        let other = self.perm_of(OTHER).unwrap_or(0);
        owner << 6 | group << 3 | other
    }

    /// `chmod`: the owner, group-class and other entries take the mode's bits.
    pub fn set_permission_bits(&mut self, mode: u32) {
        let class = self.group_class();
        for e in &mut self.entries {
            let bits = match e.tag {
                USER_OBJ => mode >> 6,
                OTHER => mode,
                tag if tag == class => mode >> 3,
                _ => continue,
            };
            e.perm = (bits & 0o7) as u16;
        }
    }

    /// A default list applied to a node created with `mode`: the owner, group-class
    /// and other entries keep only what the mode allows, and the mode only what they
    /// allow. Returns the new node's mode.
    pub fn mask_for_creation(&mut self, mode: u32) -> u32 {
        let class = self.group_class();
        let mut allowed = mode & 0o777;
        for e in &mut self.entries {
            let shift = match e.tag {
                USER_OBJ => 6,
                OTHER => 0,
                tag if tag == class => 3,
                _ => continue,
            };
            e.perm &= ((allowed >> shift) & 0o7) as u16;
            allowed &= !(0o7 << shift) | (u32::from(e.perm) << shift);
        }
        (mode & !0o777) | allowed
    }
}

/// What a new node in folder `dir` gets: its mode, and the lists to store on it.
pub(crate) struct Inherited {
    pub mode: u32,
    pub access: Option<Vec<u8>>,
    pub default: Option<Vec<u8>>,
}

impl Inherited {
    /// A node that takes no list and no umask (a symlink).
    pub fn nothing(mode: u32) -> Inherited {
        Inherited {
            mode,
            access: None,
            default: None,
        }
    }
}

/// The mode and lists of a new node of `mode` (a folder when `is_dir`) created in
/// `dir` by a caller with `umask`. A default list that does not parse is ignored
/// (logged), as if absent.
pub(crate) fn inherit(
    db: &Db<'_>,
    dir: u64,
    mode: u32,
    umask: u32,
    is_dir: bool,
) -> VfsResult<Inherited> {
    let default = match db.xattr(dir, DEFAULT)? {
        Some(bytes) => match Acl::parse(&bytes) {
            Ok(acl) => Some((acl, bytes)),
            Err(_) => {
                tracing::warn!(dir, "ignoring a default ACL that does not parse");
                None
            }
        },
        None => None,
    };
    let Some((mut acl, bytes)) = default else {
        return Ok(Inherited {
            mode: mode & !(umask & 0o777),
            access: None,
            default: None,
        });
    };
    let mode = acl.mask_for_creation(mode);
    Ok(Inherited {
        mode,
        access: (!acl.is_minimal()).then(|| acl.encode()),
        default: is_dir.then_some(bytes),
    })
}

/// `chmod` of `ino` to `mode`: its access list, if any, takes the new bits. True when
/// it had one.
pub(crate) fn follow_chmod(db: &Db<'_>, ino: u64, mode: u32, stamp: Nanos) -> VfsResult<bool> {
    let Some(bytes) = db.xattr(ino, ACCESS)? else {
        return Ok(false);
    };
    let Ok(mut acl) = Acl::parse(&bytes) else {
        tracing::warn!(ino, "leaving an access ACL that does not parse");
        return Ok(false);
    };
    acl.set_permission_bits(mode);
    store_xattr(db, ino, ACCESS, Some(&acl.encode()), stamp)?;
    Ok(true)
}

/// Stores `acl` (the parsed `value`) as the access or default list of `node` (`name`
/// is [`ACCESS`] or [`DEFAULT`]), inside the caller's transaction. An access list
/// sets the mode's permission bits and is not kept when they say all it says; it
/// drops the set-group-ID bit when the caller (an unprivileged one, `Some`) is not in
/// the file's group. Only a folder takes a default list.
pub(crate) fn store_acl(
    db: &Db<'_>,
    node: &mut Node,
    name: &[u8],
    acl: &Acl,
    value: &[u8],
    caller: Option<&impl Groups>,
    stamp: Nanos,
) -> VfsResult<()> {
    if name == DEFAULT {
        if node.kind != Kind::Directory {
            return Err(VfsError::Access);
        }
        store_xattr(db, node.ino, DEFAULT, Some(value), stamp)?;
        return Ok(());
    }
    let mut mode = (node.mode & !0o777) | acl.permission_bits();
    if caller.is_some_and(|groups| !groups.contains(node.gid)) {
        mode &= !S_ISGID;
    }
    let kept = (!acl.is_minimal()).then_some(value);
    store_xattr(db, node.ino, ACCESS, kept, stamp)?;
    if mode != node.mode {
        node.mode = mode;
        let change = Op::SetAttr {
            ino: node.ino,
            mode: Some(mode),
            uid: None,
            gid: None,
            atime: None,
            mtime: None,
        };
        queue_attr_change(db, node, &change, stamp)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Acl {
        Acl {
            entries: entries
                .iter()
                .map(|&(tag, perm, id)| Entry { tag, perm, id })
                .collect(),
        }
    }

    const ANY: u32 = u32::MAX;

    #[test]
    fn the_kernel_form_reads_back_as_written() {
        let a = acl(&[
            (USER_OBJ, 6, ANY),
            (USER, 4, 1000),
            (GROUP_OBJ, 4, ANY),
            (MASK, 6, ANY),
            (OTHER, 0, ANY),
        ]);
        assert_eq!(Acl::parse(&a.encode()).unwrap(), a);
    }

    #[test]
    fn malformed_lists_are_refused() {
        let good = acl(&[(USER_OBJ, 6, ANY), (GROUP_OBJ, 4, ANY), (OTHER, 0, ANY)]).encode();
        assert!(Acl::parse(&good).is_ok());
        assert!(Acl::parse(&good[..good.len() - 1]).is_err(), "torn entry");
        assert!(Acl::parse(&[1, 0, 0, 0]).is_err(), "wrong version");
        let mut unknown_tag = good.clone();
        unknown_tag[4] = 0x40;
        assert!(Acl::parse(&unknown_tag).is_err());
        let no_other = acl(&[(USER_OBJ, 6, ANY), (GROUP_OBJ, 4, ANY)]).encode();
        assert!(Acl::parse(&no_other).is_err());
    }

    #[test]
    fn the_mask_stands_for_the_group_bits() {
        let mut a = acl(&[
            (USER_OBJ, 7, ANY),
            (USER, 7, 1000),
            (GROUP_OBJ, 5, ANY),
            (MASK, 6, ANY),
            (OTHER, 1, ANY),
        ]);
        assert!(!a.is_minimal());
        assert_eq!(a.permission_bits(), 0o761);
        a.set_permission_bits(0o640);
        assert_eq!(a.permission_bits(), 0o640);
        assert_eq!(
            a.perm_of(GROUP_OBJ),
            Some(5),
            "chmod changes the mask, not the group"
        );
        assert_eq!(a.perm_of(USER), Some(7), "nor named entries");
    }

    #[test]
    fn a_default_list_is_masked_by_the_creation_mode() {
        // setfacl -d -m u:1000:rwx,m::rwx,o::r-x on a folder; then open(..., 0644)
        let mut a = acl(&[
            (USER_OBJ, 7, ANY),
            (USER, 7, 1000),
            (GROUP_OBJ, 5, ANY),
            (MASK, 7, ANY),
            (OTHER, 5, ANY),
        ]);
        assert_eq!(a.mask_for_creation(0o100644), 0o100644);
        assert_eq!(a.perm_of(USER_OBJ), Some(6));
        assert_eq!(a.perm_of(MASK), Some(4));
        assert_eq!(a.perm_of(OTHER), Some(4));
        assert_eq!(
            a.perm_of(USER),
            Some(7),
            "named entries stay; the mask limits them"
        );
        // A default that allows less than the mode lowers the mode.
        let mut b = acl(&[(USER_OBJ, 7, ANY), (GROUP_OBJ, 0, ANY), (OTHER, 0, ANY)]);
        assert_eq!(b.mask_for_creation(0o755), 0o700);
        assert!(b.is_minimal());
    }
}
