//! Multi-process replication: a master with the embedded broker and slaves as real `gscluster`
//! processes on loopback, each slave with a stand-in GeoServer that checks basic auth and the
//! catalog's references at every reload.

use crate::support::cluster::{subscriptions, wait_for_subscriptions, Cluster};
use crate::support::generator::Spec;
use crate::support::geoserver::{assert_reloads_consistent, StandInGeoServer};
use crate::support::node::{assert_converged, wait_until_logs};
use std::path::Path;
use std::time::{Duration, Instant};

const CONVERGE: Duration = Duration::from_secs(30);

/// Wait until `gs` answered a reload that started after `after`.
fn wait_for_reload_after(cluster: &Cluster, gs: &StandInGeoServer, after: Instant, who: &str) {
    let deadline = Instant::now() + CONVERGE;
    while !gs.successful_reloads().iter().any(|r| r.at > after) {
        assert!(
            Instant::now() < deadline,
            "{who}: no reload after the last change\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn bursts_of_adds_modifies_and_deletes_converge_with_few_consistent_reloads() {
    let mut c = Cluster::start(&Spec::small(), 11, 2);
    let root = c.master_dir().to_path_buf();

    // Burst 1: new layers, a style, a workspace.
    let mut touched = 0;
    touched += c.catalog.add_style(&root, "burst_style").len();
    touched += c.catalog.add_workspace(&root, "burst_ws").len();
    for i in 0..5 {
        touched += c
            .catalog
            .add_layer(&root, 0, 0, &format!("burst layer {i}"))
            .len();
    }
    c.converge(CONVERGE);

    // Burst 2: modify and delete layers, change a style body, rename a layer.
    let ids: Vec<String> = c.catalog.layers.iter().map(|l| l.id.clone()).collect();
    touched += c.catalog.modify_layer(&root, &ids[0]).len();
    touched += c.catalog.modify_layer(&root, &ids[1]).len();
    touched += c.catalog.delete_layer(&root, &ids[2]).len();
    touched += c
        .catalog
        .rename_layer(&root, &ids[3], "renamed layer")
        .len();
    touched += c.catalog.modify_style_body(&root, "burst_style").len();
    c.converge(CONVERGE);

    // Burst 3: delete a whole workspace, then 60 random edits.
    touched += c.catalog.delete_workspace(&root, "burst_ws").len();
    c.catalog.random_ops(&root, 60, 99);
    touched += 60;
    let last_change = Instant::now();
    c.converge(CONVERGE);

    for (i, s) in c.slaves.iter().enumerate() {
        let who = format!("slave {}", i + 1);
        wait_for_reload_after(&c, &s.gs, last_change, &who);
        assert_reloads_consistent(&s.gs, c.master_dir(), &who);
        let reloads = s.gs.reloads().len();
        assert!(
            reloads * 10 <= touched,
            "{who}: {reloads} reloads for {touched} file changes"
        );
    }
}

/// A cluster with one slave, in step after a first change; then the slave is stopped. Returns
/// the slave's subscription count before the stop (to wait for the next one after a restart).
fn cluster_with_slave_stopped(seed: u64) -> (Cluster, usize) {
    let mut c = Cluster::start(&Spec::small(), seed, 1);
    let root = c.master_dir().to_path_buf();
    c.catalog.add_layer(&root, 0, 0, "before the outage");
    c.converge(CONVERGE);
    let seen = subscriptions(&c.slaves[0].node);
    c.slaves[0].node.stop();
    (c, seen)
}

/// Once the master has published everything made during the outage, restart the slave and
/// wait for convergence; returns the slave's whole log.
fn restart_after_outage(c: &mut Cluster, seen: usize) -> String {
    wait_until_logs(
        "master published the outage's changes",
        CONVERGE,
        &[&c.master],
        || {
            let log = c.master.log_contents();
            log.matches("acknowledged by the broker").count() >= log.matches("change(s) in").count()
        },
    );
    c.slaves[0].node.restart();
    wait_for_subscriptions(&c.slaves[0].node, seen + 1);
    c.converge(CONVERGE);
    c.wait_logged_applied(CONVERGE);
    c.slaves[0].node.log_contents()
}

#[test]
fn slave_stopped_during_100_changes_catches_up_from_its_persistent_session() {
    let (mut c, seen) = cluster_with_slave_stopped(12);
    let root = c.master_dir().to_path_buf();
    c.catalog.random_ops(&root, 100, 7);
    let log = restart_after_outage(&mut c, seen);
    assert!(
        log.contains("session present: true"),
        "the slave should resume its session:\n{log}"
    );
    // (The master's start-up Delta, sent before this slave first subscribed, is a gap that
    // predates the outage; resync is what heals that one.)
    let after_restart = &log[log.rfind("starting:").unwrap()..];
    assert!(
        !after_restart.contains("gap in deltas"),
        "no delta of the outage may be lost:\n{log}"
    );
    assert_reloads_consistent(&c.slaves[0].gs, c.master_dir(), "slave");
}

#[test]
fn deltas_queued_during_an_outage_are_applied_in_groups() {
    let (mut c, seen) = cluster_with_slave_stopped(14);
    let root = c.master_dir().to_path_buf();
    // Five changes, each its own Delta: wait for each to be cut before making the next.
    for i in 0..5 {
        let cut = c.master.log_contents().matches("change(s) in").count();
        c.catalog
            .add_layer(&root, i % 2, 0, &format!("during the outage {i}"));
        wait_until_logs("master cut a delta", CONVERGE, &[&c.master], || {
            c.master.log_contents().matches("change(s) in").count() > cut
        });
    }
    let log = restart_after_outage(&mut c, seen);
    let after_restart = &log[log.rfind("starting:").unwrap()..];
    assert!(
        after_restart.contains("session present: true"),
        "the slave should resume its session:\n{log}"
    );
    // The first Delta may be applied alone (nothing else had arrived yet); those that arrive
    // while it is written are waiting together when it is done.
    assert!(
        after_restart.contains("applied together with"),
        "queued deltas should be applied in groups:\n{}",
        c.logs()
    );
    assert_eq!(
        after_restart.matches("applied delta").count(),
        5,
        "each queued delta is applied once:\n{log}"
    );
    assert!(
        !after_restart.contains("gap in deltas"),
        "no delta of the outage may be lost:\n{log}"
    );
    assert_reloads_consistent(&c.slaves[0].gs, c.master_dir(), "slave");
}

#[test]
fn geoserver_down_or_failing_delays_the_reload_but_loses_nothing() {
    let mut c = Cluster::start(&Spec::small(), 13, 1);
    let root = c.master_dir().to_path_buf();
    c.slaves[0].gs.set_status(500);
    c.catalog.add_layer(&root, 0, 1, "while failing");
    c.converge(CONVERGE);
    wait_until_logs(
        "a failed reload is logged and retried",
        CONVERGE,
        &[&c.slaves[0].node],
        || {
            c.slaves[0]
                .gs
                .reloads()
                .iter()
                .filter(|r| r.status == 500)
                .count()
                >= 2
        },
    );
    c.slaves[0].gs.set_status(200);
    let after = Instant::now();
    wait_for_reload_after(&c, &c.slaves[0].gs, after, "slave");
    assert!(c.slaves[0].node.log_contents().contains("failed"));
}

#[test]
fn slave_started_before_its_broker_retries_and_replicates_once_the_broker_is_up() {
    use crate::support::cluster::copy_tree;
    use crate::support::generator::generate;
    use crate::support::node::{free_port, Node, NodeConfig};

    let master_data = tempfile::tempdir().unwrap();
    let mut catalog = generate(master_data.path(), &Spec::small(), 14);
    let slave_data = tempfile::tempdir().unwrap();
    copy_tree(master_data.path(), slave_data.path());
    let (master_state, slave_state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = free_port();
    let servers = vec![format!("mqtt://127.0.0.1:{port}")];
    let gs = StandInGeoServer::start(slave_data.path(), "admin", "geoserver");
    let mut cfg = NodeConfig::new(
        "gs-slave",
        "slave",
        slave_data.path(),
        slave_state.path(),
        servers.clone(),
    );
    cfg.geoserver_url = Some(gs.url());
    let mut slave = Node::start(cfg);
    wait_until_logs(
        "the slave reports the missing broker and keeps retrying",
        CONVERGE,
        &[&slave],
        || slave.log_contents().matches("unreachable").count() >= 3,
    );
    assert!(slave.is_running());

    let mut cfg = NodeConfig::new(
        "gs-master",
        "master",
        master_data.path(),
        master_state.path(),
        servers,
    );
    cfg.broker_listen = Some(format!("127.0.0.1:{port}"));
    let mut master = Node::start(cfg);
    wait_for_subscriptions(&slave, 1);
    catalog.add_layer(master_data.path(), 0, 0, "after the broker came up");
    assert_converged(master_data.path(), &[slave_data.path()], CONVERGE);

    for node in [&mut slave, &mut master] {
        let status = node.stop().unwrap();
        assert!(status.success(), "{status:?}\n{}", node.log_contents());
        assert!(node.log_contents().contains("stopped cleanly"));
    }
}

/// Append an XML comment: a change of bytes that leaves the object as it was.
fn touch_xml(path: &Path) {
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str("<!-- edited -->\n");
    std::fs::write(path, text).unwrap();
}

#[test]
fn slave_started_from_an_incomplete_copy_is_healed_by_its_bootstrap_resync() {
    let mut c = Cluster::start(&Spec::small(), 15, 0);
    let layer = c.catalog.layers[0].clone();
    let resource = layer.resource_file();
    // This slave's copy lacks a layer's resource and holds a file no master has.
    c.add_slave_prepared("gs-slave1", |dir| {
        std::fs::remove_file(dir.join(&resource)).unwrap();
        std::fs::write(dir.join("styles/stray.sld"), "left over").unwrap();
    });
    c.converge(CONVERGE);
    wait_until_logs(
        "the resync reports the file no master has",
        CONVERGE,
        &[&c.slaves[0].node],
        || {
            let log = c.slaves[0].node.log_contents();
            log.contains("resync round") && log.contains("removed styles/stray.sld")
        },
    );
    let root = c.master_dir().to_path_buf();
    touch_xml(&root.join(layer.layer_file()));
    let after = Instant::now();
    c.converge(CONVERGE);
    wait_for_reload_after(&c, &c.slaves[0].gs, after, "slave");
    assert_reloads_consistent(&c.slaves[0].gs, c.master_dir(), "slave");
}

/// A master whose start-up publishes more messages than the MQTT windows hold (32 of its own in
/// flight; the broker forwards at most 100 unacknowledged to each subscriber, the publishing
/// node itself included, since it subscribes to every origin's Deltas) must keep its
/// connection. With the node's acknowledgements queued behind its own waiting publishes, the
/// node and the broker waited on each other until the keep-alive expired — 60 s by default,
/// during which the embedded broker's log could roll over.
#[test]
fn a_start_up_larger_than_the_mqtt_windows_flows_without_stalling() {
    use crate::support::generator::generate;
    use crate::support::node::{free_port, Node, NodeConfig};
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    generate(data.path(), &Spec::small(), 91);
    // 200 style bodies of ~180 KiB: one message each, 200 messages in all.
    crate::support::generator::random_styles(data.path(), "big", 200, 180, 91);
    let port = free_port();
    let servers = vec![format!("mqtt://127.0.0.1:{port}")];
    for role in ["master", "both"] {
        let state = tempfile::tempdir().unwrap();
        let mut cfg = NodeConfig::new("gs-big", role, data.path(), state.path(), servers.clone());
        cfg.broker_listen = Some(format!("127.0.0.1:{port}"));
        cfg.mqtt_extra = vec!["keep_alive_s = 5".into()];
        // The windows count messages: sent as they are, the 200 bodies make 200 of them
        // (compressed, random letters shrink to 5/8 and the start-up to ~120 messages).
        cfg.uncompressed = true;
        let node = Node::start(cfg);
        // Everything published and acknowledged: the status announces the last sequence number.
        wait_until_logs(
            "the start-up published",
            Duration::from_secs(60),
            &[&node],
            || {
                let log = node.log_contents();
                let last = log
                    .lines()
                    .filter_map(|l| l.split_once("start-up scan: seq ").map(|(_, t)| t))
                    .filter_map(|t| t.split(':').next()?.parse::<u64>().ok())
                    .max();
                last.is_some_and(|n| {
                    log.lines().any(|l| {
                        l.contains("announced stream position") && l.ends_with(&format!("/{n}"))
                    })
                })
            },
        );
        let log = node.log_contents();
        assert!(
            !log.contains("lost:"),
            "{role}: the connection stalled during the start-up:\n{log}"
        );
        let messages: usize = (log.lines())
            .filter(|l| l.contains("start-up scan: seq "))
            .filter_map(|l| {
                l.split(" in ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        assert!(
            messages > 132,
            "{role}: only {messages} messages: the test is too small"
        );
    }
    drop(state);
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system constant.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[test]
fn idle_nodes_do_not_spin() {
    // A loop that wakes itself (a watcher woken by its own look at a folder, a timer at zero)
    // costs a whole core while the cluster looks idle. Over 3 s of idle, a node that spins
    // uses ~3 CPU s; an idle one uses next to nothing (0.04 CPU s per minute, BENCHMARKS.md).
    let c = Cluster::start(&Spec::small(), 13, 1);
    c.converge(CONVERGE);
    std::thread::sleep(Duration::from_secs(1));
    let pids = [
        ("master", c.master.pid().unwrap()),
        ("slave", c.slaves[0].node.pid().unwrap()),
    ];
    let before: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    std::thread::sleep(Duration::from_secs(3));
    for ((who, pid), before) in pids.iter().zip(before) {
        let used = cpu_seconds(*pid) - before;
        assert!(
            used < 0.5,
            "the idle {who} used {used:.2} CPU s in 3 s\n{}",
            c.logs()
        );
    }
}
