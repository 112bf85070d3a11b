//! Slave side: apply a verified Delta (or a resync batch) to the data directory and record it.
//!
//! Receiving, ordering and acknowledging happen in `receive`; this module decides and writes.
//! Everything here runs under the state lock, on a blocking thread.

pub mod apply;

use crate::context::Shared;
use crate::datadir::Entry;
use crate::delta::{Change, Delta};
use crate::reload::{need, Kind};
use crate::state::{holes, Hole, Position, Record, State};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

/// How one Delta ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Written (possibly nothing, when every change was older than what is here).
    Applied { steps: usize, gap: bool },
    /// Already applied earlier (QoS 1 redelivery or replay).
    Duplicate,
    /// Refused as a whole; nothing written.
    Rejected(String),
}

/// What [`write_changes`] wrote: the steps, and the manifest entries they leave behind.
pub struct Written {
    pub steps: Vec<apply::Step>,
    pub entries: Vec<(String, Entry)>,
    /// What GeoServer needs for these files: `None` when it re-reads every one of them by
    /// itself (`reload::need`), else the first that needs a reload.
    pub reload: Option<String>,
    /// Every file GeoServer must be told of (a reload, or a REST call each), and how it changed.
    pub objects: Vec<(String, Kind)>,
}

/// The data directory as `reload::need` looks at it.
struct DataDir<'a> {
    dir: &'a std::path::Path,
    catalog: &'a crate::datadir::CatalogIndex,
}

impl need::Facts for DataDir<'_> {
    fn is_style_body(&self, path: &str) -> bool {
        self.catalog.is_needed_file(path)
    }
    fn read(&self, path: &str) -> Option<Cow<'_, [u8]>> {
        std::fs::read(self.dir.join(path)).ok().map(Cow::Owned)
    }
}

/// The first of `steps` that GeoServer does not re-read by itself, if any.
/// The steps GeoServer does not re-read by itself (`reload::need`), with how each changed the
/// file (`existed`: the paths that were live before).
fn needs_reload(
    sh: &Shared,
    catalog: &crate::datadir::CatalogIndex,
    steps: &[apply::Step],
    existed: &BTreeSet<String>,
) -> Vec<(String, Kind)> {
    let facts = DataDir {
        dir: &sh.data_dir,
        catalog,
    };
    (steps.iter())
        .filter(|s| {
            let written = matches!(s, apply::Step::Write { .. });
            need::need(s.path(), written, &facts) == need::Need::Reload
        })
        .map(|s| {
            let kind = match s {
                apply::Step::Delete { .. } => Kind::Deleted,
                _ if existed.contains(s.path()) => Kind::Modified,
                _ => Kind::Added,
            };
            (s.path().to_string(), kind)
        })
        .collect()
}

/// Why changes could not be applied (nothing of them is recorded; a Delta stays
/// unacknowledged and is applied again).
#[derive(Debug)]
pub enum ApplyError {
    /// The node is stopping: nothing was written.
    Stopping,
    /// A file or the journal could not be written; the error names the file.
    Io(std::io::Error),
    /// The blocking task that applied them died.
    Task(String),
    /// The merge of Deltas that each passed the checks alone was refused (a defect).
    Refused(String),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Stopping => f.write_str("the node is stopping"),
            ApplyError::Io(e) => write!(f, "{e}"),
            ApplyError::Task(e) => write!(f, "apply task failed: {e}"),
            ApplyError::Refused(e) => write!(f, "merged deltas refused: {e}"),
        }
    }
}

impl std::error::Error for ApplyError {}

impl From<std::io::Error> for ApplyError {
    fn from(e: std::io::Error) -> Self {
        ApplyError::Io(e)
    }
}

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
) -> Result<Result<Written, apply::Rejection>, ApplyError> {
    let held = |path: &str| std::fs::read(sh.data_dir.join(path)).ok();
    let steps = match apply::plan(&state.manifest, changes, &sh.filter, equal, &held)
        .and_then(|steps| apply::check(&sh.data_dir, &steps).map(|()| steps))
    {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    if sh.stopping.load(Ordering::SeqCst) && !steps.is_empty() {
        return Err(ApplyError::Stopping);
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
    let existed: BTreeSet<String> = (steps.iter())
        .filter(|s| state.manifest.live_entry(s.path()).is_some())
        .map(|s| s.path().to_string())
        .collect();
    record_intent(state, &sh.data_dir, &steps)?;
    let mut entries = apply::execute(&sh.data_dir, &steps)?;
    for step in &kept {
        let (path, entry) = match step {
            apply::Step::Write {
                path,
                sha256,
                version,
                bytes,
                ..
            } => (
                path,
                Entry::live(*sha256, bytes.len() as u64, version.clone()),
            ),
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
    // A node bootstrapping (never synced, its first resync round running) writes the whole
    // tree: the round indexes it once at its end (`resync::local::conclude`), which costs far
    // less than batch after batch. Anything else is indexed as it is written — a pure master
    // is never synced, and its imports must be indexed.
    let bootstrapping = !state.synced && sh.resyncing.load(std::sync::atomic::Ordering::SeqCst);
    if !bootstrapping {
        // The stat each written file got: the index records what it read with it.
        let stats: std::collections::HashMap<&str, crate::datadir::FileStat> = (entries.iter())
            .map(|(p, e)| (p.as_str(), e.stat()))
            .collect();
        let indexed: Vec<(String, crate::datadir::Content)> = (steps.iter())
            .map(|step| match step {
                apply::Step::Write { path, bytes, .. } => {
                    let stat = stats.get(path.as_str()).copied().unwrap_or_default();
                    (path.clone(), Some((Cow::Borrowed(&bytes[..]), stat)))
                }
                apply::Step::Delete { path, .. } => (path.clone(), None),
            })
            .collect();
        catalog.update_many(indexed);
    } else {
        catalog.skipped();
    }
    let mut gate = sh.gate.lock().unwrap();
    for step in &steps {
        gate.touched.insert(step.path().to_string());
    }
    drop(gate);
    let objects = needs_reload(sh, &catalog, &steps, &existed);
    Ok(Ok(Written {
        reload: objects.first().map(|(p, _)| p.clone()),
        objects,
        steps,
        entries,
    }))
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
    let recorded = state.manifest.live_entry(path);
    let recorded = recorded.as_ref();
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

/// Record holes found without a Delta (a stall: an origin announced more than arrived), each
/// widening the one its origin may already have.
pub fn record_holes(state: &mut State, found: &[(String, Hole)]) -> std::io::Result<()> {
    let holes = (found.iter())
        .map(|(origin, h)| {
            let old = state.holes.get(origin).copied();
            (origin.clone(), Some(holes::widen(old, *h)))
        })
        .collect();
    state.commit(Record {
        holes,
        ..Default::default()
    })
}

/// Record what `steps` are about to do (see [`Record::intent`]). Nothing to record for an
/// empty plan.
pub fn record_intent(
    state: &mut State,
    data_dir: &std::path::Path,
    steps: &[apply::Step],
) -> std::io::Result<()> {
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
    let history_content = if state.records_applies() {
        (steps.iter())
            .filter_map(|s| match s {
                apply::Step::Write { sha256, bytes, .. } => Some((*sha256, bytes.clone())),
                apply::Step::Delete { .. } => None,
            })
            .collect()
    } else {
        Vec::new()
    };
    // Until the history's base is complete (the upkeep keeps it in the background), what the
    // steps replace is kept as the base's now, read before it is overwritten.
    let history_base = if state.history && !state.base_done {
        (steps.iter())
            .filter_map(|s| {
                let path = s.path();
                let held = state.manifest.live_entry(path)?;
                let bytes = std::fs::read(data_dir.join(path)).ok()?;
                let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&bytes).into();
                (sha == held.sha256).then(|| (path.to_string(), sha, bytes))
            })
            .collect()
    } else {
        Vec::new()
    };
    state.commit(Record {
        intent,
        history_content,
        history_base,
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
pub fn apply_deltas(sh: &Shared, deltas: &[Delta]) -> Result<Applied, ApplyError> {
    let mut state = sh.state.lock().unwrap();
    // 1. Sort the Deltas out (duplicates, gaps, refusals) and merge what they change.
    let mut batch = sort_out(sh, &state, deltas);
    // 2. Write the winning changes (intent, files, catalog index).
    let changes: Vec<Change> = batch.merged.into_values().map(Cow::into_owned).collect();
    let (written, (reload, objects)) = match write_changes(
        sh,
        &mut state,
        &changes,
        apply::Equal::Skip,
        LocalEdits::Keep,
    )? {
        Ok(w) => {
            crate::crashpoint::hit("delta-written");
            (w.entries, (w.reload, w.objects))
        }
        // Every Delta passed `refuse` alone; the merge of them cannot be refused.
        Err(why) => return Err(ApplyError::Refused(why.to_string())),
    };
    // 3. Each Delta's changes that were written (those whose version won): how many, and for
    //    the history a group per Delta (its content went with the intent, `record_intent`).
    let won: BTreeMap<&str, &crate::hlc::Version> = (written.iter())
        .map(|(p, e)| (p.as_str(), &e.version))
        .collect();
    let mut note = crate::history::note::Note::default();
    for (delta, outcome) in deltas.iter().zip(batch.outcomes.iter_mut()) {
        if let Outcome::Applied { steps, .. } = outcome {
            let paths: Vec<String> = (delta.changes.iter())
                .filter(|c| won.get(c.path.as_str()) == Some(&&c.version))
                .map(|c| c.path.clone())
                .collect();
            *steps = paths.len();
            let kind = crate::history::Kind::Delta { seq: delta.seq };
            note.group(&delta.origin, kind, paths);
        }
    }
    // 4. One journal record: the manifest entries, every origin's new position, the history.
    let history = state.records_applies().then(|| Box::new(note));
    state.commit(Record {
        history,
        entries: written,
        applied: batch.positions.into_iter().collect(),
        holes: batch.holes.into_iter().collect(),
        hlc: batch.hlc,
        ..Default::default()
    })?;
    crate::crashpoint::hit("delta-recorded");
    Ok(Applied {
        outcomes: batch.outcomes,
        reload,
        objects,
    })
}

/// What [`apply_deltas`] did: each Delta's outcome, in order, and the first written path that
/// needs a GeoServer reload (`None`: none does).
pub struct Applied {
    pub outcomes: Vec<Outcome>,
    pub reload: Option<String>,
    /// The files GeoServer must be told of, and how each changed (`Written::objects`).
    pub objects: Vec<(String, Kind)>,
}

/// A group of Deltas sorted out: each one's outcome so far, the positions they move to, the
/// holes they make or fill, the winning change per path, and the highest clock they carry.
struct Batch<'a> {
    outcomes: Vec<Outcome>,
    positions: BTreeMap<String, Position>,
    holes: BTreeMap<String, Option<Hole>>,
    merged: BTreeMap<&'a str, Cow<'a, Change>>,
    hlc: u64,
}

/// Per Delta: a duplicate is skipped; a gap is counted and leaves a hole (versions make
/// applying it safe, a resync fetches what was skipped); a Delta the hole lacks fills it; a
/// refused Delta is refused alone; the changes of the others are merged, per path the highest
/// version winning (field by field for `global.xml`).
fn sort_out<'a>(sh: &Shared, state: &State, deltas: &'a [Delta]) -> Batch<'a> {
    let mut b = Batch {
        outcomes: Vec::with_capacity(deltas.len()),
        positions: BTreeMap::new(),
        holes: BTreeMap::new(),
        merged: BTreeMap::new(),
        hlc: 0,
    };
    for delta in deltas {
        let pos = (b.positions.get(&delta.origin))
            .or_else(|| state.applied.get(&delta.origin))
            .copied();
        let hole = match b.holes.get(&delta.origin) {
            Some(h) => *h,
            None => state.holes.get(&delta.origin).copied(),
        };
        let filling = hole.filter(|h| h.holds(delta.epoch, delta.seq));
        if filling.is_none() && pos.is_some_and(|p| p.epoch == delta.epoch && delta.seq <= p.seq) {
            b.outcomes.push(Outcome::Duplicate);
            continue;
        }
        let gap = filling.is_none() && is_gap(sh, pos, delta);
        if let Some(h) = filling {
            // A Delta this node lacks, arriving late (another broker's session, a slow link).
            let left = h.filled_by(delta.epoch, delta.seq);
            if left.is_none() {
                log::info!(
                    "the deltas missing from {} arrived after all: seqs {}–{} of epoch {} are all here",
                    delta.origin,
                    h.from,
                    h.to,
                    h.epoch
                );
            }
            b.holes.insert(delta.origin.clone(), left);
            // Behind the position (a gap's hole) it stays; at it (a stall's hole) it moves on.
            if !pos.is_some_and(|p| p.epoch == delta.epoch && p.seq >= delta.seq) {
                let here = Position {
                    epoch: delta.epoch,
                    seq: delta.seq,
                };
                b.positions.insert(delta.origin.clone(), here);
            }
        } else {
            if let Some(new) = gap
                .then(|| Hole::between(pos, delta.epoch, delta.seq))
                .flatten()
            {
                b.holes
                    .insert(delta.origin.clone(), Some(holes::widen(hole, new)));
            }
            // Consumed either way, so the session moves on; the position records that it was
            // seen (and the hole what was not).
            let here = Position {
                epoch: delta.epoch,
                seq: delta.seq,
            };
            b.positions.insert(delta.origin.clone(), here);
        }
        b.hlc = (delta.changes.iter().map(|c| c.version.hlc)).fold(b.hlc, u64::max);
        if let Err(why) = apply::refuse(&sh.data_dir, &sh.filter, &delta.changes) {
            b.outcomes.push(Outcome::Rejected(why.to_string()));
            continue;
        }
        for c in &delta.changes {
            match b.merged.get(c.path.as_str()) {
                // Merged field by field: the join of both keeps what each brings.
                Some(w) if crate::update_sequence::merged(&c.path) => {
                    let j = crate::update_sequence::join(&w.side(), &c.side());
                    b.merged
                        .insert(&c.path, Cow::Owned(Change::joined(&c.path, j)));
                }
                Some(w) if w.version >= c.version => {}
                _ => {
                    b.merged.insert(&c.path, Cow::Borrowed(c));
                }
            }
        }
        (sh.gate.lock().unwrap().dangling).extend(delta.dangling.iter().cloned());
        b.outcomes.push(Outcome::Applied { steps: 0, gap });
    }
    b
}

/// Whether `delta` is not the one after `pos` in its origin's stream (logged and counted).
fn is_gap(sh: &Shared, pos: Option<Position>, delta: &Delta) -> bool {
    let expected = match pos {
        Some(p) if p.epoch == delta.epoch => p.seq + 1,
        _ => 1,
    };
    if delta.seq == expected {
        return false;
    }
    log::warn!(
        "gap in deltas from {}: expected seq {expected} of epoch {}, got {} of epoch {}",
        delta.origin,
        pos.map(|p| p.epoch).unwrap_or(delta.epoch),
        delta.seq,
        delta.epoch
    );
    sh.gaps.fetch_add(1, Ordering::Relaxed);
    crate::telemetry::record_gap();
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::Op;
    use crate::hlc::Version;

    fn slave(data: &std::path::Path, state: &std::path::Path) -> Shared {
        let cfg = crate::config::parse(&format!(
            "[node]\nid = \"s\"\nrole = \"slave\"\nstate_dir = {state:?}\n[geoserver]\ndata_dir = {data:?}\n"
        ))
        .unwrap();
        crate::cmd::open_node(&cfg, State::open(state).unwrap()).unwrap()
    }

    fn delta(seq: u64) -> Delta {
        Delta {
            group: "default".into(),
            origin: "m".into(),
            epoch: 9,
            seq,
            changes: vec![Change {
                path: format!("styles/s{seq}.sld"),
                version: Version::new(seq, "m"),
                op: Op::write(format!("<sld n='{seq}'/>").into_bytes()),
                merged: None,
            }],
            dangling: vec![],
        }
    }

    fn apply(sh: &Shared, seq: u64) -> Outcome {
        let mut a = apply_deltas(sh, &[delta(seq)]).unwrap();
        a.outcomes.remove(0)
    }

    #[test]
    fn a_gap_leaves_a_hole_that_late_deltas_fill_and_that_is_no_duplicate() {
        let (data, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let sh = slave(data.path(), state.path());
        let applied = |gap| Outcome::Applied { steps: 1, gap };
        assert_eq!(apply(&sh, 1), applied(false));
        assert_eq!(apply(&sh, 4), applied(true), "2 and 3 skipped");
        let hole = |sh: &Shared| sh.state.lock().unwrap().holes.get("m").copied();
        assert_eq!(
            hole(&sh),
            Some(Hole {
                epoch: 9,
                from: 2,
                to: 3
            })
        );
        assert_eq!(apply(&sh, 1), Outcome::Duplicate);
        assert_eq!(apply(&sh, 4), Outcome::Duplicate);
        // Another broker's session delivers the skipped ones late: applied, not duplicates.
        assert_eq!(apply(&sh, 2), applied(false));
        assert_eq!(hole(&sh).map(|h| (h.from, h.to)), Some((3, 3)));
        drop(sh);
        let sh = slave(data.path(), state.path());
        assert_eq!(hole(&sh).map(|h| h.from), Some(3), "durable");
        assert_eq!(apply(&sh, 3), applied(false));
        assert_eq!(hole(&sh), None, "filled");
        assert_eq!(apply(&sh, 3), Outcome::Duplicate);
        let st = sh.state.lock().unwrap();
        assert_eq!(
            st.applied["m"],
            Position { epoch: 9, seq: 4 },
            "never moved back"
        );
        for seq in 1..=4 {
            assert!(
                data.path().join(format!("styles/s{seq}.sld")).exists(),
                "{seq}"
            );
        }
    }

    #[test]
    fn deltas_a_stall_showed_missing_move_the_position_as_they_fill_the_hole() {
        let (data, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let sh = slave(data.path(), state.path());
        apply(&sh, 1);
        let stalled = Hole {
            epoch: 9,
            from: 2,
            to: 3,
        };
        record_holes(&mut sh.state.lock().unwrap(), &[("m".into(), stalled)]).unwrap();
        assert_eq!(
            apply(&sh, 2),
            Outcome::Applied {
                steps: 1,
                gap: false
            }
        );
        apply(&sh, 3);
        let st = sh.state.lock().unwrap();
        assert!(st.holes.is_empty());
        assert_eq!(st.applied["m"].seq, 3);
    }
}
