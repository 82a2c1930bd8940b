//! What the mount knows of the shared items in the drive: where each one begins, and
//! which ones the user may only read. The server decides every change; this only lets
//! the mount refuse at once (EACCES) what the server would refuse later, since a
//! local-first write would otherwise be accepted here and fail in the background.
//!
//! Learned from the session each time the change feed connects (the server ends the
//! feed when the user's memberships change), and kept in the mirror for offline starts.

use std::collections::HashSet;

use loft_cache::mirror::ROOT_INO;
use loft_remote::proto;
use tracing::warn;

use crate::core::{Vfs, lock};
use crate::error::{VfsError, VfsResult};

/// Mirror setting holding the shared roots: `ID:w` or `ID:r`, comma-separated.
const SHARED_ROOTS: &str = "shared_roots";
/// Longest chain of folders walked up from a node.
const MAX_DEPTH: usize = 4096;

/// The shared items the user belongs to, by server node id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SharedRoots {
    /// Top nodes of every shared item (not the user's own home).
    pub roots: HashSet<u64>,
    /// Those where the user's role does not allow changes (viewer, commenter).
    pub read_only: HashSet<u64>,
}

impl SharedRoots {
    fn of_session(session: &proto::Session) -> SharedRoots {
        let mut shared = SharedRoots::default();
        for m in &session.memberships {
            if m.namespace == session.namespace {
                continue;
            }
            shared.roots.insert(m.root);
            if m.role < proto::Role::Editor as i32 {
                shared.read_only.insert(m.root);
            }
        }
        shared
    }

    fn encode(&self) -> String {
        let mut parts: Vec<String> = self
            .roots
            .iter()
            .map(|id| {
                let access = if self.read_only.contains(id) {
                    'r'
                } else {
                    'w'
                };
                format!("{id}:{access}")
            })
            .collect();
        parts.sort();
        parts.join(",")
    }

    fn decode(text: &str) -> SharedRoots {
        let mut shared = SharedRoots::default();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let Some((id, access)) = part.split_once(':') else {
                continue;
            };
            let Ok(id) = id.parse() else { continue };
            shared.roots.insert(id);
            if access == "r" {
                shared.read_only.insert(id);
            }
        }
        shared
    }
}

impl Vfs {
    /// Takes the shared items and roles from a fresh session, and keeps them.
    pub(crate) fn learn_shares(&self, session: &proto::Session) {
        let shared = SharedRoots::of_session(session);
        {
            let mut known = lock(&self.shared);
            if *known == shared {
                return;
            }
            *known = shared.clone();
        }
        if let Err(error) = self.tx(|db| Ok(db.set_setting(SHARED_ROOTS, &shared.encode())?)) {
            warn!("saving the shared folders' roles: {error}");
        }
    }

    /// The shared items as last saved in the mirror (a mount starting offline).
    pub(crate) fn load_shares(&self) {
        if let Ok(Some(text)) = self.rx(|db| Ok(db.setting(SHARED_ROOTS)?)) {
            *lock(&self.shared) = SharedRoots::decode(&text);
        }
    }

    /// The server id of the shared item `ino` lies in (itself included), if any.
    fn shared_root_of(&self, ino: u64, shared: &SharedRoots) -> VfsResult<Option<u64>> {
        if shared.roots.is_empty() {
            return Ok(None);
        }
        self.rx(|db| {
            let mut current = ino;
            for _ in 0..MAX_DEPTH {
                if let Some(remote) = db.remote_of(current)?
                    && shared.roots.contains(&remote)
                {
                    return Ok(Some(remote));
                }
                if current == ROOT_INO {
                    return Ok(None);
                }
                match db.any_entry_of(current)? {
                    Some((parent, _)) => current = parent,
                    None => return Ok(None),
                }
            }
            Ok(None)
        })
    }

    /// Fails with [`VfsError::Access`] when `ino` lies in a shared item the user may
    /// only read.
    pub(crate) fn check_writable(&self, ino: u64) -> VfsResult<()> {
        let shared = lock(&self.shared).clone();
        if shared.read_only.is_empty() {
            return Ok(());
        }
        match self.shared_root_of(ino, &shared)? {
            Some(root) if shared.read_only.contains(&root) => Err(VfsError::Access),
            _ => Ok(()),
        }
    }

    /// Fails with [`VfsError::CrossDevice`] when `a` and `b` lie in different shared
    /// items (or one in a shared item and one in the user's own files): the server
    /// keeps each shared item's tree apart, so a move between them is a copy.
    pub(crate) fn check_same_share(&self, a: u64, b: u64) -> VfsResult<()> {
        let shared = lock(&self.shared).clone();
        if shared.roots.is_empty() || a == b {
            return Ok(());
        }
        if self.shared_root_of(a, &shared)? != self.shared_root_of(b, &shared)? {
            return Err(VfsError::CrossDevice);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_below_editor_are_read_only_and_survive_a_round_trip() {
        let session = proto::Session {
            namespace: 1,
            memberships: vec![
                proto::Membership {
                    namespace: 1,
                    root: 10,
                    role: proto::Role::Owner as i32,
                },
                proto::Membership {
                    namespace: 2,
                    root: 20,
                    role: proto::Role::Viewer as i32,
                },
                proto::Membership {
                    namespace: 3,
                    root: 30,
                    role: proto::Role::Editor as i32,
                },
                proto::Membership {
                    namespace: 4,
                    root: 40,
                    role: proto::Role::Commenter as i32,
                },
            ],
            ..Default::default()
        };
        let shared = SharedRoots::of_session(&session);
        assert_eq!(shared.roots, HashSet::from([20, 30, 40]));
        assert_eq!(shared.read_only, HashSet::from([20, 40]));
        assert_eq!(SharedRoots::decode(&shared.encode()), shared);
    }
}
