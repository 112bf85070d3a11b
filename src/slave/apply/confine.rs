//! What keeps a Delta inside its bounds, checked before anything is written: only paths the
//! replicate filter allows, each at most once, and never a write that a symlinked folder or
//! target would carry outside the data directory.

use super::plan::{Rejection, Step};
use crate::datadir::Filter;
use crate::delta::Change;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a Delta must be refused as a whole, from the Delta alone: a path outside the replicate
/// filter, a path changed twice, or a write that would land outside the data directory.
pub fn refuse(data_dir: &Path, filter: &Filter, changes: &[Change]) -> Result<(), Rejection> {
    super::plan::screen(filter, changes)?;
    confined(data_dir, changes.iter().map(|c| c.path.as_str()))
}

/// Check every step before writing anything.
pub fn check(data_dir: &Path, steps: &[Step]) -> Result<(), Rejection> {
    confined(data_dir, steps.iter().map(Step::path))
}

/// Every path must be written inside the data directory: its deepest existing folder must
/// resolve inside it, and the target itself must not be a symlink or a folder. A batch writes
/// many files into few folders, and resolving a folder costs a system call per component, so
/// each folder is resolved once.
fn confined<'a>(
    data_dir: &Path,
    paths: impl IntoIterator<Item = &'a str>,
) -> Result<(), Rejection> {
    let mut paths = paths.into_iter().peekable();
    let Some(&first) = paths.peek() else {
        return Ok(());
    };
    let root = data_dir
        .canonicalize()
        .map_err(|_| Rejection::Escapes(first.into()))?;
    let mut folders: HashMap<PathBuf, bool> = HashMap::new();
    for rel in paths {
        let target = data_dir.join(rel);
        let parent = target.parent().unwrap_or(data_dir).to_path_buf();
        let inside = match folders.get(&parent) {
            Some(&inside) => inside,
            None => {
                let inside = resolves_inside(&parent, &root);
                folders.insert(parent, inside);
                inside
            }
        };
        let plain_target = !target
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink() || m.is_dir());
        if !(inside && plain_target) {
            return Err(Rejection::Escapes(rel.into()));
        }
    }
    Ok(())
}

/// The deepest existing ancestor of `dir` decides (folders created below it are plain
/// folders): does it resolve inside `root`?
fn resolves_inside(dir: &Path, root: &Path) -> bool {
    let mut dir = dir.to_path_buf();
    while !dir.exists() {
        if !dir.pop() {
            return false;
        }
    }
    dir.canonicalize().is_ok_and(|real| real.starts_with(root))
}
