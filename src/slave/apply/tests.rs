//! Tests of the apply plan: order, versions, confinement, and the conflict rule's model.
use super::*;
use crate::datadir::{self, Entry, Filter, Manifest};
use crate::delta::Delta;
use crate::delta::{Change, Op};
use crate::hlc::Version;
use crate::update_sequence::Merged;

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
    m.set(
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
    let e = node.manifest.get("global.xml").unwrap();
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
            let change = step.into_change();
            self.manifest.set(change.path.clone(), change.entry());
            match change.op {
                Op::Write { bytes, .. } => self.files.insert(change.path, bytes),
                Op::Delete => self.files.remove(&change.path),
            };
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
                prop_assert_eq!(&node.manifest.get(path).unwrap().version, version);
            }
        }
    }
}
