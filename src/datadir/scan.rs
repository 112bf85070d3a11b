//! Walking the data directory: which replicated files exist now, with the cheap stat data that lets
//! the diff skip hashing unchanged files.

use super::filter::Filter;
use super::listing::{FileStat, Kind, Lister};
use super::path::check_normal;
use crate::file_error::Context;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Lists the regular files under `data_dir` that `filter` replicates, keyed by relative path:
/// [`walk`], collected. For a small tree, or a caller that needs every file at once; a caller
/// that can take them one by one walks instead, in memory bounded by one folder's listing.
pub fn scan(
    data_dir: &Path,
    filter: &Filter,
    skip_dirs: &[PathBuf],
) -> io::Result<BTreeMap<String, FileStat>> {
    Ok(walk(data_dir, filter, skip_dirs, None)?.collect())
}

/// The regular files under `data_dir` that `filter` replicates, one at a time in path order
/// (the byte order of their relative paths, the manifest's order), from the first path after
/// `after` (all with `None`).
///
/// * Directories the filter cannot match below (`data/`, `logs/`, the GWC tile cache),
///   `skip_dirs` (absolute paths, e.g. our own state dir) and folders wholly at or before
///   `after` are never entered.
/// * Symlinks are never followed. A symlinked directory could loop or lead outside data_dir; a
///   symlinked file would be replicated as a regular file on slaves (its target is node-local,
///   and writing through it on a slave would write outside data_dir), so both are skipped.
/// * An unreadable subdirectory is logged and skipped so one bad permission does not stop
///   replication of everything else; only an unreadable data_dir itself is an error.
/// * Names that are not UTF-8 or not valid relative paths cannot travel in a Delta: logged,
///   skipped.
pub fn walk<'a>(
    data_dir: &'a Path,
    filter: &'a Filter,
    skip_dirs: &[PathBuf],
    after: Option<&str>,
) -> io::Result<Walk<'a>> {
    let mut walk = Walk::new(data_dir, filter, skip_dirs);
    walk.after = after.map(str::to_string);
    walk.list(data_dir, "", true)?;
    Ok(walk)
}

/// Like [`scan`], limited to the given relative paths: a file is stat'ed, a folder is walked,
/// a path that no longer exists yields nothing. This is what a filesystem notification needs
/// looked at, instead of the whole tree.
pub fn scan_paths<'a>(
    data_dir: &Path,
    rels: impl IntoIterator<Item = &'a String>,
    filter: &Filter,
    skip_dirs: &[PathBuf],
) -> io::Result<BTreeMap<String, FileStat>> {
    let mut walk = Walk::new(data_dir, filter, skip_dirs);
    let mut out = BTreeMap::new();
    for rel in rels {
        let abs = data_dir.join(rel);
        match fs::symlink_metadata(&abs) {
            Ok(md) if md.is_dir() => {
                if !walk.skip.skipped(&abs, rel) && filter.may_contain(rel) {
                    walk.list(&abs, rel, false)?;
                    out.extend(&mut walk);
                }
            }
            Ok(md) => out.extend(walk.file(rel.clone(), Kind::of(&md))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("scan: cannot stat {}: {e}", abs.display()),
        }
    }
    Ok(out)
}

/// A walk over (part of) the data directory, in path order (see [`walk`]).
pub struct Walk<'a> {
    data_dir: &'a Path,
    skip: Skip,
    filter: &'a Filter,
    after: Option<String>,
    /// The last path to yield, if not the end of the tree (see [`Walk::until`]).
    until: Option<String>,
    /// Per folder being walked, its entries not visited yet, the next one last.
    stack: Vec<Vec<Listed>>,
    /// Told each folder's relative path just before the folder is listed (see
    /// [`Walk::before_listing`]).
    before_listing: Option<FolderHook<'a>>,
    lister: Lister,
}

/// See [`Walk::before_listing`].
type FolderHook<'a> = Box<dyn FnMut(&str) + 'a>;

/// One entry of a folder's listing.
struct Listed {
    /// The relative path, with a `/` after a folder's: sorting by it puts the folder's
    /// content where its paths sort (`a.xml` < `a/b.xml` < `a0.xml`).
    key: String,
    kind: Kind,
}

/// Folders never looked into (the state dir), however their paths are spelled.
pub(super) struct Skip {
    canon_root: PathBuf,
    skip: Vec<PathBuf>,
}

impl Skip {
    pub(super) fn new(data_dir: &Path, skip_dirs: &[PathBuf]) -> Skip {
        // skip_dirs may be spelled differently from data_dir (symlinked /var, relative config
        // paths): compare canonical forms too, so the state dir is never scanned as configuration.
        let canon_root = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        let skip = skip_dirs
            .iter()
            .flat_map(|s| [s.clone(), s.canonicalize().unwrap_or_else(|_| s.clone())])
            .collect();
        Skip { canon_root, skip }
    }

    /// Is the folder at `abs` (relative path `rel`) one of them?
    pub(super) fn skipped(&self, abs: &Path, rel: &str) -> bool {
        !self.skip.is_empty()
            && (self.skip.iter().any(|s| s == abs)
                || self.skip.contains(&self.canon_root.join(rel)))
    }

    /// [`Self::skipped`] for the folder `name` in `dir`, its path built only when there is
    /// something to skip.
    fn skipped_in(&self, dir: &Path, name: &str, rel: &str) -> bool {
        !self.skip.is_empty() && self.skipped(&dir.join(name), rel)
    }
}

impl<'a> Walk<'a> {
    fn new(data_dir: &'a Path, filter: &'a Filter, skip_dirs: &[PathBuf]) -> Self {
        Walk {
            data_dir,
            skip: Skip::new(data_dir, skip_dirs),
            filter,
            after: None,
            until: None,
            stack: Vec::new(),
            before_listing: None,
            lister: Lister::default(),
        }
    }

    /// Stop after `last`: no path sorting after it is yielded, no folder wholly after it
    /// listed. With [`walk`]'s `after`, a walk covers one part of the tree.
    pub fn until(mut self, last: &str) -> Self {
        self.until = Some(last.to_string());
        self
    }

    /// Tell `f` the relative path of every folder below the root just before listing it, so
    /// the one walk of a full scan also registers the folders' watches (a watch placed before
    /// the listing misses nothing written after it).
    pub fn before_listing(mut self, f: impl FnMut(&str) + 'a) -> Self {
        self.before_listing = Some(Box::new(f));
        self
    }

    /// List `dir` (relative path `rel`) for the walk to visit next. Only an unreadable `dir`
    /// that `must` be read (the data directory itself) is an error; another is logged and
    /// skipped.
    fn list(&mut self, dir: &Path, rel: &str, must: bool) -> io::Result<()> {
        let Walk {
            skip,
            filter,
            after,
            lister,
            ..
        } = self;
        let mut listed = Vec::new();
        let each = |name: &OsStr, kind: Kind| {
            let Some(name) = name.to_str() else {
                let abs = dir.join(name);
                log::warn!("scan: skipping {} (name is not UTF-8)", abs.display());
                return;
            };
            let mut key = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            if kind == Kind::Folder {
                // Wholly at or before `after`: every path below sorts before `key0`.
                let below_after =
                    (after.as_deref()).is_some_and(|a| format!("{key}0").as_str() <= a);
                if below_after || skip.skipped_in(dir, name, &key) || !filter.may_contain(&key) {
                    return;
                }
                key.push('/');
            }
            listed.push(Listed { key, kind });
        };
        let trouble = |name: &OsStr, e: io::Error| {
            log::warn!("scan: cannot stat {}: {e}", dir.join(name).display());
        };
        match lister.list(dir, each, trouble) {
            Ok(()) => {}
            Err(e) if must => return Err(e).at("list", dir),
            Err(e) => {
                log::warn!(
                    "scan: cannot read directory {}: {e}; skipping it",
                    dir.display()
                );
                return Ok(());
            }
        }
        listed.sort_unstable_by(|a, b| b.key.cmp(&a.key));
        self.stack.push(listed);
        Ok(())
    }

    /// A non-folder entry, if it is a regular file the filter replicates.
    fn file(&self, rel: String, kind: Kind) -> Option<(String, FileStat)> {
        match kind {
            Kind::Link => log::debug!("scan: skipping symlink {rel} (links are not replicated)"),
            Kind::File(stat) if self.filter.matches(&rel) => {
                if let Err(e) = check_normal(&rel) {
                    log::warn!("scan: skipping file: {e}");
                    return None;
                }
                return Some((rel, stat));
            }
            _ => {}
        }
        None
    }
}

impl Iterator for Walk<'_> {
    type Item = (String, FileStat);

    fn next(&mut self) -> Option<(String, FileStat)> {
        loop {
            let frame = self.stack.last_mut()?;
            let Some(Listed { mut key, kind }) = frame.pop() else {
                self.stack.pop();
                continue;
            };
            // Everything from here on sorts after `until` (a folder's key, `a/b/`, sorts
            // before all it contains).
            if (self.until.as_deref()).is_some_and(|u| key.as_str() > u) {
                self.stack.clear();
                return None;
            }
            if kind == Kind::Folder {
                key.pop();
                let abs = self.data_dir.join(&key);
                if let Some(f) = &mut self.before_listing {
                    f(&key);
                }
                let _ = self.list(&abs, &key, false);
                continue;
            }
            if (self.after.as_deref()).is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            if let Some(found) = self.file(key, kind) {
                return Some(found);
            }
        }
    }
}

/// SHA-256 of a file's content, streamed so large style bodies or icons need no big buffer.
pub fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = fs::File::open(path).at("open", path)?;
    let mut h = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).at("read", path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_paths_looks_only_at_the_named_files_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "global.xml",
            "styles/a.sld",
            "styles/b.sld",
            "workspaces/w/workspace.xml",
            "logs/x.log",
        ] {
            fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            fs::write(root.join(f), "x").unwrap();
        }
        let filter = Filter::new(
            &super::super::default_include(),
            &super::super::default_exclude(),
        )
        .unwrap();
        let rels: Vec<String> = ["styles", "global.xml", "gone.xml", "logs/x.log"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = scan_paths(root, &rels, &filter, &[]).unwrap();
        let keys: Vec<&str> = got.keys().map(|s| s.as_str()).collect();
        assert_eq!(keys, ["global.xml", "styles/a.sld", "styles/b.sld"]);
    }

    fn touch(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }

    #[test]
    fn scan_returns_only_filtered_regular_files() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        touch(r, "global.xml", "<global/>");
        touch(r, "workspaces/ws/workspace.xml", "<workspace/>");
        touch(
            r,
            "workspaces/ws/Energy Stores/datastore.xml",
            "<dataStore/>",
        );
        touch(r, "logs/geoserver.log", "x");
        touch(r, "styles/a.sld.bak", "x");
        touch(r, "styles/a.xml.123.tmp", "x");
        let got = scan(r, &super::super::filter::Filter::defaults(), &[]).unwrap();
        let keys: Vec<_> = got.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "global.xml",
                "workspaces/ws/Energy Stores/datastore.xml",
                "workspaces/ws/workspace.xml"
            ]
        );
        assert_eq!(got["global.xml"].size, 9);
    }

    /// The walk yields paths in the manifest's order (bytes), which is not the order of a
    /// folder-by-folder walk: `a.xml` < `a/b.xml` < `a0.xml`, `a-b/c.xml` < `a/b.xml`. From a
    /// path on, it yields exactly what follows it.
    #[test]
    fn the_walk_goes_in_path_order_and_resumes_after_any_path() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let files = [
            "styles/a.xml",
            "styles/a/b.xml",
            "styles/a/c/d.xml",
            "styles/a0.xml",
            "styles/a-b/c.xml",
            "styles/a.b/c.xml",
            "styles/z.xml",
            "global.xml",
            "workspaces/w/workspace.xml",
        ];
        for f in files {
            touch(r, f, "x");
        }
        let filter = Filter::defaults();
        let walked: Vec<String> = walk(r, &filter, &[], None)
            .unwrap()
            .map(|(p, _)| p)
            .collect();
        let mut sorted: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        sorted.sort();
        assert_eq!(walked, sorted);
        let mut afters: Vec<String> = sorted.clone();
        afters.extend([
            "styles/a/".into(),
            "styles/a/c".into(),
            "a".into(),
            "zzz".into(),
        ]);
        for after in afters {
            let rest: Vec<String> = (walk(r, &filter, &[], Some(&after)).unwrap())
                .map(|(p, _)| p)
                .collect();
            let want: Vec<String> = sorted.iter().filter(|p| **p > after).cloned().collect();
            assert_eq!(rest, want, "after {after}");
            // Up to a path, and between two: a part of the tree (a rescan in two parts).
            let until = after;
            let upto: Vec<String> = (walk(r, &filter, &[], None).unwrap().until(&until))
                .map(|(p, _)| p)
                .collect();
            let want: Vec<String> = sorted.iter().filter(|p| **p <= until).cloned().collect();
            assert_eq!(upto, want, "until {until}");
            let between: Vec<String> = (walk(r, &filter, &[], Some("styles/a.xml")).unwrap())
                .until(&until)
                .map(|(p, _)| p)
                .collect();
            let want: Vec<String> = (sorted.iter())
                .filter(|p| p.as_str() > "styles/a.xml" && **p <= until)
                .cloned()
                .collect();
            assert_eq!(between, want, "after styles/a.xml until {until}");
        }
    }

    #[test]
    fn scan_skips_symlinks_and_skip_dirs() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        touch(r, "styles/real.sld", "x");
        touch(r, "styles/state/manifest.xml", "x");
        std::os::unix::fs::symlink(r.join("styles/real.sld"), r.join("styles/link.sld")).unwrap();
        std::os::unix::fs::symlink(r.join("styles"), r.join("workspaces")).unwrap();
        // Spelled through a `..` so only the canonical comparison can match it.
        let skip = [r.join("styles/images/../state")];
        fs::create_dir_all(r.join("styles/images")).unwrap();
        let got = scan(r, &Filter::defaults(), &skip).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), ["styles/real.sld"]);
    }

    #[test]
    fn scan_of_missing_data_dir_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        assert!(scan(&t.path().join("nope"), &Filter::defaults(), &[]).is_err());
    }

    #[test]
    fn sha256_matches_known_digest() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        fs::write(&p, "abc").unwrap();
        let d = sha256_file(&p).unwrap();
        assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
    }
}
