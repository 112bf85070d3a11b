//! Rolling reloads: with `max_concurrent_reloads`, the slaves of a group take turns to reload
//! (claims in their retained statuses, ordered by the broker), so part of the group always
//! serves. A turn whose node stops answering or dies is freed (lease timeout, last will), and a
//! node that loses the broker while it waits reloads on its own after `reload_max_delay_ms`.

use crate::support::cluster::Cluster;
use crate::support::generator::Spec;
use crate::support::geoserver::{assert_reloads_consistent, Reload, StandInGeoServer};
use crate::support::node::{wait_until_logs, Node};
use crate::support::run::run;
use std::process::Command;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);
/// How long a slave's stand-in takes to reload: long enough for every slave to be due at once.
const RELOAD: Duration = Duration::from_millis(1500);
const LEASE_TIMEOUT_MS: u64 = 2000;

/// A master (embedded broker) and `slaves` slaves taking turns with `limit`.
fn cluster(limit: &str, slaves: usize, seed: u64) -> Cluster {
    let limit = limit.to_string();
    Cluster::start_with(&Spec::small(), seed, slaves, move |cfg| {
        if cfg.role == "slave" {
            cfg.geoserver_extra = vec![
                format!("max_concurrent_reloads = {limit}"),
                format!("reload_lease_timeout_ms = {LEASE_TIMEOUT_MS}"),
            ];
            // A node frozen with SIGSTOP stays connected this long: only the lease timeout can
            // free its turn.
            cfg.mqtt_extra = vec!["keep_alive_s = 120".into()];
        }
    })
}

/// Every slave's stand-in takes this long to reload from now on.
fn delay_all(c: &Cluster, delay: Duration) {
    for s in &c.slaves {
        s.gs.set_delay(delay);
    }
}

/// The reloads each slave's stand-in has seen so far.
fn counts(c: &Cluster) -> Vec<usize> {
    c.slaves.iter().map(|s| s.gs.reloads().len()).collect()
}

/// Every finished reload after `before`, as (slave, started, answered).
fn intervals(c: &Cluster, before: &[usize]) -> Vec<(String, Instant, Instant)> {
    let mut all = Vec::new();
    for (s, &n) in c.slaves.iter().zip(before) {
        for r in &s.gs.reloads()[n..] {
            if let Some(finished) = r.finished {
                all.push((s.node.config().id.clone(), r.at, finished));
            }
        }
    }
    all
}

/// The most reloads running at one instant.
fn max_overlap(reloads: &[(String, Instant, Instant)]) -> usize {
    (reloads.iter())
        .map(|(_, at, _)| {
            (reloads.iter())
                .filter(|(_, a, f)| a <= at && at < f)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn finished(gs: &StandInGeoServer, before: usize) -> usize {
    gs.reloads()[before..]
        .iter()
        .filter(|r: &&Reload| r.finished.is_some())
        .count()
}

fn nodes(c: &Cluster) -> Vec<&Node> {
    let mut n: Vec<&Node> = c.slaves.iter().map(|s| &s.node).collect();
    n.push(&c.master);
    n
}

/// One change, every slave reloads once, and the overlap of their reloads is exactly `want`.
fn one_change_rolls_out(limit: &str, want: usize, seed: u64) {
    let mut c = cluster(limit, 4, seed);
    let root = c.master_dir().to_path_buf();
    c.converge(DEADLINE);
    delay_all(&c, RELOAD);
    let before = counts(&c);
    c.catalog.add_layer(&root, 0, 0, "rolled_out");
    c.converge(DEADLINE);
    wait_until_logs("every slave reloaded", DEADLINE, &nodes(&c), || {
        (c.slaves.iter().zip(&before)).all(|(s, &n)| finished(&s.gs, n) >= 1)
    });
    // Nothing more is owed: one change, one reload per slave.
    std::thread::sleep(RELOAD);
    let after = counts(&c);
    let once: Vec<usize> = before.iter().map(|n| n + 1).collect();
    assert_eq!(after, once, "one reload per slave\n{}", c.logs());
    let reloads = intervals(&c, &before);
    assert_eq!(
        max_overlap(&reloads),
        want,
        "max_concurrent_reloads = {limit} over 4 slaves: {reloads:#?}\n{}",
        c.logs()
    );
    for s in &c.slaves {
        assert_reloads_consistent(&s.gs, c.master_dir(), &s.node.config().id);
    }
    // The time each slave waited for its turn is in its status: with one turn at a time, the
    // last one waited for three reloads.
    let config = c.slaves[0].node.config_path();
    let json = run(
        &["status", "--json", "-c", config.to_str().unwrap()],
        "warn",
    );
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect(&json.stderr);
    let waited: Vec<u64> = (report["nodes"].as_array().unwrap().iter())
        .filter(|n| n["role"] == "slave")
        .map(|n| n["reload"]["waiting_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(waited.len(), 4, "{json:?}");
    let waiting = waited.iter().filter(|&&ms| ms > 0).count();
    assert!(waiting >= 4 - want, "waited {waited:?} ms for a turn");
}

#[test]
fn with_one_turn_each_slave_reloads_once_and_no_two_overlap() {
    one_change_rolls_out("1", 1, 91);
}

#[test]
fn with_half_the_group_two_of_four_slaves_reload_at_once() {
    one_change_rolls_out("\"50%\"", 2, 92);
}

/// SIGSTOP or SIGCONT a node.
fn signal(node: &Node, sig: &str) {
    let pid = node.pid().expect("running").to_string();
    assert!(Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success());
}

/// The slave whose stand-in is reloading now, once one is.
fn holder(c: &Cluster, before: &[usize]) -> usize {
    let mut found = None;
    wait_until_logs("a slave holds the turn", DEADLINE, &nodes(c), || {
        found = (c.slaves.iter().zip(before))
            .position(|(s, &n)| s.gs.reloads()[n..].iter().any(|r| r.finished.is_none()));
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn a_turn_whose_node_stops_answering_or_dies_is_freed() {
    let mut c = cluster("1", 3, 93);
    let root = c.master_dir().to_path_buf();
    c.converge(DEADLINE);

    // 1. The holder freezes mid-reload (still connected): its claim times out.
    delay_all(&c, Duration::from_secs(8));
    let before = counts(&c);
    c.catalog.add_layer(&root, 0, 0, "behind_frozen");
    let frozen = holder(&c, &before);
    signal(&c.slaves[frozen].node, "-STOP");
    delay_all(&c, Duration::from_millis(300));
    let others: Vec<usize> = (0..3).filter(|&i| i != frozen).collect();
    wait_until_logs(
        "the others reload past the frozen holder",
        DEADLINE,
        &nodes(&c),
        || {
            others
                .iter()
                .all(|&i| finished(&c.slaves[i].gs, before[i]) >= 1)
        },
    );
    assert!(
        c.slaves[frozen].gs.reloads()[before[frozen]]
            .finished
            .is_none(),
        "the frozen holder's reload still runs: the others went on without it"
    );
    let others_reloads: Vec<_> = intervals(&c, &before)
        .into_iter()
        .filter(|(id, _, _)| *id != c.slaves[frozen].node.config().id)
        .collect();
    assert_eq!(max_overlap(&others_reloads), 1, "{others_reloads:#?}");
    signal(&c.slaves[frozen].node, "-CONT");
    c.converge(DEADLINE);

    // 2. The holder dies mid-reload: its last will frees the turn.
    delay_all(&c, Duration::from_secs(8));
    wait_until_logs("nothing reloading", DEADLINE, &nodes(&c), || {
        c.slaves.iter().all(|s| s.gs.serving())
    });
    let before = counts(&c);
    c.catalog.add_layer(&root, 0, 0, "behind_dead");
    let dead = holder(&c, &before);
    c.slaves[dead].node.kill9();
    delay_all(&c, Duration::from_millis(300));
    let others: Vec<usize> = (0..3).filter(|&i| i != dead).collect();
    wait_until_logs(
        "the others reload past the dead holder",
        DEADLINE,
        &nodes(&c),
        || {
            others
                .iter()
                .all(|&i| finished(&c.slaves[i].gs, before[i]) >= 1)
        },
    );
    for &i in &others {
        let s = &c.slaves[i];
        assert_reloads_consistent(&s.gs, c.master_dir(), &s.node.config().id);
    }
    c.slaves[dead].node.restart();
    c.converge(DEADLINE);
}

#[test]
fn a_node_waiting_for_its_turn_reloads_alone_once_the_broker_is_gone() {
    let mut c = cluster("1", 2, 94);
    let root = c.master_dir().to_path_buf();
    c.converge(DEADLINE);
    delay_all(&c, Duration::from_secs(6));
    let before = counts(&c);
    c.catalog.add_layer(&root, 0, 0, "broker_gone");
    c.converge(DEADLINE);
    let first = holder(&c, &before);
    let waiting = 1 - first;
    wait_until_logs(
        "the other slave waits for its turn",
        DEADLINE,
        &nodes(&c),
        || {
            c.slaves[waiting]
                .node
                .log_contents()
                .contains("reload waits for its turn")
        },
    );
    // The broker (embedded in the master) goes away while the second slave waits.
    c.master.kill9();
    c.slaves[waiting].gs.set_delay(Duration::from_millis(300));
    let s = &c.slaves[waiting];
    wait_until_logs(
        "the waiting slave reloads on its own",
        DEADLINE,
        &[&s.node],
        || finished(&s.gs, before[waiting]) >= 1,
    );
    assert!(
        s.node.log_contents().contains("reloading without a turn"),
        "{}",
        s.node.log_contents()
    );
    assert_reloads_consistent(&s.gs, c.master_dir(), &s.node.config().id);
    // Nothing was lost: both slaves have the change, and the first one's reload finishes too.
    c.converge(DEADLINE);
    let s = &c.slaves[first];
    wait_until_logs("the first slave's reload", DEADLINE, &[&s.node], || {
        finished(&s.gs, before[first]) >= 1
    });
    c.master.restart();
    c.converge(DEADLINE);
}
