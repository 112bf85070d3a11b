//! Resync: convergence that does not depend on the broker remembering anything.

use crate::support::brokers::{Mosquitto, MosquittoOpts};
use crate::support::cluster::{
    start_member, subscriptions, wait_for_subscriptions, Cluster, Member,
};
use crate::support::generator::{generate, Catalog, Spec};
use crate::support::node::{
    assert_converged, logs_of, replicated_tree, wait_until, wait_until_logs, Node,
};
use crate::support::proxy::{Faults, Proxy};
use crate::support::run::run;
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
    // Written without indexing batch by batch, the tree is indexed once, at the end of the
    // round and before the reload: every XML file it wrote.
    let log = c.slaves[0].node.log_contents();
    let indexed: usize = (log.lines())
        .find(|l| l.contains("indexed and 0 forgotten after the bootstrap"))
        .and_then(|l| {
            l.split("catalog index: ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no index line after the bootstrap:\n{log}"));
    let xml = (replicated_tree(c.slaves[0].dir()).keys())
        .filter(|p| p.ends_with(".xml"))
        .count();
    assert_eq!(indexed, xml);
    assert!(
        reloads[0].authorized && reloads[0].problems.is_empty(),
        "{:?}",
        reloads[0]
    );
}

/// A manifest comes in pages (here of 5 entries: a small tree takes dozens), each planned
/// against the files within its range only: files the slave lacks are fetched, identical ones
/// adopted, a file deleted upstream removed, and replicated files nobody knows forgotten,
/// wherever they fall between pages.
#[test]
fn a_slave_bootstraps_from_a_manifest_that_comes_in_many_pages() {
    let mut c = Cluster::start_with(&Spec::small(), 23, 0, |cfg| cfg.page_items = Some(5));
    let root = c.master_dir().to_path_buf();
    let layer = c.catalog.layers[0].id.clone();
    let gone = c.catalog.delete_layer(&root, &layer);
    assert!(!gone.is_empty());
    c.catalog.add_layer(&root, 0, 0, "after the copy");
    // The master's manifest holds the deletion (tombstones) before the slave asks.
    wait_until_logs("the edits published", CONVERGE, &[&c.master], || {
        let seq = last_seq(&c.master);
        seq > 0
            && (c.master.log_contents()).contains(&format!("seq {seq} acknowledged by the broker"))
    });
    let deleted_upstream = gone[0].clone();
    c.add_slave_prepared("gs-new", |dir| {
        // Deleted upstream, still here (the copy predates the deletion).
        let file = dir.join(&deleted_upstream);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "<old/>").unwrap();
        // Replicated paths nobody knows, first, last and between pages.
        for stray in [
            "layergroups/stray.xml",
            "styles/stray.sld",
            "workspaces/zz-stray/workspace.xml",
        ] {
            let p = dir.join(stray);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "<stray/>").unwrap();
        }
    });
    c.converge(CONVERGE);
    let log = c.slaves[0].node.log_contents();
    let done = (log.lines())
        .find(|l| l.contains(" complete in "))
        .expect("the bootstrap round");
    let pages: usize = (done.rsplit(", ").next())
        .and_then(|t| t.strip_suffix(" manifest pages"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no page count in: {done}"));
    let files = replicated_tree(c.master_dir()).len();
    assert!(pages > files / 5, "{pages} pages for {files} files: {done}");
    // The three strays, and the file deleted upstream when the master's detector had not
    // recorded its deletion yet (otherwise its tombstone removes it).
    let unknown: usize = (done.split(" unknown upstream").next())
        .and_then(|t| t.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no unknown count in: {done}"));
    assert!((3..=4).contains(&unknown), "{done}");
    let master_log = c.master.log_contents();
    assert!(master_log.contains("more follow"), "{master_log}");
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

/// The last "change: seq N:" a publishing node logged.
fn last_seq(node: &Node) -> u64 {
    let log = node.log_contents();
    (log.lines().rev())
        .find_map(|l| {
            let rest = &l[l.find("change: seq ")? + 12..];
            rest[..rest.find(':')?].parse().ok()
        })
        .unwrap_or(0)
}

/// Mosquitto keeping at most `n` messages queued for a client that is away (Deltas and statuses
/// alike): it drops the newest past that, so a slave that was down skips Deltas. `None` where
/// Mosquitto is not installed.
fn mosquitto_dropping_past(n: u32) -> Option<Mosquitto> {
    Mosquitto::start(MosquittoOpts {
        max_queued_messages: n,
        ..MosquittoOpts::default()
    })
}

/// Modify a layer on `member` and wait until the broker acknowledged the Delta it makes.
fn publish_one(member: &Member, catalog: &mut Catalog, layer: &str) {
    publish(member, || {
        catalog.modify_layer(member.data.path(), layer);
    });
}

/// Make one edit on `member` and wait until the broker acknowledged the Delta it makes.
fn publish(member: &Member, edit: impl FnOnce()) {
    let before = last_seq(&member.node);
    edit();
    wait_until_logs("a Delta cut", CONVERGE, &[&member.node], || {
        last_seq(&member.node) > before
    });
    let seq = last_seq(&member.node);
    wait_until_logs("the Delta acknowledged", CONVERGE, &[&member.node], || {
        (member.node.log_contents()).contains(&format!("seq {seq} acknowledged by the broker"))
    });
}

/// Found by issue 14's chaos rounds: a slave that skipped Deltas of the `both` node resynced
/// from the pure master, which was quicker to answer but applies nobody's Deltas and so holds
/// none of them; the round "completed" and the slave lacked them for good. A resync has to be
/// answered by a node that holds what was skipped — here the slow `both` node itself.
#[test]
fn a_slave_that_skipped_deltas_resyncs_from_a_node_that_holds_them_not_the_first_to_answer() {
    let Some(broker) = mosquitto_dropping_past(4) else {
        return;
    };
    let origin = tempfile::tempdir().unwrap();
    let mut catalog = generate(origin.path(), &Spec::small(), 62);
    let layers: Vec<String> = catalog.layers.iter().map(|l| l.id.clone()).collect();
    let servers = vec![broker.url()];
    let master = start_member("gs-master", "master", origin.path(), &servers, |_| {});
    let proxy = Proxy::start(broker.port);
    let through_proxy = vec![format!("mqtt://127.0.0.1:{}", proxy.port())];
    let both = start_member("gs-both", "both", origin.path(), &through_proxy, |_| {});
    let mut slave = start_member("gs-slave", "slave", origin.path(), &servers, |_| {});
    for m in [&both, &slave] {
        wait_for_subscriptions(&m.node, 1);
        wait_until_logs("bootstrap round complete", CONVERGE, &[&m.node], || {
            m.node.log_contents().contains(" complete in ")
        });
    }
    let seen = subscriptions(&slave.node);
    slave.node.stop();
    for layer in layers.iter().cycle().take(10) {
        publish_one(&both, &mut catalog, layer);
    }
    // From now on the both node answers a resync ask well after the pure master.
    proxy.set(Faults {
        latency: Duration::from_millis(600),
        ..Faults::default()
    });
    slave.node.restart();
    wait_for_subscriptions(&slave.node, seen + 1);
    assert_converged(both.data.path(), &[slave.data.path()], CONVERGE);
    let nodes = [&master.node, &both.node, &slave.node];
    let since_start = || {
        let log = slave.node.log_contents();
        log[log.rfind("starting:").expect("a start line")..].to_string()
    };
    wait_until_logs("the round from gs-both complete", CONVERGE, &nodes, || {
        since_start().contains("from gs-both complete in")
    });
    assert!(
        // "seq N" or "seqs N–M": which Deltas the slave skipped depends on timing (the both
        // node's start-up Delta may go out before the slave's first subscription).
        since_start().contains("gs-master does not hold seq"),
        "the pure master's manifest must be passed over:\n{}",
        logs_of(&nodes)
    );
    // And its status says nothing is missing any more (while something was, it said which).
    let config = slave.node.config_path();
    wait_until("the slave's status lacks nothing", CONVERGE, || {
        let out = run(
            &["status", "--json", "-c", config.to_str().unwrap()],
            "warn",
        )
        .stdout;
        let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        (report["nodes"].as_array().into_iter().flatten())
            .find(|n| n["node"] == "gs-slave")
            .is_some_and(|n| {
                n["applied"]["gs-both"]["seq"].as_u64() > Some(0)
                    && n["applied"]["gs-both"].get("missing").is_none()
            })
    });
}

/// Found by issue 14's chaos rounds (embedded broker, seed 1796600516209250): a slave whose
/// broker lost the Delta that took layers out of a group applied the later deletion of one of
/// those layers, could not resync (nobody answered), and once `reference_wait_ms` was over it
/// reloaded GeoServer with the group listing a deleted layer. A node that knows it lacks Deltas
/// now holds the reload until a resync brings them, however long.
#[test]
fn a_slave_that_skipped_deltas_does_not_reload_a_half_applied_catalog_while_it_cannot_resync() {
    let Some(broker) = mosquitto_dropping_past(4) else {
        return;
    };
    let origin = tempfile::tempdir().unwrap();
    let mut catalog = generate(origin.path(), &Spec::small(), 64);
    let proxy = Proxy::start(broker.port);
    let through_proxy = vec![format!("mqtt://127.0.0.1:{}", proxy.port())];
    let master = start_member("gs-master", "master", origin.path(), &through_proxy, |_| {});
    let servers = vec![broker.url()];
    let mut slave = start_member("gs-slave", "slave", origin.path(), &servers, |cfg| {
        cfg.geoserver_extra = vec!["reference_wait_ms = 1000".into()];
    });
    wait_for_subscriptions(&slave.node, 1);
    // Every node, for the waits' failure messages (re-borrowed: the slave restarts).
    macro_rules! nodes {
        () => {
            [&master.node, &slave.node]
        };
    }
    wait_until_logs("bootstrap round complete", CONVERGE, &nodes!(), || {
        slave.node.log_contents().contains(" complete in ")
    });
    let (root, there) = (master.data.path(), slave.data.path());

    // 1. A group over a few layers reaches the slave.
    publish(&master, || {
        catalog.add_group(root, "groupe_trou");
    });
    let group = catalog.groups.last().unwrap().clone();
    wait_until_logs("the group on the slave", CONVERGE, &nodes!(), || {
        there.join(group.file()).is_file()
    });

    // 2. While the slave is down, edits fill its queue at the broker (four messages: Deltas and
    //    the master's statuses); what follows, the deletion of the group among it, is dropped.
    let seen = subscriptions(&slave.node);
    slave.node.stop();
    let others: Vec<String> = (catalog.layers.iter())
        .filter(|l| !group.layers.contains(&l.id))
        .map(|l| l.id.clone())
        .collect();
    for layer in others.iter().cycle().take(6) {
        publish_one(&master, &mut catalog, layer);
    }
    publish(&master, || {
        catalog.delete_group(root, &group.id);
    });

    // 3. The master's way back from the broker is held (half-open: it still publishes, it hears
    //    nothing, so it answers no resync). The slave comes back with what was queued, misses
    //    the rest, and then the master deletes a layer of the group: the slave applies that on
    //    top of the hole, and the resync it asks for goes unanswered.
    proxy.set(Faults {
        half_open: true,
        ..Faults::default()
    });
    slave.node.restart();
    wait_for_subscriptions(&slave.node, seen + 1);
    let layer = catalog.layer(&group.layers[0]).clone();
    catalog.delete_layer(root, &layer.id);
    wait_until_logs(
        "the deletion applied on the slave",
        CONVERGE,
        &nodes!(),
        || !there.join(layer.layer_file()).exists(),
    );
    assert!(
        there.join(group.file()).exists(),
        "the group's deletion was not dropped by the broker; the test's premise failed\n{}",
        logs_of(&nodes!())
    );

    // 4. The group now lists a deleted layer on the slave, which knows it lacks the Delta that
    //    deleted the group. Well past reference_wait_ms (the resync re-asked twice, 3 s apart),
    //    GeoServer has not been reloaded with that catalog.
    let after_gap = |log: &str| {
        let at = log.rfind("gap in deltas from gs-master");
        at.map_or(String::new(), |at| log[at..].to_string())
    };
    wait_until_logs("the resync asked again twice", CONVERGE, &nodes!(), || {
        after_gap(&slave.node.log_contents())
            .matches("asking again")
            .count()
            >= 2
    });
    let gs = slave.gs.as_ref().unwrap();
    // Every reload GeoServer saw so far had a whole catalog.
    let assert_whole = || {
        let bad: Vec<_> = (gs.successful_reloads().into_iter())
            .filter(|r| !r.problems.is_empty())
            .map(|r| r.problems)
            .collect();
        assert!(
            bad.is_empty(),
            "a reload saw {bad:?}\n{}",
            logs_of(&nodes!())
        );
    };
    assert_whole();
    let log = after_gap(&slave.node.log_contents());
    assert!(
        log.contains("reload held back until a resync completes"),
        "{}",
        logs_of(&nodes!())
    );

    // 5. The master hears again: the resync brings the group's deletion, and the reload that
    //    follows sees a whole catalog.
    let healed = std::time::Instant::now();
    proxy.heal();
    assert_converged(root, &[there], CONVERGE);
    wait_until_logs("a reload after the resync", CONVERGE, &nodes!(), || {
        gs.successful_reloads().iter().any(|r| r.at > healed)
    });
    assert_whole();
}
