//! Records the chunks one upload stream stores, in batches: one metadata transaction
//! (and one fsync of the database) for the chunks stored while the one before was
//! written, instead of one per chunk. The recorder is a task of its own, so what was
//! stored is recorded even when the client goes away mid-stream: an upload resumed
//! later does not send those chunks again.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::meta::{Caller, ChunkRecord, MetaStore};

/// Most chunks recorded in one transaction.
const BATCH: usize = 64;

/// Starts recording what is sent on the returned sender, as `caller`. The task ends
/// once every sender is gone and everything sent is recorded; its result is the first
/// failure, if any.
pub fn start(
    meta: Arc<dyn MetaStore>,
    caller: Caller,
) -> (mpsc::UnboundedSender<ChunkRecord>, JoinHandle<Result<()>>) {
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut first_failure = None;
        while let Some(first) = receiver.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(_) => break,
                }
            }
            if let Err(error) = record(&*meta, &caller, batch).await {
                first_failure.get_or_insert(error);
            }
        }
        first_failure.map_or(Ok(()), Err)
    });
    (sender, task)
}

/// Records `batch` in one transaction; when that fails, each chunk on its own, so
/// that one refused chunk (being deleted by a pruning pass) does not leave the others
/// unrecorded.
async fn record(meta: &dyn MetaStore, caller: &Caller, batch: Vec<ChunkRecord>) -> Result<()> {
    if batch.len() == 1 || meta.record_chunks(caller, batch.clone()).await.is_err() {
        let mut first_failure = None;
        for chunk in batch {
            if let Err(error) = meta.record_chunk(caller, chunk).await {
                first_failure.get_or_insert(error);
            }
        }
        return first_failure.map_or(Ok(()), Err);
    }
    Ok(())
}
