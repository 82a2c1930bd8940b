//! Nodes made here whose creation the server refused because their folder was not
//! found there: deleted by another device before this device's change feed said
//! so, or made again here a moment after the creation was sent. Each one's
//! nearest folder the server knows is checked: if the server still has it, the
//! creation is queued again; if not, the folder is made again with what it
//! holds, as when the change feed reports the deletion of a folder holding
//! unsent changes.

use std::sync::Arc;

use loft_cache::mirror::ROOT_INO;
use loft_remote::errors::ErrorKind;
use tracing::{info, warn};

use super::Stop;
use crate::core::{Vfs, lock};
use crate::error::retry_later;
use crate::feed::{Effects, remove_entry, requeue_created};

impl Vfs {
    /// Marks `ino` stranded, unless its creation was queued again once already
    /// (`made_again`): a node that keeps failing is not sent round for ever.
    pub(crate) fn strand_once(&self, ino: u64) {
        if lock(&self.made_again).insert(ino) {
            lock(&self.stranded).insert(ino);
        }
    }

    /// Sends stranded nodes on their way again.
    pub(crate) async fn rescue_stranded(self: &Arc<Self>) -> Result<(), Stop> {
        let stranded: Vec<u64> = lock(&self.stranded).iter().copied().collect();
        for ino in stranded {
            self.rescue(ino).await?;
            lock(&self.stranded).remove(&ino);
        }
        Ok(())
    }

    async fn rescue(self: &Arc<Self>, ino: u64) -> Result<(), Stop> {
        let known = |ino| self.mirror.read(|db| db.remote_of(ino)).ok().flatten();
        if known(ino).is_some() {
            return Ok(());
        }
        // The nearest folder above that the server knows.
        let mut below = ino;
        let (folder, remote) = loop {
            let Ok(Some((parent, _))) = self.mirror.read(|db| db.any_entry_of(below)) else {
                return Ok(());
            };
            match known(parent) {
                Some(remote) => break (parent, remote),
                None if parent != ROOT_INO => below = parent,
                None => return Ok(()),
            }
        };
        let gone = match self.client.stat(remote).await {
            Ok(_) => false,
            Err(error) if error.kind == ErrorKind::NotFound => true,
            Err(error) if retry_later(&error) => return Err(self.sync_failed(error)),
            Err(error) => {
                warn!(ino, "checking a stranded node's folder: {error}");
                return Ok(());
            }
        };
        let mut effects = Effects::default();
        let rescued = self.tx(|db| {
            if gone {
                if let Some((parent, name)) = db.any_entry_of(folder)? {
                    info!(
                        "{} is gone on the server and holds what this device made; making it again",
                        String::from_utf8_lossy(&name)
                    );
                    remove_entry(db, parent, &name, folder, &mut effects)?;
                }
            } else if !db.create_queued_after(ino, 0)?
                && let (Some(node), Some((parent, name))) = (db.node(ino)?, db.any_entry_of(ino)?)
            {
                requeue_created(db, parent, &name, &node)?;
            }
            Ok(())
        });
        if let Err(error) = rescued {
            warn!(ino, "sending a stranded node again: {error}");
        }
        self.after_changes(effects);
        self.wake.notify_one();
        Ok(())
    }
}
