//! Hostile and careless input on the delta topic: nothing is written anywhere, the slave keeps
//! running, every rejection is logged, and a real change afterwards still replicates.

use crate::support::cluster::Cluster;
use crate::support::generator::Spec;
use crate::support::node::{tree, wait_until_logs};
use gscluster::delta::{self, Change, Delta, Op};
use gscluster::hlc::Version;
use gscluster::security::Auth;
use rumqttc::{Client, MqttOptions, QoS};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const KEY: [u8; 32] = [0x5a; 32];
const DEADLINE: Duration = Duration::from_secs(30);

fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("cluster.key");
    let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, hex).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn delta(origin: &str, seq: u64, path: &str, bytes: &[u8], group: &str) -> Delta {
    Delta {
        group: group.into(),
        origin: origin.into(),
        epoch: 1,
        seq,
        changes: vec![Change {
            path: path.into(),
            version: Version::new(u64::MAX / 2, origin),
            op: Op::write(bytes.to_vec()),
            merged: None,
        }],
        dangling: vec![],
    }
}

/// Send each payload with QoS 1 from a raw MQTT client and wait for the broker's PUBACKs.
fn publish_raw(port: u16, messages: &[(String, Vec<u8>)]) {
    let mut opts = MqttOptions::new("attacker", "127.0.0.1", port);
    opts.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut connection) = Client::new(opts, 64);
    for (topic, payload) in messages {
        client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
            .unwrap();
    }
    let mut acked = 0;
    for event in connection.iter() {
        if let Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_))) = event {
            acked += 1;
            if acked == messages.len() {
                break;
            }
        }
    }
    client.disconnect().ok();
}

#[test]
fn hostile_payloads_write_nothing_and_the_slave_keeps_replicating() {
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    let k = key.clone();
    let mut c = Cluster::start_with(&Spec::small(), 41, 1, move |cfg| {
        cfg.key_file = Some(k.clone());
    });
    let slave_dir = c.slaves[0].dir().to_path_buf();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), slave_dir.join("workspaces/escape")).unwrap();
    let before = tree(&slave_dir, &[]);
    let parent_before: Vec<_> = std::fs::read_dir(slave_dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();

    let signed = Auth::with_keys(KEY.to_vec(), vec![]);
    let wrong = Auth::with_keys(vec![0x11; 32], vec![]);
    let unsigned = Auth::none();
    let t = |origin: &str| format!("gscluster/test/delta/{origin}");
    let valid = delta::encode(
        &delta("evil", 1, "styles/fine.sld", b"<x/>", "test"),
        &signed,
    );
    let mut msgs: Vec<(String, Vec<u8>)> = vec![
        (t("gs-master"), b"garbage, not CBOR".to_vec()),
        (t("gs-master"), Vec::new()),
        (t("evil"), valid[0][..valid[0].len() / 2].to_vec()),
        (t("evil"), vec![0x5b; 900 * 1024]),
    ];
    let hostile = [
        (
            "wrong group",
            delta("evil", 2, "styles/a.sld", b"x", "other"),
            &signed,
        ),
        (
            "traversal",
            delta("evil", 3, "../../escaped.xml", b"x", "test"),
            &signed,
        ),
        (
            "absolute",
            delta("evil", 4, "/tmp/escaped.xml", b"x", "test"),
            &signed,
        ),
        (
            "outside filter",
            delta(
                "evil",
                5,
                "security/usergroup/default/users.xml",
                b"x",
                "test",
            ),
            &signed,
        ),
        (
            "symlink escape",
            delta("evil", 6, "workspaces/escape/workspace.xml", b"x", "test"),
            &signed,
        ),
        (
            "unsigned",
            delta("evil", 7, "styles/unsigned.sld", b"x", "test"),
            &unsigned,
        ),
        (
            "wrong key",
            delta("evil", 8, "styles/forged.sld", b"x", "test"),
            &wrong,
        ),
        (
            "spoofed origin",
            delta("gs-master", 9, "styles/spoof.sld", b"x", "test"),
            &wrong,
        ),
    ];
    for (_, d, auth) in &hostile {
        for p in delta::encode(d, auth) {
            msgs.push((t(&d.origin), p));
        }
    }
    publish_raw(c.port, &msgs);

    let slave = &c.slaves[0].node;
    // One "rejected a message" line per message; a refusal by the apply (the filter) comes
    // after the decoder's, when its group is applied, so wait for each reason too.
    let reasons = [
        "not authenticated",
        "for group \"other\"",
        "outside this node's replicate filter",
        "outside the data directory",
    ];
    wait_until_logs("every hostile message rejected", DEADLINE, &[slave], || {
        let log = slave.log_contents();
        log.matches("rejected a message").count() >= msgs.len()
            && reasons.iter().all(|why| log.contains(why))
    });
    assert!(slave.is_running(), "{}", slave.log_contents());
    assert_eq!(
        tree(&slave_dir, &[]),
        before,
        "the slave's data directory changed"
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "written through the symlink"
    );
    let parent_after: Vec<_> = std::fs::read_dir(slave_dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        parent_after
            .iter()
            .all(|n| parent_before.contains(n) || !n.to_string_lossy().contains("escaped")),
        "a file escaped the data directory"
    );
    let log = slave.log_contents();
    for why in reasons {
        assert!(log.contains(why), "no rejection saying {why:?}\n{log}");
    }

    // The node still replicates real changes.
    std::fs::remove_file(slave_dir.join("workspaces/escape")).unwrap();
    let root = c.master_dir().to_path_buf();
    c.catalog.add_layer(&root, 0, 0, "after the attack");
    c.converge(DEADLINE);
}
