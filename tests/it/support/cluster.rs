//! A whole test cluster on loopback: one master and N slaves, each slave with its own stand-in
//! GeoServer, all real `gscluster` processes. The master runs the embedded broker (`start`,
//! `start_with`), or every node uses an external broker (`start_external`, e.g. a
//! `support::brokers::Mosquitto`).

use super::generator::{generate, Catalog, Spec};
use super::geoserver::StandInGeoServer;
use super::node::{
    converge, free_port, logs_of, replicated_tree, wait_until_logs, Node, NodeConfig,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One node of a hand-made topology on its own copy of a tree: data and state folders of its
/// own and, unless it is a pure master, a stand-in GeoServer it reloads.
pub struct Member {
    pub node: Node,
    pub gs: Option<StandInGeoServer>,
    pub data: tempfile::TempDir,
    pub _state: tempfile::TempDir,
}

/// Where a member lives: its data and state folders, and the address its stand-in GeoServer
/// listens on.
pub struct Placement {
    pub data: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub gs_host: String,
}

impl Placement {
    /// Fresh temporary folders, the stand-in on 127.0.0.1.
    pub fn temp() -> Placement {
        Placement {
            data: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
            gs_host: "127.0.0.1".into(),
        }
    }
}

/// Start `id` as `role` on a copy of `tree`, connecting to `servers`; `tweak` has the last word
/// on its configuration (before the stand-in's URL is set).
pub fn start_member(
    id: &str,
    role: &str,
    tree: &Path,
    servers: &[String],
    tweak: impl FnOnce(&mut NodeConfig),
) -> Member {
    start_member_in(id, role, tree, servers, Placement::temp(), tweak)
}

/// `start_member` in a given place, e.g. on a small filesystem or in a network namespace.
pub fn start_member_in(
    id: &str,
    role: &str,
    tree: &Path,
    servers: &[String],
    place: Placement,
    tweak: impl FnOnce(&mut NodeConfig),
) -> Member {
    let Placement {
        data,
        state,
        gs_host,
    } = place;
    copy_tree(tree, data.path());
    let mut cfg = NodeConfig::new(id, role, data.path(), state.path(), servers.to_vec());
    tweak(&mut cfg);
    let gs = (role != "master").then(|| {
        let gs = StandInGeoServer::start_at(&gs_host, 0, Some(data.path()), "admin", "geoserver");
        cfg.geoserver_url = Some(gs.url());
        gs
    });
    let node = Node::start(cfg);
    Member {
        node,
        gs,
        data,
        _state: state,
    }
}

pub struct Slave {
    pub node: Node,
    pub gs: StandInGeoServer,
    pub data: tempfile::TempDir,
    pub _state: tempfile::TempDir,
}

impl Slave {
    pub fn dir(&self) -> &Path {
        self.data.path()
    }
}

pub struct Cluster {
    pub master: Node,
    pub master_data: tempfile::TempDir,
    pub _master_state: tempfile::TempDir,
    pub catalog: Catalog,
    pub slaves: Vec<Slave>,
    /// The broker's port: the master's embedded broker, or the first external broker's.
    pub port: u16,
    /// Every node's `[mqtt] servers`, in failover order.
    servers: Vec<String>,
    /// Applied to every node's config before it starts (see `start_with`).
    configure: Box<dyn Fn(&mut NodeConfig)>,
}

/// Copy a whole directory tree (what an administrator does once before joining a node).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl Cluster {
    /// Master on a generated tree; slaves start from a copy of it. Returns once every slave has
    /// subscribed, so no change made afterwards can be missed.
    pub fn start(spec: &Spec, seed: u64, slaves: usize) -> Cluster {
        Cluster::start_with(spec, seed, slaves, |_| {})
    }

    /// `start`, with `configure` applied to the master's and every slave's config (after the
    /// cluster's own settings: ids, dirs, broker, stand-in URL), e.g. to change quiet windows or
    /// the binary under test.
    pub fn start_with(
        spec: &Spec,
        seed: u64,
        slaves: usize,
        configure: impl Fn(&mut NodeConfig) + 'static,
    ) -> Cluster {
        Cluster::start_on(spec, seed, slaves, None, configure)
    }

    /// Like `start_with`, but no node runs a broker: the master (role "master", no `[broker]`)
    /// and every slave connect to the external broker on 127.0.0.1:`port`, which must be up.
    pub fn start_external(
        spec: &Spec,
        seed: u64,
        slaves: usize,
        port: u16,
        configure: impl Fn(&mut NodeConfig) + 'static,
    ) -> Cluster {
        let servers = vec![format!("mqtt://127.0.0.1:{port}")];
        Cluster::start_on(spec, seed, slaves, Some(servers), configure)
    }

    /// Like `start_external`, with a failover list of external brokers (the first must be up).
    pub fn start_external_servers(
        spec: &Spec,
        seed: u64,
        slaves: usize,
        servers: Vec<String>,
        configure: impl Fn(&mut NodeConfig) + 'static,
    ) -> Cluster {
        Cluster::start_on(spec, seed, slaves, Some(servers), configure)
    }

    /// `external`: the servers of brokers already running; `None` = the master embeds one.
    fn start_on(
        spec: &Spec,
        seed: u64,
        slaves: usize,
        external: Option<Vec<String>>,
        configure: impl Fn(&mut NodeConfig) + 'static,
    ) -> Cluster {
        let master_data = tempfile::tempdir().unwrap();
        let master_state = tempfile::tempdir().unwrap();
        let catalog = generate(master_data.path(), spec, seed);
        let embedded = external.is_none();
        let servers = external.unwrap_or_else(|| vec![format!("mqtt://127.0.0.1:{}", free_port())]);
        let port: u16 = (servers[0].rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("mqtt://host:port");
        let mut cfg = NodeConfig::new(
            "gs-master",
            "master",
            master_data.path(),
            master_state.path(),
            servers.clone(),
        );
        if embedded {
            cfg.broker_listen = Some(format!("127.0.0.1:{port}"));
        }
        configure(&mut cfg);
        let master = Node::start(cfg);
        // A deadline, not a wait: on the benchmark's 100,000-layer tree the master reads its
        // catalog for tens of seconds before it connects.
        wait_until_logs(
            "master connected to its broker",
            Duration::from_secs(600),
            &[&master],
            || master.log_contents().contains("connected to broker"),
        );
        let mut cluster = Cluster {
            master,
            master_data,
            _master_state: master_state,
            catalog,
            slaves: Vec::new(),
            port,
            servers,
            configure: Box::new(configure),
        };
        for i in 0..slaves {
            cluster.add_slave(&format!("gs-slave{}", i + 1));
        }
        cluster
    }

    pub fn servers(&self) -> Vec<String> {
        self.servers.clone()
    }

    /// Start a slave on a copy of the master's current tree and wait for its subscription.
    pub fn add_slave(&mut self, id: &str) {
        self.add_slave_prepared(id, |_| {});
    }

    /// Like `add_slave`, with `prepare` run on the slave's copy before the slave starts.
    pub fn add_slave_prepared(&mut self, id: &str, prepare: impl FnOnce(&Path)) {
        let data = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        copy_tree(self.master_data.path(), data.path());
        prepare(data.path());
        let gs = StandInGeoServer::start(data.path(), "admin", "geoserver");
        let mut cfg = NodeConfig::new(id, "slave", data.path(), state.path(), self.servers());
        cfg.geoserver_url = Some(gs.url());
        (self.configure)(&mut cfg);
        let node = Node::start(cfg);
        wait_for_subscriptions(&node, 1);
        // Ready once bootstrapped: until its first resync round completes, a restart of the
        // slave would bootstrap again, which tests of sessions and outages do not expect.
        wait_until_logs(
            "slave bootstrapped",
            Duration::from_secs(600),
            &[&node],
            || node.log_contents().contains(" complete in "),
        );
        self.slaves.push(Slave {
            node,
            gs,
            data,
            _state: state,
        });
    }

    pub fn master_dir(&self) -> &Path {
        self.master_data.path()
    }

    pub fn slave_dirs(&self) -> Vec<PathBuf> {
        self.slaves.iter().map(|s| s.dir().to_path_buf()).collect()
    }

    /// Wait until every slave's replicated tree equals the master's; on timeout print every
    /// node's log with the difference.
    pub fn converge(&self, deadline: Duration) {
        let have = || {
            (self.slaves.iter())
                .map(|s| (s.node.config().id.clone(), replicated_tree(s.dir())))
                .collect()
        };
        let want = || replicated_tree(self.master_dir());
        converge("converged with the master", deadline, want, have, || {
            self.logs()
        });
    }

    /// Wait until every running slave's log says it applied (or already had) the master's
    /// newest Delta. Convergence is seen on disk a few milliseconds before the slave records
    /// and logs the Delta, so a test that reads the slave's log right after `converge` must
    /// wait for this first.
    pub fn wait_logged_applied(&self, deadline: Duration) {
        for s in self.slaves.iter().filter(|s| s.node.is_running()) {
            wait_until_logs(
                "the slave logged the newest Delta",
                deadline,
                &[&s.node],
                || self.logged_newest(&s.node),
            );
        }
    }

    /// `wait_logged_applied` for scenarios where a resync may have brought the newest Delta
    /// instead (then no line names it): waits at most `deadline`, never fails.
    pub fn settle_logs(&self, deadline: Duration) {
        let end = std::time::Instant::now() + deadline;
        while std::time::Instant::now() < end
            && !(self.slaves.iter())
                .filter(|s| s.node.is_running())
                .all(|s| self.logged_newest(&s.node))
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn logged_newest(&self, slave: &Node) -> bool {
        let newest = (self.master.log_contents().lines())
            .filter_map(|l| l.split_once(": seq ").map(|(_, t)| t))
            .filter(|t| t.contains(" change(s) in "))
            .filter_map(|t| t.split(':').next()?.parse::<u64>().ok())
            .max();
        let Some(n) = newest else { return true };
        let log = slave.log_contents();
        log.contains(&format!("/{n} from gs-master:"))
            || log.contains(&format!("/{n} already applied"))
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut nodes = vec![&self.master];
        nodes.extend(self.slaves.iter().map(|s| &s.node));
        logs_of(&nodes)
    }
}

/// How many times the node's log says its subscription was acknowledged (its log survives
/// restarts, so a restarted node has one more).
pub fn subscriptions(node: &Node) -> usize {
    node.log_contents().matches("subscribed to").count()
}

/// Wait until the node's log shows at least `n` acknowledged subscriptions.
pub fn wait_for_subscriptions(node: &Node, n: usize) {
    wait_until_logs("slave subscribed", Duration::from_secs(20), &[node], || {
        subscriptions(node) >= n
    });
}
