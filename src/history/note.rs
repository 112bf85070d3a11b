//! What a state record carries for the history: which of its manifest entries make which
//! group, and the content of their writes. The state's commit turns it into [`Group`]s (the
//! versions, hashes and sizes are the entries'; what each path held before is the manifest's
//! until that commit).

use super::{Kind, Sha};
use crate::datadir::Entry;
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::Path;

/// One group to record: the action's origin and kind, and the paths of the record's entries
/// it made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Noted {
    pub origin: String,
    pub kind: Kind,
    pub paths: Vec<String>,
}

/// The groups a record makes, and the content of their writes by hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Note {
    pub groups: Vec<Noted>,
    pub contents: BTreeMap<Sha, Vec<u8>>,
}

impl Note {
    /// A note of one group.
    pub fn one(origin: &str, kind: Kind, paths: Vec<String>) -> Note {
        let mut note = Note::default();
        note.group(origin, kind, paths);
        note
    }

    pub fn group(&mut self, origin: &str, kind: Kind, paths: Vec<String>) {
        if !paths.is_empty() {
            self.groups.push(Noted {
                origin: origin.to_string(),
                kind,
                paths,
            });
        }
    }

    /// A group of the `changes` `made` accepts (those whose version won), with their content.
    pub fn changes<'a>(
        &mut self,
        origin: &str,
        kind: Kind,
        changes: impl IntoIterator<Item = &'a crate::delta::Change>,
    ) {
        let mut paths = Vec::new();
        for c in changes {
            if let crate::delta::Op::Write { bytes, sha256 } = &c.op {
                if let Ok(sha) = <Sha>::try_from(sha256.as_slice()) {
                    self.content(sha, bytes);
                }
            }
            paths.push(c.path.clone());
        }
        self.group(origin, kind, paths);
    }

    /// Keep `bytes` as the content of `sha` (the caller's hash of them).
    pub fn content(&mut self, sha: Sha, bytes: &[u8]) {
        self.contents.entry(sha).or_insert_with(|| bytes.to_vec());
    }

    /// The content of the noted writes the caller did not give, read from the data directory
    /// (where the change just put it) when the file still holds that version: a merged
    /// document, a file a resync adopted as it was. A file changed again since is left out;
    /// its next change brings that version.
    pub fn read_missing(&mut self, data_dir: &Path, entries: &[(String, Entry)]) {
        let noted: std::collections::HashSet<&str> = (self.groups.iter())
            .flat_map(|g| g.paths.iter().map(String::as_str))
            .collect();
        for (path, e) in entries {
            if e.deleted || !noted.contains(path.as_str()) || self.contents.contains_key(&e.sha256)
            {
                continue;
            }
            let Ok(bytes) = std::fs::read(data_dir.join(path)) else {
                continue;
            };
            if <[u8; 32]>::from(sha2::Sha256::digest(&bytes)) == e.sha256 {
                self.contents.insert(e.sha256, bytes);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}
