//! The `LISTEN` side of the change feed: one dedicated connection per server process
//! that wakes local Watch streams when any process commits a journal change.
//!
//! Notifications sent while this connection is down are lost, so every (re)connect
//! wakes all streams once: they read the journal from their cursors and miss nothing.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::CHANNEL;
use crate::journal_hub::JournalHub;

const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Listens until the task is aborted, reconnecting after failures.
pub async fn run(config: tokio_postgres::Config, hub: Arc<JournalHub>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (sender, mut notes) = mpsc::unbounded_channel();
                let pump = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => {
                                if sender.send(()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(%error, "PostgreSQL LISTEN connection lost");
                                return;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        hub.notify();
                        while notes.recv().await.is_some() {
                            hub.notify();
                        }
                    }
                    Err(error) => tracing::warn!(%error, "PostgreSQL LISTEN failed"),
                }
                pump.abort();
            }
            Err(error) => {
                tracing::warn!(%error, "cannot connect to PostgreSQL for LISTEN; retrying");
            }
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}
