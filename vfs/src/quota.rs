//! The user's quota as this mount knows it. The server enforces the quota when a
//! version commits, which happens in the background after the last close, so the
//! mount can only report a refusal afterwards: a file whose last commit was refused
//! for quota fails `fsync` and `close` with EDQUOT until a commit of it goes through,
//! and writes fail with EDQUOT at once while the last known usage is at the quota.
//! `statfs` shows the quota as the size of the drive and the usage as used space.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::core::{Vfs, lock};
use crate::error::{VfsError, VfsResult};

/// How long an answer from the server is used before asking again.
const FRESH: Duration = Duration::from_secs(2);
/// How long `statfs` or a write waits for the server's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// A quota and the bytes counting toward it, as last heard from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    pub quota: u64,
    pub used: u64,
}

#[derive(Default)]
pub(crate) struct QuotaView {
    /// The last answer (`None` inside: the user has no quota) and when it came
    /// (`None`: it is out of date).
    known: Mutex<Option<(Option<Usage>, Option<Instant>)>>,
    /// Files whose last commit the server refused for quota.
    refused: Mutex<HashSet<u64>>,
}

impl Vfs {
    /// The user's quota and usage: asked of the server when the last answer is old
    /// and the server is reachable, else the last answer. `None`: no quota, or never
    /// heard.
    pub(crate) fn quota_usage(&self) -> Option<Usage> {
        match self.usage_if_fresh() {
            Some(usage) => usage,
            None => self.rt.block_on(self.ask_usage()),
        }
    }

    /// As [`Vfs::quota_usage`], from async code.
    async fn quota_usage_async(&self) -> Option<Usage> {
        match self.usage_if_fresh() {
            Some(usage) => usage,
            None => self.ask_usage().await,
        }
    }

    /// The last answer while it is fresh, or while the server cannot be asked;
    /// `None`: ask.
    fn usage_if_fresh(&self) -> Option<Option<Usage>> {
        let known = *lock(&self.quota.known);
        if let Some((usage, Some(at))) = known
            && at.elapsed() < FRESH
        {
            return Some(usage);
        }
        if !self.counters.online.load(Ordering::Relaxed) {
            return Some(known.and_then(|(usage, _)| usage));
        }
        None
    }

    /// Asks the server and keeps its answer; the last answer if it does not give one.
    async fn ask_usage(&self) -> Option<Usage> {
        let asked = tokio::time::timeout(ASK_TIMEOUT, self.client.quota()).await;
        let known = || lock(&self.quota.known).and_then(|(usage, _)| usage);
        match asked {
            Ok(Ok(reply)) => {
                let usage = reply.quota.map(|quota| Usage {
                    quota,
                    used: reply.used,
                });
                *lock(&self.quota.known) = Some((usage, Some(Instant::now())));
                usage
            }
            Ok(Err(error)) => {
                debug!("asking for the quota: {error}");
                known()
            }
            Err(_) => known(),
        }
    }

    /// True when `ino`'s last commit was refused for quota.
    pub(crate) fn quota_refused_file(&self, ino: u64) -> bool {
        lock(&self.quota.refused).contains(&ino)
    }

    /// Whether a file refused for quota should be sent again: when its size fits
    /// in what the quota leaves, as last heard (asked again after [`FRESH`]), or
    /// when that is not known. A file that does not fit is not sent at every sync
    /// round, only once the usage heard (the quota raised, files deleted) leaves
    /// room for it.
    pub(crate) async fn quota_room_for(&self, ino: u64) -> bool {
        let Ok(node) = self.node(ino) else {
            return true;
        };
        match self.quota_usage_async().await {
            Some(usage) => usage.used.saturating_add(node.size) <= usage.quota,
            None => true,
        }
    }

    /// A commit of `ino` was refused for quota: its next `fsync`/`close` says so, and
    /// the usage is asked again.
    pub(crate) fn quota_refused(&self, ino: u64) {
        lock(&self.quota.refused).insert(ino);
        self.quota_out_of_date();
    }

    /// A commit of `ino` went through.
    pub(crate) fn quota_committed(&self, ino: u64) {
        if lock(&self.quota.refused).remove(&ino) {
            self.quota_out_of_date();
        }
    }

    /// The next look at the quota asks the server; until it answers, the last answer
    /// stands.
    fn quota_out_of_date(&self) {
        if let Some((_, at)) = lock(&self.quota.known).as_mut() {
            *at = None;
        }
    }

    /// EDQUOT when the server refused the last commit of `ino` for quota.
    pub(crate) fn check_commit_refused(&self, ino: u64) -> VfsResult<()> {
        if self.quota_refused_file(ino) {
            return Err(VfsError::Quota);
        }
        Ok(())
    }

    /// EDQUOT for a write into `ino` when nothing more fits: its last commit was
    /// refused for quota, or the last known usage is at or over the quota.
    pub(crate) fn check_quota_room(&self, ino: u64) -> VfsResult<()> {
        self.check_commit_refused(ino)?;
        // Only a drive that was full, or where a commit was refused, is asked about
        // again; other writes make no call.
        let full = |usage: Option<Usage>| usage.is_some_and(|u| u.used >= u.quota);
        let known = lock(&self.quota.known).and_then(|(usage, _)| usage);
        let maybe_full = full(known) || !lock(&self.quota.refused).is_empty();
        if maybe_full && full(self.quota_usage()) {
            return Err(VfsError::Quota);
        }
        Ok(())
    }
}
