//! Crash safety: a process killed at any point of publishing or applying recovers to the
//! invariants — nothing lost, no torn state, no half-written file, and convergence.
//!
//! Crash points (src/crashpoint.rs) make the process abort at an exact step; `kill -9` during a
//! burst covers the instants in between.

use crate::support::cluster::{subscriptions, wait_for_subscriptions, Cluster};
use crate::support::generator::Spec;
use crate::support::node::{wait_until_logs, Node};
use std::path::Path;
use std::time::{Duration, Instant};

const CONVERGE: Duration = Duration::from_secs(60);

/// Make single edits on the master until `node` has crashed (at most `limit` edits).
fn edit_until_crashed(c: &mut Cluster, who: &str, limit: usize) {
    let root = c.master_dir().to_path_buf();
    for i in 0..limit {
        let ids: Vec<String> = c.catalog.layers.iter().map(|l| l.id.clone()).collect();
        c.catalog.modify_layer(&root, &ids[i % ids.len()]);
        let node: &Node = if who == "master" {
            &c.master
        } else {
            &c.slaves[0].node
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if !node.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("{who} never reached its crash point\n{}", c.logs());
}

/// gscluster's temporary files (`.gscluster-*.tmp`) in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    crate::support::node::tree(dir, &[])
        .into_keys()
        .filter(|path| path.rsplit('/').next().unwrap().starts_with(".gscluster-"))
        .collect()
}

/// No temporary file stays in the data directory: the ones an interrupted run left are removed
/// at start-up, and a write in progress finishes (so the wait is bounded).
fn no_temp_files_left(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = temp_files(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "temporary files left in the data directory: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn master_crashing_at_every_step_of_publishing_recovers_and_converges() {
    let mut c = Cluster::start(&Spec::small(), 31, 1);
    for point in [
        "outbox-written",
        "delta-committed",
        "puback-received",
        "journal-half",
    ] {
        for n in [1, 2] {
            c.master.set_crash_at(Some(format!("{point}:{n}")));
            c.master.restart();
            wait_until_logs("master up", CONVERGE, &[&c.master], || {
                c.master
                    .log_contents()
                    .matches("connected to broker")
                    .count()
                    > 0
            });
            let seen = subscriptions(&c.slaves[0].node);
            edit_until_crashed(&mut c, "master", 6);
            assert!(
                c.master
                    .log_contents()
                    .contains(&format!("crash point {point} reached")),
                "{point}:{n}: the master died of something else\n{}",
                c.master.log_contents()
            );
            // Edits go on while the master is down.
            let root = c.master_dir().to_path_buf();
            c.catalog
                .add_layer(&root, 0, 0, &format!("while down {point} {n}"));
            let crashed_log_len = c.master.log_contents().len();
            c.master.set_crash_at(None);
            c.master.restart();
            if point == "outbox-written" {
                // The Delta in the outbox is adopted, not detected and published again.
                wait_until_logs("outbox adopted", CONVERGE, &[&c.master], || {
                    c.master.log_contents()[crashed_log_len..].contains("recovered seq")
                });
            }
            // The embedded broker died with the master: the slave reconnects and resyncs.
            wait_for_subscriptions(&c.slaves[0].node, seen + 1);
            c.converge(CONVERGE);
            no_temp_files_left(c.slaves[0].dir());
        }
    }
}

#[test]
fn slave_crashing_at_every_step_of_applying_recovers_and_converges() {
    let mut c = Cluster::start(&Spec::small(), 32, 1);
    for point in [
        "file-written",
        "delta-written",
        "delta-recorded",
        "journal-half",
    ] {
        for n in [1, 3] {
            let seen = subscriptions(&c.slaves[0].node);
            c.slaves[0].node.set_crash_at(Some(format!("{point}:{n}")));
            c.slaves[0].node.restart();
            wait_for_subscriptions(&c.slaves[0].node, seen + 1);
            edit_until_crashed(&mut c, "slave", 8);
            let log = c.slaves[0].node.log_contents();
            assert!(
                log.contains(&format!("crash point {point} reached")),
                "{point}:{n}: the slave died of something else\n{log}"
            );
            // What the crash left half done: temporary files, and files written but not
            // recorded. Neither may be mistaken for a local edit (drift) after the restart.
            let leftovers = temp_files(c.slaves[0].dir());
            let seen = subscriptions(&c.slaves[0].node);
            let crashed_log_len = log.len();
            c.slaves[0].node.set_crash_at(None);
            c.slaves[0].node.restart();
            wait_for_subscriptions(&c.slaves[0].node, seen + 1);
            let still_there: Vec<&String> = (leftovers.iter())
                .filter(|p| c.slaves[0].dir().join(p).exists())
                .collect();
            assert!(
                still_there.is_empty(),
                "{point}:{n}: start-up left the crashed run's temporary files: {still_there:?}"
            );
            c.converge(CONVERGE);
            no_temp_files_left(c.slaves[0].dir());
            let after = c.slaves[0].node.log_contents()[crashed_log_len..].to_string();
            assert!(
                !after.contains("drift:"),
                "{point}:{n}: the slave took its own interrupted apply for a local edit\n{after}"
            );
        }
    }
}

#[test]
fn slave_killed_mid_burst_of_200_changes_converges_after_restart() {
    let mut c = Cluster::start(&Spec::small(), 33, 1);
    let root = c.master_dir().to_path_buf();
    for round in 0..4 {
        c.catalog.random_ops(&root, 50, 100 + round);
        if round == 1 {
            c.slaves[0].node.kill9();
        }
    }
    let seen = subscriptions(&c.slaves[0].node);
    c.slaves[0].node.restart();
    wait_for_subscriptions(&c.slaves[0].node, seen + 1);
    c.converge(CONVERGE);
    no_temp_files_left(c.slaves[0].dir());
}

#[test]
fn master_killed_mid_burst_with_edits_going_on_while_it_is_down_converges() {
    let mut c = Cluster::start(&Spec::small(), 34, 1);
    let root = c.master_dir().to_path_buf();
    c.catalog.random_ops(&root, 30, 200);
    c.master.kill9();
    c.catalog.random_ops(&root, 30, 201);
    let seen = subscriptions(&c.slaves[0].node);
    c.master.restart();
    c.catalog.random_ops(&root, 30, 202);
    wait_for_subscriptions(&c.slaves[0].node, seen + 1);
    c.converge(CONVERGE);
}
