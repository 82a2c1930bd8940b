//! `loft.v1.Watch`: the change journal from a cursor, then live changes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use loft_remote::proto::{self, watch_event::Event, watch_server::Watch};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::State;
use crate::auth::{TokenHash, caller};
use crate::error::ServerError;
use crate::meta::{Caller, now_nanos};

/// Changes read from the journal per query.
const PAGE: u32 = 500;
/// Fallback poll, in case a wake-up is missed: wake-ups are hints (in-process, and from
/// other server processes through PostgreSQL's LISTEN/NOTIFY); the journal is the truth.
const POLL: Duration = Duration::from_secs(5);

pub struct WatchApi(pub Arc<State>);

fn event(event: Event) -> Result<proto::WatchEvent, Status> {
    Ok(proto::WatchEvent { event: Some(event) })
}

/// Streams the journal of `ns` after `cursor` into `sender` until the client goes away
/// or the server shuts down.
async fn follow(
    state: Arc<State>,
    caller: Caller,
    token: TokenHash,
    ns: u64,
    mut cursor: u64,
    sender: mpsc::Sender<Result<proto::WatchEvent, Status>>,
) {
    let mut wake = state.hub.subscribe();
    let mut shutdown = state.shutdown.clone();
    loop {
        wake.borrow_and_update();
        // A session revoked (or expired) while the stream is open ends it: revoking a
        // device wakes every stream, so this happens at once.
        match state.meta.session(token.0, now_nanos()).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let error = ServerError::unauthenticated("the session ended");
                let _ = sender.send(Err(error.into())).await;
                return;
            }
            Err(error) => {
                let _ = sender.send(Err(error.into())).await;
                return;
            }
        }
        let page = match state.meta.journal_since(&caller, ns, cursor, PAGE).await {
            Ok(page) => page,
            Err(error) => {
                let _ = sender.send(Err(error.into())).await;
                return;
            }
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
        let ns = if r.namespace == 0 {
            caller.home_ns
        } else {
            r.namespace
        };
        // Fail the call itself (not the stream) when the namespace is not the caller's.
        self.0.meta.journal_since(&caller, ns, r.cursor, 1).await?;
        let (sender, receiver) = mpsc::channel(256);
        tokio::spawn(follow(self.0.clone(), caller, token, ns, r.cursor, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
