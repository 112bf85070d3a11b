//! A site of two nodes on loopback: a master with its own embedded broker and stand-in
//! GeoServer, and a slave (started from a copy of the master's tree) with its own stand-in —
//! what the air-gap and history tests run commands against.

use super::cluster::{copy_tree, wait_for_subscriptions};
use super::generator::{generate, Catalog, Spec};
use super::geoserver::{assert_reloads_consistent, StandInGeoServer};
use super::node::{
    free_port, logs_of, replicated_tree, wait_until, wait_until_logs, Node, NodeConfig,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// A master with its own embedded broker and GeoServer, and a slave with its own.
pub struct Site {
    /// The generated catalog of the master's tree, for edits as GeoServer makes them.
    pub catalog: Catalog,
    pub master: Node,
    pub master_gs: StandInGeoServer,
    pub master_data: tempfile::TempDir,
    pub master_state: tempfile::TempDir,
    pub slave: Node,
    pub slave_gs: StandInGeoServer,
    pub slave_data: tempfile::TempDir,
    pub slave_state: tempfile::TempDir,
}

impl Site {
    pub fn start(seed: u64, key: Option<PathBuf>) -> Site {
        Site::start_with(seed, key, |_| {})
    }

    /// `start`, with `tweak` applied to both nodes' configuration last.
    pub fn start_with(seed: u64, key: Option<PathBuf>, tweak: impl Fn(&mut NodeConfig)) -> Site {
        let master_data = tempfile::tempdir().unwrap();
        let master_state = tempfile::tempdir().unwrap();
        let catalog = generate(master_data.path(), &Spec::small(), seed);
        let port = free_port();
        let servers = vec![format!("mqtt://127.0.0.1:{port}")];
        let master_gs = StandInGeoServer::start(master_data.path(), "admin", "geoserver");
        let mut cfg = NodeConfig::new(
            "b-master",
            "master",
            master_data.path(),
            master_state.path(),
            servers.clone(),
        );
        cfg.broker_listen = Some(format!("127.0.0.1:{port}"));
        cfg.geoserver_url = Some(master_gs.url());
        cfg.key_file = key.clone();
        tweak(&mut cfg);
        let master = Node::start(cfg);
        wait_until_logs("b-master connected", DEADLINE, &[&master], || {
            master.log_contents().contains("connected to broker")
        });
        let slave_data = tempfile::tempdir().unwrap();
        let slave_state = tempfile::tempdir().unwrap();
        copy_tree(master_data.path(), slave_data.path());
        let slave_gs = StandInGeoServer::start(slave_data.path(), "admin", "geoserver");
        let mut cfg = NodeConfig::new(
            "b-slave",
            "slave",
            slave_data.path(),
            slave_state.path(),
            servers,
        );
        cfg.geoserver_url = Some(slave_gs.url());
        cfg.key_file = key;
        tweak(&mut cfg);
        let slave = Node::start(cfg);
        wait_for_subscriptions(&slave, 1);
        wait_until_logs("b-slave bootstrapped", DEADLINE, &[&slave], || {
            slave.log_contents().contains(" complete in ")
        });
        Site {
            catalog,
            master,
            master_gs,
            master_data,
            master_state,
            slave,
            slave_gs,
            slave_data,
            slave_state,
        }
    }

    pub fn logs(&self) -> String {
        logs_of(&[&self.master, &self.slave])
    }

    pub fn trees(&self) -> (BTreeMap<String, [u8; 32]>, BTreeMap<String, [u8; 32]>) {
        (
            replicated_tree(self.master_data.path()),
            replicated_tree(self.slave_data.path()),
        )
    }

    pub fn reloads(&self) -> (usize, usize) {
        (
            self.master_gs.successful_reloads().len(),
            self.slave_gs.successful_reloads().len(),
        )
    }

    /// Exactly one more successful reload on each node than `before`: waits for it, then
    /// watches a further second (five reload quiet windows) for a second one.
    pub fn one_reload_each_since(&self, before: (usize, usize), what: &str) {
        wait_until("a reload on both nodes of the site", DEADLINE, || {
            let now = self.reloads();
            now.0 > before.0 && now.1 > before.1
        });
        std::thread::sleep(Duration::from_secs(1));
        let now = self.reloads();
        assert_eq!(
            (now.0 - before.0, now.1 - before.1),
            (1, 1),
            "reloads (master, slave) since {what}\n{}",
            self.logs()
        );
        assert_reloads_consistent(&self.master_gs, self.master_data.path(), "b-master");
        assert_reloads_consistent(&self.slave_gs, self.master_data.path(), "b-slave");
    }
}
