//! The one path from a local edit to Deltas in the outbox, taken by the detector (GeoServer
//! saved files on this node) and by an administrator's edit through gscluster ([`edit`]: an
//! import, a rollback):
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
) -> io::Result<(Delta, Sent)> {
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
    let bytes = payloads.iter().map(Vec::len).sum();
    Ok((
        d,
        Sent {
            messages: payloads.len(),
            bytes,
        },
    ))
}

/// What a Delta takes on the wire.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub messages: usize,
    /// The MQTT payloads' bytes (compressed and framed).
    pub bytes: usize,
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} message(s), {} bytes", self.messages, self.bytes)
    }
}

/// What [`edit`] did.
#[derive(Debug, Default)]
pub struct Edited {
    pub written: usize,
    pub deleted: usize,
    /// Deltas this node published it as (empty on a pure slave or when nothing changed).
    pub seqs: Vec<u64>,
    /// The first written file GeoServer does not re-read by itself (`reload::need`): `None`
    /// when this node's GeoServer needs no reload for it.
    pub reload: Option<String>,
}

/// Why [`edit`] wrote nothing (refused), or failed while writing.
#[derive(Debug)]
pub enum EditError {
    Refused(String),
    Failed(String),
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EditError::Refused(e) => write!(f, "refused: {e}; nothing was written"),
            EditError::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// An edit an administrator makes through gscluster (an import, a rollback), under the state
/// lock: `wanted` (path → new content; `None` deletes) gets one new version of this node, as
/// if made here; it is written like a Delta (plan, confinement, intent, durable writes,
/// catalog index), except that an edit here the detector has not published yet is
/// overwritten — the administrator asked for these files; on a node that publishes, what was
/// written (a merged `global.xml` may differ from what was asked) goes to the outbox like the
/// detector's Deltas, with `dangling` (references the edit knowingly leaves unresolved); then
/// one record: `record` (whatever the caller records with it) with the manifest entries, the
/// sequence number and the history's group (`history`: origin and kind).
pub fn edit(
    sh: &Shared,
    state: &mut State,
    wanted: &std::collections::BTreeMap<std::borrow::Cow<str>, Option<&[u8]>>,
    dangling: &[String],
    mut record: crate::state::Record,
    history: (&str, crate::history::Kind),
) -> Result<Edited, EditError> {
    use crate::slave::{self, apply};
    let hlc = sh.clock.lock().unwrap().tick();
    let version = Version::new(hlc, sh.node_id.clone());
    let changes: Vec<Change> = (wanted.iter())
        .map(|(path, bytes)| match bytes {
            Some(b) => write(&state.manifest, path.to_string(), b.to_vec(), &version),
            None => delete(&state.manifest, path.to_string(), &version),
        })
        .collect();
    let written = slave::write_changes(
        sh,
        state,
        &changes,
        apply::Equal::Rewrite,
        slave::LocalEdits::Overwrite,
    )
    .map_err(|e| EditError::Failed(format!("writing files: {e}")))?;
    let slave::Written {
        steps,
        entries,
        reload,
        ..
    } = written.map_err(|why| EditError::Refused(why.to_string()))?;
    let mut edited = Edited {
        reload,
        ..Default::default()
    };
    for step in &steps {
        match step {
            apply::Step::Write { .. } => edited.written += 1,
            apply::Step::Delete { .. } => edited.deleted += 1,
        }
    }
    if state.history {
        // The content went with the intent (`slave::record_intent`).
        let paths = entries.iter().map(|(p, _)| p.clone()).collect();
        let note = crate::history::note::Note::one(history.0, history.1, paths);
        record.history = Some(Box::new(note));
    }
    record.entries = entries;
    record.hlc = hlc;
    if sh.publishes && !steps.is_empty() {
        edited.seqs = publish(sh, state, steps, dangling)
            .map_err(|e| EditError::Failed(format!("outbox: {e}")))?;
        record.next_seq = edited.seqs.last().map(|s| s + 1);
    }
    (state.commit(record)).map_err(|e| EditError::Failed(format!("state: {e}")))?;
    Ok(edited)
}

/// The references that would not resolve once `wanted` is applied, leaving out those the
/// edit's origin could not resolve either (`dangling`).
pub fn unresolved_after(
    sh: &Shared,
    wanted: &std::collections::BTreeMap<std::borrow::Cow<str>, Option<&[u8]>>,
    dangling: &[String],
) -> Vec<String> {
    let updates: Vec<(&str, Option<&[u8]>)> =
        (wanted.iter()).map(|(p, b)| (p.as_ref(), *b)).collect();
    let touched: Vec<String> = wanted.keys().map(|p| p.to_string()).collect();
    let exists = |rel: &str| match wanted.get(rel) {
        Some(b) => b.is_some(),
        None => sh.data_dir.join(rel).is_file(),
    };
    let dangling: std::collections::HashSet<&str> = dangling.iter().map(String::as_str).collect();
    (sh.catalog.lock().unwrap())
        .unresolved_if(&updates, &touched, exists)
        .into_iter()
        .filter(|u| !dangling.contains(u.missing.as_str()))
        .map(|u| format!("{} refers to missing {}", u.path, u.missing))
        .collect()
}

/// The written steps as this node's Deltas in the outbox; returns their sequence numbers.
fn publish(
    sh: &Shared,
    state: &State,
    steps: Vec<crate::slave::apply::Step>,
    dangling: &[String],
) -> io::Result<Vec<u64>> {
    let mut seqs: Vec<u64> = Vec::new();
    let mut cut = Cutter::default();
    let mut put = |changes: Vec<Change>| -> io::Result<()> {
        let seq = state.next_seq + seqs.len() as u64;
        enqueue(sh, state, seq, changes, dangling)?;
        seqs.push(seq);
        Ok(())
    };
    for step in steps {
        if let Some((full, _)) = cut.push(step.into_change(), ()) {
            put(full)?;
        }
    }
    if let Some((last, _)) = cut.finish() {
        put(last)?;
    }
    Ok(seqs)
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
