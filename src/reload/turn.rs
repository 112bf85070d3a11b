//! Taking turns to reload across the group: the reload task's side of [`super::lease`].
//!
//! A due reload first gets a turn ([`Turn::poll`]), then drains and reloads, then gives the turn
//! back ([`Turn::release`]). The claim travels in this node's retained status: the reload task
//! puts it in its [`ReloadStats`], which the status reporter publishes at once and refreshes
//! while it stands; the receive worker feeds every status that arrives, this node's own echo
//! included, into the shared [`Leases`]. While a node waits for its turn it keeps applying
//! Deltas (no lock is held), and the reload it then runs covers them all.
//!
//! Without a broker there are no turns to take: a node that cannot reach one, or whose claim
//! does not come back through it, reloads on its own after `reload_max_delay_ms` and says so.

use super::lease::{Claim, Queue, Step};
use super::stats::ReloadStats;
use crate::config::ReloadLimit;
use crate::logging::duration as human;
use log::{debug, info, warn};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// The group's reload queue as this node sees it, shared by the receive worker (which feeds
/// statuses in) and the reload task (which waits on it).
#[derive(Debug, Default)]
pub struct Leases {
    queue: Mutex<Queue>,
    changed: Notify,
}

impl Leases {
    /// A status arrived from `node` (this node's own too): `applies` from its role.
    pub fn seen(&self, node: &str, applies: bool, online: bool, claim: Option<Claim>) {
        let now = Instant::now();
        self.queue
            .lock()
            .unwrap()
            .seen(node, applies, online, claim, now);
        self.changed.notify_one();
    }
}

/// How turns are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnSettings {
    /// `max_concurrent_reloads`.
    pub limit: ReloadLimit,
    /// `reload_lease_timeout_ms`: a claim not refreshed this long holds nothing.
    pub timeout: Duration,
    /// `reload_max_delay_ms`: without a broker (or an echo of this node's claim) this long,
    /// reload without a turn.
    pub alone_after: Duration,
}

impl Default for TurnSettings {
    fn default() -> Self {
        TurnSettings {
            limit: ReloadLimit::Unlimited,
            timeout: Duration::from_secs(30),
            alone_after: Duration::from_secs(10),
        }
    }
}

/// This node's place in the queue.
#[derive(Debug)]
enum Place {
    Idle,
    Queued(Queued),
    /// May reload; `alone`: without a turn (no broker).
    Granted,
}

#[derive(Debug)]
struct Queued {
    mine: Claim,
    since: Instant,
    claimed_at: Option<Instant>,
    offline_since: Option<Instant>,
    /// "waits for its turn" was logged.
    told: bool,
}

/// The reload task's turn.
pub struct Turn {
    me: String,
    leases: Arc<Leases>,
    settings: TurnSettings,
    connected: Box<dyn Fn() -> bool + Send + Sync>,
    place: Place,
    /// The last ticket used; starts at the wall clock so that a restarted node's claims are new.
    ticket: u64,
}

impl Turn {
    pub fn new(
        me: &str,
        leases: Arc<Leases>,
        settings: TurnSettings,
        connected: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Turn {
        Turn {
            me: me.to_string(),
            leases,
            settings,
            connected: Box::new(connected),
            place: Place::Idle,
            ticket: crate::clock::now_ms(),
        }
    }

    /// Without a group to take turns with: every reload may start at once.
    pub fn unlimited() -> Turn {
        Turn::new("", Arc::default(), TurnSettings::default(), || false)
    }

    /// Resolves when the queue may have moved (a status arrived).
    pub async fn changed(&self) {
        self.leases.changed.notified().await;
    }

    /// Waiting for a turn (the task should come back on [`Turn::changed`] or in a moment).
    pub fn waiting(&self) -> bool {
        matches!(self.place, Place::Queued(_))
    }

    fn next_ticket(&mut self) -> u64 {
        self.ticket += 1;
        self.ticket
    }

    /// Move on in the queue; true once this node may reload. Publishes the claim through
    /// `stats` whenever it changes.
    pub fn poll(&mut self, now: Instant, stats: &watch::Sender<ReloadStats>) -> bool {
        let (limit, holders) = {
            let q = self.leases.queue.lock().unwrap();
            let limit = self.settings.limit.of(q.applying(&self.me));
            (limit, q.holders(&self.me, self.settings.timeout, now))
        };
        let Some(limit) = limit else {
            return true;
        };
        if matches!(self.place, Place::Granted) {
            return true;
        }
        if matches!(self.place, Place::Idle) {
            self.enqueue(now);
        }
        let alone_after = self.settings.alone_after;
        let Place::Queued(q) = &mut self.place else {
            unreachable!("queued above");
        };
        if !(self.connected)() {
            let off = *q.offline_since.get_or_insert(now);
            if now - off < alone_after {
                return false;
            }
            warn!(
                "no broker to take reload turns through for {}: reloading without a turn",
                human(now - off)
            );
            return self.grant(now, stats);
        }
        q.offline_since = None;
        let mine = q.mine;
        let step = (self.leases.queue.lock().unwrap()).step(
            &self.me,
            mine,
            limit,
            self.settings.timeout,
            now,
        );
        self.take(step, limit, &holders, now, stats)
    }

    /// Wait for a turn from `now` on, as the longest waiter would be asked to.
    fn enqueue(&mut self, now: Instant) {
        let ticket = self.next_ticket();
        self.place = Place::Queued(Queued {
            mine: Claim {
                holding: false,
                since_unix_ms: crate::clock::now_ms(),
                ticket,
            },
            since: now,
            claimed_at: None,
            offline_since: None,
            told: false,
        });
    }

    /// Act on what the queue says (`holders`: the others holding a turn, for the log).
    fn take(
        &mut self,
        step: Step,
        limit: usize,
        holders: &[String],
        now: Instant,
        stats: &watch::Sender<ReloadStats>,
    ) -> bool {
        let alone_after = self.settings.alone_after;
        let ticket = self.ticket + 1;
        let Place::Queued(q) = &mut self.place else {
            unreachable!("only a queued node takes steps");
        };
        match step {
            Step::Claim | Step::Withdraw => {
                if step == Step::Withdraw {
                    debug!(
                        "reload turn taken by earlier claims ({}); waiting again",
                        holders.join(", ")
                    );
                }
                // A new claim (holding) or a withdrawal (waiting again, keeping its place).
                let holding = step == Step::Claim;
                self.ticket = ticket;
                q.mine = Claim {
                    holding,
                    ticket,
                    ..q.mine
                };
                q.claimed_at = holding.then_some(now);
                publish(stats, Some(q.mine));
                false
            }
            Step::Wait if q.claimed_at.is_some_and(|at| now - at >= alone_after) => {
                warn!(
                    "this node's reload turn did not come back through the broker within {}: reloading without a turn",
                    human(alone_after)
                );
                self.grant(now, stats)
            }
            Step::Wait => {
                if !q.mine.holding && !q.told {
                    q.told = true;
                    info!(
                        "reload waits for its turn: at most {limit} at once, reloading now: {}",
                        if holders.is_empty() {
                            "none (others wait longer)".to_string()
                        } else {
                            holders.join(", ")
                        }
                    );
                }
                if !q.mine.holding && stats.borrow().lease != Some(q.mine) {
                    publish(stats, Some(q.mine));
                }
                false
            }
            Step::Granted => self.grant(now, stats),
        }
    }

    fn grant(&mut self, now: Instant, stats: &watch::Sender<ReloadStats>) -> bool {
        if let Place::Queued(q) = &self.place {
            let waited = now - q.since;
            if q.told {
                info!("reload turn granted after waiting {}", human(waited));
            }
            crate::telemetry::record_turn_wait(waited);
            let ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
            stats.send_modify(|s| s.waiting_ms += ms);
        }
        self.place = Place::Granted;
        true
    }

    /// The reload finished (or will not start after all): give the turn back.
    pub fn release(&mut self, stats: &watch::Sender<ReloadStats>) {
        if !matches!(self.place, Place::Idle) {
            self.place = Place::Idle;
            publish(stats, None);
        }
    }
}

fn publish(stats: &watch::Sender<ReloadStats>, claim: Option<Claim>) {
    crate::telemetry::record_turn(match claim {
        None => 0,
        Some(c) if !c.holding => 1,
        Some(_) => 2,
    });
    stats.send_if_modified(|s| {
        let changed = s.lease != claim;
        s.lease = claim;
        changed
    });
}
