//! Files merged field by field instead of replaced whole: GeoServer's `updateSequence`.
//!
//! GeoServer increments `<updateSequence>` in `global.xml` on most catalog and configuration
//! changes and rewrites the file each time. With several masters, the plain rule (per path, the
//! highest version wins the whole file) would let a counter bump on one master, made a moment
//! after a settings edit on another, throw the settings edit away. For such a file the state of
//! a path is three values, each merged on its own:
//!
//! - `version`: the highest version of any change (what resync and the manifest compare);
//! - `settings`: the version of the last change to anything *but* the counter, with the document
//!   it produced (or a deletion); the highest settings version wins the document;
//! - `counter`: the highest `updateSequence` any change carried.
//!
//! The file's bytes are the winning document with its counter set to the highest one. Each value
//! is a maximum over every change seen, so the result depends only on the set of changes, not on
//! their order, grouping or repetition: every node converges (tested below and in
//! `slave::apply`). The origin of a change tells a counter-only change from a settings edit by
//! putting its previous counter back into the new bytes: if that gives the previous file, only
//! the counter moved, and the change keeps the settings version it had. DOCS: docs/conflicts.md.

use crate::hlc::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ops::Range;

/// Paths merged this way. GeoServer keeps `updateSequence` in `global.xml` only.
const MERGED: &[&str] = &["global.xml"];

const OPEN: &[u8] = b"<updateSequence>";
const CLOSE: &[u8] = b"</updateSequence>";

/// Is `path` merged field by field?
pub fn merged(path: &str) -> bool {
    MERGED.contains(&path)
}

/// The merge state a manifest entry keeps beside its version (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merged {
    /// Version of the last change to anything but the counter.
    pub settings: Version,
    /// Highest `updateSequence` seen.
    pub counter: u64,
}

/// Where the counter's digits are in `bytes`, and their value. `None` when the file has no
/// readable counter (then it is merged as a document without one).
pub fn counter(bytes: &[u8]) -> Option<(Range<usize>, u64)> {
    let start = find(bytes, OPEN)? + OPEN.len();
    let len = find(&bytes[start..], CLOSE)?;
    let digits = &bytes[start..start + len];
    let text = std::str::from_utf8(digits).ok()?;
    let value = text.trim().parse().ok()?;
    Some((start..start + len, value))
}

/// `bytes` with its counter set to `value` (unchanged when it has none).
pub fn with_counter(bytes: &[u8], value: u64) -> Vec<u8> {
    match counter(bytes) {
        Some((range, _)) => {
            let digits = value.to_string();
            let mut out = Vec::with_capacity(bytes.len() + digits.len());
            out.extend_from_slice(&bytes[..range.start]);
            out.extend_from_slice(digits.as_bytes());
            out.extend_from_slice(&bytes[range.end..]);
            out
        }
        None => bytes.to_vec(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The merge state of a local write, as its origin publishes it: the settings version stays the
/// previous one when only the counter moved (the previous counter put back gives the previous
/// file, `previous_sha256`), else it is `version`, this change's own.
pub fn local_write(
    previous: Option<(&[u8; 32], &Merged)>,
    bytes: &[u8],
    version: &Version,
) -> Merged {
    let now = counter(bytes).map(|(_, n)| n);
    let settings = match (previous, now) {
        (Some((sha, m)), Some(_)) => {
            let before: [u8; 32] = Sha256::digest(with_counter(bytes, m.counter)).into();
            if &before == sha {
                m.settings.clone()
            } else {
                version.clone()
            }
        }
        _ => version.clone(),
    };
    Merged {
        settings,
        counter: now.unwrap_or(0),
    }
}

/// One side of a join: what a node holds, or what a change brings.
#[derive(Clone, Debug)]
pub struct Side<'a> {
    pub version: &'a Version,
    pub settings: &'a Version,
    pub counter: u64,
    /// The document; `None` when the path is deleted at `settings`.
    pub doc: Option<&'a [u8]>,
}

/// The result of a join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    pub version: Version,
    pub merged: Merged,
    /// The file's bytes (the winning document with the highest counter), `None` for a deletion.
    pub bytes: Option<Vec<u8>>,
}

/// Merge two states of a merged path: every field is a maximum, so `join` is commutative,
/// associative and idempotent. Equal settings versions name the same edit and so the same
/// document; should two documents differ anyway (a damaged copy), the greater one (counter
/// left out) wins, so that the choice still does not depend on the order.
pub fn join(a: &Side, b: &Side) -> Joined {
    let version = a.version.max(b.version).clone();
    let counter = a.counter.max(b.counter);
    let doc = match a.settings.cmp(b.settings) {
        std::cmp::Ordering::Greater => a.doc,
        std::cmp::Ordering::Less => b.doc,
        std::cmp::Ordering::Equal => {
            let key = |d: Option<&[u8]>| d.map(|d| with_counter(d, 0));
            if key(a.doc) >= key(b.doc) {
                a.doc
            } else {
                b.doc
            }
        }
    };
    Joined {
        version,
        merged: Merged {
            settings: a.settings.max(b.settings).clone(),
            counter,
        },
        bytes: doc.map(|d| with_counter(d, counter)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn global(settings: &str, seq: u64) -> Vec<u8> {
        format!(
            "<global>\n  <settings>\n    <title>{settings}</title>\n  </settings>\n  <updateSequence>{seq}</updateSequence>\n</global>\n"
        )
        .into_bytes()
    }

    #[test]
    fn counter_is_found_and_replaced_in_place() {
        let g = global("a", 3249);
        let (range, n) = counter(&g).unwrap();
        assert_eq!(n, 3249);
        assert_eq!(&g[range], b"3249");
        assert_eq!(with_counter(&g, 7), global("a", 7));
        assert_eq!(with_counter(&g, 1_000_000), global("a", 1_000_000));
        assert_eq!(counter(b"<global/>"), None);
        assert_eq!(with_counter(b"<global/>", 5), b"<global/>");
        assert_eq!(
            counter(b"<updateSequence>x1</updateSequence>"),
            None,
            "not a number"
        );
        assert_eq!(counter(b"<updateSequence>12"), None, "not closed");
    }

    #[test]
    fn a_counter_bump_keeps_the_settings_version_and_an_edit_takes_a_new_one() {
        let old = global("a", 10);
        let sha: [u8; 32] = Sha256::digest(&old).into();
        let before = Merged {
            settings: Version::new(5, "n1"),
            counter: 10,
        };
        let v = Version::new(9, "n1");
        let bump = local_write(Some((&sha, &before)), &global("a", 11), &v);
        assert_eq!(bump.settings, Version::new(5, "n1"));
        assert_eq!(bump.counter, 11);
        let edit = local_write(Some((&sha, &before)), &global("b", 11), &v);
        assert_eq!(edit.settings, v);
        assert_eq!(local_write(None, &global("a", 11), &v).settings, v);
    }

    #[test]
    fn a_settings_edit_survives_a_later_counter_bump_from_another_node() {
        // n1 edits the title (counter 10 → 11); n2, not having seen it, bumps its counter
        // (10 → 11, then 12) later. Both orders give n1's title with counter 12.
        let base = Version::new(1, "n0");
        let v1 = Version::new(100, "n1");
        let v2 = Version::new(200, "n2");
        let edit_doc = global("edited", 11);
        let bump_doc = global("a", 12);
        let edit = Side {
            version: &v1,
            settings: &v1,
            counter: 11,
            doc: Some(&edit_doc),
        };
        let bump = Side {
            version: &v2,
            settings: &base,
            counter: 12,
            doc: Some(&bump_doc),
        };
        let one = join(&edit, &bump);
        let two = join(&bump, &edit);
        assert_eq!(one, two);
        assert_eq!(one.bytes.unwrap(), global("edited", 12));
        assert_eq!(one.version, v2);
        assert_eq!(one.merged.settings, v1);
    }

    /// A state as the model holds it, and as a Side.
    #[derive(Clone, Debug, PartialEq)]
    struct State {
        version: Version,
        settings: Version,
        counter: u64,
        doc: Option<Vec<u8>>,
    }

    impl State {
        fn side(&self) -> Side<'_> {
            Side {
                version: &self.version,
                settings: &self.settings,
                counter: self.counter,
                doc: self.doc.as_deref(),
            }
        }

        fn absorb(&mut self, other: &State) {
            let j = join(&self.side(), &other.side());
            *self = State {
                version: j.version,
                settings: j.merged.settings,
                counter: j.merged.counter,
                doc: j.bytes,
            };
        }
    }

    /// Changes from three origins: settings edits, counter bumps and deletions, each with a
    /// clock that only grows per origin.
    fn changes() -> impl Strategy<Value = Vec<State>> {
        let origins = ["n1", "n2", "n3"];
        prop::collection::vec((0..3usize, 1u64..4, 0u8..4, 0u64..50), 1..30).prop_map(
            move |events| {
                let mut clocks = [0u64; 3];
                // Per origin: the settings version and title it holds (None: deleted).
                let mut last: Vec<(Version, Option<String>)> =
                    vec![(Version::new(0, "n0"), Some("base".to_string())); 3];
                events
                    .into_iter()
                    .map(|(o, step, kind, seq)| {
                        clocks[o] += step;
                        let v = Version::new(clocks[o] * 3 + o as u64, origins[o]);
                        let (settings, doc) = match (kind, &last[o]) {
                            (0, _) => (v.clone(), None),
                            // A counter bump: the origin's own document, its settings version.
                            (2.., (s, Some(title))) => (s.clone(), Some(global(title, seq))),
                            _ => (v.clone(), Some(global(&format!("by {v:?}"), seq))),
                        };
                        if settings == v {
                            last[o] = (v.clone(), doc.as_ref().map(|_| format!("by {v:?}")));
                        }
                        State {
                            version: v,
                            settings,
                            counter: seq,
                            doc,
                        }
                    })
                    .collect()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever the order and the repeats, every node ends with the same state: the
        /// document of the highest settings version with the highest counter.
        #[test]
        fn join_converges_in_any_order(
            changes in changes(),
            orders in prop::collection::vec(
                prop::collection::vec(any::<prop::sample::Index>(), 1..60), 3),
        ) {
            let mut ends = Vec::new();
            for order in &orders {
                let mut node = changes[order[0].index(changes.len())].clone();
                for i in order {
                    node.absorb(&changes[i.index(changes.len())]);
                }
                for c in &changes {
                    node.absorb(c);
                }
                ends.push(node);
            }
            let top = changes.iter().max_by(|a, b| {
                a.settings.cmp(&b.settings).then_with(|| {
                    a.doc.as_deref().map(|d| with_counter(d, 0))
                        .cmp(&b.doc.as_deref().map(|d| with_counter(d, 0)))
                })
            }).unwrap();
            let max_counter = changes.iter().map(|c| c.counter).max().unwrap();
            for end in &ends {
                prop_assert_eq!(end, &ends[0]);
                prop_assert_eq!(
                    end.doc.clone(),
                    top.doc.as_deref().map(|d| with_counter(d, max_counter))
                );
            }
        }
    }
}
