//! Import (the command is `cmd::import`): verify a bundle, then apply it as one batch with one
//! reload.
//!
//! The command verifies the whole bundle first (format, checksum, signature, group, every path
//! against this node's filter and data directory); a refused bundle writes nothing. Then:
//! - no daemon runs on this node (its state dir is free): the command applies the bundle
//!   itself, under the state lock, and a Delta it publishes waits in the outbox for the daemon;
//! - a daemon runs: it holds the state, so the command hands the verified bundle over through
//!   `state_dir/import/` and waits for the daemon's answer (`spool`). The daemon applies it exactly as
//!   the command would (the same [`apply`]), so its files are recorded in the manifest and are
//!   never taken for drift, and on a master they go out at once.
//!
//! Applying: the files that differ are written (and, for a snapshot, replicated files the
//! bundle does not hold are deleted) with one new version of this node, as if an administrator
//! had made the change here; on a node that publishes (`master`, `both`) the change becomes
//! Deltas, so the site's own slaves get it like any local edit. GeoServer is then reloaded once.

use super::{decode, Bundle, BundleError};
use crate::context::Shared;
use crate::datadir;
use crate::delta::Op;
use crate::master::local_edit::{self, Edited};
use crate::reload::GeoServer;
use crate::slave::apply;
use crate::state::{Record, State};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Instant;

/// What applying a bundle did: the edit (`written`, `deleted`, `seqs`, `reload` through it).
#[derive(Debug, Default)]
pub struct Applied {
    pub edited: Edited,
    /// This bundle (or a later one of the same exporting node) was imported before.
    pub already: Option<u64>,
}

impl std::ops::Deref for Applied {
    type Target = Edited;
    fn deref(&self) -> &Edited {
        &self.edited
    }
}

/// Why a bundle was not applied: refused (nothing written) or a failure while writing.
pub use crate::master::local_edit::EditError as ImportError;

/// The checks that need nothing but the bundle and this node's configuration.
pub fn verify(
    bytes: &[u8],
    group: &str,
    auth: &crate::security::Auth,
    data_dir: &Path,
    filter: &datadir::Filter,
) -> Result<Bundle, String> {
    let bundle = decode(bytes, group, auth).map_err(|e: BundleError| e.to_string())?;
    apply::refuse(data_dir, filter, &bundle.changes).map_err(|e| e.to_string())?;
    Ok(bundle)
}

pub fn describe(sh: &Shared, bundle: &Bundle, applied: &Applied) -> String {
    let h = &bundle.header;
    if let Some(last) = applied.already {
        return format!(
            "{} was imported here before (up to export {last} of {}): nothing to do",
            h.describe(),
            h.origin
        );
    }
    let mut s = format!(
        "imported {} on {}: {} file(s) written, {} deleted",
        h.describe(),
        sh.node_id,
        applied.written,
        applied.deleted
    );
    match (applied.seqs.first(), applied.seqs.last()) {
        (Some(a), Some(b)) if a == b => s.push_str(&format!("; published as Delta {a}")),
        (Some(a), Some(b)) => s.push_str(&format!("; published as Deltas {a} to {b}")),
        _ if !sh.publishes && applied.written + applied.deleted > 0 => s.push_str(
            "; this node is a pure slave, so it is not published: the site's masters' next change of these files, or a resync, overrides it",
        ),
        _ => {}
    }
    s
}

/// Reload GeoServer once, while no Delta is being written; the outcome for the report.
pub fn reload(sh: &Shared, gs: Option<&GeoServer>) -> String {
    let Some(gs) = gs else {
        return "; no [geoserver] url: reload GeoServer yourself".to_string();
    };
    let _reading = sh.files.blocking_read();
    let started = Instant::now();
    match gs.reload() {
        Ok(()) => {
            log::info!("import: GeoServer reloaded in {:?}", started.elapsed());
            format!(
                "; GeoServer reloaded in {} ms",
                started.elapsed().as_millis()
            )
        }
        Err(e) => {
            log::error!("import: reload of {} failed: {e}", gs.url());
            format!("; the reload of GeoServer FAILED ({e}): reload it yourself")
        }
    }
}

/// Apply a verified bundle on this node (see the module doc). Takes the state lock.
pub fn apply(sh: &Shared, bundle: &Bundle, force: bool) -> Result<Applied, ImportError> {
    let h = &bundle.header;
    let mut state = sh.state.lock().unwrap();
    // 1. Its place: refused on a pure slave, a no-op when imported before, refused out of
    //    sequence (all unless forced).
    if let Some(already) = place(sh, &state, h, force)? {
        return Ok(Applied {
            already: Some(already),
            ..Default::default()
        });
    }
    // 2. What changes here, and whether the catalog still resolves after it.
    let scan = datadir::scan(&sh.data_dir, &sh.filter, &sh.skip_dirs)
        .map_err(|e| ImportError::Failed(format!("{}: {e}", sh.data_dir.display())))?;
    let wanted = wanted(&state, &scan, bundle);
    if !force {
        let missing = local_edit::unresolved_after(sh, &wanted, &bundle.dangling);
        if !missing.is_empty() {
            return Err(ImportError::Refused(format!(
                "after it, {} catalog reference(s) would not resolve on this node ({}{}): the bundle does not fit this node's configuration; --force imports it anyway",
                missing.len(),
                missing.iter().take(5).cloned().collect::<Vec<_>>().join("; "),
                if missing.len() > 5 { "; …" } else { "" }
            )));
        }
    }
    // 3. Written and published as an edit made here (`local_edit::edit`), recorded with the
    //    bundle's place.
    let record = Record {
        imported: vec![(
            h.origin.clone(),
            crate::state::Imported {
                series: h.series,
                position: h.position,
            },
        )],
        ..Default::default()
    };
    let history = (h.origin.as_str(), crate::history::Kind::Import);
    let edited = local_edit::edit(sh, &mut state, &wanted, &bundle.dangling, record, history)?;
    let applied = Applied {
        edited,
        already: None,
    };
    log::info!(
        "imported {}: {} file(s) written, {} deleted, published as {:?}",
        h.describe(),
        applied.written,
        applied.deleted,
        applied.seqs
    );
    Ok(applied)
}

/// Whether the bundle may be applied here: `Some(n)` when this node already imported it (or
/// the later export `n` of the same node); a refusal on a pure slave or out of sequence, unless
/// forced.
fn place(
    sh: &Shared,
    state: &State,
    h: &super::Header,
    force: bool,
) -> Result<Option<u64>, ImportError> {
    if force {
        return Ok(None);
    }
    if !sh.publishes {
        // A pure slave holds what its masters publish: what it alone imported would be
        // overwritten by their next change of those files, or removed by a resync.
        return Err(ImportError::Refused(format!(
            "{} is a pure slave: import the bundle on a master (or `both`) node of this site, and it reaches this node like any change; --force imports it here anyway, until a master changes those files",
            sh.node_id
        )));
    }
    let before = state.imported.get(&h.origin).copied();
    let last = before.filter(|i| i.series == h.series).map(|i| i.position);
    if let Some(l) = last.filter(|&l| l >= h.position) {
        return Ok(Some(l));
    }
    if let Some(base) = h.base.filter(|&b| last.is_none_or(|l| l < b)) {
        return Err(ImportError::Refused(format!(
            "it holds the changes since export {base} of {}, and this node has imported {}: import the bundle(s) in between, or a snapshot (`gscluster export` without --since on {}); --force imports it anyway",
            h.origin,
            match (last, before) {
                (Some(l), _) => format!("up to export {l}"),
                (None, Some(_)) => "bundles of an earlier series of its exports only (its state dir was replaced since)".to_string(),
                (None, None) => "none of its bundles".to_string(),
            },
            h.origin
        )));
    }
    Ok(None)
}

/// Path → new content (`None`: delete) for what the bundle changes here: files that differ
/// from what this node holds, deletions of what it holds, and for a snapshot (the whole tree)
/// the deletion of every replicated file it does not hold.
fn wanted<'a>(
    state: &State,
    scan: &'a BTreeMap<String, datadir::FileStat>,
    bundle: &'a Bundle,
) -> BTreeMap<Cow<'a, str>, Option<&'a [u8]>> {
    let same = |path: &str, sha: &[u8]| {
        state.manifest.live_entry(path).is_some_and(|e| {
            e.sha256.as_slice() == sha && scan.get(path).is_some_and(|s| e.same_stat(s))
        })
    };
    let present = |path: &str| scan.contains_key(path) || state.manifest.live_entry(path).is_some();
    let mut wanted: BTreeMap<Cow<str>, Option<&[u8]>> = BTreeMap::new();
    for c in &bundle.changes {
        match &c.op {
            Op::Write { bytes, sha256 } if !same(&c.path, sha256) => {
                wanted.insert(Cow::Borrowed(&c.path), Some(bytes));
            }
            Op::Delete if present(&c.path) => {
                wanted.insert(Cow::Borrowed(&c.path), None);
            }
            _ => {}
        }
    }
    if bundle.header.base.is_none() {
        let held: HashSet<&str> = bundle.changes.iter().map(|c| c.path.as_str()).collect();
        let here = (scan.keys().map(|p| Cow::Borrowed(p.as_str())))
            .chain(state.manifest.live().map(|(p, _)| Cow::Owned(p)))
            .filter(|p| !held.contains(p.as_ref()) && !crate::durable::is_temp_path(p));
        for p in here {
            wanted.insert(p, None);
        }
    }
    wanted
}
