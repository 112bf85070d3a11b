//! The `airgap` section: `gscluster export` of the bootstrap tree (10,000 layers in the full
//! run), then `gscluster import` of that bundle on another site — a master
//! with its own embedded broker and stand-in GeoServer, and a slave — whose data directories
//! start empty. Figures: export time and bundle size; import time with the daemon running
//! (command start → its answer, the files written, published and the master's GeoServer
//! reloaded); the site's slave converged; and the same import with no daemon running.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::support::generator::{generate, Spec};
use super::support::geoserver::StandInGeoServer;
use super::support::node::{free_port, replicated_tree, wait_until, Node, NodeConfig};
use super::{configure, layers, settle_reload, wait_converged, Opts, Report, PRODUCT_QUIET_MS};

/// Run the binary under test; its wall time. Panics with its output when it fails.
fn timed(binary: &Path, args: &[&str]) -> (Duration, String) {
    let t0 = Instant::now();
    let out = Command::new(binary)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run gscluster");
    let took = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gscluster {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, stdout)
}

/// The config file of a master that runs no daemon here (export, or import alone).
fn config_file(dir: &Path, id: &str, data: &Path, state: &Path) -> std::path::PathBuf {
    let cfg = NodeConfig::new(id, "master", data, state, vec!["mqtt://127.0.0.1:1".into()]);
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(&path, cfg.to_toml()).unwrap();
    path
}

pub fn airgap_figures(opts: &Opts, report: &mut Report) {
    let spec: &Spec = opts.bootstraps.last().expect("a bootstrap tree");
    let n = layers(spec);
    let binary = opts.binary.clone();
    let tmp = tempfile::tempdir().unwrap();

    // Site A: the generated tree; export reads the data directory, its daemon may run or not.
    let a_data = tempfile::tempdir().unwrap();
    let a_state = tempfile::tempdir().unwrap();
    generate(a_data.path(), spec, 61);
    let want = replicated_tree(a_data.path());
    eprintln!(
        "== air gap: export of {n} layers ({} files), import on another site",
        want.len()
    );
    let a_config = config_file(tmp.path(), "site-a", a_data.path(), a_state.path());
    let bundle = tmp.path().join("a.bundle");
    let (took, said) = timed(
        &binary,
        &[
            "export",
            "-c",
            a_config.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    let size = std::fs::metadata(&bundle).unwrap().len();
    report.add(
        &format!("airgap_export_{n}_ms"),
        &format!("export of a {n}-layer snapshot (ms)"),
        took.as_millis(),
        format!(
            "{} files; bundle {:.1} MiB; {}",
            want.len(),
            size as f64 / (1024.0 * 1024.0),
            said.trim()
        ),
    );

    // Site B, daemon running: a master (embedded broker, GeoServer) and a slave, both empty.
    let port = free_port();
    let servers = vec![format!("mqtt://127.0.0.1:{port}")];
    let (m_data, m_state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (s_data, s_state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let m_gs = StandInGeoServer::start(m_data.path(), "admin", "geoserver");
    let s_gs = StandInGeoServer::start(s_data.path(), "admin", "geoserver");
    let mut cfg = NodeConfig::new(
        "b-master",
        "master",
        m_data.path(),
        m_state.path(),
        servers.clone(),
    );
    configure(&mut cfg, &binary, PRODUCT_QUIET_MS);
    cfg.broker_listen = Some(format!("127.0.0.1:{port}"));
    cfg.geoserver_url = Some(m_gs.url());
    let master = Node::start(cfg);
    let mut cfg = NodeConfig::new("b-slave", "slave", s_data.path(), s_state.path(), servers);
    configure(&mut cfg, &binary, PRODUCT_QUIET_MS);
    cfg.geoserver_url = Some(s_gs.url());
    let slave = Node::start(cfg);
    wait_until("site B's slave bootstrapped", super::TIMEOUT, || {
        slave.log_contents().contains(" complete in ")
    });
    let reloads_before = (
        m_gs.successful_reloads().len(),
        s_gs.successful_reloads().len(),
    );
    let t0 = Instant::now();
    let (took, said) = timed(
        &binary,
        &[
            "import",
            "-c",
            master.config_path().to_str().unwrap(),
            bundle.to_str().unwrap(),
        ],
    );
    report.add(
        &format!("airgap_import_{n}_ms"),
        &format!("import of the {n}-layer snapshot, daemon running (ms)"),
        took.as_millis(),
        format!(
            "command start → answer: verified, handed to the daemon, written, published, the \
             master's GeoServer reloaded; {}",
            said.trim()
        ),
    );
    // Hash the slave's tree only once it logged the last Delta of the import: hashing 33,000
    // files in a loop would compete with the apply for the 2 cores.
    let last = said
        .split("published as Delta")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .and_then(|t| t.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("the import was published");
    let mut tail = super::LogTail::at_end(&slave);
    tail.offset = 0;
    let mut applied_last = false;
    let needle = format!("/{last} from b-master");
    let converged = wait_converged(s_data.path(), &want, t0, &slave, || {
        applied_last |= tail
            .lines()
            .iter()
            .any(|l| l.contains("applied delta") && l.contains(&needle));
        applied_last
    });
    settle_reload(&slave, &s_gs, t0 + converged);
    report.add(
        &format!("airgap_import_{n}_slave_ms"),
        &format!("import of the {n}-layer snapshot → the site's slave converged (ms)"),
        converged.as_millis(),
        format!(
            "from the command's start; reloads since the import: master {}, slave {}",
            m_gs.successful_reloads().len() - reloads_before.0,
            s_gs.successful_reloads().len() - reloads_before.1
        ),
    );
    super::save_logs(&format!("airgap-{n}"), &[&master, &slave]);
    drop((master, slave));

    // No daemon: the command applies the bundle itself (an empty node).
    let (data, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = config_file(tmp.path(), "c-master", data.path(), state.path());
    let (took, _) = timed(
        &binary,
        &[
            "import",
            "-c",
            config.to_str().unwrap(),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        replicated_tree(data.path()),
        want,
        "import without a daemon"
    );
    report.add(
        &format!("airgap_import_{n}_alone_ms"),
        &format!("import of the {n}-layer snapshot, no daemon running (ms)"),
        took.as_millis(),
        "command start → exit: verified, written, recorded, Deltas left in the outbox",
    );
}
