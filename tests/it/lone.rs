//! A node alone in its group (issue 18): the first node of a new cluster, or the README's
//! single-node run. It says so once, asks for manifests seldom while nobody can answer, and
//! asks at once when a node that can comes online.

use crate::support::cluster::start_member;
use crate::support::generator::{generate, Spec};
use crate::support::node::{free_port, logs_of, wait_until_logs};
use std::time::{Duration, Instant};

const ALONE_LINE: &str = "that publishes is online, so none can answer";

#[test]
fn a_node_alone_says_so_once_asks_seldom_and_asks_a_newcomer_at_once() {
    let tree = tempfile::tempdir().unwrap();
    generate(tree.path(), &Spec::small(), 181);
    let port = free_port();
    let servers = vec![format!("mqtt://127.0.0.1:{port}")];
    let started = Instant::now();
    let lone = start_member("gs-lone", "both", tree.path(), &servers, |c| {
        c.broker_listen = Some(format!("127.0.0.1:{port}"));
    });
    wait_until_logs(
        "the node connected",
        Duration::from_secs(30),
        &[&lone.node],
        || lone.node.log_contents().contains("connected to broker"),
    );
    // Alone for a minute: a length of time is what this test is about.
    std::thread::sleep(Duration::from_secs(60).saturating_sub(started.elapsed()));
    let log = lone.node.log_contents();
    assert_eq!(log.matches(ALONE_LINE).count(), 1, "said once:\n{log}");
    let asks = log.matches("asking for manifests").count() + log.matches("asking again").count();
    assert!(
        (1..=3).contains(&asks),
        "{asks} manifest asks in a minute alone:\n{log}"
    );

    // A master joins: the lone node asks it at once and completes its round.
    let empty = tempfile::tempdir().unwrap();
    let joined = Instant::now();
    let master = start_member("gs-newcomer", "master", empty.path(), &servers, |_| {});
    let nodes = [&lone.node, &master.node];
    wait_until_logs(
        "the newcomer was asked",
        Duration::from_secs(10),
        &nodes,
        || {
            lone.node
                .log_contents()
                .contains("gs-newcomer is online; asking it now")
        },
    );
    wait_until_logs("a round completed", Duration::from_secs(15), &nodes, || {
        lone.node.log_contents().contains(" complete in ")
    });
    let took = joined.elapsed();
    assert!(
        lone.node.log_contents().matches(ALONE_LINE).count() == 1,
        "{}",
        logs_of(&nodes)
    );
    eprintln!(
        "the lone node completed a round {} ms after the newcomer started",
        took.as_millis()
    );
}

/// A slave up before its master (the broker elsewhere): the master's first status comes after
/// the slave's manifest ask, which it was not there to hear — the slave asks it at once rather
/// than at its next re-ask.
#[test]
fn a_master_that_comes_after_the_slave_s_ask_is_asked_at_once() {
    let tree = tempfile::tempdir().unwrap();
    generate(tree.path(), &Spec::small(), 182);
    let port = free_port();
    let servers = vec![format!("mqtt://127.0.0.1:{port}")];
    let empty = tempfile::tempdir().unwrap();
    let slave = start_member("gs-early", "slave", empty.path(), &servers, |c| {
        c.broker_listen = Some(format!("127.0.0.1:{port}"));
    });
    wait_until_logs(
        "the slave asked",
        Duration::from_secs(30),
        &[&slave.node],
        || slave.node.log_contents().contains("asking for manifests"),
    );
    let master = start_member("gs-late", "master", tree.path(), &servers, |_| {});
    let nodes = [&slave.node, &master.node];
    wait_until_logs(
        "the late master was asked",
        Duration::from_secs(30),
        &nodes,
        || {
            slave
                .node
                .log_contents()
                .contains("gs-late is online; asking it now")
        },
    );
    crate::support::node::assert_converged(
        tree.path(),
        &[slave.data.path()],
        Duration::from_secs(30),
    );
    assert!(
        !slave
            .node
            .log_contents()
            .contains("no manifest yet; asking again"),
        "{}",
        logs_of(&nodes)
    );
}
