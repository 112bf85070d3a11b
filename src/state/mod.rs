//! Durable node state in `state_dir`: manifest, sequence counter, epoch, clock, applied
//! positions, and the outbox of unacknowledged Deltas.
//!
//! Layout:
//! - `state.redb` — one database (redb: a copy-on-write B-tree, crash-safe, one file): the
//!   manifest (`manifest` table, path → entry), the paths of an unfinished apply (`intent`),
//!   and the node's small values (`meta`: epoch, next sequence number, clock, positions,
//!   holes, imports). Every [`Record`] is one transaction, fsynced before [`State::commit`]
//!   returns: after a crash at any instant the database holds every committed record and no
//!   part of the one in progress;
//! - `catalog.redb` — the catalog index (`datadir::CatalogIndex`): derived from the data
//!   directory, checked against it at every start, rebuilt if lost;
//! - `outbox/`      — one file per unacknowledged Delta (its encoded MQTT payloads);
//! - `lock`         — held while a daemon runs, so two daemons never share a state dir.
//!
//! The manifest stays on disk; reads go through the database's page cache
//! ([`CACHE_BYTES`]), so memory does not grow with the catalog. The small values are also
//! kept in memory. A state dir of the layout before the database (`state.cbor` + `journal`)
//! is migrated at open, in one transaction.

use crate::datadir::{Entry, LocalChange, Manifest};
use crate::durable;
use crate::file_error::{invalid, Context};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub mod holes;
mod legacy;
mod node;
mod outbox;
mod position;
mod record;
pub use holes::Hole;
pub use node::Intent;
use node::{apply_intent, Node, STATE_FORMAT};
pub use outbox::Outbox;
pub use position::Position;
pub use record::{Imported, Record};

const DATABASE: &str = "state.redb";
const OUTBOX: &str = "outbox";
const LOCK: &str = "lock";
const CATALOG: &str = "catalog.redb";
/// The database's page cache: what the manifest may hold in memory, whatever its size. Pages
/// beyond it are read again from the file (the system's page cache holds them). Measured on
/// 10,000 layers (BENCHMARKS.md): 16 MiB here and 8 for the catalog index left an idle slave at
/// 54.8 MiB, 4 and 2 at 38.9 MiB, with full rescans no slower.
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The key of the node's small values ([`Node`]) in the `meta` table, rewritten by every
/// commit.
const NODE: &str = "node";
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
/// Path → CBOR `Option<[u8; 32]>` (see [`Record::intent`]).
const INTENT: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("intent");

/// The node's durable state: the manifest on disk, the rest also in memory.
pub struct State {
    dir: PathBuf,
    pub epoch: u64,
    pub next_seq: u64,
    pub hlc: u64,
    pub applied: BTreeMap<String, Position>,
    pub manifest: Manifest,
    /// Writes and deletions of an apply that started but was not recorded (see
    /// [`Record::intent`]): path → the hash it was to get, or `None` for a deletion.
    pub intent: Intent,
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
    /// Records' history notes are kept (`[history] enabled`); off until the node says.
    pub history: bool,
    /// Content an apply's intent kept ahead for the history, by hash: its id, until the record
    /// of the apply's changes indexes it (`history::keep_content`).
    ahead: std::collections::HashMap<[u8; 32], u64>,
    /// The history's base is complete (see `upkeep`): until then an apply keeps what it
    /// replaces as the base's (`Record::history_base`).
    pub base_done: bool,
    _lock: File,
}

pub fn new_epoch() -> u64 {
    // Distinct across restarts that lose state: wall-clock nanoseconds mixed with the pid.
    let nanos = crate::clock::now_ns();
    nanos ^ ((std::process::id() as u64) << 48) | 1
}

/// A database error as an I/O error naming the state's database file.
fn db_error(path: &Path, what: &str, e: impl Into<redb::Error>) -> io::Error {
    let e: redb::Error = e.into();
    let kind = match &e {
        redb::Error::Io(io) => io.kind(),
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{}: cannot {what}: {e}", path.display()))
}

fn open_database(path: &Path) -> io::Result<redb::Database> {
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .open(path)
        .map_err(|e| db_error(path, "open the state database", e))
}

impl State {
    /// Open (or create) the state in `dir`, taking its lock.
    pub fn open(dir: &Path) -> io::Result<State> {
        durable::create_dirs(&dir.join(OUTBOX))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))
            .at("open", &dir.join(LOCK))?;
        lock.try_lock().map_err(|_| {
            let holder = std::fs::read_to_string(dir.join(LOCK)).unwrap_or_default();
            let holder = holder.trim();
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "state dir {} is in use by another gscluster process{}",
                    dir.display(),
                    if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" ({holder})")
                    }
                ),
            )
        })?;
        say_holder(&lock, "a command")?;
        let path = dir.join(DATABASE);
        if !path.exists() {
            create(dir)?;
        }
        // The history keeps the content of every replicated file, `security/**` included
        // when it is replicated: the database is the daemon's user's alone.
        restrict(&path)?;
        let db = Arc::new(open_database(&path)?);
        let (node, intent) = read_node(&db, &path)?;
        let mut state = State {
            dir: dir.to_path_buf(),
            epoch: node.epoch,
            next_seq: node.next_seq,
            hlc: node.hlc,
            applied: node.applied,
            manifest: Manifest::stored(db),
            intent,
            synced: node.synced,
            imported: node.imported,
            holes: node.holes,
            uncommitted: Vec::new(),
            history: false,
            ahead: Default::default(),
            base_done: false,
            lacking: Default::default(),
            _lock: lock,
        };
        *state.lacking.lock().unwrap() = holes::describe_holes(&state.holes);
        state.base_done = crate::history::base_pending(state.database()).is_ok_and(|p| !p);
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
        Ok(state)
    }

    /// Say in the lock file that a daemon holds the state: a daemon starting meanwhile gives
    /// up at once instead of waiting as it does for a command (`cmd::open_state`).
    pub fn hold_as_daemon(&self) -> io::Result<()> {
        say_holder(&self._lock, "the daemon")
    }

    fn node(&self) -> Node {
        Node {
            format: STATE_FORMAT,
            epoch: self.epoch,
            next_seq: self.next_seq,
            hlc: self.hlc,
            applied: self.applied.clone(),
            synced: self.synced,
            imported: self.imported.clone(),
            holes: self.holes.clone(),
        }
    }

    /// Take a committed record (and the node values it made) into the in-memory state.
    fn apply(&mut self, rec: Record, node: Node) {
        let holes_changed = node.holes != self.holes;
        (self.next_seq, self.hlc, self.synced) = (node.next_seq, node.hlc, node.synced);
        (self.applied, self.imported, self.holes) = (node.applied, node.imported, node.holes);
        apply_intent(&mut self.intent, rec);
        if holes_changed {
            *self.lacking.lock().unwrap() = holes::describe_holes(&self.holes);
        }
        self.manifest.changed();
    }

    /// Make `rec` durable (one fsynced transaction), then apply it to the in-memory state.
    pub fn commit(&mut self, rec: Record) -> io::Result<()> {
        let path = self.dir.join(DATABASE);
        let mut node = self.node();
        node.apply(&rec);
        let ahead = match self.write(&rec, &node) {
            Ok(ahead) => ahead,
            Err(e) => {
                // A failed write (a full disk) leaves the database refusing every later
                // operation until it is reopened; reopening rolls back to the last commit.
                self.reopen();
                self.ahead.clear();
                return Err(e);
            }
        };
        // Content kept ahead waits for the record of its changes, which indexes what it uses;
        // what that record leaves is swept at the next start.
        if rec.history.is_some() {
            self.ahead.clear();
        }
        self.ahead.extend(ahead);
        self.apply(rec, node);
        log::trace!("{}: committed", path.display());
        Ok(())
    }

    /// Write `rec` in one transaction; returns the ids of the content it kept ahead.
    fn write(&self, rec: &Record, node: &Node) -> io::Result<Vec<([u8; 32], u64)>> {
        let path = self.dir.join(DATABASE);
        let err = |what: &str, e: redb::Error| db_error(&path, what, e);
        let db = (self.manifest.database()).expect("a state's manifest is stored");
        let mut txn = (db.begin_write()).map_err(|e| err("write", e.into()))?;
        // Saves the allocator state with each commit: a reopen after a crash reads it instead
        // of walking the whole tree (1.4 ms instead of 141 ms at 330,000 entries, measured).
        txn.set_quick_repair(true);
        if crate::crashpoint::due("journal-half") {
            // Half of the record written, then the process dies: the torn write a crash makes.
            let half = &rec.entries[..rec.entries.len() / 2];
            let _ = Manifest::write(&txn, half, &[]);
            crate::crashpoint::abort("journal-half");
        }
        if self.history && !rec.history_base.is_empty() {
            crate::history::fill_base(&txn, &rec.history_base, false)
                .map_err(|e| err("write", e))?;
        }
        let mut ahead = Vec::new();
        if self.history && !rec.history_content.is_empty() {
            ahead = crate::history::keep_content(&txn, &rec.history_content)
                .map_err(|e| err("write", e))?;
        }
        // Before the manifest changes: each change's group says what the path held until now.
        if let Some(note) = rec.history.as_deref().filter(|_| self.history) {
            let groups = self.groups(rec, note);
            crate::history::write(&txn, &groups, &note.contents, &self.ahead)
                .map_err(|e| err("write", e))?;
        }
        Manifest::write(&txn, &rec.entries, &rec.forget).map_err(|e| err("write", e))?;
        {
            let mut t = txn.open_table(INTENT).map_err(|e| err("write", e.into()))?;
            for path in (rec.entries.iter().map(|(p, _)| p)).chain(&rec.forget) {
                t.remove(path.as_str())
                    .map_err(|e| err("write", e.into()))?;
            }
            for (path, hash) in &rec.intent {
                (t.insert(path.as_str(), crate::cbor::encode(hash).as_slice()))
                    .map_err(|e| err("write", e.into()))?;
            }
        }
        put_node(&txn, node).map_err(|e| err("write", e))?;
        txn.commit().map_err(|e| err("commit", e.into()))?;
        Ok(ahead)
    }

    /// The history groups `note` makes of `rec`'s entries: versions, hashes and sizes are the
    /// entries', what each path held before is the manifest's. A change that leaves the
    /// content as it was (a new version of the same bytes, a deletion of what was not there)
    /// is no change to keep.
    fn groups(
        &self,
        rec: &Record,
        note: &crate::history::note::Note,
    ) -> Vec<crate::history::Group> {
        use crate::history::{Change, Group};
        let entries: std::collections::HashMap<&str, &Entry> =
            (rec.entries.iter()).map(|(p, e)| (p.as_str(), e)).collect();
        let time_ms = crate::clock::now_ms();
        let group = |n: &crate::history::note::Noted| Group {
            time_ms,
            origin: n.origin.clone(),
            kind: n.kind.clone(),
            changes: (n.paths.iter())
                .filter_map(|path| {
                    let e = entries.get(path.as_str())?;
                    let before = self.manifest.live_entry(path).map(|b| b.sha256);
                    let same = if e.deleted {
                        before.is_none()
                    } else {
                        before == Some(e.sha256)
                    };
                    (!same).then(|| Change {
                        path: path.clone(),
                        deleted: e.deleted,
                        version: e.version.clone(),
                        sha256: e.sha256,
                        size: e.size,
                        before,
                    })
                })
                .collect(),
        };
        (note.groups.iter())
            .map(group)
            .filter(|g| !g.changes.is_empty())
            .collect()
    }

    /// Run `f` in one fsynced write transaction of the state's database (the history's
    /// upkeep: filling its base, pruning it).
    pub fn history_txn<T>(
        &mut self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> io::Result<T> {
        let path = self.dir.join(DATABASE);
        let err = |what: &str, e: redb::Error| db_error(&path, what, e);
        // Run between applies (under the state lock): what was kept ahead and not used belongs
        // to an apply that failed, and a sweep may drop it.
        self.ahead.clear();
        let result = (|| {
            let mut txn = (self.database().begin_write()).map_err(|e| err("write", e.into()))?;
            txn.set_quick_repair(true);
            let out = f(&txn).map_err(|e| err("write the history in", e))?;
            txn.commit().map_err(|e| err("commit", e.into()))?;
            Ok(out)
        })();
        if result.is_err() {
            self.reopen();
        }
        result
    }

    /// Whether what a Delta or a resync writes here goes into the history: not while the node
    /// bootstraps (its history begins with the tree the bootstrap made, kept afterwards by
    /// `upkeep`, instead of every file being a change of its own).
    pub fn records_applies(&self) -> bool {
        self.history && self.synced
    }

    /// The state's database, shared: to read the history without holding the state.
    pub fn shared_database(&self) -> Arc<redb::Database> {
        (self.manifest.shared_database()).expect("a state's manifest is stored")
    }

    /// The state's database, where the history is kept too.
    pub fn database(&self) -> &redb::Database {
        (self.manifest.database()).expect("a state's manifest is stored")
    }

    /// Reopen the database after a failed write (see [`State::commit`]).
    fn reopen(&mut self) {
        let path = self.dir.join(DATABASE);
        // The manifest holds the only handle: it must be gone before the file opens again.
        self.manifest = Manifest::default();
        match open_database(&path) {
            Ok(db) => self.manifest = Manifest::stored(Arc::new(db)),
            // Nothing can be read or recorded: stop, and let the supervisor restart the node
            // once the disk allows.
            Err(e) => panic!("{e} (after a failed write)"),
        }
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

    /// Where the catalog index of this state dir is kept.
    pub fn catalog_file(&self) -> PathBuf {
        self.dir.join(CATALOG)
    }
}

fn put_node(txn: &redb::WriteTransaction, node: &Node) -> Result<(), redb::Error> {
    let mut t = txn.open_table(META)?;
    t.insert(NODE, crate::cbor::encode(node).as_slice())?;
    Ok(())
}

/// The node's values and the intent, as the database holds them.
fn read_node(db: &redb::Database, path: &Path) -> io::Result<(Node, Intent)> {
    use redb::{ReadableDatabase, ReadableTable};
    let err = |e: redb::Error| db_error(path, "read", e);
    let txn = db.begin_read().map_err(|e| err(e.into()))?;
    let meta = txn.open_table(META).map_err(|e| err(e.into()))?;
    let bytes = (meta.get(NODE).map_err(|e| err(e.into()))?)
        .ok_or_else(|| invalid(path, "no node record"))?;
    let node: Node = (crate::cbor::decode(bytes.value()))
        .map_err(|e| invalid(path, format!("node record unreadable: {e}")))?;
    if node.format != STATE_FORMAT {
        return Err(invalid(
            path,
            format!("state format {} unknown", node.format),
        ));
    }
    let mut intent = BTreeMap::new();
    match txn.open_table(INTENT) {
        Ok(t) => {
            for kv in t.iter().map_err(|e| err(e.into()))? {
                let (k, v) = kv.map_err(|e| err(e.into()))?;
                let hash = (crate::cbor::decode(v.value())).map_err(|e| {
                    invalid(path, format!("intent of {} unreadable: {e}", k.value()))
                })?;
                intent.insert(k.value().to_string(), hash);
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(err(e.into())),
    }
    Ok((node, intent))
}

/// Make the database of a state dir that has none: empty, or migrated from the layout before
/// it. Built under a temporary name and renamed into place, so that a crash midway leaves the
/// old layout (or nothing) to start from again.
/// Write who holds the lock (`"the daemon"`, `"a command"`) and its pid into the lock file.
fn say_holder(mut lock: &File, who: &str) -> io::Result<()> {
    use std::io::{Seek, Write};
    lock.set_len(0)?;
    lock.seek(io::SeekFrom::Start(0))?;
    write!(lock, "{who}, pid {}", std::process::id())
}

/// Whether the lock file of `dir` says a daemon holds the state.
pub fn held_by_daemon(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(LOCK)).is_ok_and(|s| s.starts_with("the daemon"))
}

/// Mode 0600 for the state's database (a state dir of an earlier version may have it wider).
fn restrict(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .at("stat", path)?
        .permissions()
        .mode()
        & 0o777;
    if mode != 0o600 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .at("set the permissions of", path)?;
    }
    Ok(())
}

fn create(dir: &Path) -> io::Result<()> {
    let path = dir.join(DATABASE);
    let building = dir.join(format!("{DATABASE}.new"));
    let migrate = legacy::present(dir);
    let old = if migrate {
        legacy::load(dir)?
    } else {
        legacy::Snapshot {
            node: Node {
                epoch: new_epoch(),
                next_seq: 1,
                ..Node::default()
            },
            ..Default::default()
        }
    };
    let _ = std::fs::remove_file(&building);
    {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&building)
            .map_err(|e| db_error(&building, "create the state database", e))?;
        let err = |e: redb::Error| db_error(&building, "write", e);
        let txn = db.begin_write().map_err(|e| err(e.into()))?;
        let node = Node {
            format: STATE_FORMAT,
            ..old.node
        };
        let entries: Vec<(String, Entry)> = old.manifest.entries.into_iter().collect();
        Manifest::write(&txn, &entries, &[]).map_err(err)?;
        {
            let mut t = txn.open_table(INTENT).map_err(|e| err(e.into()))?;
            for (p, hash) in &old.intent {
                (t.insert(p.as_str(), crate::cbor::encode(hash).as_slice()))
                    .map_err(|e| err(e.into()))?;
            }
        }
        put_node(&txn, &node).map_err(err)?;
        txn.commit().map_err(|e| err(e.into()))?;
        if migrate {
            log::info!(
                "{}: state moved from {} and {} into the database ({} manifest entries)",
                path.display(),
                legacy::SNAPSHOT,
                legacy::JOURNAL,
                entries.len()
            );
        }
    }
    std::fs::rename(&building, &path).at("rename into", &path)?;
    durable::fsync_dir(dir)?;
    if migrate {
        durable::remove_file(&dir.join(legacy::SNAPSHOT))?;
        durable::remove_file(&dir.join(legacy::JOURNAL))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Version;
    use serde::Serialize;

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
        assert_eq!(s.manifest.get("global.xml"), Some(entry(1)));
    }

    #[test]
    fn an_intent_survives_reopen_until_its_paths_are_recorded() {
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
    fn synced_is_set_once_and_survives_reopen() {
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
        s.commit(Record::default()).unwrap();
        drop(s);
        assert!(State::open(dir.path()).unwrap().synced);
    }

    #[test]
    fn a_hole_survives_reopen_until_filled_and_is_what_is_advertised() {
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
        assert_eq!(s.holes["m"], hole);
        assert_eq!(s.applied["m"].seq, 140, "seen");
        assert_eq!(s.covered()["m"], Position { epoch: 7, seq: 99 }, "held");
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

    /// `state.cbor` exactly as the layout before the database wrote it: its fields flat, in
    /// this order (what `legacy::Snapshot` must still read).
    #[derive(Serialize, Default)]
    struct OldSnapshot {
        format: u16,
        epoch: u64,
        next_seq: u64,
        hlc: u64,
        applied: BTreeMap<String, Position>,
        manifest: legacy::Entries,
        intent: BTreeMap<String, Option<[u8; 32]>>,
        synced: bool,
        imported: BTreeMap<String, Imported>,
        holes: BTreeMap<String, Hole>,
    }

    fn write_old_snapshot(dir: &Path, snap: &OldSnapshot) {
        std::fs::write(dir.join(legacy::SNAPSHOT), crate::cbor::encode(snap)).unwrap();
    }

    /// A snapshot of the layout before the database, holding `a.xml`.
    fn old_snapshot(epoch: u64, next_seq: u64) -> OldSnapshot {
        OldSnapshot {
            format: 1,
            epoch,
            next_seq,
            manifest: legacy::Entries {
                entries: [("a.xml".to_string(), entry(1))].into(),
            },
            ..Default::default()
        }
    }

    /// A state dir of the layout before the database: its snapshot and every whole journal
    /// record move into the database, a torn tail is dropped, and the old files go.
    #[test]
    fn a_state_dir_of_the_old_layout_is_migrated_whole_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let snap = OldSnapshot {
            hlc: 7,
            ..old_snapshot(42, 3)
        };
        write_old_snapshot(dir.path(), &snap);
        let mut journal = legacy::frame(&Record {
            entries: vec![("b.xml".into(), entry(2))],
            next_seq: Some(9),
            hlc: 11,
            applied: vec![("m".into(), Position { epoch: 1, seq: 4 })],
            intent: vec![("c.xml".into(), None)],
            ..Default::default()
        });
        journal.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
        std::fs::write(dir.path().join(legacy::JOURNAL), journal).unwrap();
        {
            let s = State::open(dir.path()).unwrap();
            assert_eq!((s.epoch, s.next_seq, s.hlc), (42, 9, 11));
            assert_eq!(s.manifest.len(), 2);
            assert_eq!(s.manifest.get("b.xml"), Some(entry(2)));
            assert_eq!(s.applied["m"].seq, 4);
            assert_eq!(s.intent.get("c.xml"), Some(&None));
        }
        assert!(!legacy::present(dir.path()), "the old files are gone");
        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.manifest.get("a.xml"), Some(entry(1)));
        assert_eq!(s.epoch, 42);
    }

    /// A crash while the database was being built from the old layout leaves the old layout:
    /// the next open builds it again.
    #[test]
    fn a_migration_interrupted_before_its_rename_is_redone() {
        let dir = tempfile::tempdir().unwrap();
        let snap = old_snapshot(5, 2);
        write_old_snapshot(dir.path(), &snap);
        std::fs::write(
            dir.path().join(format!("{DATABASE}.new")),
            b"half a database",
        )
        .unwrap();
        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.epoch, 5);
        assert_eq!(s.manifest.get("a.xml"), Some(entry(1)));
    }

    #[test]
    fn second_daemon_on_same_state_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _s = State::open(dir.path()).unwrap();
        let e = State::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("in use"), "{e}");
    }

    /// A commit records its note's groups with what each path held before; a version that
    /// leaves the content as it was is no change; with the history off nothing is recorded.
    #[test]
    fn a_commit_records_its_groups_with_what_each_path_held_before() {
        use crate::history::{note::Note, Kind};
        use crate::hlc::Version;
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(dir.path()).unwrap();
        let live = |b: &[u8], hlc| {
            let sha = <sha2::Sha256 as sha2::Digest>::digest(b).into();
            Entry::live(sha, b.len() as u64, Version::new(hlc, "m"))
        };
        let commit = |s: &mut State, entries: Vec<(String, Entry)>| {
            let paths = entries.iter().map(|(p, _)| p.clone()).collect();
            s.commit(Record {
                entries,
                history: Some(Box::new(Note::one("m", Kind::Local { seq: 1 }, paths))),
                ..Default::default()
            })
            .unwrap();
        };
        commit(&mut s, vec![("a.xml".into(), live(b"<a1/>", 1))]);
        assert_eq!(
            crate::history::extent(s.database()).unwrap().groups,
            0,
            "off"
        );
        s.history = true;
        commit(
            &mut s,
            vec![
                ("a.xml".into(), live(b"<a2/>", 2)),
                ("b.xml".into(), live(b"<b/>", 2)),
            ],
        );
        // a.xml again with the same bytes, b.xml deleted.
        commit(
            &mut s,
            vec![
                ("a.xml".into(), live(b"<a2/>", 3)),
                ("b.xml".into(), Entry::tombstone(Version::new(3, "m"))),
            ],
        );
        let got = crate::history::newest(s.database(), None, 10).unwrap();
        assert_eq!(got.len(), 2);
        let ops = |i: usize| -> Vec<(String, &str)> {
            (got[i].1.changes.iter())
                .map(|c| (c.path.clone(), c.op()))
                .collect()
        };
        assert_eq!(
            ops(1),
            [("a.xml".into(), "modify"), ("b.xml".into(), "create")]
        );
        assert_eq!(
            ops(0),
            [("b.xml".into(), "delete")],
            "a.xml's same bytes: no change"
        );
        let a1: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(b"<a1/>").into();
        assert_eq!(got[1].1.changes[0].before, Some(a1));
    }

    /// The database (which keeps the history's content) is the daemon's user's alone, also
    /// when an earlier version left it readable by others.
    #[test]
    fn the_database_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DATABASE);
        let mode = || std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        drop(State::open(dir.path()).unwrap());
        assert_eq!(mode(), 0o600);
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(State::open(dir.path()).unwrap());
        assert_eq!(mode(), 0o600);
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
    fn many_commits_survive_reopen_and_the_manifest_walks_in_path_order() {
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
        s.commit(Record {
            forget: vec!["f7.xml".into()],
            ..Default::default()
        })
        .unwrap();
        drop(s);
        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.manifest.len(), 49);
        assert_eq!(s.next_seq, 50);
        let paths: Vec<String> = s.manifest.iter().map(|(p, _)| p).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert!(!paths.contains(&"f7.xml".to_string()));
        assert_eq!(s.manifest.after("f8.xml").count(), 1, "f9.xml");
        assert_eq!(s.manifest.within("f1.xml").count(), 1);
    }
}
