//! `gscluster export --out BUNDLE [--since N]`: this node's replicated tree, or what changed in
//! it since its export N, as one authenticated bundle file (docs/airgap.md). Runs with or
//! without a daemon: it reads the data directory itself (`airgap::export`).

use crate::airgap::export::{contents, read_tree, write_bundle, Records};
use crate::airgap::progress::Progress;
use crate::airgap::{encode, Bundle, Header};
use crate::config::Config;
use crate::hlc::Version;
use std::path::PathBuf;
use std::time::Instant;

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

/// Export this node's replicated tree to `opts.out`.
pub fn run(cfg: &Config, opts: &Options) -> Result<Report, String> {
    let started = Instant::now();
    super::require_data_dir(cfg)?;
    let filter = cfg.filter()?;
    let auth = cfg.auth();
    let records = Records::open(&cfg.node.state_dir)?;
    let base = opts.since.map(|n| records.base(n)).transpose()?;

    // 1. Read the tree until two scans around the read agree.
    let mut progress = Progress::new("reading the data directory");
    let skip = [cfg.node.state_dir.clone()];
    let files = read_tree(&cfg.geoserver.data_dir, &filter, &skip, &mut progress)?;
    progress.finish();

    // 2. What the bundle carries, all with one new version of this node.
    let created_unix_ms = crate::clock::now_ms();
    let version = Version::new(created_unix_ms << 16, cfg.node.id.clone());
    let contents = contents(files, base.as_ref(), &version);

    // 3. Claim the next export number, then write the bundle (or forget the claim).
    let (series, position) = records.claim(&contents.record)?;
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
        changes: contents.changes,
        dangling: contents.dangling,
    };
    let bytes = encode(&bundle, &auth);
    if let Err(e) = write_bundle(&opts.out, &bytes) {
        records.forget(position);
        return Err(format!("write {}: {e}", opts.out.display()));
    }
    records.prune();
    let (written, _, bytes_written) = bundle.counts();
    log::info!(
        "export {position} written to {} in {:?}",
        opts.out.display(),
        started.elapsed()
    );
    Ok(Report {
        written,
        deleted: contents.deleted,
        bytes: bytes_written,
        file_size: bytes.len() as u64,
        signed: auth.is_on(),
        dangling: bundle.dangling.len(),
        header: bundle.header,
    })
}
