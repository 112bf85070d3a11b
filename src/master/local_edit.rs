//! The one path from a local edit to Deltas in the outbox, taken by the detector (GeoServer
//! saved files on this node) and by an import (an administrator brought a bundle here):
//!
//! 1. each changed path becomes a [`Change`] with this node's new version — for a path merged
//!    field by field (`global.xml`) with its merge state (`update_sequence::local_write`);
//! 2. the changes are cut into Deltas of at most [`delta::SPLIT_DELTA_AT`] bytes ([`Cutter`]);
//! 3. each Delta is encoded into the outbox under the next sequence number ([`enqueue`]).
//!
//! The caller then records the manifest entries and the next sequence number in the journal:
//! outbox first, so a crash in between is adopted at the next start (`adopt_uncommitted`);
//! the other order could lose the changes.

use crate::context::Shared;
use crate::datadir::Manifest;
use crate::delta::{self, Change, Delta, Op};
use crate::hlc::Version;
use crate::state::State;
use crate::update_sequence::{self, Merged};
use std::io;

/// `path` now holds `bytes`: the change that says so, at `version`.
pub fn write(manifest: &Manifest, path: String, bytes: Vec<u8>, version: &Version) -> Change {
    let merged = update_sequence::merged(&path).then(|| {
        let held = manifest.live_entry(&path);
        let before = (held.as_ref()).and_then(|e| e.merged.as_deref().map(|m| (&e.sha256, m)));
        update_sequence::local_write(before, &bytes, version)
    });
    Change {
        path,
        version: version.clone(),
        op: Op::write(bytes),
        merged,
    }
}

/// `path` is gone: the change that says so, at `version`. For a merged path a deletion is a
/// settings change that keeps the highest counter.
pub fn delete(manifest: &Manifest, path: String, version: &Version) -> Change {
    let merged = update_sequence::merged(&path).then(|| Merged {
        settings: version.clone(),
        counter: (manifest.get(&path))
            .and_then(|e| e.merged.as_ref().map(|m| m.counter))
            .unwrap_or(0),
    });
    Change {
        path,
        version: version.clone(),
        op: Op::Delete,
        merged,
    }
}

/// Cuts a stream of changes into Deltas of at most [`delta::SPLIT_DELTA_AT`] bytes of paths
/// and content, keeping beside each change whatever the caller needs with it (`T`: the
/// detector keeps the manifest entry; an import, nothing).
pub struct Cutter<T> {
    changes: Vec<Change>,
    with: Vec<T>,
    bytes: usize,
}

impl<T> Default for Cutter<T> {
    fn default() -> Self {
        Cutter {
            changes: Vec::new(),
            with: Vec::new(),
            bytes: 0,
        }
    }
}

impl<T> Cutter<T> {
    /// Add a change; returns the previous Delta's changes when this one would not fit in it.
    pub fn push(&mut self, change: Change, with: T) -> Option<(Vec<Change>, Vec<T>)> {
        let size = change.path.len()
            + match &change.op {
                Op::Write { bytes, .. } => bytes.len(),
                Op::Delete => 0,
            };
        let full = (self.bytes + size > delta::SPLIT_DELTA_AT && !self.changes.is_empty())
            .then(|| self.take());
        self.bytes += size;
        self.changes.push(change);
        self.with.push(with);
        full
    }

    /// The last Delta's changes, if any.
    pub fn finish(mut self) -> Option<(Vec<Change>, Vec<T>)> {
        (!self.changes.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> (Vec<Change>, Vec<T>) {
        self.bytes = 0;
        (
            std::mem::take(&mut self.changes),
            std::mem::take(&mut self.with),
        )
    }
}

/// Encode `changes` as this node's Delta `seq` and put it into the outbox; returns the Delta
/// and how many MQTT messages it takes. The caller records `seq + 1` as the next sequence
/// number.
pub fn enqueue(
    sh: &Shared,
    state: &State,
    seq: u64,
    changes: Vec<Change>,
    dangling: &[String],
) -> io::Result<(Delta, usize)> {
    let d = Delta {
        group: sh.group.clone(),
        origin: sh.node_id.clone(),
        epoch: state.epoch,
        seq,
        dangling: dangling.to_vec(),
        changes,
    };
    let payloads = delta::encode(&d, &sh.auth);
    state.outbox().put(seq, &payloads)?;
    Ok((d, payloads.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, len: usize) -> Change {
        write(
            &Manifest::default(),
            path.into(),
            vec![b'x'; len],
            &Version::new(1, "a"),
        )
    }

    #[test]
    fn a_delta_is_cut_before_the_change_that_would_overflow_it() {
        let mut cut = Cutter::default();
        let half = delta::SPLIT_DELTA_AT / 2;
        assert!(cut.push(change("a", half), 1).is_none());
        assert!(cut.push(change("b", half - 10), 2).is_none());
        let (first, with) = cut.push(change("c", 100), 3).expect("c does not fit");
        assert_eq!(
            first.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(with, [1, 2]);
        let (last, with) = cut.finish().unwrap();
        assert_eq!((last.len(), with), (1, vec![3]));
    }

    #[test]
    fn one_oversized_change_is_a_delta_of_its_own() {
        let mut cut = Cutter::default();
        assert!(cut
            .push(change("big", delta::SPLIT_DELTA_AT * 2), ())
            .is_none());
        assert!(cut.push(change("small", 1), ()).is_some());
        assert!(Cutter::<()>::default().finish().is_none());
    }
}
