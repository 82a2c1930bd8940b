//! The simulation's clock: the delays the faults draw from the seed are counted in
//! its ticks, and it moves only when the run advances it.

use tokio::sync::watch;

/// Ticks since the run began.
pub type Tick = u64;

#[derive(Clone)]
pub struct SimClock {
    now: watch::Sender<Tick>,
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock {
            now: watch::Sender::new(0),
        }
    }
}

impl SimClock {
    pub fn now(&self) -> Tick {
        *self.now.borrow()
    }

    pub fn advance(&self, ticks: Tick) {
        self.now.send_modify(|now| *now += ticks);
    }

    /// Resolves once the clock reaches `at`.
    pub async fn until(&self, at: Tick) {
        let mut now = self.now.subscribe();
        let _ = now.wait_for(|now| *now >= at).await;
    }

    /// Advances the clock by one tick every `every` of real time until the task is
    /// aborted: a call waiting out a delay may hold up whatever would otherwise move it.
    pub fn spawn_ticker(
        &self,
        rt: &tokio::runtime::Handle,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let clock = self.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                clock.advance(1);
            }
        })
    }

    /// Resolves `ticks` from now.
    pub async fn sleep(&self, ticks: Tick) {
        self.until(self.now() + ticks).await;
    }
}
