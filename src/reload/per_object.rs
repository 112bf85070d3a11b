//! Per-object apply, the calls (`[geoserver] apply = "per-object"`): the changes since the last
//! reload go to GeoServer one REST call each ([`super::objects::plan`]), in dependency order;
//! GeoServer updates its memory and rewrites each object's file (and `global.xml`) its own way;
//! every file it rewrote is compared with the master's bytes ([`super::objects::same_object`])
//! and then put back to them, so the data directory stays byte-identical across the group.
//! Anything REST cannot do, a failed call or a rewrite that says something else (an id above
//! all) means a reload: the caller falls back to one.
//!
//! Runs on a blocking thread holding the data directory exclusively (no Delta is written in
//! between), with the files it expects GeoServer to rewrite listed in [`Rewrites`], which the
//! change detector leaves alone meanwhile: GeoServer's rewrite is not a local edit.

use super::geoserver::GeoServer;
use super::objects::{plan, same_object, Kind, Method};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Files GeoServer may be rewriting right now because of a per-object call.
pub type Rewrites = Arc<Mutex<BTreeSet<String>>>;

/// What a per-object apply did: the calls made, or why a reload is needed.
pub type Outcome = Result<usize, String>;

/// Apply `changes` through GeoServer's REST API (see the module documentation).
pub fn apply(
    gs: &GeoServer,
    data_dir: &Path,
    changes: &[(String, Kind)],
    rewrites: &Rewrites,
) -> Outcome {
    let mut calls = Vec::with_capacity(changes.len());
    let mut reasons = Vec::new();
    for (path, kind) in changes {
        match plan(path, *kind) {
            Ok(Some(call)) => calls.push((path.as_str(), *kind, call)),
            Ok(None) => {}
            Err(why) => reasons.push(why),
        }
    }
    if !reasons.is_empty() {
        let more = reasons.len().saturating_sub(3);
        reasons.truncate(3);
        let mut why = reasons.join("; ");
        if more > 0 {
            why += &format!("; and {more} more");
        }
        return Err(why);
    }
    crate::datadir::sort_for_apply(&mut calls, |(p, k, _)| (p, *k == Kind::Deleted));
    // The master's bytes as the apply wrote them (None: deleted), and global.xml, which
    // GeoServer saves again after every catalog change (its update sequence).
    let mut watched: Vec<&str> = calls.iter().map(|(p, _, _)| *p).collect();
    if !watched.contains(&"global.xml") {
        watched.push("global.xml");
    }
    let before: Vec<(&str, Option<Vec<u8>>)> = (watched.iter())
        .map(|p| (*p, std::fs::read(data_dir.join(p)).ok()))
        .collect();
    let called: BTreeSet<&str> = calls.iter().map(|(p, _, _)| *p).collect();
    rewrites
        .lock()
        .unwrap()
        .extend(watched.iter().map(|p| p.to_string()));
    let mut outcome: Outcome = Ok(calls.len());
    for (path, _, call) in &calls {
        let body = match call.method {
            Method::Delete => None,
            _ => match before.iter().find(|(p, _)| p == path) {
                Some((_, Some(bytes))) => Some(bytes.as_slice()),
                _ => {
                    outcome = Err(format!("{path}: gone before GeoServer was told of it"));
                    break;
                }
            },
        };
        log::debug!(
            "{} {}{} for {path}",
            call.method.as_str(),
            gs.url(),
            call.endpoint
        );
        if let Err(e) = gs.call(call.method.as_str(), &call.endpoint, body) {
            outcome = Err(format!(
                "{} /rest{} for {path} failed: {e}",
                call.method.as_str(),
                call.endpoint
            ));
            break;
        }
    }
    // What GeoServer rewrote: compared with the master's, then put back to it.
    for (path, was) in &before {
        let file = data_dir.join(path);
        let now = std::fs::read(&file).ok();
        if now == *was {
            continue;
        }
        if let (Ok(_), Some(master), Some(rewrite)) = (&outcome, was, &now) {
            if called.contains(path) {
                if let Err(d) = same_object(master, rewrite) {
                    outcome = Err(format!("{path}: {d}"));
                }
            }
        }
        let restored = match was {
            Some(bytes) => crate::durable::write_file(&file, bytes),
            None => crate::durable::remove_file(&file),
        };
        if let Err(e) = restored {
            // The detector will see GeoServer's version as a local edit and put it right;
            // a reload then reads whatever is there.
            log::error!("cannot put back the master's {path} after GeoServer rewrote it: {e}");
            outcome = outcome.and(Err(format!("{path} could not be put back: {e}")));
        }
    }
    let mut set = rewrites.lock().unwrap();
    for p in &watched {
        set.remove(*p);
    }
    outcome
}
