//! Removals sent together. A run of queued removals whose folders and nodes the server
//! knows (what `rm -r`, `git` and unpackers leave in the journal) goes up in one
//! `RemoveBatch` call, one server transaction, instead of one call and one transaction
//! each.

use std::sync::Arc;

use loft_cache::mirror::{Op, Queued};
use loft_remote::proto;
use tracing::debug;

use super::{Applied, Stop};
use crate::core::Vfs;
use crate::error::retry_later;

/// A queued removal and the request that carries it out.
pub(crate) type ReadyRemoval = (Queued, proto::RemoveRequest);

/// The request removing `name` from server folder `parent`; `node`: the server node
/// meant (0: whatever holds the name), so that what another device put under the name
/// since is not taken away with it.
pub(crate) fn remove_request(
    parent: u64,
    name: &[u8],
    directory: bool,
    node: u64,
) -> proto::RemoveRequest {
    proto::RemoveRequest {
        parent,
        name: name.to_vec().into(),
        recursive: false,
        directory_only: directory,
        non_directory_only: !directory,
        node,
    }
}

impl Vfs {
    /// A queued removal that can go in a batch: the server ids of its folder and of
    /// its node are known here. Any other (an id still unknown, a node made local-only)
    /// is sent on its own, where those cases are handled.
    pub(crate) async fn ready_removal(
        &self,
        queued: &Queued,
    ) -> Result<Option<proto::RemoveRequest>, Stop> {
        let Op::Remove {
            ino,
            parent,
            name,
            directory,
        } = &queued.op
        else {
            return Ok(None);
        };
        if self.now_local_only(&queued.op) {
            return Ok(None);
        }
        let Some(parent_id) = self.remote_id(*parent).await? else {
            return Ok(None);
        };
        let node = match *ino {
            0 => 0,
            ino => match self.remote_id(ino).await? {
                Some(node) => node,
                None => return Ok(None),
            },
        };
        Ok(Some(remove_request(parent_id, name, *directory, node)))
    }

    /// Sends a run of removals in one call and takes them off the journal. A batch
    /// the server refuses goes again one by one, so that each removal gets its own
    /// answer (a name already gone, a folder not empty there). `Done` unless one of
    /// them asked to wait or found the journal rewritten.
    pub(crate) async fn flush_removals(
        self: &Arc<Self>,
        run: &mut Vec<ReadyRemoval>,
    ) -> Result<Applied, Stop> {
        let run = std::mem::take(run);
        if run.len() > 1 {
            for (queued, _) in &run {
                debug!(seq = queued.seq, op = ?queued.op, "sending in a batch");
            }
            let requests = run.iter().map(|(_, request)| request.clone()).collect();
            match self.client.remove_batch(requests).await {
                Ok(()) => {
                    let seqs: Vec<i64> = run.iter().map(|(queued, _)| queued.seq).collect();
                    self.unqueue(&seqs);
                    return Ok(Applied::Done);
                }
                Err(error) if retry_later(&error) => return Err(self.sync_failed(error)),
                Err(error) => debug!("removal batch refused ({error}); sending one by one"),
            }
        }
        for (queued, _) in run {
            match self.apply(&queued).await? {
                Applied::Done => {
                    // Not taken off: sent again, it finds its name gone, which is done.
                    self.unqueue(&[queued.seq]);
                }
                other => return Ok(other),
            }
        }
        Ok(Applied::Done)
    }
}
