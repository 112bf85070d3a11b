//! TLS and logins on the embedded broker, with a throwaway CA made by openssl in the test.

use crate::support::cluster::copy_tree;
use crate::support::generator::{generate, Spec};
use crate::support::geoserver::StandInGeoServer;
use crate::support::node::{assert_converged, free_port, wait_until_logs, Node, NodeConfig};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a broker certificate for localhost / 127.0.0.1 signed by it; returns (ca, cert, key).
fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (ca_key, ca) = (format!("{name}-ca.key"), format!("{name}-ca.pem"));
    let (key, csr, cert) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            "/CN=gscluster test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    (dir.join(ca), dir.join(cert), dir.join(key))
}

fn have_openssl() -> bool {
    Command::new("openssl").arg("version").output().is_ok()
}

#[test]
fn nodes_replicate_over_tls_with_logins_and_refuse_a_broker_they_cannot_verify() {
    if !have_openssl() {
        println!("skipped: openssl not installed");
        return;
    }
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_ca(pki.path(), "broker");
    let (other_ca, _, _) = make_ca(pki.path(), "other");
    let users = pki.path().join("users");
    std::fs::write(&users, "gs-master:m-secret\ngs-slave:s-secret\n").unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
    let q = |p: &Path| format!("{:?}", p.to_string_lossy());

    let master_data = tempfile::tempdir().unwrap();
    let mut catalog = generate(master_data.path(), &Spec::small(), 51);
    let slave_data = tempfile::tempdir().unwrap();
    copy_tree(master_data.path(), slave_data.path());
    let states: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let port = free_port();
    let servers = vec![format!("mqtts://localhost:{port}")];

    let mut m = NodeConfig::new(
        "gs-master",
        "master",
        master_data.path(),
        states[0].path(),
        servers.clone(),
    );
    m.broker_listen = Some(format!("127.0.0.1:{port}"));
    m.broker_extra = vec![
        format!("tls_cert_file = {}", q(&cert)),
        format!("tls_key_file = {}", q(&key)),
        format!("users_file = {}", q(&users)),
    ];
    m.mqtt_extra = vec![
        format!("ca_file = {}", q(&ca)),
        "username = \"gs-master\"".into(),
        "password = \"m-secret\"".into(),
    ];
    let master = Node::start(m);

    let gs = StandInGeoServer::start(slave_data.path(), "admin", "geoserver");
    let mut s = NodeConfig::new(
        "gs-slave",
        "slave",
        slave_data.path(),
        states[1].path(),
        servers.clone(),
    );
    s.geoserver_url = Some(gs.url());
    s.mqtt_extra = vec![
        format!("ca_file = {}", q(&ca)),
        "username = \"gs-slave\"".into(),
        "password = \"s-secret\"".into(),
    ];
    let slave = Node::start(s);
    wait_until_logs(
        "slave subscribed over TLS",
        DEADLINE,
        &[&slave, &master],
        || slave.log_contents().contains("subscribed to"),
    );
    catalog.add_layer(master_data.path(), 0, 0, "over tls");
    assert_converged(master_data.path(), &[slave_data.path()], DEADLINE);

    // A node that does not trust the broker's CA never connects, and says why, and keeps trying.
    let stranger_data = tempfile::tempdir().unwrap();
    let mut x = NodeConfig::new(
        "gs-stranger",
        "slave",
        stranger_data.path(),
        states[2].path(),
        servers,
    );
    x.mqtt_extra = vec![
        format!("ca_file = {}", q(&other_ca)),
        "username = \"gs-slave\"".into(),
        "password = \"s-secret\"".into(),
    ];
    let stranger = Node::start(x);
    wait_until_logs(
        "the certificate failure is logged twice",
        DEADLINE,
        &[&stranger],
        || stranger.log_contents().matches("unreachable").count() >= 2,
    );
    let log = stranger.log_contents();
    assert!(log.to_lowercase().contains("certificate"), "{log}");
    assert!(
        !log.contains("subscribed to") && stranger.is_running(),
        "{log}"
    );
    for node in [&slave, &master] {
        assert!(
            !node.log_contents().contains("secret"),
            "a password was logged"
        );
    }
}

#[test]
fn wrong_password_is_refused_by_the_embedded_broker() {
    let pki = tempfile::tempdir().unwrap();
    let users = pki.path().join("users");
    std::fs::write(&users, "gs-master:m-secret\n").unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
    let data = tempfile::tempdir().unwrap();
    generate(data.path(), &Spec::small(), 52);
    let (st1, st2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = free_port();
    let servers = vec![format!("mqtt://127.0.0.1:{port}")];
    let mut m = NodeConfig::new(
        "gs-master",
        "master",
        data.path(),
        st1.path(),
        servers.clone(),
    );
    m.broker_listen = Some(format!("127.0.0.1:{port}"));
    m.broker_extra = vec![format!("users_file = {:?}", users.to_string_lossy())];
    m.mqtt_extra = vec![
        "username = \"gs-master\"".into(),
        "password = \"m-secret\"".into(),
    ];
    let master = Node::start(m);
    let other = tempfile::tempdir().unwrap();
    let mut s = NodeConfig::new("gs-slave", "slave", other.path(), st2.path(), servers);
    s.mqtt_extra = vec![
        "username = \"gs-master\"".into(),
        "password = \"wrong\"".into(),
    ];
    let slave = Node::start(s);
    wait_until_logs(
        "master connected with its login",
        DEADLINE,
        &[&master],
        || master.log_contents().contains("connected to broker"),
    );
    wait_until_logs("the refused login is retried", DEADLINE, &[&slave], || {
        slave
            .log_contents()
            .matches("may have refused [mqtt] username/password")
            .count()
            >= 2
    });
    assert!(!slave.log_contents().contains("connected to broker"));
    assert!(
        !slave.log_contents().contains("wrong"),
        "the password was logged"
    );
}

/// A client certificate signed by `ca`; returns (cert, key).
fn make_client_cert(dir: &Path, ca_name: &str, name: &str) -> (PathBuf, PathBuf) {
    let (key, csr, cert) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let (ca, ca_key) = (format!("{ca_name}-ca.pem"), format!("{ca_name}-ca.key"));
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
    (dir.join(cert), dir.join(key))
}

#[test]
fn client_certificates_are_presented_to_a_broker_that_requires_them() {
    use crate::support::brokers::{Mosquitto, MosquittoOpts};
    use crate::support::cluster::Cluster;
    if !have_openssl() {
        println!("skipped: openssl not installed");
        return;
    }
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_ca(pki.path(), "broker");
    let (node_cert, node_key) = make_client_cert(pki.path(), "broker", "node");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let opts = MosquittoOpts {
        extra: vec![
            format!("cafile {}", s(&ca)),
            format!("certfile {}", s(&cert)),
            format!("keyfile {}", s(&key)),
            "require_certificate true".into(),
        ],
        ..Default::default()
    };
    let Some(broker) = Mosquitto::start(opts) else {
        return;
    };
    let port = broker.port;
    let q = |p: &Path| format!("{:?}", p.to_string_lossy());
    let tls_lines = vec![
        format!("ca_file = {}", q(&ca)),
        format!("client_cert_file = {}", q(&node_cert)),
        format!("client_key_file = {}", q(&node_key)),
    ];
    let lines = tls_lines.clone();
    let mut c = Cluster::start_external(&Spec::small(), 53, 1, port, move |cfg| {
        cfg.mqtt_servers = vec![format!("mqtts://localhost:{port}")];
        cfg.mqtt_extra = lines.clone();
    });
    let root = c.master_dir().to_path_buf();
    c.catalog.add_layer(&root, 0, 0, "mutual tls");
    c.converge(DEADLINE);

    // Without a client certificate the broker hangs up, and the node says so and keeps trying.
    let (data, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut x = NodeConfig::new(
        "gs-nocert",
        "slave",
        data.path(),
        state.path(),
        vec![format!("mqtts://localhost:{port}")],
    );
    x.mqtt_extra = vec![tls_lines[0].clone()];
    let nocert = Node::start(x);
    wait_until_logs(
        "the refused handshake is retried",
        DEADLINE,
        &[&nocert],
        || nocert.log_contents().matches("unreachable").count() >= 2,
    );
    assert!(!nocert.log_contents().contains("subscribed to"));
}
