//! The chaos harness: a seeded random run of a real cluster while both of its publishers edit,
//! then a checker. `tests/it/chaos.rs` runs short rounds in `cargo test`; the benchmark's
//! `chaos` section (benches/cluster/chaos.rs) runs long ones over many seeds.
//!
//! The cluster: a pure master and a `both` node (its wall clock two hours ahead) publishing,
//! three slaves applying, a broker in between — Mosquitto (persistent), ActiveMQ, or the
//! embedded broker of the `both` node — and every node reaching it through a fault-injecting
//! proxy of its own. With `partitions`, every node runs in a network namespace of its own
//! (support::netns) with two independent Mosquittos as a failover pair, and links are cut.
//! With `disks`, one slave's data directory and another's state directory are on small
//! filesystems (support::smallfs) that fill.
//!
//! Faults at random: `kill -9` and restart of any node and of the broker; added latency and
//! jitter, a 16 KiB/s bandwidth cap, connection resets, refused connections, black holes and
//! half-open connections (the broker's bytes no longer come back) on a node's link; a node's
//! namespace cut off from the broker network, or from the first broker only; a full data or
//! state directory; a stand-in GeoServer answering 500, going away or hanging past the reload
//! timeout.
//!
//! After the last fault every link is healed, every disk has room and every process runs
//! again; the checker waits for quiescence and asserts: the applying nodes' replicated trees
//! are byte-identical; every file only the pure master edits is there as the master has it
//! (its edits all arrived, no lost one resurfaced); no temp file is left; every outbox is
//! drained and every node online; every reload a stand-in saw was of a catalog whose
//! references resolve; no log holds a panic. Then every node is killed -9 and started again:
//! every journal reads back whole (no torn record), no publisher finds anything to publish and
//! no slave anything to resync (each node's recorded state is its tree), and the trees are
//! still identical.

use super::brokers::{ActiveMq, Mosquitto, MosquittoOpts};
use super::cluster::{self, wait_for_subscriptions, Placement};
use super::generator::{generate, Catalog, Rng, Spec};
use super::geoserver::catalog_problems;
use super::netns::Netns;
use super::node::{
    diff_summary, free_port, logs_of, replicated_tree, temp_files, wait_until_logs, Node,
};
use super::proxy::{Faults, Proxy};
use super::run::run;
use super::smallfs::SmallFs;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// One edit every this long (the pure master three times in four).
const EDIT_EVERY: Duration = Duration::from_millis(150);
/// The B node's own workspace: the pure master never touches it.
const B_WORKSPACE: &str = "atelier_b";
const QUIESCE: Duration = Duration::from_secs(180);
const SMALL_FS: u64 = 48 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    Mosquitto,
    ActiveMq,
    /// The `both` node's embedded broker: killing the broker is killing that node.
    Embedded,
}

#[derive(Clone, Debug)]
pub struct Opts {
    pub seed: u64,
    pub edits: usize,
    pub faults: usize,
    pub broker: BrokerKind,
    /// Nodes in network namespaces, two Mosquittos (needs `broker: Mosquitto`).
    pub partitions: bool,
    /// Small filesystems that fill.
    pub disks: bool,
}

impl Opts {
    /// `seed`, `edits` and `faults` from `GSCLUSTER_CHAOS_SEED`, `_EDITS`, `_FAULTS` when set.
    pub fn from_env(edits: usize, faults: usize, broker: BrokerKind) -> Opts {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Opts {
            seed: env("GSCLUSTER_CHAOS_SEED").unwrap_or_else(gscluster::clock::now_us),
            edits: env("GSCLUSTER_CHAOS_EDITS").map_or(edits, |n| n as usize),
            faults: env("GSCLUSTER_CHAOS_FAULTS").map_or(faults, |n| n as usize),
            broker,
            partitions: false,
            disks: false,
        }
    }
}

/// What a round that passed measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub edits: usize,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, usize>,
    /// From the last fault healed to identical trees.
    pub converged: Duration,
    /// From the last edit to identical trees (the last fault may end before it, or touch
    /// nothing the trees depend on, such as a GeoServer fault: then `converged` is ~0).
    pub after_last_edit: Duration,
    /// The whole round.
    pub took: Duration,
    /// Connections nodes made to the second broker of the failover pair (partitions only):
    /// evidence the cuts took effect.
    pub failovers: usize,
}

pub enum Outcome {
    Passed(Report),
    /// Why the round could not be run here (no Mosquitto, no namespaces…).
    Skipped(String),
    /// Every log, then the fault schedule with the seed, then what the checker found (last, so
    /// that the tail of a CI excerpt shows it).
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// `kill -9` the node, start it again at the end.
    Kill,
    /// `kill -9` the broker, start it again at the end.
    Broker,
    /// 200 ms ± 200 ms each way.
    Latency,
    /// 16 KiB/s each way (an edge link).
    Slow,
    Reset,
    Blackhole,
    /// The broker's bytes stop coming back; the node's still reach it.
    HalfOpen,
    Refuse,
    /// The node's GeoServer answers 500.
    GsError,
    /// The node's GeoServer is gone (connections refused).
    GsDown,
    /// The node's GeoServer takes longer than the reload timeout.
    GsHang,
    /// The node's namespace loses its link to the broker network.
    Partition,
    /// The node's namespace loses its route to the first broker, not to the second.
    CutFromFirst,
    /// The slave's data directory fills.
    DataFull,
    /// The slave's state directory fills.
    StateFull,
}

/// The slaves whose data and state directories are on small filesystems (with `disks`).
const DATA_ON_SMALL_FS: usize = 3;
const STATE_ON_SMALL_FS: usize = 4;

#[derive(Clone, Copy, Debug)]
struct Fault {
    kind: Kind,
    /// Index into the members (0 master, 1 both, 2.. slaves).
    target: usize,
    start: Duration,
    end: Duration,
}

/// The fault schedule: `n` faults spread over `span`, 1–5 s each, of the kinds this round has.
fn schedule(rng: &mut Rng, opts: &Opts, span: Duration, members: usize) -> Vec<Fault> {
    let mut kinds = vec![
        (Kind::Kill, 25),
        (Kind::Broker, 8),
        (Kind::Latency, 12),
        (Kind::Slow, 8),
        (Kind::Reset, 12),
        (Kind::Blackhole, 10),
        (Kind::HalfOpen, 8),
        (Kind::Refuse, 6),
        (Kind::GsError, 9),
        (Kind::GsDown, 6),
        (Kind::GsHang, 6),
    ];
    if opts.partitions {
        kinds.extend([(Kind::Partition, 14), (Kind::CutFromFirst, 10)]);
    }
    if opts.disks {
        kinds.extend([(Kind::DataFull, 8), (Kind::StateFull, 8)]);
    }
    let total: usize = kinds.iter().map(|k| k.1).sum();
    let mut faults: Vec<Fault> = (0..opts.faults)
        .map(|_| {
            let mut pick = rng.below(total);
            let kind = kinds
                .iter()
                .find(|(_, w)| {
                    if pick < *w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .unwrap()
                .0;
            let (kind, target) = match kind {
                // The embedded broker dies with the node that runs it.
                Kind::Broker if opts.broker == BrokerKind::Embedded => (Kind::Kill, 1),
                // A GeoServer fault needs a node that has one (not the pure master).
                Kind::GsError | Kind::GsDown | Kind::GsHang => (kind, 1 + rng.below(members - 1)),
                Kind::DataFull => (kind, DATA_ON_SMALL_FS),
                Kind::StateFull => (kind, STATE_ON_SMALL_FS),
                _ => (kind, rng.below(members)),
            };
            let start = span.mul_f64(rng.below(1000) as f64 / 1000.0);
            let end = start + Duration::from_millis(1000 + rng.below(4000) as u64);
            Fault {
                kind,
                target,
                start,
                end,
            }
        })
        .collect();
    faults.sort_by_key(|f| f.start);
    faults
}

fn describe(opts: &Opts, faults: &[Fault]) -> String {
    let seed = opts.seed;
    let mut out = format!(
        "chaos seed {seed} (replay: GSCLUSTER_CHAOS_SEED={seed}), broker {:?}{}{}; faults:\n",
        opts.broker,
        if opts.partitions { ", partitions" } else { "" },
        if opts.disks { ", small disks" } else { "" },
    );
    for f in faults {
        let _ = writeln!(
            out,
            "  {:>6} ms – {:>6} ms  {:?} on member {}",
            f.start.as_millis(),
            f.end.as_millis(),
            f.kind,
            f.target
        );
    }
    out
}

/// A node, and the proxy its link to the (first) broker goes through.
struct Member {
    member: cluster::Member,
    proxy: Proxy,
}

impl std::ops::Deref for Member {
    type Target = cluster::Member;
    fn deref(&self) -> &cluster::Member {
        &self.member
    }
}

impl std::ops::DerefMut for Member {
    fn deref_mut(&mut self) -> &mut cluster::Member {
        &mut self.member
    }
}

/// The round's brokers.
enum Brokers {
    /// The first, and with partitions the second of the failover pair.
    Mosquitto(Vec<Mosquitto>),
    ActiveMq(Box<ActiveMq>),
    /// In member 1.
    Embedded,
}

impl Brokers {
    fn kill9(&mut self) {
        match self {
            Brokers::Mosquitto(m) => m[0].kill9(),
            Brokers::ActiveMq(a) => a.kill9(),
            Brokers::Embedded => {}
        }
    }

    fn restart(&mut self) {
        match self {
            Brokers::Mosquitto(m) => m[0].restart(),
            Brokers::ActiveMq(a) => a.restart(),
            Brokers::Embedded => {}
        }
    }

    fn logs(&self) -> String {
        match self {
            Brokers::Mosquitto(m) => m.iter().map(|b| b.log_contents()).collect(),
            Brokers::ActiveMq(a) => a.log_contents(),
            Brokers::Embedded => String::new(),
        }
    }
}

/// The second publisher's edits, all inside its own workspace and styles, so the two
/// publishers' catalogs never refer into each other (each stays consistent on its own).
struct SecondPublisher {
    catalog: Catalog,
    layers: usize,
    touched: BTreeSet<String>,
}

impl SecondPublisher {
    fn new(spec: &Spec, seed: u64, root: &Path) -> SecondPublisher {
        // The same model as the master's tree it started from, minus what the master may
        // delete: its layers then only use this publisher's own styles.
        let scratch = tempfile::tempdir().unwrap();
        let mut catalog = generate(scratch.path(), spec, seed);
        catalog.styles.clear();
        catalog.fork_ids("b");
        let mut b = SecondPublisher {
            catalog,
            layers: 0,
            touched: BTreeSet::new(),
        };
        let t = b.catalog.add_style(root, "style_atelier_b");
        b.touched.extend(t);
        let t = b.catalog.add_workspace(root, B_WORKSPACE);
        b.touched.extend(t);
        b
    }

    fn edit(&mut self, root: &Path, rng: &mut Rng) {
        let ws = (self.catalog.workspaces.iter())
            .position(|w| w.name == B_WORKSPACE)
            .unwrap();
        let own: Vec<String> = (self.catalog.layers.iter())
            .filter(|l| l.workspace == B_WORKSPACE)
            .map(|l| l.id.clone())
            .collect();
        let touched = match rng.below(3) {
            0 => {
                self.layers += 1;
                self.catalog
                    .add_layer(root, ws, 0, &format!("couche_b_{}", self.layers))
            }
            1 if !own.is_empty() => {
                let id = own[rng.below(own.len())].clone();
                self.catalog.modify_layer(root, &id)
            }
            _ => self.catalog.modify_style_body(root, "style_atelier_b"),
        };
        self.touched.extend(touched);
    }
}

/// Everything a round runs on, set up.
struct Rig {
    members: Vec<Member>,
    brokers: Brokers,
    broker_down: bool,
    net: Option<Netns>,
    /// The small filesystems of members DATA_ON_SMALL_FS and STATE_ON_SMALL_FS.
    disks: BTreeMap<usize, SmallFs>,
    /// With partitions: the proxy every node reaches the second broker through.
    _second: Option<Proxy>,
}

const IDS: [(&str, &str); 5] = [
    ("gs-master", "master"),
    ("gs-both", "both"),
    ("gs-slave1", "slave"),
    ("gs-slave2", "slave"),
    ("gs-slave3", "slave"),
];

fn set_up(opts: &Opts, origin: &Path) -> Result<Rig, String> {
    assert!(
        !opts.partitions || opts.broker == BrokerKind::Mosquitto,
        "partitions need the Mosquitto failover pair"
    );
    let net = match opts.partitions {
        true => Some(Netns::create(IDS.len()).map_err(|e| format!("no network namespaces: {e}"))?),
        false => None,
    };
    let mut disks = BTreeMap::new();
    if opts.disks {
        for i in [DATA_ON_SMALL_FS, STATE_ON_SMALL_FS] {
            let fs = SmallFs::mount(SMALL_FS).map_err(|e| format!("no small filesystem: {e}"))?;
            disks.insert(i, fs);
        }
    }
    let (brokers, first_port) = match opts.broker {
        BrokerKind::Mosquitto => {
            let n = if opts.partitions { 2 } else { 1 };
            let mut m = Vec::new();
            for _ in 0..n {
                m.push(Mosquitto::start(MosquittoOpts::default()).ok_or("no Mosquitto here")?);
            }
            let port = m[0].port;
            (Brokers::Mosquitto(m), port)
        }
        BrokerKind::ActiveMq => {
            let a = ActiveMq::start().ok_or("no ActiveMQ here")?;
            let port = a.port;
            (Brokers::ActiveMq(Box::new(a)), port)
        }
        BrokerKind::Embedded => (Brokers::Embedded, free_port()),
    };
    let second = match (&brokers, &net) {
        (Brokers::Mosquitto(m), Some(net)) => Some(Proxy::start_at(&net.b(), m[1].port)),
        _ => None,
    };
    let mut members = Vec::new();
    for (i, (id, role)) in IDS.iter().enumerate() {
        let host = net.as_ref().map_or("127.0.0.1".to_string(), |n| n.a());
        let proxy = Proxy::start_at(&host, first_port);
        let mut servers = vec![format!("mqtt://{host}:{}", proxy.port())];
        if let (Some(net), Some(second)) = (&net, &second) {
            servers.push(format!("mqtt://{}:{}", net.b(), second.port()));
        }
        let in_fs = |k: usize| {
            let dir = disks.get(&i).filter(|_| i == k);
            dir.map_or_else(tempfile::tempdir, |fs| tempfile::tempdir_in(fs.path()))
                .unwrap()
        };
        let place = Placement {
            data: in_fs(DATA_ON_SMALL_FS),
            state: in_fs(STATE_ON_SMALL_FS),
            gs_host: net.as_ref().map_or("127.0.0.1".into(), |n| n.local_host(i)),
        };
        let member = cluster::start_member_in(id, role, origin, &servers, place, |cfg| {
            // Reloads that hang are given up on quickly, and retried.
            cfg.geoserver_extra = vec!["reload_timeout_s = 3".into()];
            // A dead link is noticed within seconds; a node on the second broker comes back
            // to the first within a second of it answering again.
            cfg.mqtt_extra = vec!["keep_alive_s = 5".into(), "failback_s = 1".into()];
            cfg.netns = net.as_ref().map(|n| n.name(i));
            if *role == "both" {
                cfg.clock_offset_ms = Some(2 * 3600 * 1000);
                if opts.broker == BrokerKind::Embedded {
                    cfg.broker_listen = Some(format!("127.0.0.1:{first_port}"));
                }
            }
        });
        members.push(Member { member, proxy });
    }
    for m in &members[1..] {
        wait_for_subscriptions(&m.node, 1);
    }
    // A new `both` node republishes its whole tree at start-up with its own versions, hours
    // ahead here (docs/conflicts.md, known limits: a new `both` node). The round starts once the
    // pure master has its status, and with it its clock, so that the first edits are not
    // concurrent with that start-up Delta: those would lose to it, as the conflict rule says.
    let master = &members[0].node;
    let watching = "watching gs-both's deltas";
    wait_until_logs(
        "the pure master has gs-both's status",
        QUIESCE,
        &[master],
        || master.log_contents().contains(watching),
    );
    Ok(Rig {
        members,
        brokers,
        broker_down: false,
        net,
        disks,
        _second: second,
    })
}

impl Rig {
    fn begin(&mut self, f: &Fault) {
        let m = &mut self.members[f.target];
        match f.kind {
            Kind::Kill => m.node.kill9(),
            Kind::Broker if !self.broker_down => {
                self.brokers.kill9();
                self.broker_down = true;
            }
            Kind::Broker => {}
            Kind::Latency => m.proxy.set(Faults {
                latency: Duration::from_millis(200),
                jitter: Duration::from_millis(200),
                ..m.proxy.faults()
            }),
            Kind::Slow => m.proxy.set(Faults {
                bandwidth: Some(16 * 1024),
                ..m.proxy.faults()
            }),
            Kind::Reset => m.proxy.reset_all(),
            Kind::Blackhole => m.proxy.set(Faults {
                blackhole: true,
                ..m.proxy.faults()
            }),
            Kind::HalfOpen => m.proxy.set(Faults {
                half_open: true,
                ..m.proxy.faults()
            }),
            Kind::Refuse => {
                m.proxy.set(Faults {
                    refuse: true,
                    ..m.proxy.faults()
                });
                m.proxy.reset_all();
            }
            Kind::GsError => m.gs.as_ref().unwrap().set_status(500),
            Kind::GsDown => m.gs.as_ref().unwrap().set_down(true),
            Kind::GsHang => m.gs.as_ref().unwrap().set_delay(Duration::from_secs(5)),
            Kind::Partition => self.net.as_ref().unwrap().cut(f.target),
            Kind::CutFromFirst => self.net.as_ref().unwrap().cut_from_a(f.target),
            Kind::DataFull | Kind::StateFull => self.disks[&f.target].fill(),
        }
    }

    fn finish(&mut self, f: &Fault) {
        let m = &mut self.members[f.target];
        match f.kind {
            Kind::Kill if !m.node.is_running() => m.node.restart(),
            Kind::Kill => {}
            Kind::Broker if self.broker_down => {
                self.brokers.restart();
                self.broker_down = false;
            }
            Kind::Broker => {}
            Kind::Latency | Kind::Slow | Kind::Blackhole | Kind::HalfOpen | Kind::Refuse => {
                m.proxy.heal()
            }
            Kind::Reset => {}
            Kind::GsError => m.gs.as_ref().unwrap().set_status(200),
            Kind::GsDown => m.gs.as_ref().unwrap().set_down(false),
            Kind::GsHang => m.gs.as_ref().unwrap().set_delay(Duration::ZERO),
            Kind::Partition | Kind::CutFromFirst => self.net.as_ref().unwrap().heal(f.target),
            Kind::DataFull | Kind::StateFull => self.disks[&f.target].free(),
        }
    }

    /// Every fault undone, every process running.
    fn heal_all(&mut self) {
        if self.broker_down {
            self.brokers.restart();
            self.broker_down = false;
        }
        for fs in self.disks.values() {
            fs.free();
        }
        for (i, m) in self.members.iter_mut().enumerate() {
            if let Some(net) = &self.net {
                net.heal(i);
            }
            m.proxy.heal();
            if let Some(gs) = &m.gs {
                gs.set_status(200);
                gs.set_down(false);
                gs.set_delay(Duration::ZERO);
            }
            if !m.node.is_running() {
                m.node.restart();
            }
        }
    }

    fn nodes(&self) -> Vec<&Node> {
        self.members.iter().map(|m| &m.node).collect()
    }
}

/// Run one round. A failure carries the seed, the schedule and every log.
pub fn round(opts: &Opts) -> Outcome {
    let started = Instant::now();
    let mut rng = Rng::new(opts.seed);
    let spec = Spec::small();
    let origin = tempfile::tempdir().unwrap();
    let mut master_catalog = generate(origin.path(), &spec, opts.seed);
    let mut rig = match set_up(opts, origin.path()) {
        Ok(rig) => rig,
        Err(why) => return Outcome::Skipped(why),
    };
    let master_root = rig.members[0].data.path().to_path_buf();
    let b_root = rig.members[1].data.path().to_path_buf();
    let mut second = SecondPublisher::new(&spec, opts.seed, &b_root);

    let span = EDIT_EVERY * opts.edits as u32;
    let faults = schedule(&mut rng, opts, span, rig.members.len());
    let plan = describe(opts, &faults);
    println!("{plan}");

    // The chaos phase: edits at a steady pace, faults starting and ending on schedule.
    let t0 = Instant::now();
    let mut started_f = vec![false; faults.len()];
    let mut ended = vec![false; faults.len()];
    let mut done = 0;
    let mut last_edit = Instant::now();
    while done < opts.edits || ended.iter().any(|e| !e) {
        let now = t0.elapsed();
        for (i, f) in faults.iter().enumerate() {
            if !started_f[i] && now >= f.start {
                started_f[i] = true;
                rig.begin(f);
            }
            if started_f[i] && !ended[i] && now >= f.end {
                ended[i] = true;
                rig.finish(f);
            }
        }
        if done < opts.edits && now >= EDIT_EVERY * done as u32 {
            if rng.below(4) < 3 {
                master_catalog.random_ops(&master_root, 1, rng.next_u64());
            } else {
                second.edit(&b_root, &mut rng);
            }
            last_edit = Instant::now();
            done += 1;
        }
        std::thread::sleep(Duration::from_millis(5)); // the workload's pace, not a wait
    }
    rig.heal_all();
    let healed = Instant::now();
    let fail = |rig: &Rig, why: String| {
        // The logs first and the finding last: a CI excerpt shows the tail.
        Outcome::Failed(format!(
            "{}\n{}\n{plan}\n{why}",
            logs_of(&rig.nodes()),
            rig.brokers.logs()
        ))
    };

    let b_only = second.touched.clone();
    if let Err(why) = wait_identical(&rig, &b_only) {
        return fail(
            &rig,
            format!("no quiescence within {QUIESCE:?} after the faults: {why}"),
        );
    }
    let converged = healed.elapsed();
    let after_last_edit = last_edit.elapsed();
    println!(
        "chaos seed {}: converged {:.1} s after the last fault healed",
        opts.seed,
        converged.as_secs_f64()
    );
    if let Err(why) = check_settled(&rig) {
        return fail(&rig, why);
    }
    if let Err(why) = check_restart(&mut rig, opts, &b_only) {
        return fail(&rig, why);
    }
    let failovers = match &rig.net {
        Some(net) => {
            let to_second = format!("connected to broker mqtt://{}:", net.b());
            (rig.members.iter())
                .map(|m| m.node.log_contents().matches(&to_second).count())
                .sum()
        }
        None => 0,
    };
    let mut by_kind = BTreeMap::new();
    for f in &faults {
        *by_kind.entry(format!("{:?}", f.kind)).or_insert(0) += 1;
    }
    Outcome::Passed(Report {
        seed: opts.seed,
        edits: opts.edits,
        faults: by_kind,
        converged,
        after_last_edit,
        took: started.elapsed(),
        failovers,
    })
}

/// Quiescence: the applying nodes agree, and hold every file the pure master alone edits as
/// the master has it.
fn wait_identical(rig: &Rig, b_only: &BTreeSet<String>) -> Result<(), String> {
    let check = || -> Result<(), String> {
        let trees: Vec<BTreeMap<String, [u8; 32]>> = (rig.members.iter())
            .map(|m| replicated_tree(m.data.path()))
            .collect();
        for (i, t) in trees.iter().enumerate().skip(2) {
            if *t != trees[1] {
                return Err(format!(
                    "member {i} differs from gs-both: {}",
                    diff_summary(&trees[1], t)
                ));
            }
        }
        let masters_own = |t: &BTreeMap<String, [u8; 32]>| -> BTreeMap<String, [u8; 32]> {
            t.iter()
                .filter(|(p, _)| p.as_str() != "global.xml" && !b_only.contains(*p))
                .map(|(p, h)| (p.clone(), *h))
                .collect()
        };
        let (m, s) = (masters_own(&trees[0]), masters_own(&trees[2]));
        if m != s {
            return Err(format!("the master's own files: {}", diff_summary(&m, &s)));
        }
        Ok(())
    };
    let since = Instant::now();
    loop {
        let last = check();
        if last.is_ok() || since.elapsed() > QUIESCE {
            return last;
        }
        std::thread::sleep(Duration::from_millis(50)); // polling for the condition
    }
}

/// No temp file, no panic, every reload consistent, outboxes drained, every node online.
fn check_settled(rig: &Rig) -> Result<(), String> {
    for m in &rig.members {
        let temps = temp_files(m.data.path());
        if !temps.is_empty() {
            return Err(format!(
                "{}: temp files left: {temps:?}",
                m.node.config().id
            ));
        }
        if m.node.log_contents().contains("panicked") {
            return Err(format!("{} panicked", m.node.config().id));
        }
    }
    // Every reload saw resolving references (a half-applied catalog never reached GeoServer).
    let final_problems = catalog_problems(rig.members[2].data.path());
    for m in &rig.members[1..] {
        for r in m.gs.as_ref().unwrap().successful_reloads() {
            let extra: Vec<&String> = (r.problems.iter())
                .filter(|p| !final_problems.contains(*p))
                .collect();
            if !extra.is_empty() {
                return Err(format!(
                    "{}: a reload saw an inconsistent catalog: {extra:?}",
                    m.node.config().id
                ));
            }
        }
    }
    wait_online(rig)
}

/// Every node online with an empty outbox, from the statuses on the (first) broker.
fn wait_online(rig: &Rig) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let config = rig.members[0].node.config_path();
        let out = run(
            &["status", "--json", "-c", config.to_str().unwrap()],
            "warn",
        );
        let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        let statuses = report["nodes"].as_array().cloned().unwrap_or_default();
        let settled = statuses.len() == rig.members.len()
            && (statuses.iter()).all(|n| n["online"] == true && n["outbox"] == 0);
        if settled {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "outboxes not drained or nodes offline: {}",
                out.stdout
            ));
        }
        std::thread::sleep(Duration::from_millis(500)); // polling the broker's statuses
    }
}

/// Every node killed -9 and started again on its state: each journal reads back whole and
/// matches its tree.
fn check_restart(rig: &mut Rig, opts: &Opts, b_only: &BTreeSet<String>) -> Result<(), String> {
    let marks: Vec<usize> = (rig.members.iter())
        .map(|m| m.node.log_contents().len())
        .collect();
    for m in rig.members.iter_mut() {
        m.node.kill9();
    }
    for m in rig.members.iter_mut() {
        m.node.restart();
    }
    for m in &rig.members[1..] {
        wait_for_subscriptions(&m.node, 1);
    }
    wait_online(rig)?;
    wait_identical(rig, b_only)?;
    for (m, mark) in rig.members.iter().zip(marks) {
        let id = &m.node.config().id;
        let log = m.node.log_contents();
        let after = &log[mark..];
        if let Some(l) = after.lines().find(|l| l.contains(" change(s) in ")) {
            return Err(format!(
                "{id}: published after a restart with no edit (its state and tree disagreed): {l}"
            ));
        }
        // The embedded broker forgets every session when its node restarts, and ActiveMQ
        // never says it kept one (mqtt-measured.md): those resyncs are due, no other.
        let no_session = "resync needed: the broker had no session";
        let excused = |l: &str| opts.broker != BrokerKind::Mosquitto && l.contains(no_session);
        let embedded = opts.broker == BrokerKind::Embedded;
        if let Some(l) = (after.lines())
            .filter(|_| !embedded)
            .find(|l| l.contains("resync needed") && !excused(l))
        {
            return Err(format!("{id}: resynced after a clean restart: {l}"));
        }
        if after.contains("panicked") {
            return Err(format!("{id} panicked after the restart"));
        }
    }
    Ok(())
}
