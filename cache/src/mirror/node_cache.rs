//! The mirror's nodes by inode, in memory: reading a node is most of what the mirror
//! does (every lookup, getattr and close reads one, often several times).
//!
//! It holds nodes exactly as the open transaction has them. Every change to the
//! `nodes` table goes through [`super::Db`], which updates or forgets the entry in
//! the same call; a change that is undone, or a group that fails to commit, empties
//! it. Only single-node reads use it: queries over many nodes read the table.

use std::cell::RefCell;
use std::collections::HashMap;

use super::Node;

/// Nodes kept at most; past that the cache starts again empty (a burst of new
/// files or a walk of a large tree, after which most entries are cold anyway).
const CAPACITY: usize = 16 * 1024;

#[derive(Default)]
pub(crate) struct NodeCache(RefCell<HashMap<u64, Node>>);

impl NodeCache {
    pub(crate) fn get(&self, ino: u64) -> Option<Node> {
        self.0.borrow().get(&ino).cloned()
    }

    /// Keeps `node` as the table now has it.
    pub(crate) fn put(&self, node: &Node) {
        let mut nodes = self.0.borrow_mut();
        if nodes.len() >= CAPACITY && !nodes.contains_key(&node.ino) {
            nodes.clear();
        }
        nodes.insert(node.ino, node.clone());
    }

    pub(crate) fn forget(&self, ino: u64) {
        self.0.borrow_mut().remove(&ino);
    }

    pub(crate) fn clear(&self) {
        self.0.borrow_mut().clear();
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
        assert!(cache.0.borrow().len() <= CAPACITY);
        assert!(cache.get(CAPACITY as u64 + 9).is_some());
    }
}
