//! Retry pacing for the connections to the server: exponential backoff from 100 ms,
//! capped (5 s by default, [`crate::VfsConfig::retry_cap`]), with jitter so that many
//! devices do not retry in step.

use std::time::Duration;

pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The pause before each retry of one connection.
pub(crate) struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(cap: Duration) -> Backoff {
        Backoff {
            next: FIRST_BACKOFF.min(cap),
            cap,
        }
    }

    /// After a success: the next failure waits the shortest pause again.
    pub fn reset(&mut self) {
        self.next = FIRST_BACKOFF.min(self.cap);
    }

    /// The pause to wait now (jittered); the one after is twice as long, up to the cap.
    pub fn pause(&mut self) -> Duration {
        let pause = jittered(self.next);
        self.next = (self.next * 2).min(self.cap);
        pause
    }
}

/// Between half and all of `base`.
fn jittered(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let fraction = 0.5 + f64::from(nanos % 1000) / 2000.0;
    base.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_all() {
        for _ in 0..100 {
            let d = jittered(MAX_BACKOFF);
            assert!(d >= MAX_BACKOFF / 2 && d <= MAX_BACKOFF, "{d:?}");
        }
    }

    #[test]
    fn pauses_double_up_to_the_cap_and_start_again_after_a_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(300));
        let pauses: Vec<Duration> = (0..4).map(|_| backoff.pause()).collect();
        let bases = [100, 200, 300, 300].map(Duration::from_millis);
        for (pause, base) in pauses.iter().zip(bases) {
            assert!(
                *pause >= base / 2 && *pause <= base,
                "{pause:?} for {base:?}"
            );
        }
        backoff.reset();
        assert!(backoff.pause() <= FIRST_BACKOFF);
    }
}
