//! Resync: convergence that does not depend on the broker remembering anything.

use crate::support::cluster::{subscriptions, wait_for_subscriptions, Cluster};
use crate::support::generator::Spec;
use crate::support::node::wait_until_logs;
use std::path::Path;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(60);

fn empty(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }
}

#[test]
fn new_empty_slave_bootstraps_the_whole_replicated_tree() {
    let mut c = Cluster::start(&Spec::small(), 21, 0);
    c.add_slave_prepared("gs-new", empty);
    // Node-local content never comes over: the comparison skips it on the master, and the
    // slave must not have it.
    c.converge(CONVERGE);
    assert!(!c.slaves[0].dir().join("logs").exists());
    assert!(!c.slaves[0].dir().join("security").exists());
    wait_until_logs(
        "one reload after the bootstrap",
        CONVERGE,
        &[&c.slaves[0].node],
        || !c.slaves[0].gs.successful_reloads().is_empty(),
    );
    let reloads = c.slaves[0].gs.reloads();
    assert_eq!(reloads.len(), 1, "one reload for one bootstrap");
    assert!(
        reloads[0].authorized && reloads[0].problems.is_empty(),
        "{:?}",
        reloads[0]
    );
}

#[test]
fn master_with_embedded_broker_restarted_while_a_slave_is_offline_still_converges() {
    let mut c = Cluster::start(&Spec::small(), 22, 1);
    let root = c.master_dir().to_path_buf();
    c.catalog.add_layer(&root, 0, 0, "before");
    c.converge(CONVERGE);

    let seen = subscriptions(&c.slaves[0].node);
    c.slaves[0].node.stop();
    c.catalog.random_ops(&root, 40, 5);
    wait_until_logs("master published the edits", CONVERGE, &[&c.master], || {
        let log = c.master.log_contents();
        log.matches("acknowledged by the broker").count() >= log.matches("change(s) in").count()
    });
    // The broker's queue for the offline slave dies with the master's process.
    c.master.restart();
    c.catalog.random_ops(&root, 10, 6);
    c.slaves[0].node.restart();
    wait_for_subscriptions(&c.slaves[0].node, seen + 1);
    c.converge(CONVERGE);
    let log = c.slaves[0].node.log_contents();
    assert!(log.contains("resync round"), "{log}");
}
