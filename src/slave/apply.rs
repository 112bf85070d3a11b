//! Plan (pure) and write (I/O) one Delta into the data directory.
//!
//! [`plan`] decides, from the manifest alone, which changes win: a change applies only when its
//! version is above the version the manifest holds for that path (tombstones included), so
//! applying a Delta twice, or an older Delta after a newer one, changes nothing. [`execute`]
//! writes in catalog order (referenced objects first), deletes in reverse order, removes
//! folders the deletes emptied, and returns the manifest entries to commit.

use crate::atomic;
use crate::datadir::{self, Entry, Filter, Manifest};
use crate::delta::{Change, Op};
use crate::hlc::Version;
use crate::merge::{self, Merged};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

mod confine;
pub use confine::{check, refuse};

/// From this many files on, a batch is made durable with two filesystem flushes rather than
/// one fsync per file.
const BULK_WRITES: usize = 64;

/// One step of an apply plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Write {
        path: String,
        bytes: Vec<u8>,
        sha256: [u8; 32],
        version: Version,
        /// The merge state of a path merged field by field (see `merge`).
        merged: Option<Merged>,
    },
    Delete {
        path: String,
        version: Version,
        merged: Option<Merged>,
    },
}

impl Step {
    pub fn path(&self) -> &str {
        match self {
            Step::Write { path, .. } | Step::Delete { path, .. } => path,
        }
    }
}

/// Why a whole Delta is refused. Nothing of it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The path is outside the replicate filter of this node.
    Filtered(String),
    /// A write would leave the data directory (through a symlinked folder).
    Escapes(String),
    /// Two changes of one Delta name the same path.
    Duplicate(String),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Filtered(p) => write!(f, "{p}: outside this node's replicate filter"),
            Rejection::Escapes(p) => write!(f, "{p}: would be written outside the data directory"),
            Rejection::Duplicate(p) => write!(f, "{p}: changed twice in one delta"),
        }
    }
}

/// Whether a change whose version equals the manifest's is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Equal {
    /// Deltas: an equal version is the same change again (a redelivery): skip it.
    Skip,
    /// Resync: the asker fetched it because the file here differs from that version (drift,
    /// a crash mid-write): write it.
    Rewrite,
}

/// Decide which of `changes` to apply, in the order to apply them. `held` reads the file this
/// node holds at a path; it is needed only for paths merged field by field (`merge`), whose
/// result may be this node's document with another node's counter.
pub fn plan(
    manifest: &Manifest,
    changes: &[Change],
    filter: &Filter,
    equal: Equal,
    held: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<Vec<Step>, Rejection> {
    confine::screen(filter, changes)?;
    let mut writes = Vec::new();
    let mut deletes = Vec::new();
    for c in changes {
        if merge::merged(&c.path) {
            match merged_step(manifest.entries.get(&c.path), c, held) {
                Some(step @ Step::Write { .. }) => writes.push(step),
                Some(step) => deletes.push(step),
                None => {}
            }
            continue;
        }
        if let Some(current) = manifest.entries.get(&c.path) {
            if c.version < current.version || (c.version == current.version && equal == Equal::Skip)
            {
                continue;
            }
        }
        match &c.op {
            Op::Write { bytes, sha256 } => writes.push(Step::Write {
                path: c.path.clone(),
                bytes: bytes.clone(),
                sha256: sha256.as_slice().try_into().unwrap_or([0; 32]),
                version: c.version.clone(),
                merged: None,
            }),
            Op::Delete => deletes.push(Step::Delete {
                path: c.path.clone(),
                version: c.version.clone(),
                merged: None,
            }),
        }
    }
    // Deletes first (referrers before what they refer to), then writes (referenced objects
    // first): a rename never leaves two files with the same id on disk.
    deletes.extend(writes);
    datadir::sort_for_apply(&mut deletes, |s| {
        (s.path(), matches!(s, Step::Delete { .. }))
    });
    Ok(deletes)
}

/// The step for a change of a path merged field by field: the join of what this node holds
/// with what the change brings, or `None` when that is what this node already holds. The file
/// here takes part only if it is what the manifest recorded; otherwise (drift, or a local edit
/// not published yet) it lends its version and counter but not its document or settings
/// version, so that the cluster's settings win when they arrive.
fn merged_step(
    current: Option<&Entry>,
    c: &Change,
    held: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Option<Step> {
    let incoming = merge::incoming(c);
    let joined = match current {
        None => merge::join(&incoming, &incoming),
        Some(e) => {
            let doc = if e.deleted {
                None
            } else {
                held(&c.path).filter(|b| Sha256::digest(b).as_slice() == e.sha256)
            };
            let available = e.deleted || doc.is_some();
            let settings = e.merged.as_ref().map_or(&e.version, |m| &m.settings);
            let counter = (e.merged.as_ref().map(|m| m.counter))
                .or_else(|| doc.as_deref().and_then(merge::counter).map(|(_, n)| n))
                .unwrap_or(0);
            let nothing = Version::new(0, "");
            let mine = merge::Side {
                version: &e.version,
                settings: if available { settings } else { &nothing },
                counter,
                doc: doc.as_deref(),
            };
            let joined = merge::join(&mine, &incoming);
            let same_bytes = match &joined.bytes {
                Some(b) => !e.deleted && Sha256::digest(b).as_slice() == e.sha256,
                None => e.deleted,
            };
            if available
                && same_bytes
                && joined.version == e.version
                && e.merged.as_deref() == Some(&joined.merged)
            {
                return None;
            }
            joined
        }
    };
    let path = c.path.clone();
    Some(match joined.bytes {
        Some(bytes) => Step::Write {
            path,
            sha256: Sha256::digest(&bytes).into(),
            bytes,
            version: joined.version,
            merged: Some(joined.merged),
        },
        None => Step::Delete {
            path,
            version: joined.version,
            merged: Some(joined.merged),
        },
    })
}

/// Write the steps durably; returns the manifest entries describing the result.
///
/// Durability is batched: every new file is written beside its target and fsynced, then all are
/// renamed into place in plan order, then each folder whose entries changed is fsynced once —
/// one fsync per file plus one per folder instead of two per file. Until the caller records the
/// entries, a crash anywhere leaves files that are either old or new, and the Delta is applied
/// again (it was not acknowledged).
pub fn execute(data_dir: &Path, steps: &[Step]) -> io::Result<Vec<(String, Entry)>> {
    let mut dirs = BTreeSet::new();
    let mut staged = Vec::new();
    // Many files: one filesystem flush before the renames and one after, instead of an fsync
    // per file and per folder (a bootstrap writes tens of thousands of files).
    let writes = steps
        .iter()
        .filter(|s| matches!(s, Step::Write { .. }))
        .count();
    let bulk = writes >= BULK_WRITES;
    for step in steps {
        let target = data_dir.join(step.path());
        match step {
            Step::Delete { .. } => {
                match std::fs::remove_file(&target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                remove_empty_parents(data_dir, &target, &mut dirs);
            }
            Step::Write { bytes, .. } => {
                if let Some(parent) = target.parent() {
                    atomic::create_dirs(parent)?;
                }
                let tmp = if bulk {
                    atomic::stage_unsynced(&target, bytes)?
                } else {
                    atomic::stage(&target, bytes)?
                };
                staged.push((tmp, target));
            }
        }
    }
    if bulk {
        atomic::sync_filesystem(data_dir)?;
    }
    for (tmp, target) in staged {
        tmp.persist(&target).map_err(|e| e.error)?;
        crate::crashpoint::hit("file-written");
        if let Some(parent) = target.parent() {
            dirs.insert(parent.to_path_buf());
        }
    }
    if bulk {
        atomic::sync_filesystem(data_dir)?;
    } else {
        for dir in &dirs {
            match atomic::fsync_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    let mut entries = Vec::with_capacity(steps.len());
    for step in steps {
        match step {
            Step::Write {
                path,
                sha256,
                version,
                merged,
                ..
            } => {
                let m = data_dir.join(path).metadata()?;
                entries.push((
                    path.clone(),
                    Entry {
                        sha256: *sha256,
                        size: m.len(),
                        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                        ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
                        ino: m.ino(),
                        version: version.clone(),
                        deleted: false,
                        merged: merged.clone().map(Box::new),
                    },
                ));
            }
            Step::Delete {
                path,
                version,
                merged,
            } => {
                let mut e = Entry::tombstone(version.clone());
                e.merged = merged.clone().map(Box::new);
                entries.push((path.clone(), e));
            }
        }
    }
    Ok(entries)
}

/// Remove the temporary files an interrupted run left (`.gscluster-*.tmp`, see atomic.rs): a
/// process killed while writing has no chance to. Only folders a replicated file can be in are
/// visited, since only there does gscluster write. Returns how many were removed.
pub fn remove_leftovers(data_dir: &Path, filter: &Filter) -> usize {
    let mut removed = 0;
    let mut stack = vec![data_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if ft.is_dir() {
                if datadir::to_rel(data_dir, &path).is_some_and(|rel| filter.may_contain(&rel)) {
                    stack.push(path);
                }
            } else if ft.is_file() && name.starts_with(".gscluster-") && name.ends_with(".tmp") {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) => log::warn!("cannot remove leftover {}: {e}", path.display()),
                }
            }
        }
    }
    removed
}

/// GeoServer removes an object's folder with it; do the same for folders left empty. Every
/// folder whose entries changed goes into `dirs`, to be fsynced.
fn remove_empty_parents(data_dir: &Path, file: &Path, dirs: &mut BTreeSet<PathBuf>) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        dirs.insert(d.to_path_buf());
        if d == data_dir || !d.starts_with(data_dir) {
            break;
        }
        // remove_dir fails on a non-empty folder, which is where we stop.
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::Delta;

    fn filter() -> Filter {
        Filter::new(&datadir::default_include(), &datadir::default_exclude()).unwrap()
    }

    fn delta(changes: Vec<Change>) -> Delta {
        Delta {
            group: "g".into(),
            origin: "a".into(),
            epoch: 1,
            seq: 1,
            changes,
            dangling: vec![],
        }
    }

    /// The plan of `changes` on a node that holds nothing yet.
    fn fresh_plan(changes: &[Change]) -> Vec<Step> {
        plan(
            &Manifest::default(),
            changes,
            &filter(),
            Equal::Skip,
            &|_| None,
        )
        .unwrap()
    }

    fn write(path: &str, hlc: u64, body: &str) -> Change {
        Change {
            path: path.into(),
            version: Version::new(hlc, "a"),
            op: Op::write(body.as_bytes().to_vec()),
            merged: None,
        }
    }

    fn delete(path: &str, hlc: u64) -> Change {
        Change {
            path: path.into(),
            version: Version::new(hlc, "a"),
            op: Op::Delete,
            merged: None,
        }
    }

    #[test]
    fn deletes_come_first_in_reverse_catalog_order_then_writes_in_order() {
        let d = delta(vec![
            write("workspaces/w/s/r/layer.xml", 5, "l"),
            write("workspaces/w/s/r/featuretype.xml", 5, "f"),
            write("workspaces/w/s/datastore.xml", 5, "d"),
            write("workspaces/w/workspace.xml", 5, "w"),
            delete("workspaces/o/workspace.xml", 5),
            delete("workspaces/o/s/r/layer.xml", 5),
        ]);
        let steps = fresh_plan(&d.changes);
        let paths: Vec<&str> = steps.iter().map(|s| s.path()).collect();
        assert_eq!(
            paths,
            [
                "workspaces/o/s/r/layer.xml",
                "workspaces/o/workspace.xml",
                "workspaces/w/workspace.xml",
                "workspaces/w/s/datastore.xml",
                "workspaces/w/s/r/featuretype.xml",
                "workspaces/w/s/r/layer.xml",
            ]
        );
    }

    #[test]
    fn older_or_equal_versions_are_skipped() {
        let mut m = Manifest::default();
        m.entries.insert(
            "styles/roads.sld".into(),
            Entry::tombstone(Version::new(10, "a")),
        );
        let d = delta(vec![write("styles/roads.sld", 10, "x")]);
        assert!(plan(&m, &d.changes, &filter(), Equal::Skip, &|_| None)
            .unwrap()
            .is_empty());
        // A resync fetched it because the file here differs: the same version is written.
        assert_eq!(
            plan(&m, &d.changes, &filter(), Equal::Rewrite, &|_| None)
                .unwrap()
                .len(),
            1
        );
        let d = delta(vec![write("styles/roads.sld", 11, "x")]);
        assert_eq!(
            plan(&m, &d.changes, &filter(), Equal::Skip, &|_| None)
                .unwrap()
                .len(),
            1
        );
    }

    fn global(title: &str, seq: u64) -> Vec<u8> {
        format!("<global><settings><title>{title}</title></settings><updateSequence>{seq}</updateSequence></global>").into_bytes()
    }

    fn global_change(hlc: u64, origin: &str, settings: u64, title: &str, seq: u64) -> Change {
        Change {
            path: "global.xml".into(),
            version: Version::new(hlc, origin),
            op: Op::write(global(title, seq)),
            merged: Some(Merged {
                settings: Version::new(settings, origin),
                counter: seq,
            }),
        }
    }

    #[test]
    fn a_counter_bump_merges_into_a_newer_settings_edit_instead_of_replacing_it() {
        let mut node = ModelNode::default();
        // b's settings edit (version 20, counter 11), then a's counter bump made later (version
        // 30, settings still 5, counter 12): the edit stays, the counter moves to 12.
        node.receive(&[global_change(20, "b", 20, "edited", 11)]);
        node.receive(&[global_change(30, "a", 5, "old", 12)]);
        assert_eq!(node.files["global.xml"], global("edited", 12));
        let e = &node.manifest.entries["global.xml"];
        assert_eq!(e.version, Version::new(30, "a"));
        assert_eq!(e.merged.as_deref().unwrap().settings, Version::new(20, "b"));
        // The same changes again, or a lower counter, change nothing.
        node.receive(&[global_change(30, "a", 5, "old", 12)]);
        node.receive(&[global_change(25, "a", 5, "old", 9)]);
        assert_eq!(node.files["global.xml"], global("edited", 12));
        // A newer settings edit with a lower counter takes the document, keeps the counter.
        node.receive(&[global_change(40, "a", 40, "newest", 3)]);
        assert_eq!(node.files["global.xml"], global("newest", 12));
    }

    #[test]
    fn a_merged_file_that_differs_here_lends_its_counter_but_not_its_document() {
        let mut node = ModelNode::default();
        node.receive(&[global_change(20, "b", 20, "edited", 11)]);
        // Drift: the file here is no longer what the manifest recorded.
        node.files
            .insert("global.xml".into(), global("drifted", 50));
        let steps = plan(
            &node.manifest,
            &[global_change(10, "a", 10, "older", 12)],
            &filter(),
            Equal::Rewrite,
            &|_| Some(global("drifted", 50)),
        )
        .unwrap();
        let Step::Write { bytes, merged, .. } = &steps[0] else {
            panic!("{steps:?}")
        };
        // The recorded counter (11) still counts; the drifted document does not, nor the
        // settings version that named the document which is gone: the resync that follows
        // drift brings the cluster's settings back, and they win over the ones written here.
        assert_eq!(bytes, &global("older", 12));
        assert_eq!(merged.as_ref().unwrap().settings, Version::new(10, "a"));
    }

    #[test]
    fn path_outside_filter_rejects_whole_delta() {
        let d = delta(vec![
            write("global.xml", 1, "x"),
            write("security/usergroup/default/users.xml", 1, "x"),
        ]);
        assert!(matches!(
            plan(
                &Manifest::default(),
                &d.changes,
                &filter(),
                Equal::Skip,
                &|_| None
            ),
            Err(Rejection::Filtered(_))
        ));
    }

    #[test]
    fn execute_writes_then_deletes_and_prunes_empty_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let d = delta(vec![
            write("workspaces/w/workspace.xml", 1, "w"),
            write("workspaces/w/s/r/layer.xml", 1, "l"),
        ]);
        let steps = fresh_plan(&d.changes);
        check(root, &steps).unwrap();
        let entries = execute(root, &steps).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            std::fs::read(root.join("workspaces/w/s/r/layer.xml")).unwrap(),
            b"l"
        );
        let steps = fresh_plan(&delta(vec![delete("workspaces/w/s/r/layer.xml", 2)]).changes);
        execute(root, &steps).unwrap();
        assert!(!root.join("workspaces/w/s").exists());
        assert!(root.join("workspaces/w/workspace.xml").exists());
    }

    #[test]
    fn write_through_symlinked_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("workspaces")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("workspaces/evil")).unwrap();
        let d = delta(vec![write("workspaces/evil/workspace.xml", 1, "x")]);
        let steps = fresh_plan(&d.changes);
        assert!(matches!(
            check(dir.path(), &steps),
            Err(Rejection::Escapes(_))
        ));
    }

    /// One node of the conflict-rule model: the manifest and the files it holds, changed only
    /// through `plan` (as a slave or a `both` node does) and a stand-in for `execute`.
    #[derive(Default)]
    struct ModelNode {
        manifest: Manifest,
        files: std::collections::BTreeMap<String, Vec<u8>>,
    }

    impl ModelNode {
        fn receive(&mut self, changes: &[Change]) {
            let held = |p: &str| self.files.get(p).cloned();
            let steps = plan(&self.manifest, changes, &filter(), Equal::Skip, &held).unwrap();
            for step in steps {
                match step {
                    Step::Write {
                        path,
                        bytes,
                        sha256,
                        version,
                        merged,
                    } => {
                        let mut e = Entry::tombstone(version);
                        e.deleted = false;
                        e.sha256 = sha256;
                        e.merged = merged.map(Box::new);
                        self.manifest.entries.insert(path.clone(), e);
                        self.files.insert(path, bytes);
                    }
                    Step::Delete {
                        path,
                        version,
                        merged,
                    } => {
                        let mut e = Entry::tombstone(version);
                        e.merged = merged.map(Box::new);
                        self.manifest.entries.insert(path.clone(), e);
                        self.files.remove(&path);
                    }
                }
            }
        }
    }

    use proptest::prelude::*;

    /// A history: per origin, edits and deletes of a few shared paths, each with a clock
    /// reading that only grows per origin (an HLC); readings of different origins collide
    /// often, so the origin id must break ties.
    fn history() -> impl Strategy<Value = Vec<Change>> {
        let origins = ["gs-a", "gs-b", "gs-c"];
        let paths = [
            "global.xml",
            "styles/roads.sld",
            "workspaces/w/workspace.xml",
            "workspaces/w/s/r/layer.xml",
        ];
        prop::collection::vec(
            (
                0..origins.len(),
                0..paths.len(),
                0u64..4,
                prop::option::of(0u8..3),
            ),
            1..40,
        )
        .prop_map(move |events| {
            let mut clocks = [0u64; 3];
            events
                .into_iter()
                .map(|(o, p, step, body)| {
                    clocks[o] += step;
                    let version = Version::new(clocks[o], origins[o]);
                    Change {
                        path: paths[p].to_string(),
                        version,
                        op: match body {
                            Some(b) => Op::write(format!("{} by {}", b, origins[o]).into_bytes()),
                            None => Op::Delete,
                        },
                        merged: None,
                    }
                })
                // One origin never issues the same version twice.
                .fold(Vec::<Change>::new(), |mut v, c| {
                    if !v.iter().any(|x| x.version == c.version) {
                        v.push(c);
                    }
                    v
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The conflict rule: whatever order changes arrive in, in whatever groups and with
        /// whatever duplicates, every node ends with the same files, and each path holds the
        /// change with the highest version (a delete included, as a tombstone).
        #[test]
        fn every_delivery_order_with_duplicates_converges_to_the_highest_version(
            changes in history(),
            orders in prop::collection::vec(
                prop::collection::vec((any::<prop::sample::Index>(), 1usize..4), 1..80),
                3,
            ),
        ) {
            let mut nodes: Vec<ModelNode> = (0..3).map(|_| ModelNode::default()).collect();
            for (node, order) in nodes.iter_mut().zip(&orders) {
                // Random picks with repetition (duplicates), in groups of 1..3 distinct paths
                // (a Delta never names a path twice)...
                for (pick, size) in order {
                    let first = pick.index(changes.len());
                    let mut group: Vec<Change> = Vec::new();
                    for c in changes.iter().cycle().skip(first).take(*size) {
                        if !group.iter().any(|g| g.path == c.path) {
                            group.push(c.clone());
                        }
                    }
                    node.receive(&group);
                }
                // ...then everything once more, newest first (a late resync).
                for c in changes.iter().rev() {
                    node.receive(std::slice::from_ref(c));
                }
            }
            let mut want = std::collections::BTreeMap::new();
            for c in &changes {
                let keep = match want.get(&c.path) {
                    Some((v, _)) => &c.version > v,
                    None => true,
                };
                if keep {
                    want.insert(c.path.clone(), (c.version.clone(), c.op.clone()));
                }
            }
            let want_files: std::collections::BTreeMap<String, Vec<u8>> = want
                .iter()
                .filter_map(|(p, (_, op))| match op {
                    Op::Write { bytes, .. } => Some((p.clone(), bytes.clone())),
                    Op::Delete => None,
                })
                .collect();
            for node in &nodes {
                prop_assert_eq!(&node.files, &want_files);
                for (path, (version, _)) in &want {
                    prop_assert_eq!(&node.manifest.entries[path].version, version);
                }
            }
        }
    }
}
