//! `gscluster export`: the replicated tree (or what changed in it since an earlier export) as
//! one authenticated bundle file.
//!
//! Export reads the data directory itself, not the daemon's state, so it runs whether or not a
//! daemon does. The tree is read until two scans around the read agree (a GeoServer save or an
//! apply in the middle of the read is read again), so a bundle never holds half of a change.

use super::progress::Progress;
use super::{encode, Bundle, Header};
use crate::config::Config;
use crate::datadir::{self, CatalogIndex, Filter};
use crate::delta::{self, Change, Op};
use crate::hlc::Version;
use crate::security::Auth;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Folder of `state_dir` with one record per export: the files and hashes it held.
pub const EXPORTS: &str = "exports";

/// Records kept; an export older than the last this many cannot be a `--since` base.
const KEEP: usize = 64;

/// Reads of the tree before giving up on a data directory that never stops changing.
const READS: usize = 5;

pub struct Options {
    pub out: PathBuf,
    pub since: Option<u64>,
}

/// What an export wrote, for the command's report.
pub struct Report {
    pub header: Header,
    pub written: usize,
    pub deleted: usize,
    pub bytes: u64,
    pub file_size: u64,
    pub signed: bool,
    pub dangling: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exported {}: {} file(s) ({} bytes){}, bundle of {} bytes, {}",
            self.header.describe(),
            self.written,
            self.bytes,
            if self.header.base.is_some() {
                format!(" and {} deletion(s)", self.deleted)
            } else {
                String::new()
            },
            self.file_size,
            if self.signed {
                "signed with the group key".to_string()
            } else {
                "NOT signed (no [security] key_file): only its checksum protects it".to_string()
            }
        )?;
        if self.dangling > 0 {
            write!(
                f,
                "; {} catalog reference(s) of this data directory do not resolve here either (`gscluster check` lists them)",
                self.dangling
            )?;
        }
        Ok(())
    }
}

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
            crate::atomic::write_file(&path, format!("{drawn}\n").as_bytes())?;
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
fn read_tree(
    data_dir: &Path,
    filter: &Filter,
    skip: &[PathBuf],
    progress: &mut Progress,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let scan = || {
        datadir::scan(data_dir, filter, skip)
            .map(|mut s| {
                s.retain(|rel, _| !crate::master::is_own_temp(rel));
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
fn write_bundle(out: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = crate::atomic::stage(out, bytes)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    tmp.persist(out).map_err(|e| e.error)?;
    crate::atomic::fsync_dir(out.parent().unwrap_or(Path::new(".")))
}

/// Export this node's replicated tree to `opts.out`.
pub fn run(cfg: &Config, opts: &Options) -> Result<Report, String> {
    let started = Instant::now();
    crate::node::require_data_dir(cfg)?;
    let data_dir = &cfg.geoserver.data_dir;
    let filter = Filter::new(&cfg.replicate.include, &cfg.replicate.exclude)
        .map_err(|e| format!("[replicate]: {e}"))?;
    let auth = Auth::of(cfg.security.as_ref());
    let records = cfg.node.state_dir.join(EXPORTS);
    let kept = positions(&records).map_err(|e| format!("{}: {e}", records.display()))?;
    let base: Option<BTreeMap<String, ByteBuf>> = match opts.since {
        None => None,
        Some(n) => {
            let path = record_path(&records, n);
            let bytes = fs::read(&path).map_err(|e| {
                let range = match (kept.first(), kept.last()) {
                    (Some(a), Some(b)) => format!("kept here: exports {a} to {b}"),
                    _ => "this node has made no export yet".to_string(),
                };
                format!("--since {n}: no record of export {n} in {} ({e}; {range}); export a snapshot (without --since) instead", records.display())
            })?;
            Some(
                ciborium::from_reader(bytes.as_slice())
                    .map_err(|e| format!("{}: unreadable: {e}", path.display()))?,
            )
        }
    };
    let mut progress = Progress::new("reading the data directory");
    let files = read_tree(
        data_dir,
        &filter,
        &crate::master::skip_dirs(&cfg.node.state_dir),
        &mut progress,
    )?;
    progress.finish();

    let created_unix_ms = crate::status::now_ms();
    let version = Version::new(created_unix_ms << 16, cfg.node.id.clone());
    // Every file hashed once: for the bundle, the comparison with the base and the record.
    let record: BTreeMap<String, ByteBuf> = files
        .iter()
        .map(|(p, b)| (p.clone(), ByteBuf::from(Sha256::digest(b).to_vec())))
        .collect();
    let changed = |path: &str| {
        base.as_ref()
            .is_none_or(|b| b.get(path) != record.get(path))
    };
    let deleted: Vec<String> = base.as_ref().map_or(Vec::new(), |b| {
        b.keys()
            .filter(|p| !files.contains_key(*p))
            .cloned()
            .collect()
    });
    // References this tree itself leaves unresolved: the importing node must not refuse the
    // bundle over them (real data directories carry old inconsistencies).
    let dangling: Vec<String> = {
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
    // The content moves into the bundle rather than being copied.
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

    fs::create_dir_all(&records).map_err(|e| format!("{}: {e}", records.display()))?;
    let series = series(&records).map_err(|e| format!("{}: {e}", records.display()))?;
    // Claim the next position (another export running at the same time takes the one after).
    let mut position = kept.last().copied().unwrap_or(0) + 1;
    let mut encoded = Vec::new();
    ciborium::into_writer(&record, &mut encoded).expect("CBOR into memory");
    loop {
        let path = record_path(&records, position);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(&encoded)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => position += 1,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    let bundle = Bundle {
        header: Header {
            group: cfg.node.group.clone(),
            origin: cfg.node.id.clone(),
            series,
            position,
            base: opts.since,
            created_unix_ms,
            tool: env!("CARGO_PKG_VERSION").to_string(),
        },
        changes,
        dangling,
    };
    let bytes = encode(&bundle, &auth);
    if let Err(e) = write_bundle(&opts.out, &bytes) {
        let _ = fs::remove_file(record_path(&records, position));
        return Err(format!("{}: {e}", opts.out.display()));
    }
    for old in positions(&records)
        .unwrap_or_default()
        .iter()
        .rev()
        .skip(KEEP)
    {
        let _ = fs::remove_file(record_path(&records, *old));
    }
    let (written, _, bytes_written) = bundle.counts();
    log::info!(
        "export {position} written to {} in {:?}",
        opts.out.display(),
        started.elapsed()
    );
    Ok(Report {
        written,
        deleted: deleted.len(),
        bytes: bytes_written,
        file_size: bytes.len() as u64,
        signed: auth.is_on(),
        dangling: bundle.dangling.len(),
        header: bundle.header,
    })
}
