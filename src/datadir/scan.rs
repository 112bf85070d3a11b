//! Walking the data directory: which replicated files exist now, with the cheap stat data that lets
//! the diff skip hashing unchanged files.

use super::filter::Filter;
use super::path::{normalize, to_rel};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the scan records per file. Any difference in these four fields makes the diff hash the
/// file; equality lets it trust the manifest (GeoServer replaces files by rename, which always
/// changes `ino` and `ctime`, so a rewrite with identical size and mtime is still noticed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

impl FileStat {
    pub fn from_metadata(md: &fs::Metadata) -> FileStat {
        FileStat {
            size: md.size(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            ino: md.ino(),
        }
    }
}

/// Lists the regular files under `data_dir` that `filter` replicates, keyed by relative path.
///
/// * Directories the filter cannot match below (`data/`, `logs/`, the GWC tile cache) and
///   `skip_dirs` (absolute paths, e.g. our own state dir) are never entered.
/// * Symlinks are never followed. A symlinked directory could loop or lead outside data_dir; a
///   symlinked file would be replicated as a regular file on slaves (its target is node-local,
///   and writing through it on a slave would write outside data_dir), so both are skipped.
/// * An unreadable subdirectory is logged and skipped so one bad permission does not stop
///   replication of everything else; only an unreadable data_dir itself is an error.
/// * Names that are not UTF-8 or not valid relative paths cannot travel in a Delta: logged, skipped.
pub fn scan(
    data_dir: &Path,
    filter: &Filter,
    skip_dirs: &[PathBuf],
) -> io::Result<BTreeMap<String, FileStat>> {
    let mut out = BTreeMap::new();
    // skip_dirs may be spelled differently from data_dir (symlinked /var, relative config
    // paths): compare canonical forms too, so the state dir is never scanned as configuration.
    let canon_root = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let skip: Vec<PathBuf> = skip_dirs
        .iter()
        .flat_map(|s| [s.clone(), s.canonicalize().unwrap_or_else(|_| s.clone())])
        .collect();
    let mut stack = vec![data_dir.to_path_buf()];
    let mut first = true;
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if first => return Err(e),
            Err(e) => {
                log::warn!(
                    "scan: cannot read directory {}: {e}; skipping it",
                    dir.display()
                );
                continue;
            }
        };
        first = false;
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    log::warn!("scan: error listing {}: {e}", dir.display());
                    continue;
                }
            };
            let abs = entry.path();
            // symlink_metadata: describes the link itself, never its target.
            let md = match fs::symlink_metadata(&abs) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    log::warn!("scan: cannot stat {}: {e}", abs.display());
                    continue;
                }
            };
            let Some(rel) = to_rel(data_dir, &abs) else {
                log::warn!("scan: skipping {} (name is not UTF-8)", abs.display());
                continue;
            };
            let ft = md.file_type();
            if ft.is_dir() {
                let skipped = skip.contains(&abs) || skip.contains(&canon_root.join(&rel));
                if skipped || !filter.may_contain(&rel) {
                    continue;
                }
                stack.push(abs);
            } else if ft.is_symlink() {
                log::debug!("scan: skipping symlink {rel} (links are not replicated)");
            } else if ft.is_file() && filter.matches(&rel) {
                if let Err(e) = normalize(&rel) {
                    log::warn!("scan: skipping file: {e}");
                    continue;
                }
                out.insert(rel, FileStat::from_metadata(&md));
            }
        }
    }
    Ok(out)
}

/// SHA-256 of a file's content, streamed so large style bodies or icons need no big buffer.
pub fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
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
