//! The mirror's nodes by inode, in memory: reading a node is most of what the mirror
//! does (every lookup, getattr and close reads one, often several times).
//!
//! It holds nodes exactly as the open transaction has them. Every change to the
//! `nodes` table goes through [`super::Db`], which updates or forgets the entry in
//! the same call; a change that is undone, or a group that fails to commit, empties
//! it. Only single-node reads use it: queries over many nodes read the table. It is
//! bounded in count and in manifest bytes, so a tree of large files (whose manifests
//! grow with their size) cannot make it grow past a few MiB.

use std::cell::RefCell;
use std::collections::HashMap;

use super::Node;

/// Nodes kept at most; past that the cache starts again empty (a burst of new
/// files or a walk of a large tree, after which most entries are cold anyway).
const CAPACITY: usize = 16 * 1024;

/// A node whose manifest and symlink target take more than this is not kept: a
/// large file's manifest grows with its chunks (40 bytes each), and reading it
/// from the table costs little next to what is done with it.
const MAX_EXTRA: usize = 4096;

/// Manifest and symlink bytes kept in all, at most: with [`CAPACITY`], the cache
/// stays within a few MiB whatever the tree holds.
const MAX_EXTRA_TOTAL: usize = 4 << 20;

#[derive(Default)]
pub(crate) struct NodeCache(RefCell<Kept>);

#[derive(Default)]
struct Kept {
    nodes: HashMap<u64, Node>,
    /// Manifest and symlink bytes of `nodes`.
    extra: usize,
}

/// What a node holds beyond its fixed fields.
fn extra(node: &Node) -> usize {
    node.manifest.as_ref().map_or(0, Vec::len) + node.symlink.len()
}

impl NodeCache {
    pub(crate) fn get(&self, ino: u64) -> Option<Node> {
        self.0.borrow().nodes.get(&ino).cloned()
    }

    /// Keeps `node` as the table now has it (or forgets it, if it is too large).
    pub(crate) fn put(&self, node: &Node) {
        let mut kept = self.0.borrow_mut();
        let size = extra(node);
        if let Some(old) = kept.nodes.remove(&node.ino) {
            kept.extra -= extra(&old);
        }
        if size > MAX_EXTRA {
            return;
        }
        if kept.nodes.len() >= CAPACITY || kept.extra + size > MAX_EXTRA_TOTAL {
            kept.nodes.clear();
            kept.extra = 0;
        }
        kept.extra += size;
        kept.nodes.insert(node.ino, node.clone());
    }

    pub(crate) fn forget(&self, ino: u64) {
        let mut kept = self.0.borrow_mut();
        if let Some(old) = kept.nodes.remove(&ino) {
            kept.extra -= extra(&old);
        }
    }

    pub(crate) fn clear(&self) {
        let mut kept = self.0.borrow_mut();
        kept.nodes.clear();
        kept.extra = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::Kind;
    use super::*;

    fn node(ino: u64) -> Node {
        let mut node = Node::new(Kind::File, 0o644, 0);
        node.ino = ino;
        node
    }

    #[test]
    fn keeps_forgets_and_stays_bounded() {
        let cache = NodeCache::default();
        cache.put(&node(1));
        assert_eq!(cache.get(1).map(|n| n.ino), Some(1));
        cache.forget(1);
        assert!(cache.get(1).is_none());
        for ino in 0..CAPACITY as u64 + 10 {
            cache.put(&node(ino));
        }
        assert!(cache.0.borrow().nodes.len() <= CAPACITY);
        assert!(cache.get(CAPACITY as u64 + 9).is_some());
    }

    #[test]
    fn large_manifests_are_not_kept_and_the_bytes_kept_are_bounded() {
        let cache = NodeCache::default();
        let mut big = node(1);
        big.manifest = Some(vec![0; MAX_EXTRA + 1]);
        cache.put(&node(1));
        cache.put(&big);
        assert!(
            cache.get(1).is_none(),
            "an update to a large node forgets it"
        );
        let mut kept = 0;
        for ino in 2..2000u64 {
            let mut n = node(ino);
            n.manifest = Some(vec![0; MAX_EXTRA]);
            cache.put(&n);
            kept = kept.max(cache.0.borrow().extra);
            let counted: usize = cache.0.borrow().nodes.values().map(extra).sum();
            assert_eq!(cache.0.borrow().extra, counted);
        }
        assert!(kept <= MAX_EXTRA_TOTAL);
        cache.forget(1999);
        cache.clear();
        assert_eq!(cache.0.borrow().extra, 0);
    }
}
