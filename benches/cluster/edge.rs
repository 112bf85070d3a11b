//! The `edge` section (issue 17): what a slave's link carries, compressed against uncompressed
//! in one run. A master (embedded broker) on a generated tree; every slave connects through
//! the byte-counting proxy of test support, so the bytes are what an edge link would carry —
//! MQTT framing, acknowledgements and statuses included. Per tree size: the bootstrap of an
//! empty slave; on the first size also a single layer edit, the catch-up of a slave that missed
//! `catchup` changes, and the bootstrap again behind a slow link (`slow`: bandwidth cap and
//! latency each way). Each cluster runs once with every node sending uncompressed
//! (`GSCLUSTER_WIRE_COMPRESSION=off`) and once as shipped.
//!
//! Only run when named (`GSCLUSTER_BENCH_ONLY=edge`).

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::support::cluster::Cluster;
use super::support::generator::Spec;
use super::support::geoserver::StandInGeoServer;
use super::support::node::{replicated_tree, Node, NodeConfig};
use super::support::proxy::{Faults, Proxy};
use super::{
    catchup_figure, configure, layers, save_logs, settle_reload, wait_converged, wait_log_quiet,
    Changer, Opts, Report, PRODUCT_QUIET_MS, TIMEOUT,
};

pub struct EdgeOpts {
    /// Trees an empty slave bootstraps from; the other scenarios run on the first.
    pub bootstraps: Vec<Spec>,
    /// (file changes the stopped slave misses, files per burst).
    pub catchup: (usize, usize),
    /// The slow link: bytes per second each way and latency each way (RTT = twice that).
    pub slow: (u64, Duration),
    /// How long the slow link goes dead in the middle of a bootstrap (compressed run only).
    pub outage: Duration,
}

/// Bytes through the proxy (node → broker, broker → node) at one moment.
type Bytes = (u64, u64);

fn since(proxy: &Proxy, before: Bytes) -> Bytes {
    let now = proxy.bytes();
    (now.0 - before.0, now.1 - before.1)
}

/// The link carries nothing for `quiet` (or `limit` passes).
fn wait_link_quiet(proxy: &Proxy, quiet: Duration, limit: Duration) {
    let t0 = Instant::now();
    let (mut last, mut since) = (proxy.bytes(), Instant::now());
    while since.elapsed() < quiet && t0.elapsed() < limit {
        sleep(Duration::from_millis(20));
        let now = proxy.bytes();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

pub fn edge_figures(opts: &Opts, e: &EdgeOpts, report: &mut Report) {
    // What each figure measured, per size: (uncompressed, compressed).
    for (i, spec) in e.bootstraps.iter().enumerate() {
        let n = layers(spec);
        let mut got: [Vec<(String, Bytes, Duration)>; 2] = Default::default();
        // The second run of a pair writes behind the first's writeback on this disk:
        // `GSCLUSTER_BENCH_EDGE_FIRST=compressed` swaps the order to see what that costs.
        let first_compressed =
            std::env::var("GSCLUSTER_BENCH_EDGE_FIRST").is_ok_and(|v| v == "compressed");
        let order = if first_compressed {
            [(1, false), (0, true)]
        } else {
            [(0, true), (1, false)]
        };
        for (mode, uncompressed) in order {
            let label = if uncompressed {
                "uncompressed"
            } else {
                "compressed"
            };
            eprintln!("== edge: {n} layers, {label}");
            let binary = opts.binary.clone();
            let configure_node = move |cfg: &mut NodeConfig| {
                configure(cfg, &binary, PRODUCT_QUIET_MS);
                cfg.uncompressed = uncompressed;
            };
            let mut c = Cluster::start_with(spec, 41 + i as u64, 0, configure_node.clone());
            wait_log_quiet(&c.master, Duration::from_secs(2), TIMEOUT * 5);
            let proxy = Proxy::start(broker_port(&c));
            let through = vec![format!("mqtt://127.0.0.1:{}", proxy.port())];
            let key = format!("edge_{n}_{label}_");

            let mut slave = Empty::new(&through, &configure_node, "gs-edge");
            let (bytes, took) = slave.bootstrap(&c, &proxy, &format!("{key}bootstrap"));
            got[mode].push(("bootstrap".into(), bytes, took));
            if i > 0 {
                continue;
            }

            // A single layer edit, once the link is quiet.
            wait_link_quiet(&proxy, Duration::from_secs(2), TIMEOUT);
            let before = proxy.bytes();
            let t0 = Instant::now();
            let layer = c.catalog.layers[0].id.clone();
            let master_dir = c.master_data.path().to_path_buf();
            c.catalog.modify_layer(&master_dir, &layer);
            let want = replicated_tree(&master_dir);
            let took = wait_converged(slave.dir(), &want, t0, &slave.node, || true);
            // What follows the Delta: the acknowledgements, the statuses it changes.
            wait_link_quiet(&proxy, Duration::from_secs(1), TIMEOUT);
            got[mode].push(("edit".into(), since(&proxy, before), took));
            let delta = last_delta(&c.master);
            report.add(
                &format!("{key}edit_delta_bytes"),
                &format!("edge, {n} layers, {label}: one layer edit's Delta (bytes)"),
                delta.clone(),
                "the MQTT payloads of the Delta the master published for it (its log)",
            );

            // The catch-up of a slave that missed `catchup` changes.
            let mut changer = Changer::new(&master_dir, &c.catalog.layers);
            let before = proxy.bytes();
            c.slaves.push(slave.into_slave());
            let mut made = 0;
            let (count, burst) = e.catchup;
            catchup_figure(&mut c, &mut changer, count, burst, &mut made, report, &key);
            let took = report
                .value(&format!("{key}catchup_{count}_ms"))
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(Duration::ZERO, Duration::from_millis);
            got[mode].push((
                format!("catch-up of {count} changes"),
                since(&proxy, before),
                took,
            ));
            c.slaves.clear();

            // The bootstrap again behind the slow link.
            let (rate, latency) = e.slow;
            proxy.set(Faults {
                latency,
                bandwidth: Some(rate),
                ..Faults::default()
            });
            let mut slow = Empty::new(&through, &configure_node, "gs-slow");
            let (bytes, took) = slow.bootstrap(&c, &proxy, &format!("{key}slow_bootstrap"));
            got[mode].push(("slow-link bootstrap".into(), bytes, took));
            // `GSCLUSTER_BENCH_EDGE_OUTAGE_S=0`: no outage (the other rows alone, quicker).
            let skip_outage =
                std::env::var("GSCLUSTER_BENCH_EDGE_OUTAGE_S").is_ok_and(|v| v == "0");
            if !uncompressed && !skip_outage {
                outage_figure(
                    &c,
                    &proxy,
                    e,
                    &through,
                    &configure_node,
                    bytes,
                    report,
                    &key,
                );
            }
            proxy.heal();
        }
        for (j, (what, bytes, took)) in got[1].iter().enumerate() {
            let (_, plain, plain_took) = &got[0][j];
            let down = |b: &Bytes| b.1;
            let pct = down(bytes) as f64 * 100.0 / down(plain).max(1) as f64;
            report.add(
                &format!("edge_{n}_{}_down_percent", slug(what)),
                &format!(
                    "edge, {n} layers, {what}: bytes to the slave, compressed / uncompressed (%)"
                ),
                format!("{pct:.1}"),
                format!(
                    "broker → slave {} / {} bytes; slave → broker {} / {} bytes; took {} / {} ms",
                    bytes.1,
                    plain.1,
                    bytes.0,
                    plain.0,
                    took.as_millis(),
                    plain_took.as_millis()
                ),
            );
        }
    }
}

/// The slow link goes dead (black hole: connections held, nothing delivered) once the first
/// batch of a bootstrap is in, for `e.outage`: how many connections the slave opened meanwhile
/// (a keep-alive storm would open many), how many rounds and files the bootstrap took, and its
/// bytes against the same bootstrap without the outage (`plain`).
#[allow(clippy::too_many_arguments)]
fn outage_figure(
    c: &Cluster,
    proxy: &Proxy,
    e: &EdgeOpts,
    through: &[String],
    configure_node: &dyn Fn(&mut NodeConfig),
    plain: Bytes,
    report: &mut Report,
    key: &str,
) {
    let (rate, latency) = e.slow;
    let slow = Faults {
        latency,
        bandwidth: Some(rate),
        ..Faults::default()
    };
    let want = replicated_tree(c.master_data.path());
    let mut s = Empty::new(through, configure_node, "gs-outage");
    let before = proxy.bytes();
    let t0 = Instant::now();
    s.node.restart();
    super::support::node::wait_until("the first batch arrived", TIMEOUT, || {
        s.node.log_contents().contains(" arrived ")
    });
    proxy.set(Faults {
        blackhole: true,
        ..slow
    });
    let accepted = proxy.accepted();
    // The outage itself: a length of time, not a condition to wait for.
    sleep(e.outage);
    let opened = proxy.accepted() - accepted;
    proxy.set(slow);
    // The convergence's deadline counts from the link's return, not from the start.
    let healed = Instant::now();
    let after = wait_converged(s.dir(), &want, healed, &s.node, || {
        s.node.log_contents().contains(" complete in ")
    });
    let took = t0.elapsed();
    let bytes = since(proxy, before);
    save_logs(&format!("{key}outage_bootstrap"), &[&c.master, &s.node]);
    let log = s.node.log_contents();
    let rounds = log.matches("asking for manifests").count();
    let fetched: usize = (log.lines())
        .filter_map(|l| {
            l.split_once(": batch ")?
                .1
                .split_once(": ")?
                .1
                .split(' ')
                .next()
        })
        .filter_map(|n| n.parse::<usize>().ok())
        .sum();
    report.add(
        &format!("{key}outage_bytes_percent"),
        &format!(
            "edge: a bootstrap whose link goes dead for {} s after its first batch: bytes to the \
             slave against the same bootstrap without it (%)",
            e.outage.as_secs()
        ),
        format!("{:.0}", bytes.1 as f64 * 100.0 / plain.1.max(1) as f64),
        format!(
            "{} / {} bytes; {rounds} resync round(s), {fetched} file(s) fetched for {} in the \
             tree; {opened} connection(s) opened during the outage; converged {} ms after the \
             link came back ({} ms in all)",
            bytes.1,
            plain.1,
            want.len(),
            after.as_millis(),
            took.as_millis()
        ),
    );
}

fn slug(what: &str) -> String {
    (what.chars())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The embedded broker's port (the cluster's first server).
fn broker_port(c: &Cluster) -> u16 {
    let url = &c.servers()[0];
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// The bytes of the master's last published Delta: "… in M message(s), B bytes, …".
fn last_delta(master: &Node) -> String {
    let log = master.log_contents();
    (log.lines().rev())
        .find_map(|l| {
            let (_, tail) = l.split_once(" message(s), ")?;
            Some(tail.split(' ').next()?.to_string())
        })
        .unwrap_or_else(|| "-".into())
}

/// An empty slave with its stand-in GeoServer.
struct Empty {
    node: Node,
    gs: StandInGeoServer,
    data: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Empty {
    fn new(servers: &[String], configure_node: &dyn Fn(&mut NodeConfig), id: &str) -> Empty {
        let data = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let gs = StandInGeoServer::start(data.path(), "admin", "geoserver");
        let mut cfg = NodeConfig::new(id, "slave", data.path(), state.path(), servers.to_vec());
        cfg.geoserver_url = Some(gs.url());
        configure_node(&mut cfg);
        Empty {
            node: Node::prepared(cfg),
            gs,
            data,
            state,
        }
    }

    fn dir(&self) -> &Path {
        self.data.path()
    }

    /// Start it and wait until it holds the master's tree: the link's bytes and the time.
    fn bootstrap(&mut self, c: &Cluster, proxy: &Proxy, scenario: &str) -> (Bytes, Duration) {
        let want = replicated_tree(c.master_data.path());
        let before = proxy.bytes();
        let t0 = Instant::now();
        self.node.restart();
        let took = wait_converged(self.data.path(), &want, t0, &self.node, || {
            self.node.log_contents().contains(" complete in ")
        });
        settle_reload(&self.node, &self.gs, t0 + took);
        save_logs(scenario, &[&c.master, &self.node]);
        (since(proxy, before), took)
    }

    fn into_slave(self) -> super::support::cluster::Slave {
        super::support::cluster::Slave {
            node: self.node,
            gs: self.gs,
            data: self.data,
            _state: self.state,
        }
    }
}
