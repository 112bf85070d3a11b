//! The daemon (`gscluster run`): opens the state, starts the tasks its role needs, and stops
//! them cleanly on SIGTERM — the write in progress finishes, state is flushed, exit 0.
//!
//! Tasks: the embedded broker (optional, own threads) · the MQTT connection · on a publishing
//! node the detector thread, the publisher and the resync responder · on a pure slave the drift
//! watch · on an applying node the reload task · on every node the receive worker, the status
//! reporter, the import folder and the metrics listener (when configured).

use crate::config::ApplyMode;
use crate::config::Config;
use crate::context::Shared;
use crate::master::{publisher, Detector};
use crate::mqtt::connection::{self, Inbound, Link, LinkEvent, Options};
use crate::mqtt::{broker, Topics};
use crate::receive::Worker;
use crate::reload::{
    self, GeoServer, Phase, ReloadHandle, ReloadSettings, ReloadStats, Turn, TurnSettings,
};
use crate::resync::{self, responder::Asked};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Run the daemon until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<(), String> {
    crate::memory::limit_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = rt.block_on(run_async(cfg));
    // A reload request still waiting on GeoServer must not hold the exit for its whole timeout.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

/// The running daemon: its context and the tasks to stop.
struct Daemon {
    cfg: Config,
    shared: Arc<Shared>,
    topics: Topics,
    shutdown: watch::Receiver<bool>,
    link: watch::Receiver<Link>,
    tasks: Vec<JoinHandle<()>>,
    detector: Option<std::thread::JoinHandle<()>>,
}

async fn run_async(cfg: Config) -> Result<(), String> {
    // 1. The state and the shared context (recovering an interrupted run).
    let shared = open(&cfg).await?;
    // 2. The metrics recorder first, so that nothing it records is lost; then the broker.
    let metrics = cfg
        .metrics
        .map(|_| crate::telemetry::install())
        .transpose()?;
    if let Some(b) = &cfg.broker {
        broker::start(b, &cfg.mqtt.topic_prefix)?;
    }
    // 3. The connection, and the channels its events and messages arrive on.
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (link_tx, link) = watch::channel(Link::default());
    let (events_tx, events) = mpsc::unbounded_channel();
    let (inbound_tx, inbound) = mpsc::channel(1024);
    let conn = tokio::spawn(connection::run(
        cfg.mqtt.clone(),
        connection_options(&cfg, &shared),
        link_tx,
        events_tx,
        inbound_tx,
        shutdown.clone(),
    ));
    let mut d = Daemon {
        topics: Topics::new(&cfg.mqtt.topic_prefix, &cfg.node.group),
        cfg,
        shared,
        shutdown,
        link,
        tasks: Vec::new(),
        detector: None,
    };
    // 4. The tasks of this node's role.
    let (stats_tx, stats) = watch::channel(ReloadStats::default());
    if let Some(handle) = metrics {
        d.serve_metrics(handle, stats.clone())?;
    }
    let (asks, imported) = if d.cfg.node.role.publishes() {
        let (asks, imported) = d.start_publishing(events)?;
        (Some(asks), Some(imported))
    } else {
        drop(events);
        d.start_drift_watch()?;
        (None, None)
    };
    let reload = d.start_reloads(stats_tx);
    d.start_common(inbound, asks, imported, reload, stats);
    // 5. Until a signal; then every task stops and the state is flushed.
    wait_for_signal().await;
    log::info!("stopping: finishing the write in progress");
    d.shared.stopping.store(true, Ordering::SeqCst);
    let _ = shutdown_tx.send(true);
    for t in d.tasks {
        let _ = t.await;
    }
    let _ = conn.await;
    if let Some(detector) = d.detector {
        let _ = tokio::task::spawn_blocking(move || detector.join()).await;
    }
    // Every state change was committed as it happened: nothing is left to flush. The catalog
    // index is marked complete, so the next start need not walk the data directory for it.
    let sh = &d.shared;
    sh.catalog.lock().unwrap().close(&sh.data_dir, &sh.filter);
    log::info!("stopped cleanly");
    Ok(())
}

/// Open the state and build the shared context (blocking work, on a blocking thread).
async fn open(cfg: &Config) -> Result<Arc<Shared>, String> {
    super::require_data_dir(cfg)?;
    let shared = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || super::open_node(&cfg, super::open_state(&cfg)?))
            .await
            .map_err(|e| format!("start-up: {e}"))??
    };
    let st = shared.state.lock().unwrap();
    log::info!(
        "gscluster {} starting: node {} ({}) in group {}, data_dir {}, state_dir {}, epoch {}, next seq {}",
        env!("CARGO_PKG_VERSION"),
        cfg.node.id,
        cfg.node.role.as_str(),
        cfg.node.group,
        cfg.geoserver.data_dir.display(),
        cfg.node.state_dir.display(),
        st.epoch,
        st.next_seq
    );
    if cfg.node.role.publishes() {
        // A lower bound until the publisher says more: everything below the oldest outbox
        // entry was acknowledged.
        let highest = st.next_seq - 1;
        let published = st.outbox().acknowledged(highest).unwrap_or(highest);
        shared.board.published(published);
    }
    drop(st);
    Ok(Arc::new(shared))
}

/// Who this node is to the broker, what it subscribes to, and its last will.
fn connection_options(cfg: &Config, shared: &Shared) -> Options {
    let role = cfg.node.role;
    let topics = &shared.topics;
    // A pure master applies nothing, but watches the other publishers' Deltas to say when one
    // of its own edits lost a conflict: it subscribes to each as their statuses arrive
    // (`master::conflicts`), not to `delta/+`, which would bring its own stream back.
    let mut subscriptions = if role.applies() {
        vec![
            topics.delta_filter(),
            topics.sync_answer(&cfg.node.id),
            topics.status_filter(),
        ]
    } else {
        vec![topics.status_filter()]
    };
    if role.publishes() {
        subscriptions.push(topics.sync_ask_filter());
    }
    // Retained "offline" in place of this node's status when its connection dies.
    let mut status = shared.status(role.as_str(), false, None);
    status.at_unix_ms = 0; // when it fires is unknown now
    Options {
        client_id: cfg.node.id.clone(),
        subscriptions,
        will: Some((
            topics.status(&cfg.node.id),
            status.encode(&cfg.node.group, &shared.auth),
        )),
        birth: None,
        max_packet: crate::delta::MAX_MESSAGE_SIZE + 64 * 1024,
    }
}

impl Daemon {
    /// `[metrics]`: `/metrics` and `/healthz`. Bound now, so that a port in use is a start-up
    /// error naming the key, not a log line.
    fn serve_metrics(
        &mut self,
        handle: metrics_exporter_prometheus::PrometheusHandle,
        reloads: watch::Receiver<ReloadStats>,
    ) -> Result<(), String> {
        let Some(addr) = self.cfg.metrics else {
            return Ok(());
        };
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("[metrics] listen {addr}: {e}"))?;
        let (link, shutdown) = (self.link.clone(), self.shutdown.clone());
        let connected = move || link.borrow().client.is_some();
        let stats = reloads.clone();
        let busy = move || match reloads.borrow().phase {
            Phase::Serving => None,
            Phase::Draining => Some("draining: GeoServer reloads in at most drain_ms"),
            Phase::Reloading => Some("GeoServer is reloading its catalog"),
        };
        let (sh, role, link) = (self.shared.clone(), self.cfg.node.role, self.link.clone());
        let servers: Vec<String> = self
            .cfg
            .mqtt
            .servers
            .iter()
            .map(|s| s.to_string())
            .collect();
        let servers = servers.join(", ");
        // The group as this node sees it: the statuses received, and its own as of now.
        let report = move || {
            let mut all: Vec<_> = sh.statuses.lock().unwrap().values().cloned().collect();
            let reload = role.applies().then(|| stats.borrow().clone());
            let online = link.borrow().client.is_some();
            all.push(sh.status(role.as_str(), online, reload.as_ref()));
            let limits = crate::status::report::Limits::default();
            let now = crate::clock::now_ms();
            crate::status::report::report(&sh.group, &servers, &all, now, limits)
        };
        let node = self.cfg.node.id.clone();
        let json_report = report.clone();
        let probes = crate::telemetry::Probes {
            connected,
            busy,
            page: move || crate::status::page::html(&report(), &node),
            json: move || {
                let text = serde_json::to_string_pretty(&json_report());
                text.map(|t| t + "\n").map_err(|e| e.to_string())
            },
        };
        self.tasks.push(tokio::spawn(async move {
            let serving = crate::telemetry::serve(listener, handle, probes, shutdown);
            if let Err(e) = serving.await {
                log::error!("{e}; metrics are not served");
            }
        }));
        Ok(())
    }

    /// A publishing node: the resync responder, the publisher and the detector thread. Returns
    /// where the receive worker sends resync asks, and where imports report new Deltas.
    fn start_publishing(
        &mut self,
        events: mpsc::UnboundedReceiver<LinkEvent>,
    ) -> Result<(mpsc::Sender<Asked>, mpsc::UnboundedSender<u64>), String> {
        let sh = &self.shared;
        let (asks_tx, asks_rx) = mpsc::channel(16);
        let responder = resync::responder::run(sh.clone(), asks_rx, self.link.clone());
        self.tasks.push(tokio::spawn(responder));
        let (fresh_tx, fresh_rx) = mpsc::unbounded_channel();
        let (outbox, highest, epoch) = {
            let st = sh.state.lock().unwrap();
            (st.outbox(), st.next_seq - 1, st.epoch)
        };
        let p = publisher::Publisher {
            outbox,
            topic: self.topics.delta(&self.cfg.node.id),
            highest,
            epoch,
            shared: sh.clone(),
        };
        let publishing = p.run(fresh_rx, events, self.shutdown.clone());
        self.tasks.push(tokio::spawn(publishing));
        self.start_detector("detect", fresh_tx.clone(), None)?;
        Ok((asks_tx, fresh_tx))
    }

    /// A pure slave watches its data directory too, for drift: local edits are not published
    /// but reported and, by default, reverted.
    fn start_drift_watch(&mut self) -> Result<(), String> {
        let (fresh_tx, _) = mpsc::unbounded_channel();
        self.start_detector("drift", fresh_tx, Some(self.cfg.node.on_drift))
    }

    fn start_detector(
        &mut self,
        name: &str,
        published: mpsc::UnboundedSender<u64>,
        drift: Option<crate::config::OnDrift>,
    ) -> Result<(), String> {
        let d = Detector {
            shared: self.shared.clone(),
            quiet: self.cfg.master.quiet,
            rescan_interval: self.cfg.master.rescan_interval,
            published,
            drift,
            reported: Default::default(),
        };
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || d.run())
            .map_err(|e| format!("cannot start the {name} thread: {e}"))?;
        self.detector = Some(thread);
        Ok(())
    }

    /// An applying node: the reload task, which reports on `stats`. Returns what the receive
    /// worker tells after writing files (its task is gone on a node that applies nothing).
    fn start_reloads(&mut self, stats: watch::Sender<ReloadStats>) -> ReloadHandle {
        let (handle, inbox) = reload::channel();
        if !self.cfg.node.role.applies() {
            return handle;
        }
        let g = &self.cfg.geoserver;
        let settings = ReloadSettings {
            quiet: g.reload_quiet,
            max_delay: g.reload_max_delay,
            reference_wait: g.reference_wait,
            drain: g.drain,
            max_share: g.reload_max_share,
            ..Default::default()
        };
        let (sh, link) = (self.shared.clone(), self.link.clone());
        let turns = TurnSettings {
            limit: g.max_concurrent_reloads,
            timeout: g.lease_timeout,
            alone_after: g.reload_max_delay,
        };
        let connected = move || link.borrow().client.is_some();
        let per_object = (g.apply == ApplyMode::PerObject).then(|| reload::PerObject {
            data_dir: g.data_dir.clone(),
            rewrites: self.shared.rewrites.clone(),
        });
        let task = reload::Reloader {
            gs: GeoServer::from_config(g),
            settings,
            ready: move || sh.readiness(),
            files: Some(self.shared.files.clone()),
            turn: Turn::new(
                &self.shared.node_id,
                self.shared.leases.clone(),
                turns,
                connected,
            ),
            per_object,
            convergence: g.convergence_reload,
        };
        self.tasks.push(tokio::spawn(reload::run(
            task,
            inbox,
            stats,
            self.shutdown.clone(),
        )));
        handle
    }

    /// Every node: the import folder, the status reporter, the receive worker, the memory
    /// trimmer.
    fn start_common(
        &mut self,
        inbound: mpsc::Receiver<Inbound>,
        asks: Option<mpsc::Sender<Asked>>,
        imported: Option<mpsc::UnboundedSender<u64>>,
        reload: ReloadHandle,
        stats: watch::Receiver<ReloadStats>,
    ) {
        let (sh, role) = (self.shared.clone(), self.cfg.node.role);
        // Air-gap bundles that `gscluster import` hands over while this daemon holds the state.
        // `gscluster log`, `show` and `rollback` while this daemon holds the state.
        self.tasks.push(tokio::spawn(crate::control::serve(
            sh.clone(),
            GeoServer::from_config(&self.cfg.geoserver),
            imported.clone(),
            self.shutdown.clone(),
        )));
        self.tasks.push(tokio::spawn(crate::airgap::spool::serve(
            sh.clone(),
            GeoServer::from_config(&self.cfg.geoserver),
            imported,
            self.shutdown.clone(),
        )));
        let snapshot = {
            let sh = sh.clone();
            move |reload: Option<&ReloadStats>| sh.status(role.as_str(), true, reload)
        };
        let reporter = crate::status::Reporter {
            topic: self.topics.status(&self.cfg.node.id),
            group: sh.group.clone(),
            auth: sh.auth.clone(),
            changed: sh.board.changed.clone(),
            applies: role.applies(),
            claim_refresh: self.cfg.geoserver.lease_timeout / 3,
            now: snapshot,
        };
        let reporting = reporter.run(self.link.clone(), stats, self.shutdown.clone());
        self.tasks.push(tokio::spawn(reporting));
        let worker = Worker {
            shared: sh,
            role,
            link: self.link.clone(),
            reload,
            asks,
        };
        let receiving = worker.run(inbound, self.shutdown.clone());
        self.tasks.push(tokio::spawn(receiving));
        self.tasks
            .push(tokio::spawn(crate::memory::run(self.shutdown.clone())));
        if let Some(keep) = self.cfg.history {
            let keeper = crate::upkeep::run(self.shared.clone(), keep, self.shutdown.clone());
            self.tasks.push(tokio::spawn(keeper));
        } else {
            let forgetting = crate::upkeep::forget(self.shared.clone());
            self.tasks.push(tokio::spawn(forgetting));
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received"),
        _ = int.recv() => log::info!("SIGINT received"),
    }
}
