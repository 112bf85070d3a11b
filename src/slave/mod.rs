//! Slave side: apply a verified Delta (or a resync batch) to the data directory and record it.
//!
//! Receiving, ordering and acknowledging happen in `inbound`; this module decides and writes.
//! Everything here runs under the state lock, on a blocking thread.

pub mod apply;

use crate::context::Shared;
use crate::datadir::Entry;
use crate::delta::{Change, Delta};
use crate::state::{Position, Record, State};
use std::borrow::Cow;
use std::collections::BTreeMap;
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

/// The steps written, and the manifest entries they leave behind.
pub type Written = (Vec<apply::Step>, Vec<(String, Entry)>);

/// Whether a change may overwrite a local edit the detector has not published yet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LocalEdits {
    /// Remote changes (Deltas, resyncs): the edit is kept and published over them (see
    /// `local_edit`).
    Keep,
    /// An import: the administrator asked for exactly these files.
    Overwrite,
}

/// Plan, check and write `changes` (versions decide); returns the steps written and the
/// manifest entries to commit, or why the whole set is refused. The caller holds the state lock
/// and commits the entries; the intent is recorded here, before the first file is touched.
pub fn write_changes(
    sh: &Shared,
    state: &mut State,
    changes: &[Change],
    equal: apply::Equal,
    local_edits: LocalEdits,
) -> std::io::Result<Result<Written, apply::Rejection>> {
    let held = |path: &str| std::fs::read(sh.data_dir.join(path)).ok();
    let steps = match apply::plan(&state.manifest, changes, &sh.filter, equal, &held)
        .and_then(|steps| apply::check(&sh.data_dir, &steps).map(|()| steps))
    {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    if sh.stopping.load(Ordering::SeqCst) && !steps.is_empty() {
        return Err(std::io::Error::other("shutting down"));
    }
    if !steps.is_empty() {
        crate::crashpoint::hit("apply-planned");
    }
    let _writing = sh.files.blocking_write();
    // A node that publishes keeps a local edit the detector has not seen yet (see
    // `local_edit`): the remote change is recorded, not written.
    let (steps, kept): (Vec<_>, Vec<_>) =
        if local_edits == LocalEdits::Keep && sh.publishes && state.synced {
            steps
                .into_iter()
                .partition(|step| !local_edit(sh, state, step))
        } else {
            (steps, Vec::new())
        };
    record_intent(state, &steps)?;
    let mut entries = apply::execute(&sh.data_dir, &steps)?;
    for step in &kept {
        let (path, entry) = match step {
            apply::Step::Write {
                path,
                sha256,
                version,
                bytes,
                ..
            } => {
                let mut e = Entry::tombstone(version.clone());
                e.deleted = false;
                e.sha256 = *sha256;
                e.size = bytes.len() as u64;
                (path, e)
            }
            apply::Step::Delete { path, version, .. } => (path, Entry::tombstone(version.clone())),
        };
        log::info!(
            "{path}: holds a local edit not published yet; the remote change (version {}.{}) is recorded but not written, and the local edit is published over it",
            entry.version.hlc,
            entry.version.origin
        );
        entries.push((path.clone(), entry));
    }
    drop(_writing);
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
    Ok(Ok((steps, entries)))
}

/// Whether the file a step would write or delete holds a local edit of this node that the
/// detector has not published yet: it differs from what the manifest recorded, and it is neither
/// what the step brings nor what an interrupted apply of this node was writing. Writing over it
/// would lose the edit silently (the scan would then find nothing to publish). Instead the
/// remote change is recorded without touching the file, so the next scan sees the file differ
/// from the manifest and publishes it with a version newer than the remote change (the clock
/// observed it): every node ends with the local edit, exactly as if it had been made a moment
/// after the remote change arrived. Files merged field by field (`global.xml`) are joined
/// instead (`merge`). The caller holds the state lock and the files lock, so the detector
/// cannot be scanning meanwhile.
fn local_edit(sh: &Shared, state: &State, step: &apply::Step) -> bool {
    let path = step.path();
    if crate::update_sequence::merged(path) {
        return false;
    }
    let recorded = state.manifest.entries.get(path).filter(|e| !e.deleted);
    let intended = state.intent.get(path);
    let meta = match std::fs::symlink_metadata(sh.data_dir.join(path)) {
        Ok(m) => m,
        // Gone: a local deletion if the manifest says it was here and it is not this node's
        // own interrupted delete.
        Err(_) => return recorded.is_some() && intended != Some(&None),
    };
    if !meta.is_file() {
        return false;
    }
    if recorded.is_some_and(|e| e.same_stat(&crate::datadir::FileStat::from_metadata(&meta))) {
        return false;
    }
    let Ok(sha) = crate::datadir::sha256_file(&sh.data_dir.join(path)) else {
        return false;
    };
    let brought = match step {
        apply::Step::Write { sha256, .. } => Some(*sha256),
        apply::Step::Delete { .. } => None,
    };
    recorded.is_none_or(|e| e.sha256 != sha) && brought != Some(sha) && intended != Some(&Some(sha))
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

/// Apply consecutive complete Deltas as one batch under the state lock (blocking): one intent,
/// one write pass and one journal record for all of them, so a slave working through a backlog
/// (a catch-up, a burst cut into several Deltas) pays the durable-write costs once per batch
/// rather than once per Delta. The result equals applying them one by one: per path the change
/// with the highest version wins either way. Each Delta still gets its own outcome — a refused
/// Delta is refused alone, a duplicate is skipped, a gap is reported — and a crash before the
/// record leaves all of them unacknowledged, to be delivered and applied again.
pub fn apply_deltas(sh: &Shared, deltas: &[Delta]) -> std::io::Result<Vec<Outcome>> {
    let mut state = sh.state.lock().unwrap();
    let mut positions: BTreeMap<String, Position> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(deltas.len());
    // Path → the winning change among the accepted Deltas.
    let mut merged: BTreeMap<&str, Cow<Change>> = BTreeMap::new();
    let mut hlc = 0;
    for delta in deltas {
        let pos = (positions.get(&delta.origin))
            .or_else(|| state.applied.get(&delta.origin))
            .copied();
        if pos.is_some_and(|p| p.epoch == delta.epoch && delta.seq <= p.seq) {
            outcomes.push(Outcome::Duplicate);
            continue;
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
            crate::telemetry::record_gap();
        }
        // Consumed either way, so the session moves on; the position records that it was seen.
        positions.insert(
            delta.origin.clone(),
            Position {
                epoch: delta.epoch,
                seq: delta.seq,
            },
        );
        hlc = (delta.changes.iter().map(|c| c.version.hlc)).fold(hlc, u64::max);
        if let Err(why) = apply::refuse(&sh.data_dir, &sh.filter, &delta.changes) {
            outcomes.push(Outcome::Rejected(why.to_string()));
            continue;
        }
        for c in &delta.changes {
            match merged.get(c.path.as_str()) {
                // Merged field by field: the join of both keeps what each brings.
                Some(w) if crate::update_sequence::merged(&c.path) => {
                    let j = crate::update_sequence::join(
                        &crate::update_sequence::incoming(w),
                        &crate::update_sequence::incoming(c),
                    );
                    merged.insert(
                        &c.path,
                        Cow::Owned(crate::update_sequence::to_change(&c.path, j)),
                    );
                }
                Some(w) if w.version >= c.version => {}
                _ => {
                    merged.insert(&c.path, Cow::Borrowed(c));
                }
            }
        }
        sh.gate
            .lock()
            .unwrap()
            .dangling
            .extend(delta.dangling.iter().cloned());
        outcomes.push(Outcome::Applied { steps: 0, gap });
    }
    let changes: Vec<Change> = merged.into_values().map(Cow::into_owned).collect();
    let written = match write_changes(
        sh,
        &mut state,
        &changes,
        apply::Equal::Skip,
        LocalEdits::Keep,
    )? {
        Ok((_, entries)) => {
            crate::crashpoint::hit("delta-written");
            entries
        }
        // Every Delta passed `refuse` alone; the merge of them cannot be refused.
        Err(why) => {
            return Err(std::io::Error::other(format!(
                "merged deltas refused: {why}"
            )))
        }
    };
    // How many of each Delta's changes were written (those whose version won).
    let won: BTreeMap<&str, &crate::hlc::Version> = written
        .iter()
        .map(|(p, e)| (p.as_str(), &e.version))
        .collect();
    for (delta, outcome) in deltas.iter().zip(outcomes.iter_mut()) {
        if let Outcome::Applied { steps, .. } = outcome {
            *steps = (delta.changes.iter())
                .filter(|c| won.get(c.path.as_str()) == Some(&&c.version))
                .count();
        }
    }
    state.commit(Record {
        entries: written,
        applied: positions.into_iter().collect(),
        hlc,
        ..Default::default()
    })?;
    crate::crashpoint::hit("delta-recorded");
    Ok(outcomes)
}
