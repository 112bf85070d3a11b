//! `gscluster demo` (issue 18): the first thing a new administrator runs. It starts a master
//! and two slaves of this binary on loopback, makes three GeoServer-shaped changes, shows each
//! arriving on both slaves, prints the status table, and leaves nothing behind; with `--keep`
//! the cluster stays up for the user's own edits until Ctrl-C.

use crate::support::node::wait_until;
use crate::support::run::BIN;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The folder the demo says it runs in.
fn folder_of(out: &str) -> PathBuf {
    let line = (out.lines())
        .find(|l| l.starts_with("gscluster demo: a master and two slaves on loopback, in "))
        .unwrap_or_else(|| panic!("the demo names its folder:\n{out}"));
    PathBuf::from(line.rsplit(", in ").next().unwrap())
}

#[test]
fn the_demo_shows_three_changes_reach_both_slaves_and_leaves_nothing_behind() {
    let out = Command::new(BIN).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!(
        "{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    // Each change: published once, applied on each slave, a reload of each slave's GeoServer.
    for step in ["== 1/3", "== 2/3", "== 3/3"] {
        let section = stdout
            .split(step)
            .nth(1)
            .unwrap_or_else(|| panic!("{step}:\n{all}"));
        let section = section.split("\n== ").next().unwrap();
        assert!(
            section.contains("gs-master  published delta"),
            "{step}:\n{all}"
        );
        for slave in ["gs-slave1", "gs-slave2"] {
            assert!(
                section.contains(&format!("{slave}  applied delta")),
                "{step} {slave}:\n{all}"
            );
            assert!(
                section.contains(&format!("{slave}  its GeoServer reloaded")),
                "{step} {slave}:\n{all}"
            );
        }
    }
    let table = stdout
        .split("== the group's status")
        .nth(1)
        .expect("a status table");
    for node in ["gs-master", "gs-slave1", "gs-slave2"] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(node) && l.contains(" online ")),
            "{node} online:\n{all}"
        );
    }
    assert!(table.contains("no problems"), "{all}");
    assert!(stdout.contains("3 changes replicated to 2 slaves"), "{all}");
    let folder = folder_of(&stdout);
    assert!(!folder.exists(), "{} left behind", folder.display());
    assert!(
        !stdout.contains(" WARN: ") && !stdout.contains(" ERROR: "),
        "{all}"
    );
}

#[test]
fn with_keep_the_cluster_replicates_the_user_s_edits_until_ctrl_c_and_then_goes() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("my-demo");
    let mut child = Command::new(BIN)
        .args(["demo", "--keep", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (out, stdout) = (out.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut o = out.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        })
    };
    let deadline = Duration::from_secs(60);
    wait_until("the demo keeps the cluster running", deadline, || {
        out.lock().unwrap().contains("The cluster keeps running")
    });
    // The user's own edit on the master reaches the slaves.
    let style = "styles/mine.sld";
    let text = "<StyledLayerDescriptor><!-- mine --></StyledLayerDescriptor>";
    std::fs::write(dir.join("gs-master/data").join(style), text).unwrap();
    for slave in ["gs-slave1", "gs-slave2"] {
        let file = dir.join(slave).join("data").join(style);
        wait_until("the user's edit on the slaves", deadline, || {
            std::fs::read_to_string(&file).is_ok_and(|t| t == text)
        });
    }
    // Ctrl-C: SIGINT to the demo (the nodes run in their own process group).
    // SAFETY: kill(2) on the pid of the child started above, not yet reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stdout = out.lock().unwrap().clone();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("applied delta"), "{stdout}");
    assert!(
        !dir.exists(),
        "{} left behind:\n{stdout}\n{stderr}",
        dir.display()
    );
    assert!(parent.path().exists());
}

/// `gscluster demo | head -1`: standard output closes under it. It must still stop its nodes
/// and remove its folder (it once died on the broken pipe and left three nodes running).
#[test]
fn a_demo_whose_output_is_cut_short_still_cleans_up() {
    let mut child = Command::new(BIN)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped: the pipe is closed.
    let folder = folder_of(&first);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!folder.exists(), "{} left behind", folder.display());
    // Any process whose command line names the folder: a node left running.
    let needle = folder.to_string_lossy().into_owned();
    let still: Vec<String> = (std::fs::read_dir("/proc").unwrap().flatten())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect();
    assert!(still.is_empty(), "nodes left running: {still:?}");
}
