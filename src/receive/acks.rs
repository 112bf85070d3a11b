//! Acknowledgement order. Messages are acknowledged strictly in arrival order, each only once it
//! is finished (its Delta applied, or refused): rumqttd disconnects a client that acks out of
//! order and loses the message at the head of its queue when it does (mqtt-measured.md §5). A
//! message that is part of a chunked Delta stays unfinished until the whole Delta is applied,
//! so a crash in between makes the broker send every part again.
//!
//! Pure: the queue holds whatever message type the caller gives it and says which ones may be
//! acknowledged now; the receive loop sends the acks.

use crate::delta::DeltaId;
use std::collections::VecDeque;

/// One received message waiting for its acknowledgement.
struct Held<M> {
    /// The connection it came from: an ack is only ever sent on that connection.
    gen: u64,
    message: M,
    /// The Delta this message is a part of, while that Delta is not finished.
    waiting_for: Option<DeltaId>,
}

/// The received messages not acknowledged yet, in arrival order.
pub struct AckQueue<M> {
    held: VecDeque<Held<M>>,
}

impl<M> Default for AckQueue<M> {
    fn default() -> Self {
        AckQueue {
            held: VecDeque::new(),
        }
    }
}

impl<M> AckQueue<M> {
    /// A message received on connection `gen`; `waiting_for` is the Delta it belongs to while
    /// that is not finished (`None`: it may be acknowledged as soon as those before it are).
    pub fn push(&mut self, gen: u64, message: M, waiting_for: Option<DeltaId>) {
        self.held.push_back(Held {
            gen,
            message,
            waiting_for,
        });
    }

    /// The Delta `id` is finished (applied, a duplicate, or refused): its messages may be
    /// acknowledged.
    pub fn release(&mut self, id: &DeltaId) {
        for h in self.held.iter_mut() {
            if h.waiting_for.as_ref() == Some(id) {
                h.waiting_for = None;
            }
        }
    }

    /// Take the finished messages at the front, oldest first, with their connection.
    pub fn take_ready(&mut self) -> Vec<(u64, M)> {
        let mut ready = Vec::new();
        while self.held.front().is_some_and(|h| h.waiting_for.is_none()) {
            let h = self.held.pop_front().expect("front exists");
            ready.push((h.gen, h.message));
        }
        ready
    }

    /// A new connection: whatever was unacknowledged on the old one comes again.
    pub fn clear(&mut self) {
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> DeltaId {
        DeltaId {
            origin: "a".into(),
            epoch: 1,
            seq,
        }
    }

    #[test]
    fn a_message_waits_for_every_one_before_it() {
        let mut q = AckQueue::default();
        q.push(1, "part 1 of d1", Some(id(1)));
        q.push(1, "status", None);
        q.push(1, "d2", Some(id(2)));
        assert!(q.take_ready().is_empty(), "the head is not finished");
        q.release(&id(2));
        assert!(
            q.take_ready().is_empty(),
            "d2 is done but d1 is ahead of it"
        );
        q.release(&id(1));
        assert_eq!(
            q.take_ready(),
            vec![(1, "part 1 of d1"), (1, "status"), (1, "d2")]
        );
    }

    #[test]
    fn release_frees_every_part_of_a_delta() {
        let mut q = AckQueue::default();
        q.push(3, 1, Some(id(7)));
        q.push(3, 2, Some(id(7)));
        q.push(3, 3, Some(id(8)));
        q.release(&id(7));
        assert_eq!(q.take_ready(), vec![(3, 1), (3, 2)]);
        q.clear();
        assert!(q.take_ready().is_empty());
    }
}
