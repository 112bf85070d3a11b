//! A write a slave cannot make is logged naming the operation and the file, retried, and
//! applied once the obstacle is gone; the Delta is not acknowledged meanwhile, and the daemon
//! keeps running. (Tests run as root, which ignores permission bits, so the obstacle is a
//! regular file where the Delta needs a folder.)

use crate::support::cluster::Cluster;
use crate::support::generator::Spec;
use crate::support::node::wait_until_logs;
use std::fs;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn an_apply_that_cannot_write_names_the_file_and_succeeds_once_it_can() {
    // `warn`: the obstacle, a local file on a pure slave, is reported as drift, not reverted.
    let c = Cluster::start_with(&Spec::small(), 67, 1, |cfg| {
        if cfg.role == "slave" {
            cfg.on_drift = Some("warn".into());
        }
    });
    let slave = &c.slaves[0].node;
    wait_until_logs("the initial resync", DEADLINE, &[slave], || {
        let log = slave.log_contents();
        log.contains("resync round") && log.contains("complete in")
    });
    let slave_dir = c.slaves[0].dir().to_path_buf();
    fs::write(
        slave_dir.join("styles/blocked"),
        "a file where a folder goes",
    )
    .unwrap();

    fs::create_dir_all(c.master_dir().join("styles/blocked")).unwrap();
    let body = "<StyledLayerDescriptor>blocked</StyledLayerDescriptor>";
    fs::write(c.master_dir().join("styles/blocked/icon.sld"), body).unwrap();

    let target = slave_dir.join("styles/blocked/icon.sld");
    let named = format!("write {}: ", target.display());
    wait_until_logs(
        "the failed apply, naming the file",
        DEADLINE,
        &[slave],
        || {
            slave
                .log_contents()
                .lines()
                .any(|l| l.contains("cannot apply delta") && l.contains(&named))
        },
    );
    let line = (slave.log_contents().lines())
        .find(|l| l.contains(&named))
        .unwrap()
        .to_string();
    assert!(line.contains("Not a directory"), "{line}");
    assert!(line.contains("not acknowledged"), "{line}");
    assert!(slave.is_running(), "{}", slave.log_contents());

    // The obstacle goes; the retry writes the file.
    fs::remove_file(slave_dir.join("styles/blocked")).unwrap();
    wait_until_logs("the retried apply", DEADLINE, &[slave], || {
        fs::read_to_string(&target).is_ok_and(|t| t == body)
    });
    c.converge(DEADLINE);
}
