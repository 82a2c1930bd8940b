//! Files another device removed while a handle here had them open. The kernel may
//! have resolved a path to the file just before the removal reached this device, so
//! a program can still write through its handle afterwards. Those writes are an
//! edit made here to a file deleted there, and like any such edit they are kept:
//! when the last handle closes, a file written since is linked again under the name
//! it had (or a conflicted copy's name, if that is taken now) and created anew on the
//! server. A file only read goes as the removal said.

use chrono::Utc;
use loft_cache::mirror::{Kind, Node};
use loft_remote::conflict_name::conflicted_copy_name;
use tracing::info;

use crate::ROOT_INO;
use crate::core::{KernelNote, Vfs, lock};
use crate::error::VfsResult;
use crate::feed::keep_as_new;

impl Vfs {
    /// Remembers where `node`, removed by another device, was named, while handles
    /// here hold it.
    pub(crate) fn removed_while_open(&self, node: &Node, place: (u64, Vec<u8>)) {
        if node.kind == Kind::File {
            lock(&self.removed_while_open).insert(node.ino, place);
        }
    }

    /// The last handle of `node`, which no entry names, closed. Returns true when
    /// the node was linked again because it was written after another device
    /// removed it; false when it is to be forgotten.
    pub(crate) fn keep_if_written_after_removal(&self, node: &Node) -> VfsResult<bool> {
        let Some((parent, name)) = lock(&self.removed_while_open).remove(&node.ino) else {
            return Ok(false);
        };
        self.keep_written_after_removal(node.ino, parent, &name)
    }

    /// Node `ino`, which another device removed from `(parent, name)` and no entry
    /// names, is linked again there (or beside) if it was written since. Returns
    /// true when it was.
    pub(crate) fn keep_written_after_removal(
        &self,
        ino: u64,
        parent: u64,
        name: &[u8],
    ) -> VfsResult<bool> {
        // Dirty now means written since: an edit made before the removal arrived
        // was kept by the feed, and the node was not removed.
        let Some(kept) = self.link_edit_again(ino, parent, name, false)? else {
            return Ok(false);
        };
        info!(
            "{} was written here after another device removed it; kept as {}",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(&kept)
        );
        Ok(true)
    }

    /// An edited file that no entry names any more, whose server node another
    /// inode took over: it is linked again in `parent`, under a conflicted copy's
    /// name of `name` (the other inode's), and created anew on the server.
    pub(crate) fn keep_orphaned_edit(&self, ino: u64, parent: u64, name: &[u8]) -> VfsResult<()> {
        if let Some(kept) = self.link_edit_again(ino, parent, name, true)? {
            info!(
                "an edit made here to a file moved out of view was kept as {}",
                String::from_utf8_lossy(&kept)
            );
        }
        Ok(())
    }

    /// Links dirty node `ino` at `(parent, name)`, or under a conflicted copy's
    /// name if that is taken (always, when `beside`), and queues its creation.
    /// Returns the name, or `None` when the node is gone, clean or named already.
    fn link_edit_again(
        &self,
        ino: u64,
        parent: u64,
        name: &[u8],
        beside: bool,
    ) -> VfsResult<Option<Vec<u8>>> {
        let date = Utc::now().format("%Y-%m-%d").to_string();
        let placed = self.tx(|db| {
            let Some(mut node) = db.node(ino)?.filter(|n| n.dirty) else {
                return Ok(None);
            };
            if db.any_entry_of(ino)?.is_some() {
                return Ok(None);
            }
            let parent = match db.node(parent)? {
                Some(dir) if dir.kind == Kind::Directory && dir.nlink > 0 => parent,
                _ => ROOT_INO,
            };
            let mut kept = name.to_vec();
            let mut attempt = 1;
            while (beside && attempt == 1) || db.lookup(parent, &kept)?.is_some() {
                kept = conflicted_copy_name(name, &self.config.device, &date, attempt);
                attempt += 1;
            }
            db.add_entry(parent, &kept, node.ino)?;
            node.nlink = 1;
            db.update_node(&node)?;
            keep_as_new(db, parent, &kept, &node)?;
            Ok(Some((parent, kept)))
        })?;
        let Some((parent, kept)) = placed else {
            return Ok(None);
        };
        self.tell_kernel(KernelNote::Entry {
            parent,
            name: kept.clone(),
        });
        self.tell_kernel(KernelNote::Inode(parent));
        Ok(Some(kept))
    }
}
