//! Slave side: receive → verify → plan → write → record → ack → schedule a reload.
//!
//! One worker handles every received message strictly in arrival order and acknowledges in that
//! same order, only after the Delta is durably applied: rumqttd disconnects a client that acks
//! out of order and loses the head message when it does (mqtt-measured.md §5). A chunked
//! Delta's parts stay unacknowledged until the whole Delta is applied, so a crash in between
//! has the broker send every part again.

pub mod apply;

use crate::delta::{self, Assembled, Assembler, Delta, DeltaId};
use crate::mqtt::connection::{Inbound, Link};
use crate::node::Shared;
use crate::state::{Position, Record};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A chunked Delta whose parts stop arriving is dropped after this long (and counted as a gap).
const PART_TIMEOUT: Duration = Duration::from_secs(120);
/// A failed write (disk full, permissions) is retried after this long, forever.
const RETRY_APPLY: Duration = Duration::from_secs(2);

struct Held {
    gen: u64,
    publish: rumqttc::Publish,
    /// The Delta this message is a part of, while it is incomplete.
    waiting_for: Option<DeltaId>,
}

/// How one Delta ended.
enum Outcome {
    Applied { steps: usize },
    Duplicate,
    Rejected(String),
}

/// Run the receive worker until shutdown.
pub async fn run(
    shared: Arc<Shared>,
    mut inbound: mpsc::Receiver<Inbound>,
    link: watch::Receiver<Link>,
    applied: impl Fn(&Delta) + Send + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut held: VecDeque<Held> = VecDeque::new();
    let mut asm = Assembler::default();
    let mut gen = 0u64;
    let mut expiry = tokio::time::interval(Duration::from_secs(5));
    loop {
        let msg = tokio::select! {
            m = inbound.recv() => match m { Some(m) => m, None => break },
            _ = expiry.tick() => {
                for (origin, epoch, seq) in asm.expire(PART_TIMEOUT) {
                    log::warn!("delta {origin}/{epoch}/{seq}: parts stopped arriving; dropped (gap)");
                    held.iter_mut().filter(|h| h.waiting_for == Some((origin.clone(), epoch, seq))).for_each(|h| h.waiting_for = None);
                }
                ack_ready(&mut held, &link).await;
                continue;
            }
            _ = shutdown.changed() => break,
        };
        if msg.gen != gen {
            // A new connection: whatever was unacknowledged on the old one comes again.
            held.clear();
            asm = Assembler::default();
            gen = msg.gen;
        }
        let mut h = Held {
            gen: msg.gen,
            publish: msg.publish,
            waiting_for: None,
        };
        match shared.topics.delta_origin(&h.publish.topic) {
            Some(origin) if origin == shared.node_id => {} // our own Delta, echoed back
            Some(origin) => {
                let origin = origin.to_string();
                match receive(
                    &shared,
                    &mut asm,
                    &origin,
                    &h.publish.payload,
                    &mut shutdown,
                )
                .await
                {
                    Received::Incomplete(id) => h.waiting_for = Some(id),
                    Received::Done(id, Some(delta)) => {
                        applied(&delta);
                        release(&mut held, &id);
                    }
                    Received::Done(id, None) => release(&mut held, &id),
                    Received::Bad => {}
                    Received::Stopping => break,
                }
            }
            None => log::debug!("ignoring message on {}", h.publish.topic),
        }
        held.push_back(h);
        ack_ready(&mut held, &link).await;
    }
}

enum Received {
    Incomplete(DeltaId),
    /// Finished with this Delta; `Some` if files were written.
    Done(DeltaId, Option<Delta>),
    Bad,
    Stopping,
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

async fn receive(
    shared: &Arc<Shared>,
    asm: &mut Assembler,
    topic_origin: &str,
    payload: &[u8],
    shutdown: &mut watch::Receiver<bool>,
) -> Received {
    let part = match delta::decode_part(payload, &shared.group) {
        Ok(p) => p,
        Err(e) => {
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            log::warn!("rejected a message from {topic_origin}: {e}");
            return Received::Bad;
        }
    };
    if part.origin != topic_origin {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "rejected a message on the topic of {topic_origin} claiming origin {:?}",
            part.origin
        );
        return Received::Bad;
    }
    let id: DeltaId = (part.origin.clone(), part.epoch, part.seq);
    let delta = match asm.push(part).and_then(|a| match a {
        Assembled::Incomplete => Ok(None),
        Assembled::Complete(header, body) => delta::decode_body(&header, &body).map(Some),
    }) {
        Ok(None) => return Received::Incomplete(id),
        Ok(Some(d)) => d,
        Err(e) => {
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            log::warn!("rejected delta {}/{}/{}: {e}", id.0, id.1, id.2);
            return Received::Done(id, None);
        }
    };
    loop {
        let sh = shared.clone();
        let d = delta.clone();
        let result = tokio::task::spawn_blocking(move || apply_delta(&sh, &d))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(format!("apply task failed: {e}"))));
        match result {
            Ok(Outcome::Applied { steps }) => {
                log::info!(
                    "applied delta {}/{} from {}: {steps} of {} change(s) written",
                    delta.epoch,
                    delta.seq,
                    delta.origin,
                    delta.changes.len()
                );
                return Received::Done(id, (steps > 0).then_some(delta));
            }
            Ok(Outcome::Duplicate) => {
                log::debug!("delta {}/{}/{} already applied", id.0, id.1, id.2);
                return Received::Done(id, None);
            }
            Ok(Outcome::Rejected(why)) => {
                shared.rejected.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "rejected delta {}/{} from {}: {why}; nothing of it was written",
                    delta.epoch,
                    delta.seq,
                    delta.origin
                );
                return Received::Done(id, None);
            }
            Err(_) if shared.stopping.load(Ordering::SeqCst) => {
                log::info!(
                    "delta {}/{} from {} left for after the restart (not acknowledged)",
                    delta.epoch,
                    delta.seq,
                    delta.origin
                );
                return Received::Stopping;
            }
            Err(e) => {
                log::error!(
                    "cannot apply delta {}/{} from {}: {e}; retrying in {} s (not acknowledged)",
                    delta.epoch,
                    delta.seq,
                    delta.origin,
                    RETRY_APPLY.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_APPLY) => {}
                    _ = shutdown.changed() => return Received::Stopping,
                }
            }
        }
    }
}

/// Apply one complete Delta under the state lock. Blocking.
fn apply_delta(sh: &Shared, delta: &Delta) -> std::io::Result<Outcome> {
    let mut state = sh.state.lock().unwrap();
    let pos = state.applied.get(&delta.origin).copied();
    if let Some(p) = pos {
        if p.epoch == delta.epoch && delta.seq <= p.seq {
            return Ok(Outcome::Duplicate);
        }
    }
    let expected = match pos {
        Some(p) if p.epoch == delta.epoch => p.seq + 1,
        _ => 1,
    };
    if delta.seq != expected {
        // Versions make applying this Delta safe; the skipped ones need a resync.
        log::warn!(
            "gap in deltas from {}: expected seq {expected} of epoch {}, got {} of epoch {}",
            delta.origin,
            pos.map(|p| p.epoch).unwrap_or(delta.epoch),
            delta.seq,
            delta.epoch
        );
        sh.gaps.fetch_add(1, Ordering::Relaxed);
    }
    let position = Record {
        applied: Some((
            delta.origin.clone(),
            Position {
                epoch: delta.epoch,
                seq: delta.seq,
            },
        )),
        hlc: delta
            .changes
            .iter()
            .map(|c| c.version.hlc)
            .max()
            .unwrap_or(0),
        ..Default::default()
    };
    let steps = match apply::plan(&state.manifest, delta, &sh.filter)
        .and_then(|steps| apply::check(&sh.data_dir, &steps).map(|()| steps))
    {
        Ok(s) => s,
        Err(why) => {
            // Consumed, so the session moves on; the position records that it was seen.
            state.commit(position)?;
            return Ok(Outcome::Rejected(why.to_string()));
        }
    };
    if sh.stopping.load(Ordering::SeqCst) && !steps.is_empty() {
        return Err(std::io::Error::other("shutting down"));
    }
    let entries = {
        let _writing = sh.files.write().unwrap_or_else(|e| e.into_inner());
        apply::execute(&sh.data_dir, &steps)?
    };
    sh.clock.lock().unwrap().observe(position.hlc);
    {
        let mut catalog = sh.catalog.lock().unwrap();
        let mut gate = sh.gate.lock().unwrap();
        for step in &steps {
            match step {
                apply::Step::Write { path, bytes, .. } => catalog.update(path, Some(bytes)),
                apply::Step::Delete { path, .. } => catalog.update(path, None),
            }
            gate.touched.insert(step.path().to_string());
        }
        gate.dangling.extend(delta.dangling.iter().cloned());
    }
    let steps_len = steps.len();
    state.commit(Record {
        entries,
        ..position
    })?;
    Ok(Outcome::Applied { steps: steps_len })
}
