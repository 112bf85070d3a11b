//! The cluster's history on this node: every change it applied or published, grouped as one
//! GeoServer action (a Delta, a local edit, a resync, an import, a rollback) reads, with the
//! content of every version kept once by hash.
//!
//! The history lives in the state's database (`state.redb`) and is written inside the same
//! transaction as the state's record of the change ([`write`], called from the state's commit):
//! a crash never leaves an acknowledged change out of the history, nor a change in it that was
//! not recorded. Tables:
//! - `history_groups`: group id (increasing) → CBOR [`Group`];
//! - `history_blobs`: SHA-256 → stored content ([`Blob`]), once however many versions share it;
//! - `history_refs`: SHA-256 → how many kept changes refer to it, so that pruning a group frees
//!   the content no other group needs without a sweep;
//! - `history_meta`: the next group id and the bytes kept.
//!
//! This module is the store; what records into it, the commands that read it and the
//! retention settings come with the rest of issue 16.

use crate::hlc::Version;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

const GROUPS: TableDefinition<u64, &[u8]> = TableDefinition::new("history_groups");
const BLOBS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("history_blobs");
const REFS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("history_refs");
const META: TableDefinition<&str, u64> = TableDefinition::new("history_meta");
const NEXT_ID: &str = "next_id";
const KEPT_BYTES: &str = "kept_bytes";

/// What made a group of changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A Delta from `origin`'s stream, applied here.
    Delta { seq: u64 },
    /// Edits made on this node's data directory and published by it.
    Local,
    /// Files a resync round fetched, adopted or removed.
    Resync,
    /// An air-gap bundle imported.
    Import,
    /// A rollback published by `origin`.
    Rollback,
}

/// One change to one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    /// The path was deleted (then `sha256` and `size` say nothing).
    pub deleted: bool,
    pub version: Version,
    #[serde(with = "serde_bytes")]
    pub sha256: [u8; 32],
    pub size: u64,
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

/// A group to record, with the content of its writes (hash → bytes; content already kept
/// is not stored again, content missing here is recorded without it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub groups: Vec<Group>,
    pub contents: Vec<([u8; 32], Vec<u8>)>,
}

/// How a blob's bytes are stored: the first byte says, the rest is the content so encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Blob {
    Plain = 0,
}

/// Record `pending` within the caller's transaction (the state's commit); returns the ids
/// given to its groups.
pub fn write(txn: &WriteTransaction, pending: &Pending) -> Result<Vec<u64>, redb::Error> {
    let mut meta = txn.open_table(META)?;
    let mut groups = txn.open_table(GROUPS)?;
    let mut blobs = txn.open_table(BLOBS)?;
    let mut refs = txn.open_table(REFS)?;
    let mut next = meta.get(NEXT_ID)?.map_or(1, |v| v.value());
    let mut kept = meta.get(KEPT_BYTES)?.map_or(0, |v| v.value());
    let mut ids = Vec::with_capacity(pending.groups.len());
    for (sha, bytes) in &pending.contents {
        if blobs.get(sha)?.is_none() {
            let mut stored = Vec::with_capacity(bytes.len() + 1);
            stored.push(Blob::Plain as u8);
            stored.extend_from_slice(bytes);
            kept += stored.len() as u64;
            blobs.insert(sha, stored.as_slice())?;
        }
    }
    for group in &pending.groups {
        for c in group.changes.iter().filter(|c| !c.deleted) {
            let n = refs.get(&c.sha256)?.map_or(0, |v| v.value());
            refs.insert(&c.sha256, n + 1)?;
        }
        let encoded = crate::cbor::encode(group);
        kept += encoded.len() as u64;
        groups.insert(next, encoded.as_slice())?;
        ids.push(next);
        next += 1;
    }
    meta.insert(NEXT_ID, next)?;
    meta.insert(KEPT_BYTES, kept)?;
    Ok(ids)
}

/// The groups with ids below `before` (all with `None`), newest first, at most `limit`.
pub fn newest(
    db: &redb::Database,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<(u64, Group)>, redb::Error> {
    use redb::ReadableDatabase;
    let txn = db.begin_read()?;
    let groups = match txn.open_table(GROUPS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for row in groups
        .range(..before.unwrap_or(u64::MAX))?
        .rev()
        .take(limit)
    {
        let (id, bytes) = row?;
        let group = crate::cbor::decode(bytes.value()).map_err(|e| {
            redb::StorageError::Corrupted(format!("history group {}: {e}", id.value()))
        })?;
        out.push((id.value(), group));
    }
    Ok(out)
}

/// The content kept under `sha256`, if any.
pub fn content(db: &redb::Database, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>, redb::Error> {
    use redb::ReadableDatabase;
    let txn = db.begin_read()?;
    let blobs = match txn.open_table(BLOBS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(stored) = blobs.get(sha256)? else {
        return Ok(None);
    };
    match stored.value().split_first() {
        Some((&b, rest)) if b == Blob::Plain as u8 => Ok(Some(rest.to_vec())),
        _ => Err(redb::StorageError::Corrupted("history content of an unknown kind".into()).into()),
    }
}

/// Drop the oldest groups while one is older than `oldest_ms` or more than `max_bytes` are
/// kept, and the content no remaining group refers to; one transaction, committed by the
/// caller. Returns how many groups were dropped.
pub fn prune(txn: &WriteTransaction, oldest_ms: u64, max_bytes: u64) -> Result<usize, redb::Error> {
    let mut meta = txn.open_table(META)?;
    let mut groups = txn.open_table(GROUPS)?;
    let mut blobs = txn.open_table(BLOBS)?;
    let mut refs = txn.open_table(REFS)?;
    let mut kept = meta.get(KEPT_BYTES)?.map_or(0, |v| v.value());
    let mut dropped = 0;
    loop {
        let oldest = groups.first()?;
        let Some((id, group)) = oldest.map(|(id, bytes)| (id.value(), bytes.value().to_vec()))
        else {
            break;
        };
        let stored_len = group.len() as u64;
        let group: Group = crate::cbor::decode(&group)
            .map_err(|e| redb::StorageError::Corrupted(format!("history group {id}: {e}")))?;
        if group.time_ms >= oldest_ms && kept <= max_bytes {
            break;
        }
        groups.remove(id)?;
        kept = kept.saturating_sub(stored_len);
        for c in group.changes.iter().filter(|c| !c.deleted) {
            let n = refs.get(&c.sha256)?.map_or(0, |v| v.value());
            if n > 1 {
                refs.insert(&c.sha256, n - 1)?;
                continue;
            }
            refs.remove(&c.sha256)?;
            if let Some(stored) = blobs.remove(&c.sha256)? {
                kept = kept.saturating_sub(stored.value().len() as u64);
            }
        }
        dropped += 1;
    }
    meta.insert(KEPT_BYTES, kept)?;
    Ok(dropped)
}

/// The bytes the history keeps (groups and content).
pub fn kept_bytes(db: &redb::Database) -> Result<u64, redb::Error> {
    use redb::ReadableDatabase;
    let txn = db.begin_read()?;
    match txn.open_table(META) {
        Ok(t) => Ok(t.get(KEPT_BYTES)?.map_or(0, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn db() -> redb::Database {
        redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap()
    }

    fn sha(b: &[u8]) -> [u8; 32] {
        Sha256::digest(b).into()
    }

    /// A group writing `files` (path, content) at `time_ms`.
    fn writes(time_ms: u64, files: &[(&str, &str)]) -> Pending {
        let changes = files
            .iter()
            .map(|(p, body)| Change {
                path: p.to_string(),
                deleted: false,
                version: Version::new(time_ms << 16, "m"),
                sha256: sha(body.as_bytes()),
                size: body.len() as u64,
            })
            .collect();
        Pending {
            groups: vec![Group {
                time_ms,
                origin: "m".into(),
                kind: Kind::Delta { seq: time_ms },
                changes,
            }],
            contents: files
                .iter()
                .map(|(_, b)| (sha(b.as_bytes()), b.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn record(db: &redb::Database, p: &Pending) -> Vec<u64> {
        let txn = db.begin_write().unwrap();
        let ids = write(&txn, p).unwrap();
        txn.commit().unwrap();
        ids
    }

    fn prune_to(db: &redb::Database, oldest_ms: u64, max_bytes: u64) -> usize {
        let txn = db.begin_write().unwrap();
        let n = prune(&txn, oldest_ms, max_bytes).unwrap();
        txn.commit().unwrap();
        n
    }

    /// Groups come back newest first with their ids; the same content is kept once.
    #[test]
    fn groups_are_listed_newest_first_and_content_is_kept_once() {
        let db = db();
        let big = format!("<a>{}</a>", "x".repeat(1000));
        assert_eq!(
            record(&db, &writes(10, &[("a.xml", &big), ("b.xml", "<b/>")])),
            [1]
        );
        assert_eq!(record(&db, &writes(20, &[("c.xml", &big)])), [2]);
        let got = newest(&db, None, 10).unwrap();
        assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(got[1].1.changes.len(), 2);
        assert_eq!(newest(&db, Some(2), 10).unwrap()[0].0, 1);
        assert_eq!(
            content(&db, &sha(big.as_bytes())).unwrap().unwrap(),
            big.as_bytes()
        );
        let before = kept_bytes(&db).unwrap();
        // The 1,009-byte content once, `<b/>`, two groups of under 200 bytes: not the content twice.
        assert!((1009..2000).contains(&before), "{before}");
        record(&db, &writes(30, &[("d.xml", &big)]));
        let group_only = kept_bytes(&db).unwrap() - before;
        assert!(
            group_only > 0 && group_only < 200,
            "{group_only}: no third copy"
        );
    }

    /// Pruning by age drops the oldest groups and the content only they referred to; by size,
    /// as many of the oldest as it takes.
    #[test]
    fn pruning_frees_what_no_remaining_group_needs() {
        let db = db();
        record(
            &db,
            &writes(10, &[("a.xml", "<old/>"), ("b.xml", "<shared/>")]),
        );
        record(&db, &writes(20, &[("b.xml", "<shared/>")]));
        record(&db, &writes(30, &[("c.xml", "<new/>")]));
        assert_eq!(prune_to(&db, 15, u64::MAX), 1);
        assert_eq!(content(&db, &sha(b"<old/>")).unwrap(), None);
        assert!(
            content(&db, &sha(b"<shared/>")).unwrap().is_some(),
            "group 2 needs it"
        );
        assert_eq!(prune_to(&db, 0, u64::MAX), 0, "within both limits");
        let all = kept_bytes(&db).unwrap();
        assert_eq!(prune_to(&db, 0, all - 1), 1, "one group over the size");
        assert_eq!(content(&db, &sha(b"<shared/>")).unwrap(), None);
        assert_eq!(newest(&db, None, 10).unwrap().len(), 1);
        assert_eq!(prune_to(&db, u64::MAX, u64::MAX), 1);
        assert_eq!(kept_bytes(&db).unwrap(), 0, "everything accounted for");
    }

    /// A recording whose transaction is not committed (a crash) leaves nothing.
    #[test]
    fn an_uncommitted_recording_leaves_nothing() {
        let db = db();
        record(&db, &writes(10, &[("a.xml", "<a/>")]));
        let txn = db.begin_write().unwrap();
        write(&txn, &writes(20, &[("b.xml", "<b/>")])).unwrap();
        drop(txn);
        assert_eq!(newest(&db, None, 10).unwrap().len(), 1);
        assert_eq!(content(&db, &sha(b"<b/>")).unwrap(), None);
        assert_eq!(record(&db, &writes(30, &[("c.xml", "<c/>")])), [2]);
    }
}
