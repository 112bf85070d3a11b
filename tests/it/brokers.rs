//! Replication over external brokers with durable sessions: Debian's Mosquitto (persistence on)
//! and Apache ActiveMQ 5.17 (KahaDB). Each test starts its own broker process on a free loopback
//! port with its store in a temp dir, and prints `skipped: ...` and passes when the broker is
//! not installed (`.ci/run` installs both).
//!
//! Every test ends with byte-identical replicated trees and reloads that never saw a
//! half-applied catalog. Lines starting with `measured:` report what the brokers did (session
//! kept or not, resync or not); run with `--nocapture` to read them.

use crate::support::brokers::{ActiveMq, Mosquitto, MosquittoOpts};
use crate::support::cluster::{subscriptions, wait_for_subscriptions, Cluster};
use crate::support::generator::Spec;
use crate::support::geoserver::assert_reloads_consistent;
use crate::support::node::{wait_until_logs, Node};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const CONVERGE: Duration = Duration::from_secs(60);

fn converge(c: &Cluster) {
    c.converge(CONVERGE);
    // The files are on disk a few milliseconds before the slave logs the Delta.
    c.settle_logs(Duration::from_secs(5));
}

/// Number of Deltas the master has cut so far (one log line per Delta).
fn deltas_cut(master: &Node) -> usize {
    master.log_contents().matches("change(s) in").count()
}

/// Wait until the master cut a Delta after `cut_before` Deltas, cut no new one for 1.5 s (longer
/// than its quiet window plus its 1 s wait for referenced objects), and the broker acknowledged
/// every Delta it cut. Counting acks alone passes before the detector even woke up.
fn wait_published(c: &Cluster, cut_before: usize) {
    wait_published_settled(c, cut_before, Duration::from_millis(1500));
}

/// `wait_published` with a chosen quiet time (short for a single small edit).
fn wait_published_settled(c: &Cluster, cut_before: usize, settle: Duration) {
    wait_until_logs("master cut a Delta", CONVERGE, &[&c.master], || {
        deltas_cut(&c.master) > cut_before
    });
    let mut last = (deltas_cut(&c.master), Instant::now());
    wait_until_logs(
        "master published everything",
        CONVERGE,
        &[&c.master],
        || {
            let log = c.master.log_contents();
            let cut = log.matches("change(s) in").count();
            if cut != last.0 {
                last = (cut, Instant::now());
            }
            last.1.elapsed() > settle && log.matches("acknowledged by the broker").count() >= cut
        },
    );
}

/// The part of a node's log written since its last start.
fn since_last_start(log: &str) -> &str {
    &log[log.rfind("starting:").expect("a start line")..]
}

/// Sequence numbers of the Deltas the master has cut so far, in order.
fn master_seqs(master: &Node) -> Vec<u64> {
    master
        .log_contents()
        .lines()
        .filter(|l| l.contains("change(s) in"))
        .filter_map(|l| {
            let rest = &l[l.find(": seq ")? + 6..];
            rest[..rest.find(':')?].parse().ok()
        })
        .collect()
}

/// Sequence numbers the master cut after its first `before` Deltas.
fn seqs_since(master: &Node, before: usize) -> Vec<u64> {
    master_seqs(master).split_off(before)
}

/// Sequence numbers of the master's Deltas that the broker delivered to the slave in `log`
/// (applied, or recognised as already applied after a resync got there first).
fn delivered_seqs(log: &str) -> BTreeSet<u64> {
    log.lines()
        .filter_map(|l| {
            if let Some(i) = l.find("applied delta ") {
                let id = l[i + 14..].split_whitespace().next()?;
                id.rsplit('/').next()?.parse().ok()
            } else if l.contains(" already applied") {
                let i = l.find("delta gs-master/")?;
                let id = l[i + 16..].split_whitespace().next()?;
                id.rsplit('/').next()?.parse().ok()
            } else {
                None
            }
        })
        .collect()
}

/// What the slave's log says about its last start: did the broker keep its session, did the
/// slave need a resync round, and how many of `queued` (Deltas published while it was away)
/// did the broker deliver?
fn report(broker: &str, slave: &Node, queued: &[u64]) -> (bool, bool, usize) {
    // A resync asked for after the restart may start after the trees already match: let it end.
    wait_until_logs(
        "the resync round asked for ended",
        CONVERGE,
        &[slave],
        || {
            let log = slave.log_contents();
            let after = since_last_start(&log);
            !after.contains("resync needed") || after.contains(" complete in ")
        },
    );
    let log = slave.log_contents();
    let after = since_last_start(&log);
    if std::env::var_os("GSCLUSTER_DUMP_LOGS").is_some() {
        println!("----- {broker}: slave log -----\n{log}");
    }
    let session = after.contains("session present: true");
    let resync = after.contains("resync round");
    let delivered = delivered_seqs(after);
    let kept = queued.iter().filter(|s| delivered.contains(s)).count();
    println!(
        "measured: {broker}: after the slave's restart, session present: {session}, resync \
         round: {resync}, gap: {}, Deltas of the outage delivered by the broker: {kept} of {}",
        after.contains("gap in deltas"),
        queued.len()
    );
    (session, resync, kept)
}

/// A first edit, converged, and the slave's bootstrap resync round finished: the cluster is
/// steady before an outage, so what happens after it is the outage's doing.
fn steady(c: &mut Cluster) {
    let root = c.master_dir().to_path_buf();
    c.catalog.add_layer(&root, 0, 0, "before the outage");
    converge(c);
    for s in &c.slaves {
        wait_until_logs(
            "bootstrap resync round complete",
            CONVERGE,
            &[&s.node],
            || s.node.log_contents().contains(" complete in "),
        );
    }
}

/// `bursts` bursts of `ops` random edits each, every burst published before the next, so the
/// broker has to hold at least `bursts` Deltas for an offline slave.
fn edit_and_publish(c: &mut Cluster, bursts: usize, ops: usize, seed: u64) {
    let root = c.master_dir().to_path_buf();
    for b in 0..bursts {
        let cut = deltas_cut(&c.master);
        c.catalog.random_ops(&root, ops, seed * 1000 + b as u64);
        wait_published(c, cut);
    }
}

// ---------------------------------------------------------------------------------------------
// Mosquitto
// ---------------------------------------------------------------------------------------------

#[test]
fn mosquitto_slave_stopped_during_100_changes_catches_up_from_its_persistent_session() {
    let Some(broker) = Mosquitto::start(MosquittoOpts::default()) else {
        return;
    };
    let mut c = Cluster::start_external(&Spec::small(), 31, 1, broker.port, |_| {});
    steady(&mut c);

    let seen = subscriptions(&c.slaves[0].node);
    let before = deltas_cut(&c.master);
    c.slaves[0].node.stop();
    edit_and_publish(&mut c, 10, 10, 7);
    let outage = seqs_since(&c.master, before);
    c.slaves[0].node.restart();
    wait_for_subscriptions(&c.slaves[0].node, seen + 1);
    converge(&c);

    let (_, _, kept) = report("mosquitto", &c.slaves[0].node, &outage);
    assert_eq!(kept, outage.len(), "every Delta of the outage is delivered");
    let log = c.slaves[0].node.log_contents();
    let after = since_last_start(&log);
    assert!(
        after.contains("session present: true"),
        "Mosquitto should have kept the slave's session:\n{log}\n{}",
        broker.log_contents()
    );
    // The only resync is the bootstrap of the slave's new state dir, before the outage.
    assert!(
        !after.contains("resync") && !after.contains("gap in deltas"),
        "every Delta of the outage should come from the session:\n{log}"
    );
    assert_reloads_consistent(&c.slaves[0].gs, c.master_dir(), "slave");
}

#[test]
fn mosquitto_killed_and_restarted_from_its_persistence_while_a_slave_is_offline_converges() {
    let Some(mut broker) = Mosquitto::start(MosquittoOpts::default()) else {
        return;
    };
    let mut c = Cluster::start_external(&Spec::small(), 32, 1, broker.port, |_| {});
    steady(&mut c);

    let seen = subscriptions(&c.slaves[0].node);
    let before = deltas_cut(&c.master);
    c.slaves[0].node.stop();
    edit_and_publish(&mut c, 5, 8, 5);
    let outage = seqs_since(&c.master, before);
    // A crash: only what Mosquitto saved (after every change, autosave_on_changes) survives.
    broker.kill9();
    broker.restart();
    // The master reconnects and publishes more while the slave is still away.
    edit_and_publish(&mut c, 1, 10, 6);
    c.slaves[0].node.restart();
    wait_for_subscriptions(&c.slaves[0].node, seen + 1);
    converge(&c);
    let (session, _, kept) = report("mosquitto kill -9", &c.slaves[0].node, &outage);
    assert!(
        session && kept == outage.len(),
        "Mosquitto saved after every change, so the session and its queue should survive \
         kill -9:\n{}\n{}",
        c.slaves[0].node.log_contents(),
        broker.log_contents()
    );
    assert_reloads_consistent(&c.slaves[0].gs, c.master_dir(), "slave");
}

/// One Delta per edit: touch a layer and wait until the broker acknowledged its Delta.
fn separate_deltas(c: &mut Cluster, n: usize) {
    let root = c.master_dir().to_path_buf();
    let ids: Vec<String> = c.catalog.layers.iter().map(|l| l.id.clone()).collect();
    for i in 0..n {
        let cut = deltas_cut(&c.master);
        c.catalog.modify_layer(&root, &ids[i % ids.len()]);
        wait_published_settled(c, cut, Duration::from_millis(100));
    }
}

const SMALL_QUEUE: u32 = 5;
const OVERFLOW_DELTAS: usize = 20;

/// Mosquitto with `max_queued_messages 5` and an offline slave: 20 Deltas published, only the
/// first 5 queued, the rest dropped silently (it drops the newest, not the oldest).
fn overflowed_queue() -> Option<(Mosquitto, Cluster, usize, Vec<u64>)> {
    let broker = Mosquitto::start(MosquittoOpts {
        max_queued_messages: SMALL_QUEUE,
        ..MosquittoOpts::default()
    })?;
    let mut c = Cluster::start_external(&Spec::small(), 33, 1, broker.port, |_| {});
    steady(&mut c);
    let seen = subscriptions(&c.slaves[0].node);
    let before = deltas_cut(&c.master);
    c.slaves[0].node.stop();
    separate_deltas(&mut c, OVERFLOW_DELTAS);
    let outage = seqs_since(&c.master, before);
    if std::env::var_os("GSCLUSTER_DUMP_LOGS").is_some() {
        println!("----- mosquitto log -----\n{}", broker.log_contents());
    }
    wait_until_logs(
        "Mosquitto reports dropping the slave's messages",
        CONVERGE,
        &[],
        || {
            broker
                .log_contents()
                .contains("Outgoing messages are being dropped for client gs-slave1")
        },
    );
    Some((broker, c, seen, outage))
}

#[test]
fn mosquitto_queue_overflow_then_one_more_change_converges_through_a_gap_resync() {
    let Some((_broker, mut c, seen, outage)) = overflowed_queue() else {
        return;
    };
    c.slaves[0].node.restart();
    wait_for_subscriptions(&c.slaves[0].node, seen + 1);
    // The next Delta after the queued ones reveals the hole.
    separate_deltas(&mut c, 1);
    converge(&c);
    let (_, _, kept) = report("mosquitto overflow", &c.slaves[0].node, &outage);
    assert!(kept < outage.len(), "the queue should have overflowed");
    let log = c.slaves[0].node.log_contents();
    let after = since_last_start(&log);
    assert!(after.contains("session present: true"), "{log}");
    assert!(
        after.contains("gap in deltas") && after.contains("resync round"),
        "the dropped Deltas must be healed by a resync:\n{log}"
    );
    assert_reloads_consistent(&c.slaves[0].gs, c.master_dir(), "slave");
}

#[test]
fn mosquitto_queue_overflow_converges_without_further_changes() {
    let Some((_broker, c, seen, _)) = overflowed_queue() else {
        return;
    };
    let mut c = c;
    c.slaves[0].node.restart();
    wait_for_subscriptions(&c.slaves[0].node, seen + 1);
    converge(&c);
    let log = c.slaves[0].node.log_contents();
    assert!(since_last_start(&log).contains("resync round"), "{log}");
    assert_reloads_consistent(&c.slaves[0].gs, c.master_dir(), "slave");
}

// ---------------------------------------------------------------------------------------------
// ActiveMQ
// ---------------------------------------------------------------------------------------------

#[test]
fn activemq_slave_offline_during_100_changes_converges() {
    let Some(broker) = ActiveMq::start() else {
        return;
    };
    let mut c = Cluster::start_external(&Spec::small(), 34, 1, broker.port, |_| {});
    steady(&mut c);

    let seen = subscriptions(&c.slaves[0].node);
    let before = deltas_cut(&c.master);
    c.slaves[0].node.stop();
    edit_and_publish(&mut c, 10, 10, 8);
    let outage = seqs_since(&c.master, before);
    c.slaves[0].node.restart();
    wait_for_subscriptions(&c.slaves[0].node, seen + 1);
    converge(&c);
    let (_, _, kept) = report("activemq", &c.slaves[0].node, &outage);
    // Measured: ActiveMQ never reports a present session (so the slave also resyncs), but its
    // durable subscription does deliver everything queued.
    assert_eq!(
        kept,
        outage.len(),
        "the durable subscription keeps every Delta"
    );
    assert_reloads_consistent(&c.slaves[0].gs, c.master_dir(), "slave");
}

#[test]
fn activemq_killed_and_restarted_while_a_slave_is_offline_converges() {
    let Some(mut broker) = ActiveMq::start() else {
        return;
    };
    let mut c = Cluster::start_external(&Spec::small(), 35, 1, broker.port, |_| {});
    steady(&mut c);

    let seen = subscriptions(&c.slaves[0].node);
    let before = deltas_cut(&c.master);
    c.slaves[0].node.stop();
    edit_and_publish(&mut c, 5, 8, 9);
    let outage = seqs_since(&c.master, before);
    broker.kill9();
    broker.restart();
    edit_and_publish(&mut c, 1, 10, 10);
    c.slaves[0].node.restart();
    wait_for_subscriptions(&c.slaves[0].node, seen + 1);
    converge(&c);
    report("activemq kill -9", &c.slaves[0].node, &outage);
    assert_reloads_consistent(&c.slaves[0].gs, c.master_dir(), "slave");
}
