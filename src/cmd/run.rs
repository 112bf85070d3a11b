//! The daemon (`gscluster run`): opens the state, starts the tasks its role needs, and stops
//! them cleanly on SIGTERM — the write in progress finishes, state is flushed, exit 0.
//!
//! Tasks: the embedded broker (optional, own threads) · the MQTT connection · on a master the
//! detector thread and the publisher · on a slave the receive worker and the reload task.

use crate::config::Config;
use crate::inbound::Worker;
use crate::master::{publisher, Detector};
use crate::mqtt::connection::{self, Link, Options};
use crate::mqtt::{broker, Topics};
use crate::reload::{self, GeoServer, ReloadSettings};
use crate::resync;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

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

async fn run_async(cfg: Config) -> Result<(), String> {
    super::require_data_dir(&cfg)?;
    let state = super::open_state(&cfg)?;
    let role = cfg.node.role;
    let topics = Topics::new(&cfg.mqtt.topic_prefix, &cfg.node.group);
    let shared = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || super::open_node(&cfg, state))
            .await
            .map_err(|e| format!("start-up: {e}"))??
    };
    let shared = Arc::new(shared);
    {
        let st = shared.state.lock().unwrap();
        log::info!(
            "gscluster {} starting: node {} ({}) in group {}, data_dir {}, state_dir {}, epoch {}, next seq {}",
            env!("CARGO_PKG_VERSION"),
            cfg.node.id,
            role.as_str(),
            cfg.node.group,
            cfg.geoserver.data_dir.display(),
            cfg.node.state_dir.display(),
            st.epoch,
            st.next_seq
        );
    }
    {
        // A lower bound until the publisher says more: everything below the oldest outbox
        // entry was acknowledged.
        let st = shared.state.lock().unwrap();
        let highest = st.next_seq - 1;
        let published = st.outbox().acknowledged(highest).unwrap_or(highest);
        drop(st);
        if role.publishes() {
            shared.board.published(published);
        }
    }

    // Installed before anything runs, so that nothing it records is lost.
    let metrics = cfg
        .metrics
        .map(|_| crate::telemetry::install())
        .transpose()?;

    if let Some(b) = &cfg.broker {
        broker::start(b, &cfg.mqtt.topic_prefix)?;
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (link_tx, link_rx) = watch::channel(Link::default());
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (inbound_tx, inbound_rx) = mpsc::channel(1024);
    let mut subscriptions = Vec::new();
    if role.applies() {
        subscriptions.push(topics.delta_filter());
        subscriptions.push(topics.sync_answer(&cfg.node.id));
        subscriptions.push(topics.status_filter());
    } else {
        // A pure master applies nothing, but watches the other publishers' Deltas to say when
        // one of its own edits lost a conflict. It learns them from their statuses and
        // subscribes to each (inbound.rs): with `delta/+` the broker would send it its own
        // stream back (MQTT 3.1.1 has no "no local"), a start-up of 10,000 layers included.
        subscriptions.push(topics.status_filter());
    }
    if role.publishes() {
        subscriptions.push(topics.sync_ask_filter());
    }
    let conn = tokio::spawn(connection::run(
        cfg.mqtt.clone(),
        Options {
            client_id: cfg.node.id.clone(),
            subscriptions,
            // Retained "offline" in place of this node's status when its connection dies.
            will: Some({
                let mut status = shared.status(role.as_str(), false, None);
                status.at_unix_ms = 0; // when it fires is unknown now
                (
                    topics.status(&cfg.node.id),
                    status.encode(&cfg.node.group, &shared.auth),
                )
            }),
            birth: None,
            max_packet: crate::delta::MAX_MESSAGE_SIZE + 64 * 1024,
        },
        link_tx,
        events_tx,
        inbound_tx,
        shutdown_rx.clone(),
    ));

    let mut tasks = Vec::new();
    if let (Some(addr), Some(handle)) = (cfg.metrics, metrics) {
        // Bind now, so that a port in use is a start-up error naming the key, not a log line.
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("[metrics] listen {addr}: {e}"))?;
        let (link, shutdown) = (link_rx.clone(), shutdown_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::telemetry::serve(listener, handle, link, shutdown).await {
                log::error!("{e}; metrics are not served");
            }
        }));
    }
    let detector;
    let mut asks = None;
    let mut imported_deltas = None;
    if role.publishes() {
        let (asks_tx, asks_rx) = mpsc::channel(16);
        asks = Some(asks_tx);
        tasks.push(tokio::spawn(resync::responder::run(
            shared.clone(),
            asks_rx,
            link_rx.clone(),
        )));
        let outbox = shared.state.lock().unwrap().outbox();
        let (fresh_tx, fresh_rx) = mpsc::unbounded_channel();
        imported_deltas = Some(fresh_tx.clone());
        let highest = shared.state.lock().unwrap().next_seq - 1;
        let p = publisher::Publisher {
            outbox: outbox.clone(),
            topic: topics.delta(&cfg.node.id),
            highest,
            epoch: shared.state.lock().unwrap().epoch,
            shared: shared.clone(),
        };
        tasks.push(tokio::spawn(p.run(
            fresh_rx,
            events_rx,
            shutdown_rx.clone(),
        )));
        let d = Detector {
            shared: shared.clone(),
            outbox,
            quiet: cfg.master.quiet,
            rescan_interval: cfg.master.rescan_interval,
            published: fresh_tx,
            drift: None,
            reported: Default::default(),
        };
        detector = Some(
            std::thread::Builder::new()
                .name("detect".into())
                .spawn(move || d.run())
                .map_err(|e| format!("cannot start the detector: {e}"))?,
        );
    } else {
        drop(events_rx);
        // A pure slave watches its data directory too, for drift: local edits are not
        // published but reported and, by default, reverted.
        let (fresh_tx, _) = mpsc::unbounded_channel();
        let d = Detector {
            shared: shared.clone(),
            outbox: shared.state.lock().unwrap().outbox(),
            quiet: cfg.master.quiet,
            rescan_interval: cfg.master.rescan_interval,
            published: fresh_tx,
            drift: Some(cfg.node.on_drift),
            reported: Default::default(),
        };
        detector = Some(
            std::thread::Builder::new()
                .name("drift".into())
                .spawn(move || d.run())
                .map_err(|e| format!("cannot start the drift watch: {e}"))?,
        );
    }
    let (stats_tx, stats_rx) = watch::channel(reload::ReloadStats::default());
    let mut notify: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});
    if role.applies() {
        let gs = GeoServer::from_config(&cfg.geoserver);
        let settings = ReloadSettings {
            quiet: cfg.geoserver.reload_quiet,
            max_delay: cfg.geoserver.reload_max_delay,
            reference_wait: cfg.geoserver.reference_wait,
            ..Default::default()
        };
        let (handle, reload_rx) = reload::channel();
        let sh = shared.clone();
        tasks.push(tokio::spawn(reload::run(
            gs,
            settings,
            reload_rx,
            move || sh.readiness(),
            Some(shared.files.clone()),
            stats_tx,
            shutdown_rx.clone(),
        )));
        notify = Arc::new(move || handle.notify());
    }
    // Air-gap bundles that `gscluster import` hands over while this daemon holds the state.
    tasks.push(tokio::spawn(crate::airgap::spool::serve(
        shared.clone(),
        GeoServer::from_config(&cfg.geoserver),
        imported_deltas,
        shutdown_rx.clone(),
    )));
    let sh = shared.clone();
    tasks.push(tokio::spawn(crate::status::report(
        topics.status(&cfg.node.id),
        shared.board.changed.clone(),
        role.applies(),
        move |reload| {
            sh.status(role.as_str(), true, reload)
                .encode(&sh.group, &sh.auth)
        },
        link_rx.clone(),
        stats_rx,
        shutdown_rx.clone(),
    )));
    let worker = Worker {
        shared: shared.clone(),
        role,
        link: link_rx,
        notify,
        asks,
    };
    tasks.push(tokio::spawn(worker.run(inbound_rx, shutdown_rx.clone())));
    tasks.push(tokio::spawn(crate::memory::run(shutdown_rx.clone())));

    wait_for_signal().await;
    log::info!("stopping: finishing the write in progress");
    shared.stopping.store(true, Ordering::SeqCst);
    let _ = shutdown_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = conn.await;
    if let Some(d) = detector {
        let _ = tokio::task::spawn_blocking(move || d.join()).await;
    }
    let mut state = shared.state.lock().unwrap();
    state
        .compact()
        .map_err(|e| format!("cannot flush state to {}: {e}", state.dir().display()))?;
    log::info!("stopped cleanly");
    Ok(())
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
