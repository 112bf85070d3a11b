//! A full rescan: the whole tree against the manifest, split in two parts walked at once.
//!
//! Listing and stat'ing 330,000 files is system calls on one core; a start-up scan of a
//! 100,000-layer catalog spent 2.5 s that way. The manifest knows how the files spread over
//! the tree, so one pass over its paths finds where to cut the tree into two parts that cost
//! about the same to walk; the parts are walked and compared on two threads, and their changes
//! put together in apply order.

use super::catalog::sort_for_apply;
use super::filter::Filter;
use super::manifest::{diff_part, LocalChange, Manifest, StatUpdate};
use super::scan::walk;
use super::watch::Watch;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Below this many manifest entries a rescan is not split: a second thread would cost more
/// than it saves.
const SPLIT_FROM: usize = 20_000;

/// A folder costs a rescan about one and a half files' time (opening, listing and watching
/// it against a file's stat): the weights of a folder and a file in [`middle`].
const FOLDER_WEIGHT: u64 = 3;
const FILE_WEIGHT: u64 = 2;

/// The path that cuts the manifest's tree into two parts of about the same rescan time (a
/// flat folder of 100,000 tile layers costs less than as many files in folders of their own),
/// from one pass over the manifest's paths; `None` below `split_from` entries.
fn middle(manifest: &Manifest, split_from: usize) -> Option<String> {
    let len = manifest.len();
    if len < split_from {
        return None;
    }
    // The weight so far at 256 paths spread evenly: the cut is within 1/256 of the tree of
    // where it should be, whatever the size.
    let step = (len / 256).max(1);
    let (mut weight, mut n, mut checkpoints) = (0u64, 0usize, Vec::new());
    let mut folder = String::new();
    manifest.for_each_path(|p| {
        let parent = p.rsplit_once('/').map_or("", |(d, _)| d);
        if parent != folder {
            weight += FOLDER_WEIGHT;
            folder.clear();
            folder.push_str(parent);
        }
        weight += FILE_WEIGHT;
        n += 1;
        if n % step == 0 {
            checkpoints.push((weight, p.to_string()));
        }
    });
    let half = weight / 2;
    checkpoints
        .into_iter()
        .find(|(w, _)| *w >= half)
        .map(|(_, p)| p)
}

/// What a rescan found: the changes (in apply order), the files whose stat alone changed, and
/// how many files it looked at.
pub type Found = (Vec<LocalChange>, Vec<StatUpdate>, usize);

/// Compare the replicated files under `data_dir` with `manifest` ([`super::diff_with_stats`]
/// over the whole tree), registering every folder walked with `watch`. `hash` reads a changed
/// file's content hash (for files whose stat differs from the manifest's).
pub fn rescan(
    data_dir: &Path,
    filter: &Filter,
    skip_dirs: &[PathBuf],
    manifest: &Manifest,
    watch: Option<&mut Watch>,
    hash: impl Fn(&str) -> io::Result<[u8; 32]> + Sync,
) -> io::Result<Found> {
    rescan_in_parts(
        data_dir, filter, skip_dirs, manifest, watch, hash, SPLIT_FROM,
    )
}

/// [`rescan`], in two parts from `split_from` manifest entries on.
fn rescan_in_parts(
    data_dir: &Path,
    filter: &Filter,
    skip_dirs: &[PathBuf],
    manifest: &Manifest,
    watch: Option<&mut Watch>,
    hash: impl Fn(&str) -> io::Result<[u8; 32]> + Sync,
    split_from: usize,
) -> io::Result<Found> {
    let started = std::time::Instant::now();
    let middle = middle(manifest, split_from);
    if let Some(m) = &middle {
        log::debug!(
            "rescan: in two parts, the second after {m} ({} ms to find it)",
            started.elapsed().as_millis()
        );
    }
    let watch = watch.map(Mutex::new);
    let part = |after: Option<&str>, until: Option<&str>| -> io::Result<Found> {
        let mut files = walk(data_dir, filter, skip_dirs, after)?;
        if let Some(until) = until {
            files = files.until(until);
        }
        if let Some(w) = &watch {
            let mut at = w.lock().unwrap_or_else(|e| e.into_inner()).walk_path();
            files = files.before_listing(move |rel| {
                (w.lock().unwrap_or_else(|e| e.into_inner())).add_folder(&mut at, rel)
            });
        }
        let mut seen = 0;
        let files = files
            .filter(|(rel, _)| !crate::durable::is_temp_path(rel))
            .inspect(|_| seen += 1);
        let (changes, restat) = diff_part(manifest.live_between(after, until), files, &hash);
        Ok((changes, restat, seen))
    };
    let (mut changes, restat, seen) = match middle.as_deref() {
        None => part(None, None)?,
        Some(middle) => std::thread::scope(|s| {
            let second = std::thread::Builder::new()
                .name("rescan".into())
                .spawn_scoped(s, || part(Some(middle), None));
            let first = part(None, Some(middle));
            let second = match second {
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                // No thread to spare: the second part after the first.
                Err(_) => part(Some(middle), None),
            };
            let (mut first, second) = (first?, second?);
            first.0.extend(second.0);
            first.1.extend(second.1);
            Ok::<_, io::Error>((first.0, first.1, first.2 + second.2))
        })?,
    };
    sort_for_apply(&mut changes, |c| (c.path(), c.is_delete()));
    Ok((changes, restat, seen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadir::{scan, sha256_file, Entry};
    use std::fs;

    fn write(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }

    /// Split in two or not, a rescan finds what the diff of a whole scan finds — writes,
    /// deletions and stat-only changes on both sides of the cut — and watches every folder.
    #[test]
    fn a_rescan_in_two_parts_finds_what_one_walk_finds() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let filter = Filter::defaults();
        for i in 0..40 {
            write(root, &format!("workspaces/w{i}/workspace.xml"), "<w/>");
            write(root, &format!("workspaces/w{i}/s/datastore.xml"), "<s/>");
        }
        for i in 0..60 {
            write(root, &format!("gwc-layers/l{i}.xml"), "<l/>");
        }
        let hash = |rel: &str| sha256_file(&root.join(rel));
        let manifest: Manifest = scan(root, &filter, &[])
            .unwrap()
            .into_iter()
            .map(|(rel, stat)| {
                let version = crate::hlc::Version::new(1, "m");
                let mut e = Entry::live(hash(&rel).unwrap(), stat.size, version);
                e.set_stat(&stat);
                (rel, e)
            })
            .collect();
        // Changes everywhere: a new file, a removed one, a rewrite, the same bytes again.
        for i in [0, 13, 27, 38] {
            write(
                root,
                &format!("workspaces/w{i}/s/datastore.xml"),
                &format!("<s>{i}</s>"),
            );
            fs::remove_file(root.join(format!("workspaces/w{}/workspace.xml", i + 1))).unwrap();
            write(root, &format!("workspaces/w{i}/s/new.xml"), "<n/>");
        }
        write(root, "gwc-layers/l5.xml", "<l/>");
        fs::remove_file(root.join("gwc-layers/l50.xml")).unwrap();

        let whole =
            crate::datadir::diff_with_stats(&manifest, scan(root, &filter, &[]).unwrap(), hash);
        let one = rescan_in_parts(root, &filter, &[], &manifest, None, hash, usize::MAX).unwrap();
        let mut watch = Watch::root(root, &filter, &[]).unwrap();
        let two =
            rescan_in_parts(root, &filter, &[], &manifest, Some(&mut watch), hash, 1).unwrap();
        assert!(middle(&manifest, 1).is_some_and(|m| m.starts_with("workspaces/w")));
        assert_eq!(whole.0.len(), 4 * 3 + 1, "{:?}", whole.0);
        assert_eq!(whole.1.len(), 1, "gwc-layers/l5.xml: same bytes, new stat");
        assert_eq!((&one.0, &one.1), (&whole.0, &whole.1));
        assert_eq!((&two.0, &two.1), (&whole.0, &whole.1));
        assert_eq!((one.2, two.2), (40 * 2 - 4 + 4 + 59, 40 * 2 - 4 + 4 + 59));
        // The root, workspaces, gwc-layers, and each workspace with its store.
        assert_eq!(watch.folders(), 3 + 40 * 2);
    }
}
