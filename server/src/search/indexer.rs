//! The indexing worker: follows every namespace's journal and brings the search
//! documents of the nodes it names up to date (name, and the text of the current
//! version read from the chunk store), then moves its cursors on.
//!
//! One pass runs at a time across every server process sharing the metadata store (the
//! `search` lease) and, within a process, a mutex. It runs on an interval, after every
//! local write (through the [`JournalHub`]) and when a search asks to catch up; each
//! finished pass bumps a counter that searches wait on.

use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

use loft_remote::content::{Manifest, decode};
use loft_remote::proto::NodeKind;
use tokio::runtime::Handle;
use tokio::sync::{Mutex, Notify, watch};

use super::text;
use crate::background;
use crate::chunk_store::ChunkStore;
use crate::error::{Result, ServerError};
use crate::journal_hub::JournalHub;
use crate::meta::{MetaStore, SearchDoc, SearchSource};

const LEASE: &str = "search";
/// A pass renews the lease after each batch; a holder that died loses it after this.
const LEASE_TTL: Duration = Duration::from_secs(60);
/// Journal rows per batch.
const BATCH: u32 = 200;

/// How long writes must pause before the worker indexes them: a burst of commits is
/// indexed once it ends, in whole batches, instead of taking CPU from the commits (in
/// a burst of 5,000 small creates the indexing took a quarter to a third of the
/// server's CPU). Two seconds, not a fraction of one, because what a user does right
/// after a burst (listing or building what was just unpacked) is slowed by it too: a
/// mount's `stat` of 10,000 files just created ran at 16–19 thousand a second while a
/// 200 ms pause let the embedded server index them, 26–28 thousand once it waited
/// longer. A search does not wait for the pause: it wakes the worker.
const WRITE_QUIET: Duration = Duration::from_secs(2);
/// The longest writes that keep coming hold back the indexing of the first of them.
const WRITE_LAG: Duration = Duration::from_secs(10);

/// How often the worker looks without being woken; filled by the binary's flags.
#[derive(Clone, Debug)]
pub struct IndexConfig {
    pub interval: Duration,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            interval: Duration::from_secs(10),
        }
    }
}

/// Keeps the search index of one pair of stores up to date.
pub struct Indexer {
    meta: Arc<dyn MetaStore>,
    chunks: ChunkStore,
    /// Names this process in the lease.
    holder: String,
    running: Mutex<()>,
    wake: Notify,
    /// Counts finished passes (of this process).
    passes: watch::Sender<u64>,
}

impl Indexer {
    pub fn new(meta: Arc<dyn MetaStore>, chunks: ChunkStore) -> Indexer {
        Indexer {
            meta,
            chunks,
            holder: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            running: Mutex::new(()),
            wake: Notify::new(),
            passes: watch::channel(0).0,
        }
    }

    /// Asks the worker for a pass now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Changes after each finished pass.
    pub fn passes(&self) -> watch::Receiver<u64> {
        self.passes.subscribe()
    }

    /// Indexes everything journaled so far; returns how many documents it wrote, or
    /// `None` when another pass holds the lease.
    pub fn run_pass<'a>(&'a self) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            let _running = self.running.lock().await;
            let ttl = crate::meta::Nanos::try_from(LEASE_TTL.as_nanos()).unwrap_or(i64::MAX);
            if !self.meta.take_lease(LEASE, &self.holder, ttl).await? {
                return Ok(None);
            }
            let result = self.pass(ttl).await;
            self.meta.release_lease(LEASE, &self.holder).await?;
            self.passes.send_modify(|count| *count += 1);
            result.map(Some)
        })
    }

    async fn pass(&self, ttl: crate::meta::Nanos) -> Result<u64> {
        let mut written = 0;
        loop {
            let backlog = self.meta.search_backlog(BATCH).await?;
            if backlog.cursors.is_empty() {
                return Ok(written);
            }
            // Reading and decoding the texts is the pass's CPU: it runs at a lower
            // priority than serving requests, on one thread for the whole batch.
            let chunks = self.chunks.clone();
            let runtime = Handle::current();
            let docs = background::run("loft-index", move || {
                let texts = TextReader { chunks, runtime };
                backlog
                    .sources
                    .into_iter()
                    .map(|source| texts.document(source))
                    .collect::<Vec<_>>()
            })
            .await?;
            written += docs.len() as u64;
            self.meta.store_search_docs(docs, backlog.cursors).await?;
            if !self.meta.take_lease(LEASE, &self.holder, ttl).await? {
                return Err(ServerError::internal("the search lease was lost mid-pass"));
            }
        }
    }

    /// Runs passes until `stop` turns true: every `config.interval`, once the changes
    /// `hub` announces pause, and when woken.
    pub fn run(
        self: Arc<Self>,
        config: IndexConfig,
        hub: Arc<JournalHub>,
        mut stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut changes = hub.subscribe();
            loop {
                if let Err(error) = self.run_pass().await {
                    tracing::warn!(%error, "search indexing pass failed");
                }
                let written = tokio::select! {
                    _ = tokio::time::sleep(config.interval) => false,
                    Ok(()) = changes.changed() => true,
                    _ = self.wake.notified() => false,
                    _ = stop.wait_for(|stopping| *stopping) => return,
                };
                if written {
                    // A burst of commits is indexed when it pauses, in passes of whole
                    // batches, not one pass (and lease) per commit.
                    let lag = tokio::time::sleep(WRITE_LAG);
                    tokio::pin!(lag);
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(WRITE_QUIET) => break,
                            Ok(()) = changes.changed() => {}
                            _ = &mut lag => break,
                            _ = self.wake.notified() => break,
                            _ = stop.changed() => break,
                        }
                    }
                }
            }
        })
    }
}

/// Reads the text of versions on a thread outside the runtime's workers.
struct TextReader {
    chunks: ChunkStore,
    runtime: Handle,
}

impl TextReader {
    /// The document of one node: its name, and its text when it is a text file.
    fn document(&self, source: SearchSource) -> SearchDoc {
        let Some(name) = source.name else {
            return SearchDoc {
                inode: source.inode,
                text: None,
            };
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        let body = match &source.manifest {
            Some(manifest) if source.kind == NodeKind::File && text::may_be_text(&name) => {
                match self.head_of(manifest) {
                    Ok(bytes) => text::extract(&bytes).unwrap_or_default(),
                    // A chunk that is gone (pruned meanwhile) leaves the file findable
                    // by name; a later version indexes again.
                    Err(error) => {
                        tracing::warn!(%error, node = source.inode, "indexing by name only");
                        String::new()
                    }
                }
            }
            _ => String::new(),
        };
        SearchDoc {
            inode: source.inode,
            text: Some((name, body)),
        }
    }

    /// The first [`text::TEXT_CAP`] bytes of a version.
    fn head_of(&self, manifest: &Manifest) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        for chunk in &manifest.chunks {
            if bytes.len() >= text::TEXT_CAP {
                break;
            }
            let stored = self.chunks.get_blocking(&chunk.id, &self.runtime)?;
            if stored.compressed {
                bytes.extend_from_slice(&decode(&stored.data, true, chunk.length as usize)?);
            } else {
                bytes.extend_from_slice(&stored.data);
            }
            // Binary content shows in the first chunk: stop reading there.
            if bytes.contains(&0) {
                break;
            }
        }
        Ok(bytes)
    }
}
