//! The cluster's history on this node: every change it applied or published, grouped as one
//! GeoServer action (a Delta, a local edit, a resync, an import, a rollback) reads, with the
//! content of every version kept once by hash.
//!
//! The history lives in the state's database (`state.redb`) and is written inside the same
//! transaction as the state's record of the change ([`write`], called from the state's commit):
//! a crash never leaves an acknowledged change out of the history, nor a change in it that was
//! not recorded. Tables:
//! - `history_groups`: group id (increasing) → CBOR [`Group`];
//! - `history_index`: SHA-256 → where its content is and how many kept changes and base
//!   entries refer to it (so that pruning frees the content nothing needs any more without a
//!   sweep);
//! - `history_content`: content id → the content ([`Blob`]: deflated when that is smaller —
//!   by the upkeep's [`pack`] soon after for what an apply or a publish kept, so they only pay
//!   for a copy), once however many versions share it;
//! - `history_base`: path → SHA-256 of its content at the oldest point kept: the tree when the
//!   history began ([`fill_base`]), then each pruned group folded in ([`prune`]). With it every
//!   version a kept change replaced is still here, so any kept point can be restored;
//! - its counters (the next group id, the bytes kept, where the history begins) under the key
//!   `history` of the state's own table of small values, which every commit writes anyway.
//!
//! Recording so adds three tables to a commit: the groups and the content, both appended at
//! their trees' ends, and the index, whose random keys are the price of keeping each content
//! once (its entries are small, so they touch few pages).
//!
//! The tree at point P (after group P) differs from today's only at the paths a later group
//! changed, and each such path held there what the first of those changes found
//! (`Change::before`): [`state_at`] needs nothing else.

use crate::hlc::Version;
use redb::{ReadTransaction, WriteTransaction};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod diff;
pub mod note;
pub mod time;
pub mod view;

pub type Sha = [u8; 32];

const GROUPS: TableDefinition<u64, &[u8]> = TableDefinition::new("history_groups");
/// SHA-256 → (content id, references). Small entries: the random keys of a batch of new
/// content touch few pages of this tree.
const INDEX: TableDefinition<&Sha, (u64, u32)> = TableDefinition::new("history_index");
/// Content id → the content ([`Blob`]). Ids increase, so new content is appended at the end of
/// this tree instead of rewriting pages all over it (content keyed by its hash made a
/// 10,000-change catch-up 29 % slower, BENCHMARKS.md "History").
const CONTENT: TableDefinition<u64, &[u8]> = TableDefinition::new("history_content");
const BASE: TableDefinition<&str, &Sha> = TableDefinition::new("history_base");
/// The state's table of small values (`state::META`): the counters live there.
const STATE_META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const COUNTERS: &str = "history";

/// The history's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counters {
    next_id: u64,
    /// The next content id.
    #[serde(default)]
    next_content: u64,
    /// Bytes kept: groups and stored content.
    kept: u64,
    /// The bytes of the content the base refers to (per base entry; content two entries share
    /// counts twice): what `max_mb` does not count, since no point can be restored without it.
    base_bytes: u64,
    /// When the history began (ms): the tree's state before that is not kept.
    since_ms: u64,
    /// The newest pruned group and its time: the oldest point that can still be restored.
    floor_id: u64,
    floor_ms: u64,
    /// The tree the history began with is kept in the base ([`fill_base`]).
    base_done: bool,
    /// Content up to this id is in its final form: what an apply kept as it is was deflated
    /// since ([`pack`]).
    #[serde(default)]
    packed_upto: u64,
}

impl Counters {
    fn load(txn: &WriteTransaction) -> Result<Counters, redb::Error> {
        let meta = txn.open_table(STATE_META)?;
        let c = meta.get(COUNTERS)?.map(|v| Counters::decode(v.value()));
        c.unwrap_or(Ok(Counters::default()))
    }

    fn read(txn: &ReadTransaction) -> Result<Counters, redb::Error> {
        match txn.open_table(STATE_META) {
            Ok(meta) => {
                let c = meta.get(COUNTERS)?.map(|v| Counters::decode(v.value()));
                c.unwrap_or(Ok(Counters::default()))
            }
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Counters::default()),
            Err(e) => Err(e.into()),
        }
    }

    fn decode(bytes: &[u8]) -> Result<Counters, redb::Error> {
        crate::cbor::decode(bytes).map_err(|e| corrupted(format!("history counters: {e}")))
    }

    fn store(&self, txn: &WriteTransaction) -> Result<(), redb::Error> {
        let mut meta = txn.open_table(STATE_META)?;
        meta.insert(COUNTERS, crate::cbor::encode(self).as_slice())?;
        Ok(())
    }
}

/// Content at least this long is stored deflated when that makes it smaller.
const DEFLATE_FROM: usize = 64;
/// Files of a data directory are small (650 bytes on average in the generated 10,000-layer
/// tree), compressed one by one: zlib's levels 1, 6 and 9 shrank 20,000 of them 1.96, 2.03 and
/// 2.03 times (measured with Python's zlib, the same algorithm). Level 1 is the fastest.
const DEFLATE_LEVEL: u8 = 1;

/// What made a group of changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A Delta from `origin`'s stream, applied here.
    Delta { seq: u64 },
    /// Edits made on this node's data directory and published by it as Delta `seq`.
    Local { seq: u64 },
    /// Files a resync round fetched, adopted or removed.
    Resync,
    /// An air-gap bundle imported.
    Import,
    /// A rollback made on `origin` to the point `to` of its history (`change N`, or a time).
    Rollback { to: String },
}

impl Kind {
    /// One word for `log`.
    pub fn word(&self) -> &'static str {
        match self {
            Kind::Delta { .. } => "delta",
            Kind::Local { .. } => "edit",
            Kind::Resync => "resync",
            Kind::Import => "import",
            Kind::Rollback { .. } => "rollback",
        }
    }
}

/// One change to one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    /// The path was deleted (then `sha256` and `size` say nothing).
    pub deleted: bool,
    pub version: Version,
    #[serde(with = "serde_bytes")]
    pub sha256: Sha,
    pub size: u64,
    /// What the path held before this change on this node: its content's hash, or `None` if
    /// it did not exist.
    #[serde(default, with = "serde_bytes")]
    pub before: Option<Sha>,
}

impl Change {
    /// The operation, as `log` names it.
    pub fn op(&self) -> &'static str {
        match (self.deleted, self.before.is_some()) {
            (true, _) => "delete",
            (false, true) => "modify",
            (false, false) => "create",
        }
    }
}

/// Changes that one action made, as they reached this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// When this node recorded it (ms since the Unix epoch).
    pub time_ms: u64,
    /// The node whose action it was.
    pub origin: String,
    pub kind: Kind,
    pub changes: Vec<Change>,
}

/// How content is stored: the first byte says, the rest is the content so encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Blob {
    Plain = 0,
    Deflate = 1,
}

/// A change's content in the history: where it is (`history_content`), and how many kept
/// changes and base entries refer to it; the last one released frees it.
struct Blobs<'t> {
    index: redb::Table<'t, &'static Sha, (u64, u32)>,
    content: redb::Table<'t, u64, &'static [u8]>,
}

impl<'t> Blobs<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Blobs<'t>, redb::Error> {
        Ok(Blobs {
            index: txn.open_table(INDEX)?,
            content: txn.open_table(CONTENT)?,
        })
    }

    /// Store `bytes` as they are under a new id (deflated by [`pack`] later: an apply or a
    /// publish pays only the copy); returns the id and the bytes added.
    fn put(&mut self, n: &mut Counters, bytes: &[u8]) -> Result<(u64, u64), redb::Error> {
        n.next_content = n.next_content.max(1);
        let id = n.next_content;
        n.next_content += 1;
        let stored = plain(bytes);
        self.content.insert(id, stored.as_slice())?;
        Ok((id, stored.len() as u64))
    }

    /// Deflate content `id` if it is kept as it is and that makes it smaller; `n.kept`
    /// follows.
    fn pack_id(&mut self, n: &mut Counters, id: u64) -> Result<(), redb::Error> {
        let packed = match self.content.get(id)? {
            Some(v) => match v.value().split_first() {
                Some((&b, rest)) if b == Blob::Plain as u8 => {
                    Some((v.value().len(), stored_form(rest)))
                }
                _ => None,
            },
            None => None,
        };
        // What stays plain in its final form (short, or not smaller deflated) is left alone.
        if let Some((was, p)) = packed.filter(|(_, p)| p[0] == Blob::Deflate as u8) {
            n.kept = n.kept.saturating_sub(was as u64) + p.len() as u64;
            self.content.insert(id, p.as_slice())?;
        }
        Ok(())
    }

    /// Count one more reference to `sha`, keeping its content unless kept already: the
    /// content kept ahead under `ahead`'s id, else `bytes` (neither: id 0, a change whose
    /// content was not at hand); returns the bytes added.
    fn keep(
        &mut self,
        n: &mut Counters,
        sha: &Sha,
        bytes: Option<&[u8]>,
        ahead: Option<u64>,
    ) -> Result<u64, redb::Error> {
        let (mut id, refs) = self.index.get(sha)?.map_or((0, 0), |v| v.value());
        let mut added = 0;
        if id == 0 {
            match (ahead, bytes) {
                (Some(a), _) => id = a,
                (None, Some(b)) => (id, added) = self.put(n, b)?,
                (None, None) => {}
            }
        }
        self.index.insert(sha, (id, refs + 1))?;
        Ok(added)
    }

    /// One reference fewer to `sha`; the content goes with the last. Returns the bytes freed.
    fn release(&mut self, sha: &Sha) -> Result<u64, redb::Error> {
        let Some((id, refs)) = self.index.get(sha)?.map(|v| v.value()) else {
            return Ok(0);
        };
        if refs > 1 {
            self.index.insert(sha, (id, refs - 1))?;
            return Ok(0);
        }
        self.index.remove(sha)?;
        self.drop_content(id)
    }

    fn drop_content(&mut self, id: u64) -> Result<u64, redb::Error> {
        Ok(self
            .content
            .remove(id)?
            .map_or(0, |v| v.value().len() as u64))
    }

    /// [`Blobs::pack_id`] for `sha`'s content.
    fn pack_sha(&mut self, n: &mut Counters, sha: &Sha) -> Result<(), redb::Error> {
        let id = self.index.get(sha)?.map_or(0, |v| v.value().0);
        if id == 0 {
            return Ok(());
        }
        self.pack_id(n, id)
    }

    /// The stored length of `sha`'s content (0: not kept).
    fn len(&self, sha: &Sha) -> Result<u64, redb::Error> {
        let Some((id, _)) = self.index.get(sha)?.map(|v| v.value()) else {
            return Ok(0);
        };
        Ok(self.content.get(id)?.map_or(0, |v| v.value().len() as u64))
    }
}

fn stored_form(bytes: &[u8]) -> Vec<u8> {
    if bytes.len() >= DEFLATE_FROM {
        if let Some(packed) = deflated(bytes) {
            return packed;
        }
    }
    plain(bytes)
}

fn plain(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(Blob::Plain as u8);
    out.extend_from_slice(bytes);
    out
}

/// `bytes` deflated behind the [`Blob::Deflate`] byte, when that is shorter. The compressor (a
/// few hundred KiB of tables) is made once per thread and reset for each file, not allocated
/// for every one.
fn deflated(bytes: &[u8]) -> Option<Vec<u8>> {
    use miniz_oxide::deflate::core::{
        compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
    };
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Box<CompressorOxide>> = std::cell::RefCell::new(
            Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(DEFLATE_LEVEL.into(), 0, 0))),
        );
    }
    COMPRESSOR.with_borrow_mut(|c| {
        c.reset();
        // Room for one byte less than the content: output that does not fit is not smaller.
        let mut out = vec![0u8; bytes.len()];
        out[0] = Blob::Deflate as u8;
        let (status, _, written) = compress(c, bytes, &mut out[1..], TDEFLFlush::Finish);
        (status == TDEFLStatus::Done).then(|| {
            out.truncate(1 + written);
            out
        })
    })
}

fn corrupted(what: String) -> redb::Error {
    redb::StorageError::Corrupted(what).into()
}

/// The content a stored form holds.
fn from_stored(stored: &[u8]) -> Result<Vec<u8>, redb::Error> {
    match stored.split_first() {
        Some((&b, rest)) if b == Blob::Plain as u8 => Ok(rest.to_vec()),
        Some((&b, rest)) if b == Blob::Deflate as u8 => {
            miniz_oxide::inflate::decompress_to_vec_with_limit(
                rest,
                crate::delta::MAX_FILE_SIZE as usize,
            )
            .map_err(|e| corrupted(format!("history content does not inflate: {e:?}")))
        }
        _ => Err(corrupted("history content of an unknown kind".into())),
    }
}

/// Record `groups` within the caller's transaction (the state's commit), with the content of
/// their writes (hash → bytes: content already kept is not stored again, content missing here
/// is recorded without it); returns the ids given to the groups.
pub fn write(
    txn: &WriteTransaction,
    groups: &[Group],
    contents: &BTreeMap<Sha, Vec<u8>>,
    ahead: &std::collections::HashMap<Sha, u64>,
) -> Result<Vec<u64>, redb::Error> {
    let mut n = Counters::load(txn)?;
    let mut table = txn.open_table(GROUPS)?;
    let mut blobs = Blobs::open(txn)?;
    n.next_id = n.next_id.max(1);
    if n.since_ms == 0 {
        n.since_ms = (groups.first()).map_or_else(crate::clock::now_ms, |g| g.time_ms);
    }
    let mut ids = Vec::with_capacity(groups.len());
    for group in groups {
        for c in group.changes.iter().filter(|c| !c.deleted) {
            let bytes = contents.get(&c.sha256).map(Vec::as_slice);
            let kept_ahead = ahead.get(&c.sha256).copied();
            n.kept += blobs.keep(&mut n, &c.sha256, bytes, kept_ahead)?;
        }
        let encoded = crate::cbor::encode(group);
        n.kept += encoded.len() as u64;
        table.insert(n.next_id, encoded.as_slice())?;
        ids.push(n.next_id);
        n.next_id += 1;
    }
    drop((table, blobs));
    n.store(txn)?;
    Ok(ids)
}

/// Keep content ahead of the changes that will refer to it (see `Record::history_content`),
/// unless kept already: appended, not yet in the index (the record of the changes indexes it,
/// given the ids returned here, so the index is written once). Returns the new content's ids.
pub fn keep_content(
    txn: &WriteTransaction,
    contents: &[(Sha, Vec<u8>)],
) -> Result<Vec<(Sha, u64)>, redb::Error> {
    let mut n = Counters::load(txn)?;
    let mut blobs = Blobs::open(txn)?;
    let mut ids = Vec::new();
    for (sha, bytes) in contents {
        if blobs.index.get(sha)?.is_some_and(|v| v.value().0 != 0) {
            continue;
        }
        let (id, added) = blobs.put(&mut n, bytes)?;
        n.kept += added;
        ids.push((*sha, id));
    }
    drop(blobs);
    n.store(txn)?;
    Ok(ids)
}

/// Deflate up to `limit` contents kept as they are (by an apply or a publish, which do not wait
/// for it), oldest first; returns how many were looked at (0: none left).
pub fn pack(txn: &WriteTransaction, limit: usize) -> Result<usize, redb::Error> {
    let mut n = Counters::load(txn)?;
    let mut blobs = Blobs::open(txn)?;
    let ids: Vec<u64> = (blobs.content.range(n.packed_upto + 1..)?)
        .take(limit)
        .map(|row| row.map(|(id, _)| id.value()))
        .collect::<Result<_, _>>()?;
    for &id in &ids {
        blobs.pack_id(&mut n, id)?;
    }
    if let Some(&last) = ids.last() {
        n.packed_upto = last;
    }
    drop(blobs);
    n.store(txn)?;
    Ok(ids.len())
}

/// Drop content nothing refers to: kept ahead for an apply that never completed. Returns how
/// many were dropped. Run where no apply is between its intent and its record (the daemon's
/// start, under the state lock).
pub fn sweep(txn: &WriteTransaction) -> Result<usize, redb::Error> {
    let mut n = Counters::load(txn)?;
    let mut blobs = Blobs::open(txn)?;
    let mut indexed = std::collections::HashSet::new();
    for row in blobs.index.iter()? {
        indexed.insert(row?.1.value().0);
    }
    let mut orphans = Vec::new();
    for row in blobs.content.iter()? {
        let id = row?.0.value();
        if !indexed.contains(&id) {
            orphans.push(id);
        }
    }
    for id in &orphans {
        n.kept = n.kept.saturating_sub(blobs.drop_content(*id)?);
    }
    drop(blobs);
    n.store(txn)?;
    Ok(orphans.len())
}

/// Whether the tree the history began with still has to be kept ([`fill_base`]).
pub fn base_pending(db: &redb::Database) -> Result<bool, redb::Error> {
    let txn = db.begin_read()?;
    Ok(!Counters::read(&txn)?.base_done)
}

/// Keep files of the tree as it was when the history began (path, content hash, content): the
/// versions the first recorded change of each will replace. A path the base already holds is
/// left as it is. `done` marks the base complete.
pub fn fill_base(
    txn: &WriteTransaction,
    files: &[(String, Sha, Vec<u8>)],
    done: bool,
) -> Result<(), redb::Error> {
    let mut n = Counters::load(txn)?;
    let mut blobs = Blobs::open(txn)?;
    let mut base = txn.open_table(BASE)?;
    if n.since_ms == 0 {
        n.since_ms = crate::clock::now_ms();
    }
    for (path, sha, bytes) in files {
        if base.get(path.as_str())?.is_some() {
            continue;
        }
        // Deflated now (the base is kept in the background), also when an apply kept it.
        n.kept += blobs.keep(&mut n, sha, Some(bytes), None)?;
        blobs.pack_sha(&mut n, sha)?;
        n.base_bytes += blobs.len(sha)?;
        base.insert(path.as_str(), sha)?;
    }
    n.base_done |= done;
    drop((blobs, base));
    n.store(txn)
}

fn decode_group(id: u64, bytes: &[u8]) -> Result<Group, redb::Error> {
    crate::cbor::decode(bytes).map_err(|e| corrupted(format!("history group {id}: {e}")))
}

/// Walk the groups newest first, from the one below `before` (all with `None`), while `f`
/// says to go on.
pub fn walk(
    db: &redb::Database,
    before: Option<u64>,
    f: impl FnMut(u64, Group) -> bool,
) -> Result<(), redb::Error> {
    walk_where(db, before, |_| true, f)
}

/// [`walk`], decoding only the groups whose stored bytes `maybe` accepts: a filter that looks
/// for a path or a node's name in them (CBOR keeps text as it is) skips the others at the cost
/// of a byte search (100,000 groups: tens of milliseconds instead of a second of decoding).
pub fn walk_where(
    db: &redb::Database,
    before: Option<u64>,
    maybe: impl Fn(&[u8]) -> bool,
    mut f: impl FnMut(u64, Group) -> bool,
) -> Result<(), redb::Error> {
    let txn = db.begin_read()?;
    let groups = match txn.open_table(GROUPS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for row in groups.range(..before.unwrap_or(u64::MAX))?.rev() {
        let (id, bytes) = row?;
        if !maybe(bytes.value()) {
            continue;
        }
        if !f(id.value(), decode_group(id.value(), bytes.value())?) {
            break;
        }
    }
    Ok(())
}

/// The groups with ids below `before` (all with `None`), newest first, at most `limit`.
pub fn newest(
    db: &redb::Database,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<(u64, Group)>, redb::Error> {
    let mut out = Vec::new();
    walk(db, before, |id, g| {
        out.push((id, g));
        out.len() < limit
    })?;
    Ok(out)
}

/// The group `id`, if kept.
pub fn group(db: &redb::Database, id: u64) -> Result<Option<Group>, redb::Error> {
    let txn = db.begin_read()?;
    let groups = match txn.open_table(GROUPS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(bytes) = groups.get(id)? else {
        return Ok(None);
    };
    Ok(Some(decode_group(id, bytes.value())?))
}

/// The content kept under `sha256`, if any.
pub fn content(db: &redb::Database, sha256: &Sha) -> Result<Option<Vec<u8>>, redb::Error> {
    let txn = db.begin_read()?;
    let (index, content) = match (txn.open_table(INDEX), txn.open_table(CONTENT)) {
        (Ok(i), Ok(c)) => (i, c),
        (Err(redb::TableError::TableDoesNotExist(_)), _)
        | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(None),
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    };
    let Some((id, _)) = index.get(sha256)?.map(|v| v.value()) else {
        return Ok(None);
    };
    let stored = content.get(id)?;
    let found = match stored {
        Some(stored) => from_stored(stored.value()).map(Some),
        None => Ok(None),
    };
    found
}

/// How long and how much to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Groups recorded before this time (ms since the epoch) go.
    pub oldest_ms: u64,
    pub max_bytes: u64,
    pub max_groups: u64,
}

/// Drop the oldest groups while one is older than the retention allows or more bytes (beyond
/// the base's, which every kept point needs) or groups are kept than it allows, at most
/// `limit` of them; each dropped group is folded into the base, and content nothing refers to
/// any more goes. One transaction, committed by the caller. Returns how many groups were
/// dropped.
pub fn prune(txn: &WriteTransaction, keep: &Retention, limit: usize) -> Result<usize, redb::Error> {
    let mut n = Counters::load(txn)?;
    let mut groups = txn.open_table(GROUPS)?;
    let mut blobs = Blobs::open(txn)?;
    let mut base = txn.open_table(BASE)?;
    let mut count = groups.len()?;
    let mut dropped = 0;
    while dropped < limit {
        let oldest = groups.first()?;
        let Some((id, stored)) = oldest.map(|(id, bytes)| (id.value(), bytes.value().to_vec()))
        else {
            break;
        };
        let group = decode_group(id, &stored)?;
        let beyond_base = n.kept.saturating_sub(n.base_bytes);
        if group.time_ms >= keep.oldest_ms
            && beyond_base <= keep.max_bytes
            && count <= keep.max_groups
        {
            break;
        }
        groups.remove(id)?;
        count -= 1;
        n.kept = n.kept.saturating_sub(stored.len() as u64);
        // The base now holds the tree as this group left it: its versions move there (their
        // references with them), and what they replaced in the base is released.
        for c in &group.changes {
            let old = base.get(c.path.as_str())?.map(|v| *v.value());
            if c.deleted {
                base.remove(c.path.as_str())?;
            } else {
                base.insert(c.path.as_str(), &c.sha256)?;
                // Packed before it is counted: the base's bytes stay what they counted.
                blobs.pack_sha(&mut n, &c.sha256)?;
                n.base_bytes += blobs.len(&c.sha256)?;
            }
            if let Some(old) = old {
                n.base_bytes = n.base_bytes.saturating_sub(blobs.len(&old)?);
                n.kept = n.kept.saturating_sub(blobs.release(&old)?);
            }
        }
        (n.floor_id, n.floor_ms) = (id, group.time_ms);
        dropped += 1;
    }
    drop((groups, blobs, base));
    n.store(txn)?;
    Ok(dropped)
}

/// What the history holds, for `status`, the metrics and the commands' refusals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// Bytes kept (groups and content).
    pub bytes: u64,
    /// Of those, the content of the tree at the oldest point (which `max_mb` does not count).
    #[serde(default)]
    pub base_bytes: u64,
    pub groups: u64,
    /// The oldest point that can be restored: the newest pruned group (0: none pruned).
    pub floor_id: u64,
    /// Its time, or when the history began (ms; 0: nothing recorded yet).
    pub oldest_ms: u64,
    /// The newest group's id (0: none).
    pub newest_id: u64,
}

pub fn extent(db: &redb::Database) -> Result<Extent, redb::Error> {
    let txn = db.begin_read()?;
    let n = Counters::read(&txn)?;
    let (groups, newest_id) = match txn.open_table(GROUPS) {
        Ok(t) => (t.len()?, t.last()?.map_or(0, |(id, _)| id.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => (0, 0),
        Err(e) => return Err(e.into()),
    };
    Ok(Extent {
        bytes: n.kept,
        base_bytes: n.base_bytes,
        groups,
        floor_id: n.floor_id,
        oldest_ms: if n.floor_ms > 0 {
            n.floor_ms
        } else {
            n.since_ms
        },
        newest_id,
    })
}

/// Drop the whole history (groups, content, index, base and counters): what a node whose
/// `[history]` is off does at start, since a history with a stretch unrecorded would restore
/// the wrong content at every point before it. Returns the groups dropped (`None`: there was
/// no history).
pub fn drop_all(txn: &WriteTransaction) -> Result<Option<u64>, redb::Error> {
    let mut meta = txn.open_table(STATE_META)?;
    let had = meta.remove(COUNTERS)?.is_some();
    drop(meta);
    let groups = match txn.open_table(GROUPS) {
        Ok(t) => t.len()?,
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(e.into()),
    };
    let mut dropped = had;
    dropped |= txn.delete_table(GROUPS)?;
    dropped |= txn.delete_table(CONTENT)?;
    dropped |= txn.delete_table(INDEX)?;
    dropped |= txn.delete_table(BASE)?;
    Ok(dropped.then_some(groups))
}

/// The bytes the history keeps (groups and content).
pub fn kept_bytes(db: &redb::Database) -> Result<u64, redb::Error> {
    Ok(extent(db)?.bytes)
}

/// What one path held at a point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub path: String,
    /// The content's hash then (`None`: the path did not exist).
    pub sha256: Option<Sha>,
    /// The group whose change first replaced it after the point.
    pub replaced_by: u64,
}

/// The tree at point `after` (after group `after`; 0: before every kept group), where it
/// differs from what the kept groups since then made: each path a later group changed, with
/// what the first such change found. Only paths `wanted` accepts are looked at.
pub fn state_at(
    db: &redb::Database,
    after: u64,
    mut wanted: impl FnMut(&str) -> bool,
) -> Result<Vec<Held>, redb::Error> {
    let mut first: BTreeMap<String, Held> = BTreeMap::new();
    // Newest first: each older change of a path replaces what a newer one said.
    walk(db, None, |id, g| {
        if id <= after {
            return false;
        }
        for c in g.changes.into_iter().rev() {
            if wanted(&c.path) {
                let held = Held {
                    path: c.path.clone(),
                    sha256: c.before,
                    replaced_by: id,
                };
                first.insert(c.path, held);
            }
        }
        true
    })?;
    Ok(first.into_values().collect())
}

#[cfg(test)]
mod tests;
