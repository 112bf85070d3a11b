//! The outbox: Deltas waiting for the broker's acknowledgement, one file each in
//! `state_dir/outbox/`, named by sequence number. The detector and an import put them
//! (`master::local_edit::enqueue`), the publisher sends and removes them; at start the state
//! finds the entries a crash left unrecorded (`State::open`).

use crate::durable;
use crate::file_error::Context;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::PathBuf;

/// Deltas waiting for the broker's acknowledgement, one file each, named by sequence number.
#[derive(Clone, Debug)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// The outbox kept in `dir`.
    pub(super) fn at(dir: PathBuf) -> Outbox {
        Outbox { dir }
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.cbor"))
    }

    /// Store a Delta's payloads until the broker acknowledges them.
    pub fn put(&self, seq: u64, payloads: &[Vec<u8>]) -> io::Result<()> {
        durable::write_file(
            &self.path(seq),
            &crate::cbor::encode(&OutboxEntry {
                payloads: payloads
                    .iter()
                    .map(|p| serde_bytes::ByteBuf::from(p.clone()))
                    .collect(),
            }),
        )
    }

    /// How far the broker acknowledged the stream whose highest sequence number is `highest`:
    /// everything below the oldest outbox entry, or everything when the outbox is empty.
    pub fn acknowledged(&self, highest: u64) -> io::Result<u64> {
        Ok(self.seqs()?.first().map_or(highest, |oldest| oldest - 1))
    }

    /// Sequence numbers waiting in the outbox, ascending.
    pub fn seqs(&self) -> io::Result<Vec<u64>> {
        let mut seqs = Vec::new();
        for entry in fs::read_dir(&self.dir).at("list", &self.dir)? {
            let name = entry.at("list", &self.dir)?.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name.strip_suffix(".cbor").and_then(|s| s.parse().ok()) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// The payloads of an outbox entry.
    pub fn get(&self, seq: u64) -> io::Result<Vec<Vec<u8>>> {
        let path = self.path(seq);
        let bytes = fs::read(&path).at("read", &path)?;
        let e: OutboxEntry = crate::cbor::decode(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            .at("decode", &path)?;
        Ok(e.payloads.into_iter().map(|b| b.into_vec()).collect())
    }

    /// Drop an outbox entry once every part is acknowledged.
    pub fn remove(&self, seq: u64) -> io::Result<()> {
        durable::remove_file(&self.path(seq))
    }
}

#[derive(Serialize, Deserialize)]
struct OutboxEntry {
    payloads: Vec<serde_bytes::ByteBuf>,
}
