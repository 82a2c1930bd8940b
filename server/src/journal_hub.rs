//! Wakes Watch streams when the journal grows. A hint only: streams always read the
//! journal table from their cursor, and poll slowly in case a wake-up is missed.

use tokio::sync::watch;

/// A counter bumped after every committed change; Watch streams wait for it to move.
#[derive(Debug)]
pub struct JournalHub {
    sender: watch::Sender<u64>,
}

impl Default for JournalHub {
    fn default() -> Self {
        JournalHub {
            sender: watch::channel(0).0,
        }
    }
}

impl JournalHub {
    /// Announces that some namespace's journal grew.
    pub fn notify(&self) {
        self.sender.send_modify(|generation| *generation += 1);
    }

    /// A receiver that sees every later [`notify`](Self::notify).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }
}
