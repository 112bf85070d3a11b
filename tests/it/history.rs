//! The history (issue 16, docs/history.md): every node keeps the changes it applies and
//! publishes; `gscluster log` and `show` read them, on a slave too; `gscluster rollback` on a
//! master puts the tree back to a point and every node converges to it with one reload; what
//! would break the catalog is refused with nothing published; retention prunes, and a restart
//! or a crash loses nothing that was recorded.

use crate::support::cluster::start_member;
use crate::support::node::{converge, replicated_tree, wait_until, wait_until_logs, Node};
use crate::support::run::run;
use crate::support::site::Site;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// `gscluster ARGS -c CONFIG`: (exit code, stdout, stderr).
fn cmd(node: &Node, args: &[&str]) -> (i32, String, String) {
    let config = node.config_path();
    let mut all = args.to_vec();
    all.extend(["-c", config.to_str().unwrap()]);
    let r = run(&all, "warn");
    (r.code, r.stdout, r.stderr)
}

/// `log --json` (and `extra` arguments) as parsed lines; panics unless it succeeds.
fn log_json(node: &Node, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["log", "--json", "--limit", "0"];
    args.extend(extra);
    let (code, out, err) = cmd(node, &args);
    assert_eq!(code, 0, "log failed: {out}{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The newest change id in a node's history (0: none).
fn newest_id(node: &Node) -> u64 {
    log_json(node, &[])
        .first()
        .map_or(0, |l| l["id"].as_u64().unwrap())
}

/// The tree without global.xml's `<updateSequence>`: a rollback restores the settings, but the
/// counter only grows (docs/history.md).
fn comparable(dir: &Path) -> BTreeMap<String, [u8; 32]> {
    let mut t = replicated_tree(dir);
    let global = std::fs::read_to_string(dir.join("global.xml")).unwrap();
    let start = global.find("<updateSequence>").unwrap();
    let end = global.find("</updateSequence>").unwrap();
    let without = format!("{}{}", &global[..start], &global[end..]);
    t.insert("global.xml".into(), sha2_of(without.as_bytes()));
    t
}

fn sha2_of(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

fn wait_converged(site: &Site) {
    let want = || replicated_tree(site.master_data.path());
    let have = || vec![("slave".to_string(), replicated_tree(site.slave_data.path()))];
    converge(
        "the slave holds the master's tree",
        DEADLINE,
        want,
        have,
        || site.logs(),
    );
}

/// Wait until the node's history holds a change newer than `id`; returns the newest.
fn wait_recorded(node: &Node, id: u64) -> u64 {
    let mut newest = id;
    wait_until_logs(
        "a change recorded in the history",
        DEADLINE,
        &[node],
        || {
            newest = newest_id(node);
            newest > id
        },
    );
    newest
}

#[test]
fn a_slave_logs_the_edits_of_two_publishers_with_their_origins_and_shows_their_diff() {
    let mut site = Site::start(161, None);
    let servers = site.master.config().mqtt_servers.clone();
    let both = start_member("c-both", "both", site.master_data.path(), &servers, |_| {});
    wait_until_logs("c-both connected", DEADLINE, &[&both.node], || {
        both.node.log_contents().contains("connected to broker")
    });
    let layer = site.catalog.layers[0].id.clone();
    let on_master = site.catalog.modify_layer(site.master_data.path(), &layer);
    wait_converged(&site);
    // The second publisher's edit: a new style on c-both's tree (equal to the master's now).
    let before = newest_id(&site.slave);
    let on_both = site.catalog.add_style(both.data.path(), "from_c");
    let style = on_both
        .iter()
        .find(|p| p.ends_with(".xml") && p.starts_with("styles/"));
    let style = style.expect("a style file").clone();
    wait_until("the slave holds c-both's style", DEADLINE, || {
        site.slave_data.path().join(&style).is_file() && newest_id(&site.slave) > before
    });

    let lines = log_json(&site.slave, &[]);
    // Only Deltas: the slave's bootstrap is not in its history (the tree it made is its base).
    let origin_of = |path: &str| -> Vec<(u64, String)> {
        (lines.iter())
            .filter(|l| l["path"] == path && l["kind"] == "delta")
            .map(|l| {
                (
                    l["id"].as_u64().unwrap(),
                    l["origin"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let master_file = on_master
        .iter()
        .find(|p| p.ends_with(".xml") && *p != "global.xml");
    let master_file = master_file.unwrap();
    let m = origin_of(master_file);
    assert_eq!(
        m.len(),
        1,
        "{master_file} once in the slave's log: {lines:?}"
    );
    assert_eq!(m[0].1, "b-master");
    let c = origin_of(&style);
    assert_eq!(c.len(), 1, "{style}: {lines:?}");
    assert_eq!(c[0].1, "c-both");
    assert!(c[0].0 > m[0].0, "c-both's edit is newer: {lines:?}");
    let first = &lines[0];
    assert_eq!(first["origin"], "c-both", "newest first: {lines:?}");
    for key in ["id", "time", "origin", "op", "path"] {
        assert!(!first[key].is_null(), "{key} in {first}");
    }
    let style_line = lines.iter().find(|l| l["path"] == style.as_str()).unwrap();
    assert_eq!(style_line["op"], "create");
    // `--node` keeps one origin, a PATH one path; the text form names the object.
    assert!(log_json(&site.slave, &["--node", "b-master"])
        .iter()
        .all(|l| l["origin"] == "b-master"));
    assert_eq!(log_json(&site.slave, &[&style]).len(), 1);
    let (code, text, err) = cmd(&site.slave, &["log", &style]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("c-both") && text.contains("(style from_c)"),
        "{text}"
    );

    // `show --diff` of the master's edit: the changed lines, old and new.
    let id = m[0].0.to_string();
    let (code, shown, err) = cmd(&site.slave, &["show", &id, "--diff"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        shown.contains("Delta ") && shown.contains("of b-master"),
        "{shown}"
    );
    assert!(shown.contains(&format!("--- a/{master_file}")), "{shown}");
    let changed = |mark: char| {
        shown.lines().any(|l| {
            l.starts_with(mark)
                && !l.starts_with("---")
                && !l.starts_with("+++")
                && l.contains("<title>")
        })
    };
    assert!(
        changed('-') && changed('+'),
        "the title's old and new line:\n{shown}"
    );
    let (code, _, err) = cmd(&site.slave, &["show", "999999"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("change 999999 is not in this node's history"),
        "{err}"
    );
}

#[test]
fn a_deleted_workspace_comes_back_on_every_node_with_one_reload_each() {
    let mut site = Site::start(162, None);
    let layer = site.catalog.layers[0].id.clone();
    site.catalog.modify_layer(site.master_data.path(), &layer);
    wait_converged(&site);
    let point = wait_recorded(&site.master, 0);
    let snapshot = comparable(site.master_data.path());
    let ws = site.catalog.workspaces[0].name.clone();
    site.catalog.delete_workspace(site.master_data.path(), &ws);
    wait_converged(&site);
    assert!(!site.slave_data.path().join("workspaces").join(&ws).exists());
    wait_recorded(&site.master, point);

    // A dry run says what would come back and writes nothing.
    let before = site.reloads();
    let to = point.to_string();
    let (code, out, err) = cmd(&site.master, &["rollback", "--to", &to, "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("would roll back to") && out.contains("dry run"),
        "{out}"
    );
    assert!(
        out.contains(&format!("create  workspaces/{ws}/workspace.xml")),
        "{out}"
    );
    assert!(!site
        .master_data
        .path()
        .join("workspaces")
        .join(&ws)
        .exists());

    let (code, out, err) = cmd(&site.master, &["rollback", "--to", &to]);
    assert_eq!(code, 0, "{out}{err}");
    let said = format!("rolled back b-master's tree to what it was after change {point}");
    assert!(out.contains(&said), "{out}");
    let want = || snapshot.clone();
    let have = || {
        vec![
            ("master".to_string(), comparable(site.master_data.path())),
            ("slave".to_string(), comparable(site.slave_data.path())),
        ]
    };
    converge(
        "both nodes hold the tree before the delete",
        DEADLINE,
        want,
        have,
        || site.logs(),
    );
    site.one_reload_each_since(before, "the rollback");
    // The rollback is itself a change in the history, on both nodes.
    let newest = &log_json(&site.master, &["--limit", "1"])[0];
    assert_eq!(newest["kind"], "rollback", "{newest}");
    wait_until("the slave's history has the rollback", DEADLINE, || {
        log_json(&site.slave, &[&format!("workspaces/{ws}/workspace.xml")])
            .first()
            .is_some_and(|l| l["op"] == "create" && l["origin"] == "b-master")
    });
}

#[test]
fn a_rollback_of_one_path_leaves_the_rest_and_one_that_breaks_references_is_refused() {
    let mut site = Site::start(163, None);
    let (a, b) = (
        site.catalog.layers[0].id.clone(),
        site.catalog.layers[1].id.clone(),
    );
    let point = newest_id(&site.master);
    let a_files = site.catalog.modify_layer(site.master_data.path(), &a);
    let a_file = a_files.iter().find(|p| *p != "global.xml").unwrap().clone();
    let a_before = wait_recorded(&site.master, point);
    let b_files = site.catalog.modify_layer(site.master_data.path(), &b);
    let b_file = b_files.iter().find(|p| *p != "global.xml").unwrap().clone();
    wait_recorded(&site.master, a_before);
    wait_converged(&site);
    let b_now = std::fs::read(site.master_data.path().join(&b_file)).unwrap();

    // Only layer a's folder goes back; layer b keeps its edit.
    let folder = a_file.rsplit_once('/').unwrap().0.to_string();
    let (code, out, err) = cmd(
        &site.master,
        &["rollback", "--to", &point.to_string(), &folder],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&a_file) && !out.contains(&b_file), "{out}");
    wait_converged(&site);
    let shown = cmd(&site.master, &["log", "--json", "--limit", "0", &a_file]).1;
    assert!(shown.lines().count() >= 2, "{shown}");
    assert_eq!(
        std::fs::read(site.master_data.path().join(&b_file)).unwrap(),
        b_now
    );
    assert_eq!(
        std::fs::read(site.slave_data.path().join(&b_file)).unwrap(),
        b_now
    );

    // A new layer; rolling back its resource alone would leave its layer.xml dangling.
    let before_add = newest_id(&site.master);
    let added = site
        .catalog
        .add_layer(site.master_data.path(), 0, 0, "roll_me");
    wait_recorded(&site.master, before_add);
    wait_converged(&site);
    let resource = (added.iter())
        .find(|p| p.ends_with("featuretype.xml") || p.ends_with("coverage.xml"))
        .expect("the new layer's resource")
        .clone();
    let layer_xml = format!("{}/layer.xml", resource.rsplit_once('/').unwrap().0);
    let tree = replicated_tree(site.master_data.path());
    let published = newest_id(&site.master);
    let rollbacks = site.master.log_contents().matches("rollback to").count();
    let to = before_add.to_string();
    let (code, out, err) = cmd(&site.master, &["rollback", "--to", &to, &resource]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("refused") && err.contains("would not resolve"),
        "{err}"
    );
    assert!(err.contains(&layer_xml), "the referrer is named: {err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(replicated_tree(site.master_data.path()), tree);
    assert_eq!(
        newest_id(&site.master),
        published,
        "nothing recorded or published"
    );
    let now = site.master.log_contents().matches("rollback to").count();
    assert_eq!(now, rollbacks, "no rollback made\n{}", site.logs());
}

#[test]
fn retention_prunes_a_restart_keeps_the_history_and_crashes_lose_nothing_recorded() {
    let mut site = Site::start_with(164, None, |c| c.history = vec!["max_changes = 3".into()]);
    let layer = site.catalog.layers[0].id.clone();
    let mut newest = newest_id(&site.master);
    for _ in 0..5 {
        site.catalog.modify_layer(site.master_data.path(), &layer);
        newest = wait_recorded(&site.master, newest);
    }
    wait_converged(&site);
    let all = log_json(&site.master, &[]);
    let ids: Vec<u64> = all.iter().map(|l| l["id"].as_u64().unwrap()).collect();
    assert!(
        ids.len() >= 10 && newest >= 5,
        "5 edits of 2+ files: {ids:?}"
    );

    // Pruning at start, crashed before its commit: nothing is lost; the next start prunes.
    site.master.stop();
    site.master.set_crash_at(Some("history-pruned:1".into()));
    site.master.restart();
    wait_until("the master crashes while pruning", DEADLINE, || {
        !site.master.is_running()
    });
    site.master.set_crash_at(None);
    let (code, out, err) = cmd(&site.master, &["log", "--json", "--limit", "0"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().count(),
        all.len(),
        "the crash lost or pruned nothing"
    );
    site.master.restart();
    wait_until_logs("the master pruned", DEADLINE, &[&site.master], || {
        site.master.log_contents().contains("history: pruned")
    });
    let kept: Vec<u64> = log_json(&site.master, &[])
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    let groups: std::collections::BTreeSet<u64> = kept.iter().copied().collect();
    assert_eq!(
        groups.into_iter().collect::<Vec<_>>(),
        [newest - 2, newest - 1, newest],
        "the 3 newest changes"
    );
    let (code, shown, err) = cmd(&site.master, &["show", &newest.to_string(), "--diff"]);
    assert_eq!(code, 0, "{err}");
    assert!(shown.contains("+++ b/"), "{shown}");
    let (code, _, err) = cmd(&site.master, &["rollback", "--to", "1", "--dry-run"]);
    assert_eq!(code, 1);
    let floor = newest - 3;
    assert!(
        err.contains(&format!("the oldest point kept is after change {floor}")),
        "{err}"
    );

    // A slave killed after writing a Delta's files, before recording them: the redelivered
    // Delta is recorded once.
    let slave_before = log_json(&site.slave, &[]);
    site.slave.stop();
    let (code, out, _) = cmd(&site.slave, &["log", "--json", "--limit", "0"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().count(),
        slave_before.len(),
        "kept across a stop"
    );
    site.slave.set_crash_at(Some("delta-written:1".into()));
    site.slave.restart();
    wait_until_logs("the slave reconnected", DEADLINE, &[&site.slave], || {
        site.slave
            .log_contents()
            .matches("connected to broker")
            .count()
            >= 2
    });
    let edited = site.catalog.modify_layer(site.master_data.path(), &layer);
    let file = edited.iter().find(|p| *p != "global.xml").unwrap().clone();
    let mut seq = None;
    wait_until("the master published the edit", DEADLINE, || {
        let lines = log_json(&site.master, &[&file]);
        seq = lines
            .first()
            .and_then(|l| l["seq"].as_u64())
            .filter(|&s| s > newest_seq(&slave_before));
        seq.is_some()
    });
    let seq = seq.unwrap();
    wait_until("the slave crashes mid-apply", DEADLINE, || {
        !site.slave.is_running()
    });
    site.slave.set_crash_at(None);
    site.slave.restart();
    wait_converged(&site);
    let with_seq = || {
        (log_json(&site.slave, &[&file]).iter())
            .filter(|l| l["seq"].as_u64() == Some(seq))
            .count()
    };
    wait_until_logs(
        "the slave recorded the edit",
        DEADLINE,
        &[&site.slave],
        || with_seq() > 0,
    );
    assert_eq!(with_seq(), 1, "Delta {seq} recorded once");
}

#[test]
fn a_history_turned_off_is_dropped_and_begins_anew_when_turned_on_again() {
    let mut site = Site::start(165, None);
    let layer = site.catalog.layers[0].id.clone();
    let mut newest = newest_id(&site.master);
    site.catalog.modify_layer(site.master_data.path(), &layer);
    newest = wait_recorded(&site.master, newest);
    assert!(newest > 0);

    // Off: the daemon drops what was kept (a stretch unrecorded would make every older point
    // restore the wrong content), and the edits made meanwhile are not recorded.
    site.master.stop();
    site.master
        .reconfigure(|c| c.history = vec!["enabled = false".into()]);
    site.master.restart();
    wait_until_logs(
        "the master dropped its history",
        DEADLINE,
        &[&site.master],
        || {
            site.master
                .log_contents()
                .contains("history: [history] enabled = false: dropped the history kept so far")
        },
    );
    let edited = site.catalog.modify_layer(site.master_data.path(), &layer);
    wait_converged(&site);
    site.master.stop();
    let (code, out, err) = cmd(&site.master, &["log", "--json", "--limit", "0"]);
    assert_eq!((code, out.as_str()), (0, ""), "nothing kept: {err}");

    // On again: it begins with the tree as it is, and only what follows is logged.
    site.master.reconfigure(|c| c.history.clear());
    site.master.restart();
    wait_until_logs(
        "the master began its history",
        DEADLINE,
        &[&site.master],
        || {
            site.master
                .log_contents()
                .matches("history: began with")
                .count()
                >= 2
        },
    );
    let file = edited.iter().find(|p| *p != "global.xml").unwrap().clone();
    let before = std::fs::read(site.master_data.path().join(&file)).unwrap();
    site.catalog.modify_layer(site.master_data.path(), &layer);
    let mut lines = Vec::new();
    wait_until_logs("the new edit is logged", DEADLINE, &[&site.master], || {
        lines = log_json(&site.master, &[&file]);
        !lines.is_empty()
    });
    assert_eq!(lines.len(), 1, "only the new edit of {file}: {lines:?}");
    // Rolled back to where it began: the file as the unrecorded edit left it, from the base.
    let (code, out, err) = cmd(&site.master, &["rollback", "--to", "0", &file, "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&file), "{out}");
    let (code, _, err) = cmd(&site.master, &["rollback", "--to", "0", &file]);
    assert_eq!(code, 0, "{err}");
    wait_until("the file is back", DEADLINE, || {
        std::fs::read(site.master_data.path().join(&file)).is_ok_and(|b| b == before)
    });
}

/// The highest Delta sequence number among log lines.
fn newest_seq(lines: &[serde_json::Value]) -> u64 {
    lines
        .iter()
        .filter_map(|l| l["seq"].as_u64())
        .max()
        .unwrap_or(0)
}
