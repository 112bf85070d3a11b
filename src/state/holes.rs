//! Holes: the Deltas of an origin's stream this node knows it skipped.
//!
//! A gap (seq 127 arriving after 99) or a stall (an origin announcing seq 140 while this node
//! stopped at 99) means Deltas this node never applied. The stream position moves on anyway —
//! the session has to — so the position alone cannot tell what is held: the hole says it. It is
//! durable (a restart must not forget it), it is filled by the missing Deltas if they still
//! arrive (a failover broker's session delivering them late), and otherwise only by a resync
//! from a node whose manifest *covers* it: the origin itself, or a node that holds the origin's
//! stream at least to the hole's end with no hole of its own there. A manifest advertises
//! covered positions, never seen ones, so a node that skipped Deltas cannot pass itself off as
//! holding them (issue 14's chaos rounds found exactly that: a slave resynced from a node as far
//! behind as itself, or from a pure master that applies nobody's Deltas, and stopped there).

use super::position::Position;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Seqs `from..=to` of `epoch` of one origin's stream, not (all) applied here. One per origin:
/// a second gap in the same epoch widens it (what lies between may be held already; applying
/// it again is harmless, versions decide); see [`widen`] for a gap in another epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hole {
    pub epoch: u64,
    pub from: u64,
    pub to: u64,
}

impl Hole {
    /// The Deltas between `pos` (the last one applied, if any) and `seq` of `epoch`, which
    /// arrived instead of the next one; `None` when nothing lies between.
    pub fn between(pos: Option<Position>, epoch: u64, seq: u64) -> Option<Hole> {
        let from = match pos {
            Some(p) if p.epoch == epoch => p.seq + 1,
            _ => 1,
        };
        (seq > from).then(|| Hole {
            epoch,
            from,
            to: seq - 1,
        })
    }

    /// Whether Delta `seq` of `epoch` lies in the hole (so it is no duplicate).
    pub fn holds(&self, epoch: u64, seq: u64) -> bool {
        self.epoch == epoch && (self.from..=self.to).contains(&seq)
    }

    /// The hole once Delta `seq` of `epoch` was applied: narrowed from its start (a Delta
    /// inside it fills nothing certain, as those after it may not have been applied), `None`
    /// once filled.
    pub fn filled_by(self, epoch: u64, seq: u64) -> Option<Hole> {
        if self.epoch != epoch || seq != self.from {
            return Some(self);
        }
        (self.from < self.to).then_some(Hole {
            from: self.from + 1,
            ..self
        })
    }

    /// The position up to which the origin's stream is held here.
    pub fn covered(&self) -> Position {
        Position {
            epoch: self.epoch,
            seq: self.from - 1,
        }
    }

    /// Whether a manifest from `responder`, advertising covered `positions`, holds everything
    /// the hole lacks of `origin`'s stream: it reaches the hole's end in the hole's epoch, or
    /// it is the origin's own manifest from a later epoch (the hole's stream has ended). The
    /// origin's manifest of the same epoch covers only what it had published when it answered:
    /// a hole found after (a gap in Deltas published while the answer travelled) stays open.
    pub fn covered_by(
        &self,
        origin: &str,
        responder: &str,
        positions: &BTreeMap<String, Position>,
    ) -> bool {
        match positions.get(origin) {
            Some(p) if p.epoch == self.epoch => p.seq >= self.to,
            Some(_) => responder == origin,
            // The origin had published nothing when it answered: the hole is of a stream it
            // lost (a new state dir), which only its own manifest answers for.
            None => responder == origin,
        }
    }
}

/// `old` widened by `new`. The same epoch joins both. Holes in two epochs (the origin lost its
/// state and started a new stream while this node still lacked part of the old one) are not
/// one range: the older is kept, open-ended, so that only the origin's own manifest covers it
/// — the one manifest that answers for both streams.
pub fn widen(old: Option<Hole>, new: Hole) -> Hole {
    match old {
        Some(o) if o.epoch == new.epoch => Hole {
            epoch: o.epoch,
            from: o.from.min(new.from),
            to: o.to.max(new.to),
        },
        Some(o) => Hole { to: u64::MAX, ..o },
        None => new,
    }
}

/// One hole, described for a log line or a status.
pub fn describe_hole(origin: &str, h: &Hole) -> String {
    match h.to {
        u64::MAX => format!(
            "seqs from {} of epoch {} of {origin}, and of its later epoch",
            h.from, h.epoch
        ),
        to if to == h.from => format!("seq {to} of epoch {} of {origin}", h.epoch),
        to => format!("seqs {}–{to} of epoch {} of {origin}", h.from, h.epoch),
    }
}

/// All of `holes`, described (`None`: there are none).
pub fn describe_holes(holes: &BTreeMap<String, Hole>) -> Option<String> {
    let all: Vec<String> = (holes.iter())
        .map(|(origin, h)| describe_hole(origin, h))
        .collect();
    (!all.is_empty()).then(|| all.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64, seq: u64) -> Option<Position> {
        Some(Position { epoch, seq })
    }

    #[test]
    fn a_gap_makes_a_hole_of_what_lies_between_and_only_that() {
        assert_eq!(
            Hole::between(at(5, 99), 5, 127),
            Some(Hole {
                epoch: 5,
                from: 100,
                to: 126
            })
        );
        assert_eq!(Hole::between(at(5, 99), 5, 100), None, "the next one");
        assert_eq!(
            Hole::between(at(4, 99), 5, 3),
            Some(Hole {
                epoch: 5,
                from: 1,
                to: 2
            }),
            "a new epoch starts at 1"
        );
        assert_eq!(Hole::between(None, 5, 1), None);
    }

    #[test]
    fn deltas_arriving_in_order_fill_a_hole_and_others_leave_it() {
        let h = Hole {
            epoch: 5,
            from: 100,
            to: 101,
        };
        assert!(h.holds(5, 100) && h.holds(5, 101));
        assert!(!h.holds(5, 102) && !h.holds(6, 100));
        assert_eq!(h.filled_by(5, 101), Some(h), "not its start");
        assert_eq!(h.filled_by(6, 100), Some(h), "another epoch");
        let h = h.filled_by(5, 100).unwrap();
        assert_eq!(h.from, 101);
        assert_eq!(h.filled_by(5, 101), None, "filled");
    }

    #[test]
    fn only_the_origin_or_a_node_holding_the_whole_hole_covers_it() {
        let h = Hole {
            epoch: 5,
            from: 100,
            to: 126,
        };
        let pos = |epoch, seq| BTreeMap::from([("m".to_string(), Position { epoch, seq })]);
        assert!(h.covered_by("m", "m", &pos(5, 126)), "the origin");
        assert!(
            h.covered_by("m", "m", &pos(6, 3)),
            "the origin, in a later epoch"
        );
        // Found by a chaos round: the origin's manifest, delayed on a faulty link, arrived
        // after Deltas it did not hold went missing here; taking it as covering them left
        // this node without their changes for good.
        assert!(
            !h.covered_by("m", "m", &pos(5, 120)),
            "the origin, before the hole's end"
        );
        assert!(h.covered_by("m", "b", &pos(5, 126)));
        assert!(!h.covered_by("m", "b", &pos(5, 125)), "one short");
        assert!(!h.covered_by("m", "b", &pos(6, 500)), "another epoch");
        assert!(
            !h.covered_by("m", "b", &BTreeMap::new()),
            "a node that applies nobody's Deltas (a pure master)"
        );
        assert_eq!(h.covered(), Position { epoch: 5, seq: 99 });
    }

    #[test]
    fn widening_joins_the_same_epoch_and_keeps_the_older_otherwise() {
        let h = |epoch, from, to| Hole { epoch, from, to };
        assert_eq!(widen(None, h(5, 3, 4)), h(5, 3, 4));
        assert_eq!(widen(Some(h(5, 3, 4)), h(5, 10, 12)), h(5, 3, 12));
        let both = widen(Some(h(5, 3, 4)), h(6, 1, 2));
        assert_eq!((both.epoch, both.from), (5, 3));
        let pos = BTreeMap::from([(
            "m".to_string(),
            Position {
                epoch: 5,
                seq: 1 << 40,
            },
        )]);
        assert!(
            !both.covered_by("m", "b", &pos),
            "only the origin covers two epochs"
        );
        assert!(both.covered_by("m", "m", &BTreeMap::new()));
    }
}
