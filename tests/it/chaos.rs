//! Chaos: a seeded random run of a real cluster while both of its publishers edit. A pure
//! master and a `both` node (its wall clock two hours ahead) publish, three slaves apply,
//! Mosquitto carries it all, and every node reaches the broker through a fault-injecting proxy
//! of its own. Faults at random: `kill -9` and restart of any node and of the broker, added
//! latency and jitter, connection resets, refused connections and black holes on a node's link,
//! a stand-in GeoServer answering 500, going away or hanging past the reload timeout.
//!
//! After the last fault every link is healed and every process runs again; the checker waits
//! for quiescence and asserts: the applying nodes' replicated trees are byte-identical; every
//! file only the pure master edits is there as the master has it (its edits all arrived, no
//! lost one resurfaced); no temp file is left; every outbox is drained and every node online;
//! every reload a stand-in saw was of a catalog whose references resolve; no log holds a panic.
//!
//! The seed is printed; `GSCLUSTER_CHAOS_SEED=N` replays it; `GSCLUSTER_CHAOS_EDITS` and
//! `GSCLUSTER_CHAOS_FAULTS` scale it. A failure prints the seed and the fault schedule.
//! Network partitions in namespaces, full disks and the long mode are still to come (issue 14).

use crate::support::brokers::{Mosquitto, MosquittoOpts};
use crate::support::cluster::{self, wait_for_subscriptions};
use crate::support::generator::{generate, Catalog, Rng, Spec};
use crate::support::geoserver::catalog_problems;
use crate::support::node::{diff_summary, logs_of, replicated_tree, temp_files, Node, NodeConfig};
use crate::support::proxy::{Faults, Proxy};
use crate::support::run::run;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// The short round `cargo test` runs.
const EDITS: usize = 240;
const FAULTS: usize = 20;
/// One edit every this long (the pure master three times in four).
const EDIT_EVERY: Duration = Duration::from_millis(150);
/// The B node's own workspace: the pure master never touches it.
const B_WORKSPACE: &str = "atelier_b";
const QUIESCE: Duration = Duration::from_secs(180);

/// A node, and the proxy its broker link goes through.
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

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `kill -9` the node, start it again at the end.
    Kill,
    /// `kill -9` the broker, start it again at the end.
    Broker,
    Latency,
    Reset,
    Blackhole,
    Refuse,
    /// The node's GeoServer answers 500.
    GsError,
    /// The node's GeoServer is gone (connections refused).
    GsDown,
    /// The node's GeoServer takes longer than the reload timeout.
    GsHang,
}

#[derive(Clone, Copy, Debug)]
struct Fault {
    kind: Kind,
    /// Index into the members (0 master, 1 both, 2.. slaves).
    target: usize,
    start: Duration,
    end: Duration,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fault schedule for `seed`: `n` faults spread over `span`, 1–5 s each.
fn schedule(rng: &mut Rng, n: usize, span: Duration, members: usize) -> Vec<Fault> {
    let kinds = [
        (Kind::Kill, 25),
        (Kind::Broker, 8),
        (Kind::Latency, 14),
        (Kind::Reset, 14),
        (Kind::Blackhole, 12),
        (Kind::Refuse, 6),
        (Kind::GsError, 9),
        (Kind::GsDown, 6),
        (Kind::GsHang, 6),
    ];
    let total: usize = kinds.iter().map(|k| k.1).sum();
    let mut faults: Vec<Fault> = (0..n)
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
            let target = match kind {
                // A GeoServer fault needs a node that has one (not the pure master).
                Kind::GsError | Kind::GsDown | Kind::GsHang => 1 + rng.below(members - 1),
                _ => rng.below(members),
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

fn describe(seed: u64, faults: &[Fault]) -> String {
    let mut out = format!("chaos seed {seed} (replay: GSCLUSTER_CHAOS_SEED={seed}); faults:\n");
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

fn member(
    id: &str,
    role: &str,
    tree: &Path,
    broker_port: u16,
    tweak: impl FnOnce(&mut NodeConfig),
) -> Member {
    let proxy = Proxy::start(broker_port);
    let servers = vec![format!("mqtt://127.0.0.1:{}", proxy.port())];
    let member = cluster::start_member(id, role, tree, &servers, |cfg| {
        // Reloads that hang are given up on quickly, and retried.
        cfg.geoserver_extra = vec!["reload_timeout_s = 3".into()];
        // A dead link is noticed within seconds.
        cfg.mqtt_extra = vec!["keep_alive_s = 5".into()];
        tweak(cfg);
    });
    Member { member, proxy }
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

#[test]
fn chaos_round_ends_with_every_node_identical_and_nothing_lost() {
    let Some(mut broker) = Mosquitto::start(MosquittoOpts::default()) else {
        return;
    };
    let seed = std::env::var("GSCLUSTER_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(gscluster::clock::now_us);
    let edits = env_or("GSCLUSTER_CHAOS_EDITS", EDITS as u64) as usize;
    let n_faults = env_or("GSCLUSTER_CHAOS_FAULTS", FAULTS as u64) as usize;
    println!(
        "chaos seed {seed}: {edits} edits, {n_faults} faults (replay: GSCLUSTER_CHAOS_SEED={seed})"
    );
    let mut rng = Rng::new(seed);
    let spec = Spec::small();
    let origin = tempfile::tempdir().unwrap();
    let mut master_catalog = generate(origin.path(), &spec, seed);

    let mut members = vec![
        member("gs-master", "master", origin.path(), broker.port, |_| {}),
        member("gs-both", "both", origin.path(), broker.port, |cfg| {
            cfg.clock_offset_ms = Some(2 * 3600 * 1000);
        }),
    ];
    for i in 1..=3 {
        let id = format!("gs-slave{i}");
        members.push(member(&id, "slave", origin.path(), broker.port, |_| {}));
    }
    for m in &members[1..] {
        wait_for_subscriptions(&m.node, 1);
    }
    let master_root = members[0].data.path().to_path_buf();
    let b_root = members[1].data.path().to_path_buf();
    let mut second = SecondPublisher::new(&spec, seed, &b_root);

    let span = EDIT_EVERY * edits as u32;
    let faults = schedule(&mut rng, n_faults, span, members.len());
    let plan = describe(seed, &faults);
    println!("{plan}");

    // The chaos phase: edits at a steady pace, faults starting and ending on schedule.
    let t0 = Instant::now();
    let mut started = vec![false; faults.len()];
    let mut ended = vec![false; faults.len()];
    let mut broker_down = false;
    let mut done = 0;
    while done < edits || ended.iter().any(|e| !e) {
        let now = t0.elapsed();
        for (i, f) in faults.iter().enumerate() {
            if !started[i] && now >= f.start {
                started[i] = true;
                begin(f, &mut members, &mut broker, &mut broker_down);
            }
            if started[i] && !ended[i] && now >= f.end {
                ended[i] = true;
                finish(f, &mut members, &mut broker, &mut broker_down);
            }
        }
        if done < edits && now >= EDIT_EVERY * done as u32 {
            if rng.below(4) < 3 {
                master_catalog.random_ops(&master_root, 1, rng.next_u64());
            } else {
                second.edit(&b_root, &mut rng);
            }
            done += 1;
        }
        std::thread::sleep(Duration::from_millis(5)); // the workload's pace, not a wait
    }

    // Everything healed and running again.
    if broker_down {
        broker.restart();
    }
    for m in members.iter_mut() {
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
    let healed = Instant::now();
    let nodes: Vec<&Node> = members.iter().map(|m| &m.node).collect();
    macro_rules! fail {
        ($($arg:tt)*) => {
            panic!(
                "{}\n{plan}\n{}\n{}",
                format!($($arg)*),
                logs_of(&nodes),
                broker.log_contents()
            )
        };
    }

    // Quiescence: the applying nodes agree, and hold every file the pure master alone edits
    // as the master has it.
    let b_only: BTreeSet<String> = second.touched.clone();
    let check = || -> Result<(), String> {
        let trees: Vec<BTreeMap<String, [u8; 32]>> = members
            .iter()
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
    let mut last = Err(String::new());
    while healed.elapsed() < QUIESCE {
        last = check();
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50)); // polling for the condition
    }
    if let Err(why) = last {
        fail!("no quiescence within {QUIESCE:?} after the faults: {why}");
    }
    println!(
        "chaos seed {seed}: converged {:.1} s after the last fault healed",
        healed.elapsed().as_secs_f64()
    );

    // No temp file anywhere; no panic in any log.
    for m in &members {
        let temps = temp_files(m.data.path());
        if !temps.is_empty() {
            fail!("{}: temp files left: {temps:?}", m.node.config().id);
        }
        if m.node.log_contents().contains("panicked") {
            fail!("{} panicked", m.node.config().id);
        }
    }
    // Every reload saw resolving references (a half-applied catalog never reached GeoServer).
    let final_problems = catalog_problems(members[2].data.path());
    for m in &members[1..] {
        let gs = m.gs.as_ref().unwrap();
        for r in gs.successful_reloads() {
            let extra: Vec<&String> = r
                .problems
                .iter()
                .filter(|p| !final_problems.contains(*p))
                .collect();
            if !extra.is_empty() {
                fail!(
                    "{}: a reload saw an inconsistent catalog: {extra:?}",
                    m.node.config().id
                );
            }
        }
    }
    // Outboxes drained, every node online (the statuses, from the broker).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let config = members[0].node.config_path();
        let out = run(
            &["status", "--json", "-c", config.to_str().unwrap()],
            "warn",
        );
        let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        let statuses = report["nodes"].as_array().cloned().unwrap_or_default();
        let settled = statuses.len() == members.len()
            && statuses
                .iter()
                .all(|n| n["online"] == true && n["outbox"] == 0);
        if settled {
            break;
        }
        if Instant::now() > deadline {
            fail!("outboxes not drained or nodes offline: {}", out.stdout);
        }
        std::thread::sleep(Duration::from_millis(500)); // polling the broker's statuses
    }
}

fn begin(f: &Fault, members: &mut [Member], broker: &mut Mosquitto, broker_down: &mut bool) {
    let m = &mut members[f.target];
    match f.kind {
        Kind::Kill => m.node.kill9(),
        Kind::Broker if !*broker_down => {
            broker.kill9();
            *broker_down = true;
        }
        Kind::Broker => {}
        Kind::Latency => m.proxy.set(Faults {
            latency: Duration::from_millis(200),
            jitter: Duration::from_millis(200),
            ..m.proxy.faults()
        }),
        Kind::Reset => m.proxy.reset_all(),
        Kind::Blackhole => m.proxy.set(Faults {
            blackhole: true,
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
    }
}

fn finish(f: &Fault, members: &mut [Member], broker: &mut Mosquitto, broker_down: &mut bool) {
    let m = &mut members[f.target];
    match f.kind {
        Kind::Kill if !m.node.is_running() => m.node.restart(),
        Kind::Kill => {}
        Kind::Broker if *broker_down => {
            broker.restart();
            *broker_down = false;
        }
        Kind::Broker => {}
        Kind::Latency | Kind::Blackhole | Kind::Refuse => m.proxy.heal(),
        Kind::Reset => {}
        Kind::GsError => m.gs.as_ref().unwrap().set_status(200),
        Kind::GsDown => m.gs.as_ref().unwrap().set_down(false),
        Kind::GsHang => m.gs.as_ref().unwrap().set_delay(Duration::ZERO),
    }
}
