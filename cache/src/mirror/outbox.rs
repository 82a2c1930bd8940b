//! Operations waiting in the outbound journal. They name local inodes; the sync
//! engine maps them to server ids when it sends them, in order.

use serde::{Deserialize, Serialize};

/// One local change not yet applied on the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A new entry `(parent, name)` for node `ino` (its attributes as created).
    Create {
        ino: u64,
        parent: u64,
        name: Vec<u8>,
        kind: u8,
        mode: u32,
        uid: u32,
        gid: u32,
        rdev: u64,
        symlink: Vec<u8>,
        mtime: i64,
    },
    /// A hard link to `ino` at `(parent, name)`.
    Link {
        ino: u64,
        parent: u64,
        name: Vec<u8>,
    },
    /// Rename of the entry naming `ino`.
    Rename {
        ino: u64,
        parent: u64,
        name: Vec<u8>,
        new_parent: u64,
        new_name: Vec<u8>,
        no_replace: bool,
        exchange: bool,
        /// Whether an entry was at the new name here and the rename took its place.
        /// Journals written before this was recorded say nothing; such renames are
        /// taken to have replaced one.
        #[serde(default = "replaced_unless_recorded")]
        replaced: bool,
    },
    /// Unlink (`directory` false) or rmdir (`directory` true) of the entry naming
    /// `ino` (0 in journals written before removals named their node: whatever the
    /// name holds).
    Remove {
        #[serde(default)]
        ino: u64,
        parent: u64,
        name: Vec<u8>,
        directory: bool,
    },
    SetAttr {
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        atime: Option<i64>,
        mtime: Option<i64>,
    },
    SetXattr {
        ino: u64,
        name: Vec<u8>,
        value: Vec<u8>,
    },
    RemoveXattr {
        ino: u64,
        name: Vec<u8>,
    },
}

fn replaced_unless_recorded() -> bool {
    true
}

impl Op {
    /// The creation of `node` at `(parent, name)`, with its attributes as they are.
    pub fn create_of(node: &super::Node, parent: u64, name: Vec<u8>) -> Op {
        Op::Create {
            ino: node.ino,
            parent,
            name,
            kind: node.kind as u8,
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            rdev: node.rdev,
            symlink: node.symlink.clone(),
            mtime: node.mtime,
        }
    }

    /// The node the operation changes, when it names one (a removal names an entry).
    pub fn subject(&self) -> Option<u64> {
        match self {
            Op::Create { ino, .. }
            | Op::Link { ino, .. }
            | Op::Rename { ino, .. }
            | Op::SetAttr { ino, .. }
            | Op::SetXattr { ino, .. }
            | Op::RemoveXattr { ino, .. } => Some(*ino),
            Op::Remove { .. } => None,
        }
    }
}

impl Op {
    /// The node the journal indexes the operation under: its subject, or for a
    /// removal the node it takes away (0 when the journal predates that).
    pub(crate) fn indexed_node(&self) -> u64 {
        match self {
            Op::Remove { ino, .. } => *ino,
            other => other.subject().unwrap_or(0),
        }
    }

    /// Makes every folder the operation names `from` name `to` instead; true if it
    /// named `from`.
    pub(crate) fn repoint_parent(&mut self, from: u64, to: u64) -> bool {
        let mut changed = false;
        let mut repoint = |parent: &mut u64| {
            if *parent == from {
                *parent = to;
                changed = true;
            }
        };
        match self {
            Op::Create { parent, .. } | Op::Link { parent, .. } | Op::Remove { parent, .. } => {
                repoint(parent)
            }
            Op::Rename {
                parent, new_parent, ..
            } => {
                repoint(parent);
                repoint(new_parent);
            }
            Op::SetAttr { .. } | Op::SetXattr { .. } | Op::RemoveXattr { .. } => {}
        }
        changed
    }

    /// Folds `later`, an attribute change queued right after this one, into it when
    /// both change the same node's attributes: what `later` sets wins. True if it
    /// did (then sending this one alone sends both).
    pub fn absorb_set_attr(&mut self, later: &Op) -> bool {
        let (
            Op::SetAttr {
                ino,
                mode,
                uid,
                gid,
                atime,
                mtime,
            },
            Op::SetAttr {
                ino: later_ino,
                mode: later_mode,
                uid: later_uid,
                gid: later_gid,
                atime: later_atime,
                mtime: later_mtime,
            },
        ) = (self, later)
        else {
            return false;
        };
        if ino != later_ino {
            return false;
        }
        *mode = later_mode.or(*mode);
        *uid = later_uid.or(*uid);
        *gid = later_gid.or(*gid);
        *atime = later_atime.or(*atime);
        *mtime = later_mtime.or(*mtime);
        true
    }

    /// The entry a rename or link makes, `(parent, name)`.
    pub(crate) fn made_entry(&self) -> Option<(u64, &[u8])> {
        match self {
            Op::Rename {
                new_parent,
                new_name,
                ..
            } => Some((*new_parent, new_name)),
            Op::Link { parent, name, .. } => Some((*parent, name)),
            _ => None,
        }
    }
}

/// An operation as queued.
#[derive(Clone, Debug)]
pub struct Queued {
    pub seq: i64,
    pub op: Op,
    /// When it was queued (ns since the epoch).
    pub queued: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_attr(ino: u64, mode: Option<u32>, uid: Option<u32>, mtime: Option<i64>) -> Op {
        Op::SetAttr {
            ino,
            mode,
            uid,
            gid: None,
            atime: None,
            mtime,
        }
    }

    #[test]
    fn attribute_changes_of_one_node_fold_into_one_and_the_later_wins() {
        // tar on a folder: chown, chmod, then the times.
        let mut op = set_attr(7, None, Some(0), None);
        assert!(op.absorb_set_attr(&set_attr(7, Some(0o755), None, None)));
        assert!(op.absorb_set_attr(&set_attr(7, Some(0o700), None, Some(42))));
        assert_eq!(op, set_attr(7, Some(0o700), Some(0), Some(42)));
    }

    #[test]
    fn a_rename_queued_before_replacements_were_recorded_counts_as_one() {
        let old = r#"{"Rename":{"ino":7,"parent":1,"name":[97],"new_parent":1,"new_name":[98],"no_replace":false,"exchange":false}}"#;
        let op: Op = serde_json::from_str(old).unwrap();
        assert!(matches!(op, Op::Rename { replaced: true, .. }), "{op:?}");
    }

    #[test]
    fn other_nodes_and_other_operations_do_not_fold() {
        let mut op = set_attr(7, Some(0o644), None, None);
        assert!(!op.absorb_set_attr(&set_attr(8, Some(0o600), None, None)));
        let xattr = Op::RemoveXattr {
            ino: 7,
            name: b"user.a".to_vec(),
        };
        assert!(!op.absorb_set_attr(&xattr));
        assert_eq!(op, set_attr(7, Some(0o644), None, None));
        let mut removal = xattr.clone();
        assert!(!removal.absorb_set_attr(&set_attr(7, Some(0o600), None, None)));
        assert_eq!(removal, xattr);
    }
}
