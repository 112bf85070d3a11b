//! One atomic step of state change, and the values it carries.

use super::holes::Hole;
use super::position::Position;
use crate::datadir::Entry;
use serde::{Deserialize, Serialize};

/// Where the air-gap bundles of one exporting node stand on the importing node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// The exporting node's series of exports (new when its `state_dir/exports` is new).
    pub series: u64,
    /// The last export of that series imported here.
    pub position: u64,
}

/// One atomic step of state change.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Record {
    /// Manifest entries to set (tombstones included).
    pub entries: Vec<(String, Entry)>,
    /// Paths whose manifest entry is dropped entirely.
    pub forget: Vec<String>,
    /// New value of the node's next sequence number.
    pub next_seq: Option<u64>,
    /// Highest clock reading issued or seen.
    pub hlc: u64,
    /// Origins' stream positions after applying a Delta or a resync.
    pub applied: Vec<(String, Position)>,
    /// Files an apply is about to write (with their new hash) or delete (`None`): recorded
    /// before the first file is touched, so that after a crash mid-apply the scan knows these
    /// files as this node's own unfinished work, not as local edits. A path leaves the intent
    /// when a later record sets or forgets its manifest entry.
    #[serde(default)]
    pub intent: Vec<(String, Option<[u8; 32]>)>,
    /// A resync round completed: the manifest now covers the whole replicated tree.
    #[serde(default)]
    pub synced: bool,
    /// Air-gap bundles imported: exporting node → the last of its bundles imported here.
    #[serde(default)]
    pub imported: Vec<(String, Imported)>,
    /// Holes in origins' streams set (`Some`) or filled (`None`); see [`super::holes`].
    #[serde(default)]
    pub holes: Vec<(String, Option<Hole>)>,
    /// The groups of changes these entries make, for the history (recorded in the same
    /// transaction when the node keeps one; see `history`).
    #[serde(skip)]
    pub history: Option<Box<crate::history::note::Note>>,
    /// Content for the history, kept ahead of the changes that will refer to it: an apply's
    /// intent carries what its files are about to hold, so the bulk of what the history
    /// writes reaches the disk before any data file is touched (a full state directory is
    /// found then, with nothing written). Content no change ends up referring to (the apply
    /// failed for good) is swept at the next start.
    #[serde(skip)]
    pub history_content: Vec<([u8; 32], Vec<u8>)>,
    /// Files (path, hash, content) an apply is about to replace while the history's base is
    /// not complete: kept as the base's (see `history::fill_base`).
    #[serde(skip)]
    pub history_base: Vec<(String, [u8; 32], Vec<u8>)>,
}
