//! Export (the command is `cmd::export`): the replicated tree (or what changed in it since an earlier export) as
//! one authenticated bundle file.
//!
//! Export reads the data directory itself, not the daemon's state, so it runs whether or not a
//! daemon does. The tree is read until two scans around the read agree (a GeoServer save or an
//! apply in the middle of the read is read again), so a bundle never holds half of a change.

use super::progress::Progress;
use crate::datadir::{self, CatalogIndex, Filter};
use crate::delta::{self, Change, Op};
use crate::hlc::Version;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Folder of `state_dir` with one record per export: the files and hashes it held.
pub const EXPORTS: &str = "exports";

/// Records kept; an export older than the last this many cannot be a `--since` base.
const KEEP: usize = 64;

/// Reads of the tree before giving up on a data directory that never stops changing.
const READS: usize = 5;

fn record_path(dir: &Path, position: u64) -> PathBuf {
    dir.join(format!("{position:010}.cbor"))
}

/// The series of exports of this state dir (see `Header::series`), drawn once.
fn series(dir: &Path) -> io::Result<u64> {
    let path = dir.join("series");
    match fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let drawn = crate::state::new_epoch();
            crate::durable::write_file(&path, format!("{drawn}\n").as_bytes())?;
            Ok(drawn)
        }
        Err(e) => Err(e),
    }
}

/// Positions of the export records kept in `dir`, in order.
fn positions(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out: Vec<u64> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".cbor")?.parse().ok()
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    out.sort_unstable();
    Ok(out)
}

/// The replicated files of the data directory with their content, read until a scan before and
/// a scan after the read agree.
pub fn read_tree(
    data_dir: &Path,
    filter: &Filter,
    skip: &[PathBuf],
    progress: &mut Progress,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let scan = || {
        datadir::scan(data_dir, filter, skip)
            .map(|mut s| {
                s.retain(|rel, _| !crate::durable::is_temp_path(rel));
                s
            })
            .map_err(|e| format!("[geoserver] data_dir {}: {e}", data_dir.display()))
    };
    for _ in 0..READS {
        let before = scan()?;
        let mut files = BTreeMap::new();
        let mut moved = false;
        for (i, rel) in before.keys().enumerate() {
            match fs::read(data_dir.join(rel)) {
                Ok(bytes) if bytes.len() as u64 > delta::MAX_FILE_SIZE => log::warn!(
                    "{rel}: {} bytes is over the {} byte limit for one file; not exported",
                    bytes.len(),
                    delta::MAX_FILE_SIZE
                ),
                Ok(bytes) => {
                    files.insert(rel.clone(), bytes);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    moved = true;
                    break;
                }
                Err(e) => return Err(format!("{}: {e}", data_dir.join(rel).display())),
            }
            progress.update(i + 1, before.len());
        }
        if !moved && scan()? == before {
            return Ok(files);
        }
        log::info!("the data directory changed while it was read; reading it again");
    }
    Err(format!(
        "[geoserver] data_dir {}: it changed during each of {READS} reads; export when it is quiet",
        data_dir.display()
    ))
}

/// Write the bundle file: complete and durable under its name, or not there at all. Mode 0600:
/// a data directory holds credentials (store passwords) that must not become world-readable.
pub fn write_bundle(out: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = crate::durable::stage(out, bytes)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    tmp.persist(out).map_err(|e| e.error)?;
    crate::durable::fsync_dir(out.parent().unwrap_or(Path::new(".")))
}

/// The export records of one state directory (`state_dir/exports/`): for each of the last
/// [`KEEP`] exports, the path → SHA-256 of every file it held, so `--since N` can say exactly
/// what changed since export N.
pub struct Records {
    dir: PathBuf,
    kept: Vec<u64>,
}

/// path → SHA-256 of the files one export held.
pub type Record = BTreeMap<String, ByteBuf>;

impl Records {
    pub fn open(state_dir: &Path) -> Result<Records, String> {
        let dir = state_dir.join(EXPORTS);
        let kept = positions(&dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
        Ok(Records { dir, kept })
    }

    /// What export `n` held.
    pub fn base(&self, n: u64) -> Result<Record, String> {
        let path = record_path(&self.dir, n);
        let bytes = fs::read(&path).map_err(|e| {
            let range = match (self.kept.first(), self.kept.last()) {
                (Some(a), Some(b)) => format!("kept here: exports {a} to {b}"),
                _ => "this node has made no export yet".to_string(),
            };
            format!("--since {n}: no record of export {n} in {} ({e}; {range}); export a snapshot (without --since) instead", self.dir.display())
        })?;
        crate::cbor::decode(&bytes).map_err(|e| format!("{}: unreadable: {e}", path.display()))
    }

    /// Record `record` as the next export; returns the series and the position it took
    /// (another export running at the same time takes the one after).
    pub fn claim(&self, record: &Record) -> Result<(u64, u64), String> {
        fs::create_dir_all(&self.dir).map_err(|e| format!("create {}: {e}", self.dir.display()))?;
        let series = series(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let mut position = self.kept.last().copied().unwrap_or(0) + 1;
        let encoded = crate::cbor::encode(record);
        loop {
            let path = record_path(&self.dir, position);
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(&encoded)
                        .and_then(|()| f.sync_all())
                        .map_err(|e| format!("write {}: {e}", path.display()))?;
                    return Ok((series, position));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => position += 1,
                Err(e) => return Err(format!("create {}: {e}", path.display())),
            }
        }
    }

    /// Forget the record of an export whose bundle could not be written.
    pub fn forget(&self, position: u64) {
        let _ = fs::remove_file(record_path(&self.dir, position));
    }

    /// Remove the records beyond the last [`KEEP`].
    pub fn prune(&self) {
        for old in positions(&self.dir)
            .unwrap_or_default()
            .iter()
            .rev()
            .skip(KEEP)
        {
            let _ = fs::remove_file(record_path(&self.dir, *old));
        }
    }
}

/// What an export carries: the files of `files` that differ from `base` (all of them without
/// one) and the deletions since `base`, each with `version`; the record of this export; and
/// the references the tree itself leaves unresolved (the importing node must not refuse the
/// bundle over them: real data directories carry old inconsistencies).
pub struct Contents {
    pub changes: Vec<Change>,
    pub deleted: usize,
    pub record: Record,
    pub dangling: Vec<String>,
}

/// The [`Contents`] of an export of `files` (the content moves into the changes).
pub fn contents(
    files: BTreeMap<String, Vec<u8>>,
    base: Option<&Record>,
    version: &Version,
) -> Contents {
    // Every file hashed once: for the bundle, the comparison with the base and the record.
    let record: Record = files
        .iter()
        .map(|(p, b)| (p.clone(), ByteBuf::from(Sha256::digest(b).to_vec())))
        .collect();
    let changed = |path: &str| base.is_none_or(|b| b.get(path) != record.get(path));
    let deleted: Vec<String> = base.map_or(Vec::new(), |b| {
        b.keys()
            .filter(|p| !files.contains_key(*p))
            .cloned()
            .collect()
    });
    let dangling = {
        let mut index = CatalogIndex::default();
        for (path, bytes) in files.iter().filter(|(p, _)| p.ends_with(".xml")) {
            index.update(path, Some(bytes));
        }
        let touched: Vec<String> = (files.keys().filter(|p| changed(p)).cloned())
            .chain(deleted.iter().cloned())
            .collect();
        let set: HashSet<String> = index
            .unresolved(&touched, |rel| files.contains_key(rel))
            .into_iter()
            .map(|u| u.missing)
            .collect();
        let mut v: Vec<String> = set.into_iter().collect();
        v.sort();
        v
    };
    let mut changes: Vec<Change> = files
        .into_iter()
        .filter(|(path, _)| changed(path))
        .map(|(path, bytes)| Change {
            op: Op::Write {
                sha256: record[&path].to_vec(),
                bytes,
            },
            path,
            version: version.clone(),
            merged: None,
        })
        .collect();
    changes.extend(deleted.iter().map(|path| Change {
        path: path.clone(),
        version: version.clone(),
        op: Op::Delete,
        merged: None,
    }));
    Contents {
        changes,
        deleted: deleted.len(),
        record,
        dangling,
    }
}
