//! `/readyz` takes a node out of its load balancer for a reload: 503 from `drain_ms` before the
//! reload starts until GeoServer has answered it, 200 before and after. `/healthz` keeps its
//! meaning (connected to a broker).

use crate::support::cluster::Cluster;
use crate::support::generator::Spec;
use crate::support::node::{free_port, wait_until_logs};
use crate::support::run::{get, run};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);
const DRAIN: Duration = Duration::from_millis(600);
const RELOAD: Duration = Duration::from_millis(600);

#[test]
fn readyz_is_503_while_draining_and_reloading_and_200_otherwise() {
    let port = free_port();
    let mut c = Cluster::start_with(&Spec::small(), 79, 1, move |cfg| {
        if cfg.role == "slave" {
            cfg.metrics_listen = Some(format!("127.0.0.1:{port}"));
            cfg.geoserver_extra = vec![format!("drain_ms = {}", DRAIN.as_millis())];
        }
    });
    let root = c.master_dir().to_path_buf();
    c.converge(DEADLINE);
    let slave = &c.slaves[0];
    slave.gs.set_delay(RELOAD);
    wait_until_logs("/readyz 200", DEADLINE, &[&slave.node], || {
        get(port, "/readyz").is_ok_and(|r| r.0 == 200)
    });

    // Watch /readyz while a catalog change is applied and reloaded.
    let samples: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (samples, stop) = (samples.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let code = get(port, "/readyz").map_or(0, |r| r.0);
                samples.lock().unwrap().push((Instant::now(), code));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    wait_until_logs("a first sample", DEADLINE, &[&slave.node], || {
        !samples.lock().unwrap().is_empty()
    });
    let before = slave.gs.reloads().len();
    let changed = Instant::now();
    c.catalog.add_layer(&root, 0, 0, "reloaded behind a drain");
    let slave = &c.slaves[0];
    wait_until_logs("the reload, answered", DEADLINE, &[&slave.node], || {
        slave.gs.reloads().len() > before && get(port, "/readyz").is_ok_and(|r| r.0 == 200)
    });
    wait_until_logs(
        "the watcher sees 200 again",
        DEADLINE,
        &[&slave.node],
        || {
            samples
                .lock()
                .unwrap()
                .last()
                .is_some_and(|&(_, c)| c == 200)
        },
    );
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();

    let reload = slave.gs.reloads()[before].at;
    let samples = samples.lock().unwrap().clone();
    let log = slave.node.log_contents();
    let margin = Duration::from_millis(100);
    let codes = |from: Instant, to: Instant| -> Vec<u16> {
        (samples.iter())
            .filter(|&&(t, _)| t > from && t < to)
            .map(|&(_, c)| c)
            .collect()
    };
    let all_503 = |codes: &[u16]| !codes.is_empty() && codes.iter().all(|&c| c == 503);
    // Before the drain: serving.
    let before_drain: Vec<u16> = (samples.iter())
        .filter(|&&(t, _)| t < changed)
        .map(|&(_, c)| c)
        .collect();
    assert!(
        before_drain.contains(&200),
        "{before_drain:?} {samples:?}\n{log}"
    );
    // drain_ms before the reload request reached GeoServer: out of the load balancer.
    let draining = codes(reload - DRAIN + margin, reload);
    assert!(all_503(&draining), "draining: {draining:?}\n{log}");
    // While GeoServer reloads: still out.
    let reloading = codes(reload + margin, reload + RELOAD - margin);
    assert!(all_503(&reloading), "reloading: {reloading:?}\n{log}");
    // After: back.
    let after = codes(reload + RELOAD, Instant::now());
    let relative: Vec<(i128, u16)> = (samples.iter())
        .map(|&(t, c)| {
            let ms = if t >= reload {
                (t - reload).as_millis() as i128
            } else {
                -((reload - t).as_millis() as i128)
            };
            (ms, c)
        })
        .collect();
    assert!(
        after.contains(&200),
        "after: {after:?}; ms after the reload request: {relative:?}"
    );
    let (code, _) = get(port, "/healthz").unwrap();
    assert_eq!(code, 200, "/healthz is about the broker only");

    // The node's status counts the time spent draining and reloading.
    let config = slave.node.config_path();
    let config = config.to_str().unwrap();
    let id = slave.node.config().id.clone();
    let reload_info = || -> serde_json::Value {
        let out = run(&["status", "-c", config, "--json"], "warn").stdout;
        let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        (report["nodes"].as_array().into_iter().flatten())
            .find(|n| n["node"] == id.as_str())
            .map_or(serde_json::Value::Null, |n| n["reload"].clone())
    };
    let drained = DRAIN.as_millis() as u64;
    wait_until_logs(
        "the status counts the drain",
        DEADLINE,
        &[&slave.node],
        || {
            let r = reload_info();
            r["draining_ms"].as_u64().is_some_and(|ms| ms >= drained)
                && r["reloading_ms"]
                    .as_u64()
                    .is_some_and(|ms| ms >= RELOAD.as_millis() as u64)
        },
    );
}
