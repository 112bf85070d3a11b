//! Rolling reloads: the queue of a group's reload turns, as one node sees it. Pure: fed the
//! statuses that arrive (`Queue::seen`) and asked what to do next (`Queue::step`).
//!
//! Every applying node carries its place in the queue in its retained status ([`Claim`]):
//! waiting since when, or holding a turn. A node whose reload is due claims a turn when fewer
//! than the limit hold one and no node that waits longer is owed it first; but two nodes may
//! claim at the same moment, each before it saw the other. So a claim counts only once it has
//! come back through the broker: every node subscribes to all statuses with one filter, which a
//! broker delivers to every subscriber in one order, so the claims that arrived before a node's
//! own are the same on every node. The first `limit` claims in that order hold their turns; a
//! later one withdraws and waits again, keeping its place.
//!
//! A claim lasts while its node refreshes it: a node that is gone (its last will says offline)
//! or silent for the lease timeout holds nothing. Nothing here sleeps or sends: the reload
//! task (`reload::turn`) publishes its claim and wakes on every status.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A node's place in its group's reload queue, as its status says it (DOCS: docs/reload.md,
/// docs/wire-format.md "Status").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Holding (or claiming) a turn; otherwise waiting for one.
    pub holding: bool,
    /// When the node began to wait for this reload (its wall clock): the queue's order.
    pub since_unix_ms: u64,
    /// New for every claim, so a renewed claim is told apart from a refreshed one.
    pub ticket: u64,
}

/// What the node should do about its turn now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Claim a turn (publish a holding claim).
    Claim,
    /// Keep waiting: for a turn, or for the claim to come back through the broker.
    Wait,
    /// The claim came back among the first `limit`: reload now.
    Granted,
    /// The claim came back behind `limit` others: wait again.
    Withdraw,
}

#[derive(Debug, Clone)]
struct Peer {
    applies: bool,
    online: bool,
    claim: Option<Claim>,
    /// When its current holding claim arrived, in arrival order.
    arrival: u64,
    seen: Instant,
}

/// The statuses of a group's nodes as far as reload turns go, this node's own included.
#[derive(Debug, Default)]
pub struct Queue {
    peers: BTreeMap<String, Peer>,
    arrivals: u64,
}

impl Queue {
    /// A status of `node` arrived (this node's own, echoed by the broker, too).
    pub fn seen(
        &mut self,
        node: &str,
        applies: bool,
        online: bool,
        claim: Option<Claim>,
        now: Instant,
    ) {
        self.arrivals += 1;
        let claim = claim.filter(|_| online);
        let key = |c: Option<Claim>| c.filter(|c| c.holding).map(|c| c.ticket);
        let peer = self.peers.entry(node.to_string()).or_insert(Peer {
            applies,
            online,
            claim: None,
            arrival: 0,
            seen: now,
        });
        if key(claim).is_some() && key(claim) != key(peer.claim) {
            peer.arrival = self.arrivals;
        }
        *peer = Peer {
            applies,
            online,
            claim,
            seen: now,
            ..*peer
        };
    }

    /// Applying nodes of the group that are online, this one included: what a percentage of
    /// `max_concurrent_reloads` is taken of.
    pub fn applying(&self, me: &str) -> usize {
        let others = (self.peers.iter())
            .filter(|(n, p)| n.as_str() != me && p.applies && p.online)
            .count();
        others + 1
    }

    /// The other nodes' claims that still count: refreshed within `timeout`.
    fn live<'a>(
        &'a self,
        me: &'a str,
        timeout: Duration,
        now: Instant,
    ) -> impl Iterator<Item = (&'a str, &'a Peer, Claim)> + 'a {
        (self.peers.iter())
            .filter(move |(n, p)| {
                n.as_str() != me && now.saturating_duration_since(p.seen) < timeout
            })
            .filter_map(|(n, p)| p.claim.map(|c| (n.as_str(), p, c)))
    }

    /// What `me`, whose own claim is `mine`, should do with at most `limit` turns at once.
    pub fn step(
        &self,
        me: &str,
        mine: Claim,
        limit: usize,
        timeout: Duration,
        now: Instant,
    ) -> Step {
        if !mine.holding {
            let holding = self
                .live(me, timeout, now)
                .filter(|(_, _, c)| c.holding)
                .count();
            let ahead = (self.live(me, timeout, now))
                .filter(|(n, _, c)| !c.holding && (c.since_unix_ms, *n) < (mine.since_unix_ms, me))
                .count();
            return if holding + ahead < limit {
                Step::Claim
            } else {
                Step::Wait
            };
        }
        let Some(echo) = self.peers.get(me).filter(|p| p.claim == Some(mine)) else {
            return Step::Wait;
        };
        let before = (self.live(me, timeout, now))
            .filter(|(_, p, c)| c.holding && p.arrival < echo.arrival)
            .count();
        if before < limit {
            Step::Granted
        } else {
            Step::Withdraw
        }
    }

    /// The other nodes holding a turn now, oldest claim first (for logs and the status).
    pub fn holders(&self, me: &str, timeout: Duration, now: Instant) -> Vec<String> {
        let mut h: Vec<(u64, &str)> = (self.live(me, timeout, now))
            .filter(|(_, _, c)| c.holding)
            .map(|(n, p, _)| (p.arrival, n))
            .collect();
        h.sort();
        h.into_iter().map(|(_, n)| n.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    fn waiting(since: u64, ticket: u64) -> Claim {
        Claim {
            holding: false,
            since_unix_ms: since,
            ticket,
        }
    }

    fn holding(since: u64, ticket: u64) -> Claim {
        Claim {
            holding: true,
            ..waiting(since, ticket)
        }
    }

    /// Four applying nodes, all online and idle.
    fn group(now: Instant) -> Queue {
        let mut q = Queue::default();
        for n in ["a", "b", "c", "d"] {
            q.seen(n, true, true, None, now);
        }
        q
    }

    #[test]
    fn a_lone_due_node_claims_and_is_granted_once_its_claim_comes_back() {
        let now = Instant::now();
        let mut q = group(now);
        assert_eq!(q.step("a", waiting(10, 1), 1, T, now), Step::Claim);
        let mine = holding(10, 2);
        assert_eq!(q.step("a", mine, 1, T, now), Step::Wait, "not echoed yet");
        q.seen("a", true, true, Some(mine), now);
        assert_eq!(q.step("a", mine, 1, T, now), Step::Granted);
        assert_eq!(q.holders("b", T, now), ["a"]);
        assert!(q.holders("a", T, now).is_empty(), "only others are listed");
    }

    #[test]
    fn of_simultaneous_claims_the_first_limit_in_broker_order_win_on_every_node() {
        let now = Instant::now();
        // Every node sees the same order: b, d, a, c (not the order of their times).
        let order = ["b", "d", "a", "c"];
        let claims = [
            ("b", holding(40, 1)),
            ("d", holding(10, 1)),
            ("a", holding(20, 1)),
            ("c", holding(30, 1)),
        ];
        for limit in 1..=4 {
            let mut granted = Vec::new();
            for (me, mine) in claims {
                let mut q = group(now);
                for (n, c) in claims {
                    q.seen(n, true, true, Some(c), now);
                }
                match q.step(me, mine, limit, T, now) {
                    Step::Granted => granted.push(me),
                    Step::Withdraw => {}
                    other => panic!("{me}: {other:?}"),
                }
            }
            assert_eq!(granted, order[..limit], "limit {limit}");
        }
    }

    #[test]
    fn a_waiting_node_lets_longer_waiters_go_first() {
        let now = Instant::now();
        let mut q = group(now);
        q.seen("b", true, true, Some(waiting(5, 1)), now);
        assert_eq!(q.step("a", waiting(10, 1), 1, T, now), Step::Wait);
        assert_eq!(q.step("a", waiting(10, 1), 2, T, now), Step::Claim);
        // Equal times: the node names break the tie, the same way on every node.
        assert_eq!(q.step("a", waiting(5, 1), 1, T, now), Step::Claim);
        assert_eq!(q.step("c", waiting(5, 1), 1, T, now), Step::Wait);
    }

    #[test]
    fn holders_block_until_they_release_go_offline_or_fall_silent() {
        let t0 = Instant::now();
        let mut q = group(t0);
        q.seen("b", true, true, Some(holding(1, 1)), t0);
        let me = waiting(10, 1);
        assert_eq!(q.step("a", me, 1, T, t0), Step::Wait);
        assert_eq!(q.step("a", me, 2, T, t0), Step::Claim);
        // Released.
        q.seen("b", true, true, None, t0);
        assert_eq!(q.step("a", me, 1, T, t0), Step::Claim);
        // Gone: its last will says offline (and carries no claim, but offline alone is enough).
        q.seen("b", true, false, Some(holding(1, 2)), t0);
        assert_eq!(q.step("a", me, 1, T, t0), Step::Claim);
        // Silent past the timeout.
        q.seen("b", true, true, Some(holding(1, 3)), t0);
        assert_eq!(q.step("a", me, 1, T, t0 + T / 2), Step::Wait);
        assert_eq!(q.step("a", me, 1, T, t0 + T), Step::Claim);
    }

    #[test]
    fn a_refreshed_claim_keeps_its_place_and_a_renewed_one_goes_to_the_back() {
        let now = Instant::now();
        let mut q = group(now);
        q.seen("b", true, true, Some(holding(1, 1)), now);
        let mine = holding(2, 1);
        q.seen("a", true, true, Some(mine), now);
        // b refreshes the same claim: still ahead of a.
        q.seen("b", true, true, Some(holding(1, 1)), now);
        assert_eq!(q.step("a", mine, 1, T, now), Step::Withdraw);
        // b withdraws and claims anew: now behind a.
        q.seen("b", true, true, Some(waiting(1, 2)), now);
        q.seen("b", true, true, Some(holding(1, 3)), now);
        assert_eq!(q.step("a", mine, 1, T, now), Step::Granted);
    }

    #[test]
    fn the_group_size_counts_online_applying_nodes_and_this_one() {
        let now = Instant::now();
        let mut q = Queue::default();
        assert_eq!(q.applying("a"), 1);
        q.seen("a", true, true, None, now);
        q.seen("b", true, true, None, now);
        q.seen("m", false, true, None, now);
        q.seen("c", true, false, None, now);
        assert_eq!(q.applying("a"), 2);
        assert_eq!(q.applying("x"), 3);
    }
}
