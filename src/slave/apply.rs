//! Plan (pure) and write (I/O) one Delta into the data directory.
//!
//! [`plan`] decides, from the manifest alone, which changes win: a change applies only when its
//! version is above the version the manifest holds for that path (tombstones included), so
//! applying a Delta twice, or an older Delta after a newer one, changes nothing. [`execute`]
//! writes in catalog order (referenced objects first), deletes in reverse order, removes
//! folders the deletes emptied, and returns the manifest entries to commit.

use crate::datadir::{self, Entry, Filter, Manifest};
use crate::delta::{Change, Op};
use crate::durable;
use crate::hlc::Version;
use crate::update_sequence::{self, Merged};
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
        if update_sequence::merged(&c.path) {
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
    let incoming = update_sequence::incoming(c);
    let joined = match current {
        None => update_sequence::join(&incoming, &incoming),
        Some(e) => {
            let doc = if e.deleted {
                None
            } else {
                held(&c.path).filter(|b| Sha256::digest(b).as_slice() == e.sha256)
            };
            let available = e.deleted || doc.is_some();
            let settings = e.merged.as_ref().map_or(&e.version, |m| &m.settings);
            let counter = (e.merged.as_ref().map(|m| m.counter))
                .or_else(|| {
                    doc.as_deref()
                        .and_then(update_sequence::counter)
                        .map(|(_, n)| n)
                })
                .unwrap_or(0);
            let nothing = Version::new(0, "");
            let mine = update_sequence::Side {
                version: &e.version,
                settings: if available { settings } else { &nothing },
                counter,
                doc: doc.as_deref(),
            };
            let joined = update_sequence::join(&mine, &incoming);
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
                    durable::create_dirs(parent)?;
                }
                let tmp = if bulk {
                    durable::stage_unsynced(&target, bytes)?
                } else {
                    durable::stage(&target, bytes)?
                };
                staged.push((tmp, target));
            }
        }
    }
    if bulk {
        durable::sync_filesystem(data_dir)?;
    }
    for (tmp, target) in staged {
        tmp.persist(&target).map_err(|e| e.error)?;
        crate::crashpoint::hit("file-written");
        if let Some(parent) = target.parent() {
            dirs.insert(parent.to_path_buf());
        }
    }
    if bulk {
        durable::sync_filesystem(data_dir)?;
    } else {
        for dir in &dirs {
            match durable::fsync_dir(dir) {
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

/// Remove the temporary files an interrupted run left (`durable::is_temp_name`): a
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
            } else if ft.is_file() && durable::is_temp_name(&name) {
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
mod tests;
