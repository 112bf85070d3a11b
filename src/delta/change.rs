//! What a Delta carries: the changes one origin made, each to one path, with its version; and
//! the check every received change list must pass.

use super::frame::{DecodeError, Part};
use super::limits::MAX_FILE_SIZE;
use crate::hlc::Version;
use crate::update_sequence::{self, Merged};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The changes one origin made in one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub group: String,
    pub origin: String,
    /// Changes when the origin's state is lost; (origin, epoch, seq) identifies a Delta.
    pub epoch: u64,
    /// Per origin and epoch, gap-free from 1.
    pub seq: u64,
    pub changes: Vec<Change>,
    /// Catalog references the origin itself could not resolve when it sent this Delta (ids or
    /// paths). A receiver does not hold its reload back waiting for these.
    pub dangling: Vec<String>,
}

/// One change to one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Relative, `/`-separated, normalised.
    pub path: String,
    pub version: Version,
    pub op: Op,
    /// For a path merged field by field (`global.xml`, see `merge`): the settings version and
    /// counter the change carries. Absent for every other path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Merged>,
}

/// What happens to the path.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// New content of the file and its SHA-256.
    Write {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        #[serde(with = "serde_bytes")]
        sha256: Vec<u8>,
    },
    /// The file is gone.
    Delete,
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Write { bytes, .. } => write!(f, "Write({} bytes)", bytes.len()),
            Op::Delete => f.write_str("Delete"),
        }
    }
}

impl Op {
    pub fn write(bytes: Vec<u8>) -> Op {
        let sha256 = Sha256::digest(&bytes).to_vec();
        Op::Write { bytes, sha256 }
    }
}

impl Change {
    /// For a path merged field by field (`update_sequence`): the side this change brings —
    /// its settings version (its own version when it carries none) and the higher of the
    /// counter it carries and the one in its bytes.
    pub fn side(&self) -> update_sequence::Side<'_> {
        let doc = match &self.op {
            Op::Write { bytes, .. } => Some(bytes.as_slice()),
            Op::Delete => None,
        };
        let in_doc = doc
            .and_then(update_sequence::counter)
            .map(|(_, n)| n)
            .unwrap_or(0);
        update_sequence::Side {
            version: &self.version,
            settings: self.merged.as_ref().map_or(&self.version, |m| &m.settings),
            counter: self.merged.as_ref().map_or(0, |m| m.counter).max(in_doc),
            doc,
        }
    }

    /// The manifest entry this change leaves behind (the file's stat is not known here).
    pub fn entry(&self) -> crate::datadir::Entry {
        use crate::datadir::Entry;
        let entry = match &self.op {
            Op::Write { bytes, sha256 } => Entry::live(
                sha256.as_slice().try_into().unwrap_or([0; 32]),
                bytes.len() as u64,
                self.version.clone(),
            ),
            Op::Delete => Entry::tombstone(self.version.clone()),
        };
        entry.with_merged(self.merged.clone())
    }

    /// The change of `path` that carries a joined state.
    pub fn joined(path: &str, j: update_sequence::Joined) -> Change {
        Change {
            path: path.to_string(),
            version: j.version,
            op: match j.bytes {
                Some(b) => Op::write(b),
                None => Op::Delete,
            },
            merged: Some(j.merged),
        }
    }
}

/// Check what every change list must satisfy: paths normalised, hashes matching the content.
pub fn verify_changes(changes: &[Change]) -> Result<(), DecodeError> {
    changes.iter().try_for_each(|c| verify_change(c, true))
}

/// Check one change: its path in normal form, its merge state, its size and, with `hash`, that
/// its SHA-256 matches its content (a change whose hash was computed here needs no check).
pub fn verify_change(c: &Change, hash: bool) -> Result<(), DecodeError> {
    let bad = |reason: String| DecodeError::Change {
        path: c.path.clone(),
        reason,
    };
    match crate::datadir::normalize(&c.path) {
        Ok(p) if p == c.path => {}
        Ok(_) => return Err(bad("path is not in normal form".into())),
        Err(e) => return Err(bad(e.to_string())),
    }
    if c.merged.as_ref().is_some_and(|m| m.settings > c.version) {
        return Err(bad("settings version is above the change's version".into()));
    }
    if let Op::Write { bytes, sha256 } = &c.op {
        if bytes.len() as u64 > MAX_FILE_SIZE {
            return Err(bad(format!(
                "{} bytes is over the {MAX_FILE_SIZE} byte limit for one file",
                bytes.len()
            )));
        }
        if hash && Sha256::digest(bytes).as_slice() != sha256.as_slice() {
            return Err(bad("SHA-256 does not match the content".into()));
        }
    }
    Ok(())
}

/// Identity of one Delta on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeltaId {
    pub origin: String,
    pub epoch: u64,
    pub seq: u64,
}

impl DeltaId {
    /// The Delta a part belongs to.
    pub fn of(part: &Part) -> DeltaId {
        DeltaId {
            origin: part.origin.clone(),
            epoch: part.epoch,
            seq: part.seq,
        }
    }
}

impl Delta {
    pub fn id(&self) -> DeltaId {
        DeltaId {
            origin: self.origin.clone(),
            epoch: self.epoch,
            seq: self.seq,
        }
    }
}

impl fmt::Display for DeltaId {
    /// "delta E/S from O", as log lines name a Delta.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "delta {}/{} from {}", self.epoch, self.seq, self.origin)
    }
}
