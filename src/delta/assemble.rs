//! Joining the parts of a chunked message back into its body.

use super::change::DeltaId;
use super::frame::{DecodeError, Part};
use std::collections::HashMap;
use std::time::{Duration, Instant};

struct Pending {
    header: Part,
    body: Vec<u8>,
    next: u32,
    /// When its last part arrived: a message whose parts stop arriving expires, one that
    /// arrives slowly (a slow link) does not.
    last: Instant,
}

/// Collects the parts of chunked Deltas. Parts of one Delta arrive in order on one topic
/// (MQTT keeps per-topic order from one publisher); anything else restarts that Delta.
#[derive(Default)]
pub struct Assembler {
    pending: HashMap<DeltaId, Pending>,
}

/// What pushing a part produced.
pub enum Assembled {
    /// More parts are needed.
    Incomplete,
    /// All parts arrived: the header (with an empty `body`) and the whole body, decompressed.
    Complete(Part, Vec<u8>),
}

impl Assembler {
    /// Add a part. Errors mean the whole message is unusable (its parts are dropped).
    pub fn push(&mut self, mut part: Part) -> Result<Assembled, DecodeError> {
        let id = DeltaId::of(&part);
        if part.count == 1 {
            self.pending.remove(&id);
            let body = std::mem::take(&mut part.body);
            if body.len() as u64 != part.body_len {
                return Err(DecodeError::Part(
                    "body length differs from the announced one".into(),
                ));
            }
            let body = super::frame::whole_body(&mut part, body)?;
            return Ok(Assembled::Complete(part, body));
        }
        if part.index == 0 {
            // A restart of this Delta (redelivery after a reconnect) replaces any old attempt.
            let body = Vec::with_capacity(part.body_len as usize);
            self.pending.insert(
                id.clone(),
                Pending {
                    body,
                    next: 0,
                    last: Instant::now(),
                    header: Part {
                        body: Vec::new(),
                        ..part_header(&part)
                    },
                },
            );
        }
        let Some(p) = self.pending.get_mut(&id) else {
            return Err(DecodeError::Part(format!(
                "part {} of {} arrived without part 0",
                part.index + 1,
                part.count
            )));
        };
        if part.index != p.next
            || part.count != p.header.count
            || part.body_len != p.header.body_len
        {
            self.pending.remove(&id);
            return Err(DecodeError::Part(format!(
                "part {} of {} out of order or inconsistent",
                part.index + 1,
                part.count
            )));
        }
        if p.body.len() + part.body.len() > p.header.body_len as usize {
            self.pending.remove(&id);
            return Err(DecodeError::Part(
                "parts longer than the announced body".into(),
            ));
        }
        p.body.extend_from_slice(&part.body);
        p.next += 1;
        p.last = Instant::now();
        if p.next < p.header.count {
            return Ok(Assembled::Incomplete);
        }
        let mut p = self.pending.remove(&id).expect("present");
        if p.body.len() as u64 != p.header.body_len {
            return Err(DecodeError::Part(
                "parts shorter than the announced body".into(),
            ));
        }
        let body = super::frame::whole_body(&mut p.header, p.body)?;
        Ok(Assembled::Complete(p.header, body))
    }

    /// Whether a Delta is partly here, its other parts still to come.
    pub fn receiving(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Drop messages whose parts stopped arriving (none for `older_than`); returns their ids
    /// so the caller can resync.
    pub fn expire(&mut self, older_than: Duration) -> Vec<DeltaId> {
        let now = Instant::now();
        let old: Vec<DeltaId> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.last) > older_than)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &old {
            self.pending.remove(id);
        }
        old
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

pub(super) fn part_header(p: &Part) -> Part {
    Part {
        group: p.group.clone(),
        origin: p.origin.clone(),
        epoch: p.epoch,
        seq: p.seq,
        index: p.index,
        count: p.count,
        body_len: p.body_len,
        raw_len: p.raw_len,
        body: Vec::new(),
    }
}
