//! A manifest entry: what the cluster agreed one path holds, and its stored form.
//!
//! Entries are stored as CBOR ([`crate::cbor`]). A rescan reads one per file (330,000 at
//! 100,000 layers), and the general decoder takes about 1.7 µs for one — a sixth of a start-up
//! scan's time — mostly pulling the 32 items of the hash one by one through serde. Entries
//! written by this version are read by a decoder made for their layout ([`Entry::decode`]);
//! anything else (an entry with a merge state, another field order) goes to the general one.

use super::listing::FileStat;
use crate::hlc;
use serde::{Deserialize, Serialize};

/// What the cluster agreed one path holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub sha256: [u8; 32],
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    /// Version of the last change (write or delete) to this path; the conflict rule compares it.
    pub version: hlc::Version,
    /// A tombstone: the file was deleted at `version`. Kept so that an older write that arrives
    /// late (a slow master, a replayed Delta) loses against the delete instead of resurrecting it.
    pub deleted: bool,
    /// For a path merged field by field (`global.xml`, see `update_sequence`): its settings version and
    /// highest counter. Boxed: one file in thousands has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Box<crate::update_sequence::Merged>>,
}

impl Entry {
    /// Do the recorded stat fields equal `s`? Then the file is taken as unchanged without hashing.
    pub fn same_stat(&self, s: &FileStat) -> bool {
        self.size == s.size
            && self.mtime_ns == s.mtime_ns
            && self.ctime_ns == s.ctime_ns
            && self.ino == s.ino
    }

    pub fn stat(&self) -> FileStat {
        FileStat {
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            ino: self.ino,
        }
    }

    /// The entry recording that the path was deleted at `version`.
    pub fn tombstone(version: hlc::Version) -> Entry {
        Entry {
            sha256: [0; 32],
            size: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            ino: 0,
            version,
            deleted: true,
            merged: None,
        }
    }

    /// The entry of a file holding content with `sha256` and `size`, written at `version`; its
    /// stat is unknown until [`Entry::set_stat`] (the next scan hashes the file once and keeps
    /// it).
    pub fn live(sha256: [u8; 32], size: u64, version: hlc::Version) -> Entry {
        Entry {
            sha256,
            size,
            mtime_ns: 0,
            ctime_ns: 0,
            ino: 0,
            version,
            deleted: false,
            merged: None,
        }
    }

    /// This entry with the merge state of a path merged field by field.
    pub fn with_merged(mut self, merged: Option<crate::update_sequence::Merged>) -> Entry {
        self.merged = merged.map(Box::new);
        self
    }

    pub fn set_stat(&mut self, s: &FileStat) {
        self.size = s.size;
        self.mtime_ns = s.mtime_ns;
        self.ctime_ns = s.ctime_ns;
        self.ino = s.ino;
    }
}

impl Entry {
    /// The entry stored as `bytes` (CBOR).
    pub fn decode(bytes: &[u8]) -> Result<Entry, crate::cbor::CborError> {
        match decode_plain(bytes) {
            Some(entry) => Ok(entry),
            None => crate::cbor::decode(bytes),
        }
    }
}

/// The CBOR of an entry without a merge state, as this version writes it: a map of the seven
/// fields in declaration order, integers in their shortest form. `None` for anything else,
/// for the general decoder to read (or to reject with its error).
fn decode_plain(bytes: &[u8]) -> Option<Entry> {
    let mut c = Cursor { bytes, at: 0 };
    c.expect(MAP, 7)?;
    c.key("sha256")?;
    c.expect(ARRAY, 32)?;
    let mut sha256 = [0u8; 32];
    for b in &mut sha256 {
        *b = u8::try_from(c.uint()?).ok()?;
    }
    c.key("size")?;
    let size = c.uint()?;
    c.key("mtime_ns")?;
    let mtime_ns = c.int()?;
    c.key("ctime_ns")?;
    let ctime_ns = c.int()?;
    c.key("ino")?;
    let ino = c.uint()?;
    c.key("version")?;
    c.expect(MAP, 2)?;
    c.key("hlc")?;
    let hlc = c.uint()?;
    c.key("origin")?;
    let origin = c.text()?.to_string();
    c.key("deleted")?;
    let deleted = match c.byte()? {
        FALSE => false,
        TRUE => true,
        _ => return None,
    };
    (c.at == bytes.len()).then_some(Entry {
        sha256,
        size,
        mtime_ns,
        ctime_ns,
        ino,
        version: hlc::Version { hlc, origin },
        deleted,
        merged: None,
    })
}

// CBOR major types and simple values (RFC 8949, section 3).
const UINT: u8 = 0;
const NEGATIVE: u8 = 1;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;

/// Reading CBOR items from the front of a byte string.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    /// An item's head: its major type and argument.
    fn head(&mut self) -> Option<(u8, u64)> {
        let first = self.byte()?;
        let arg = match first & 0x1f {
            n @ 0..=23 => u64::from(n),
            24 => u64::from(self.byte()?),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().ok()?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
            27 => u64::from_be_bytes(self.take(8)?.try_into().ok()?),
            _ => return None,
        };
        Some((first >> 5, arg))
    }

    fn expect(&mut self, major: u8, arg: u64) -> Option<()> {
        (self.head()? == (major, arg)).then_some(())
    }

    fn uint(&mut self) -> Option<u64> {
        match self.head()? {
            (UINT, n) => Some(n),
            _ => None,
        }
    }

    fn int(&mut self) -> Option<i64> {
        match self.head()? {
            (UINT, n) => i64::try_from(n).ok(),
            (NEGATIVE, n) => i64::try_from(n).ok().map(|n| -1 - n),
            _ => None,
        }
    }

    fn text(&mut self) -> Option<&'a str> {
        let (TEXT, len) = self.head()? else {
            return None;
        };
        std::str::from_utf8(self.take(usize::try_from(len).ok()?)?).ok()
    }

    fn key(&mut self, name: &str) -> Option<()> {
        (self.text()? == name).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update_sequence::Merged;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = Entry> {
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<i64>(),
            any::<i64>(),
            any::<u64>(),
            (any::<u64>(), "\\PC{0,24}"),
            any::<bool>(),
            prop::option::of((any::<u64>(), any::<u64>())),
        )
            .prop_map(
                |(sha256, size, m, c, ino, (hlc, origin), deleted, merged)| {
                    let version = hlc::Version { hlc, origin };
                    Entry {
                        sha256,
                        size,
                        mtime_ns: m,
                        ctime_ns: c,
                        ino,
                        merged: merged.map(|(h, counter)| {
                            Box::new(Merged {
                                settings: hlc::Version::new(h, "n"),
                                counter,
                            })
                        }),
                        version,
                        deleted,
                    }
                },
            )
    }

    proptest! {
        /// Whatever the entry, the plain decoder reads what the general one does, and reads
        /// every entry without a merge state itself.
        #[test]
        fn the_plain_decoder_reads_what_the_general_one_does(e in entry()) {
            let bytes = crate::cbor::encode(&e);
            let general: Entry = crate::cbor::decode(&bytes).unwrap();
            prop_assert_eq!(&general, &e);
            prop_assert_eq!(Entry::decode(&bytes).unwrap(), e.clone());
            prop_assert_eq!(decode_plain(&bytes).is_some(), e.merged.is_none());
        }

        /// Cut anywhere, an entry is an error, never a wrong entry or a panic.
        #[test]
        fn a_cut_entry_is_an_error(e in entry(), cut in 0usize..200) {
            let bytes = crate::cbor::encode(&e);
            let cut = cut % bytes.len();
            prop_assert!(Entry::decode(&bytes[..cut]).is_err());
        }
    }
}
