//! Group commit: the mirror's changes share one SQLite transaction for a few
//! milliseconds instead of committing each.
//!
//! A commit writes every page the change touched to the WAL, several of them for a
//! new file (its node, its entry, the folder, the journal and their indexes); on a
//! burst of small changes that was most of each one's cost. Each change now runs in
//! a savepoint of a transaction that is committed once [`COMMIT_WINDOW`] has passed
//! since it began: by the next change after that, or by a thread that commits a
//! quiet tail. A change that fails is rolled back alone.
//!
//! What this gives up: a process killed (`kill -9`) loses the changes of at most the
//! last window. An `fsync` (`Mirror::sync_wal`) and closing the mirror commit at once.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tracing::warn;

use super::node_cache::NodeCache;
use crate::{CacheError, Result};

/// The longest a change waits for its commit.
pub const COMMIT_WINDOW: Duration = Duration::from_millis(5);

/// The connection and its open group.
pub(crate) struct Grouped {
    pub(crate) conn: Connection,
    /// Nodes as the open transaction has them.
    pub(crate) nodes: NodeCache,
    /// When the open transaction began; `None` when none is open.
    since: Option<Instant>,
    closing: bool,
}

impl Grouped {
    /// True when the open group has reached its window.
    fn due(&self) -> bool {
        self.since.is_some_and(|t| t.elapsed() >= COMMIT_WINDOW)
    }

    fn commit(&mut self) -> Result<()> {
        if self.since.take().is_some()
            && let Err(error) = self.conn.execute_batch("COMMIT")
        {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.nodes.clear();
            return Err(error.into());
        }
        Ok(())
    }
}

pub(crate) struct Group {
    state: Mutex<Grouped>,
    opened: Condvar,
}

impl Group {
    /// Wraps `conn` and starts the thread that commits quiet tails.
    pub(crate) fn start(conn: Connection) -> Arc<Group> {
        let group = Arc::new(Group {
            state: Mutex::new(Grouped {
                conn,
                nodes: NodeCache::default(),
                since: None,
                closing: false,
            }),
            opened: Condvar::new(),
        });
        let weak = Arc::downgrade(&group);
        let spawned = std::thread::Builder::new()
            .name("mirror-commit".into())
            .spawn(move || commit_quiet_tails(weak));
        if let Err(error) = spawned {
            // Changes still commit with the next change after the window.
            warn!("no thread to commit the mirror's quiet tails: {error}");
        }
        group
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Grouped> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` as one change: all of it or, when it fails, none.
    pub(crate) fn change<T, E: From<CacheError>>(
        &self,
        f: impl FnOnce(&Grouped) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut state = self.lock();
        if state.since.is_none() {
            state
                .conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| E::from(e.into()))?;
            state.since = Some(Instant::now());
            self.opened.notify_one();
        }
        run_cached(&state.conn, "SAVEPOINT change").map_err(|e| E::from(e.into()))?;
        // A failed change returns (or a panicking one unwinds) with `undo` armed.
        let undo = Undo(&state);
        let out = f(&state)?;
        std::mem::forget(undo);
        run_cached(&state.conn, "RELEASE change").map_err(|e| E::from(e.into()))?;
        if state.due() {
            state.commit().map_err(E::from)?;
        }
        Ok(out)
    }

    /// Commits the open group now.
    pub(crate) fn commit(&self) -> Result<()> {
        self.lock().commit()
    }

    /// Commits and lets the tail thread end.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        if let Err(error) = state.commit() {
            warn!("committing the mirror on close: {error}");
        }
        state.closing = true;
        self.opened.notify_one();
    }
}

/// Runs a statement kept prepared: a change's savepoint and release are parsed once,
/// not on every change.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Rolls a change back when dropped: when it fails, or when it panics.
struct Undo<'g>(&'g Grouped);

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .conn
            .execute_batch("ROLLBACK TO change; RELEASE change");
        // Which nodes the change wrote is not known here: none is trusted.
        self.0.nodes.clear();
    }
}

/// Commits a group that nobody commits because no change came after its window.
fn commit_quiet_tails(group: Weak<Group>) {
    while let Some(group) = group.upgrade() {
        let state = group.lock();
        let (mut state, _) = group
            .opened
            .wait_timeout_while(state, Duration::from_secs(1), |s| {
                s.since.is_none() && !s.closing
            })
            .unwrap_or_else(|e| e.into_inner());
        if state.closing {
            return;
        }
        let Some(since) = state.since else {
            continue;
        };
        let due = since + COMMIT_WINDOW;
        drop(state);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        state = group.lock();
        if state.due()
            && let Err(error) = state.commit()
        {
            warn!("committing the mirror: {error}");
        }
    }
}
