//! Durable node state in `state_dir`: manifest, sequence counter, epoch, clock, applied
//! positions, and the outbox of unacknowledged Deltas.
//!
//! Layout:
//! - `state.cbor`   — a snapshot of everything but the outbox, replaced atomically;
//! - `journal`      — records appended (and fsynced) since the snapshot; a torn record at the
//!   tail (a `kill -9` mid-append) fails its checksum and is dropped with everything after it;
//! - `outbox/`      — one file per unacknowledged Delta (its encoded MQTT payloads);
//! - `lock`         — held while a daemon runs, so two daemons never share a state dir.
//!
//! Every journal record only *sets* values, so replaying a record that the snapshot already
//! contains changes nothing: compaction can crash at any point.

use crate::datadir::{Entry, LocalChange, Manifest};
use crate::durable;
use crate::file_error::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub mod holes;
mod outbox;
mod position;
pub use holes::Hole;
pub use outbox::Outbox;
pub use position::Position;

const SNAPSHOT: &str = "state.cbor";
const JOURNAL: &str = "journal";
const OUTBOX: &str = "outbox";
const LOCK: &str = "lock";
const STATE_FORMAT: u16 = 1;
/// Compact once the journal grows past this many bytes.
const COMPACT_AT: u64 = 8 * 1024 * 1024;

#[derive(Serialize, Deserialize, Default)]
struct Snapshot {
    format: u16,
    epoch: u64,
    next_seq: u64,
    hlc: u64,
    applied: BTreeMap<String, Position>,
    manifest: Manifest,
    #[serde(default)]
    intent: BTreeMap<String, Option<[u8; 32]>>,
    #[serde(default)]
    synced: bool,
    #[serde(default)]
    imported: BTreeMap<String, Imported>,
    #[serde(default)]
    holes: BTreeMap<String, Hole>,
}

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
    /// Holes in origins' streams set (`Some`) or filled (`None`); see [`holes`].
    #[serde(default)]
    pub holes: Vec<(String, Option<Hole>)>,
}

/// The node's durable state, loaded in memory.
pub struct State {
    dir: PathBuf,
    pub epoch: u64,
    pub next_seq: u64,
    pub hlc: u64,
    pub applied: BTreeMap<String, Position>,
    pub manifest: Manifest,
    /// Writes and deletions of an apply that started but was not recorded (see
    /// [`Record::intent`]): path → the hash it was to get, or `None` for a deletion.
    pub intent: BTreeMap<String, Option<[u8; 32]>>,
    /// A resync round has completed on this state (see [`Record::synced`]). Until then the
    /// manifest may lack most files, even once Deltas were applied: a node is still
    /// bootstrapping, and nothing that differs from the manifest is drift.
    pub synced: bool,
    /// Per exporting node, the last air-gap bundle imported here (see `airgap`).
    pub imported: BTreeMap<String, Imported>,
    /// Per origin, the Deltas of its stream this node skipped and still lacks (see [`holes`]).
    pub holes: BTreeMap<String, Hole>,
    /// The same holes, described, readable without the state lock: the reload gate asks while
    /// it holds the catalog index, which an apply takes while it holds the state.
    pub lacking: Arc<Mutex<Option<String>>>,
    /// Outbox entries written but never recorded (a crash in between), found at open.
    pub uncommitted: Vec<u64>,
    journal: File,
    journal_len: u64,
    _lock: File,
}

fn checksum(bytes: &[u8]) -> u64 {
    // FNV-1a: enough to tell a torn tail from a whole record; integrity against tampering is
    // not the journal's job.
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

pub fn new_epoch() -> u64 {
    // Distinct across restarts that lose state: wall-clock nanoseconds mixed with the pid.
    let nanos = crate::clock::now_ns();
    nanos ^ ((std::process::id() as u64) << 48) | 1
}

impl State {
    /// Open (or create) the state in `dir`, taking its lock and replaying the journal.
    pub fn open(dir: &Path) -> io::Result<State> {
        durable::create_dirs(&dir.join(OUTBOX))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))
            .at("open", &dir.join(LOCK))?;
        lock.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "state dir {} is in use by another gscluster process",
                    dir.display()
                ),
            )
        })?;
        let snap = match fs::read(dir.join(SNAPSHOT)) {
            Ok(bytes) => {
                let s: Snapshot = crate::cbor::decode(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: unreadable: {e}", dir.join(SNAPSHOT).display()),
                    )
                })?;
                if s.format != STATE_FORMAT {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: state format {} unknown", dir.display(), s.format),
                    ));
                }
                s
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Snapshot {
                format: STATE_FORMAT,
                epoch: new_epoch(),
                next_seq: 1,
                ..Default::default()
            },
            Err(e) => return Err(e).at("read", &dir.join(SNAPSHOT)),
        };
        let fresh = !dir.join(SNAPSHOT).exists();
        let mut state = State {
            dir: dir.to_path_buf(),
            epoch: snap.epoch,
            next_seq: snap.next_seq,
            hlc: snap.hlc,
            applied: snap.applied,
            manifest: snap.manifest,
            intent: snap.intent,
            synced: snap.synced,
            imported: snap.imported,
            holes: snap.holes,
            uncommitted: Vec::new(),
            lacking: Default::default(),
            journal: durable::open_append(&dir.join(JOURNAL))?,
            journal_len: 0,
            _lock: lock,
        };
        state.replay()?;
        *state.lacking.lock().unwrap() = holes::describe_holes(&state.holes);
        // Never reuse a sequence number that an outbox file already carries.
        state.uncommitted = state
            .outbox()
            .seqs()?
            .into_iter()
            .filter(|&s| s >= state.next_seq)
            .collect();
        if let Some(max) = state.uncommitted.last() {
            state.next_seq = max + 1;
        }
        if fresh {
            state.compact()?;
        }
        Ok(state)
    }

    fn replay(&mut self) -> io::Result<()> {
        let path = self.dir.join(JOURNAL);
        let mut bytes = Vec::new();
        (File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes))).at("read", &path)?;
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
            self.apply(rec);
            at += 12 + len;
        }
        if at < bytes.len() {
            log::warn!(
                "{}: dropped a torn record at byte {at} (an interrupted write; the change it held is redone)",
                path.display()
            );
            (File::options().write(true).open(&path))
                .and_then(|f| f.set_len(at as u64).and_then(|()| f.sync_all()))
                .at("truncate", &path)?;
        }
        self.journal_len = at as u64;
        Ok(())
    }

    fn apply(&mut self, rec: Record) {
        for (path, entry) in rec.entries {
            self.intent.remove(&path);
            self.manifest.set(path, entry);
        }
        for path in rec.forget {
            self.intent.remove(&path);
            self.manifest.forget(&path);
        }
        self.intent.extend(rec.intent);
        self.synced |= rec.synced;
        self.imported.extend(rec.imported);
        if let Some(n) = rec.next_seq {
            self.next_seq = self.next_seq.max(n);
        }
        self.hlc = self.hlc.max(rec.hlc);
        for (origin, pos) in rec.applied {
            self.applied.insert(origin, pos);
        }
        let holes_changed = !rec.holes.is_empty();
        for (origin, hole) in rec.holes {
            match hole {
                Some(h) => self.holes.insert(origin, h),
                None => self.holes.remove(&origin),
            };
        }
        if holes_changed {
            *self.lacking.lock().unwrap() = holes::describe_holes(&self.holes);
        }
    }

    /// Make `rec` durable, then apply it to the in-memory state.
    pub fn commit(&mut self, rec: Record) -> io::Result<()> {
        let body = crate::cbor::encode(&rec);
        let mut framed = Vec::with_capacity(body.len() + 12);
        framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
        framed.extend_from_slice(&checksum(&body).to_le_bytes());
        framed.extend_from_slice(&body);
        if crate::crashpoint::due("journal-half") {
            durable::append(&mut self.journal, &framed[..framed.len() / 2])
                .at("append to", &self.dir.join(JOURNAL))?;
            crate::crashpoint::abort("journal-half");
        }
        if let Err(e) = durable::append(&mut self.journal, &framed) {
            // A full disk takes part of a record (the file's last page had room for it): cut
            // the journal back to its last whole record, or every record appended once space
            // is back would follow a torn one, and the next start would drop them all.
            if let Err(t) =
                (self.journal.set_len(self.journal_len)).and_then(|()| self.journal.sync_data())
            {
                log::error!(
                    "{}: cannot cut back a failed append ({t}); the next start drops what follows it",
                    self.dir.join(JOURNAL).display()
                );
            }
            return Err(e).at("append to", &self.dir.join(JOURNAL));
        }
        self.journal_len += framed.len() as u64;
        self.apply(rec);
        if self.journal_len > COMPACT_AT {
            self.compact()?;
        }
        Ok(())
    }

    /// Write a snapshot and start an empty journal.
    pub fn compact(&mut self) -> io::Result<()> {
        let snap = Snapshot {
            format: STATE_FORMAT,
            epoch: self.epoch,
            next_seq: self.next_seq,
            hlc: self.hlc,
            applied: self.applied.clone(),
            manifest: self.manifest.clone(),
            intent: self.intent.clone(),
            synced: self.synced,
            imported: self.imported.clone(),
            holes: self.holes.clone(),
        };
        durable::write_file(&self.dir.join(SNAPSHOT), &crate::cbor::encode(&snap))?;
        (self.journal.set_len(0))
            .and_then(|()| self.journal.sync_all())
            .at("truncate", &self.dir.join(JOURNAL))?;
        self.journal_len = 0;
        Ok(())
    }

    /// Whether a scanned change is what an interrupted apply of this node was writing (or
    /// deleting): its own unfinished work, to be finished by the redelivered Delta or a
    /// resync, never a local edit.
    pub fn intended(&self, change: &LocalChange) -> bool {
        match change {
            LocalChange::Write { path, sha256, .. } => {
                self.intent.get(path) == Some(&Some(*sha256))
            }
            LocalChange::Delete { path } => self.intent.get(path) == Some(&None),
        }
    }

    /// Per origin, how far its stream is held here without a hole: what a resync answer
    /// advertises (see [`holes`]). This node's own stream is not included.
    pub fn covered(&self) -> BTreeMap<String, Position> {
        let mut out = self.applied.clone();
        for (origin, hole) in &self.holes {
            out.insert(origin.clone(), hole.covered());
        }
        out
    }

    /// The outbox of this state dir (a handle usable without the state lock).
    pub fn outbox(&self) -> Outbox {
        Outbox::at(self.dir.join(OUTBOX))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Version;
    use std::io::Write;

    fn entry(n: u8) -> Entry {
        Entry {
            sha256: [n; 32],
            size: n as u64,
            mtime_ns: 0,
            ctime_ns: 0,
            ino: 0,
            version: Version::new(n as u64, "a"),
            deleted: false,
            merged: None,
        }
    }

    #[test]
    fn commits_survive_reopen_and_epoch_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let epoch;
        {
            let mut s = State::open(dir.path()).unwrap();
            epoch = s.epoch;
            s.commit(Record {
                entries: vec![("global.xml".into(), entry(1))],
                next_seq: Some(5),
                hlc: 99,
                applied: vec![("b".into(), Position { epoch: 3, seq: 9 })],
                ..Default::default()
            })
            .unwrap();
        }
        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.epoch, epoch);
        assert_eq!(s.next_seq, 5);
        assert_eq!(s.hlc, 99);
        assert_eq!(s.applied["b"], Position { epoch: 3, seq: 9 });
        assert_eq!(s.manifest.get("global.xml"), Some(&entry(1)));
    }

    #[test]
    fn an_intent_survives_reopen_and_compaction_until_its_paths_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, n: u8| LocalChange::Write {
            path: path.into(),
            sha256: [n; 32],
            stat: Default::default(),
        };
        {
            let mut s = State::open(dir.path()).unwrap();
            s.commit(Record {
                intent: vec![("a.xml".into(), Some([1; 32])), ("b.xml".into(), None)],
                ..Default::default()
            })
            .unwrap();
            s.compact().unwrap();
        }
        let mut s = State::open(dir.path()).unwrap();
        assert!(s.intended(&write("a.xml", 1)));
        assert!(!s.intended(&write("a.xml", 2)), "other bytes are an edit");
        assert!(s.intended(&LocalChange::Delete {
            path: "b.xml".into()
        }));
        assert!(!s.intended(&LocalChange::Delete {
            path: "a.xml".into()
        }));
        s.commit(Record {
            entries: vec![("a.xml".into(), entry(1))],
            forget: vec!["b.xml".into()],
            ..Default::default()
        })
        .unwrap();
        drop(s);
        let s = State::open(dir.path()).unwrap();
        assert!(s.intent.is_empty(), "recorded paths leave the intent");
    }

    #[test]
    fn synced_is_set_once_and_survives_reopen_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = State::open(dir.path()).unwrap();
            assert!(!s.synced, "a new state has not been through a resync");
            s.commit(Record {
                applied: vec![("m".into(), Position { epoch: 1, seq: 2 })],
                ..Default::default()
            })
            .unwrap();
            assert!(!s.synced, "an applied Delta is not a completed resync");
            s.commit(Record {
                synced: true,
                ..Default::default()
            })
            .unwrap();
        }
        let mut s = State::open(dir.path()).unwrap();
        assert!(s.synced);
        s.compact().unwrap();
        s.commit(Record::default()).unwrap();
        drop(s);
        assert!(State::open(dir.path()).unwrap().synced);
    }

    #[test]
    fn a_hole_survives_reopen_and_compaction_until_filled_and_is_what_is_advertised() {
        let dir = tempfile::tempdir().unwrap();
        let hole = Hole {
            epoch: 7,
            from: 100,
            to: 126,
        };
        {
            let mut s = State::open(dir.path()).unwrap();
            s.commit(Record {
                applied: vec![("m".into(), Position { epoch: 7, seq: 140 })],
                holes: vec![("m".into(), Some(hole))],
                ..Default::default()
            })
            .unwrap();
        }
        let mut s = State::open(dir.path()).unwrap();
        assert_eq!(s.holes["m"], hole, "replayed from the journal");
        assert_eq!(s.applied["m"].seq, 140, "seen");
        assert_eq!(s.covered()["m"], Position { epoch: 7, seq: 99 }, "held");
        s.compact().unwrap();
        drop(s);
        let mut s = State::open(dir.path()).unwrap();
        assert_eq!(s.holes["m"], hole, "from the snapshot");
        s.commit(Record {
            holes: vec![("m".into(), None)],
            ..Default::default()
        })
        .unwrap();
        drop(s);
        let s = State::open(dir.path()).unwrap();
        assert!(s.holes.is_empty());
        assert_eq!(s.covered()["m"].seq, 140);
    }

    #[test]
    fn torn_journal_tail_is_dropped_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = State::open(dir.path()).unwrap();
            s.commit(Record {
                entries: vec![("a.xml".into(), entry(1))],
                ..Default::default()
            })
            .unwrap();
        }
        let mut f = durable::open_append(&dir.path().join(JOURNAL)).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let mut s = State::open(dir.path()).unwrap();
        assert!(s.manifest.get("a.xml").is_some());
        s.commit(Record {
            entries: vec![("b.xml".into(), entry(2))],
            ..Default::default()
        })
        .unwrap();
        drop(s);
        let s = State::open(dir.path()).unwrap();
        assert!(s.manifest.get("b.xml").is_some());
    }

    #[test]
    fn second_daemon_on_same_state_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _s = State::open(dir.path()).unwrap();
        let e = State::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("in use"), "{e}");
    }

    #[test]
    fn outbox_round_trips_and_bumps_next_seq() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = State::open(dir.path()).unwrap();
            s.outbox()
                .put(7, &[b"one".to_vec(), b"two".to_vec()])
                .unwrap();
        }
        let s = State::open(dir.path()).unwrap();
        let outbox = s.outbox();
        assert_eq!(outbox.seqs().unwrap(), vec![7]);
        assert_eq!(s.next_seq, 8);
        assert_eq!(
            outbox.get(7).unwrap(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        outbox.remove(7).unwrap();
        assert!(outbox.seqs().unwrap().is_empty());
    }

    #[test]
    fn compaction_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(dir.path()).unwrap();
        for i in 0..50u8 {
            s.commit(Record {
                entries: vec![(format!("f{i}.xml"), entry(i))],
                next_seq: Some(i as u64 + 1),
                ..Default::default()
            })
            .unwrap();
        }
        s.compact().unwrap();
        drop(s);
        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.manifest.len(), 50);
        assert_eq!(s.next_seq, 50);
    }
}
