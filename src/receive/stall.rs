//! Stall detection. A publishing node announces in its status how far its stream goes; a
//! receiver compares that with what it applied. A broker that dropped the *newest* queued Deltas
//! (a queue limit) leaves no gap in what arrives, so only this comparison shows that the node is
//! behind: no progress towards an announced position for [`STALL`] means a resync.
//!
//! Pure: positions in, lags and reasons to resync out; the caller reads the state and the clock.

use crate::state::{Hole, Position};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// An origin announced a position beyond what this node applied, and no progress was made for
/// this long: the broker dropped Deltas without leaving a gap (a queue limit), so resync.
pub const STALL: Duration = Duration::from_secs(3);

/// An origin's announced stream position, and since when this node has made no progress
/// towards it.
struct Announced {
    epoch: u64,
    published: u64,
    applied: Option<Position>,
    since: Instant,
}

/// The positions origins announced that this node has not reached yet.
#[derive(Default)]
pub struct Stalls {
    announced: HashMap<String, Announced>,
}

/// What one check found.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Check {
    /// Deltas behind each announcing origin (0 once caught up).
    pub lag: Vec<(String, u64)>,
    /// Why a resync is due, one reason per stalled origin, with the hole the stall shows: the
    /// Deltas from what this node applied up to what the origin announced.
    pub stalled: Vec<(String, Hole, String)>,
}

impl Stalls {
    /// `origin` announced its stream up to `published` in `epoch`.
    pub fn announce(&mut self, origin: &str, epoch: u64, published: u64, now: Instant) {
        self.announced.insert(
            origin.to_string(),
            Announced {
                epoch,
                published,
                applied: None,
                since: now,
            },
        );
    }

    /// Compare the announced positions with `applied` (this node's positions per origin).
    /// Origins caught up with are forgotten; a stalled one is reported once per [`STALL`].
    pub fn check(&mut self, applied: &BTreeMap<String, Position>, now: Instant) -> Check {
        let mut out = Check::default();
        self.announced.retain(|origin, a| {
            let here = applied.get(origin).copied();
            let lag = match here {
                Some(p) if p.epoch == a.epoch => a.published.saturating_sub(p.seq),
                _ => a.published,
            };
            out.lag.push((origin.clone(), lag));
            if lag == 0 {
                return false;
            }
            if here != a.applied {
                a.applied = here;
                a.since = now;
            } else if now.duration_since(a.since) > STALL {
                let hole = Hole::between(here, a.epoch, a.published + 1)
                    .expect("behind an announced position");
                let why = format!(
                    "{origin} announced seq {} of epoch {}, but this node stopped at {}",
                    a.published,
                    a.epoch,
                    here.map_or("nothing".to_string(), |p| format!(
                        "seq {} of epoch {}",
                        p.seq, p.epoch
                    ))
                );
                out.stalled.push((origin.clone(), hole, why));
                a.since = now;
            }
            true
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64, seq: u64) -> BTreeMap<String, Position> {
        [("m".to_string(), Position { epoch, seq })].into()
    }

    #[test]
    fn no_progress_towards_an_announced_position_is_a_stall_once_per_period() {
        let t0 = Instant::now();
        let mut s = Stalls::default();
        s.announce("m", 1, 10, t0);
        let c = s.check(&at(1, 4), t0);
        assert_eq!(c.lag, vec![("m".to_string(), 6)]);
        assert!(c.stalled.is_empty(), "progress was just seen");
        assert!(s.check(&at(1, 4), t0 + STALL / 2).stalled.is_empty());
        let c = s.check(&at(1, 4), t0 + STALL * 2);
        assert_eq!(c.stalled.len(), 1, "{c:?}");
        let (origin, hole, why) = &c.stalled[0];
        assert!(why.contains("stopped at seq 4 of epoch 1"), "{c:?}");
        assert_eq!(origin, "m");
        assert_eq!(
            *hole,
            Hole {
                epoch: 1,
                from: 5,
                to: 10
            },
            "what lies between is missing"
        );
        assert!(
            s.check(&at(1, 4), t0 + STALL * 2).stalled.is_empty(),
            "reported once per period"
        );
    }

    #[test]
    fn progress_resets_the_wait_and_catching_up_forgets_the_origin() {
        let t0 = Instant::now();
        let mut s = Stalls::default();
        s.announce("m", 1, 10, t0);
        s.check(&at(1, 4), t0);
        assert!(s.check(&at(1, 5), t0 + STALL * 2).stalled.is_empty());
        assert_eq!(
            s.check(&at(1, 10), t0 + STALL * 3).lag,
            vec![("m".to_string(), 0)]
        );
        assert!(
            s.check(&at(1, 10), t0 + STALL * 9).lag.is_empty(),
            "forgotten"
        );
    }

    #[test]
    fn another_epoch_is_all_behind() {
        let t0 = Instant::now();
        let mut s = Stalls::default();
        s.announce("m", 2, 3, t0);
        assert_eq!(s.check(&at(1, 50), t0).lag, vec![("m".to_string(), 3)]);
        let stalled = s.check(&at(1, 50), t0 + STALL * 2).stalled;
        assert!(
            stalled[0].2.contains("stopped at seq 50 of epoch 1"),
            "{stalled:?}"
        );
        assert_eq!(
            (stalled[0].1.from, stalled[0].1.to),
            (1, 3),
            "all of epoch 2"
        );

        let mut s = Stalls::default();
        s.announce("m", 2, 3, t0);
        s.check(&BTreeMap::new(), t0);
        let stalled = s.check(&BTreeMap::new(), t0 + STALL * 2).stalled;
        assert!(stalled[0].2.contains("stopped at nothing"), "{stalled:?}");
    }
}
