//! A pure master and the other masters: it never applies their Deltas, but watches them to say
//! when one of its own edits lost a conflict (docs/conflicts.md). It learns the other publishers
//! from their statuses and subscribes to each one's Delta topic: with `delta/+` the broker
//! would send it its own stream back (MQTT 3.1.1 has no "no local").

use crate::context::Shared;
use crate::delta::{self, Delta};
use crate::mqtt::connection::Link;
use crate::status::Status;
use std::collections::HashSet;

/// The origins whose Deltas a pure master subscribed to, on connection `gen`.
#[derive(Default)]
pub struct Watched {
    gen: u64,
    origins: HashSet<String>,
}

/// A status arrived: subscribe to its node's Deltas if it publishes and is not watched yet on
/// the current connection (subscriptions are made again after every connection).
pub async fn watch_publisher(sh: &Shared, link: &Link, watched: &mut Watched, status: &Status) {
    if status.role != "master" && status.role != "both" {
        return;
    }
    if watched.gen != link.gen {
        *watched = Watched {
            gen: link.gen,
            origins: HashSet::new(),
        };
    }
    let Some(client) = &link.client else {
        return;
    };
    if watched.origins.insert(status.node.clone()) {
        let filter = sh.topics.delta(&status.node);
        match client.subscribe(&filter).await {
            Ok(()) => log::info!("watching {}'s deltas for conflicts ({filter})", status.node),
            Err(e) => log::warn!("cannot subscribe to {filter}: {e}"),
        }
    }
}

/// Say which of this node's own edits another master's newer change overrides in the cluster
/// (the conflict rule, docs/conflicts.md). This node keeps its copy; every applying node takes
/// the other's.
pub fn report_lost(sh: &Shared, delta: &Delta) {
    let state = sh.state.lock().unwrap();
    // A pure master applies nothing, but its next edit must still be newer than every change it
    // has seen: without this, a publisher whose clock runs hours ahead would win every
    // conflict against this node for those hours. (Lock order: state, then clock.)
    if let Some(hlc) = delta.changes.iter().map(|c| c.version.hlc).max() {
        sh.clock.lock().unwrap().observe(hlc);
    }
    log::debug!(
        "watched delta {}/{}/{}: {} change(s)",
        delta.origin,
        delta.epoch,
        delta.seq,
        delta.changes.len()
    );
    for c in &delta.changes {
        let Some(mine) = state.manifest.get(&c.path) else {
            continue;
        };
        // A path merged field by field loses only when another node's settings edit is newer
        // than this node's; a counter bump does not override anything.
        let (theirs, ours) = if crate::update_sequence::merged(&c.path) {
            (
                c.merged.as_ref().map_or(&c.version, |m| &m.settings),
                mine.merged.as_ref().map_or(&mine.version, |m| &m.settings),
            )
        } else {
            (&c.version, &mine.version)
        };
        if ours.origin != sh.node_id || theirs <= ours {
            continue;
        }
        let same = match &c.op {
            delta::Op::Write { sha256, .. } => !mine.deleted && mine.sha256[..] == sha256[..],
            delta::Op::Delete => mine.deleted,
        };
        if !same {
            log::warn!(
                "conflict lost: {}: the edit of {} (version {}.{}) is newer than this node's (version {}.{}); every applying node takes it, this pure master keeps its own copy",
                c.path,
                delta.origin,
                theirs.hlc,
                theirs.origin,
                ours.hlc,
                ours.origin
            );
        }
    }
}
