//! Publishes outbox entries with QoS 1 and removes each entry only when the broker has
//! acknowledged every one of its parts.
//!
//! rumqttc reports a publish's packet id when it writes it (`Outgoing::Publish`, in request
//! order) and the broker's PUBACK by packet id; the publisher pairs them to know which outbox
//! part each PUBACK confirms. On every new connection the whole outbox is published again in
//! sequence order: a broker that kept the session sees duplicates, which receivers drop by
//! (origin, epoch, seq); a broker that lost it gets everything it lost.

use crate::mqtt::connection::LinkEvent;
use crate::state::Outbox;
use rumqttc::{AsyncClient, QoS};
use std::collections::{BTreeMap, HashMap, VecDeque};
use tokio::sync::{mpsc, watch};

/// Publisher state for the current connection.
#[derive(Default)]
struct Session {
    gen: u64,
    client: Option<AsyncClient>,
    /// Parts requested but not yet written (no packet id yet), in request order.
    requested: VecDeque<(u64, usize)>,
    /// Written parts waiting for their PUBACK.
    inflight: HashMap<u16, (u64, usize)>,
    /// Parts of each sequence number not yet acknowledged.
    remaining: BTreeMap<u64, usize>,
    /// Highest sequence number published on this connection.
    last_published: u64,
}

/// Run the publisher. `fresh` carries sequence numbers just written to the outbox.
pub async fn run(
    outbox: Outbox,
    topic: String,
    mut fresh: mpsc::UnboundedReceiver<u64>,
    mut events: mpsc::UnboundedReceiver<LinkEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut s = Session::default();
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                handle_event(&mut s, ev, &outbox, &topic).await;
            }
            seq = fresh.recv() => {
                let Some(seq) = seq else { break };
                if s.client.is_some() && seq > s.last_published {
                    publish_up_to(&mut s, &outbox, &topic, seq).await;
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn handle_event(s: &mut Session, ev: LinkEvent, outbox: &Outbox, topic: &str) {
    match ev {
        LinkEvent::Up { gen, client } => {
            *s = Session {
                gen,
                client: Some(client),
                ..Default::default()
            };
            if let Some(&last) = outbox.seqs().unwrap_or_default().last() {
                log::info!("publishing outbox up to seq {last}");
                publish_up_to(s, outbox, topic, last).await;
            }
        }
        LinkEvent::Down { gen } if gen == s.gen => {
            *s = Session::default();
        }
        // QoS 0 publishes (pkid 0) are not ours: every Delta part goes out with QoS 1.
        LinkEvent::Sent { gen, pkid } if gen == s.gen && pkid != 0 => {
            if let Some(part) = s.requested.pop_front() {
                s.inflight.insert(pkid, part);
            }
        }
        LinkEvent::Acked { gen, pkid } if gen == s.gen => {
            let Some((seq, _part)) = s.inflight.remove(&pkid) else {
                return;
            };
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
                match outbox.remove(seq) {
                    Ok(()) => log::debug!("seq {seq} acknowledged by the broker"),
                    Err(e) => log::error!("cannot remove outbox entry {seq}: {e}"),
                }
            }
        }
        _ => {}
    }
}

/// Publish every outbox entry above `s.last_published` up to `upto`, in order.
async fn publish_up_to(s: &mut Session, outbox: &Outbox, topic: &str, upto: u64) {
    let seqs = match outbox.seqs() {
        Ok(v) => v,
        Err(e) => {
            log::error!("cannot list the outbox: {e}");
            return;
        }
    };
    let from = s.last_published;
    for seq in seqs.into_iter().filter(|&q| q > from && q <= upto) {
        let payloads = match outbox.get(seq) {
            Ok(p) => p,
            Err(e) => {
                log::error!("outbox entry {seq} unreadable: {e}; it stays for the next attempt");
                return;
            }
        };
        let Some(client) = s.client.clone() else {
            return;
        };
        s.remaining.insert(seq, payloads.len());
        for (i, payload) in payloads.into_iter().enumerate() {
            s.requested.push_back((seq, i));
            if client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                // The connection is gone; everything is published again on the next one.
                return;
            }
        }
        s.last_published = seq;
    }
}
