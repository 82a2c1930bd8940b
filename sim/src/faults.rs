//! A [`RemoteClient`] that stands between a client core and the server and injects
//! faults: calls lost on the way there or their replies lost on the way back (the
//! server acted), calls and feed deliveries delayed on the simulation's clock, feed
//! changes delivered twice or out of order, broken streams, a cut network. What it
//! does is drawn from the run's seed; the run sets the mode per device.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use loft_remote::RemoteClient;
use loft_remote::client::{RemoteError, RemoteResult};
use loft_remote::content::ChunkId;
use loft_remote::errors::ErrorKind;
use loft_remote::proto;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, Semaphore, watch};

use crate::clock::{SimClock, Tick};

/// How one device's link to the server misbehaves; percentages per call or event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultMode {
    /// Every call fails and open streams break: the network is cut.
    pub cut: bool,
    /// Calls lost before they reach the server.
    pub lose_request: u8,
    /// Calls the server carries out whose reply is lost.
    pub lose_reply: u8,
    /// Calls and feed deliveries wait up to this many ticks.
    pub delay: Tick,
    /// Feed changes delivered twice.
    pub duplicate: u8,
    /// Feed changes held back behind the next event.
    pub reorder: u8,
    /// Feed events at which the stream breaks instead.
    pub break_stream: u8,
}

impl FaultMode {
    /// A mode with some faults, drawn from `rng`.
    pub fn random(rng: &mut impl Rng) -> FaultMode {
        let mut percent = |most: u8| {
            if rng.random_bool(0.5) {
                rng.random_range(1..=most)
            } else {
                0
            }
        };
        let lose_request = percent(30);
        let lose_reply = percent(30);
        let duplicate = percent(30);
        let reorder = percent(30);
        let break_stream = percent(10);
        FaultMode {
            cut: false,
            lose_request,
            lose_reply,
            delay: rng.random_range(0..=3),
            duplicate,
            reorder,
            break_stream,
        }
    }

    pub fn cut() -> FaultMode {
        FaultMode {
            cut: true,
            ..FaultMode::default()
        }
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cut {
            return write!(f, "cut");
        }
        if *self == FaultMode::default() {
            return write!(f, "clean");
        }
        write!(
            f,
            "lose-request {}% lose-reply {}% delay ≤{} duplicate {}% reorder {}% break {}%",
            self.lose_request,
            self.lose_reply,
            self.delay,
            self.duplicate,
            self.reorder,
            self.break_stream
        )
    }
}

/// How many faults were injected, by kind.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub requests_lost: AtomicU64,
    pub replies_lost: AtomicU64,
    pub delayed: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
    pub streams_broken: AtomicU64,
    pub forged: AtomicU64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        [
            &self.requests_lost,
            &self.replies_lost,
            &self.delayed,
            &self.duplicated,
            &self.reordered,
            &self.streams_broken,
            &self.forged,
        ]
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .sum()
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let get = |count: &AtomicU64| count.load(Ordering::Relaxed);
        write!(
            f,
            "requests lost {}, replies lost {}, delayed {}, duplicated {}, reordered {}, streams broken {}, forged {}",
            get(&self.requests_lost),
            get(&self.replies_lost),
            get(&self.delayed),
            get(&self.duplicated),
            get(&self.reordered),
            get(&self.streams_broken),
            get(&self.forged)
        )
    }
}

/// The faults of one device's link, shared by its client and the run.
pub struct Faults {
    mode: watch::Sender<FaultMode>,
    rng: Mutex<StdRng>,
    clock: SimClock,
    /// Feed events to deliver ahead of the server's (bad input from the wire).
    forged: Mutex<VecDeque<proto::WatchEvent>>,
    forged_ready: Notify,
    /// Streams opened before the last `stall_open_streams` deliver nothing more.
    stalls: AtomicU64,
    /// The next change delivered is the last of its stream (`end_after_next_change`).
    end_after_change: AtomicBool,
    /// While held, listing replies wait for a permit each (`hold_listings`).
    listings: Mutex<Option<Arc<Semaphore>>>,
    /// The folders whose listing replies are waiting.
    listings_waiting: Mutex<Vec<u64>>,
    /// True while renames wait before going out (`hold_renames`).
    renames_held: watch::Sender<bool>,
    pub counts: FaultCounts,
}

impl Faults {
    pub fn new(seed: u64, clock: SimClock) -> Arc<Faults> {
        Arc::new(Faults {
            mode: watch::Sender::new(FaultMode::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            clock,
            forged: Mutex::new(VecDeque::new()),
            forged_ready: Notify::new(),
            stalls: AtomicU64::new(0),
            end_after_change: AtomicBool::new(false),
            listings: Mutex::new(None),
            listings_waiting: Mutex::new(Vec::new()),
            renames_held: watch::Sender::new(false),
            counts: FaultCounts::default(),
        })
    }

    pub fn set(&self, mode: FaultMode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> FaultMode {
        self.mode.borrow().clone()
    }

    /// Delivers `event` on the device's feed before anything the server sends next.
    pub fn forge(&self, event: proto::WatchEvent) {
        self.forged.lock().unwrap().push_back(event);
        self.forged_ready.notify_one();
    }

    /// The feed streams open now stop delivering, without an error, as over a
    /// connection gone half-open; streams opened later work.
    pub fn stall_open_streams(&self) {
        self.stalls.fetch_add(1, Ordering::Relaxed);
        self.forged_ready.notify_waiters();
    }

    /// The feed stream that delivers the next change ends right after it, as when
    /// the server closes the stream: its end is ready as soon as the change is read.
    pub fn end_after_next_change(&self) {
        self.end_after_change.store(true, Ordering::Relaxed);
    }

    /// From now on a listing's reply, once the server has given it, waits until
    /// [`Faults::pass_listing`] lets it go: a listing "on its way" while other calls
    /// reach the server.
    pub fn hold_listings(&self) {
        *self.listings.lock().unwrap() = Some(Arc::new(Semaphore::new(0)));
    }

    /// Lets one held listing reply go.
    pub fn pass_listing(&self) {
        if let Some(gate) = self.listings.lock().unwrap().as_ref() {
            gate.add_permits(1);
        }
    }

    /// Lets every listing reply go, now and later.
    pub fn release_listings(&self) {
        if let Some(gate) = self.listings.lock().unwrap().take() {
            // A closed gate lets every waiter go.
            gate.close();
        }
    }

    /// The folders (server ids) whose listing replies are held now.
    pub fn listings_waiting(&self) -> Vec<u64> {
        self.listings_waiting.lock().unwrap().clone()
    }

    /// Renames wait before going out until [`Faults::release_renames`].
    pub fn hold_renames(&self) {
        self.renames_held.send_replace(true);
    }

    pub fn release_renames(&self) {
        self.renames_held.send_replace(false);
    }

    async fn held_listing(&self, dir: u64) {
        let gate = self.listings.lock().unwrap().clone();
        if let Some(gate) = gate {
            self.listings_waiting.lock().unwrap().push(dir);
            // `Err`: the gate was closed, every reply goes.
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
            let mut waiting = self.listings_waiting.lock().unwrap();
            if let Some(at) = waiting.iter().position(|d| *d == dir) {
                waiting.remove(at);
            }
        }
    }

    async fn held_rename(&self) {
        let mut held = self.renames_held.subscribe();
        let _ = held.wait_for(|held| !*held).await;
    }

    fn roll(&self, percent: u8) -> bool {
        percent > 0 && self.rng.lock().unwrap().random_range(0..100u8) < percent
    }

    fn delay(&self, most: Tick) -> Tick {
        if most == 0 {
            return 0;
        }
        self.rng.lock().unwrap().random_range(0..=most)
    }

    async fn wait(&self, most: Tick) {
        let ticks = self.delay(most);
        if ticks > 0 {
            self.counts.delayed.fetch_add(1, Ordering::Relaxed);
            self.clock.sleep(ticks).await;
        }
    }

    /// Before a call goes out: delay it, or lose it.
    async fn before(&self) -> RemoteResult<()> {
        let mode = self.mode();
        self.wait(mode.delay).await;
        if mode.cut || self.mode().cut {
            return Err(unreachable("the network is cut"));
        }
        if self.roll(mode.lose_request) {
            self.counts.requests_lost.fetch_add(1, Ordering::Relaxed);
            return Err(unreachable("the request was lost"));
        }
        Ok(())
    }

    /// After the server answered: lose the reply, perhaps.
    fn after<T>(&self, result: RemoteResult<T>) -> RemoteResult<T> {
        let mode = self.mode();
        if result.is_ok() && (mode.cut || self.roll(mode.lose_reply)) {
            self.counts.replies_lost.fetch_add(1, Ordering::Relaxed);
            return Err(unreachable("the reply was lost"));
        }
        result
    }
}

fn unreachable(what: &str) -> RemoteError {
    RemoteError::new(ErrorKind::Unavailable, format!("simulated fault: {what}"))
}

/// A client whose calls pass through [`Faults`].
pub struct FaultyClient {
    inner: Arc<dyn RemoteClient>,
    faults: Arc<Faults>,
}

impl FaultyClient {
    pub fn new(inner: Arc<dyn RemoteClient>, faults: Arc<Faults>) -> FaultyClient {
        FaultyClient { inner, faults }
    }

    async fn call<T>(&self, call: impl Future<Output = RemoteResult<T>>) -> RemoteResult<T> {
        self.faults.before().await?;
        let result = call.await;
        self.faults.after(result)
    }
}

/// Why a feed stream's wait ended.
enum Woke {
    Event(Box<Option<RemoteResult<proto::WatchEvent>>>),
    /// A forged event or a new mode: look again.
    Again,
    /// The clock moved on.
    Tick,
}

/// The state of a feed stream passing through the faults.
struct Feed {
    inner: BoxStream<'static, RemoteResult<proto::WatchEvent>>,
    faults: Arc<Faults>,
    mode: watch::Receiver<FaultMode>,
    /// Events to deliver before reading the server's next one.
    ready: VecDeque<RemoteResult<proto::WatchEvent>>,
    /// A change held back until the next event.
    held: Option<proto::WatchEvent>,
    ended: bool,
    /// Ends once `ready` is delivered.
    ending: bool,
    /// `Faults::stalls` when the stream opened.
    stalls: u64,
}

impl Feed {
    async fn next(&mut self) -> Option<RemoteResult<proto::WatchEvent>> {
        loop {
            if self.ended {
                return None;
            }
            if self.faults.stalls.load(Ordering::Relaxed) > self.stalls {
                return std::future::pending().await;
            }
            if let Some(event) = self.faults.forged.lock().unwrap().pop_front() {
                self.faults.counts.forged.fetch_add(1, Ordering::Relaxed);
                return Some(Ok(event));
            }
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.ending {
                self.ended = true;
                return None;
            }
            let mode = self.mode.borrow_and_update().clone();
            if mode.cut {
                return Some(self.broken("the network is cut"));
            }
            let held = self.held.is_some();
            let clock = self.faults.clock.clone();
            let woke = tokio::select! {
                item = self.inner.next() => Woke::Event(Box::new(item)),
                () = self.faults.forged_ready.notified() => Woke::Again,
                _ = self.mode.changed() => Woke::Again,
                // A change held back is let go a tick later if nothing follows it.
                () = clock.sleep(1), if held => Woke::Tick,
            };
            match woke {
                Woke::Event(item) => match *item {
                    Some(Ok(event)) => self.deliver(event, &mode).await,
                    Some(Err(error)) => {
                        self.ended = true;
                        return Some(Err(error));
                    }
                    None => {
                        self.ended = true;
                        return self.held.take().map(Ok);
                    }
                },
                Woke::Again => {}
                Woke::Tick => {
                    if let Some(event) = self.held.take() {
                        self.ready.push_back(Ok(event));
                    }
                }
            }
        }
    }

    async fn deliver(&mut self, event: proto::WatchEvent, mode: &FaultMode) {
        let faults = self.faults.clone();
        faults.wait(mode.delay).await;
        if faults.roll(mode.break_stream) {
            faults.counts.streams_broken.fetch_add(1, Ordering::Relaxed);
            let broken = self.broken("the stream broke");
            self.ready.push_back(broken);
            return;
        }
        let is_change = matches!(event.event, Some(proto::watch_event::Event::Change(_)));
        if is_change && self.held.is_none() && faults.roll(mode.reorder) {
            faults.counts.reordered.fetch_add(1, Ordering::Relaxed);
            self.held = Some(event);
            return;
        }
        if is_change && faults.roll(mode.duplicate) {
            faults.counts.duplicated.fetch_add(1, Ordering::Relaxed);
            self.ready.push_back(Ok(event.clone()));
        }
        self.ready.push_back(Ok(event));
        if let Some(held) = self.held.take() {
            self.ready.push_back(Ok(held));
        }
        if is_change && faults.end_after_change.swap(false, Ordering::Relaxed) {
            self.ending = true;
        }
    }

    fn broken(&mut self, what: &str) -> RemoteResult<proto::WatchEvent> {
        self.ended = true;
        Err(unreachable(what))
    }
}

#[async_trait]
impl RemoteClient for FaultyClient {
    async fn login(
        &self,
        user: &str,
        password: &str,
        device: &str,
    ) -> RemoteResult<proto::LoginReply> {
        self.call(self.inner.login(user, password, device)).await
    }
    async fn logout(&self) -> RemoteResult<()> {
        self.call(self.inner.logout()).await
    }
    async fn who_am_i(&self) -> RemoteResult<proto::Session> {
        self.call(self.inner.who_am_i()).await
    }
    async fn list_devices(&self) -> RemoteResult<Vec<proto::Device>> {
        self.call(self.inner.list_devices()).await
    }
    async fn revoke_device(&self, request: proto::RevokeDeviceRequest) -> RemoteResult<()> {
        self.call(self.inner.revoke_device(request)).await
    }
    async fn quota(&self) -> RemoteResult<proto::Quota> {
        self.call(self.inner.quota()).await
    }
    async fn lookup(&self, parent: u64, name: &[u8]) -> RemoteResult<proto::Node> {
        self.call(self.inner.lookup(parent, name)).await
    }
    async fn resolve(&self, path: &[u8]) -> RemoteResult<proto::Node> {
        self.call(self.inner.resolve(path)).await
    }
    async fn stat(&self, id: u64) -> RemoteResult<proto::Node> {
        self.call(self.inner.stat(id)).await
    }
    async fn list(&self, dir: u64, after: &[u8], limit: u32) -> RemoteResult<proto::ListReply> {
        let reply = self.call(self.inner.list(dir, after, limit)).await;
        self.faults.held_listing(dir).await;
        reply
    }
    async fn create(&self, request: proto::CreateRequest) -> RemoteResult<proto::Node> {
        self.call(self.inner.create(request)).await
    }
    async fn link(&self, node: u64, new_parent: u64, new_name: &[u8]) -> RemoteResult<proto::Node> {
        self.call(self.inner.link(node, new_parent, new_name)).await
    }
    async fn rename(&self, request: proto::RenameRequest) -> RemoteResult<proto::RenameReply> {
        self.faults.held_rename().await;
        self.call(self.inner.rename(request)).await
    }
    async fn remove(&self, request: proto::RemoveRequest) -> RemoteResult<()> {
        self.call(self.inner.remove(request)).await
    }
    async fn remove_batch(&self, requests: Vec<proto::RemoveRequest>) -> RemoteResult<()> {
        self.call(self.inner.remove_batch(requests)).await
    }
    async fn set_attr(&self, request: proto::SetAttrRequest) -> RemoteResult<proto::Node> {
        self.call(self.inner.set_attr(request)).await
    }
    async fn get_xattr(&self, id: u64, name: &[u8]) -> RemoteResult<Vec<u8>> {
        self.call(self.inner.get_xattr(id, name)).await
    }
    async fn set_xattr(&self, id: u64, name: &[u8], value: &[u8], flags: u32) -> RemoteResult<()> {
        self.call(self.inner.set_xattr(id, name, value, flags))
            .await
    }
    async fn list_xattr(&self, id: u64) -> RemoteResult<Vec<Vec<u8>>> {
        self.call(self.inner.list_xattr(id)).await
    }
    async fn remove_xattr(&self, id: u64, name: &[u8]) -> RemoteResult<()> {
        self.call(self.inner.remove_xattr(id, name)).await
    }
    async fn have_chunks(&self, ids: &[ChunkId]) -> RemoteResult<Vec<bool>> {
        self.call(self.inner.have_chunks(ids)).await
    }
    async fn put_chunks(
        &self,
        chunks: tokio::sync::mpsc::Receiver<proto::ChunkUpload>,
    ) -> RemoteResult<proto::PutChunksReply> {
        self.call(self.inner.put_chunks(chunks)).await
    }
    async fn get_chunks(
        &self,
        ranges: Vec<proto::ChunkRange>,
    ) -> RemoteResult<BoxStream<'static, RemoteResult<proto::ChunkData>>> {
        self.call(self.inner.get_chunks(ranges)).await
    }
    async fn get_manifest(&self, node: u64, version: u64) -> RemoteResult<proto::Manifest> {
        self.call(self.inner.get_manifest(node, version)).await
    }
    async fn commit(&self, request: proto::CommitRequest) -> RemoteResult<proto::CommitReply> {
        self.call(self.inner.commit(request)).await
    }
    async fn commit_batch(
        &self,
        requests: Vec<proto::CommitRequest>,
    ) -> RemoteResult<Vec<proto::CommitReply>> {
        self.call(self.inner.commit_batch(requests)).await
    }
    async fn list_versions(&self, node: u64) -> RemoteResult<Vec<proto::Version>> {
        self.call(self.inner.list_versions(node)).await
    }
    async fn restore_version(&self, node: u64, version: u64) -> RemoteResult<proto::CommitReply> {
        self.call(self.inner.restore_version(node, version)).await
    }
    async fn list_trash(&self) -> RemoteResult<Vec<proto::TrashItem>> {
        self.call(self.inner.list_trash()).await
    }
    async fn restore_trash(
        &self,
        request: proto::RestoreTrashRequest,
    ) -> RemoteResult<proto::RestoreTrashReply> {
        self.call(self.inner.restore_trash(request)).await
    }
    async fn empty_trash(&self) -> RemoteResult<u64> {
        self.call(self.inner.empty_trash()).await
    }
    async fn share(&self, request: proto::ShareRequest) -> RemoteResult<proto::ShareReply> {
        self.call(self.inner.share(request)).await
    }
    async fn list_shares(&self, node: u64) -> RemoteResult<proto::MemberList> {
        self.call(self.inner.list_shares(node)).await
    }
    async fn revoke_share(&self, node: u64, user: &str) -> RemoteResult<Vec<String>> {
        self.call(self.inner.revoke_share(node, user)).await
    }
    async fn add_comment(&self, node: u64, text: &str) -> RemoteResult<proto::Comment> {
        self.call(self.inner.add_comment(node, text)).await
    }
    async fn list_comments(&self, node: u64) -> RemoteResult<Vec<proto::Comment>> {
        self.call(self.inner.list_comments(node)).await
    }
    async fn watch(
        &self,
        namespace: u64,
        cursor: u64,
    ) -> RemoteResult<BoxStream<'static, RemoteResult<proto::WatchEvent>>> {
        let inner = self.call(self.inner.watch(namespace, cursor)).await?;
        let feed = Feed {
            inner,
            faults: self.faults.clone(),
            mode: self.faults.mode.subscribe(),
            ready: VecDeque::new(),
            held: None,
            ended: false,
            ending: false,
            stalls: self.faults.stalls.load(Ordering::Relaxed),
        };
        Ok(futures::stream::unfold(feed, |mut feed| async move {
            let event = feed.next().await?;
            Some((event, feed))
        })
        .boxed())
    }
    async fn create_link(
        &self,
        request: proto::CreateLinkRequest,
    ) -> RemoteResult<proto::CreateLinkReply> {
        self.call(self.inner.create_link(request)).await
    }
    async fn list_links(&self) -> RemoteResult<Vec<proto::LinkInfo>> {
        self.call(self.inner.list_links()).await
    }
    async fn revoke_link(&self, id: u64) -> RemoteResult<()> {
        self.call(self.inner.revoke_link(id)).await
    }
    async fn search(&self, query: &str, limit: u32) -> RemoteResult<Vec<proto::SearchHit>> {
        self.call(self.inner.search(query, limit)).await
    }
}
