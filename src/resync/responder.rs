//! Answers resync asks on a publishing node: its manifest and positions, or the files asked for.
//!
//! Answers go out with QoS 0. They are re-asked on a timeout anyway, and QoS 0 keeps them out of
//! the PUBACK accounting that the outbox publisher relies on (it pairs every QoS 1 packet id the
//! connection reports with its own outbox parts).

use super::{encode_answer, page_items, Answer, Ask, Fetched, Item};
use crate::context::Shared;
use crate::mqtt::connection::Link;
use crate::state::Position;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// One ask, as received.
pub struct Asked {
    pub asker: String,
    pub id: u64,
    pub batch: u64,
    pub ask: Ask,
}

/// Run until the ask channel closes.
pub async fn run(
    shared: Arc<Shared>,
    mut asks: mpsc::Receiver<Asked>,
    link: watch::Receiver<Link>,
) {
    while let Some(asked) = asks.recv().await {
        let sh = shared.clone();
        let ask = asked.ask.clone();
        let answer = match tokio::task::spawn_blocking(move || answer(&sh, &ask)).await {
            Ok(Some(a)) => a,
            Ok(None) => continue,
            Err(e) => {
                log::error!("resync answer for {} failed: {e}", asked.asker);
                continue;
            }
        };
        let payloads = encode_answer(
            &shared.group,
            &shared.node_id,
            asked.id,
            asked.batch,
            &answer,
            &shared.auth,
        );
        let Some(client) = link.borrow().client.clone() else {
            log::debug!("resync ask from {} dropped: not connected", asked.asker);
            continue;
        };
        let topic = shared.topics.sync_answer(&asked.asker);
        // What goes on the wire: what edge links pay for (BENCHMARKS.md, "The edge").
        let sent = format!(
            "{} bytes in {} message(s)",
            payloads.iter().map(Vec::len).sum::<usize>(),
            payloads.len()
        );
        match &answer {
            Answer::Files { .. } => {} // not sent since Contents
            Answer::Manifest { items, .. } => log::info!(
                "resync: sending my manifest ({} entries) to {}: {sent}",
                items.len(),
                asked.asker
            ),
            Answer::Page { items, more, .. } => log::info!(
                "resync: sending a page of my manifest to {} ({} entries{}{}): {sent}",
                asked.asker,
                items.len(),
                (items.first()).map_or(String::new(), |i| format!(" from {}", i.path)),
                if *more { "; more follow" } else { "; the last" }
            ),
            Answer::Contents { files } => log::debug!(
                "resync: sending {} file(s) to {} (batch {}): {sent}",
                files.len(),
                asked.asker,
                asked.batch
            ),
        }
        for p in payloads {
            if client.publish_once(&topic, p, false).await.is_err() {
                break;
            }
        }
    }
}

/// Build the answer to one ask (blocking: reads state and files).
fn answer(sh: &Shared, ask: &Ask) -> Option<Answer> {
    let stale = (*sh.stale_until.lock().unwrap()).is_some_and(|t| t > std::time::Instant::now());
    if matches!(ask, Ask::Manifest) && stale {
        // Back from being down, this node may hand out an outdated manifest, and a pure slave
        // removes files no manifest names. Asks are repeated: an up-to-date node answers, or
        // this one once its own round is done (or its grace is over).
        log::info!("resync: not answering a manifest ask while this node catches up itself");
        return None;
    }
    let state = sh.state.lock().unwrap();
    match ask {
        Ask::Manifest => {
            let mut positions: BTreeMap<String, Position> = state.covered();
            if state.next_seq > 1 {
                positions.insert(
                    sh.node_id.clone(),
                    Position {
                        epoch: state.epoch,
                        seq: state.next_seq - 1,
                    },
                );
            }
            let (items, more) = page(state.manifest.iter());
            Some(Answer::Page {
                positions,
                clock: state.hlc,
                items,
                more,
            })
        }
        Ask::Page { to, after } if *to == sh.node_id => {
            let (items, more) = page(state.manifest.after(after));
            Some(Answer::Page {
                positions: BTreeMap::new(),
                clock: 0,
                items,
                more,
            })
        }
        Ask::Page { .. } => None,
        Ask::Files { to, paths } if *to == sh.node_id => {
            let mut files = Vec::with_capacity(paths.len());
            for path in paths {
                let Some(entry) = state.manifest.live_entry(path) else {
                    continue;
                };
                // A file gone since the manifest was sent is left out; its deletion arrives as
                // a Delta once the detector sees it.
                match std::fs::read(sh.data_dir.join(path)) {
                    Ok(bytes) => files.push(Fetched {
                        path: path.clone(),
                        version: entry.version.clone(),
                        bytes,
                        merged: entry.merged.as_deref().cloned(),
                    }),
                    Err(e) => log::debug!("resync: {path} not sent: {e}"),
                }
            }
            Some(Answer::Contents { files })
        }
        Ask::Files { .. } => None,
    }
}

/// The first [`page_items`] of `entries` as answer items, and whether more follow.
fn page(entries: impl Iterator<Item = (String, crate::datadir::Entry)>) -> (Vec<Item>, bool) {
    let mut entries = entries.peekable();
    let items = (entries.by_ref().take(page_items()))
        .map(|(path, e)| Item {
            path,
            version: e.version,
            sha256: e.sha256.to_vec(),
            size: e.size,
            deleted: e.deleted,
            merged: e.merged.map(|m| *m),
        })
        .collect();
    (items, entries.peek().is_some())
}
