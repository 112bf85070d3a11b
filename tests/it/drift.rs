//! Pure slaves are read-only: local edits of replicated files are drift, reverted by default
//! and only reported with `on_drift = "warn"`.

use crate::support::cluster::Cluster;
use crate::support::generator::Spec;
use crate::support::node::wait_until_logs;
use std::fs;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

/// Wait until the slave's initial resync has run, so later edits count as drift.
fn settled(c: &Cluster, i: usize) {
    let node = &c.slaves[i].node;
    wait_until_logs("the initial resync", DEADLINE, &[node], || {
        node.log_contents().contains("resync round") && node.log_contents().contains("complete in")
    });
}

#[test]
fn local_edits_on_a_pure_slave_are_reverted_or_only_reported() {
    let mut c = Cluster::start_with(&Spec::small(), 61, 2, |cfg| {
        if cfg.id == "gs-slave2" {
            cfg.on_drift = Some("warn".into());
        }
    });
    settled(&c, 0);
    settled(&c, 1);
    let layer = c.catalog.layers[0].layer_file();
    let style = c.catalog.styles[0].body_path();

    // Revert (the default): an edit, a deletion and a stray file all go back.
    let s1 = c.slaves[0].dir().to_path_buf();
    fs::write(s1.join(&layer), "<layer>edited on the slave</layer>").unwrap();
    fs::remove_file(s1.join(&style)).unwrap();
    fs::write(s1.join("styles/stray.sld"), "made on the slave").unwrap();
    let n1 = &c.slaves[0].node;
    wait_until_logs("the drift is reported", DEADLINE, &[n1], || {
        let log = n1.log_contents();
        log.contains(&format!("drift: {layer} was changed locally"))
            && log.contains("restoring the cluster's version")
    });
    c.converge(DEADLINE);

    // Warn: the edit stays, and a change from the master still arrives.
    let s2 = c.slaves[1].dir().to_path_buf();
    fs::write(s2.join(&layer), "<layer>edited on the warn slave</layer>").unwrap();
    {
        let n2 = &c.slaves[1].node;
        wait_until_logs("the drift is only reported", DEADLINE, &[n2], || {
            n2.log_contents().contains("left as it is")
        });
    }
    let root = c.master_dir().to_path_buf();
    let touched = c.catalog.add_style(&root, "after_drift");
    let sld = touched
        .iter()
        .find(|p| p.ends_with(".sld"))
        .unwrap()
        .clone();
    let n2 = &c.slaves[1].node;
    wait_until_logs(
        "the master's change reaches the warn slave",
        DEADLINE,
        &[n2],
        || s2.join(&sld).exists(),
    );
    assert_eq!(
        fs::read_to_string(s2.join(&layer)).unwrap(),
        "<layer>edited on the warn slave</layer>"
    );
}
