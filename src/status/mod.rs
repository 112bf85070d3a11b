//! Node status, published retained on `{prefix}/{group}/status/{node}`.
//!
//! A publishing node announces how far its stream goes (epoch and the highest sequence number
//! the broker has acknowledged) whenever its outbox drains, and on every connection; its MQTT
//! last will says it went offline. Receivers compare the announcement with what they applied:
//! a broker that dropped the *newest* queued Deltas (Mosquitto's queue limit does that) leaves
//! no gap in what arrives, and only this announcement shows that the slave is behind.

pub mod page;
pub mod report;

use crate::delta::{self, DecodeError, Part};
use crate::mqtt::connection::Link;
use crate::reload::{Claim, ReloadStats};
use crate::security::Auth;
use crate::state::State;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};
use tokio::time::{Duration, Instant};

/// Sequence number given to status frames (they are not part of the Delta stream).
const STATUS_SEQ: u64 = 1;

use crate::clock::now_ms;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a node says about itself. Every field after `at_unix_ms` came later and defaults when
/// an older node leaves it out; it is left out itself when zero, empty or false (a status
/// reaches every node of the group on every change: on edge links its bytes count).
/// DOCS: docs/wire-format.md ("Status"), docs/monitoring.md.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub online: bool,
    pub role: String,
    pub version: String,
    /// The node's own stream: its epoch and the highest sequence number up to which the broker
    /// acknowledged everything (0: nothing published yet).
    pub epoch: u64,
    pub published: u64,
    /// When this status was made (0 in a last will: unknown).
    pub at_unix_ms: u64,
    /// When `published` last moved.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub published_at_unix_ms: u64,
    /// Per origin, the last Delta applied and when.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied: BTreeMap<String, Applied>,
    /// Deltas waiting in the outbox for the broker's acknowledgement.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub outbox: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadInfo>,
    /// The last error this node reported, with when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_error_at_unix_ms: u64,
    /// SHA-256 (hex, first 16 digits) of `security/geoserver.jceks` in the data directory:
    /// nodes whose keystores differ cannot decrypt each other's store passwords.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keystore: Option<String>,
    /// Local edits found on this read-only slave since it started.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drift_events: u64,
    /// A resync round has completed on this node's state (it is past its bootstrap).
    #[serde(default, skip_serializing_if = "is_false")]
    pub synced: bool,
    /// Its place in the group's reload queue: waiting for a turn, or holding one
    /// (`max_concurrent_reloads`, `reload::lease`). Never in a last will.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Claim>,
    /// The highest clock reading the node issued or saw (`hlc`). Every receiver takes it in,
    /// so a node's clock runs ahead of every version it could have seen even before one of its
    /// Deltas reaches it: a pure master subscribes to a publisher's Deltas only once it has its
    /// status, so the Delta a new node publishes at start-up can pass it by (issue 14's chaos
    /// rounds: a deletion made just after lost to that start-up Delta's versions).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hlc: u64,
    /// What the node's history keeps (`None`: it keeps none, or an older version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<crate::history::Extent>,
}

/// Where a node stands on one origin's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub epoch: u64,
    pub seq: u64,
    /// When this node last applied a Delta of that origin (0: before this process started).
    pub at_unix_ms: u64,
    /// Deltas of that origin this node skipped and still lacks (`state::holes`): a resync that
    /// covers them is under way or waits for a node that holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<crate::state::Hole>,
}

/// The reloads of this node's GeoServer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadInfo {
    pub ok: u64,
    pub failed: u64,
    pub last_at_unix_ms: Option<u64>,
    /// "ok" or the last error.
    pub last_result: Option<String>,
    /// Applied changes that needed no reload (GeoServer re-reads those files by itself).
    #[serde(default)]
    pub skipped: u64,
    /// Time spent reloading and draining before reloads, milliseconds.
    #[serde(default)]
    pub reloading_ms: u64,
    #[serde(default)]
    pub draining_ms: u64,
    /// Time spent waiting for a reload turn of the group, milliseconds.
    #[serde(default)]
    pub waiting_ms: u64,
    /// Changes applied through GeoServer's REST API instead of a reload (`apply = "per-object"`).
    #[serde(default)]
    pub per_object: u64,
}

impl Status {
    pub fn new(node: &str, role: &str, online: bool, epoch: u64, published: u64) -> Status {
        Status {
            node: node.into(),
            online,
            role: role.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            epoch,
            published,
            at_unix_ms: now_ms(),
            published_at_unix_ms: 0,
            applied: BTreeMap::new(),
            outbox: 0,
            reload: None,
            last_error: None,
            last_error_at_unix_ms: 0,
            keystore: None,
            drift_events: 0,
            synced: false,
            hlc: 0,
            lease: None,
            history: None,
        }
    }

    /// One authenticated frame (a status is far below the message size).
    pub fn encode(&self, group: &str, auth: &Auth) -> Vec<u8> {
        let body = crate::cbor::encode(self);
        delta::encode_parts(group, &self.node, self.epoch, STATUS_SEQ, &body, auth)
            .into_iter()
            .next()
            .expect("one part")
    }

    /// Decode a status from its frame's part (a status is always one part).
    pub fn decode(mut header: Part) -> Result<Status, DecodeError> {
        let body = std::mem::take(&mut header.body);
        let body = delta::whole_body(&mut header, body)?;
        let s: Status = delta::decode_cbor(&body)?;
        if s.node != header.origin {
            return Err(DecodeError::Part(format!(
                "status of {:?} sent as {:?}",
                s.node, header.origin
            )));
        }
        Ok(s)
    }
}

/// What the working parts of a node tell its status: kept in `context::Shared`, read whenever a status
/// is published. Each setter wakes the reporter (`changed`).
#[derive(Default)]
pub struct Board {
    inner: Mutex<BoardInner>,
    pub changed: Arc<Notify>,
}

#[derive(Default, Clone)]
struct BoardInner {
    published: u64,
    published_at: u64,
    applied_at: BTreeMap<String, u64>,
    last_error: Option<(u64, String)>,
    drift_events: u64,
    reloads_skipped: u64,
}

impl Board {
    /// The broker acknowledged this node's stream up to `published`.
    pub fn published(&self, published: u64) {
        let mut b = self.inner.lock().unwrap();
        if b.published != published {
            b.published = published;
            b.published_at = now_ms();
        }
        drop(b);
        self.changed.notify_one();
    }

    /// A Delta of `origin` was applied.
    pub fn applied(&self, origin: &str) {
        self.inner
            .lock()
            .unwrap()
            .applied_at
            .insert(origin.to_string(), now_ms());
        self.changed.notify_one();
    }

    pub fn error(&self, what: &str) {
        self.inner.lock().unwrap().last_error = Some((now_ms(), what.to_string()));
        self.changed.notify_one();
    }

    /// How many applied changes needed no GeoServer reload.
    pub fn reloads_skipped(&self) -> u64 {
        self.inner.lock().unwrap().reloads_skipped
    }

    /// Applied changes needed no GeoServer reload.
    pub fn reload_skipped(&self) {
        self.inner.lock().unwrap().reloads_skipped += 1;
        self.changed.notify_one();
    }

    pub fn drift(&self) {
        self.inner.lock().unwrap().drift_events += 1;
        self.changed.notify_one();
    }
}

impl Board {
    /// The status these counters and `state` tell (reload statistics and keystore digest are
    /// added by `Shared::status`).
    pub fn status(&self, node: &str, role: &str, online: bool, state: &State) -> Status {
        let board = self.inner.lock().unwrap().clone();
        let mut s = Status::new(node, role, online, state.epoch, board.published);
        s.published_at_unix_ms = board.published_at;
        s.applied = (state.applied.iter())
            .map(|(origin, p)| {
                let at = board.applied_at.get(origin).copied().unwrap_or(0);
                (
                    origin.clone(),
                    Applied {
                        epoch: p.epoch,
                        seq: p.seq,
                        at_unix_ms: at,
                        missing: state.holes.get(origin).copied(),
                    },
                )
            })
            .collect();
        s.outbox = state.outbox().seqs().map_or(0, |v| v.len() as u64);
        s.synced = state.synced;
        if let Some((at, e)) = board.last_error {
            s.last_error = Some(e);
            s.last_error_at_unix_ms = at;
        }
        s.drift_events = board.drift_events;
        s
    }
}

impl ReloadInfo {
    /// What a status says of the reload task's counters and of the reloads skipped.
    pub fn of(r: &ReloadStats, skipped: u64) -> ReloadInfo {
        ReloadInfo {
            ok: r.reloads_ok,
            failed: r.reloads_failed,
            last_at_unix_ms: r.last_at_unix_ms,
            last_result: r.last_result.clone(),
            skipped,
            reloading_ms: r.reloading_ms,
            draining_ms: r.draining_ms,
            waiting_ms: r.waiting_ms,
            per_object: r.per_object,
        }
    }
}

/// How long the reporter waits after a change for more before it publishes.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// At most one status this often, but for a change of the reload turn: a Delta's apply and
/// the reload after it go as one status or two, not one per step of the reload (each status
/// reaches every node of the group: on an edge link, the bytes a change costs).
const MIN_GAP: Duration = Duration::from_secs(1);
/// A status is published again this often even when nothing changed, so its time stays fresh.
const REFRESH: Duration = Duration::from_secs(30);

/// What publishes this node's status.
pub struct Reporter<F> {
    /// `{prefix}/{group}/status/{node}`.
    pub topic: String,
    pub group: String,
    pub auth: Auth,
    /// The board's wake-up (`Board::changed`).
    pub changed: Arc<Notify>,
    /// An applying node: its status carries its reloads and its reload turn.
    pub applies: bool,
    /// While this node waits for or holds a reload turn, its status is published this often:
    /// a claim counts only while refreshed (`reload_lease_timeout_ms` / 3).
    pub claim_refresh: Duration,
    /// The status now, from the reload statistics when this node applies.
    pub now: F,
}

impl<F: Fn(Option<&ReloadStats>) -> Status + Send> Reporter<F> {
    /// Publish this node's status, retained: on every connection, every [`REFRESH`], at once
    /// when its reload turn changes (and while it holds or waits for one, every
    /// `claim_refresh`), and after other changes — coalesced ([`DEBOUNCE`], [`MIN_GAP`]) and
    /// only when the status says something new (a reload's phases alone do not). QoS 0: the
    /// publisher's packet-id pairing needs it to be the only QoS 1 publisher, and a status
    /// lost with a connection is published again on the next.
    pub async fn run(
        self,
        mut link: watch::Receiver<Link>,
        mut reload: watch::Receiver<ReloadStats>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut refresh = tokio::time::interval(REFRESH);
        let mut reload_open = self.applies;
        let mut claim = None;
        let mut last: Option<Status> = None;
        let mut last_at = Instant::now() - MIN_GAP;
        // When a coalesced change is to be published.
        let mut due: Option<Instant> = None;
        loop {
            let claiming = claim.is_some();
            let coalesced =
                || Some(due.unwrap_or((Instant::now() + DEBOUNCE).max(last_at + MIN_GAP)));
            let force = tokio::select! {
                r = link.changed() => if r.is_err() { break } else { true },
                _ = self.changed.notified() => {
                    due = coalesced();
                    continue;
                }
                r = reload.changed(), if reload_open => {
                    if r.is_err() {
                        reload_open = false;
                        continue;
                    }
                    if reload.borrow().lease == claim {
                        due = coalesced();
                        continue;
                    }
                    true
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => false,
                () = tokio::time::sleep(self.claim_refresh), if claiming => true,
                _ = refresh.tick() => true,
                _ = shutdown.changed() => break,
            };
            due = None;
            let Some(client) = link.borrow().client.clone() else {
                continue;
            };
            let stats = self.applies.then(|| reload.borrow().clone());
            claim = stats.as_ref().and_then(|s| s.lease);
            let status = (self.now)(stats.as_ref());
            let timeless = Status {
                at_unix_ms: 0,
                ..status.clone()
            };
            if !force && last.as_ref() == Some(&timeless) {
                continue;
            }
            let payload = status.encode(&self.group, &self.auth);
            if client
                .publish_once(&self.topic, payload, true)
                .await
                .is_err()
            {
                log::debug!("status not published: the connection is closing");
                continue;
            }
            (last, last_at) = (Some(timeless), Instant::now());
        }
    }
}

/// SHA-256 of the GeoServer keystore, first 16 hex digits; `None` when there is none.
pub fn keystore_digest(data_dir: &std::path::Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(data_dir.join("security/geoserver.jceks")).ok()?;
    let hash = Sha256::digest(&bytes);
    Some(hash[..8].iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_an_authenticated_frame() {
        let auth = Auth::with_keys(vec![1; 32], vec![]);
        let s = Status::new("gs-a", "master", true, 7, 42);
        let frame = s.encode("g", &auth);
        let part = delta::decode_part(&frame, "g", &auth).unwrap();
        assert_eq!(Status::decode(part).unwrap(), s);
        assert!(delta::decode_part(&frame, "g", &Auth::with_keys(vec![2; 32], vec![])).is_err());
    }

    /// Fields that came later are left out when they say nothing, and read back as their
    /// defaults; the ones every version reads are always there.
    #[test]
    fn a_status_leaves_out_what_says_nothing_and_reads_it_back_as_the_default() {
        let bare = Status::new("gs-a", "slave", true, 7, 0);
        let body = crate::cbor::encode(&bare);
        let keys: ciborium::Value = ciborium::from_reader(body.as_slice()).unwrap();
        let keys: Vec<String> = (keys.as_map().unwrap().iter())
            .map(|(k, _)| k.as_text().unwrap().to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "node",
                "online",
                "role",
                "version",
                "epoch",
                "published",
                "at_unix_ms"
            ]
        );
        assert_eq!(delta::decode_cbor::<Status>(&body).unwrap(), bare);
        let mut full = bare.clone();
        full.applied.insert(
            "gs-m".into(),
            Applied {
                epoch: 1,
                seq: 2,
                at_unix_ms: 3,
                missing: None,
            },
        );
        (full.outbox, full.synced, full.hlc, full.drift_events) = (1, true, 9, 2);
        full.keystore = Some("0123456789abcdef".into());
        full.last_error = Some("boom".into());
        let body = crate::cbor::encode(&full);
        assert_eq!(delta::decode_cbor::<Status>(&body).unwrap(), full);
    }
}
