//! The one worker that handles every received message, strictly in arrival order.
//!
//! Deltas go to the slave side, resync asks to the responder, resync answers to the asker.
//! Acknowledgements leave in arrival order too, each only once its message is finished and only
//! on the connection it came from: rumqttd disconnects a client that acks out of order and loses
//! the head message when it does (mqtt-measured.md §5). A chunked Delta's parts stay
//! unacknowledged until the whole Delta is applied, so a crash in between has the broker send
//! every part again.

use crate::config::Role;
use crate::context::Shared;
use crate::delta::Delta;
use crate::delta::{self, Assembled, Assembler, DeltaId};
use crate::mqtt::connection::{Inbound, Link};
use crate::mqtt::Topic;
use crate::resync;
use crate::resync::asker::{Ctx, Resync};
use crate::resync::responder::Asked;
use crate::state::Position;
use crate::status::Status;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// A chunked Delta whose parts stop arriving is dropped after this long, and resynced.
const PART_TIMEOUT: Duration = Duration::from_secs(120);
/// An origin announced a position beyond what this node applied, and no progress was made for
/// this long: the broker dropped Deltas without leaving a gap (a queue limit), so resync.
const STALL: Duration = Duration::from_secs(3);

/// An origin's announced stream position, and since when this node has made no progress
/// towards it.
struct Announced {
    epoch: u64,
    published: u64,
    applied: Option<Position>,
    since: Instant,
}

struct Held {
    gen: u64,
    publish: rumqttc::Publish,
    /// The Delta this message is a part of, while it is incomplete.
    waiting_for: Option<DeltaId>,
}

mod conflicts;
mod group;
use conflicts::Watched;
use group::{Group, GROUP_WAIT, GROUP_WAIT_FROM};

/// Everything the worker talks to.
pub struct Worker {
    pub shared: Arc<Shared>,
    pub role: Role,
    pub link: watch::Receiver<Link>,
    /// Called after a Delta or a resync round wrote files.
    pub notify: Arc<dyn Fn() + Send + Sync>,
    /// Asks for the responder (publishing nodes only).
    pub asks: Option<mpsc::Sender<Asked>>,
}

impl Worker {
    /// Run until shutdown.
    pub async fn run(
        self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut held: VecDeque<Held> = VecDeque::new();
        let mut deltas = Assembler::default();
        let mut syncs = Assembler::default();
        let mut gen = 0u64;
        let mut link = self.link.clone();
        let notify = self.notify.clone();
        let ctx = Ctx {
            shared: self.shared.clone(),
            link: self.link.clone(),
            notify: Box::new(move || notify()),
            forget_unknown: self.role == Role::Slave,
        };
        let mut resync = Resync::default();
        let mut group = Group::default();
        let mut announced: HashMap<String, Announced> = HashMap::new();
        // Pure master: the origins whose Deltas it subscribed to, on connection `.0`.
        let mut watched = Watched::default();
        if self.role.applies() && !self.shared.state.lock().unwrap().synced {
            resync.request("this node has not completed a resync yet (bootstrap)");
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        // When a large group waiting for its next Delta is applied anyway (GROUP_WAIT).
        let mut apply_by: Option<tokio::time::Instant> = None;
        loop {
            if group.deltas.is_empty() {
                apply_by = None;
            }
            let msg = tokio::select! {
                m = inbound.recv() => match m { Some(m) => m, None => break },
                () = tokio::time::sleep_until(apply_by.unwrap_or_else(tokio::time::Instant::now)), if apply_by.is_some() => {
                    apply_by = None;
                    if self.flush(&mut group, &mut held, &mut resync, &mut shutdown).await.is_err() {
                        break;
                    }
                    ack_ready(&mut held, &self.link).await;
                    self.shared.backlog.store(inbound.len(), Ordering::Relaxed);
                    continue;
                }
                _ = tick.tick() => {
                    if self.flush(&mut group, &mut held, &mut resync, &mut shutdown).await.is_err() {
                        break;
                    }
                    self.shared.backlog.store(inbound.len(), Ordering::Relaxed);
                    for (origin, epoch, seq) in deltas.expire(PART_TIMEOUT) {
                        log::warn!("delta {origin}/{epoch}/{seq}: parts stopped arriving; dropped");
                        release(&mut held, &(origin.clone(), epoch, seq));
                        resync.request(&format!("the parts of delta {epoch}/{seq} from {origin} stopped arriving"));
                    }
                    syncs.expire(resync::asker::ANSWER_TIMEOUT);
                    if self.role.applies() {
                        if self.shared.drift.swap(false, Ordering::SeqCst) {
                            resync.request("local edits on this read-only slave (drift) are reverted");
                        }
                        self.check_announced(&mut announced, &mut resync);
                        resync.tick(&ctx).await;
                    }
                    ack_ready(&mut held, &self.link).await;
                    continue;
                }
                changed = link.changed() => {
                    if changed.is_err() { break; }
                    if self.flush(&mut group, &mut held, &mut resync, &mut shutdown).await.is_err() {
                        break;
                    }
                    self.shared.backlog.store(inbound.len(), Ordering::Relaxed);
                    let l = link.borrow_and_update().clone();
                    if self.role.applies() && l.client.is_some() {
                        if !l.session_present {
                            resync.request("the broker had no session for this node (deltas may have been dropped)");
                        }
                        // Ask right away rather than at the next tick: a bootstrap waits for it.
                        resync.tick(&ctx).await;
                    }
                    continue;
                }
                _ = shutdown.changed() => break,
            };
            crate::memory::worked();
            if msg.gen != gen {
                // A new connection: whatever was unacknowledged on the old one comes again.
                if self
                    .flush(&mut group, &mut held, &mut resync, &mut shutdown)
                    .await
                    .is_err()
                {
                    break;
                }
                held.clear();
                deltas = Assembler::default();
                gen = msg.gen;
            }
            let mut h = Held {
                gen: msg.gen,
                publish: msg.publish,
                waiting_for: None,
            };
            let topic = h.publish.topic.clone();
            let class = self.shared.topics.classify(&topic);
            let is_delta = matches!(class, Topic::Delta(_));
            if !is_delta
                && self
                    .flush(&mut group, &mut held, &mut resync, &mut shutdown)
                    .await
                    .is_err()
            {
                break;
            }
            match class {
                Topic::Delta(origin) if origin == self.shared.node_id => {} // our own, echoed
                Topic::Delta(origin) if self.role.applies() => {
                    crate::telemetry::record_received_bytes(h.publish.payload.len());
                    match self.delta(&mut deltas, origin, &h.publish.payload) {
                        Received::Incomplete(id) => h.waiting_for = Some(id),
                        Received::Ready(id, delta) => {
                            // Acknowledged once the group it joins is applied.
                            h.waiting_for = Some(id);
                            group.push(delta);
                        }
                        Received::Unreadable(id) => {
                            resync.request(&format!("a gap in the deltas from {}", id.0));
                            release(&mut held, &id);
                        }
                        Received::Bad => {}
                    }
                }
                Topic::Delta(origin) => match self.delta(&mut deltas, origin, &h.publish.payload) {
                    Received::Incomplete(id) => h.waiting_for = Some(id),
                    Received::Ready(id, delta) => {
                        self.report_lost_conflicts(&delta);
                        release(&mut held, &id);
                    }
                    Received::Unreadable(id) => release(&mut held, &id),
                    Received::Bad => {}
                },
                Topic::Ask(asker) if asker != self.shared.node_id => {
                    if let (Some(asks), Some((header, body))) = (
                        &self.asks,
                        self.assemble(&mut syncs, asker, &h.publish.payload),
                    ) {
                        match resync::decode_ask(&body) {
                            Ok(ask) => {
                                let _ = asks.try_send(Asked {
                                    asker: asker.to_string(),
                                    id: header.epoch,
                                    batch: header.seq,
                                    ask,
                                });
                            }
                            Err(e) => self.reject(asker, &e.to_string()),
                        }
                    }
                }
                Topic::Answer(me) if me == self.shared.node_id && self.role.applies() => {
                    let from = delta::decode_part(
                        &h.publish.payload,
                        &self.shared.group,
                        &self.shared.auth,
                    )
                    .map(|p| p.origin)
                    .unwrap_or_default();
                    if let Some((header, body)) =
                        self.assemble(&mut syncs, &from, &h.publish.payload)
                    {
                        resync.on_answer(&ctx, header, body).await;
                    }
                }
                Topic::Status(node)
                    if node != self.shared.node_id
                        && !self.role.applies()
                        && !h.publish.payload.is_empty() =>
                {
                    self.watch_publisher(&mut watched, node, &h.publish.payload)
                        .await;
                }
                Topic::Status(node) if node != self.shared.node_id && self.role.applies() => {
                    let status = self.decode_status(node, &h.publish.payload);
                    match status {
                        Ok(s) if s.published > 0 => {
                            announced.insert(
                                s.node.clone(),
                                Announced {
                                    epoch: s.epoch,
                                    published: s.published,
                                    applied: None,
                                    since: Instant::now(),
                                },
                            );
                        }
                        Ok(_) => {}
                        Err(e) => self.reject(node, &e),
                    }
                }
                _ => log::debug!("ignoring message on {topic}"),
            }
            held.push_back(h);
            // Apply what was gathered once nothing more waits (or the group is full): a single
            // change is applied at once, a backlog in groups; a large group whose next Delta is
            // arriving waits a moment for it.
            let next_arriving = deltas.receiving() && group.bytes >= GROUP_WAIT_FROM;
            if inbound.is_empty() && next_arriving && !group.full() {
                apply_by.get_or_insert_with(|| tokio::time::Instant::now() + GROUP_WAIT);
            } else if (inbound.is_empty() || group.full())
                && self
                    .flush(&mut group, &mut held, &mut resync, &mut shutdown)
                    .await
                    .is_err()
            {
                break;
            }
            ack_ready(&mut held, &self.link).await;
            // Reloads wait while a backlog drains (a slave catching up after an outage).
            // (A group waiting for its next Delta counts: it is received and not applied.)
            self.shared
                .backlog
                .store(inbound.len() + group.deltas.len(), Ordering::Relaxed);
        }
    }

    /// Compare announced positions with what was applied; a stall behind one means lost Deltas.
    fn check_announced(&self, announced: &mut HashMap<String, Announced>, resync: &mut Resync) {
        if announced.is_empty() {
            return;
        }
        let state = self.shared.state.lock().unwrap();
        announced.retain(|origin, a| {
            let applied = state.applied.get(origin).copied();
            let behind = match applied {
                Some(p) if p.epoch == a.epoch => p.seq < a.published,
                _ => true,
            };
            let lag = match applied {
                Some(p) if p.epoch == a.epoch => a.published.saturating_sub(p.seq),
                _ => a.published,
            };
            crate::telemetry::record_lag(origin, lag);
            if !behind {
                return false;
            }
            if applied != a.applied {
                a.applied = applied;
                a.since = Instant::now();
            } else if a.since.elapsed() > STALL {
                resync.request(&format!(
                    "{origin} announced seq {} of epoch {}, but this node stopped at {}",
                    a.published,
                    a.epoch,
                    applied.map_or("nothing".to_string(), |p| format!(
                        "seq {} of epoch {}",
                        p.seq, p.epoch
                    ))
                ));
                a.since = Instant::now();
            }
            true
        });
    }

    /// Decode a status frame published on `node`'s status topic.
    fn decode_status(&self, node: &str, payload: &[u8]) -> Result<Status, String> {
        let p = delta::decode_part(payload, &self.shared.group, &self.shared.auth)
            .map_err(|e| e.to_string())?;
        if p.origin != node || p.count != 1 {
            return Err(format!(
                "status frame of {:?} on the topic of {node}",
                p.origin
            ));
        }
        Status::decode(&p, &p.body).map_err(|e| e.to_string())
    }

    fn reject(&self, from: &str, why: &str) {
        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::record_rejected();
        log::warn!("rejected a message from {from}: {why}");
        self.shared
            .board
            .error(&format!("rejected a message from {from}: {why}"));
    }

    /// Decode a part and return the whole message once complete; `sender` must match the
    /// origin the part claims.
    fn assemble(
        &self,
        asm: &mut Assembler,
        sender: &str,
        payload: &[u8],
    ) -> Option<(delta::Part, Vec<u8>)> {
        let part = match delta::decode_part(payload, &self.shared.group, &self.shared.auth) {
            Ok(p) if p.origin == sender => p,
            Ok(p) => {
                self.reject(sender, &format!("it claims to come from {:?}", p.origin));
                return None;
            }
            Err(e) => {
                self.reject(sender, &e.to_string());
                return None;
            }
        };
        match asm.push(part) {
            Ok(Assembled::Complete(header, body)) => Some((header, body)),
            Ok(Assembled::Incomplete) => None,
            Err(e) => {
                self.reject(sender, &e.to_string());
                None
            }
        }
    }

    /// Decode one message of a Delta topic; returns the Delta once all its parts are here.
    fn delta(&self, asm: &mut Assembler, topic_origin: &str, payload: &[u8]) -> Received {
        let shared = &self.shared;
        let part = match delta::decode_part(payload, &shared.group, &shared.auth) {
            Ok(p) if p.origin == topic_origin => p,
            Ok(p) => {
                self.reject(topic_origin, &format!("it claims origin {:?}", p.origin));
                return Received::Bad;
            }
            Err(e) => {
                self.reject(topic_origin, &e.to_string());
                return Received::Bad;
            }
        };
        let id: DeltaId = (part.origin.clone(), part.epoch, part.seq);
        match asm.push(part).and_then(|a| match a {
            Assembled::Incomplete => Ok(None),
            Assembled::Complete(header, body) => delta::decode_body(&header, &body).map(Some),
        }) {
            Ok(None) => Received::Incomplete(id),
            Ok(Some(d)) => Received::Ready(id, d),
            Err(e) => {
                self.reject(topic_origin, &format!("delta {}/{}: {e}", id.1, id.2));
                Received::Unreadable(id)
            }
        }
    }
}

enum Received {
    /// A part of a Delta whose other parts have not all arrived.
    Incomplete(DeltaId),
    /// A whole Delta, ready to apply.
    Ready(DeltaId, Delta),
    /// The parts arrived but do not make a readable Delta: refused, and a resync fills the gap.
    Unreadable(DeltaId),
    Bad,
}

fn release(held: &mut VecDeque<Held>, id: &DeltaId) {
    for h in held
        .iter_mut()
        .filter(|h| h.waiting_for.as_ref() == Some(id))
    {
        h.waiting_for = None;
    }
}

/// Ack from the front of the queue while messages are finished, on their own connection only.
async fn ack_ready(held: &mut VecDeque<Held>, link: &watch::Receiver<Link>) {
    while held.front().is_some_and(|h| h.waiting_for.is_none()) {
        let h = held.pop_front().unwrap();
        let client = {
            let l = link.borrow();
            (l.gen == h.gen).then(|| l.client.clone()).flatten()
        };
        match client {
            Some(c) => {
                if let Err(e) = c.ack(&h.publish).await {
                    log::debug!("ack not sent (connection closing): {e}");
                }
            }
            None => log::debug!("ack dropped: its connection is gone; the broker redelivers"),
        }
    }
}
