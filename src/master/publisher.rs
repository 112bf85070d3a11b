//! Publishes outbox entries with QoS 1 and removes each entry only when the broker has
//! acknowledged every one of its parts.
//!
//! rumqttc reports a publish's packet id when it writes it (`Outgoing::Publish`, in request
//! order) and the broker's PUBACK by packet id; the publisher pairs them to know which outbox
//! part each PUBACK confirms. On every new connection the whole outbox is published again in
//! sequence order: a broker that kept the session sees duplicates, which receivers drop by
//! (origin, epoch, seq); a broker that lost it gets everything it lost.
//!
//! Whenever the outbox drains, and on every connection, the publisher tells the node's status
//! how far its stream goes (crate::status, published by its reporter). It is the node's only
//! QoS 1 publisher, so the packet-id pairing stays exact.

use crate::mqtt::connection::LinkEvent;
use crate::mqtt::Client;
use crate::state::Outbox;
use std::collections::{BTreeMap, HashMap, VecDeque};
use tokio::sync::{mpsc, watch};

/// Most QoS 1 publishes this node has outstanding (requested or unacknowledged) at once: half
/// of the connection's in-flight window. rumqttc takes nothing from its request queue while its
/// window is full, and the acknowledgements of what this node receives (its own Deltas
/// included: it subscribes to every origin) wait in the same queue; had the publisher queued a
/// whole start-up's parts, those acknowledgements would wait behind them while the broker held
/// back its own acknowledgements and forwarding for them — a standstill until the keep-alive
/// expired. Keeping the window from filling keeps the queue moving.
const WINDOW: usize = crate::mqtt::connection::INFLIGHT as usize / 2;

/// Publisher state for the current connection.
#[derive(Default)]
struct Session {
    gen: u64,
    client: Option<Client>,
    /// Parts requested but not yet written (no packet id yet), in request order.
    requested: VecDeque<(u64, usize)>,
    /// Written parts waiting for their PUBACK.
    inflight: HashMap<u16, (u64, usize)>,
    /// Parts of each sequence number not yet acknowledged.
    remaining: BTreeMap<u64, usize>,
    /// Highest sequence number published (all its parts requested) on this connection.
    last_published: u64,
    /// Publish the outbox up to this sequence number.
    upto: u64,
    /// The sequence number being published: its parts and the index of the next one.
    current: Option<(u64, Vec<Vec<u8>>, usize)>,
}

/// The publishing task.
pub struct Publisher {
    pub outbox: Outbox,
    pub topic: String,
    /// Highest sequence number written to the outbox so far.
    pub highest: u64,
    /// The node's epoch (for log lines).
    pub epoch: u64,
    /// Where the acknowledged stream position goes (the node's status board).
    pub shared: std::sync::Arc<crate::context::Shared>,
}

impl Publisher {
    /// Run until shutdown. `fresh` carries sequence numbers just written to the outbox.
    pub async fn run(
        mut self,
        mut fresh: mpsc::UnboundedReceiver<u64>,
        mut events: mpsc::UnboundedReceiver<LinkEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut s = Session::default();
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    self.handle_event(&mut s, ev).await;
                }
                seq = fresh.recv() => {
                    let Some(seq) = seq else { break };
                    self.highest = self.highest.max(seq);
                    if let Ok(seqs) = self.outbox.seqs() {
                        crate::telemetry::record_outbox(seqs.len());
                    }
                    if s.client.is_some() {
                        s.upto = s.upto.max(seq);
                        self.fill(&mut s).await;
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    }

    async fn handle_event(&self, s: &mut Session, ev: LinkEvent) {
        match ev {
            LinkEvent::Up { gen, client } => {
                *s = Session {
                    gen,
                    client: Some(client),
                    ..Default::default()
                };
                if let Some(&last) = self.outbox.seqs().unwrap_or_default().last() {
                    log::info!("publishing outbox up to seq {last}");
                    s.upto = last;
                    self.fill(s).await;
                }
                self.announce();
            }
            LinkEvent::Down { gen } if gen == s.gen => {
                *s = Session::default();
            }
            // QoS 0 publishes (pkid 0) are not paired: only Delta parts go out with
            // QoS 1, and only from here.
            LinkEvent::Sent { gen, pkid } if gen == s.gen && pkid != 0 => {
                if let Some(part) = s.requested.pop_front() {
                    s.inflight.insert(pkid, part);
                }
            }
            LinkEvent::Acked { gen, pkid } if gen == s.gen => {
                let Some((seq, _part)) = s.inflight.remove(&pkid) else {
                    return;
                };
                self.fill(s).await;
                let done = match s.remaining.get_mut(&seq) {
                    Some(n) => {
                        *n -= 1;
                        *n == 0
                    }
                    None => false,
                };
                if done {
                    crate::crashpoint::hit("puback-received");
                    s.remaining.remove(&seq);
                    match self.outbox.remove(seq) {
                        Ok(()) => log::debug!("seq {seq} acknowledged by the broker"),
                        Err(e) => log::error!("cannot remove outbox entry {seq}: {e}"),
                    }
                    crate::telemetry::record_published(1);
                    if let Ok(seqs) = self.outbox.seqs() {
                        crate::telemetry::record_outbox(seqs.len());
                    }
                    if s.remaining.is_empty() {
                        self.announce();
                    }
                }
            }
            _ => {}
        }
    }

    /// Tell the node's status (published retained by `status::report`) how far the stream is
    /// acknowledged: up to just below the oldest outbox entry, or up to the highest sequence
    /// number when the outbox is empty.
    fn announce(&self) {
        let Ok(published) = self.outbox.acknowledged(self.highest) else {
            return;
        };
        self.shared.board.published(published);
        log::debug!("announced stream position {}/{published}", self.epoch);
    }

    /// Publish outbox parts above `s.last_published`, up to `s.upto`, in order, while fewer
    /// than [`WINDOW`] publishes are outstanding; called again as acknowledgements free room.
    async fn fill(&self, s: &mut Session) {
        let Some(client) = s.client.clone() else {
            return;
        };
        while s.requested.len() + s.inflight.len() < WINDOW {
            if s.current.is_none() {
                let seqs = match self.outbox.seqs() {
                    Ok(v) => v,
                    Err(e) => {
                        log::error!("cannot list the outbox: {e}");
                        return;
                    }
                };
                let from = s.last_published;
                let Some(seq) = seqs.into_iter().find(|&q| q > from && q <= s.upto) else {
                    return;
                };
                let payloads = match self.outbox.get(seq) {
                    Ok(p) if !p.is_empty() => p,
                    Ok(_) => {
                        log::error!("outbox entry {seq} is empty; skipped");
                        s.last_published = seq;
                        continue;
                    }
                    Err(e) => {
                        log::error!(
                            "outbox entry {seq} unreadable: {e}; it stays for the next attempt"
                        );
                        return;
                    }
                };
                s.remaining.insert(seq, payloads.len());
                s.current = Some((seq, payloads, 0));
            }
            let (seq, payloads, next) = s.current.as_mut().expect("set above");
            let (seq, i) = (*seq, *next);
            let payload = std::mem::take(&mut payloads[i]);
            *next += 1;
            if *next == payloads.len() {
                s.current = None;
                s.last_published = seq;
            }
            s.requested.push_back((seq, i));
            crate::telemetry::record_published_bytes(payload.len());
            if client
                .publish_acknowledged(&self.topic, payload)
                .await
                .is_err()
            {
                // The connection is gone; everything is published again on the next one.
                return;
            }
        }
    }
}
