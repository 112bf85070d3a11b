//! What a resync round does to this node, one page of the responder's manifest at a time
//! (blocking work, run on blocking threads): plan the page against this node's manifest and
//! the files within the page's range, write fetched batches, settle the page (deletions,
//! adoptions, files nobody knows), and conclude the round (positions, holes, synced).

use super::{plan, Item, Plan};
use crate::context::Shared;
use crate::datadir::{self, Entry, FileStat};
use crate::delta::{Change, Op};
use crate::hlc::Version;
use crate::slave::{self, apply};
use crate::state::{holes, Hole, Position, Record};
use std::collections::{BTreeMap, BTreeSet};
use std::io;

/// The part of the path space one page covers: after `low` (from the start with `None`), up
/// to and including `high` (to the end with `None`: the last page).
#[derive(Clone, Debug, Default)]
pub struct Range {
    pub low: Option<String>,
    pub high: Option<String>,
}

impl Range {
    fn holds(&self, path: &str) -> bool {
        self.low.as_deref().is_none_or(|l| path > l)
            && self.high.as_deref().is_none_or(|h| path <= h)
    }
}

/// Why a resync round failed (it starts over after a back-off).
#[derive(Debug)]
pub enum RoundError {
    /// Reading the data directory or the state failed; the error names the file.
    Io(io::Error),
    /// Writing what the responder sent failed (or the node is stopping).
    Apply(slave::ApplyError),
    /// What the responder sent does not fit this node (outside its filter, unsafe paths, a
    /// page outside the range asked for).
    Refused(String),
    /// The blocking task died.
    Task(String),
}

impl std::fmt::Display for RoundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoundError::Io(e) => write!(f, "{e}"),
            RoundError::Apply(e) => write!(f, "{e}"),
            RoundError::Refused(e) => f.write_str(e),
            RoundError::Task(e) => write!(f, "resync task failed: {e}"),
        }
    }
}

impl From<io::Error> for RoundError {
    fn from(e: io::Error) -> Self {
        RoundError::Io(e)
    }
}

impl From<slave::ApplyError> for RoundError {
    fn from(e: slave::ApplyError) -> Self {
        RoundError::Apply(e)
    }
}

/// Compare one page of the responder's manifest with this node's manifest and its files
/// within the page's range. `forget_unknown`: the responder and its clock (see [`plan`]).
pub fn plan_page(
    sh: &Shared,
    items: &[Item],
    range: &Range,
    forget_unknown: Option<(&str, u64)>,
) -> Result<Plan, RoundError> {
    if let Some(stray) = items.iter().find(|i| !range.holds(&i.path)) {
        return Err(RoundError::Refused(format!(
            "a manifest page holds {}, outside the range asked for",
            stray.path
        )));
    }
    let state = sh.state.lock().unwrap();
    let walk = datadir::walk(
        &sh.data_dir,
        &sh.filter,
        &sh.skip_dirs,
        range.low.as_deref(),
    )?;
    let high = range.high.as_deref();
    let files: BTreeMap<String, FileStat> = walk
        .take_while(|(p, _)| high.is_none_or(|h| p.as_str() <= h))
        .filter(|(p, _)| !crate::durable::is_temp_path(p))
        .collect();
    let on_disk = |path: &str| -> Option<[u8; 32]> {
        let stat = files.get(path)?;
        match state.manifest.live_entry(path) {
            Some(e) if e.same_stat(stat) => Some(e.sha256),
            _ => datadir::sha256_file(&sh.data_dir.join(path)).ok(),
        }
    };
    let replicated: BTreeSet<String> = files.keys().cloned().collect();
    // Only paths this node replicates are planned; others are not ours to fetch.
    let items: Vec<Item> = (items.iter())
        .filter(|i| sh.filter.matches(&i.path))
        .cloned()
        .collect();
    Ok(plan(
        &state.manifest,
        &items,
        on_disk,
        &replicated,
        forget_unknown,
    ))
}

/// Write one batch of fetched files; returns how many were written.
pub fn write_batch(sh: &Shared, changes: &[Change]) -> Result<usize, RoundError> {
    let mut state = sh.state.lock().unwrap();
    let keep = slave::LocalEdits::Keep;
    match slave::write_changes(sh, &mut state, changes, apply::Equal::Rewrite, keep)? {
        Ok(w) => {
            // The content went with the intent (`slave::record_intent`).
            let history = state.records_applies().then(|| {
                let paths = w.entries.iter().map(|(p, _)| p.clone()).collect();
                let kind = crate::history::Kind::Resync;
                Box::new(crate::history::note::Note::one(&sh.node_id, kind, paths))
            });
            state.commit(Record {
                entries: w.entries,
                history,
                ..Default::default()
            })?;
            Ok(w.steps.len())
        }
        Err(why) => Err(RoundError::Refused(format!("answer refused: {why}"))),
    }
}

/// Once a page's files are fetched: delete, adopt identical files, remove and forget the
/// files nobody knows, in one state record. Returns how many files were removed.
pub fn settle(sh: &Shared, plan: Plan) -> Result<usize, RoundError> {
    let mut state = sh.state.lock().unwrap();
    let deletes: Vec<Change> = plan
        .delete
        .iter()
        .map(|(path, version)| Change {
            path: path.clone(),
            version: version.clone(),
            op: Op::Delete,
            merged: None,
        })
        .collect();
    let keep = slave::LocalEdits::Keep;
    let (mut removed, mut entries) =
        match slave::write_changes(sh, &mut state, &deletes, apply::Equal::Rewrite, keep)? {
            Ok(w) => (w.steps.len(), w.entries),
            Err(why) => return Err(RoundError::Refused(format!("deletions refused: {why}"))),
        };
    for (path, version, sha256, merged) in plan.adopt {
        let Ok(stat) = std::fs::symlink_metadata(sh.data_dir.join(&path)) else {
            continue;
        };
        let stat = FileStat::from_metadata(&stat);
        let mut e = Entry::live(sha256, stat.size, version).with_merged(merged);
        e.set_stat(&stat);
        entries.push((path, e));
    }
    // Files no responder knows: remove them the way a deletion would, and forget them.
    let steps: Vec<apply::Step> = plan
        .forget
        .iter()
        .map(|p| apply::Step::Delete {
            path: p.clone(),
            version: Version::new(0, ""),
            merged: None,
        })
        .collect();
    if !steps.is_empty() {
        slave::record_intent(&mut state, &sh.data_dir, &steps)?;
        let _writing = sh.files.blocking_write();
        apply::execute(&sh.data_dir, &steps)?;
        removed += steps.len();
        for p in &plan.forget {
            log::info!("resync: removed {p}, which no master has");
        }
    }
    let history = state.records_applies().then(|| {
        let paths = entries.iter().map(|(p, _)| p.clone()).collect();
        let mut note =
            crate::history::note::Note::one(&sh.node_id, crate::history::Kind::Resync, paths);
        note.read_missing(&sh.data_dir, &entries);
        Box::new(note)
    });
    state.commit(Record {
        entries,
        forget: plan.forget,
        history,
        ..Default::default()
    })?;
    Ok(removed)
}

/// After the last page: record the positions and fill the holes `responder` covers. Returns
/// the holes left, described.
pub fn conclude(
    sh: &Shared,
    responder: &str,
    positions: BTreeMap<String, Position>,
) -> Result<Option<String>, RoundError> {
    let mut state = sh.state.lock().unwrap();
    let bootstrapped = !state.synced;
    let holes: Vec<(String, Option<Hole>)> = (state.holes.iter())
        .filter(|(origin, h)| h.covered_by(origin, responder, &positions))
        .map(|(origin, _)| (origin.clone(), None))
        .collect();
    let mut applied = Vec::new();
    for (origin, remote) in positions {
        if origin == sh.node_id {
            continue;
        }
        let keep_local = state
            .applied
            .get(&origin)
            .is_some_and(|l| l.epoch == remote.epoch && l.seq >= remote.seq);
        if !keep_local {
            applied.push((origin, remote));
        }
    }
    if bootstrapped {
        // The files this node wrote while it was not synced were not indexed one batch at a
        // time (`slave::write_changes`): index them now, in one pass, before any reload.
        let started = std::time::Instant::now();
        let mut catalog = sh.catalog.lock().unwrap();
        let (read, forgotten) = catalog.refresh(&sh.data_dir, &sh.filter, &sh.skip_dirs)?;
        log::info!(
            "catalog index: {read} file(s) indexed and {forgotten} forgotten after the bootstrap, in {} ms",
            started.elapsed().as_millis()
        );
    }
    state.commit(Record {
        applied,
        holes,
        synced: true,
        ..Default::default()
    })?;
    Ok(holes::describe_holes(&state.holes))
}
