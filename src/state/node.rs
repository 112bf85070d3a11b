//! The node's small values as the state's `meta` table holds them, and what a record does to
//! them: one place for the commit and for the migration from the old layout.

use super::holes::Hole;
use super::position::Position;
use super::record::{Imported, Record};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const STATE_FORMAT: u16 = 2;

/// Path → the hash an unfinished apply was writing there, or `None` for a deletion.
pub type Intent = BTreeMap<String, Option<[u8; 32]>>;

/// The node's small values, one entry of the `meta` table, rewritten by every commit.
#[derive(Serialize, Deserialize, Default, Clone)]
pub struct Node {
    pub format: u16,
    pub epoch: u64,
    pub next_seq: u64,
    pub hlc: u64,
    pub applied: BTreeMap<String, Position>,
    // Absent from the oldest snapshots (`legacy`).
    #[serde(default)]
    pub synced: bool,
    #[serde(default)]
    pub imported: BTreeMap<String, Imported>,
    #[serde(default)]
    pub holes: BTreeMap<String, Hole>,
}

impl Node {
    /// What `rec` sets of the node's values: positions and flags only move forward.
    pub fn apply(&mut self, rec: &Record) {
        self.synced |= rec.synced;
        self.imported.extend(rec.imported.iter().cloned());
        if let Some(n) = rec.next_seq {
            self.next_seq = self.next_seq.max(n);
        }
        self.hlc = self.hlc.max(rec.hlc);
        self.applied.extend(rec.applied.iter().cloned());
        for (origin, hole) in &rec.holes {
            match hole {
                Some(h) => self.holes.insert(origin.clone(), *h),
                None => self.holes.remove(origin),
            };
        }
    }
}

/// What `rec` does to the paths of an unfinished apply: recorded paths leave it, the paths
/// it is about to write join it.
pub fn apply_intent(intent: &mut Intent, rec: Record) {
    for path in (rec.entries.iter().map(|(p, _)| p)).chain(&rec.forget) {
        intent.remove(path);
    }
    intent.extend(rec.intent);
}
