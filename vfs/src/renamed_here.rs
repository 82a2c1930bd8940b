//! Renames this device made that the server has carried out, while their own change
//! has not come back through the feed yet.
//!
//! Until a queued rename is sent, its entry in the journal keeps the name it gave
//! (`feed::held_here`). Once the server has carried it out, the journal entry is
//! gone, but the feed may still be replaying older history: a change from before
//! the rename that names the same place (another node created or moved there, and
//! since gone) would take the name from this device's node, and the rename's own
//! change, when it comes, does not bring a forgotten node back. Until then the name
//! stays the node's.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::core::lock;

/// The most renames remembered; the oldest inodes go first.
const KEPT: usize = 4096;

struct Renamed {
    parent: u64,
    name: Vec<u8>,
    /// The node's server id after the rename (a rename over a file gives the
    /// moved node the target's id).
    remote: u64,
}

#[derive(Default)]
pub(crate) struct RenamedHere(Mutex<BTreeMap<u64, Renamed>>);

impl RenamedHere {
    /// The server moved `ino` (now server node `remote`) to `(parent, name)`.
    pub fn record(&self, ino: u64, parent: u64, name: &[u8], remote: u64) {
        let mut renamed = lock(&self.0);
        renamed.insert(
            ino,
            Renamed {
                parent,
                name: name.to_vec(),
                remote,
            },
        );
        while renamed.len() > KEPT {
            renamed.pop_first();
        }
    }

    /// True when `ino` holds `(parent, name)` by a rename whose change has not
    /// come back yet.
    pub fn holds(&self, ino: u64, parent: u64, name: &[u8]) -> bool {
        lock(&self.0)
            .get(&ino)
            .is_some_and(|r| r.parent == parent && r.name == name)
    }

    /// True when `ino` was moved away from `(parent, name)` by a rename whose change
    /// has not come back yet: a listing that still names it there is older.
    pub fn elsewhere(&self, ino: u64, parent: u64, name: &[u8]) -> bool {
        lock(&self.0)
            .get(&ino)
            .is_some_and(|r| r.parent != parent || r.name != name)
    }

    /// A rename or removal this device made of server node `remote` came back
    /// through the feed: what follows in the feed is newer than its renames. (A
    /// record whose change came back before the reply stays; it only keeps a name
    /// its node still holds here, which a newer change takes from it first.)
    pub fn came_back(&self, remote: u64) {
        lock(&self.0).retain(|_, r| r.remote != remote);
    }

    /// The feed starts over (a reset): the listings that follow are newer.
    pub fn clear(&self) {
        lock(&self.0).clear();
    }
}
