//! The sync engine: sends the outbound journal in order and uploads dirty files once
//! they are closed and quiet. When the server is unreachable it waits and retries;
//! nothing is dropped, so offline changes replay on reconnection. A change the server
//! refuses for good is logged and counted, then skipped.

mod commit;
mod ops;
mod removals;
mod stranded;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{Instrument, info, warn};

use loft_cache::mirror::{Kind, Op, Queued};

use crate::backoff::Backoff;
use crate::core::{Vfs, lock};
use removals::ReadyRemoval;

/// A new file to create with its content: `(ino, parent's server id, name)`.
pub(crate) type NewFile = (u64, u64, Vec<u8>);

/// A new file in a group, with the journal positions its creation covers.
type GroupedFile = (Vec<i64>, NewFile);

/// Why a sync round stopped early.
pub(crate) enum Stop {
    /// The server is unreachable.
    Offline,
}

/// What became of one queued operation.
pub(crate) enum Applied {
    Done,
    /// Not yet: a new file waits for its first close.
    Wait,
    /// The journal holds a newer form of it (a folder it names was found to be a
    /// stale view of another): the batch is read again.
    Rewritten,
}

/// The least time from the start of one sync round to the start of the next.
const ROUND_SPACING: Duration = Duration::from_millis(5);

/// A group of new files waits up to this long past its first file's debounce for
/// the files closed just after it, so a burst of small files goes up in a few
/// large commits instead of many small ones.
const GATHER_WINDOW: Duration = Duration::from_millis(20);

/// A group this large goes up without waiting for more.
const GATHER_FILES: usize = 128;

/// How long `wait_synced` waits for an unreachable server to come back.
const OFFLINE_GRACE: Duration = Duration::from_secs(6);

impl Vfs {
    /// Runs the sync engine until the process ends.
    pub async fn run_sync(self: Arc<Self>) {
        let mut backoff = Backoff::new(self.config.retry_cap);
        // A round cut short by an outage: the first full round after it reconciles.
        let mut outage = false;
        loop {
            if !self.counters.online.load(Ordering::Relaxed) && !self.probe().await {
                outage = true;
                tokio::time::sleep(backoff.pause()).await;
                continue;
            }
            backoff.reset();
            let round_started = Instant::now();
            let next = match self.sync_round().await {
                Ok(next) => next,
                Err(Stop::Offline) => {
                    outage = true;
                    continue;
                }
            };
            if std::mem::take(&mut outage) {
                self.reconcile.store(true, Ordering::Relaxed);
            }
            if next.is_none()
                && self.pending_changes() == 0
                && self.reconcile.swap(false, Ordering::Relaxed)
            {
                // Repairs what races between this device's changes, the change
                // feed and other devices may have left: folders show the server's
                // entries again, changes not sent stay.
                // A relisting that fails (the server gone again) is tried again at
                // a later quiet round (at most one a second while nothing happens).
                let vfs = self.clone();
                tokio::spawn(
                    async move {
                        if !vfs.relist_in_background().await {
                            vfs.reconcile.store(true, Ordering::Relaxed);
                        }
                    }
                    .instrument(tracing::Span::current()),
                );
            }
            let notified = self.wake.notified();
            match next {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at.into(), notified).await;
                }
                None => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
                }
            }
            // Every create and close wakes the engine; in a burst of them, rounds
            // are spaced so each finds a group of files ready instead of one.
            tokio::time::sleep_until((round_started + ROUND_SPACING).into()).await;
        }
    }

    /// Asks the server whether it is there; true (and online) if it answered.
    async fn probe(&self) -> bool {
        match self.client.who_am_i().await {
            Ok(_) => {
                if !self.counters.online.swap(true, Ordering::Relaxed) {
                    info!("server reachable, syncing");
                }
                true
            }
            Err(error) => {
                *lock(&self.counters.last_error) = Some(error.to_string());
                false
            }
        }
    }

    /// One pass over the journal and the dirty files. Returns when to look again
    /// (`None`: when woken, or in a second).
    async fn sync_round(self: &Arc<Self>) -> Result<Option<Instant>, Stop> {
        let mut again: Option<Instant> = None;
        // The journal, in order; a new file still being written holds the rest back.
        loop {
            let batch = match self.mirror.read(|db| db.queued(256)) {
                Ok(batch) => batch,
                Err(error) => {
                    warn!("reading the outbound journal: {error}");
                    return Ok(None);
                }
            };
            if batch.is_empty() {
                break;
            }
            let mut blocked = false;
            let mut gathering = false;
            // Runs of new files and of removals each go up in one call. At most one
            // of the two is gathering at a time, so the journal's order holds, but
            // for what `goes_before_the_group` lets pass a group of new files.
            let mut group: Vec<GroupedFile> = Vec::new();
            let mut removals: Vec<ReadyRemoval> = Vec::new();
            let mut batch = VecDeque::from(batch);
            while let Some(mut queued) = batch.pop_front() {
                let mut new_file = self.ready_new_file(&queued).await?;
                if new_file.is_none() && !group.is_empty() {
                    if let Some(until) = self.gather_until(&group, &queued) {
                        // The next round sends the group with the files closed
                        // after it.
                        group.clear();
                        again = Some(until);
                        gathering = true;
                        break;
                    }
                    if self.goes_before_the_group(&queued.op, &group).await? {
                        // Sent ahead of the group, which goes on gathering.
                        let sent = self.fold_set_attrs(&mut queued, &mut batch);
                        match self.apply(&queued).await? {
                            Applied::Done if self.unqueue(&sent) => continue,
                            Applied::Done => return Ok(None),
                            Applied::Wait => {
                                blocked = true;
                                break;
                            }
                            Applied::Rewritten => break,
                        }
                    }
                    self.flush_new_files(&mut group).await?;
                    // The group's upload took a while: this file's debounce may have
                    // ended meanwhile, and it starts the next group instead of going
                    // up alone.
                    new_file = self.ready_new_file(&queued).await?;
                }
                let removal = match new_file {
                    Some(_) => None,
                    None => self.ready_removal(&queued).await?,
                };
                if let Some(request) = removal {
                    removals.push((queued, request));
                    continue;
                }
                // Anything but a removal ends a run of them.
                let mut applied = self.flush_removals(&mut removals).await?;
                if let Applied::Done = applied {
                    if let Some(mut new_file) = new_file {
                        let sent = self
                            .fold_naming_into_creation(&queued, &mut new_file, &mut batch)
                            .await?;
                        group.push((sent, new_file));
                        continue;
                    }
                    let sent = self.fold_set_attrs(&mut queued, &mut batch);
                    applied = self.apply(&queued).await?;
                    if let Applied::Done = applied
                        && !self.unqueue(&sent)
                    {
                        return Ok(None);
                    }
                }
                match applied {
                    Applied::Done => {}
                    Applied::Wait => {
                        blocked = true;
                        break;
                    }
                    Applied::Rewritten => break,
                }
            }
            self.flush_new_files(&mut group).await?;
            if matches!(self.flush_removals(&mut removals).await?, Applied::Wait) {
                blocked = true;
            }
            if blocked {
                again = Some(Instant::now() + Duration::from_millis(20));
                break;
            }
            if gathering {
                break;
            }
        }
        // Dirty files that exist on the server and are closed and quiet.
        let dirty = self.mirror.read(|db| db.unsent_files()).unwrap_or_default();
        for ino in dirty {
            if self.writers(ino) > 0 {
                continue;
            }
            if let Some(at) = self.not_ready_until(ino) {
                again = Some(again.map_or(at, |a| a.min(at)));
                continue;
            }
            let Ok(Some(_)) = self.mirror.read(|db| db.remote_of(ino)) else {
                // Its creation is still queued; if nothing is, it is stranded
                // (checked once).
                let queued = self.mirror.read(|db| db.create_queued_after(ino, 0));
                if matches!(queued, Ok(false)) {
                    if !self.quota_refused_file(ino) {
                        self.strand_once(ino);
                    } else if self.quota_room_for(ino).await {
                        // Its creation was refused for quota and there is room
                        // now: queued again, as often as it takes.
                        lock(&self.stranded).insert(ino);
                    }
                }
                continue;
            };
            if self.quota_refused_file(ino) && !self.quota_room_for(ino).await {
                continue;
            }
            self.upload_existing(ino).await?;
        }
        self.rescue_stranded().await?;
        Ok(again)
    }

    /// Creates a group of new files on the server in one commit batch and takes
    /// their operations off the journal.
    async fn flush_new_files(self: &Arc<Self>, group: &mut Vec<GroupedFile>) -> Result<(), Stop> {
        if group.is_empty() {
            return Ok(());
        }
        let files: Vec<_> = group.iter().map(|(_, file)| file.clone()).collect();
        self.upload_new_batch(&files).await?;
        let seqs: Vec<i64> = group.drain(..).flat_map(|(seqs, _)| seqs).collect();
        self.unqueue(&seqs);
        Ok(())
    }

    /// True when `op`, queued after `group` (new files only), may go to the server
    /// before it: the creation of a folder (tar makes each before its files),
    /// symlink or special file cannot depend on new files, nor can an attribute
    /// change of a node the server already has (tar sets a folder's after its
    /// files), unless it is a folder a file of the group goes into: creating the
    /// file would then change the folder's time after the change set it.
    async fn goes_before_the_group(&self, op: &Op, group: &[GroupedFile]) -> Result<bool, Stop> {
        Ok(match op {
            Op::Create { kind, .. } => *kind != Kind::File as u8,
            Op::SetAttr { ino, .. } => match self.remote_id(*ino).await? {
                Some(id) => group.iter().all(|(_, (_, parent, _))| *parent != id),
                None => false,
            },
            _ => false,
        })
    }

    /// When a group of ready new files should wait for `next`, a new file closed
    /// but still in its debounce: until the group's first file has waited
    /// [`GATHER_WINDOW`], unless the group is full. `None`: send the group now.
    fn gather_until(&self, group: &[GroupedFile], next: &Queued) -> Option<Instant> {
        let (_, (first, _, _)) = group.first()?;
        let Op::Create { ino, kind, .. } = &next.op else {
            return None;
        };
        if group.len() >= GATHER_FILES || *kind != Kind::File as u8 {
            return None;
        }
        let pending = lock(&self.pending);
        let now = Instant::now();
        // Closed: its debounce ends soon. A file still open may stay open for long.
        let next_ready = pending.get(ino)?.ready_at?;
        if next_ready > now + self.config.upload_debounce {
            return None;
        }
        let until = pending.get(first)?.ready_at? + GATHER_WINDOW;
        (until > now).then_some(until)
    }

    /// Takes sent operations off the outbound journal; false (logged) if it could not.
    fn unqueue(&self, seqs: &[i64]) -> bool {
        let done = self.mirror.write(|db| {
            for seq in seqs {
                db.unqueue(*seq)?;
            }
            Ok::<_, loft_cache::CacheError>(())
        });
        if let Err(error) = &done {
            warn!("updating the outbound journal: {error}");
        }
        done.is_ok()
    }

    /// When a dirty file's debounce ends, if it has not yet.
    pub(crate) fn not_ready_until(&self, ino: u64) -> Option<Instant> {
        let pending = lock(&self.pending);
        let at = pending.get(&ino)?.ready_at?;
        (at > Instant::now()).then_some(at)
    }

    /// Waits until everything queued on this device is on the server; fails when
    /// the server is unreachable or `timeout` passes first. Returns what is left.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), u64> {
        let deadline = Instant::now() + timeout;
        let mut offline_since: Option<Instant> = None;
        loop {
            let left = self
                .rx(|db| Ok(db.queued_count()? + db.unsent_files()?.len() as u64))
                .unwrap_or(u64::MAX);
            if left == 0 {
                return Ok(());
            }
            // A moment offline (a server restart, a dropped connection) is waited
            // out; a server that stays away ends the wait.
            if self.counters.online.load(Ordering::Relaxed) {
                offline_since = None;
            } else if offline_since.get_or_insert_with(Instant::now).elapsed() > OFFLINE_GRACE {
                return Err(left);
            }
            if Instant::now() >= deadline {
                return Err(left);
            }
            self.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Changes not yet on the server.
    pub fn pending_changes(&self) -> u64 {
        self.rx(|db| Ok(db.queued_count()? + db.unsent_files()?.len() as u64))
            .unwrap_or(0)
    }

    /// What is not yet on the server, one line each (queued operations, then dirty
    /// files), for diagnostics.
    pub fn describe_pending(&self) -> Vec<String> {
        self.rx(|db| {
            let mut lines: Vec<String> = db
                .queued(64)?
                .iter()
                .map(|q| format!("queued {:?}", q.op))
                .collect();
            for ino in db.unsent_files()? {
                let entry = db.any_entry_of(ino)?;
                let remote = db.remote_of(ino)?;
                lines.push(format!(
                    "dirty file {ino} (server id {remote:?}) at {:?}",
                    entry.map(|(parent, name)| (
                        parent,
                        String::from_utf8_lossy(&name).into_owned()
                    ))
                ));
            }
            Ok(lines)
        })
        .unwrap_or_default()
    }

    pub fn is_online(&self) -> bool {
        self.counters.online.load(Ordering::Relaxed)
    }
}
