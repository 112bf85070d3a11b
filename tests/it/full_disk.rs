//! A slave whose disk fills during a burst: its data directory, or its state directory, on a
//! small filesystem (a tmpfs with a size) taken full by a ballast file before the master
//! publishes. The slave must say which file it could not write and why, acknowledge nothing
//! (so nothing is lost when it is killed while full), write no half file and leave no temp file,
//! ask GeoServer for no reload of a half-applied catalog, keep running, and finish once the
//! space is back. Skipped, with the reason printed, where a tmpfs cannot be mounted (not root).

use crate::support::cluster::{self, Cluster};
use crate::support::generator::Spec;
use crate::support::node::{assert_converged, replicated_tree, temp_files, wait_until_logs, Node};
use crate::support::smallfs::SmallFs;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);
const FS_SIZE: u64 = 48 * 1024 * 1024;

fn small_fs() -> Option<SmallFs> {
    match SmallFs::mount(FS_SIZE) {
        Ok(fs) => Some(fs),
        Err(why) => {
            println!("skipped: no small filesystem for a full disk here ({why})");
            None
        }
    }
}

/// Log lines of `node` that report an apply failing for want of space, and retried.
fn full_disk_lines(node: &Node) -> Vec<String> {
    (node.log_contents().lines())
        .filter(|l| l.contains("cannot apply") && l.contains("No space left on device"))
        .map(str::to_string)
        .collect()
}

/// Every file of `now` is as it was `before` or as the master has it: none half-written.
fn no_half_file(
    now: &BTreeMap<String, [u8; 32]>,
    before: &BTreeMap<String, [u8; 32]>,
    master: &BTreeMap<String, [u8; 32]>,
) {
    for (path, hash) in now {
        assert!(
            before.get(path) == Some(hash) || master.get(path) == Some(hash),
            "{path} is neither the slave's old version nor the master's new one"
        );
    }
}

enum Full {
    Data,
    State,
}

fn burst_on_a_full_disk(which: Full, seed: u64) {
    let Some(fs) = small_fs() else {
        return;
    };
    let mut c = Cluster::start(&Spec::small(), seed, 0);
    let (data, state) = match which {
        Full::Data => (tempfile::tempdir_in(fs.path()), tempfile::tempdir()),
        Full::State => (tempfile::tempdir(), tempfile::tempdir_in(fs.path())),
    };
    let place = cluster::Placement {
        data: data.unwrap(),
        state: state.unwrap(),
        gs_host: "127.0.0.1".into(),
    };
    let mut s = cluster::start_member_in(
        "gs-slave1",
        "slave",
        c.master_dir(),
        &c.servers(),
        place,
        |_| {},
    );
    wait_until_logs("the slave bootstrapped", DEADLINE, &[&s.node], || {
        s.node.log_contents().contains(" complete in ")
    });
    let slave_dir = s.data.path().to_path_buf();
    let full_dir = match which {
        Full::Data => slave_dir.clone(),
        Full::State => s.node.config().state_dir.clone(),
    };
    let before = replicated_tree(&slave_dir);
    let reloads_before = s.gs.as_ref().unwrap().reloads().len();

    fs.fill();
    let master_dir = c.master_dir().to_path_buf();
    for i in 0..10 {
        c.catalog
            .add_layer(&master_dir, 0, 0, &format!("plein_{i}"));
    }
    c.catalog
        .modify_style_body(&master_dir, &c.catalog.styles[0].name.clone());

    // Said, naming a file on the full filesystem and why; not acknowledged; still running.
    wait_until_logs(
        "the apply failing for want of space",
        DEADLINE,
        &[&s.node],
        || !full_disk_lines(&s.node).is_empty(),
    );
    let line = full_disk_lines(&s.node).remove(0);
    assert!(line.contains(&full_dir.display().to_string()), "{line}");
    assert!(line.contains("not acknowledged"), "{line}");
    assert!(s.node.is_running(), "{}", s.node.log_contents());
    check_nothing_half_done(&s, &before, &master_dir, reloads_before, &which);

    // Killed while full: what it did not acknowledge is still queued for it.
    s.node.kill9();
    let failures = full_disk_lines(&s.node).len();
    s.node.restart();
    wait_until_logs("the retry after the restart", DEADLINE, &[&s.node], || {
        full_disk_lines(&s.node).len() > failures
    });
    assert!(s.node.is_running(), "{}", s.node.log_contents());
    check_nothing_half_done(&s, &before, &master_dir, reloads_before, &which);

    // Space back: it finishes, with one catalog GeoServer can load.
    fs.free();
    assert_converged(&master_dir, &[&slave_dir], DEADLINE);
    assert!(
        temp_files(&slave_dir).is_empty(),
        "{:?}",
        temp_files(&slave_dir)
    );
    let gs = s.gs.as_ref().unwrap();
    wait_until_logs(
        "a reload after the space came back",
        DEADLINE,
        &[&s.node],
        || gs.successful_reloads().len() > reloads_before,
    );
    for r in gs.successful_reloads() {
        assert!(r.problems.is_empty(), "a reload saw {:?}", r.problems);
    }

    // The state it kept through the failed writes is whole: a restart reads every record
    // (none torn) and finds its tree as it recorded it (nothing to resync or redo).
    // Killed, not stopped: a stop writes a fresh snapshot and would hide a torn journal.
    let log_len = s.node.log_contents().len();
    s.node.kill9();
    s.node.restart();
    wait_until_logs("the restart", DEADLINE, &[&s.node], || {
        s.node.log_contents()[log_len..].contains("connected to broker")
    });
    let after = s.node.log_contents()[log_len..].to_string();
    assert!(!after.contains("torn record"), "{after}");
    assert!(!after.contains("resync needed"), "{after}");
}

fn check_nothing_half_done(
    s: &cluster::Member,
    before: &BTreeMap<String, [u8; 32]>,
    master_dir: &Path,
    reloads_before: usize,
    which: &Full,
) {
    let now = replicated_tree(s.data.path());
    match which {
        // No journal intent could be written: no data file may be touched.
        Full::State => assert!(now == *before, "the data directory changed"),
        Full::Data => no_half_file(&now, before, &replicated_tree(master_dir)),
    }
    let temps = temp_files(s.data.path());
    assert!(temps.is_empty(), "temp files left: {temps:?}");
    let reloads = s.gs.as_ref().unwrap().reloads().len();
    assert_eq!(reloads, reloads_before, "GeoServer was asked to reload");
}

#[test]
fn a_full_data_directory_during_a_burst_acknowledges_nothing_and_finishes_once_space_is_back() {
    burst_on_a_full_disk(Full::Data, 91);
}

#[test]
fn a_full_state_directory_during_a_burst_writes_no_data_file_and_finishes_once_space_is_back() {
    burst_on_a_full_disk(Full::State, 92);
}
