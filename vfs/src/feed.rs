//! Following the server's change feed. Every change another device makes is applied
//! to the mirror, in journal order and together with the cursor, and then the kernel
//! is told to forget what it cached, so other processes see the change at once.
//!
//! Changes this device made are skipped: the mirror has them already (local-first).
//! Applying a change is idempotent and never moves a file's version backwards, so a
//! directory listed while the feed still lags behind is safe: replaying changes it
//! already shows only passes through states the server had.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use loft_cache::mirror::{Db, Kind, Node, Op, ROOT_INO};
use loft_remote::client::RemoteError;
use loft_remote::errors::ErrorKind;
use loft_remote::proto::{self, ChangeKind, watch_event::Event};
use tracing::{debug, info, warn};

use crate::attr::now;
use crate::backoff::Backoff;
use crate::core::{KernelNote, Vfs, lock};
use crate::delivery::{Delivered, Delivery};
use crate::error::VfsResult;
use crate::listing::{apply_remote, upsert_remote};
use crate::renamed_here::RenamedHere;

/// Where the feed resumes: the last position applied in the user's feed (the journals
/// of the home and of every shared item, in one sequence). Mirrors that followed the
/// home's journal alone kept theirs under another key, so they start with a reset.
pub(crate) const FEED_CURSOR: &str = "user_feed_cursor";
/// Set while a relisting the feed asked for (a change that came late) is not done:
/// the cursor has moved past that change, so the next stream lists first.
const RELIST_PENDING: &str = "user_feed_relist_pending";
/// The Watch namespace that means "everything the user belongs to".
const USER_FEED: u64 = 0;
/// Changes applied in one mirror transaction at most.
const BATCH: usize = 256;

/// What applying changes to the mirror leaves to do once the transaction commits.
#[derive(Default)]
pub(crate) struct Effects {
    pub notes: Vec<KernelNote>,
    /// Nodes that lost an entry: forgotten if nothing names or holds them.
    pub unlinked: Vec<u64>,
    /// Bodies of an older version: `(ino, body)`, removed once no handle reads them.
    pub stale_bodies: Vec<(u64, u64)>,
    /// Pinned files whose content changed: fetched again in the background.
    pub rehydrate: Vec<u64>,
    /// Clean bytes released from the budget.
    pub freed: u64,
    /// Folders whose name the server took away: out of view with their subtree once
    /// the transaction is over, unless a later change in it named them again (the
    /// feed replays history, and a folder replaced by a name it takes back later
    /// must keep what it holds).
    pub orphaned_dirs: Vec<u64>,
    /// Edited files no entry names whose server node another inode took over:
    /// `(ino, parent, name)`, linked again beside that inode's entry under a
    /// conflicted copy's name once the transaction is over.
    pub orphaned_edits: Vec<(u64, u64, Vec<u8>)>,
}

impl Effects {
    /// The kernel drops `(parent, name)` (and its link to `child`) and the parent's
    /// cached attributes.
    fn name_gone(&mut self, parent: u64, child: u64, name: Vec<u8>) {
        self.notes.push(KernelNote::Delete {
            parent,
            child,
            name,
        });
        self.notes.push(KernelNote::Inode(parent));
    }
}

impl Vfs {
    /// Follows the change feed until the process ends, reconnecting with exponential
    /// backoff and jitter (capped at 5 s) whenever the stream breaks.
    pub async fn run_feed(self: Arc<Self>) {
        let mut backoff = Backoff::new(self.config.retry_cap);
        loop {
            match self.follow_feed(&mut backoff).await {
                Ok(()) => debug!("change feed ended; reconnecting"),
                Err(error) => warn!("change feed: {error}"),
            }
            tokio::time::sleep(backoff.pause()).await;
        }
    }

    /// One Watch stream, from the persisted cursor until it breaks.
    async fn follow_feed(self: &Arc<Self>, backoff: &mut Backoff) -> Result<(), RemoteError> {
        let session = self.client.who_am_i().await?;
        self.learn_shares(&session);
        let me = session.device_id;
        let stored = self.rx(|db| Ok(db.setting(FEED_CURSOR)?)).ok().flatten();
        // No cursor yet: ask from beyond the end, which answers with a reset to the
        // head; what the mirror holds by then is listed again.
        let cursor = stored.and_then(|c| c.parse().ok()).unwrap_or(u64::MAX);
        if self
            .rx(|db| Ok(db.setting(RELIST_PENDING)?))
            .ok()
            .flatten()
            .is_some()
        {
            info!("a relisting was left unfinished: listing the mirror's folders again");
            if !self.relist_in_background().await {
                return Ok(());
            }
            self.relist_done();
        }
        let mut stream = self.client.watch(USER_FEED, cursor).await?;
        let mut delivered = Delivered::after(if cursor == u64::MAX { 0 } else { cursor });
        let silence = self.config.feed_silence;
        let mut next = next_event(&mut stream, silence).await;
        // Seen while gathering a batch: the stream is not polled again after its end.
        let mut ended = false;
        while let Some(event) = next.take() {
            let event = event?;
            backoff.reset();
            match event.event {
                Some(Event::Change(change)) => {
                    // Everything already waiting goes into the same transaction.
                    let mut batch = vec![change];
                    while batch.len() < BATCH {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(proto::WatchEvent {
                                event: Some(Event::Change(change)),
                            }))) => batch.push(change),
                            Some(Some(other)) => {
                                next = Some(other);
                                break;
                            }
                            Some(None) => {
                                ended = true;
                                break;
                            }
                            None => break,
                        }
                    }
                    let mut late = false;
                    batch.retain(|change| match delivered.classify(change.seq) {
                        Delivery::Fresh => true,
                        Delivery::Repeat => false,
                        Delivery::Late => {
                            late = true;
                            false
                        }
                    });
                    if late {
                        // Recorded first: the cursor moves past the late change below.
                        if let Err(error) = self.tx(|db| Ok(db.set_setting(RELIST_PENDING, "1")?)) {
                            warn!("recording a relisting to do: {error}");
                        }
                    }
                    self.apply_feed(&batch, me);
                    if late {
                        info!(
                            "a change arrived after later ones: listing the mirror's folders again"
                        );
                        if !self.relist_in_background().await {
                            return Ok(());
                        }
                        self.relist_done();
                        delivered.relisted(None);
                    }
                }
                Some(Event::Reset(head)) => {
                    info!("change feed reset to {head}: listing the mirror's folders again");
                    // The changes before `head` will not come: nor will the own
                    // changes of renames the server has carried out.
                    self.renamed_here.clear();
                    if !self.relist_in_background().await {
                        return Ok(());
                    }
                    delivered.relisted(Some(head));
                    self.save_cursor(head);
                }
                Some(Event::CaughtUp(seq)) => {
                    // At most once a second for a cursor moved by own changes only.
                    let stale = now() - self.counters.cursor_saved_at.load(Ordering::Relaxed)
                        > 1_000_000_000;
                    if stale && self.counters.cursor_unsaved.swap(false, Ordering::Relaxed) {
                        self.save_cursor(self.counters.cursor.load(Ordering::Relaxed));
                    }
                    self.counters.cursor.fetch_max(seq, Ordering::Relaxed);
                    self.counters.last_sync.store(now(), Ordering::Relaxed);
                }
                None => {}
            }
            if next.is_none() && !ended {
                next = next_event(&mut stream, silence).await;
            }
        }
        Ok(())
    }

    fn relist_done(&self) {
        if let Err(error) = self.tx(|db| Ok(db.remove_setting(RELIST_PENDING)?)) {
            warn!("recording a relisting done: {error}");
        }
    }

    /// Lists the mirror's folders again (off the runtime's threads); false if that
    /// failed and the stream should start over.
    pub(crate) async fn relist_in_background(self: &Arc<Self>) -> bool {
        let vfs = self.clone();
        let span = tracing::Span::current();
        let relisted = tokio::task::spawn_blocking(move || span.in_scope(|| vfs.relist_all()))
            .await
            .unwrap_or(Ok(()));
        if let Err(error) = relisted {
            warn!("listing folders again: {error}");
            return false;
        }
        true
    }

    fn save_cursor(&self, cursor: u64) {
        match self.tx(|db| Ok(db.set_setting(FEED_CURSOR, &cursor.to_string())?)) {
            Ok(()) => {
                self.counters
                    .cursor_saved_at
                    .store(now(), Ordering::Relaxed);
                self.counters.cursor.store(cursor, Ordering::Relaxed);
                self.counters.last_sync.store(now(), Ordering::Relaxed);
            }
            Err(error) => warn!("saving the feed cursor: {error}"),
        }
    }

    /// Applies `changes` (in journal order) and moves the cursor past them, in one
    /// transaction; then tells the kernel and tidies up.
    fn apply_feed(self: &Arc<Self>, changes: &[proto::Change], me: u64) {
        let Some(last) = changes.last().map(|c| c.seq) else {
            return;
        };
        let own_version_missed_in_batch = || {
            self.rx(|db| {
                for change in changes.iter().filter(|c| c.device_id == me) {
                    if own_version_missed(db, change)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            })
            .unwrap_or(false)
        };
        if changes.iter().all(|c| c.device_id == me && !names_again(c))
            && !own_version_missed_in_batch()
        {
            // Only this device's own changes, none to apply. The cursor is saved
            // when the feed catches up; replaying them after a crash is harmless.
            self.counters.cursor.store(last, Ordering::Relaxed);
            self.counters.cursor_unsaved.store(true, Ordering::Relaxed);
            return;
        }
        let mut effects = Effects::default();
        let applied = self.tx(|db| {
            for change in changes {
                if change.device_id == me
                    && let Some(node) = &change.node
                    && matches!(
                        ChangeKind::try_from(change.kind),
                        Ok(ChangeKind::Renamed | ChangeKind::Removed)
                    )
                {
                    self.renamed_here.came_back(node.id);
                }
                if change.device_id == me
                    && !(names_again(change) && own_still_holds(db, change, &self.removed_here)?)
                    && !own_version_missed(db, change)?
                {
                    continue;
                }
                self.apply_change(db, change, change.device_id == me, &mut effects)?;
            }
            db.set_setting(FEED_CURSOR, &last.to_string())?;
            Ok(())
        });
        match applied {
            Ok(()) => {
                self.counters.cursor.store(last, Ordering::Relaxed);
                self.counters.cursor_unsaved.store(false, Ordering::Relaxed);
                self.counters
                    .cursor_saved_at
                    .store(now(), Ordering::Relaxed);
                self.counters.last_sync.store(now(), Ordering::Relaxed);
                self.after_changes(effects);
            }
            Err(error) => warn!("applying {} changes from the feed: {error}", changes.len()),
        }
    }

    /// Applies one change; `own`: this device made it (then only where the node
    /// goes is taken from it: attributes this device changed since may not be on
    /// the server yet).
    fn apply_change(
        &self,
        db: &Db<'_>,
        change: &proto::Change,
        own: bool,
        effects: &mut Effects,
    ) -> VfsResult<()> {
        let Some(remote) = &change.node else {
            return Ok(());
        };
        let ino = live_ino_of_remote(db, remote.id)?;
        debug!(
            seq = change.seq,
            kind = change.kind,
            id = remote.id,
            parent = change.parent,
            name = %String::from_utf8_lossy(&change.name),
            old_parent = change.old_parent,
            ino,
            version = remote.version,
            size = remote.size,
            "applying a change"
        );
        let feed = Placing::Feed {
            own,
            renamed: &self.renamed_here,
        };
        match ChangeKind::try_from(change.kind) {
            Ok(ChangeKind::Modified) => {
                if let Some(ino) = ino {
                    refresh_node(db, ino, remote, effects)?;
                    if !own && let Some(has) = remote.has_xattrs {
                        xattrs_changed_elsewhere(db, ino, has)?;
                    }
                }
            }
            Ok(ChangeKind::Created) => match db.ino_of_remote(change.parent)? {
                Some(parent) => place(db, parent, &change.name, ino, remote, feed, effects)?,
                None => {
                    if let Some(ino) = ino {
                        refresh_node(db, ino, remote, effects)?;
                    }
                }
            },
            Ok(ChangeKind::Renamed) => {
                let new_parent = db.ino_of_remote(change.parent)?;
                if new_parent.is_none()
                    && let Some(ino) = ino
                    && db
                        .node(ino)?
                        .is_some_and(|n| n.kind == Kind::File && n.dirty)
                {
                    // Edited here, and moved where this device has not looked: it
                    // stays where it is while its edit goes to the server (to the
                    // moved node); the folders are listed again after that, which
                    // takes the old name away.
                    self.reconcile.store(true, Ordering::Relaxed);
                    return Ok(());
                }
                if let Some(parent) = new_parent
                    && held_here(db, parent, &change.name, ino, Some(&self.renamed_here))?
                {
                    // Its new name holds a change made here: the node stays where
                    // it was (with any edit of it), not nameless. A folder's
                    // conflicts settle when this device's folder reaches the server
                    // and is taken as that one (this one is made again for what it
                    // holds); a file's, once the server has this device's change
                    // and the folders are listed again.
                    if remote.kind != proto::NodeKind::Directory as i32 {
                        self.reconcile.store(true, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                if let (Some(ino), Some(old_parent)) = (ino, db.ino_of_remote(change.old_parent)?)
                    && db.lookup(old_parent, &change.old_name)? == Some(ino)
                {
                    let directory = remote.kind == proto::NodeKind::Directory as i32;
                    unname(db, old_parent, &change.old_name, ino, directory, effects)?;
                }
                match db.ino_of_remote(change.parent)? {
                    Some(parent) => place(db, parent, &change.name, ino, remote, feed, effects)?,
                    None => {
                        // Moved somewhere this device has not looked at: out of view.
                        if let Some(ino) = ino
                            && db.any_entry_of(ino)?.is_none()
                        {
                            detach(db, ino, effects)?;
                        }
                    }
                }
            }
            Ok(ChangeKind::Removed) => {
                let (Some(ino), Some(parent)) = (ino, db.ino_of_remote(change.parent)?) else {
                    return Ok(());
                };
                if db.lookup(parent, &change.name)? != Some(ino) {
                    return Ok(());
                }
                let node = db.node(ino)?;
                if let Some(node) = node.filter(|n| n.dirty) {
                    // Edited here, deleted there: the edit is kept, as a new file.
                    keep_as_new(db, parent, &change.name, &node)?;
                    return Ok(());
                }
                remove_entry(db, parent, &change.name, ino, effects)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The work left after a feed transaction: kernel notes, forgotten nodes, stale
    /// bodies and pinned files to fetch again.
    pub(crate) fn after_changes(&self, mut effects: Effects) {
        if !effects.orphaned_dirs.is_empty() {
            let detached = self.tx(|db| {
                while let Some(dir) = effects.orphaned_dirs.pop() {
                    if db.any_entry_of(dir)?.is_none() {
                        detach(db, dir, &mut effects)?;
                    }
                }
                Ok(())
            });
            if let Err(error) = detached {
                warn!("taking removed folders out of view: {error}");
            }
        }
        self.unhold(effects.freed);
        for (ino, parent, name) in effects.orphaned_edits {
            if lock(&self.removed_here).contains(&ino) {
                // Removed here while open: its edit goes with it.
                continue;
            }
            if let Err(error) = self.keep_orphaned_edit(ino, parent, &name) {
                warn!(ino, "keeping an edit whose file went out of view: {error}");
            }
        }
        for (ino, body) in effects.stale_bodies {
            let in_use = {
                let mut files = lock(&self.files);
                match files.get_mut(&ino) {
                    Some(open) => {
                        // Handles opened before keep reading the version they opened
                        // from the old body; new opens use the new one.
                        if let Ok(node) = self.node(ino) {
                            open.body = node.body;
                            open.held.clear();
                        }
                        true
                    }
                    None => false,
                }
            };
            if in_use {
                lock(&self.stale_bodies).entry(ino).or_default().push(body);
            } else if let Err(error) = self.bodies.remove(ino, body) {
                debug!(ino, "removing an old body: {error}");
            }
        }
        let mut gone_names = HashMap::new();
        for note in &effects.notes {
            if let KernelNote::Delete {
                parent,
                child,
                name,
            } = note
            {
                gone_names.insert(*child, (*parent, name.clone()));
            }
        }
        for note in effects.notes {
            self.tell_kernel(note);
        }
        for ino in effects.unlinked {
            // A node named again later in the same transaction was moved, not
            // removed; a folder out of view that holds changes not sent stays.
            let unnamed = self.rx(|db| {
                let named = db.any_entry_of(ino)?.is_some() || db.has_entries(ino)?;
                Ok(db.node(ino)?.filter(|_| !named))
            });
            let Ok(Some(node)) = unnamed else {
                continue;
            };
            if node.nlink > 0 {
                continue;
            }
            let place = gone_names.remove(&ino);
            if self.is_open(ino) {
                if let Some(place) = place {
                    self.removed_while_open(&node, place);
                }
                continue;
            }
            // Dirty now means written since the removal (a file edited before it was
            // kept by the feed): a program had resolved the file just before the
            // removal and wrote it, closing its handle before this step.
            if node.dirty
                && let Some((parent, name)) = place
            {
                match self.keep_written_after_removal(ino, parent, &name) {
                    Ok(true) => {
                        self.upload_after_debounce(ino);
                        continue;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        warn!(ino, "keeping a file written after its removal: {error}");
                        continue;
                    }
                }
            }
            if let Err(error) = self.forget_node(&node) {
                warn!(ino, "forgetting a node removed remotely: {error}");
            }
        }
        for ino in effects.rehydrate {
            let Some(vfs) = self.me.upgrade() else {
                break;
            };
            let span = tracing::Span::current();
            self.rt.spawn_blocking(move || {
                let _span = span.enter();
                if let Err(error) = vfs.hydrate(ino) {
                    warn!(ino, "fetching a pinned file's new version: {error}");
                }
            });
        }
    }

    /// After a reset: lists every folder the mirror has listed again and makes its
    /// entries the server's, keeping what this device has not sent yet.
    fn relist_all(self: &Arc<Self>) -> VfsResult<()> {
        // Local changes go first, so the listings already include them.
        while self.rx(|db| Ok(db.queued_count()?))? > 0 {
            self.wake.notify_one();
            std::thread::sleep(Duration::from_millis(50));
        }
        let listed = self.rx(|db| Ok(db.listed_dirs()?))?;
        debug!(folders = listed.len(), "listing the mirror's folders again");
        for dir in listed {
            self.relist(dir)?;
        }
        Ok(())
    }
}

impl Vfs {
    /// Makes the mirror's entries of a listed folder the server's: names the server
    /// no longer has go, new ones come, known nodes are refreshed. Local-only and
    /// dirty entries stay, and so does every name this device changed (and sent)
    /// while the listing was on its way: the listing is older than those changes.
    /// That includes a rename made here before the listing was asked for and carried
    /// out by the server while it was on its way (`renamed_here`): the listing may not
    /// have it, and the rename's own change does not bring a forgotten node back.
    fn relist(self: &Arc<Self>, dir: u64) -> VfsResult<()> {
        // Each name's server id (None: created here, not sent) before asking.
        let (remote, before) = self.rx(|db| {
            let mut before: HashMap<Vec<u8>, Option<u64>> = HashMap::new();
            for (name, ino) in db.entries(dir)? {
                before.insert(name, db.remote_of(ino)?);
            }
            Ok((db.remote_of(dir)?, before))
        })?;
        let Some(remote) = remote else {
            return Ok(());
        };
        debug!(dir, remote, "listing a folder again");
        let entries = self
            .fetch_listing(remote)
            .map_err(|e| self.remote_failed(e))?;
        let _guard = lock(&self.listing_lock);
        let mut effects = Effects::default();
        self.tx(|db| {
            if db.node(dir)?.is_none() {
                return Ok(());
            }
            let server: HashMap<&[u8], &proto::Node> = entries
                .iter()
                .filter_map(|e| Some((e.name.as_ref(), e.node.as_ref()?)))
                .collect();
            // Each name's server id now, before this listing changes anything.
            let mut now: HashMap<Vec<u8>, Option<u64>> = HashMap::new();
            for (name, ino) in db.entries(dir)? {
                now.insert(name, db.remote_of(ino)?);
            }
            // A node the server names otherwise in this folder (moved within it by
            // another device, or a local rename the server refused) loses its
            // stale name first, so that it is moved below and not taken away
            // with what it holds.
            for (name, remote) in &server {
                if now.get(*name) != before.get(*name) {
                    continue;
                }
                let Some(ino) = live_ino_of_remote(db, remote.id)? else {
                    continue;
                };
                if db.rename_queued_of(ino)? {
                    continue;
                }
                for (stale, child) in db.entries(dir)? {
                    if child == ino
                        && server.get(stale.as_slice()).map(|n| n.id) != Some(remote.id)
                        && now.get(&stale) == before.get(&stale)
                        && !db.name_queued(dir, &stale)?
                        && !self.renamed_here.holds(ino, dir, &stale)
                    {
                        let directory = remote.kind == proto::NodeKind::Directory as i32;
                        unname(db, dir, &stale, ino, directory, &mut effects)?;
                    }
                }
            }
            for (name, ino) in db.entries(dir)? {
                let Some(id) = db.remote_of(ino)? else {
                    continue; // created here, not sent yet
                };
                let unchanged = before.get(&name) == Some(&Some(id));
                match server.get(name.as_slice()) {
                    Some(remote) if remote.id == id => {
                        if unchanged {
                            refresh_node(db, ino, remote, &mut effects)?;
                        }
                    }
                    _ if !unchanged
                        || held_here(db, dir, &name, None, Some(&self.renamed_here))? => {}
                    _ => remove_entry(db, dir, &name, ino, &mut effects)?,
                }
            }
            for (name, remote) in &server {
                if now.get(*name) != before.get(*name) {
                    continue; // changed here meanwhile
                }
                let ino = live_ino_of_remote(db, remote.id)?;
                if let Some(ino) = ino
                    && (db.rename_queued_of(ino)? || self.renamed_here.elsewhere(ino, dir, name))
                {
                    continue; // moved here, the move not sent yet or not come back
                }
                place(db, dir, name, ino, remote, Placing::Listing, &mut effects)?;
            }
            Ok(())
        })?;
        self.after_changes(effects);
        Ok(())
    }
}

/// The feed's next event; an error when none came for `silence`.
async fn next_event<S>(
    stream: &mut S,
    silence: Duration,
) -> Option<Result<proto::WatchEvent, RemoteError>>
where
    S: futures::Stream<Item = Result<proto::WatchEvent, RemoteError>> + Unpin,
{
    match tokio::time::timeout(silence, stream.next()).await {
        Ok(event) => event,
        Err(_) => Some(Err(RemoteError::new(
            ErrorKind::Unavailable,
            format!("the change feed was silent for {silence:?}"),
        ))),
    }
}

/// A change of this device's own that may need applying all the same: a creation,
/// rename or removal. The mirror may know a node from a listing or a reply newer
/// than the feed's position, and the feed then replays what other devices did
/// before; that older history must not have the last word over this device's
/// later change, whose own journal entry comes after it.
fn names_again(change: &proto::Change) -> bool {
    matches!(
        ChangeKind::try_from(change.kind),
        Ok(ChangeKind::Created | ChangeKind::Renamed | ChangeKind::Removed)
    )
}

/// True when this device's own `change` carries a newer version of a file than the
/// mirror holds, and nothing here is newer: the mirror lost track of a commit of its
/// own (the replay of older history took the node away, and its own creation,
/// replayed after, brought it back as it was first made).
fn own_version_missed(db: &Db<'_>, change: &proto::Change) -> VfsResult<bool> {
    if ChangeKind::try_from(change.kind) != Ok(ChangeKind::Modified) {
        return Ok(false);
    }
    let Some(remote) = &change.node else {
        return Ok(false);
    };
    let Some(ino) = db.ino_of_remote(remote.id)? else {
        return Ok(false);
    };
    Ok(db.node(ino)?.is_some_and(|node| {
        node.kind == Kind::File && !node.dirty && remote.version > node.version
    }) && !db.queued_for(ino)?)
}

/// True when this device's own `change` still says what the mirror should hold:
/// - a rename, of a node still here, when no later rename of it is queued (that
///   one's own entry follows);
/// - a creation, only for a node the replay took out of view (one named here stays
///   as it is, and one removed here, `removed_here`, stays gone);
/// - a removal, always (it only takes away the entry that names its node).
fn own_still_holds(
    db: &Db<'_>,
    change: &proto::Change,
    removed_here: &Mutex<BTreeSet<u64>>,
) -> VfsResult<bool> {
    let removed = |ino: u64| lock(removed_here).contains(&ino);
    let ino = change
        .node
        .as_ref()
        .map(|n| db.ino_of_remote(n.id))
        .transpose()?
        .flatten();
    Ok(match (ChangeKind::try_from(change.kind), ino) {
        // Only a node this device maps: a creation or rename whose reply has not come
        // yet is recorded by that reply, and the node may be gone here since (removed,
        // or replaced by a rename over it); it is not brought back.
        (Ok(ChangeKind::Renamed | ChangeKind::Created), None) => false,
        (Ok(ChangeKind::Renamed), Some(ino)) => {
            db.node(ino)?.is_some()
                && !removed(ino)
                && match db.last_rename_of(ino)? {
                    None => true,
                    Some((parent, name)) => {
                        name == change.name.as_ref()
                            && db.ino_of_remote(change.parent)? == Some(parent)
                    }
                }
        }
        (Ok(ChangeKind::Created), Some(ino)) => {
            db.any_entry_of(ino)?.is_none() && !removed(ino) && !db.remove_queued_of(ino)?
        }
        _ => true,
    })
}

/// Refreshes a known node from the server's state. A new version of a clean file
/// moves it to a fresh body (open handles keep the old one) and drops its chunks.
pub(crate) fn refresh_node(
    db: &Db<'_>,
    ino: u64,
    remote: &proto::Node,
    effects: &mut Effects,
) -> VfsResult<()> {
    let Some(mut node) = db.node(ino)? else {
        return Ok(());
    };
    let old_version = node.version;
    tracing::trace!(
        ino,
        old_version,
        dirty = node.dirty,
        size = node.size,
        version = remote.version,
        remote_size = remote.size,
        "refreshing a node from the server"
    );
    apply_remote(&mut node, remote);
    if node.kind == Kind::File && !node.dirty && node.version != old_version {
        effects.freed += db.release_all(ino)?;
        effects.stale_bodies.push((ino, node.body));
        node.body += 1;
        node.local_bytes = 0;
        if node.pinned {
            effects.rehydrate.push(ino);
        }
    }
    db.update_node(&node)?;
    effects.notes.push(KernelNote::Inode(ino));
    Ok(())
}

/// Another device changed the xattrs of `ino` (`has`: whether it has any now): the
/// ones kept here are dropped, to be read from the server when next asked for,
/// unless a change this device made to the node is still queued.
fn xattrs_changed_elsewhere(db: &Db<'_>, ino: u64, has: bool) -> VfsResult<()> {
    if db.queued_for(ino)? {
        return Ok(());
    }
    db.clear_xattrs(ino)?;
    if let Some(mut node) = db.node(ino)? {
        node.xattrs_listed = !has;
        db.update_node(&node)?;
    }
    Ok(())
}

/// The inode standing for server node `remote`, if it still exists. A node this
/// device deleted and forgot keeps its server id mapped (queued operations may
/// still name it); back on the server (restored from the trash, or listed again),
/// it comes back as a new node, which takes the id over.
fn live_ino_of_remote(db: &Db<'_>, remote: u64) -> VfsResult<Option<u64>> {
    Ok(match db.ino_of_remote(remote)? {
        Some(ino) if db.node(ino)?.is_some() => Some(ino),
        _ => None,
    })
}

/// True when `(parent, name)` holds, instead of `ino`, a change made here and not
/// sent: a node the server does not know, a dirty one, or one a queued rename or
/// link put there; or, for older history the feed replays or a listing asked for
/// before the rename reached the server (`renamed`), one a rename put there whose own
/// change has not come back yet.
fn held_here(
    db: &Db<'_>,
    parent: u64,
    name: &[u8],
    ino: Option<u64>,
    renamed: Option<&RenamedHere>,
) -> VfsResult<bool> {
    let Some(existing) = db.lookup(parent, name)?.filter(|e| Some(*e) != ino) else {
        return Ok(false);
    };
    Ok(db.remote_of(existing)?.is_none()
        || db.node(existing)?.is_some_and(|n| n.dirty)
        || db.name_queued(parent, name)?
        || renamed.is_some_and(|r| r.holds(existing, parent, name)))
}

/// Where an entry [`place`] puts comes from.
#[derive(Clone, Copy)]
enum Placing<'a> {
    /// A change from the feed, which may be older history than what this device
    /// did since; `own`: this device made it (then only where the node goes is
    /// taken from it).
    Feed { own: bool, renamed: &'a RenamedHere },
    /// A listing: what it shows stands, attributes included.
    Listing,
}

/// Puts the server's entry `(parent, name) → remote` into the mirror, replacing what
/// held the name unless that is a local change not yet sent (or, for a change from
/// the feed, a rename whose own change has not come back). A node known here also
/// takes the server's attributes, unless the change is this device's own.
fn place(
    db: &Db<'_>,
    parent: u64,
    name: &[u8],
    ino: Option<u64>,
    remote: &proto::Node,
    placing: Placing<'_>,
    effects: &mut Effects,
) -> VfsResult<()> {
    let (refresh, renamed) = match placing {
        Placing::Feed { own, renamed } => (!own, Some(renamed)),
        Placing::Listing => (true, None),
    };
    let Some(dir) = db.node(parent)? else {
        return Ok(());
    };
    if dir.kind != Kind::Directory {
        return Ok(());
    }
    match db.lookup(parent, name)? {
        Some(existing) if Some(existing) == ino => {
            return if refresh {
                refresh_node(db, existing, remote, effects)
            } else {
                Ok(())
            };
        }
        _ if moved_here_unsent(db, ino)? => {
            // Moved by this device and the move not sent yet: it stays where this
            // device put it (as a listing leaves it); the move's own change names
            // it on the server.
            return match ino {
                Some(ino) if refresh => refresh_node(db, ino, remote, effects),
                _ => Ok(()),
            };
        }
        Some(existing) => {
            if held_here(db, parent, name, ino, renamed)? {
                // This device's change wins the name here; the server settles it
                // (a conflicted copy) when the change arrives there.
                return Ok(());
            }
            remove_entry(db, parent, name, existing, effects)?;
        }
        None => {}
    }
    let ino = match ino {
        Some(ino) => {
            if refresh {
                refresh_node(db, ino, remote, effects)?;
            }
            drop_stale_names(db, ino, remote, effects)?;
            // A file this device made, named again after the replay of older
            // history took its name (and its last link) away in the same batch.
            if let Some(mut node) = db.node(ino)?
                && node.kind != Kind::Directory
                && node.nlink == 0
            {
                node.nlink = 1;
                db.update_node(&node)?;
            }
            ino
        }
        // An unlisted folder shows the server's entries when it is first looked at.
        None if !dir.listed => return Ok(()),
        None => {
            let ino = upsert_remote(db, remote, dir.pinned, effects)?;
            if dir.pinned && remote.kind == proto::NodeKind::File as i32 {
                effects.rehydrate.push(ino);
            }
            ino
        }
    };
    db.add_entry(parent, name, ino)?;
    if remote.kind == proto::NodeKind::Directory as i32 {
        adjust_nlink(db, parent, 1)?;
    }
    effects.notes.push(KernelNote::Entry {
        parent,
        name: name.to_vec(),
    });
    effects.notes.push(KernelNote::Inode(parent));
    Ok(())
}

/// True when `ino` is named here and a queued rename, not sent yet, moved it.
fn moved_here_unsent(db: &Db<'_>, ino: Option<u64>) -> VfsResult<bool> {
    let Some(ino) = ino else {
        return Ok(false);
    };
    Ok(db.rename_queued_of(ino)? && db.any_entry_of(ino)?.is_some())
}

/// Before `ino` takes the server's name for `remote`: a folder, or a file with one
/// link, has one name on the server, so any name it has here is stale (a move this
/// device missed, or a local rename the server refused) and goes.
pub(crate) fn drop_stale_names(
    db: &Db<'_>,
    ino: u64,
    remote: &proto::Node,
    effects: &mut Effects,
) -> VfsResult<()> {
    let directory = remote.kind == proto::NodeKind::Directory as i32;
    if !directory && remote.nlink > 1 {
        return Ok(());
    }
    while let Some((old_parent, old_name)) = db.any_entry_of(ino)? {
        unname(db, old_parent, &old_name, ino, directory, effects)?;
    }
    Ok(())
}

/// Takes the name `(parent, name)` from `ino` without unlinking the node, which is
/// named elsewhere: the entry, the folder's link for a subfolder, and the kernel's
/// cached name.
fn unname(
    db: &Db<'_>,
    parent: u64,
    name: &[u8],
    ino: u64,
    directory: bool,
    effects: &mut Effects,
) -> VfsResult<()> {
    db.remove_entry(parent, name)?;
    if directory {
        adjust_nlink(db, parent, -1)?;
    }
    effects.name_gone(parent, ino, name.to_vec());
    Ok(())
}

/// Removes `(parent, name) → ino` as the server did; a removed folder takes its
/// subtree out of the mirror with it.
pub(crate) fn remove_entry(
    db: &Db<'_>,
    parent: u64,
    name: &[u8],
    ino: u64,
    effects: &mut Effects,
) -> VfsResult<()> {
    if let Some(dir) = db.node(ino)?.filter(|n| n.kind == Kind::Directory)
        && holds_unsent(db, ino)?
    {
        return keep_folder_as_new(db, parent, name, &dir, effects);
    }
    debug!(parent, name = %String::from_utf8_lossy(name), ino, "entry taken away");
    db.remove_entry(parent, name)?;
    effects.name_gone(parent, ino, name.to_vec());
    let Some(mut node) = db.node(ino)? else {
        return Ok(());
    };
    if node.kind == Kind::Directory {
        adjust_nlink(db, parent, -1)?;
        effects.orphaned_dirs.push(ino);
        return Ok(());
    }
    node.nlink = node.nlink.saturating_sub(1);
    node.ctime = now();
    db.update_node(&node)?;
    effects.unlinked.push(ino);
    Ok(())
}

/// Takes a node that no entry names any more out of view, with its subtree. What
/// below it holds changes not sent yet stays in it, under its server id: those
/// changes still reach the server where the folder went, and the folder comes back
/// into view with them when this device meets it there (a listing, or a folder
/// made here that turns out to be it).
fn detach(db: &Db<'_>, ino: u64, effects: &mut Effects) -> VfsResult<()> {
    let Some(mut node) = db.node(ino)? else {
        return Ok(());
    };
    if node.kind == Kind::Directory {
        for (name, child) in db.entries(ino)? {
            let unsent = match db.node(child)? {
                Some(inner) if inner.kind == Kind::Directory => holds_unsent(db, child)?,
                Some(inner) => is_unsent(db, &inner)?,
                None => false,
            };
            if !unsent {
                remove_entry(db, ino, &name, child, effects)?;
            }
        }
    }
    node.nlink = 0;
    db.update_node(&node)?;
    effects.unlinked.push(ino);
    Ok(())
}

/// A dirty file whose server node was deleted by another device: it stays where it
/// is, and the sync engine creates it again on the server with this content.
pub(crate) fn keep_as_new(db: &Db<'_>, parent: u64, name: &[u8], node: &Node) -> VfsResult<()> {
    db.forget_remote(node.ino)?;
    let mut node = node.clone();
    node.version = 0;
    node.manifest = None;
    db.update_node(&node)?;
    db.push(&Op::create_of(&node, parent, name.to_vec()), now())?;
    info!(
        "{} was deleted on another device while edited here; keeping this device's version",
        String::from_utf8_lossy(name)
    );
    Ok(())
}

/// The name an edit is kept under (as its conflicted copy, at the top of the drive)
/// when the file it was made to had no name here as its server node went.
const RECOVERED_EDIT: &[u8] = b"recovered edit";

/// A dirty file whose server node is gone (deleted, or merged into another by a
/// rename over it): it stays where it is, and the sync engine creates it again on
/// the server with this content. One with no name here (moved by another device
/// into a folder this device has not listed) is linked at the top of the drive
/// once the transaction is over.
pub(crate) fn keep_edit_as_new(db: &Db<'_>, node: &Node, effects: &mut Effects) -> VfsResult<()> {
    match db.any_entry_of(node.ino)? {
        Some((parent, name)) => keep_as_new(db, parent, &name, node),
        None => {
            db.forget_remote(node.ino)?;
            effects
                .orphaned_edits
                .push((node.ino, ROOT_INO, RECOVERED_EDIT.to_vec()));
            Ok(())
        }
    }
}

/// Maps `ino` to server node `remote`. Another inode that stood for that node here
/// is a stale view of it and goes; if it holds changes not sent, they are kept as a
/// new file.
pub(crate) fn claim_remote(
    db: &Db<'_>,
    ino: u64,
    remote: u64,
    effects: &mut Effects,
) -> VfsResult<()> {
    let Some(other) = db.ino_of_remote(remote)?.filter(|other| *other != ino) else {
        db.set_remote(ino, remote)?;
        return Ok(());
    };
    let stale = db.node(other)?;
    // A folder taken out of view may be forgotten while it still holds what was
    // made here: its entries stay, under its inode number.
    if stale.as_ref().is_none_or(|n| n.kind == Kind::Directory)
        && db.node(ino)?.is_some_and(|n| n.kind == Kind::Directory)
    {
        adopt_entries(db, other, ino, effects)?;
    }
    if let Some(node) = stale {
        if node.kind == Kind::File && node.dirty {
            match (db.any_entry_of(other)?, db.any_entry_of(ino)?) {
                (None, Some((parent, name))) => {
                    // Out of view here (moved where this device has not looked, or
                    // its name taken), and now its server node is this one's: the
                    // edit goes beside it.
                    db.forget_remote(other)?;
                    effects.orphaned_edits.push((other, parent, name));
                }
                _ => keep_edit_as_new(db, &node, effects)?,
            }
        } else {
            // A folder has one name; a file as many as its links.
            for _ in 0..node.nlink.max(1) {
                let Some((parent, name)) = db.any_entry_of(other)? else {
                    break;
                };
                remove_entry(db, parent, &name, other, effects)?;
                if node.kind == Kind::Directory {
                    break;
                }
            }
            db.forget_remote(other)?;
            if node.kind == Kind::Directory {
                // Forgotten once nothing names it or is left in it.
                effects.unlinked.push(other);
            }
        }
    }
    db.set_remote(ino, remote)?;
    Ok(())
}

/// Folder `to` takes the place of `from`, a stale view of the same server folder:
/// the entries of `from` whose names `to` does not hold move into `to`, and queued
/// changes that name `from` as a folder name `to`. What was made here below the
/// stale view (kept there when the folder moved out of sight) reaches the server
/// in the folder's place.
fn adopt_entries(db: &Db<'_>, from: u64, to: u64, effects: &mut Effects) -> VfsResult<()> {
    for (name, child) in db.entries(from)? {
        if db.lookup(to, &name)?.is_some() {
            continue;
        }
        db.remove_entry(from, &name)?;
        db.add_entry(to, &name, child)?;
        if db.node(child)?.is_some_and(|n| n.kind == Kind::Directory) {
            adjust_nlink(db, from, -1)?;
            adjust_nlink(db, to, 1)?;
        }
        effects.name_gone(from, child, name);
    }
    effects.notes.push(KernelNote::Inode(to));
    db.repoint_queued_parent(from, to)?;
    Ok(())
}

/// True when something below folder `dir` is not on the server: a file edited or
/// made here and not sent yet, or a local-only entry.
fn holds_unsent(db: &Db<'_>, dir: u64) -> VfsResult<bool> {
    for (_, child) in db.entries(dir)? {
        let Some(node) = db.node(child)? else {
            continue;
        };
        if is_unsent(db, &node)? || (node.kind == Kind::Directory && holds_unsent(db, child)?) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn is_unsent(db: &Db<'_>, node: &Node) -> VfsResult<bool> {
    Ok(node.dirty || node.local_only || db.remote_of(node.ino)?.is_none())
}

/// A folder deleted by another device that holds what this device has not sent: it
/// stays, and the sync engine makes it again on the server with those entries. What
/// the server had in it (in its trash now) goes from here.
fn keep_folder_as_new(
    db: &Db<'_>,
    parent: u64,
    name: &[u8],
    dir: &Node,
    effects: &mut Effects,
) -> VfsResult<()> {
    db.forget_remote(dir.ino)?;
    let mut node = dir.clone();
    node.listed = true;
    db.update_node(&node)?;
    db.push(&Op::create_of(&node, parent, name.to_vec()), now())?;
    for (child_name, child) in db.entries(dir.ino)? {
        let Some(node) = db.node(child)? else {
            continue;
        };
        if node.kind == Kind::Directory && holds_unsent(db, child)? {
            keep_folder_as_new(db, dir.ino, &child_name, &node, effects)?;
        } else if !is_unsent(db, &node)? {
            remove_entry(db, dir.ino, &child_name, child, effects)?;
        } else if db.remote_of(child)?.is_some() {
            if node.kind == Kind::File {
                keep_as_new(db, dir.ino, &child_name, &node)?;
            }
        } else if !node.local_only && !db.create_queued_after(child, 0)? {
            // Made here, its creation refused (the folder was gone on the server
            // already): it goes again behind the folder's.
            requeue_created(db, dir.ino, &child_name, &node)?;
        }
    }
    effects.notes.push(KernelNote::Inode(dir.ino));
    info!(
        "{} was deleted on another device while it held changes made here; keeping it",
        String::from_utf8_lossy(name)
    );
    Ok(())
}

/// Queues the creation of `node`, made here, and of what it holds whose creation
/// is not queued either.
pub(crate) fn requeue_created(db: &Db<'_>, parent: u64, name: &[u8], node: &Node) -> VfsResult<()> {
    db.push(&Op::create_of(node, parent, name.to_vec()), now())?;
    if node.kind != Kind::Directory {
        return Ok(());
    }
    for (child_name, child) in db.entries(node.ino)? {
        if let Some(inner) = db.node(child)?
            && !inner.local_only
            && db.remote_of(child)?.is_none()
            && !db.create_queued_after(child, 0)?
        {
            requeue_created(db, node.ino, &child_name, &inner)?;
        }
    }
    Ok(())
}

fn adjust_nlink(db: &Db<'_>, dir: u64, delta: i64) -> VfsResult<()> {
    if let Some(mut node) = db.node(dir)? {
        node.nlink = (i64::from(node.nlink) + delta).max(2) as u32;
        db.update_node(&node)?;
    }
    Ok(())
}
