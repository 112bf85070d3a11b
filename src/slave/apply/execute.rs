//! Writing an apply plan into the data directory (I/O): in catalog order (referenced objects
//! first), deletions in reverse order, durably (`durable`), removing the folders the deletions
//! emptied; returns the manifest entries to commit.

use super::plan::Step;
use crate::datadir::{self, Entry, Filter};
use crate::durable;
use crate::file_error::Context;
use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// From this many files on, a batch is made durable with two filesystem flushes rather than
/// one fsync per file.
const BULK_WRITES: usize = 64;

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
                    Err(e) => return Err(e).at("remove", &target),
                }
                remove_empty_parents(data_dir, &target, &mut dirs);
            }
            Step::Write { bytes, .. } => {
                if let Some(parent) = target.parent() {
                    if bulk {
                        // The filesystem flush below makes the new folders durable too.
                        std::fs::create_dir_all(parent).at("create the folder", parent)?;
                    } else {
                        durable::create_dirs(parent)?;
                    }
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
    // The inode each written file has: after the renames, a path whose inode is another was
    // replaced by someone else meanwhile (GeoServer saving the same file on a `both` node).
    let mut written_inode = std::collections::BTreeMap::new();
    for (tmp, target) in staged {
        let ino = std::fs::symlink_metadata(&tmp).at("stat", &tmp)?.ino();
        written_inode.insert(target.clone(), ino);
        durable::persist(tmp, &target)?;
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
                bytes,
            } => {
                let file = data_dir.join(path);
                let m = file.metadata().at("stat", &file)?;
                let size = bytes.len() as u64;
                let mut e = Entry::live(*sha256, size, version.clone()).with_merged(merged.clone());
                // Record the stat only of the file this apply wrote: had another writer renamed
                // its own file into place since, its stat beside this apply's hash would make
                // the detector take that local edit for unchanged, forever. Without a stat the
                // next scan hashes the file and sees the edit.
                if written_inode.get(&file) == Some(&m.ino()) {
                    e.set_stat(&datadir::FileStat::from_metadata(&m));
                }
                entries.push((path.clone(), e));
            }
            Step::Delete {
                path,
                version,
                merged,
            } => {
                let e = Entry::tombstone(version.clone()).with_merged(merged.clone());
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
