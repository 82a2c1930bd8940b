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
        let date = Utc::now().format("%Y-%m-%d").to_string();
        let placed = self.tx(|db| {
            // Dirty now means written since: an edit made before the removal
            // arrived was kept by the feed, and the node was not removed.
            let Some(mut node) = db.node(node.ino)?.filter(|n| n.dirty) else {
                return Ok(None);
            };
            let parent = match db.node(parent)? {
                Some(dir) if dir.kind == Kind::Directory && dir.nlink > 0 => parent,
                _ => ROOT_INO,
            };
            let mut kept = name.clone();
            let mut attempt = 1;
            while db.lookup(parent, &kept)?.is_some() {
                kept = conflicted_copy_name(&name, &self.config.device, &date, attempt);
                attempt += 1;
            }
            db.add_entry(parent, &kept, node.ino)?;
            node.nlink = 1;
            db.update_node(&node)?;
            keep_as_new(db, parent, &kept, &node)?;
            Ok(Some((parent, kept)))
        })?;
        let Some((parent, kept)) = placed else {
            return Ok(false);
        };
        info!(
            "{} was written here after another device removed it; kept as {}",
            String::from_utf8_lossy(&name),
            String::from_utf8_lossy(&kept)
        );
        self.tell_kernel(KernelNote::Entry { parent, name: kept });
        self.tell_kernel(KernelNote::Inode(parent));
        Ok(true)
    }
}
