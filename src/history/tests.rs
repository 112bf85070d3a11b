//! The history store: recording, pruning and folding, content, the state at a point.

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

struct Pending {
    groups: Vec<Group>,
    contents: BTreeMap<Sha, Vec<u8>>,
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
            before: None,
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
    let ids = write(&txn, &p.groups, &p.contents, &Default::default()).unwrap();
    txn.commit().unwrap();
    ids
}

fn prune_to(db: &redb::Database, oldest_ms: u64, max_bytes: u64) -> usize {
    let txn = db.begin_write().unwrap();
    let keep = Retention {
        oldest_ms,
        max_bytes,
        max_groups: u64::MAX,
    };
    let n = prune(&txn, &keep, usize::MAX).unwrap();
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
    // The content once (as it is until packed), `<b/>`, two groups of under 200 bytes: not
    // twice.
    assert!((1010..1600).contains(&before), "{before}");
    record(&db, &writes(30, &[("d.xml", &big)]));
    let group_only = kept_bytes(&db).unwrap() - before;
    assert!(
        group_only > 0 && group_only < 200,
        "{group_only}: no third copy"
    );
}

/// A group writing `path` from `before` to `body` (or deleting it with `None`).
fn change(time_ms: u64, path: &str, before: Option<&str>, body: Option<&str>) -> Pending {
    let c = Change {
        path: path.into(),
        deleted: body.is_none(),
        version: Version::new(time_ms << 16, "m"),
        sha256: body.map_or([0; 32], |b| sha(b.as_bytes())),
        size: body.map_or(0, |b| b.len() as u64),
        before: before.map(|b| sha(b.as_bytes())),
    };
    Pending {
        groups: vec![Group {
            time_ms,
            origin: "m".into(),
            kind: Kind::Local { seq: time_ms },
            changes: vec![c],
        }],
        contents: body
            .map(|b| (sha(b.as_bytes()), b.as_bytes().to_vec()))
            .into_iter()
            .collect(),
    }
}

fn base(db: &redb::Database, files: &[(&str, &str)]) {
    let txn = db.begin_write().unwrap();
    let files: Vec<_> = (files.iter())
        .map(|(p, b)| (p.to_string(), sha(b.as_bytes()), b.as_bytes().to_vec()))
        .collect();
    fill_base(&txn, &files, true).unwrap();
    txn.commit().unwrap();
}

/// Pruning folds the oldest groups into the base: the versions the oldest kept point needs
/// stay, the ones no kept point needs go; by age, by size, by count.
#[test]
fn pruning_keeps_what_the_oldest_point_needs_and_frees_the_rest() {
    let db = db();
    base(&db, &[("a.xml", "<a0/>")]);
    assert!(!base_pending(&db).unwrap());
    record(&db, &change(10, "a.xml", Some("<a0/>"), Some("<a1/>")));
    record(&db, &change(20, "a.xml", Some("<a1/>"), Some("<a2/>")));
    record(&db, &change(30, "b.xml", None, Some("<b1/>")));
    record(&db, &change(40, "b.xml", Some("<b1/>"), None));
    assert_eq!(prune_to(&db, 15, u64::MAX), 1);
    // The point after group 1 is the oldest: a.xml held <a1/> there, <a0/> is needed by none.
    assert_eq!(content(&db, &sha(b"<a0/>")).unwrap(), None);
    assert!(content(&db, &sha(b"<a1/>")).unwrap().is_some());
    let e = extent(&db).unwrap();
    assert_eq!(
        (e.floor_id, e.oldest_ms, e.groups, e.newest_id),
        (1, 10, 3, 4)
    );
    assert_eq!(prune_to(&db, 0, u64::MAX), 0, "within both limits");
    let e = extent(&db).unwrap();
    let beyond_base = e.bytes - e.base_bytes;
    assert_eq!(
        prune_to(&db, 0, beyond_base - 1),
        1,
        "one group over the size"
    );
    assert_eq!(content(&db, &sha(b"<a1/>")).unwrap(), None);
    assert!(
        content(&db, &sha(b"<a2/>")).unwrap().is_some(),
        "today's a.xml"
    );
    let txn = db.begin_write().unwrap();
    let by_count = Retention {
        oldest_ms: 0,
        max_bytes: u64::MAX,
        max_groups: 0,
    };
    assert_eq!(prune(&txn, &by_count, usize::MAX).unwrap(), 2);
    txn.commit().unwrap();
    // b.xml was created then deleted: the base holds no b.xml and no <b1/>.
    assert_eq!(content(&db, &sha(b"<b1/>")).unwrap(), None);
    assert!(content(&db, &sha(b"<a2/>")).unwrap().is_some());
    let e = extent(&db).unwrap();
    assert_eq!((e.groups, e.floor_id, e.oldest_ms), (0, 4, 40));
    // 1 byte of kind, 5 of content.
    assert_eq!(
        (e.bytes, e.base_bytes),
        (6, 6),
        "only <a2/> left, stored plain"
    );
}

/// `max_bytes` counts what the history keeps beyond the base: a tree bigger than it does
/// not make every prune drop every change.
#[test]
fn a_base_bigger_than_the_size_limit_leaves_the_changes_within_it() {
    let db = db();
    let big: String = (0..4000).map(|i| format!("<l{i}/>")).collect();
    base(&db, &[("big.xml", &big)]);
    record(&db, &change(10, "a.xml", None, Some("<a1/>")));
    record(&db, &change(20, "a.xml", Some("<a1/>"), Some("<a2/>")));
    let e = extent(&db).unwrap();
    assert!(e.base_bytes > 1000 && e.bytes > e.base_bytes, "{e:?}");
    let changes = e.bytes - e.base_bytes;
    assert_eq!(
        prune_to(&db, 0, changes),
        0,
        "within the limit beyond the base"
    );
    assert_eq!(prune_to(&db, 0, changes - 1), 1);
    // Group 1 folded into the base: a.xml's <a1/> now counts as base.
    let e2 = extent(&db).unwrap();
    assert_eq!(e2.base_bytes, e.base_bytes + 6, "{e2:?}");
}

/// The tree at a point: each path a later group changed, with what the first of those
/// changes found there.
#[test]
fn the_state_at_a_point_is_what_the_first_later_change_replaced() {
    let db = db();
    record(&db, &change(10, "a.xml", None, Some("<a1/>")));
    record(&db, &change(20, "a.xml", Some("<a1/>"), Some("<a2/>")));
    record(&db, &change(30, "b.xml", Some("<b0/>"), None));
    record(&db, &change(40, "a.xml", Some("<a2/>"), Some("<a3/>")));
    let at = |after| {
        state_at(&db, after, |_| true)
            .unwrap()
            .into_iter()
            .map(|h| (h.path, h.sha256, h.replaced_by))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        at(1),
        [
            ("a.xml".to_string(), Some(sha(b"<a1/>")), 2),
            ("b.xml".to_string(), Some(sha(b"<b0/>")), 3)
        ]
    );
    assert_eq!(
        at(0)[0],
        ("a.xml".to_string(), None, 1),
        "before it existed"
    );
    assert_eq!(at(3), [("a.xml".to_string(), Some(sha(b"<a2/>")), 4)]);
    assert!(at(4).is_empty());
    let only_b = state_at(&db, 0, |p| p == "b.xml").unwrap();
    assert_eq!(only_b.len(), 1);
}

/// Content is stored deflated when that is smaller, and comes back as it was.
#[test]
fn content_round_trips_plain_or_deflated() {
    // Random bytes do not deflate: stored plain, whatever their length.
    let mut x = 7u64;
    let noise: Vec<u8> = (0..5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert_eq!(deflated(&noise), None);
    assert_eq!(stored_form(&noise)[0], Blob::Plain as u8);
    let db = db();
    let xml = format!("<layer>{}</layer>", "<name>roads</name>".repeat(50));
    record(&db, &writes(10, &[("a.xml", &xml), ("b.xml", "<b/>")]));
    assert_eq!(
        content(&db, &sha(xml.as_bytes())).unwrap().unwrap(),
        xml.as_bytes()
    );
    assert_eq!(content(&db, &sha(b"<b/>")).unwrap().unwrap(), b"<b/>");
    // A recording keeps the content as it is; packing deflates it, once.
    let kept = kept_bytes(&db).unwrap();
    assert!(kept > xml.len() as u64, "kept as it is: {kept} bytes");
    let pack_all = |db: &redb::Database| {
        let txn = db.begin_write().unwrap();
        let n = pack(&txn, 1).unwrap() + pack(&txn, 10).unwrap();
        txn.commit().unwrap();
        n
    };
    assert_eq!(pack_all(&db), 2, "two contents looked at, in two slices");
    let packed = kept_bytes(&db).unwrap();
    assert!(
        packed < xml.len() as u64 / 2,
        "deflated: {packed} bytes kept"
    );
    assert_eq!(
        content(&db, &sha(xml.as_bytes())).unwrap().unwrap(),
        xml.as_bytes()
    );
    assert_eq!(pack_all(&db), 0, "nothing new to pack");
    // Content folded into the base before it was packed is packed then, so the base's
    // bytes count what is stored.
    let other = format!("<layer>{}</layer>", "<name>rivers</name>".repeat(50));
    record(&db, &writes(20, &[("a.xml", &other)]));
    assert_eq!(prune_to(&db, 30, u64::MAX), 2);
    let e = extent(&db).unwrap();
    assert!(e.base_bytes < other.len() as u64 / 2, "{e:?}");
    assert_eq!(pack_all(&db), 1);
    assert_eq!(extent(&db).unwrap().base_bytes, e.base_bytes);
}

/// Content kept ahead of its changes is referred to once they are recorded; what no change
/// came to refer to is swept, and the bytes kept say so.
#[test]
fn content_kept_ahead_is_used_by_its_change_and_swept_without_one() {
    let db = db();
    let txn = db.begin_write().unwrap();
    let ahead = vec![
        (sha(b"<used/>"), b"<used/>".to_vec()),
        (sha(b"<never/>"), b"<never/>".to_vec()),
    ];
    let ids: std::collections::HashMap<Sha, u64> =
        keep_content(&txn, &ahead).unwrap().into_iter().collect();
    txn.commit().unwrap();
    assert_eq!(ids.len(), 2);
    // Already kept: not kept ahead again.
    let txn = db.begin_write().unwrap();
    let mut p = change(10, "a.xml", None, Some("<used/>"));
    p.contents.clear();
    write(&txn, &p.groups, &p.contents, &ids).unwrap();
    txn.commit().unwrap();
    let txn = db.begin_write().unwrap();
    assert!(keep_content(&txn, &ahead[..1]).unwrap().is_empty());
    drop(txn);
    let txn = db.begin_write().unwrap();
    assert_eq!(sweep(&txn).unwrap(), 1);
    txn.commit().unwrap();
    assert_eq!(content(&db, &sha(b"<used/>")).unwrap().unwrap(), b"<used/>");
    assert_eq!(content(&db, &sha(b"<never/>")).unwrap(), None);
    let group_bytes = kept_bytes(&db).unwrap() - 8;
    assert!(
        group_bytes < 300,
        "<used/> (8 bytes stored) and one group: {group_bytes}"
    );
}

/// A change recorded without its content holds its reference all the same: content a later
/// change brings stays while that later change is kept, whichever is pruned first.
#[test]
fn content_that_arrives_after_a_change_referring_to_it_is_counted_once_for_each() {
    let db = db();
    let mut first = change(10, "a.xml", None, Some("<x/>"));
    first.contents.clear();
    record(&db, &first);
    assert_eq!(content(&db, &sha(b"<x/>")).unwrap(), None, "not at hand");
    record(&db, &change(20, "b.xml", None, Some("<x/>")));
    assert_eq!(content(&db, &sha(b"<x/>")).unwrap().unwrap(), b"<x/>");
    assert_eq!(prune_to(&db, 15, u64::MAX), 1);
    // Group 1 folded into the base: the base and group 2 both refer to <x/>.
    assert_eq!(content(&db, &sha(b"<x/>")).unwrap().unwrap(), b"<x/>");
    assert_eq!(prune_to(&db, u64::MAX, u64::MAX), 1);
    assert_eq!(
        content(&db, &sha(b"<x/>")).unwrap().unwrap(),
        b"<x/>",
        "the base's"
    );
}

/// A recording whose transaction is not committed (a crash) leaves nothing.
#[test]
fn an_uncommitted_recording_leaves_nothing() {
    let db = db();
    record(&db, &writes(10, &[("a.xml", "<a/>")]));
    let txn = db.begin_write().unwrap();
    let p = writes(20, &[("b.xml", "<b/>")]);
    write(&txn, &p.groups, &p.contents, &Default::default()).unwrap();
    drop(txn);
    assert_eq!(newest(&db, None, 10).unwrap().len(), 1);
    assert_eq!(content(&db, &sha(b"<b/>")).unwrap(), None);
    assert_eq!(record(&db, &writes(30, &[("c.xml", "<c/>")])), [2]);
}
