//! Resync: the safety net that makes convergence independent of any broker's memory.
//!
//! Persistent sessions are the fast path, but a broker can forget (rumqttd keeps everything in
//! memory and silently drops what its log rolls over; external brokers have queue limits). A
//! node that applies Deltas therefore resyncs whenever it cannot prove it saw everything: on a
//! fresh state dir (bootstrap), on every connection where the broker had no session for it, on
//! a sequence gap, and when the parts of a chunked Delta stop arriving.
//!
//! The protocol (docs/resync.md), over `{prefix}/{group}/sync/ask/{asker}` and
//! `{prefix}/{group}/sync/answer/{asker}`:
//! 1. the asker sends `Ask::Manifest`; every publishing node answers with the first page of
//!    its manifest (path → version, SHA-256, size, or tombstone), its stream positions and its
//!    clock, taken under one lock;
//! 2. the asker takes the first answer that covers its holes and plans that page ([`plan`],
//!    pure): which files it must fetch, which it already has byte-identical (adopt), which it
//!    must delete;
//! 3. it fetches the page's files in batches of bounded size (`Ask::Files`, answered with the
//!    same `Change` type Deltas carry) — one batch at a time, which is the flow control that
//!    keeps a bootstrap from overrunning a broker's in-memory log — settles the page, and asks
//!    the same responder for the next page (`Ask::Page`);
//! 4. after the last page it records the positions and asks for one reload.
//!
//! Pages keep every message and every plan bounded whatever the catalog's size: a whole
//! 100,000-layer manifest is 57 MB, over any message limit.
//!
//! Live Deltas keep flowing meanwhile and are applied as usual: per-file versions make every
//! order safe, and positions only ever move forward.

pub mod asker;
mod local;
pub mod responder;

use crate::datadir::Manifest;
use crate::delta::{self, Change, DecodeError};
use crate::hlc::Version;
use crate::security::Auth;
use crate::state::Position;
use crate::update_sequence::Merged;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most manifest entries in one page of an answer (~150 bytes each: about 1 MB).
pub const PAGE_ITEMS: usize = 6000;

/// Entries per page: [`PAGE_ITEMS`], or `GSCLUSTER_PAGE_ITEMS` (a test hook, like
/// `crashpoint`: small pages make a small tree take many).
pub fn page_items() -> usize {
    static ITEMS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ITEMS.get_or_init(|| {
        (std::env::var("GSCLUSTER_PAGE_ITEMS").ok())
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .inspect(|n| {
                log::warn!("GSCLUSTER_PAGE_ITEMS={n}: manifest pages of {n} entries (a test hook)")
            })
            .unwrap_or(PAGE_ITEMS)
    })
}

/// What an asker wants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ask {
    /// "Send me your manifest and positions." Answered by every node that publishes.
    Manifest,
    /// "Send me these files." Answered only by the node named in `to`.
    Files { to: String, paths: Vec<String> },
    /// "Send me the page of your manifest after this path." Answered only by `to`.
    Page { to: String, after: String },
}

/// One manifest line of an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub path: String,
    pub version: Version,
    #[serde(with = "serde_bytes")]
    pub sha256: Vec<u8>,
    pub size: u64,
    pub deleted: bool,
    /// The merge state of a path merged field by field (`global.xml`, see `merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Merged>,
}

/// What a responder sends back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// A whole manifest in one answer: what nodes before paging sent to `Ask::Manifest`.
    /// Taken as one last page.
    Manifest {
        positions: BTreeMap<String, Position>,
        items: Vec<Item>,
    },
    /// Fetched files, with the SHA-256 of each: what nodes before [`Answer::Contents`] sent.
    Files { changes: Vec<Change> },
    /// One page of a manifest, in path order. The first (to `Ask::Manifest`) carries the
    /// responder's positions and its clock: no version of its own in any page is above that
    /// clock unless made after the first page. A page to `Ask::Page` carries neither.
    Page {
        positions: BTreeMap<String, Position>,
        clock: u64,
        items: Vec<Item>,
        /// More pages follow, after the last item's path.
        more: bool,
    },
    /// The files asked for by `Ask::Files`, without a SHA-256 each: the asker has it from the
    /// manifest page, and the frame's checksum (and tag) guard the bytes on the way. Decoded
    /// into [`Answer::Files`], the hash computed from the content.
    Contents { files: Vec<Fetched> },
}

/// One file of [`Answer::Contents`]: its content as the responder holds it now, and that
/// content's version (newer than the page's when the file changed since).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    pub path: String,
    pub version: Version,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Merged>,
}

impl Fetched {
    fn into_change(self) -> Change {
        Change {
            path: self.path,
            version: self.version,
            op: delta::Op::write(self.bytes),
            merged: self.merged,
        }
    }
}

/// Encode an ask. `id` names the resync round, `batch` the request within it (1 = manifest).
pub fn encode_ask(
    group: &str,
    asker: &str,
    id: u64,
    batch: u64,
    ask: &Ask,
    auth: &Auth,
) -> Vec<Vec<u8>> {
    delta::encode_parts(group, asker, id, batch, &crate::cbor::encode(ask), auth)
}

/// Encode an answer from `responder` to round `id`, request `batch`.
pub fn encode_answer(
    group: &str,
    responder: &str,
    id: u64,
    batch: u64,
    answer: &Answer,
    auth: &Auth,
) -> Vec<Vec<u8>> {
    delta::encode_parts(
        group,
        responder,
        id,
        batch,
        &crate::cbor::encode(answer),
        auth,
    )
}

/// Decode an ask body.
pub fn decode_ask(body: &[u8]) -> Result<Ask, DecodeError> {
    delta::decode_cbor(body)
}

/// Decode and verify an answer body (paths normalised, hashes matching). Fetched files come
/// out as [`Answer::Files`] whichever form they came in.
pub fn decode_answer(body: &[u8]) -> Result<Answer, DecodeError> {
    let answer: Answer = delta::decode_cbor(body)?;
    match answer {
        Answer::Contents { files } => {
            let changes: Vec<Change> = files.into_iter().map(Fetched::into_change).collect();
            changes
                .iter()
                .try_for_each(|c| delta::verify_change(c, false))?;
            return Ok(Answer::Files { changes });
        }
        Answer::Files { ref changes } => delta::verify_changes(changes)?,
        Answer::Manifest { ref items, .. } | Answer::Page { ref items, .. } => {
            for i in items {
                crate::datadir::normalize(&i.path).map_err(|e| DecodeError::Change {
                    path: i.path.clone(),
                    reason: e.to_string(),
                })?;
            }
            // The asker plans a page as the whole of its range: an entry out of order would
            // hide the files around it.
            if let Some(w) = items.windows(2).find(|w| w[0].path >= w[1].path) {
                return Err(DecodeError::Change {
                    path: w[1].path.clone(),
                    reason: "manifest entries out of path order".into(),
                });
            }
        }
    }
    Ok(answer)
}

/// What a resync must do locally, decided from manifests alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Paths to fetch, with the version and size the responder announced.
    pub fetch: Vec<(String, Version, u64)>,
    /// Files already here byte-identical: record the responder's version (and merge state),
    /// write nothing.
    pub adopt: Vec<(String, Version, [u8; 32], Option<Merged>)>,
    /// Paths to delete, with the version of the deletion.
    pub delete: Vec<(String, Version)>,
    /// Files the cluster does not know at all (pure slaves only): delete and forget.
    pub forget: Vec<String>,
}

/// Decide what to fetch, adopt and delete.
///
/// `on_disk` gives the SHA-256 of a replicated file present in the data directory (None when
/// absent); `replicated_on_disk` lists every such file. A remote item wins when its version is
/// above the local manifest's; at equal versions a differing local file is fetched again.
/// `forget_unknown` (pure slaves: `Some(responder)`) deletes replicated files the responder
/// does not know of — but only those this node has no record of, or recorded from the responder
/// itself: a file another publisher made is not the responder's to deny (a pure master applies
/// nothing, so its manifest never lists the other publishers' files). Nor is a file recorded
/// from the responder with a version above `newest`, the responder's clock when it answered
/// ([`Newest`]): it was made after the answer (a Delta applied while the answer travelled, or
/// while the asker waited for a manifest covering its holes), not denied by it.
///
/// For a page, `remote` is the page and `replicated_on_disk` the files within its range.
pub fn plan(
    local: &Manifest,
    remote: &[Item],
    on_disk: impl Fn(&str) -> Option<[u8; 32]>,
    replicated_on_disk: &BTreeSet<String>,
    forget_unknown: Option<(&str, u64)>,
) -> Plan {
    let mut p = Plan::default();
    let mut known = BTreeSet::new();
    for item in remote {
        known.insert(item.path.as_str());
        let local_entry = local.get(&item.path);
        let local_entry = local_entry.as_ref();
        let disk = on_disk(&item.path);
        if crate::update_sequence::merged(&item.path) {
            // Merged field by field: a lower version may still bring a settings edit or a
            // counter this node lacks, and applying joins rather than replaces. Fetch whenever
            // the bytes differ; deletions go by the plain rule.
            let same = match disk {
                Some(h) => !item.deleted && h.as_slice() == item.sha256.as_slice(),
                None => item.deleted,
            };
            if item.deleted {
                if !same || local_entry.is_none_or(|e| e.version != item.version) {
                    p.delete.push((item.path.clone(), item.version.clone()));
                }
            } else if !same {
                p.fetch
                    .push((item.path.clone(), item.version.clone(), item.size));
            } else if let (Some(h), true) = (
                disk,
                local_entry.is_none_or(|e| e.deleted || e.version < item.version),
            ) {
                // Same bytes: take the responder's versions, keeping any higher one held here.
                let held = local_entry.and_then(|e| e.merged.as_deref());
                let merged = match (&item.merged, held) {
                    (Some(theirs), Some(mine)) => Some(Merged {
                        settings: theirs.settings.clone().max(mine.settings.clone()),
                        counter: theirs.counter.max(mine.counter),
                    }),
                    (theirs, mine) => theirs.clone().or(mine.cloned()),
                };
                p.adopt
                    .push((item.path.clone(), item.version.clone(), h, merged));
            }
            continue;
        }
        if local_entry.is_some_and(|e| e.version > item.version) {
            continue;
        }
        let equal_version = local_entry.is_some_and(|e| e.version == item.version);
        if item.deleted {
            if disk.is_some() || !equal_version {
                p.delete.push((item.path.clone(), item.version.clone()));
            }
            continue;
        }
        match disk {
            Some(h) if h.as_slice() == item.sha256.as_slice() => {
                if !equal_version {
                    p.adopt
                        .push((item.path.clone(), item.version.clone(), h, None));
                }
            }
            _ => p
                .fetch
                .push((item.path.clone(), item.version.clone(), item.size)),
        }
    }
    if let Some((responder, newest)) = forget_unknown {
        p.forget = replicated_on_disk
            .iter()
            .filter(|path| !known.contains(path.as_str()))
            .filter(|path| {
                (local.get(path.as_str()))
                    .is_none_or(|e| e.version.origin == responder && e.version.hlc <= newest)
            })
            .cloned()
            .collect();
    }
    p
}

/// The responder's clock as far as `forget_unknown` of [`plan`] needs it: from a page, its
/// clock; from a whole manifest of a node before paging, its newest own version in it.
pub fn newest(responder: &str, clock: Option<u64>, remote: &[Item]) -> u64 {
    clock.unwrap_or_else(|| {
        (remote.iter())
            .filter(|i| i.version.origin == responder)
            .map(|i| i.version.hlc)
            .max()
            .unwrap_or(0)
    })
}

/// Split the paths to fetch into batches of at most `limits.batch_files` paths and
/// `limits.batch_bytes` of content (a file larger than that goes alone).
pub fn batches(
    fetch: &[(String, Version, u64)],
    limits: &crate::config::Resync,
) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0u64;
    for (path, _, size) in fetch {
        let full = out.last().is_none_or(|b| {
            b.len() >= limits.batch_files || (bytes + size > limits.batch_bytes && !b.is_empty())
        });
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        out.last_mut().unwrap().push(path.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadir::Entry;
    use sha2::{Digest, Sha256};

    fn h(s: &str) -> [u8; 32] {
        Sha256::digest(s.as_bytes()).into()
    }

    fn item(path: &str, hlc: u64, content: &str) -> Item {
        Item {
            path: path.into(),
            version: Version::new(hlc, "m"),
            sha256: h(content).to_vec(),
            size: content.len() as u64,
            deleted: false,
            merged: None,
        }
    }

    fn entry(hlc: u64, content: &str) -> Entry {
        Entry {
            sha256: h(content),
            size: content.len() as u64,
            mtime_ns: 0,
            ctime_ns: 0,
            ino: 0,
            version: Version::new(hlc, "m"),
            deleted: false,
            merged: None,
        }
    }

    #[test]
    fn empty_node_fetches_everything_live_and_deletes_nothing() {
        let remote = vec![item("a.xml", 1, "a"), item("b.xml", 2, "b")];
        let p = plan(
            &Manifest::default(),
            &remote,
            |_| None,
            &BTreeSet::new(),
            Some(("m", newest("m", None, &remote))),
        );
        assert_eq!(p.fetch.len(), 2);
        assert!(p.delete.is_empty() && p.adopt.is_empty() && p.forget.is_empty());
    }

    #[test]
    fn identical_files_copied_by_hand_are_adopted_not_fetched() {
        let remote = vec![item("a.xml", 1, "a")];
        let p = plan(
            &Manifest::default(),
            &remote,
            |_| Some(h("a")),
            &BTreeSet::new(),
            Some(("m", newest("m", None, &remote))),
        );
        assert!(p.fetch.is_empty());
        assert_eq!(
            p.adopt,
            vec![("a.xml".into(), Version::new(1, "m"), h("a"), None)]
        );
    }

    #[test]
    fn global_xml_is_adopted_with_its_merge_state_or_fetched_whatever_the_versions() {
        let merged = Merged {
            settings: Version::new(3, "m"),
            counter: 12,
        };
        let mut remote = vec![item("global.xml", 7, "g")];
        remote[0].merged = Some(merged.clone());
        // Same bytes, nothing recorded here: adopted, with the responder's merge state.
        let p = plan(
            &Manifest::default(),
            &remote,
            |_| Some(h("g")),
            &BTreeSet::new(),
            None,
        );
        assert_eq!(
            p.adopt,
            vec![(
                "global.xml".into(),
                Version::new(7, "m"),
                h("g"),
                Some(merged)
            )]
        );
        // Different bytes: fetched (and joined) even though the version here is higher.
        let mut local = Manifest::default();
        local.set("global.xml".into(), entry(9, "mine"));
        let p = plan(&local, &remote, |_| Some(h("mine")), &BTreeSet::new(), None);
        assert_eq!(
            p.fetch,
            vec![("global.xml".into(), Version::new(7, "m"), 1)]
        );
    }

    #[test]
    fn newer_local_versions_win_and_up_to_date_files_are_left_alone() {
        let mut local = Manifest::default();
        local.set("a.xml".into(), entry(5, "mine"));
        local.set("b.xml".into(), entry(2, "b"));
        let remote = vec![item("a.xml", 4, "theirs"), item("b.xml", 2, "b")];
        let disk = |p: &str| Some(if p == "a.xml" { h("mine") } else { h("b") });
        let p = plan(
            &local,
            &remote,
            disk,
            &BTreeSet::new(),
            Some(("m", newest("m", None, &remote))),
        );
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn tombstones_delete_present_files_and_unknown_files_are_forgotten_on_pure_slaves() {
        let mut gone = item("old.xml", 9, "");
        gone.deleted = true;
        let remote = vec![gone, item("a.xml", 1, "a")];
        let on_disk: BTreeSet<String> = ["old.xml", "a.xml", "stray.xml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let disk = |p: &str| Some(h(if p == "a.xml" { "a" } else { "x" }));
        let p = plan(
            &Manifest::default(),
            &remote,
            disk,
            &on_disk,
            Some(("m", newest("m", None, &remote))),
        );
        assert_eq!(p.delete, vec![("old.xml".into(), Version::new(9, "m"))]);
        assert_eq!(p.forget, vec!["stray.xml".to_string()]);
        let p = plan(&Manifest::default(), &remote, disk, &on_disk, None);
        assert!(p.forget.is_empty());
    }

    /// Regression (found by the chaos round): a pure slave resynced from a pure master deleted
    /// every file the other publisher (a `both` node) had made, because the pure master's
    /// manifest does not list them.
    #[test]
    fn a_file_another_publisher_made_is_not_forgotten_because_one_responder_lacks_it() {
        let mut local = Manifest::default();
        let theirs = Entry {
            version: Version::new(5, "gs-both"),
            ..entry(5, "x")
        };
        local.set("theirs.xml".into(), theirs);
        local.set("mine.xml".into(), entry(3, "x"));
        let remote = vec![item("a.xml", 9, "a")];
        let on_disk: BTreeSet<String> = ["a.xml", "theirs.xml", "mine.xml", "stray.xml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let disk = |p: &str| Some(h(if p == "a.xml" { "a" } else { "x" }));
        let p = plan(
            &local,
            &remote,
            disk,
            &on_disk,
            Some(("m", newest("m", None, &remote))),
        );
        assert_eq!(
            p.forget,
            vec!["mine.xml".to_string(), "stray.xml".to_string()]
        );
    }

    /// What a pure slave holding `old.xml` (the responder's, version 3) and `new.xml` (12)
    /// forgets from a manifest holding only `a.xml`, at version `hlc`, answered with `clock`.
    fn forgotten_after(hlc: u64, clock: Option<u64>) -> Vec<String> {
        let mut local = Manifest::default();
        local.set("old.xml".into(), entry(3, "x"));
        local.set("new.xml".into(), entry(12, "x"));
        let remote = vec![item("a.xml", hlc, "a")];
        let on_disk: BTreeSet<String> = ["a.xml", "old.xml", "new.xml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let disk = |p: &str| Some(h(if p == "a.xml" { "a" } else { "x" }));
        let newest = newest("m", clock, &remote);
        plan(&local, &remote, disk, &on_disk, Some(("m", newest))).forget
    }

    /// Found by issue 14's chaos rounds: a pure slave that planned from a manifest a few
    /// seconds old removed the files the responder had published since, which it had already
    /// applied from the responder's Deltas.
    #[test]
    fn a_file_the_responder_made_after_its_manifest_is_not_forgotten() {
        assert_eq!(forgotten_after(9, None), ["old.xml"]);
    }

    /// A page carries the responder's clock: a file recorded from it above that clock was
    /// made after the page, whatever the page's own items say.
    #[test]
    fn a_page_s_clock_decides_what_the_responder_made_after_it() {
        assert_eq!(forgotten_after(2, Some(11)), ["old.xml"]);
        assert_eq!(forgotten_after(2, Some(12)), ["new.xml", "old.xml"]);
    }

    #[test]
    fn a_page_out_of_path_order_is_rejected() {
        let page = |paths: &[&str]| Answer::Page {
            positions: BTreeMap::new(),
            clock: 1,
            items: paths.iter().map(|p| item(p, 1, "x")).collect(),
            more: true,
        };
        let ok = page(&["a.xml", "a/b.xml", "b.xml"]);
        assert_eq!(decode_answer(&crate::cbor::encode(&ok)).unwrap(), ok);
        for bad in [&["b.xml", "a.xml"][..], &["a.xml", "a.xml"][..]] {
            let e = decode_answer(&crate::cbor::encode(&page(bad))).unwrap_err();
            assert!(e.to_string().contains("out of path order"), "{e}");
        }
    }

    #[test]
    fn batches_respect_byte_and_count_bounds() {
        let fetch: Vec<_> = (0..1200)
            .map(|i| (format!("f{i}"), Version::new(1, "m"), 4096u64))
            .collect();
        let limits = crate::config::Resync::default();
        let b = batches(&fetch, &limits);
        assert!(b.iter().all(|x| x.len() <= limits.batch_files));
        assert!(b
            .iter()
            .all(|x| x.len() as u64 * 4096 <= limits.batch_bytes));
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 1200);
        let huge = vec![(
            "big".to_string(),
            Version::new(1, "m"),
            5 * limits.batch_bytes,
        )];
        assert_eq!(batches(&huge, &limits), vec![vec!["big".to_string()]]);
        // A slow link's settings: 64 KiB and 100 files at a time.
        let small = crate::config::Resync {
            batch_files: 100,
            batch_bytes: 64 * 1024,
        };
        let b = batches(&fetch, &small);
        assert_eq!(b.len(), 1200 / 16, "16 files of 4 KiB make 64 KiB");
        let few: Vec<_> = (0..250)
            .map(|i| (format!("s{i}"), Version::new(1, "m"), 10u64))
            .collect();
        assert_eq!(batches(&few, &small).len(), 3, "100 + 100 + 50 files");
    }

    /// Fetched files go without the SHA-256 the page gave: 32 bytes and a key less per file,
    /// incompressible bytes on an edge link. They decode as the `Change`s they were.
    #[test]
    fn fetched_files_go_without_their_hash_and_decode_as_changes() {
        let fetched = |path: &str, bytes: &[u8]| Fetched {
            path: path.into(),
            version: Version::new(7, "m"),
            bytes: bytes.to_vec(),
            merged: None,
        };
        let files: Vec<Fetched> = (0..100)
            .map(|i| fetched(&format!("styles/s{i}.xml"), b"<style/>"))
            .collect();
        let changes: Vec<Change> = files.iter().cloned().map(Fetched::into_change).collect();
        let lean = crate::cbor::encode(&Answer::Contents {
            files: files.clone(),
        });
        let full = crate::cbor::encode(&Answer::Files {
            changes: changes.clone(),
        });
        assert!(
            full.len() - lean.len() >= 100 * 32,
            "{} against {} bytes",
            lean.len(),
            full.len()
        );
        assert_eq!(decode_answer(&lean).unwrap(), Answer::Files { changes });
        for (bad, why) in [
            (fetched("../etc/passwd", b"x"), ".."),
            (fetched("a//b.xml", b"x"), "empty segment"),
        ] {
            let body = crate::cbor::encode(&Answer::Contents { files: vec![bad] });
            let e = decode_answer(&body).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let mut ahead = fetched("global.xml", b"<global/>");
        ahead.merged = Some(Merged {
            settings: Version::new(9, "m"),
            counter: 1,
        });
        let body = crate::cbor::encode(&Answer::Contents { files: vec![ahead] });
        let e = decode_answer(&body).unwrap_err().to_string();
        assert!(e.contains("settings version"), "{e}");
    }

    #[test]
    fn answers_round_trip_and_bad_paths_are_rejected() {
        let a = Answer::Manifest {
            positions: BTreeMap::from([("m".to_string(), Position { epoch: 1, seq: 4 })]),
            items: vec![item("workspaces/w/workspace.xml", 1, "w")],
        };
        let msgs = encode_answer("g", "m", 7, 1, &a, &Auth::none());
        let mut asm = delta::Assembler::default();
        let part = delta::decode_part(&msgs[0], "g", &Auth::none()).unwrap();
        let delta::Assembled::Complete(header, body) = asm.push(part).unwrap() else {
            panic!("one part")
        };
        assert_eq!(
            (header.origin.as_str(), header.epoch, header.seq),
            ("m", 7, 1)
        );
        assert_eq!(decode_answer(&body).unwrap(), a);
        let bad = Answer::Manifest {
            positions: BTreeMap::new(),
            items: vec![item("../etc/passwd", 1, "x")],
        };
        assert!(decode_answer(&crate::cbor::encode(&bad)).is_err());
    }
}
