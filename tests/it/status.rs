//! `gscluster status` against a live three-node cluster (a master with the embedded broker and
//! two slaves): every field, a slave held back shows its lag, a stopped node shows offline
//! within the keep-alive, different keystores are reported, and the exit status follows.

use crate::support::cluster::Cluster;
use crate::support::generator::Spec;
use crate::support::node::wait_until;
use crate::support::run::run;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// Run `gscluster status` with `args`: (exit code, stdout).
fn status(config: &Path, args: &[&str]) -> (i32, String) {
    let config = config.to_str().expect("UTF-8 path");
    let r = run(&[&["status", "-c", config], args].concat(), "info");
    (r.code, r.stdout)
}

fn json(config: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out) = status(config, &all);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    (code, v)
}

fn node<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == id)
        .unwrap_or_else(|| panic!("{id} not in {report}"))
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

#[test]
fn status_shows_every_node_lag_offline_and_keystores() {
    let mut c = Cluster::start_with(&Spec::small(), 61, 2, |cfg| {
        cfg.mqtt_extra = vec!["keep_alive_s = 5".into()];
    });
    let config = c.slaves[0].node.config_path();
    // Bootstrapped by a resync, with no Delta applied since: the statuses say so at once (the
    // resync's positions), not at their 30 s refresh.
    wait_until(
        "no lag after the bootstrap",
        Duration::from_secs(10),
        || {
            let (_, r) = json(&config, &[]);
            r["nodes"].as_array().is_some_and(|n| n.len() == 3)
                && ["gs-slave1", "gs-slave2"]
                    .iter()
                    .all(|s| node(&r, s)["applied"]["gs-master"]["lag_deltas"] == 0)
        },
    );
    // Keystores: the master and the first slave share one, the second has its own.
    for (dir, key) in [
        (c.master_data.path(), "A"),
        (c.slaves[0].dir(), "A"),
        (c.slaves[1].dir(), "B"),
    ] {
        std::fs::create_dir_all(dir.join("security")).unwrap();
        std::fs::write(
            dir.join("security/geoserver.jceks"),
            format!("keystore {key}"),
        )
        .unwrap();
    }
    // A change, so that every node publishes a fresh status (with the keystore digest).
    std::fs::write(c.master_data.path().join("styles/status_0.sld"), "<sld/>").unwrap();
    c.converge(DEADLINE);

    let mut report = Value::Null;
    wait_until("three nodes online with keystores", DEADLINE, || {
        report = json(&config, &[]).1;
        report["nodes"].as_array().is_some_and(|n| {
            n.len() == 3
                && n.iter()
                    .all(|n| n["online"] == true && n["keystore"].is_string())
        })
    });
    let started = Instant::now();
    let (code, report) = json(&config, &[]);
    println!(
        "measured: gscluster status on a 3-node cluster took {} ms",
        started.elapsed().as_millis()
    );
    for id in ["gs-master", "gs-slave1", "gs-slave2"] {
        let n = node(&report, id);
        for field in [
            "node",
            "online",
            "role",
            "version",
            "status_at_unix_ms",
            "epoch",
            "published",
            "published_at_unix_ms",
            "outbox",
            "synced",
            "applied",
            "reload",
            "last_error",
            "last_error_at_unix_ms",
            "keystore",
            "keystore_matches",
            "drift_events",
            "lagging",
        ] {
            assert!(n.get(field).is_some(), "{id} lacks {field}: {n}");
        }
    }
    assert_eq!(node(&report, "gs-master")["role"], "master");
    assert!(node(&report, "gs-master")["published"].as_u64().unwrap() >= 1);
    assert_eq!(
        node(&report, "gs-slave1")["applied"]["gs-master"]["lag_deltas"],
        0
    );
    assert!(node(&report, "gs-slave1")["reload"]["ok"].as_u64().unwrap() >= 1);
    assert_eq!(node(&report, "gs-slave1")["keystore_matches"], false);
    let problems = report["problems"].to_string();
    assert!(problems.contains("geoserver.jceks differ"), "{problems}");
    assert_eq!(code, 1, "different keystores are a problem");
    // The table for a person says the same.
    let (_, table) = status(&config, &[]);
    assert!(
        table.contains("gs-slave2") && table.contains("DIFFERS"),
        "{table}"
    );

    // Same keystore everywhere: no problem, exit 0.
    std::fs::write(
        c.slaves[1].dir().join("security/geoserver.jceks"),
        "keystore A",
    )
    .unwrap();
    std::fs::write(c.master_data.path().join("styles/status_1.sld"), "<sld/>").unwrap();
    c.converge(DEADLINE);
    wait_until("exit 0 once the keystores agree", DEADLINE, || {
        status(&config, &[]).0 == 0
    });

    // Hold the first slave back (SIGSTOP; its last status stays retained) while the master
    // publishes 5 Deltas.
    let pid = c.slaves[0].node.pid().unwrap();
    signal(pid, libc::SIGSTOP);
    for k in 0..5 {
        std::fs::write(
            c.master_data.path().join(format!("styles/held_{k}.sld")),
            format!("<sld>{k}</sld>"),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(80));
    }
    let mut report = Value::Null;
    wait_until(
        "the held-back slave lags by 5",
        Duration::from_secs(5),
        || {
            report = json(&config, &["--max-lag", "2"]).1;
            node(&report, "gs-slave1")["applied"]["gs-master"]["lag_deltas"]
                .as_u64()
                .is_some_and(|l| l >= 5)
        },
    );
    let (code, report) = json(&config, &["--max-lag", "2"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(node(&report, "gs-slave1")["lagging"], true);
    assert_eq!(
        node(&report, "gs-slave2")["applied"]["gs-master"]["lag_deltas"],
        0
    );
    assert!(
        report["problems"].to_string().contains("gs-slave1 is"),
        "{report}"
    );
    signal(pid, libc::SIGCONT);
    wait_until("the slave caught up", DEADLINE, || {
        let (code, r) = json(&config, &[]);
        code == 0 && node(&r, "gs-slave1")["applied"]["gs-master"]["lag_deltas"] == 0
    });

    // Stop the second slave hard: offline within the keep-alive (5 s; the broker waits 1.5×).
    c.slaves[1].node.kill9();
    let killed = Instant::now();
    wait_until("the stopped slave offline", Duration::from_secs(15), || {
        let (_, r) = json(&config, &[]);
        node(&r, "gs-slave2")["online"] == false
    });
    println!(
        "measured: the killed slave showed offline {} ms after the kill (keep-alive 5 s)",
        killed.elapsed().as_millis()
    );
    let (code, report) = json(&config, &[]);
    assert_eq!(code, 1);
    assert!(
        report["problems"]
            .to_string()
            .contains("gs-slave2 is offline"),
        "{report}"
    );
}
