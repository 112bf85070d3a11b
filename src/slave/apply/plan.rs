//! The apply plan (pure): which changes of a Delta win, and in which order they are written.
//!
//! A change applies only when its version is above the version the manifest holds for that path
//! (tombstones included), so applying a Delta twice, or an older Delta after a newer one,
//! changes nothing. Paths merged field by field (`global.xml`) are joined instead
//! (`update_sequence`).

use crate::datadir::{self, Entry, Filter, Manifest};
use crate::delta::{Change, Op};
use crate::hlc::Version;
use crate::update_sequence::{self, Merged};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;

/// One step of an apply plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Write {
        path: String,
        bytes: Vec<u8>,
        sha256: [u8; 32],
        version: Version,
        /// The merge state of a path merged field by field (see `update_sequence`).
        merged: Option<Merged>,
    },
    Delete {
        path: String,
        version: Version,
        merged: Option<Merged>,
    },
}

impl Step {
    /// The change this step makes, as a Delta carries it.
    pub fn into_change(self) -> Change {
        match self {
            Step::Write {
                path,
                bytes,
                sha256,
                version,
                merged,
            } => Change {
                path,
                version,
                op: Op::Write {
                    bytes,
                    sha256: sha256.to_vec(),
                },
                merged,
            },
            Step::Delete {
                path,
                version,
                merged,
            } => Change {
                path,
                version,
                op: Op::Delete,
                merged,
            },
        }
    }

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
    screen(filter, changes)?;
    let mut writes = Vec::new();
    let mut deletes = Vec::new();
    for c in changes {
        if update_sequence::merged(&c.path) {
            match merged_step(manifest.get(&c.path).as_ref(), c, held) {
                Some(step @ Step::Write { .. }) => writes.push(step),
                Some(step) => deletes.push(step),
                None => {}
            }
            continue;
        }
        if let Some(current) = manifest.get(&c.path) {
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
    let incoming = c.side();
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

/// A path outside the replicate filter, or named twice, refuses the whole set of changes.
pub(super) fn screen(filter: &Filter, changes: &[Change]) -> Result<(), Rejection> {
    let mut seen = HashSet::new();
    for c in changes {
        if !filter.matches(&c.path) {
            return Err(Rejection::Filtered(c.path.clone()));
        }
        if !seen.insert(c.path.as_str()) {
            return Err(Rejection::Duplicate(c.path.clone()));
        }
    }
    Ok(())
}
