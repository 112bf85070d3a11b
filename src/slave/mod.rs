//! Slave side: apply a verified Delta (or a resync batch) to the data directory and record it.
//!
//! Receiving, ordering and acknowledging happen in `inbound`; this module decides and writes.
//! Everything here runs under the state lock, on a blocking thread.

pub mod apply;

use crate::datadir::Entry;
use crate::delta::{Change, Delta};
use crate::node::Shared;
use crate::state::{Position, Record, State};
use std::sync::atomic::Ordering;

/// How one Delta ended.
pub enum Outcome {
    /// Written (possibly nothing, when every change was older than what is here).
    Applied { steps: usize, gap: bool },
    /// Already applied earlier (QoS 1 redelivery or replay).
    Duplicate,
    /// Refused as a whole; nothing written.
    Rejected(String),
}

/// How many steps were written, and the manifest entries they leave behind.
pub type Written = (usize, Vec<(String, Entry)>);

/// Plan, check and write `changes` (versions decide); returns the steps' count and the manifest
/// entries to commit, or why the whole set is refused. The caller holds the state lock and
/// commits the entries; the intent is recorded here, before the first file is touched.
pub fn write_changes(
    sh: &Shared,
    state: &mut State,
    changes: &[Change],
    equal: apply::Equal,
) -> std::io::Result<Result<Written, apply::Rejection>> {
    let steps = match apply::plan(&state.manifest, changes, &sh.filter, equal)
        .and_then(|steps| apply::check(&sh.data_dir, &steps).map(|()| steps))
    {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    if sh.stopping.load(Ordering::SeqCst) && !steps.is_empty() {
        return Err(std::io::Error::other("shutting down"));
    }
    record_intent(state, &steps)?;
    let entries = {
        let _writing = sh.files.blocking_write();
        apply::execute(&sh.data_dir, &steps)?
    };
    if let Some(hlc) = changes.iter().map(|c| c.version.hlc).max() {
        sh.clock.lock().unwrap().observe(hlc);
    }
    let mut catalog = sh.catalog.lock().unwrap();
    let mut gate = sh.gate.lock().unwrap();
    for step in &steps {
        match step {
            apply::Step::Write { path, bytes, .. } => catalog.update(path, Some(bytes)),
            apply::Step::Delete { path, .. } => catalog.update(path, None),
        }
        gate.touched.insert(step.path().to_string());
    }
    Ok(Ok((steps.len(), entries)))
}

/// Record what `steps` are about to do (see [`Record::intent`]). Nothing to record for an
/// empty plan.
pub fn record_intent(state: &mut State, steps: &[apply::Step]) -> std::io::Result<()> {
    if steps.is_empty() {
        return Ok(());
    }
    let intent = steps
        .iter()
        .map(|s| match s {
            apply::Step::Write { path, sha256, .. } => (path.clone(), Some(*sha256)),
            apply::Step::Delete { path, .. } => (path.clone(), None),
        })
        .collect();
    state.commit(Record {
        intent,
        ..Default::default()
    })
}

/// Apply one complete Delta under the state lock. Blocking.
pub fn apply_delta(sh: &Shared, delta: &Delta) -> std::io::Result<Outcome> {
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
    let gap = delta.seq != expected;
    if gap {
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
        applied: vec![(
            delta.origin.clone(),
            Position {
                epoch: delta.epoch,
                seq: delta.seq,
            },
        )],
        hlc: delta
            .changes
            .iter()
            .map(|c| c.version.hlc)
            .max()
            .unwrap_or(0),
        ..Default::default()
    };
    match write_changes(sh, &mut state, &delta.changes, apply::Equal::Skip)? {
        Err(why) => {
            // Consumed, so the session moves on; the position records that it was seen.
            state.commit(position)?;
            Ok(Outcome::Rejected(why.to_string()))
        }
        Ok((steps, entries)) => {
            crate::crashpoint::hit("delta-written");
            sh.gate
                .lock()
                .unwrap()
                .dangling
                .extend(delta.dangling.iter().cloned());
            state.commit(Record {
                entries,
                ..position
            })?;
            crate::crashpoint::hit("delta-recorded");
            Ok(Outcome::Applied { steps, gap })
        }
    }
}
