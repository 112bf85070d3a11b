//! The receive path: every message this node gets from the broker, from any origin, goes
//! through one worker, strictly in arrival order.
//!
//! - [`route`]: a payload becomes a whole message — decoded, authenticated, its sender checked,
//!   its parts assembled — or a refusal;
//! - [`group`]: complete Deltas are gathered and applied together (`slave::apply_deltas`);
//! - [`acks`]: acknowledgements leave in arrival order, each only once its message is finished
//!   and only on the connection it came from;
//! - [`stall`]: an origin that announced more than this node applied, with no progress, means
//!   lost Deltas and a resync.
//!
//! Resync asks go to the responder, resync answers to the asker (`resync`); a pure master only
//! watches the other masters' Deltas for the conflicts it loses (`master::conflicts`).

pub mod acks;
pub mod group;
pub mod route;
pub mod stall;

use crate::config::Role;
use crate::context::Shared;
use crate::delta::{Assembler, DeltaId};
use crate::master::conflicts::{self, Watched};
use crate::mqtt::connection::{Inbound, Link};
use crate::mqtt::{Message, Topic};
use crate::reload::ReloadHandle;
use crate::resync::asker::{Ctx, Resync};
use crate::resync::responder::Asked;
use acks::AckQueue;
use group::{flush, Flush, Group, Stopping, GROUP_WAIT, GROUP_WAIT_FROM};
use route::Whole;
use route::{reject, Received};
use stall::Stalls;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// A chunked Delta whose parts stop arriving is dropped after this long, and resynced.
const PART_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the worker looks at what time alone changes: expired parts, stalls, drift, the
/// resync round's timeouts.
const TICK: Duration = Duration::from_millis(250);

/// Everything the worker talks to.
pub struct Worker {
    pub shared: Arc<Shared>,
    pub role: Role,
    pub link: watch::Receiver<Link>,
    /// Told after a Delta or a resync round wrote files (a handle whose task is gone on a node
    /// that applies nothing).
    pub reload: ReloadHandle,
    /// Asks for the responder (publishing nodes only).
    pub asks: Option<mpsc::Sender<Asked>>,
}

/// What the worker holds while it runs.
struct Receiving {
    acks: AckQueue<Message>,
    deltas: Assembler,
    syncs: Assembler,
    /// The connection the messages in `acks` came from.
    gen: u64,
    resync: Resync,
    group: Group,
    stalls: Stalls,
    watched: Watched,
    /// When a large group waiting for its next Delta is applied anyway ([`GROUP_WAIT`]).
    apply_by: Option<tokio::time::Instant>,
    shutdown: watch::Receiver<bool>,
}

/// What woke the worker.
enum Event {
    Message(Inbound),
    GroupDue,
    Tick,
    Link,
}

impl Worker {
    /// Run until shutdown (or until the connection task is gone).
    pub async fn run(self, mut inbound: mpsc::Receiver<Inbound>, shutdown: watch::Receiver<bool>) {
        let mut r = Receiving {
            acks: AckQueue::default(),
            deltas: Assembler::default(),
            syncs: Assembler::default(),
            gen: 0,
            resync: Resync::default(),
            group: Group::default(),
            stalls: Stalls::default(),
            watched: Watched::default(),
            apply_by: None,
            shutdown,
        };
        let ctx = self.resync_ctx();
        if self.role.applies() {
            let state = self.shared.lock_state();
            if !state.synced {
                (r.resync).request("this node has not completed a resync yet (bootstrap)");
            } else if let Some(lacking) = crate::state::holes::describe_holes(&state.holes) {
                (r.resync).request(&format!(
                    "deltas skipped before this node stopped are still missing ({lacking})"
                ));
            }
        }
        let mut tick = tokio::time::interval(TICK);
        let mut link = self.link.clone();
        let mut shutdown = r.shutdown.clone();
        loop {
            if r.group.deltas.is_empty() {
                r.apply_by = None;
            }
            let due = r.apply_by;
            let event = tokio::select! {
                m = inbound.recv() => match m { Some(m) => Event::Message(m), None => break },
                () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => Event::GroupDue,
                _ = tick.tick() => Event::Tick,
                changed = link.changed() => match changed { Ok(()) => Event::Link, Err(_) => break },
                _ = shutdown.changed() => break,
            };
            let handled = match event {
                Event::Message(m) => self.on_message(&mut r, m, &inbound).await,
                Event::GroupDue => {
                    r.apply_by = None;
                    self.flush(&mut r).await
                }
                Event::Tick => self.on_tick(&mut r, &ctx).await,
                Event::Link => self.on_link(&mut r, &ctx, &mut link).await,
            };
            if handled.is_err() {
                break;
            }
            self.ack_ready(&mut r).await;
            // Reloads wait while a backlog drains (a slave catching up after an outage); a
            // group waiting for its next Delta counts: it is received and not applied.
            (self.shared.backlog).store(inbound.len() + r.group.deltas.len(), Ordering::Relaxed);
        }
    }

    fn resync_ctx(&self) -> Ctx {
        let reload = self.reload.clone();
        Ctx {
            shared: self.shared.clone(),
            link: self.link.clone(),
            notify: Box::new(move || reload.notify()),
            forget_unknown: self.role == Role::Slave,
        }
    }

    /// Apply the gathered Deltas (see [`group::flush`]).
    async fn flush(&self, r: &mut Receiving) -> Result<(), Stopping> {
        let f = Flush {
            shared: &self.shared,
            acks: &mut r.acks,
            resync: &mut r.resync,
            shutdown: &mut r.shutdown,
            reload: &self.reload,
        };
        flush(&mut r.group, f).await
    }

    /// Time passed: apply what waits, drop Deltas whose parts stopped arriving, look for
    /// stalls and drift, and let the resync round ask or time out.
    async fn on_tick(&self, r: &mut Receiving, ctx: &Ctx) -> Result<(), Stopping> {
        self.flush(r).await?;
        for id in r.deltas.expire(PART_TIMEOUT) {
            log::warn!(
                "delta {}/{}/{}: parts stopped arriving; dropped",
                id.origin,
                id.epoch,
                id.seq
            );
            r.acks.release(&id);
            (r.resync).request(&format!(
                "the parts of delta {}/{} from {} stopped arriving",
                id.epoch, id.seq, id.origin
            ));
        }
        r.syncs.expire(crate::resync::asker::ANSWER_TIMEOUT);
        if self.role.applies() {
            if self.shared.drift.swap(false, Ordering::SeqCst) {
                (r.resync).request("local edits on this read-only slave (drift) are reverted");
            }
            self.check_stalls(r).await;
            r.resync.tick(ctx).await;
        }
        Ok(())
    }

    /// Compare announced positions with what was applied; a stall behind one means lost
    /// Deltas: a hole, which a resync must cover.
    async fn check_stalls(&self, r: &mut Receiving) {
        let check = {
            let state = self.shared.lock_state();
            r.stalls.check(&state.applied, Instant::now())
        };
        for (origin, lag) in &check.lag {
            crate::telemetry::record_lag(origin, *lag);
        }
        if check.stalled.is_empty() {
            return;
        }
        let found: Vec<_> = (check.stalled.iter())
            .map(|(origin, hole, _)| (origin.clone(), *hole))
            .collect();
        let sh = self.shared.clone();
        let recorded = tokio::task::spawn_blocking(move || {
            crate::slave::record_holes(&mut sh.state.lock().unwrap(), &found)
        })
        .await;
        if let Ok(Err(e)) | Err(e) = recorded.map_err(std::io::Error::other) {
            // The resync below runs anyway; only a restart before it ends would forget.
            log::error!("cannot record the deltas a stall showed missing: {e}");
        }
        for (_, _, why) in &check.stalled {
            r.resync.request(why);
        }
    }

    /// A connection came up or went down.
    async fn on_link(
        &self,
        r: &mut Receiving,
        ctx: &Ctx,
        link: &mut watch::Receiver<Link>,
    ) -> Result<(), Stopping> {
        self.flush(r).await?;
        let l = link.borrow_and_update().clone();
        if self.role.applies() && l.client.is_some() {
            if !l.session_present {
                (r.resync).session_lost(
                    "the broker had no session for this node (deltas may have been dropped)",
                );
            }
            // Ask right away rather than at the next tick: a bootstrap waits for it.
            r.resync.tick(ctx).await;
        }
        Ok(())
    }

    /// One received message: route it by topic, queue it for its ack, and apply what was
    /// gathered once nothing more waits (or the group is full). A single change is applied at
    /// once, a backlog in groups; a large group whose next Delta is arriving waits a moment.
    async fn on_message(
        &self,
        r: &mut Receiving,
        msg: Inbound,
        inbound: &mpsc::Receiver<Inbound>,
    ) -> Result<(), Stopping> {
        crate::memory::worked();
        if msg.gen != r.gen {
            // A new connection: whatever was unacknowledged on the old one comes again.
            self.flush(r).await?;
            r.acks.clear();
            r.deltas = Assembler::default();
            r.gen = msg.gen;
        }
        let topics = &self.shared.topics;
        let is_delta = matches!(topics.classify(msg.message.topic()), Topic::Delta(_));
        if !is_delta {
            self.flush(r).await?;
        }
        let waiting_for = self.route(r, &msg.message).await;
        r.acks.push(msg.gen, msg.message, waiting_for);
        let next_arriving = r.deltas.receiving() && r.group.bytes >= GROUP_WAIT_FROM;
        if inbound.is_empty() && next_arriving && !r.group.full() {
            (r.apply_by).get_or_insert_with(|| tokio::time::Instant::now() + GROUP_WAIT);
        } else if inbound.is_empty() || r.group.full() {
            self.flush(r).await?;
        }
        Ok(())
    }

    /// Hand a message to what its topic is for; returns the Delta whose completion its ack
    /// waits for, if any.
    async fn route(&self, r: &mut Receiving, m: &Message) -> Option<DeltaId> {
        let sh = &self.shared;
        let (me, applies) = (sh.node_id.as_str(), self.role.applies());
        match sh.topics.classify(m.topic()) {
            Topic::Delta(origin) if origin == me => None, // our own, echoed
            Topic::Delta(origin) => self.on_delta(r, origin, m.payload()),
            Topic::Ask(asker) if asker != me => {
                self.on_ask(r, asker, m.payload());
                None
            }
            Topic::Answer(to) if to == me && applies => {
                let from = route::claimed_origin(&sh.group, &sh.auth, m.payload());
                match route::whole(&mut r.syncs, &sh.group, &sh.auth, &from, m.payload()) {
                    Ok(Whole::Complete(header, body)) => {
                        r.resync.on_answer(&self.resync_ctx(), header, body).await
                    }
                    // On a slow link an answer takes its time: arriving is an answer.
                    Ok(Whole::Partial { epoch, seq }) => r.resync.arriving(epoch, seq),
                    Err(why) => reject(sh, &from, &why.to_string()),
                }
                None
            }
            Topic::Status(node) if node != me => {
                self.on_status(r, node, m.payload()).await;
                None
            }
            // Our own, echoed: where this node's reload claim stands in the broker's order.
            Topic::Status(node) if applies => {
                if let Ok(s) = route::status(&sh.group, &sh.auth, node, m.payload()) {
                    sh.leases.seen(node, true, s.online, s.lease);
                }
                None
            }
            _ => {
                log::debug!("ignoring message on {}", m.topic());
                None
            }
        }
    }

    /// A message of another origin's Delta. A node that applies gathers the whole Delta into
    /// the group (acknowledged once applied); a pure master only watches it for the conflicts
    /// it loses.
    fn on_delta(&self, r: &mut Receiving, origin: &str, payload: &[u8]) -> Option<DeltaId> {
        let (sh, applies) = (&self.shared, self.role.applies());
        if applies {
            crate::telemetry::record_received_bytes(payload.len());
        }
        match route::delta(&mut r.deltas, &sh.group, &sh.auth, origin, payload) {
            Received::Incomplete(id) => Some(id),
            Received::Ready(id, delta) if applies => {
                r.group.push(delta);
                Some(id)
            }
            Received::Ready(id, delta) => {
                conflicts::report_lost(sh, &delta);
                r.acks.release(&id);
                None
            }
            Received::Unreadable(id, why) => {
                reject(sh, origin, &format!("delta {}/{}: {why}", id.epoch, id.seq));
                if applies {
                    (r.resync).request(&format!("a gap in the deltas from {}", id.origin));
                }
                r.acks.release(&id);
                None
            }
            Received::Bad(why) => {
                reject(sh, origin, &why.to_string());
                None
            }
        }
    }

    /// A resync ask, for the responder of a publishing node.
    fn on_ask(&self, r: &mut Receiving, asker: &str, payload: &[u8]) {
        let sh = &self.shared;
        let Some(asks) = &self.asks else {
            return;
        };
        let (header, body) = match route::whole(&mut r.syncs, &sh.group, &sh.auth, asker, payload) {
            Ok(Whole::Complete(header, body)) => (header, body),
            Ok(Whole::Partial { .. }) => return,
            Err(why) => return reject(sh, asker, &why.to_string()),
        };
        match crate::resync::decode_ask(&body) {
            Ok(ask) => {
                let _ = asks.try_send(Asked {
                    asker: asker.to_string(),
                    id: header.epoch,
                    batch: header.seq,
                    ask,
                });
            }
            Err(e) => reject(sh, asker, &e.to_string()),
        }
    }

    /// Another node's status: on an applying node, the position its stream reached; on a pure
    /// master, a publisher to watch.
    async fn on_status(&self, r: &mut Receiving, node: &str, payload: &[u8]) {
        let sh = &self.shared;
        let applies = self.role.applies();
        if payload.is_empty() {
            // Its retained status cleared (docs/monitoring.md): the node left the group for
            // good. Nothing to refuse.
            sh.statuses.lock().unwrap().remove(node);
            return;
        }
        let status = route::status(&sh.group, &sh.auth, node, payload);
        if let Ok(s) = &status {
            sh.clock.lock().unwrap().observe(s.hlc);
            sh.statuses
                .lock()
                .unwrap()
                .insert(node.to_string(), s.clone());
        }
        match status {
            Ok(s) if applies => {
                let peer_applies = s.role != Role::Master.as_str();
                sh.leases.seen(&s.node, peer_applies, s.online, s.lease);
                let ctx = self.resync_ctx();
                if !s.online {
                    r.resync.gone(&ctx, &s.node);
                }
                let publishes = s.role != Role::Slave.as_str();
                let made = s.at_unix_ms;
                r.resync
                    .peer(&ctx, &s.node, publishes, s.online, made)
                    .await;
                if s.published > 0 {
                    r.stalls
                        .announce(&s.node, s.epoch, s.published, Instant::now());
                }
            }
            Ok(s) => {
                let link = self.link.borrow().clone();
                conflicts::watch_publisher(sh, &link, &mut r.watched, &s).await;
            }
            Err(why) => reject(sh, node, &why.to_string()),
        }
    }

    /// Acknowledge from the front of the queue while messages are finished, on their own
    /// connection only.
    async fn ack_ready(&self, r: &mut Receiving) {
        for (gen, message) in r.acks.take_ready() {
            let client = {
                let l = self.link.borrow();
                (l.gen == gen).then(|| l.client.clone()).flatten()
            };
            match client {
                Some(c) => {
                    if let Err(e) = c.ack(&message).await {
                        log::debug!("ack not sent: {e}");
                    }
                }
                None => log::debug!("ack dropped: its connection is gone; the broker redelivers"),
            }
        }
    }
}
