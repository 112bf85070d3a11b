//! The daemon's shared context: what every task of one node reads and the few things they
//! change together — the durable state, the clock, the catalog index, the reload gate, the
//! data-directory lock, and the counters its status reports. Built once at start
//! (`cmd::open_node`) and handed to each task as `Arc<Shared>`.
//!
//! Locks are always taken in the order state → clock → catalog → gate.

use crate::config::Config;
use crate::datadir::{CatalogIndex, Filter};
use crate::hlc::Clock;
use crate::mqtt::Topics;
use crate::reload::{Gate, Leases, Readiness, ReloadStats, Rewrites};
use crate::security::Auth;
use crate::state::State;
use crate::status::{Board, Status};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// State shared by the tasks of one node.
pub struct Shared {
    pub node_id: String,
    pub group: String,
    pub data_dir: PathBuf,
    pub filter: Filter,
    /// This node publishes its local edits (`master` or `both`).
    pub publishes: bool,
    /// This node applies the others' changes (`slave` or `both`).
    pub applies: bool,
    /// Directories a scan of the data directory never enters (the state directory).
    pub skip_dirs: Vec<PathBuf>,
    pub topics: Topics,
    /// Keys that sign what this node sends and verify what it receives.
    pub auth: Auth,
    pub state: Mutex<State>,
    /// The Deltas this node knows it skipped, described (`State::lacking`; the reload gate
    /// reads it without the state lock).
    pub lacking: Arc<Mutex<Option<String>>>,
    pub clock: Mutex<Clock>,
    pub catalog: Mutex<CatalogIndex>,
    pub gate: Mutex<Gate>,
    /// Held exclusively while a Delta is written into the data directory and shared while
    /// GeoServer reloads, so a reload never sees half of a Delta.
    pub files: Arc<tokio::sync::RwLock<()>>,
    /// Set once on SIGTERM/SIGINT; blocking loops poll it.
    pub stopping: AtomicBool,
    /// Messages and Deltas refused (bad encoding, wrong group, unsafe paths…).
    pub rejected: AtomicU64,
    /// Sequence gaps seen (each needs a resync).
    pub gaps: AtomicU64,
    /// A resync round is running: reloads wait for its end.
    pub resyncing: AtomicBool,
    /// A pure slave saw local edits to revert (set by the detector, taken by the resync).
    pub drift: AtomicBool,
    /// Until when this node, back from being down, does not answer manifest asks (its own
    /// first resync round since it started may still bring it up to date). See
    /// `resync::asker::STALE_GRACE`.
    pub stale_until: Mutex<Option<std::time::Instant>>,
    /// A resync round has completed since this process started.
    pub current: AtomicBool,
    /// `[resync]`: how much one batch of a resync asks for.
    pub resync: crate::config::Resync,
    /// Received messages waiting for the receive worker: reloads wait while it is not zero.
    pub backlog: AtomicUsize,
    /// What the node's working parts tell its status (crate::status).
    pub board: Board,
    /// The group's reload turns, from the statuses that arrive (`reload::turn`).
    pub leases: Arc<Leases>,
    /// Files GeoServer is rewriting now because of a per-object REST call: not local edits
    /// (`reload::per_object`; the detector leaves them alone).
    pub rewrites: Rewrites,
    /// The last status of every other node of the group, as received (the status page).
    pub statuses: Mutex<BTreeMap<String, Status>>,
}

impl Shared {
    /// The context of the node `cfg` describes, over its opened `state` and what the caller
    /// read of the data directory (`cmd::open_node` recovers an interrupted run first).
    pub fn new(
        cfg: &Config,
        state: State,
        auth: Auth,
        filter: Filter,
        catalog: CatalogIndex,
    ) -> Shared {
        Shared {
            node_id: cfg.node.id.clone(),
            group: cfg.node.group.clone(),
            skip_dirs: vec![cfg.node.state_dir.clone()],
            data_dir: cfg.geoserver.data_dir.clone(),
            filter,
            publishes: cfg.node.role.publishes(),
            applies: cfg.node.role.applies(),
            topics: Topics::new(&cfg.mqtt.topic_prefix, &cfg.node.group),
            auth,
            clock: Mutex::new(Clock::starting_after(state.hlc)),
            lacking: Arc::clone(&state.lacking),
            state: Mutex::new(state),
            catalog: Mutex::new(catalog),
            gate: Mutex::new(Gate::default()),
            files: Arc::new(tokio::sync::RwLock::new(())),
            stopping: AtomicBool::new(false),
            rejected: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            resyncing: AtomicBool::new(false),
            drift: AtomicBool::new(false),
            stale_until: Mutex::new(None),
            current: AtomicBool::new(false),
            resync: cfg.resync,
            backlog: AtomicUsize::new(0),
            board: Default::default(),
            leases: Default::default(),
            rewrites: Default::default(),
            statuses: Default::default(),
        }
    }

    /// Whether GeoServer may reload now (the policy is `reload::Gate`). Clears the gate when it
    /// may.
    pub fn readiness(&self) -> Readiness {
        let mut catalog = self.catalog.lock().unwrap();
        let mut gate = self.gate.lock().unwrap();
        gate.readiness(
            self.resyncing.load(Ordering::SeqCst),
            self.backlog.load(Ordering::Relaxed),
            &mut catalog,
            &self.data_dir,
            || self.lacking.lock().unwrap().clone(),
        )
    }

    /// The state, for async code: waiting for it does not stall the runtime. A full scan
    /// holds it for seconds on a large catalog (the first start-up scan of a slave on a full
    /// 100,000-layer data dir: ~20 s), and a worker thread blocked on it can drive nothing
    /// else meanwhile — with both workers blocked, not even the MQTT connection.
    pub fn lock_state(&self) -> MutexGuard<'_, State> {
        if let Ok(state) = self.state.try_lock() {
            return state;
        }
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(|| self.state.lock().unwrap())
        } else {
            self.state.lock().unwrap()
        }
    }

    /// This node's status now, from its state, its board and its reload statistics.
    pub fn status(&self, role: &str, online: bool, reload: Option<&ReloadStats>) -> Status {
        let state = self.lock_state();
        let mut s = self.board.status(&self.node_id, role, online, &state);
        if state.history {
            s.history = crate::history::extent(state.database()).ok();
            if let Some(e) = &s.history {
                crate::telemetry::record_history(e);
            }
        }
        drop(state);
        s.hlc = self.clock.lock().unwrap().peek();
        let skipped = self.board.reloads_skipped();
        s.reload = reload.map(|r| crate::status::ReloadInfo::of(r, skipped));
        s.lease = reload.and_then(|r| r.lease);
        s.keystore = crate::status::keystore_digest(&self.data_dir);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// While a scan holds the state, async code waiting for it leaves the runtime's workers to
    /// the other tasks: with two workers and two waiters, a timer task still runs.
    #[test]
    fn waiting_for_the_state_does_not_stall_the_runtime() {
        let (data, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cfg = crate::config::parse(&format!(
            "[node]\nid = \"s\"\nrole = \"slave\"\nstate_dir = {:?}\n[geoserver]\ndata_dir = {:?}\n",
            state.path(),
            data.path()
        ))
        .unwrap();
        let st = State::open(state.path()).unwrap();
        let sh = Arc::new(crate::cmd::open_node(&cfg, st).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (held_tx, held) = std::sync::mpsc::channel();
        let released = Arc::new(AtomicBool::new(false));
        let scan = {
            let (sh, released) = (sh.clone(), released.clone());
            std::thread::spawn(move || {
                let _state = sh.state.lock().unwrap();
                held_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_secs(2)); // the scan, holding the state
                released.store(true, Ordering::SeqCst);
            })
        };
        held.recv().unwrap();
        let late = rt.block_on(async {
            let waiters: Vec<_> = (0..2)
                .map(|_| {
                    let sh = sh.clone();
                    tokio::spawn(async move { sh.lock_state().synced })
                })
                .collect();
            let timer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                released.load(Ordering::SeqCst)
            });
            let late = timer.await.unwrap();
            for w in waiters {
                w.await.unwrap();
            }
            late
        });
        scan.join().unwrap();
        assert!(
            !late,
            "the timer task ran only once the scan let the state go"
        );
    }
}
