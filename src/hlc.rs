//! Hybrid logical clock and the per-change version used for conflict resolution.
//!
//! Every replicated change carries a [`Version`]: a hybrid logical clock reading (wall-clock
//! milliseconds in the high 48 bits, a counter in the low 16) plus the id of the node that made
//! the change. Versions are totally ordered by `(hlc, origin)`, so every node that sees the same
//! set of changes to a path picks the same winner without talking to anyone.

use serde::{Deserialize, Serialize};

/// The version of one change to one path. Higher wins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Hybrid logical clock: `physical_ms << 16 | counter`.
    pub hlc: u64,
    /// Node id of the node that made the change; breaks ties between equal clocks.
    pub origin: String,
}

impl Version {
    pub fn new(hlc: u64, origin: impl Into<String>) -> Self {
        Version {
            hlc,
            origin: origin.into(),
        }
    }
}

/// A hybrid logical clock. Monotonic across restarts when seeded with the last persisted value.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    last: u64,
}

fn wall_ms() -> u64 {
    crate::clock::now_ms()
}

impl Clock {
    /// A clock that never goes below `last` (the highest value this node has persisted or seen).
    pub fn starting_after(last: u64) -> Self {
        Clock { last }
    }

    /// The next reading for a local event.
    pub fn tick(&mut self) -> u64 {
        let physical = wall_ms() << 16;
        self.last = if physical > self.last {
            physical
        } else {
            self.last + 1
        };
        self.last
    }

    /// Take in a reading received from another node so later local readings are above it.
    pub fn observe(&mut self, remote: u64) {
        if remote > self.last {
            self.last = remote;
        }
    }

    /// The highest reading issued or observed so far.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// What a reading now would be at least, without taking one: what a status announces, so
    /// that it carries this node's clock even before its first local event.
    pub fn peek(&self) -> u64 {
        self.last.max(wall_ms() << 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_strictly_monotonic_even_when_wall_clock_is_behind() {
        let far_future = (wall_ms() + 3_600_000) << 16;
        let mut c = Clock::starting_after(far_future);
        let a = c.tick();
        let b = c.tick();
        assert!(a > far_future && b > a);
    }

    #[test]
    fn observe_moves_clock_past_remote_reading() {
        let mut c = Clock::default();
        let remote = (wall_ms() + 10_000) << 16;
        c.observe(remote);
        assert!(c.tick() > remote);
    }

    #[test]
    fn versions_order_by_clock_then_origin() {
        assert!(Version::new(2, "a") > Version::new(1, "z"));
        assert!(Version::new(1, "b") > Version::new(1, "a"));
    }
}
