//! Edge links (issue 17): a slave behind a slow link, through the fault-injecting proxy of test
//! support, bootstraps without starting over and follows changes.

use crate::support::cluster::{start_member, Member};
use crate::support::generator::{generate, random_styles, Catalog, Spec};
use crate::support::node::{assert_converged, free_port, logs_of, wait_until_logs};
use crate::support::proxy::{Faults, Proxy};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

/// A master with its embedded broker over a small tree plus 40 style bodies of 24 KiB of
/// random letters (~600 KB compressed: several batches and parts), connected: its tree, its
/// catalog, the master and the broker's port.
fn master_of_styles(prefix: &str, seed: u64) -> (tempfile::TempDir, Catalog, Member, u16) {
    let origin = tempfile::tempdir().unwrap();
    let catalog = generate(origin.path(), &Spec::small(), seed);
    random_styles(origin.path(), prefix, 40, 24, seed);
    let port = free_port();
    let servers = vec![format!("mqtt://127.0.0.1:{port}")];
    let master = start_member("gs-master", "master", origin.path(), &servers, |c| {
        c.broker_listen = Some(format!("127.0.0.1:{port}"));
    });
    wait_until_logs("the master connected", DEADLINE, &[&master.node], || {
        master.node.log_contents().contains("connected to broker")
    });
    (origin, catalog, master, port)
}

/// An answer that takes longer than the resync's answer timeout (15 s) to cross the link, in
/// parts that keep arriving, is an answer: the round goes on instead of starting over (which
/// on a slow link never ends: every new round fetches the same batch again), and a manifest
/// on its way is not asked for twice.
#[test]
fn a_slave_behind_a_slow_link_bootstraps_without_starting_over_and_follows_changes() {
    let (origin, mut catalog, master, port) = master_of_styles("slow", 171);
    // 30 KB/s and 600 ms round trips: the batch takes ~20 s to cross.
    let proxy = Proxy::start(port);
    proxy.set(Faults {
        latency: Duration::from_millis(300),
        bandwidth: Some(30_000),
        ..Faults::default()
    });
    let empty = tempfile::tempdir().unwrap();
    let through = vec![format!("mqtt://127.0.0.1:{}", proxy.port())];
    let slave = start_member("gs-slave", "slave", empty.path(), &through, |_| {});
    let nodes = [&master.node, &slave.node];
    wait_until_logs("the bootstrap round completed", DEADLINE, &nodes, || {
        slave.node.log_contents().contains(" complete in ")
    });
    assert_converged(origin.path(), &[slave.data.path()], DEADLINE);
    let log = slave.node.log_contents();
    assert!(
        !log.contains("no answer within"),
        "the round started over:\n{}",
        logs_of(&nodes)
    );
    assert_eq!(
        log.matches("asking for manifests").count(),
        1,
        "one round:\n{log}"
    );
    let (_, down) = proxy.bytes();
    assert!(
        down > 400_000,
        "the link carried the tree ({down} bytes): the test is too small"
    );

    // And it follows changes over the same link.
    let layer = catalog.layers[0].id.clone();
    catalog.modify_layer(master.data.path(), &layer);
    assert_converged(master.data.path(), &[slave.data.path()], DEADLINE);
}

/// A link that dies in the middle of a bootstrap (a black hole: nothing delivered, the
/// connection held until the keep-alive gives up on it) costs the bootstrap nothing it had:
/// once the link is back the round asks again where it stood — the manifest is sent once,
/// every file fetched once, one round — and reconnecting meanwhile is paced, not a storm.
#[test]
fn a_bootstrap_whose_link_dies_midway_goes_on_where_it_stood() {
    let (origin, _, master, port) = master_of_styles("outage", 172);
    let proxy = Proxy::start(port);
    let slow = Faults {
        latency: Duration::from_millis(50),
        bandwidth: Some(150_000),
        ..Faults::default()
    };
    proxy.set(slow);
    let empty = tempfile::tempdir().unwrap();
    let through = vec![format!("mqtt://127.0.0.1:{}", proxy.port())];
    // A short keep-alive notices the dead link within seconds; small batches make many.
    let slave = start_member("gs-slave", "slave", empty.path(), &through, |c| {
        c.mqtt_extra.push("keep_alive_s = 5".into());
        c.resync.push("batch_kb = 64".into());
    });
    let nodes = [&master.node, &slave.node];
    wait_until_logs("the first batch arrived", DEADLINE, &nodes, || {
        slave.node.log_contents().contains(" file(s) arrived ")
    });
    proxy.set(Faults {
        blackhole: true,
        ..slow
    });
    let accepted = proxy.accepted();
    wait_until_logs("the slave saw its link die", DEADLINE, &nodes, || {
        slave.node.log_contents().contains("lost: ")
    });
    let opened = proxy.accepted() - accepted;
    proxy.set(slow);
    wait_until_logs("the bootstrap round completed", DEADLINE, &nodes, || {
        slave.node.log_contents().contains(" complete in ")
    });
    assert_converged(origin.path(), &[slave.data.path()], DEADLINE);

    let log = slave.node.log_contents();
    let all = || logs_of(&nodes);
    assert!(
        log.contains("connected again; asking again where the round stood"),
        "the round did not go on over a new connection:\n{}",
        all()
    );
    assert_eq!(
        log.matches("asking for manifests").count(),
        1,
        "one round:\n{}",
        all()
    );
    let pages = (master.node.log_contents())
        .matches("sending a page of my manifest to gs-slave")
        .count();
    assert_eq!(pages, 1, "the manifest was sent {pages} times:\n{}", all());
    let entries: usize = (log.lines())
        .find_map(|l| {
            l.split_once("manifest of ")?
                .1
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .expect("the manifest's size is logged");
    let batches: Vec<usize> = (log.lines())
        .filter(|l| l.contains(" file(s) arrived "))
        .filter_map(|l| {
            l.split_once(": batch ")?
                .1
                .split(": ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        batches.len() > 3,
        "{} batches: too few to cut",
        batches.len()
    );
    assert_eq!(
        batches.iter().sum::<usize>(),
        entries,
        "every file fetched once:\n{}",
        all()
    );
    assert!(opened <= 5, "{opened} connections while the link was dead");
}
