//! Pin ("keep on this device") and online-only ("drop local bytes"). Pinning a file
//! fetches every chunk it lacks; its bytes are then never evicted. A pinned folder
//! pins what is created in it.

use loft_cache::mirror::Kind;

use crate::core::Vfs;
use crate::error::{VfsError, VfsResult};
use crate::fetch::Wait;

impl Vfs {
    /// Pins or unpins `ino` and, for a directory, everything below it.
    pub fn set_pinned(&self, ino: u64, pinned: bool) -> VfsResult<()> {
        let node = self.node(ino)?;
        if node.kind == Kind::Directory {
            self.ensure_listed(ino)?;
            self.set_flag(ino, pinned)?;
            let mut failed = None;
            for (_, child) in self.mirror.read(|db| db.entries(ino))? {
                if let Err(error) = self.set_pinned(child, pinned) {
                    failed.get_or_insert(error);
                }
            }
            return failed.map_or(Ok(()), Err);
        }
        self.set_flag(ino, pinned)?;
        if node.kind != Kind::File {
            return Ok(());
        }
        if pinned {
            self.hydrate(ino)
        } else {
            self.drop_local(ino)
        }
    }

    fn set_flag(&self, ino: u64, pinned: bool) -> VfsResult<()> {
        self.tx(|db| {
            let mut node = db.node(ino)?.ok_or(VfsError::NotFound)?;
            node.pinned = pinned;
            db.update_node(&node)?;
            Ok(())
        })
    }

    /// Fetches every chunk of a clean file that is not local.
    pub fn hydrate(&self, ino: u64) -> VfsResult<()> {
        let node = self.node(ino)?;
        let Some(layout) = self.layout_of(&node)? else {
            return Ok(());
        };
        let file = std::sync::Arc::new(self.bodies.open_body(ino, node.body)?);
        if file.metadata()?.len() != node.size {
            file.set_len(node.size)?;
        }
        self.enter_file(ino, node.body, false)?;
        let all = 0..layout.manifest.chunks.len();
        let result = self.fetch_chunks(ino, node.body, &layout, &file, all, Wait::Yes);
        self.leave_file(ino, false, false);
        result
    }

    /// Drops the local bytes of a clean file not in use (it becomes a placeholder).
    fn drop_local(&self, ino: u64) -> VfsResult<()> {
        let node = self.node(ino)?;
        if node.dirty || self.is_open(ino) {
            return Ok(());
        }
        let freed = self.tx(|db| {
            let freed = db.release_all(ino)?;
            if let Some(mut node) = db.node(ino)? {
                node.local_bytes = 0;
                db.update_node(&node)?;
            }
            Ok(freed)
        })?;
        self.unhold(freed);
        self.bodies.remove(ino, node.body)?;
        Ok(())
    }
}
