//! `loft.v1.Watch`: the caller's feed (or one namespace's journal) from a cursor, then
//! live changes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use loft_remote::errors::ErrorKind;
use loft_remote::proto::{self, watch_event::Event, watch_server::Watch};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::State;
use crate::auth::{TokenHash, caller};
use crate::error::ServerError;
use crate::meta::{Caller, JournalPage, Membership, now_nanos};

/// Changes read from the journal per query.
const PAGE: u32 = 500;
/// Fallback poll, in case a wake-up is missed: wake-ups are hints (in-process, and from
/// other server processes through PostgreSQL's LISTEN/NOTIFY); the journal is the truth.
const POLL: Duration = Duration::from_secs(5);
/// How long a stream waits for an unavailable metadata store before it gives up; until
/// then it retries with a growing pause, so a database restart does not cut every stream.
const OUTAGE_PATIENCE: Duration = Duration::from_secs(60);

pub struct WatchApi(pub Arc<State>);

fn event(event: Event) -> Result<proto::WatchEvent, Status> {
    Ok(proto::WatchEvent { event: Some(event) })
}

/// What a Watch stream follows.
#[derive(Clone, Debug)]
enum Source {
    /// The caller's feed over every namespace it belongs to, as long as those stay the
    /// ones it belonged to when the stream began.
    Feed(Vec<Membership>),
    /// One namespace's journal.
    Namespace(u64),
}

/// Why a stream on the caller's feed must end, if its memberships changed: losing one
/// ends it with an error at once; gaining one or a new role ends it cleanly, so the
/// client watches again and learns its new roles.
async fn memberships_changed(
    state: &State,
    caller: &Caller,
    known: &[Membership],
) -> Option<Result<(), ServerError>> {
    let now = match state.meta.memberships(caller).await {
        Ok(now) => now,
        Err(error) => return Some(Err(error)),
    };
    if now == known {
        return None;
    }
    if known
        .iter()
        .any(|old| !now.iter().any(|new| new.ns == old.ns))
    {
        return Some(Err(ServerError::new(
            ErrorKind::PermissionDenied,
            "access to a shared item was revoked; watch again",
        )));
    }
    Some(Ok(()))
}

/// The next page of `source` after `cursor`, or `None` when the stream must end
/// cleanly because the caller's memberships changed.
async fn next_page(
    state: &State,
    caller: &Caller,
    token: TokenHash,
    source: &Source,
    cursor: u64,
) -> Result<Option<JournalPage>, ServerError> {
    // A session revoked (or expired) while the stream is open ends it: revoking a
    // device wakes every stream, so this happens at once.
    if state.meta.session(token.0, now_nanos()).await?.is_none() {
        return Err(ServerError::unauthenticated("the session ended"));
    }
    match source {
        Source::Feed(known) => {
            // Revoking a share wakes every stream, so a lost member's ends at once.
            match memberships_changed(state, caller, known).await {
                None => {}
                Some(Ok(())) => return Ok(None),
                Some(Err(error)) => return Err(error),
            }
            state.meta.feed_since(caller, cursor, PAGE).await.map(Some)
        }
        Source::Namespace(ns) => state
            .meta
            .journal_since(caller, *ns, cursor, PAGE)
            .await
            .map(Some),
    }
}

/// Streams `source` after `cursor` into `sender` until the client goes away, the
/// server shuts down, or the caller's access changes.
async fn follow(
    state: Arc<State>,
    caller: Caller,
    token: TokenHash,
    source: Source,
    mut cursor: u64,
    sender: mpsc::Sender<Result<proto::WatchEvent, Status>>,
) {
    let mut wake = state.hub.subscribe();
    let mut shutdown = state.shutdown.clone();
    let mut outage = Outage::default();
    loop {
        wake.borrow_and_update();
        let page = match next_page(&state, &caller, token, &source, cursor).await {
            Ok(Some(page)) => {
                outage = Outage::default();
                page
            }
            // Gained a membership or a new role: the client watches again and learns it.
            Ok(None) => return,
            Err(error) => match outage.pause(&error) {
                Some(pause) => {
                    tracing::warn!(error = %error.message, ?pause, "Watch waits for the metadata store");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = shutdown.wait_for(|stopping| *stopping) => return,
                        _ = sender.closed() => return,
                    }
                }
                None => {
                    let _ = sender.send(Err(error.into())).await;
                    return;
                }
            },
        };
        if let Some(head) = page.reset_to {
            cursor = head;
            if sender.send(event(Event::Reset(head))).await.is_err() {
                return;
            }
            continue;
        }
        let full = page.changes.len() == PAGE as usize;
        for change in page.changes {
            cursor = change.seq;
            if sender.send(event(Event::Change(change))).await.is_err() {
                return;
            }
        }
        if full {
            continue;
        }
        // The page was read in one snapshot with its head: a feed that skipped rows of
        // namespaces left since is caught up to the head all the same.
        cursor = cursor.max(page.head);
        if sender.send(event(Event::CaughtUp(cursor))).await.is_err() {
            return;
        }
        tokio::select! {
            _ = wake.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
            _ = sender.closed() => return,
        }
    }
}

/// How long a stream has been waiting for an unavailable metadata store.
#[derive(Default)]
struct Outage {
    waited: Duration,
    next: Duration,
}

impl Outage {
    /// The pause before the next try, or `None` when `error` is not worth waiting out.
    fn pause(&mut self, error: &ServerError) -> Option<Duration> {
        if error.kind != ErrorKind::Unavailable || self.waited >= OUTAGE_PATIENCE {
            return None;
        }
        let pause = self.next.clamp(Duration::from_millis(100), POLL);
        self.waited += pause;
        self.next = pause * 2;
        Some(pause)
    }
}

#[tonic::async_trait]
impl Watch for WatchApi {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::WatchEvent, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = caller(&request)?;
        let token = request
            .extensions()
            .get::<TokenHash>()
            .copied()
            .ok_or_else(|| ServerError::unauthenticated("not signed in"))?;
        let r = request.into_inner();
        let source = if r.namespace == 0 {
            Source::Feed(self.0.meta.memberships(&caller).await?)
        } else {
            // Fail the call itself (not the stream) when the namespace is not the caller's.
            self.0
                .meta
                .journal_since(&caller, r.namespace, r.cursor, 1)
                .await?;
            Source::Namespace(r.namespace)
        };
        let (sender, receiver) = mpsc::channel(256);
        tokio::spawn(follow(
            self.0.clone(),
            caller,
            token,
            source,
            r.cursor,
            sender,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
