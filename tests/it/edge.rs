//! Edge links (issue 17): a slave behind a slow link, through the fault-injecting proxy of test
//! support, bootstraps without starting over and follows changes.

use crate::support::cluster::start_member;
use crate::support::generator::{generate, random_styles, Spec};
use crate::support::node::{assert_converged, free_port, logs_of, wait_until_logs};
use crate::support::proxy::{Faults, Proxy};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(120);

/// An answer that takes longer than the resync's answer timeout (15 s) to cross the link, in
/// parts that keep arriving, is an answer: the round goes on instead of starting over (which
/// on a slow link never ends: every new round fetches the same batch again), and a manifest
/// on its way is not asked for twice.
#[test]
fn a_slave_behind_a_slow_link_bootstraps_without_starting_over_and_follows_changes() {
    let origin = tempfile::tempdir().unwrap();
    let mut catalog = generate(origin.path(), &Spec::small(), 171);
    // 40 style bodies of 24 KiB of random letters: ~600 KB compressed, several parts.
    random_styles(origin.path(), "slow", 40, 24, 171);
    let port = free_port();
    let servers = vec![format!("mqtt://127.0.0.1:{port}")];
    let master = start_member("gs-master", "master", origin.path(), &servers, |c| {
        c.broker_listen = Some(format!("127.0.0.1:{port}"));
    });
    wait_until_logs("the master connected", DEADLINE, &[&master.node], || {
        master.node.log_contents().contains("connected to broker")
    });
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
