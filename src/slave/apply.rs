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
use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One step of an apply plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Write {
        path: String,
        bytes: Vec<u8>,
        sha256: [u8; 32],
        version: Version,
    },
    Delete {
        path: String,
        version: Version,
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

/// Decide which of `changes` to apply, in the order to apply them.
pub fn plan(
    manifest: &Manifest,
    changes: &[Change],
    filter: &Filter,
) -> Result<Vec<Step>, Rejection> {
    let mut seen = std::collections::HashSet::new();
    let mut writes = Vec::new();
    let mut deletes = Vec::new();
    for c in changes {
        if !filter.matches(&c.path) {
            return Err(Rejection::Filtered(c.path.clone()));
        }
        if !seen.insert(c.path.as_str()) {
            return Err(Rejection::Duplicate(c.path.clone()));
        }
        if let Some(current) = manifest.entries.get(&c.path) {
            if c.version <= current.version {
                continue;
            }
        }
        match &c.op {
            Op::Write { bytes, sha256 } => writes.push(Step::Write {
                path: c.path.clone(),
                bytes: bytes.clone(),
                sha256: sha256.as_slice().try_into().unwrap_or([0; 32]),
                version: c.version.clone(),
            }),
            Op::Delete => deletes.push(Step::Delete {
                path: c.path.clone(),
                version: c.version.clone(),
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

/// Refuse a write whose parent folder resolves outside the data directory.
fn check_confined(data_dir: &Path, rel: &str) -> Result<(), Rejection> {
    let root = data_dir
        .canonicalize()
        .map_err(|_| Rejection::Escapes(rel.into()))?;
    let mut dir = data_dir.join(rel);
    dir.pop();
    // The deepest existing ancestor decides: folders created below it are plain folders.
    while !dir.exists() {
        if !dir.pop() {
            return Err(Rejection::Escapes(rel.into()));
        }
    }
    match dir.canonicalize() {
        Ok(real) if real.starts_with(&root) => Ok(()),
        _ => Err(Rejection::Escapes(rel.into())),
    }
}

/// Check every step before writing anything.
pub fn check(data_dir: &Path, steps: &[Step]) -> Result<(), Rejection> {
    for s in steps {
        check_confined(data_dir, s.path())?;
        let target = data_dir.join(s.path());
        if target
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink() || m.is_dir())
        {
            return Err(Rejection::Escapes(s.path().into()));
        }
    }
    Ok(())
}

/// Write the steps durably; returns the manifest entries describing the result.
pub fn execute(data_dir: &Path, steps: &[Step]) -> io::Result<Vec<(String, Entry)>> {
    let mut entries = Vec::with_capacity(steps.len());
    for step in steps {
        let target = data_dir.join(step.path());
        match step {
            Step::Write {
                path,
                bytes,
                sha256,
                version,
            } => {
                if let Some(parent) = target.parent() {
                    atomic::create_dirs(parent)?;
                }
                atomic::write_file(&target, bytes)?;
                crate::crashpoint::hit("file-written");
                let m = target.metadata()?;
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
                    },
                ));
            }
            Step::Delete { path, version } => {
                atomic::remove_file(&target)?;
                remove_empty_parents(data_dir, &target);
                entries.push((path.clone(), Entry::tombstone(version.clone())));
            }
        }
    }
    Ok(entries)
}

/// GeoServer removes an object's folder with it; do the same for folders left empty.
fn remove_empty_parents(data_dir: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == data_dir || !d.starts_with(data_dir) {
            break;
        }
        // remove_dir fails on a non-empty folder, which is where we stop.
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        if let Some(p) = d.parent() {
            let _ = atomic::fsync_dir(p);
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

    fn write(path: &str, hlc: u64, body: &str) -> Change {
        Change {
            path: path.into(),
            version: Version::new(hlc, "a"),
            op: Op::write(body.as_bytes().to_vec()),
        }
    }

    fn delete(path: &str, hlc: u64) -> Change {
        Change {
            path: path.into(),
            version: Version::new(hlc, "a"),
            op: Op::Delete,
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
        let steps = plan(&Manifest::default(), &d.changes, &filter()).unwrap();
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
        m.entries
            .insert("global.xml".into(), Entry::tombstone(Version::new(10, "a")));
        let d = delta(vec![write("global.xml", 10, "x")]);
        assert!(plan(&m, &d.changes, &filter()).unwrap().is_empty());
        let d = delta(vec![write("global.xml", 11, "x")]);
        assert_eq!(plan(&m, &d.changes, &filter()).unwrap().len(), 1);
    }

    #[test]
    fn path_outside_filter_rejects_whole_delta() {
        let d = delta(vec![
            write("global.xml", 1, "x"),
            write("security/usergroup/default/users.xml", 1, "x"),
        ]);
        assert!(matches!(
            plan(&Manifest::default(), &d.changes, &filter()),
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
        let steps = plan(&Manifest::default(), &d.changes, &filter()).unwrap();
        check(root, &steps).unwrap();
        let entries = execute(root, &steps).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            std::fs::read(root.join("workspaces/w/s/r/layer.xml")).unwrap(),
            b"l"
        );
        let steps = plan(
            &Manifest::default(),
            &delta(vec![delete("workspaces/w/s/r/layer.xml", 2)]).changes,
            &filter(),
        )
        .unwrap();
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
        let steps = plan(&Manifest::default(), &d.changes, &filter()).unwrap();
        assert!(matches!(
            check(dir.path(), &steps),
            Err(Rejection::Escapes(_))
        ));
    }
}
