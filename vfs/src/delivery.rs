//! Which changes of one Watch stream have been applied, so that a change delivered
//! twice is skipped and one delivered late (after a later one) is noticed.
//!
//! The feed's positions increase but are not contiguous (they skip other users'
//! changes), so a missing change cannot be seen, only one arriving out of order. A
//! late change may name what a later one needed (a folder created before the file in
//! it), so the feed answers it by listing its folders again, as after a reset.

use std::collections::BTreeSet;

/// Positions remembered individually; older ones count as applied.
const REMEMBERED: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// After everything applied so far: apply it.
    Fresh,
    /// Applied already (or older than what the mirror was last listed at): skip it.
    Repeat,
    /// Older than changes already applied, and never applied itself.
    Late,
}

pub(crate) struct Delivered {
    /// Every position up to here is reflected in the mirror.
    floor: u64,
    /// Positions above `floor` applied in this stream.
    recent: BTreeSet<u64>,
    /// The highest position seen.
    last: u64,
}

impl Delivered {
    /// A stream that starts after `cursor`, the position the mirror holds.
    pub fn after(cursor: u64) -> Delivered {
        Delivered {
            floor: cursor,
            recent: BTreeSet::new(),
            last: cursor,
        }
    }

    /// What to do with the change at `seq`; a fresh or late one counts as applied.
    pub fn classify(&mut self, seq: u64) -> Delivery {
        if seq <= self.floor || self.recent.contains(&seq) {
            return Delivery::Repeat;
        }
        let delivery = if seq > self.last {
            self.last = seq;
            Delivery::Fresh
        } else {
            Delivery::Late
        };
        self.recent.insert(seq);
        while self.recent.len() > REMEMBERED {
            if let Some(oldest) = self.recent.pop_first() {
                self.floor = oldest;
            }
        }
        delivery
    }

    /// The mirror was listed from the server after every position seen so far, or
    /// reset to `head`.
    pub fn relisted(&mut self, head: Option<u64>) {
        self.floor = self.last.max(head.unwrap_or(0));
        self.last = self.floor;
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_changes_are_fresh_and_repeats_are_skipped() {
        let mut delivered = Delivered::after(10);
        assert_eq!(delivered.classify(9), Delivery::Repeat);
        assert_eq!(delivered.classify(10), Delivery::Repeat);
        assert_eq!(delivered.classify(12), Delivery::Fresh);
        assert_eq!(delivered.classify(12), Delivery::Repeat);
        assert_eq!(delivered.classify(15), Delivery::Fresh);
    }

    #[test]
    fn a_change_older_than_an_applied_one_is_late_once() {
        let mut delivered = Delivered::after(0);
        assert_eq!(delivered.classify(5), Delivery::Fresh);
        assert_eq!(delivered.classify(4), Delivery::Late);
        assert_eq!(delivered.classify(4), Delivery::Repeat);
        assert_eq!(delivered.classify(6), Delivery::Fresh);
    }

    #[test]
    fn after_a_relisting_everything_seen_or_before_the_head_is_a_repeat() {
        let mut delivered = Delivered::after(0);
        delivered.classify(5);
        delivered.classify(3);
        delivered.relisted(None);
        assert_eq!(delivered.classify(4), Delivery::Repeat);
        delivered.relisted(Some(20));
        assert_eq!(delivered.classify(19), Delivery::Repeat);
        assert_eq!(delivered.classify(21), Delivery::Fresh);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut delivered = Delivered::after(0);
        for seq in 1..=(REMEMBERED as u64 * 3) {
            delivered.classify(seq);
        }
        assert!(delivered.recent.len() <= REMEMBERED);
        assert_eq!(delivered.classify(1), Delivery::Repeat);
    }
}
