//! `gscluster rollback`: put the replicated tree (or some of its paths) back to what it was at
//! a point of this node's history, published as a new edit of this node (`local_edit::edit`)
//! so every node converges to it like to any edit, with one reload each.
//!
//! Under the state lock, from the point to the edit: the history says what each path changed
//! since held there ([`history::state_at`]); paths that hold it again already are left alone;
//! the content comes from the history. Refused, with nothing written: on a pure slave, with no
//! history, at a point older than the oldest kept (named), when a version to restore is not
//! kept, and — unless forced — when the resulting catalog would refer to objects that do not
//! exist (named).

use super::local_edit;
use crate::context::Shared;
use crate::history::{self, view::within, Kind};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The point to go back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Point {
    /// Just after this node's change (the id `gscluster log` prints).
    Change(u64),
    /// This time (ms since the epoch): after every change recorded until then.
    Time(u64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub to: Point,
    /// Only these paths and what is below them (the whole replicated tree when empty).
    pub paths: Vec<String>,
    pub dry_run: bool,
    /// Even when catalog references would not resolve afterwards.
    pub force: bool,
}

/// What a rollback did, for the command's report and the daemon's follow-up.
#[derive(Debug, Default)]
pub struct RolledBack {
    pub report: String,
    /// Deltas published (the publisher is told at once).
    pub seqs: Vec<u64>,
    /// The first written file GeoServer does not re-read by itself: reload it.
    pub reload: Option<String>,
}

fn db_err(e: redb::Error) -> String {
    format!("state database: {e}")
}

/// Roll back as `req` says (see the module doc). `Err` is a refusal or a failure, worded for
/// the administrator.
pub fn run(sh: &Shared, req: &Request) -> Result<RolledBack, String> {
    if !sh.publishes {
        return Err(format!(
            "{} is a pure slave: run the rollback on a master (or `both`) node, and it reaches every node like any change",
            sh.node_id
        ));
    }
    let mut state = sh.state.lock().unwrap();
    if !state.history {
        return Err("this node keeps no history ([history] enabled = false)".into());
    }
    let db = state.database();
    let (after, point) = resolve(db, req.to)?;
    let held = history::state_at(db, after, |p| within(&req.paths, p) && sh.filter.matches(p))
        .map_err(db_err)?;
    let (restore, not_kept) = differences(sh, &state.manifest, db, held)?;
    if !not_kept.is_empty() {
        return Err(format!(
            "refused: what the tree held {point} is not kept for {} file(s) ({}): the history began after it; nothing was written",
            not_kept.len(),
            list(&not_kept)
        ));
    }
    if restore.is_empty() {
        return Ok(RolledBack {
            report: format!("nothing to do: the tree already is as it was {point}"),
            ..Default::default()
        });
    }
    let wanted: BTreeMap<Cow<str>, Option<&[u8]>> = (restore.iter())
        .map(|(p, b)| (Cow::Borrowed(p.as_str()), b.as_deref()))
        .collect();
    let dangling = local_edit::unresolved_after(sh, &wanted, &[]);
    if !dangling.is_empty() && !req.force {
        return Err(format!(
            "refused: after the rollback {} catalog reference(s) would not resolve ({}); nothing was written; roll back more paths with it, or --force",
            dangling.len(),
            list(&dangling)
        ));
    }
    let plan = describe(&state.manifest, &restore);
    if req.dry_run {
        return Ok(RolledBack {
            report: format!(
                "would roll back to the tree as it was {point}:\n{plan}(dry run: nothing was written)"
            ),
            ..Default::default()
        });
    }
    let to = point.clone();
    let edited = local_edit::edit(
        sh,
        &mut state,
        &wanted,
        &dangling,
        crate::state::Record::default(),
        (&sh.node_id, Kind::Rollback { to }),
    )
    .map_err(|e| e.to_string())?;
    let published = match (edited.seqs.first(), edited.seqs.last()) {
        (Some(a), Some(b)) if a == b => format!("; published as Delta {a}"),
        (Some(a), Some(b)) => format!("; published as Deltas {a} to {b}"),
        _ => String::new(),
    };
    let forced = if dangling.is_empty() {
        String::new()
    } else {
        format!(
            "; forced: {} reference(s) do not resolve ({})",
            dangling.len(),
            list(&dangling)
        )
    };
    log::info!(
        "rollback to the tree as it was {point}: {} written, {} deleted{published}{forced}",
        edited.written,
        edited.deleted
    );
    Ok(RolledBack {
        report: format!(
            "rolled back {}'s tree to what it was {point}: {} file(s) written, {} deleted{published}{forced}\n{plan}",
            sh.node_id, edited.written, edited.deleted
        )
        .trim_end()
        .to_string(),
        seqs: edited.seqs,
        reload: edited.reload,
    })
}

/// What differs from today among `held`: the paths to restore with their content (`None`:
/// delete), and the paths whose content the history does not keep.
#[allow(clippy::type_complexity)]
fn differences(
    sh: &Shared,
    manifest: &crate::datadir::Manifest,
    db: &redb::Database,
    held: Vec<history::Held>,
) -> Result<(Vec<(String, Option<Vec<u8>>)>, Vec<String>), String> {
    let (mut restore, mut not_kept) = (Vec::new(), Vec::new());
    for h in held {
        let now = manifest.live_entry(&h.path).map(|e| e.sha256);
        let on_disk = sh.data_dir.join(&h.path).is_file();
        if now == h.sha256 && (h.sha256.is_some() == on_disk) {
            continue;
        }
        match h.sha256 {
            None => restore.push((h.path, None)),
            Some(sha) => match history::content(db, &sha).map_err(db_err)? {
                Some(bytes) => restore.push((h.path, Some(bytes))),
                None => not_kept.push(h.path),
            },
        }
    }
    Ok((restore, not_kept))
}

/// The group the point is after, and the point in words; a point the history cannot restore
/// is refused with the oldest it can named.
fn resolve(db: &redb::Database, to: Point) -> Result<(u64, String), String> {
    let e = history::extent(db).map_err(db_err)?;
    let oldest = || match (e.oldest_ms, e.floor_id) {
        (0, _) => "this node's history is empty".to_string(),
        (ms, 0) => format!(
            "the oldest point kept is where the history began, {} (--to 0)",
            history::time::format(ms)
        ),
        (ms, id) => format!(
            "the oldest point kept is after change {id}, {}",
            history::time::format(ms)
        ),
    };
    match to {
        Point::Change(id) => {
            if id > e.newest_id {
                return Err(format!(
                    "change {id} is not in this node's history (the newest is {})",
                    e.newest_id
                ));
            }
            if id < e.floor_id {
                return Err(format!(
                    "change {id} is older than this node's history keeps: {}",
                    oldest()
                ));
            }
            Ok((id, format!("after change {id}")))
        }
        Point::Time(t) => {
            if e.oldest_ms == 0 || t < e.oldest_ms {
                return Err(format!(
                    "{} is older than this node's history keeps: {}",
                    history::time::format(t),
                    oldest()
                ));
            }
            let mut after = e.floor_id;
            history::walk(db, None, |id, g| {
                if g.time_ms <= t {
                    after = id;
                    return false;
                }
                true
            })
            .map_err(db_err)?;
            Ok((after, format!("at {}", history::time::format(t))))
        }
    }
}

/// One line per path: what the rollback does to it.
fn describe(manifest: &crate::datadir::Manifest, restore: &[(String, Option<Vec<u8>>)]) -> String {
    let mut out = String::new();
    for (path, bytes) in restore {
        let op = match (bytes, manifest.live_entry(path)) {
            (None, _) => "delete ",
            (Some(_), Some(_)) => "restore",
            (Some(_), None) => "create ",
        };
        let object = history::view::object_name(path).map_or(String::new(), |o| format!("  ({o})"));
        out.push_str(&format!("  {op} {path}{object}\n"));
    }
    out
}

fn list(items: &[String]) -> String {
    let mut s = items
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > 10 {
        s.push_str(&format!("; and {} more", items.len() - 10));
    }
    s
}
