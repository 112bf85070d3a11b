//! Broker failover: every node lists several brokers in `[mqtt] servers`; when the broker it is
//! connected to dies, it moves to the next one, and nothing is lost or applied twice.
//!
//! Each test starts its own broker processes on free loopback ports and prints `skipped: ...`
//! and passes when a broker is not installed (`.ci/run` installs them). Lines starting with
//! `measured:` report failover times; run with `--nocapture` to read them.

use crate::support::brokers::{ActiveMq, Mosquitto, MosquittoOpts, NatsCluster};
use crate::support::cluster::{copy_tree, start_member, wait_for_subscriptions, Cluster, Slave};
use crate::support::generator::generate;
use crate::support::generator::Spec;
use crate::support::geoserver::assert_reloads_consistent;
use crate::support::geoserver::StandInGeoServer;
use crate::support::node::{assert_converged, free_port, wait_until_logs, Node, NodeConfig};
use crate::support::proxy::{Faults, Proxy};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

const CONVERGE: Duration = Duration::from_secs(90);

/// These tests each run several brokers and nodes; run one at a time, so that none is judged
/// on what the others' brokers do to the 2 cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Milliseconds since midnight UTC of a log line's `[YYYY-MM-DDTHH:MM:SS.mmmZ …` timestamp.
fn log_ms(line: &str) -> Option<i64> {
    let t = line.get(1..25)?.split_once('T')?.1;
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    Some(((num(0..2)? * 60 + num(3..5)?) * 60 + num(6..8)?) * 1000 + num(9..12)?)
}

fn now_ms_of_day() -> i64 {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    (ms % 86_400_000) as i64
}

/// The first line after `from` (ms of day) containing `needle`, as ms after `from`.
/// The member (index in `urls`) a node was last connected to before `at` (log time, ms).
fn on_before(n: &Node, urls: &[String], at: i64) -> Option<usize> {
    let log = n.log_contents();
    let line = (log.lines().rev())
        .find(|l| l.contains("connected to broker ") && log_ms(l).is_some_and(|t| t < at))?;
    urls.iter()
        .position(|u| line.contains(&format!("connected to broker {u} ")))
}

fn first_after(log: &str, needle: &str, from: i64) -> Option<i64> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(log_ms)
        .find(|&t| t >= from)
        .map(|t| t - from)
}

/// Every slave: identical tree already checked by the caller; no Delta applied twice, and only
/// consistent, authenticated reloads.
fn check_slaves(c: &Cluster) {
    for s in &c.slaves {
        let twice: Vec<String> = (applied_ids(&s.node).into_iter())
            .filter(|(_, n)| *n > 1)
            .map(|(id, n)| format!("{id} ×{n}"))
            .collect();
        assert!(
            twice.is_empty(),
            "{}: deltas applied more than once: {twice:?}\n{}",
            s.node.config().id,
            s.node.log_contents()
        );
        assert_reloads_consistent(&s.gs, c.master_dir(), &s.node.config().id);
    }
}

/// 120 random catalog edits in 6 rounds, 50 ms apart; `kill` runs after the third round.
/// Returns when it ran, as (ms of day, instant).
fn burst_with_kill(c: &mut Cluster, seed: u64, kill: impl FnOnce()) -> (i64, Instant) {
    let root = c.master_dir().to_path_buf();
    let mut kill = Some(kill);
    let mut at = (0, Instant::now());
    for round in 0..6u64 {
        c.catalog.random_ops(&root, 20, seed + round);
        if round == 2 {
            at = (now_ms_of_day(), Instant::now());
            (kill.take().unwrap())();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    at
}

/// The master and the slaves, for log checks.
fn nodes<'a>(master: &'a Node, slaves: &'a [Slave]) -> Vec<&'a Node> {
    std::iter::once(master)
        .chain(slaves.iter().map(|s| &s.node))
        .collect()
}

/// Wait until every node logged a connection to `url`.
fn wait_all_connected(nodes: &[&Node], url: &str, what: &str) {
    let switched = format!("connected to broker {url}");
    wait_until_logs(what, CONVERGE, nodes, || {
        nodes.iter().all(|n| n.log_contents().contains(&switched))
    });
}

/// Print when each slave applied its first Delta after the kill.
fn print_first_applied(c: &Cluster, killed_at: i64, label: &str) {
    for s in &c.slaves {
        if let Some(t) = first_after(&s.node.log_contents(), "applied delta", killed_at) {
            println!(
                "measured: {label}: {}: first Delta applied {t} ms after the kill",
                s.node.config().id
            );
        }
    }
}

/// Delta ids ("epoch/seq from origin") a slave logged as applied, with how often.
fn applied_ids(node: &Node) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for l in node.log_contents().lines() {
        if let Some(i) = l.find("applied delta ") {
            let rest = &l[i + 14..];
            let id = rest.split(':').next().unwrap_or(rest).to_string();
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

#[test]
fn two_independent_mosquittos_killed_mid_burst_then_back_every_node_follows_and_nothing_is_lost() {
    let _serial = one_at_a_time();
    let Some(mut first) = Mosquitto::start(MosquittoOpts::default()) else {
        return;
    };
    let Some(second) = Mosquitto::start(MosquittoOpts::default()) else {
        return;
    };
    let mut c = Cluster::start_external_servers(
        &Spec::small(),
        61,
        2,
        vec![first.url(), second.url()],
        |cfg| cfg.mqtt_extra.push("failback_s = 1".into()),
    );
    c.converge(CONVERGE);
    let root = c.master_dir().to_path_buf();
    let (killed_at, _) = burst_with_kill(&mut c, 600, || first.kill9());
    let nodes = nodes(&c.master, &c.slaves);
    let switched = format!("connected to broker {}", second.url());
    wait_all_connected(
        &nodes,
        &second.url(),
        "every node moved to the second broker",
    );
    c.converge(CONVERGE);

    for n in &nodes {
        let log = n.log_contents();
        let id = &n.config().id;
        assert!(
            log.contains(&format!("connection to broker {} lost", first.url())),
            "{id} should log the loss of the first broker:\n{log}"
        );
        let moved = first_after(&log, &switched, killed_at).expect("switch logged");
        eprintln!("measured: {id}: first broker killed → connected to the second in {moved} ms");
    }
    for s in &c.slaves {
        let log = s.node.log_contents();
        // The second broker never saw this slave: it had no session, so the slave resynced.
        assert!(
            log.contains("the broker had no session for this node"),
            "{}: a fresh broker means a resync:\n{log}",
            s.node.config().id
        );
    }
    print_first_applied(&c, killed_at, "two Mosquittos");
    check_slaves(&c);
    // A change made after the failover travels through the second broker alone.
    let t0 = Instant::now();
    c.catalog.add_layer(&root, 0, 0, "after the failover");
    c.converge(CONVERGE);
    eprintln!(
        "measured: a change after the failover converged in {} ms",
        t0.elapsed().as_millis()
    );

    // The first broker comes back (its persistence kept the sessions of before the kill):
    // every node moves back to it, so independent brokers never leave the cluster split.
    let back_at = now_ms_of_day();
    first.restart();
    let moved_back = format!(
        "accepts connections again; moving back to it from {}",
        second.url()
    );
    wait_until_logs(
        "every node moved back to the first broker",
        CONVERGE,
        &nodes,
        || {
            nodes.iter().all(|n| {
                let log = n.log_contents();
                log.contains(&moved_back)
                    && first_after(
                        &log,
                        &format!("connected to broker {}", first.url()),
                        back_at,
                    )
                    .is_some()
            })
        },
    );
    for n in &nodes {
        let t = first_after(
            &n.log_contents(),
            &format!("connected to broker {}", first.url()),
            back_at,
        )
        .unwrap();
        eprintln!(
            "measured: {}: first broker restarted → connected to it again in {t} ms (failback_s = 1)",
            n.config().id
        );
    }
    c.catalog.add_layer(&root, 1, 0, "after the failback");
    c.converge(CONVERGE);
    for s in &c.slaves {
        assert_reloads_consistent(&s.gs, c.master_dir(), &s.node.config().id);
    }
}

#[test]
fn activemq_shared_store_pair_active_killed_mid_burst_the_standby_takes_over_and_nothing_is_lost() {
    let _serial = one_at_a_time();
    let Some(mut active) = ActiveMq::start() else {
        return;
    };
    let mut standby = active.start_standby();
    // The two brokers share one store, so the sessions are the same on both: no need to go
    // back to the first (it stays down here anyway).
    let mut c = Cluster::start_external_servers(
        &Spec::small(),
        62,
        2,
        vec![active.url(), standby.url()],
        |cfg| cfg.mqtt_extra.push("failback_s = 0".into()),
    );
    c.converge(CONVERGE);
    let root = c.master_dir().to_path_buf();
    let (killed_at, killed) = burst_with_kill(&mut c, 700, || active.kill9());
    standby.wait_active(Duration::from_secs(120));
    let took_over = killed.elapsed();
    let nodes = nodes(&c.master, &c.slaves);
    let switched = format!("connected to broker {}", standby.url());
    wait_all_connected(&nodes, &standby.url(), "every node moved to the standby");
    c.converge(CONVERGE);
    println!(
        "measured: activemq pair: active killed → standby listening after {} ms",
        took_over.as_millis()
    );
    for n in &nodes {
        let moved = first_after(&n.log_contents(), &switched, killed_at).expect("switch logged");
        println!(
            "measured: activemq pair: {}: active killed → connected to the standby in {moved} ms",
            n.config().id
        );
    }
    print_first_applied(&c, killed_at, "activemq pair");
    check_slaves(&c);
    c.catalog.add_layer(&root, 0, 0, "after the takeover");
    c.converge(CONVERGE);
}

/// Two `both` nodes, each embedding a broker, and a pure slave; every node lists both brokers,
/// the first node's first. No external broker: losing either node must not stop replication
/// among the others (docs/brokers.md, "Two embedded brokers").
#[test]
fn two_embedded_brokers_losing_the_first_node_keeps_the_others_replicating_and_it_catches_up() {
    let _serial = one_at_a_time();
    let origin = tempfile::tempdir().unwrap();
    generate(origin.path(), &Spec::small(), 63);
    let ports = [free_port(), free_port()];
    let servers: Vec<String> = ports
        .iter()
        .map(|p| format!("mqtt://127.0.0.1:{p}"))
        .collect();
    let mut dirs = Vec::new();
    let mut start = |id: &str, role: &str, broker: Option<u16>| {
        let data = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        copy_tree(origin.path(), data.path());
        let gs = StandInGeoServer::start(data.path(), "admin", "geoserver");
        let mut cfg = NodeConfig::new(id, role, data.path(), state.path(), servers.clone());
        cfg.broker_listen = broker.map(|p| format!("127.0.0.1:{p}"));
        cfg.geoserver_url = Some(gs.url());
        cfg.mqtt_extra.push("failback_s = 1".into());
        let node = Node::start(cfg);
        dirs.push((data, state));
        (node, gs)
    };
    let (mut a, _gs_a) = start("gs-a", "both", Some(ports[0]));
    let (b, _gs_b) = start("gs-b", "both", Some(ports[1]));
    let (s, gs_s) = start("gs-slave", "slave", None);
    for n in [&a, &b, &s] {
        wait_for_subscriptions(n, 1);
    }
    let (da, db, ds) = (
        dirs[0].0.path().to_path_buf(),
        dirs[1].0.path().to_path_buf(),
        dirs[2].0.path().to_path_buf(),
    );
    let logs = |nodes: &[&Node]| crate::support::node::logs_of(nodes);
    let converged = |nodes: &[&Node], want: &std::path::Path, others: &[&std::path::Path]| {
        if let Err(e) = std::panic::catch_unwind(|| assert_converged(want, others, CONVERGE)) {
            eprintln!("{}", logs(nodes));
            std::panic::resume_unwind(e);
        }
    };
    // Each node has caught up with the cluster once (a node that dies is one that was part of
    // it); whoever started before gs-a's broker listened went to gs-b's and comes back to the
    // first within failback_s.
    wait_until_logs("every node bootstrapped", CONVERGE, &[&a, &b, &s], || {
        [&a, &b, &s]
            .iter()
            .all(|n| n.log_contents().contains(" complete in "))
    });
    let last_broker = |n: &Node| {
        (n.log_contents().lines().rev())
            .find_map(|l| {
                l.split_once("connected to broker ")
                    .map(|(_, r)| r.to_string())
            })
            .unwrap_or_default()
    };
    wait_until_logs(
        "everybody on gs-a's broker",
        CONVERGE,
        &[&a, &b, &s],
        || {
            [&a, &b, &s]
                .iter()
                .all(|n| last_broker(n).starts_with(&servers[0]))
        },
    );
    converged(&[&a, &b, &s], &db, &[&da, &ds]);

    // The first node dies with its broker: the others move to the second node's broker.
    let killed_at = now_ms_of_day();
    a.kill9();
    let on_b = format!("connected to broker {}", servers[1]);
    wait_until_logs(
        "gs-b and the slave moved to gs-b's broker",
        CONVERGE,
        &[&b, &s],
        || {
            [&b, &s]
                .iter()
                .all(|n| first_after(&n.log_contents(), &on_b, killed_at).is_some())
        },
    );
    for n in [&b, &s] {
        let t = first_after(&n.log_contents(), &on_b, killed_at)
            .unwrap_or_else(|| panic!("no move after the kill:\n{}", n.log_contents()));
        println!(
            "measured: two embedded brokers: {}: gs-a killed → connected to gs-b's broker in {t} ms",
            n.config().id
        );
    }
    let write = |root: &std::path::Path, rel: &str, body: &str| {
        let p = root.join(rel);
        std::fs::write(p.with_extension("sld.tmp"), body).unwrap();
        std::fs::rename(p.with_extension("sld.tmp"), &p).unwrap();
    };
    write(
        &db,
        "styles/while_a_is_down.sld",
        "<StyledLayerDescriptor/>",
    );
    converged(&[&b, &s], &db, &[&ds]);

    // The first node comes back: it catches up from gs-b (it applies too), and everybody moves
    // back to its broker.
    let back_at = now_ms_of_day();
    a.restart();
    let on_a = format!("connected to broker {}", servers[0]);
    wait_until_logs(
        "everybody back on gs-a's broker",
        CONVERGE,
        &[&a, &b, &s],
        || {
            [&a, &b, &s]
                .iter()
                .all(|n| first_after(&n.log_contents(), &on_a, back_at).is_some())
        },
    );
    converged(&[&a, &b, &s], &db, &[&da, &ds]);
    write(
        &da,
        "styles/after_a_is_back.sld",
        "<StyledLayerDescriptor/>",
    );
    converged(&[&a, &b, &s], &da, &[&db, &ds]);
    assert_reloads_consistent(&gs_s, &ds, "gs-slave");
}

/// A clustered broker: NATS with three members, MQTT sessions replicated in JetStream. The
/// member every node is connected to dies mid-burst; the nodes move to the next member and
/// find their sessions there.
#[test]
fn nats_three_member_cluster_member_killed_mid_burst_sessions_move_and_nothing_is_lost() {
    let _serial = one_at_a_time();
    let Some(mut nats) = NatsCluster::start() else {
        return;
    };
    let urls = nats.urls();
    // The members are equivalent (they share the sessions): no need to go back to the first.
    let mut c = Cluster::start_external_servers(&Spec::small(), 64, 2, urls.clone(), |cfg| {
        cfg.mqtt_extra.push("failback_s = 0".into())
    });
    c.converge(CONVERGE);
    // The member the master is on (member 0 unless it was still starting when the master
    // connected) is the one killed; every node on it must move, the others stay where they are.
    let target = on_before(&c.master, &urls, i64::MAX).expect("the master is connected");
    let (killed_at, _) = burst_with_kill(&mut c, 800, || nats.kill9(target));
    let all = nodes(&c.master, &c.slaves);
    let nodes: Vec<&Node> = all
        .iter()
        .copied()
        .filter(|n| on_before(n, &urls, killed_at) == Some(target))
        .collect();
    // The next member that answers, or the one after if it is still busy electing new stream
    // leaders.
    let moved = |n: &Node| {
        let log = n.log_contents();
        (urls.iter().enumerate())
            .filter(|(i, _)| *i != target)
            .filter_map(|(_, u)| first_after(&log, &format!("connected to broker {u}"), killed_at))
            .min()
    };
    wait_until_logs(
        "every node moved to another member",
        CONVERGE,
        &nodes,
        || nodes.iter().all(|n| moved(n).is_some()),
    );
    c.converge(CONVERGE);
    for n in &nodes {
        println!(
            "measured: nats cluster: {}: member killed → connected to another in {} ms",
            n.config().id,
            moved(n).unwrap()
        );
    }
    for s in c
        .slaves
        .iter()
        .filter(|s| nodes.iter().any(|n| n.config().id == s.node.config().id))
    {
        let log = s.node.log_contents();
        let last = log.rfind("connected to broker ").unwrap();
        assert!(
            log[last..]
                .lines()
                .next()
                .unwrap()
                .ends_with("(session present: true)"),
            "{}: the session should be on the next member:\n{log}",
            s.node.config().id
        );
    }
    print_first_applied(&c, killed_at, "nats cluster");
    check_slaves(&c);
    let root = c.master_dir().to_path_buf();
    c.catalog.add_layer(&root, 0, 0, "after the member died");
    c.converge(CONVERGE);
}

/// A first broker that accepts TCP but fails the MQTT handshake (here a proxy that closes every
/// new connection: a dead broker behind a load balancer, a login it refuses) passes the
/// failback check, which is a TCP connect. Each failed move back doubles the wait before the
/// next check instead of flapping every `failback_s`; once the first broker works again the
/// node moves back and stays.
#[test]
fn a_first_broker_that_accepts_tcp_but_fails_mqtt_is_checked_less_often_and_taken_back_once_it_works(
) {
    let Some(broker) = Mosquitto::start(MosquittoOpts::default()) else {
        return;
    };
    let proxy = Proxy::start(broker.port);
    proxy.set(Faults {
        refuse: true,
        ..Faults::default()
    });
    let first = format!("mqtt://127.0.0.1:{}", proxy.port());
    let origin = tempfile::tempdir().unwrap();
    generate(origin.path(), &Spec::small(), 64);
    let servers = [first.clone(), broker.url()];
    let m = start_member("gs-slave", "slave", origin.path(), &servers, |cfg| {
        cfg.mqtt_extra.push("failback_s = 1".into())
    });
    let log = || m.node.log_contents();
    for wait_s in [2, 4, 8] {
        let said = format!(
            "back to {}, and checking {first} again in {wait_s} s",
            broker.url()
        );
        wait_until_logs("the failback check backs off", CONVERGE, &[&m.node], || {
            log().contains(&said)
        });
    }
    assert!(log().contains(&format!("connected to broker {}", broker.url())));
    proxy.heal();
    let back = format!("connected to broker {first}");
    wait_until_logs("back on the first broker", CONVERGE, &[&m.node], || {
        log().contains(&back)
    });
}
