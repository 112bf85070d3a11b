//! A pure master and the other masters: it never applies their Deltas, but watches them to
//! say when one of its own edits lost a conflict (docs/conflicts.md).

use super::Worker;
use crate::delta::{self, Delta};
use std::collections::HashSet;

/// The origins whose Deltas a pure master subscribed to, on connection `.0`.
pub type Watched = (u64, HashSet<String>);

impl Worker {
    /// A pure master watches the Deltas of every other publishing node (to log the conflicts
    /// it loses), not its own: subscribed per origin as their statuses arrive, again after
    /// every connection.
    pub(super) async fn watch_publisher(&self, watched: &mut Watched, node: &str, payload: &[u8]) {
        match self.decode_status(node, payload) {
            Ok(s) if s.role == "master" || s.role == "both" => {
                let link = self.link.borrow().clone();
                if watched.0 != link.gen {
                    *watched = (link.gen, Default::default());
                }
                if let Some(client) = link.client {
                    if watched.1.insert(node.to_string()) {
                        let filter = self.shared.topics.delta(node);
                        match client.subscribe(&filter, rumqttc::QoS::AtLeastOnce).await {
                            Ok(()) => {
                                log::info!("watching {node}'s deltas for conflicts ({filter})")
                            }
                            Err(e) => log::warn!("cannot subscribe to {filter}: {e}"),
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) => self.reject(node, &e),
        }
    }

    /// On a pure master, which never applies: say which of its own edits another master's
    /// newer change overrides in the cluster (the conflict rule, docs/conflicts.md). This node
    /// keeps its copy; every applying node takes the other's.
    pub(super) fn report_lost_conflicts(&self, delta: &Delta) {
        let state = self.shared.state.lock().unwrap();
        for c in &delta.changes {
            let Some(mine) = state.manifest.entries.get(&c.path) else {
                continue;
            };
            // A path merged field by field loses only when another node's settings edit is
            // newer than this node's; a counter bump does not override anything.
            let (theirs, ours) = if crate::update_sequence::merged(&c.path) {
                (
                    c.merged.as_ref().map_or(&c.version, |m| &m.settings),
                    mine.merged.as_ref().map_or(&mine.version, |m| &m.settings),
                )
            } else {
                (&c.version, &mine.version)
            };
            if ours.origin != self.shared.node_id || theirs <= ours {
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
}
