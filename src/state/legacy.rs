//! The state layout before the database (`state.cbor` + `journal`), read once to migrate a
//! state dir in place (see `State::open`).
//!
//! - `state.cbor` — a snapshot of everything but the outbox;
//! - `journal`    — records appended since the snapshot, each framed as length (u32 LE),
//!   FNV-1a checksum (u64 LE), CBOR body; a torn record at the tail ends the replay.

use super::node::{apply_intent, Intent, Node};
use super::record::Record;
use crate::datadir::Entry;
use crate::file_error::{invalid, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

pub const SNAPSHOT: &str = "state.cbor";
pub const JOURNAL: &str = "journal";
const FORMAT: u16 = 1;

/// What the old layout held: the node's position data and its whole manifest.
#[derive(Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// Format, epoch, next seq, clock, positions, synced, imports, holes: the same fields,
    /// under the same names, as the database keeps.
    #[serde(flatten)]
    pub node: Node,
    pub manifest: Entries,
    #[serde(default)]
    pub intent: Intent,
}

/// The manifest as the old snapshot encoded it.
#[derive(Serialize, Deserialize, Default)]
pub struct Entries {
    pub entries: BTreeMap<String, Entry>,
}

/// Whether `dir` holds a state in the old layout.
pub fn present(dir: &Path) -> bool {
    dir.join(SNAPSHOT).exists() || dir.join(JOURNAL).exists()
}

/// Read the old layout in `dir`: the snapshot, then every whole record of the journal.
pub fn load(dir: &Path) -> io::Result<Snapshot> {
    let path = dir.join(SNAPSHOT);
    let mut snap = match fs::read(&path) {
        Ok(bytes) => {
            let s: Snapshot = (crate::cbor::decode(&bytes))
                .map_err(|e| invalid(&path, format!("unreadable: {e}")))?;
            if s.node.format != FORMAT {
                return Err(invalid(
                    &path,
                    format!("state format {} unknown", s.node.format),
                ));
            }
            s
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Snapshot {
            node: Node {
                format: FORMAT,
                next_seq: 1,
                ..Node::default()
            },
            ..Default::default()
        },
        Err(e) => return Err(e).at("read", &path),
    };
    let path = dir.join(JOURNAL);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).at("read", &path),
    };
    let mut at = 0usize;
    while at + 12 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let sum = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap());
        let Some(body) = bytes.get(at + 12..at + 12 + len) else {
            break;
        };
        if checksum(body) != sum {
            break;
        }
        let Ok(rec) = crate::cbor::decode::<Record>(body) else {
            break;
        };
        snap.apply(rec);
        at += 12 + len;
    }
    if at < bytes.len() {
        log::warn!(
            "{}: dropped a torn record at byte {at} (an interrupted write; the change it held is redone)",
            path.display()
        );
    }
    Ok(snap)
}

impl Snapshot {
    fn apply(&mut self, rec: Record) {
        self.node.apply(&rec);
        for (path, entry) in &rec.entries {
            self.manifest.entries.insert(path.clone(), entry.clone());
        }
        for path in &rec.forget {
            self.manifest.entries.remove(path);
        }
        apply_intent(&mut self.intent, rec);
    }
}

/// Frame `rec` as the old journal did (tests write old state dirs with it).
#[cfg(test)]
pub fn frame(rec: &Record) -> Vec<u8> {
    let body = crate::cbor::encode(rec);
    let mut framed = Vec::with_capacity(body.len() + 12);
    framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
    framed.extend_from_slice(&checksum(&body).to_le_bytes());
    framed.extend_from_slice(&body);
    framed
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}
