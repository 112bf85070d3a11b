//! `[geoserver] apply = "per-object"`: a change REST can apply exactly goes to its endpoint and
//! GeoServer does not reload; what it cannot (a new layer) still makes one reload; a REST
//! rewrite that says something else than the master (another id) falls back to a reload. Every
//! data directory stays byte-identical, and the stand-in's memory ends equal to its disk.

use crate::support::cluster::Cluster;
use crate::support::generator::Spec;
use crate::support::geoserver::assert_reloads_consistent;
use crate::support::node::{wait_until_logs, Node};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);
const APPLIED: &str = "through GeoServer's REST API";

fn nodes(c: &Cluster) -> Vec<&Node> {
    vec![&c.master, &c.slaves[0].node]
}

/// Wait until the slave has the master's tree and has told its GeoServer all of it: `rest`
/// more "applied … through GeoServer's REST API" lines, or `reloads` more reloads.
fn settle(c: &Cluster, rest_lines: usize, reloads: usize) {
    c.converge(DEADLINE);
    let s = &c.slaves[0];
    wait_until_logs("GeoServer told of the change", DEADLINE, &nodes(c), || {
        s.node.log_contents().matches(APPLIED).count() >= rest_lines
            && s.gs.successful_reloads().len() >= reloads
            && s.gs.serving()
    });
}

#[test]
fn per_object_changes_go_through_rest_and_what_rest_cannot_keep_reloads() {
    let mut c = Cluster::start_with(&Spec::small(), 101, 1, |cfg| {
        if cfg.role == "slave" {
            cfg.geoserver_extra = vec!["apply = \"per-object\"".into()];
        }
    });
    let root = c.master_dir().to_path_buf();
    c.converge(DEADLINE);
    let s = &c.slaves[0];
    // What the slave's start wrote (the master's start-up Delta over its copy of the tree,
    // when it comes before the resync round adopts the copy) is taken in by a reload: a
    // change made before that reload would be coalesced into it (seen in CI).
    wait_until_logs("the slave's start settled", DEADLINE, &nodes(&c), || {
        let log = s.node.log_contents();
        let wrote = log.lines().any(|l| {
            (l.contains("applied delta") && !l.contains(": 0 of "))
                || (l.contains(" complete in ") && !l.contains("(0 written)"))
        });
        log.contains(" complete in ")
            && (!wrote || !s.gs.successful_reloads().is_empty())
            && s.gs.serving()
    });
    let reloads = s.gs.successful_reloads().len();
    assert_eq!(s.gs.memory_matches_disk(), Ok(()));

    // 1. A modified layer (its resource and layer files, and global.xml): PUTs, no reload.
    let layer = c.catalog.layers[0].clone();
    c.catalog.modify_layer(&root, &layer.id);
    settle(&c, 1, reloads);
    let s = &c.slaves[0];
    let calls = s.gs.rest_calls();
    let ft = format!("PUT /rest/workspaces/{}/", layer.workspace);
    assert!(
        calls.iter().any(|c| c.starts_with(&ft)
            && c.contains("/featuretypes/")
            && c.ends_with("?recalculate=none")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&format!(
            "PUT /rest/layers/{}:{}",
            layer.workspace, layer.name
        )),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"PUT /rest/settings".to_string()),
        "{calls:?}"
    );
    assert_eq!(
        s.gs.successful_reloads().len(),
        reloads,
        "no reload for a modified layer\n{}",
        s.node.log_contents()
    );

    // 2. A new store and a new style: POSTs with the master's ids, no reload.
    let before = s.gs.rest_calls().len();
    c.catalog.add_store(&root, 0);
    settle(&c, 2, reloads);
    c.catalog.add_style(&root, "par_objet");
    settle(&c, 3, reloads);
    let s = &c.slaves[0];
    let calls = s.gs.rest_calls()[before..].to_vec();
    let ws0 = &c.catalog.workspaces[0].name;
    assert!(
        calls.contains(&format!("POST /rest/workspaces/{ws0}/datastores")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"POST /rest/styles".to_string()),
        "{calls:?}"
    );
    assert_eq!(
        s.gs.successful_reloads().len(),
        reloads,
        "{}",
        s.node.log_contents()
    );
    assert_eq!(
        s.gs.memory_matches_disk(),
        Ok(()),
        "memory holds the master's ids"
    );

    // 3. A new layer: no REST call keeps its id, so exactly one reload.
    c.catalog.add_layer(&root, 0, 0, "nouvelle_couche");
    settle(&c, 3, reloads + 1);
    let s = &c.slaves[0];
    assert_eq!(s.gs.successful_reloads().len(), reloads + 1);
    assert!(
        s.node
            .log_contents()
            .contains("a new layer (no REST call keeps a layer's id)"),
        "{}",
        s.node.log_contents()
    );

    // 4. A GeoServer whose POST gives the style another id: the node sees it in the rewrite
    //    and reloads, and the data directory keeps the master's bytes.
    s.gs.set_rest_new_ids(true);
    c.catalog.add_style(&root, "autre_id");
    settle(&c, 3, reloads + 2);
    let s = &c.slaves[0];
    let log = s.node.log_contents();
    assert!(
        log.contains("a reload applies the changes instead of REST calls: styles/autre_id.xml: GeoServer wrote"),
        "{log}"
    );
    assert_eq!(s.gs.successful_reloads().len(), reloads + 2, "{log}");
    assert_eq!(
        s.gs.memory_matches_disk(),
        Ok(()),
        "the reload read the master's ids"
    );
    // Every reload saw a consistent catalog; nothing GeoServer rewrote is left behind.
    assert_reloads_consistent(&s.gs, c.master_dir(), "per-object slave");
    c.converge(DEADLINE);
    // The status counts the changes applied per object.
    let status = crate::support::run::run(
        &[
            "status",
            "--json",
            "-c",
            c.slaves[0].node.config_path().to_str().unwrap(),
        ],
        "warn",
    );
    let report: serde_json::Value = serde_json::from_str(&status.stdout).expect(&status.stderr);
    let slave = (report["nodes"].as_array().unwrap().iter())
        .find(|n| n["role"] == "slave")
        .unwrap()
        .clone();
    assert!(
        slave["reload"]["per_object"].as_u64().unwrap() >= 3,
        "{slave}"
    );
}

#[test]
fn a_convergence_reload_comes_at_its_time_of_day_with_no_change() {
    // Ten seconds from now (the cluster starts in one or two), in the machine's local time as the node reads it.
    let out = std::process::Command::new("date")
        .args(["+%H:%M:%S", "-d", "+10 seconds"])
        .output()
        .unwrap();
    let at = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let line = format!("convergence_reload = \"{at}\"");
    let c = Cluster::start_with(&Spec::small(), 102, 1, move |cfg| {
        if cfg.role == "slave" {
            cfg.geoserver_extra = vec!["apply = \"per-object\"".into(), line.clone()];
        }
    });
    c.converge(DEADLINE);
    let s = &c.slaves[0];
    let before = s.gs.successful_reloads().len();
    wait_until_logs("the convergence reload", DEADLINE, &nodes(&c), || {
        s.gs.successful_reloads().len() > before
    });
    assert!(
        s.node.log_contents().contains("convergence reload"),
        "{}",
        s.node.log_contents()
    );
    assert_eq!(s.gs.memory_matches_disk(), Ok(()));
}
