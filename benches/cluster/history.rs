//! The `history` section (issue 16): what keeping the history costs. On the same tree with the
//! history off, then on: the time from a layer's change on the master to a slave's disk (median
//! and p99 of `trials`), and the catch-up of a slave that missed 10,000 changes (the catch-up
//! figure of the recovery section); with it on, what the history then takes on the master and on
//! the slave. Then a month of a busy site's edits (the generator's catalog edits, one GeoServer
//! save after another) and the history's size after it; and `gscluster log` over a history of
//! 100,000 changes, written into a state directory with the history's own code.
//!
//! Last, the catch-up again, off and on in turn on two clusters alive side by side, `pairs`
//! times each (`GSCLUSTER_BENCH_HISTORY=pairs` runs only that).
//!
//! Only run when named (`GSCLUSTER_BENCH_ONLY=history`).

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::support::cluster::Cluster;
use super::support::generator::Spec;
use super::support::node::NodeConfig;
use super::support::run::run;
use super::{
    bootstrap_figure, catchup_figure, configure, Changer, Opts, Report, Stats, PRODUCT_QUIET_MS,
};

pub struct HistoryOpts {
    pub trials: usize,
    /// (file changes the stopped slave misses, files per burst).
    pub catchup: (usize, usize),
    /// GeoServer saves in "a month of a busy site".
    pub month_edits: usize,
    /// Changes in the history `log` reads.
    pub log_groups: u64,
    /// The tree an empty slave bootstraps from, with the history off and on.
    pub bootstrap: Spec,
    /// Catch-ups repeated on two clusters alive side by side, off and on in turn (the disk's
    /// mood then weighs on both alike).
    pub pairs: usize,
}

const TIMEOUT: Duration = Duration::from_secs(120);

pub fn history_figures(opts: &Opts, h: &HistoryOpts, report: &mut Report) {
    // `GSCLUSTER_BENCH_HISTORY=pairs`: only the catch-ups in turn.
    if std::env::var("GSCLUSTER_BENCH_HISTORY").is_ok_and(|v| v == "pairs") {
        return catchup_pairs(opts, h, report);
    }
    let mut latency = Vec::new();
    let mut catchup = Vec::new();
    let mut bootstrap = Vec::new();
    for on in [false, true] {
        let tag = if on { "on" } else { "off" };
        eprintln!(
            "== history {tag}: master + 1 slave on {} layers",
            opts.layers()
        );
        let binary = opts.binary.clone();
        let configure_node = move |cfg: &mut NodeConfig| {
            configure(cfg, &binary, PRODUCT_QUIET_MS);
            if !on {
                cfg.history = vec!["enabled = false".into()];
            }
        };
        let mut c = Cluster::start_with(&opts.spec, 23, 1, configure_node);
        settle(&[&c.master, &c.slaves[0].node], on);
        let mut changer = Changer::new(c.master_data.path(), &c.catalog.layers);
        let s = change_latency(&c, &mut changer, h.trials);
        report.add(
            &format!("history_{tag}_latency_median_ms"),
            &format!("history {tag}: change → slave's disk, median / p99 (ms)"),
            format!("{:.1} / {:.1}", s.median, s.p99),
            format!(
                "{} layer.xml changes one after another on {} layers",
                s.n,
                opts.layers()
            ),
        );
        latency.push(s.median);
        let mut made = 0u64;
        let key = format!("history_{tag}_");
        let (n, burst) = h.catchup;
        catchup_figure(&mut c, &mut changer, n, burst, &mut made, report, &key);
        let ms = report
            .value(&format!("{key}catchup_{n}_ms"))
            .and_then(|v| v.parse().ok());
        catchup.push(ms.unwrap_or(f64::NAN));
        if on {
            let (m, s) = (history_bytes(&c.master), history_bytes(&c.slaves[0].node));
            report.add(
                "history_after_catchup_bytes",
                "history after those changes: master / slave (MiB)",
                format!("{:.1} / {:.1}", mib(m), mib(s)),
                format!(
                    "{} changes of {} B layer.xml files made ({:.1} MiB); the history's base is the \
                     whole tree as it was ({} files)",
                    changer_changes(&changer),
                    made / (changer_changes(&changer).max(1) as u64),
                    mib(made),
                    super::support::node::replicated_tree(c.master_data.path()).len()
                ),
            );
            month_figure(&mut c, h.month_edits, report);
        }
        drop(c);
        // The bootstrap of an empty slave: every file fetched is also kept, deflated.
        let configure_node = {
            let binary = opts.binary.clone();
            move |cfg: &mut NodeConfig| {
                configure(cfg, &binary, PRODUCT_QUIET_MS);
                if !on {
                    cfg.history = vec!["enabled = false".into()];
                }
            }
        };
        let c = Cluster::start_with(&h.bootstrap, 29, 0, configure_node.clone());
        settle(&[&c.master], on);
        let key = format!("history_{tag}_");
        let who = format!("history {tag}: ");
        let (took, _) = bootstrap_figure(&c, &configure_node, report, &key, &who, None);
        bootstrap.push(took.as_secs_f64() * 1000.0);
    }
    let slower = |v: &[f64]| (v[1] / v[0] - 1.0) * 100.0;
    report.add(
        "history_latency_cost_percent",
        "history on vs off: change latency, median (% slower)",
        format!("{:+.1}", slower(&latency)),
        "goal ≤ 10 %",
    );
    report.add(
        "history_catchup_cost_percent",
        &format!(
            "history on vs off: catch-up of {} changes (% slower)",
            h.catchup.0
        ),
        format!("{:+.1}", slower(&catchup)),
        "goal ≤ 10 %",
    );
    report.add(
        "history_bootstrap_cost_percent",
        "history on vs off: bootstrap of an empty slave (% slower)",
        format!("{:+.1}", slower(&bootstrap)),
        "no goal set; the history keeps every file it fetches",
    );
    log_figures(opts, h.log_groups, report);
    if h.pairs > 0 {
        catchup_pairs(opts, h, report);
    }
}

/// The catch-up, off and on in turn on two clusters alive side by side: the median of each
/// side, and the ratio.
fn catchup_pairs(opts: &Opts, h: &HistoryOpts, report: &mut Report) {
    eprintln!("== history: {} catch-ups off and on in turn", h.pairs);
    // Controls of the comparison itself (`GSCLUSTER_BENCH_HISTORY_SIDES`): `on-first` makes the
    // cluster with the history on first, `aa` runs both sides with it off (what differs then
    // is only which cluster it is).
    let sides_mode = std::env::var("GSCLUSTER_BENCH_HISTORY_SIDES").unwrap_or_default();
    let (order, history_on): ([usize; 2], [bool; 2]) = match sides_mode.as_str() {
        "on-first" => ([1, 0], [false, true]),
        "aa" => ([0, 1], [false, false]),
        _ => ([0, 1], [false, true]),
    };
    if !sides_mode.is_empty() {
        eprintln!("   sides: {sides_mode} (history on: {history_on:?}, made in order {order:?})");
    }
    let mut made: Vec<(usize, (Cluster, Changer))> = order
        .into_iter()
        .map(|side| {
            let on = history_on[side];
            let binary = opts.binary.clone();
            let configure_node = move |cfg: &mut NodeConfig| {
                configure(cfg, &binary, PRODUCT_QUIET_MS);
                if !on {
                    cfg.history = vec!["enabled = false".into()];
                }
            };
            let c = Cluster::start_with(&opts.spec, 31 + side as u64, 1, configure_node);
            settle(&[&c.master, &c.slaves[0].node], on);
            let changer = Changer::new(c.master_data.path(), &c.catalog.layers);
            (side, (c, changer))
        })
        .collect();
    made.sort_by_key(|(side, _)| *side);
    let mut sides: Vec<(Cluster, Changer)> = made.into_iter().map(|(_, s)| s).collect();
    let (n, burst) = h.catchup;
    // Per side: the time, the slave's CPU time and its disk writes of each catch-up.
    let figures = ["ms", "cpu_ms", "disk_mib"];
    let mut got: [[Vec<f64>; 3]; 2] = Default::default();
    for i in 0..h.pairs {
        // Each side goes first in every other pair: a catch-up creates and deletes thousands
        // of files, and ext4 then skips the inodes it freed in the last minutes when it
        // allocates new ones, so the side that comes second pays more in the kernel (measured
        // with perf: 240 ms more in ext4's inode allocation for the second of a pair).
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let (c, changer) = &mut sides[side];
            let key = format!("history_pair{i}_{}_", ["off", "on"][side]);
            let mut made = 0u64;
            catchup_figure(c, changer, n, burst, &mut made, report, &key);
            for (f, figure) in figures.iter().enumerate() {
                let v = report.value(&format!("{key}catchup_{n}_{figure}"));
                got[side][f].push(v.and_then(|v| v.parse().ok()).unwrap_or(f64::NAN));
            }
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let [off, on] = &got;
    // Each pair's ratio too: the two sides of a pair ran back to back, so a slower stretch
    // of the shared disk weighs on both.
    let ratios: Vec<f64> = (on[0].iter().zip(&off[0]))
        .map(|(a, b)| (a / b - 1.0) * 100.0)
        .collect();
    report.add(
        "history_catchup_pairs_cost_percent",
        &format!(
            "history on vs off: catch-up of {n} changes, {} in turn, medians (% slower)",
            h.pairs
        ),
        format!("{:+.1}", (median(&on[0]) / median(&off[0]) - 1.0) * 100.0),
        format!(
            "off: {} ms; on: {} ms (in turn); each pair's difference: {} %, median {:+.1} %; \
             goal ≤ 10 %",
            list(&off[0]),
            list(&on[0]),
            (ratios.iter().map(|r| format!("{r:+.0}")))
                .collect::<Vec<_>>()
                .join(", "),
            median(&ratios),
        ),
    );
    report.add(
        "history_catchup_pairs_cpu_percent",
        &format!("history on vs off: the slave's CPU time for a catch-up of {n} changes, medians (% more)"),
        format!("{:+.1}", (median(&on[1]) / median(&off[1]) - 1.0) * 100.0),
        format!(
            "off: {} ms; on: {} ms (user + system, the process's start included)",
            list(&off[1]),
            list(&on[1])
        ),
    );
    report.add(
        "history_catchup_pairs_disk_percent",
        &format!("history on vs off: bytes the slave wrote to the disk for a catch-up of {n} changes, medians (% more)"),
        format!("{:+.1}", (median(&on[2]) / median(&off[2]) - 1.0) * 100.0),
        format!(
            "off: {} MiB; on: {} MiB (/proc/PID/io write_bytes: files, state and history)",
            list(&off[2]),
            list(&on[2])
        ),
    );
}

/// Let freshly started nodes finish what a start does (a slave's bootstrap, with the history
/// on the master's first scan and the tree it keeps as its base) and the disk write back what
/// the generator and they wrote, before anything is timed: with the history on, its base
/// kept; a node quiet in its log for 3 s; then one `sync`.
fn settle(nodes: &[&super::support::node::Node], on: bool) {
    for node in nodes {
        let deadline = Instant::now() + TIMEOUT * 5;
        while on && !node.log_contents().contains("history: began with") {
            assert!(Instant::now() < deadline, "{}: no base", node.config().id);
            sleep(Duration::from_millis(100));
        }
        super::wait_log_quiet(node, Duration::from_secs(3), TIMEOUT * 5);
    }
    let _ = std::process::Command::new("sync").status();
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

fn changer_changes(c: &Changer) -> usize {
    c.next
}

/// One layer.xml change after another: time until the slave's file holds it.
fn change_latency(c: &Cluster, changer: &mut Changer, trials: usize) -> Stats {
    let slave = c.slaves[0].dir().to_path_buf();
    let mut times = Vec::new();
    for _ in 0..trials {
        let t0 = Instant::now();
        let (rel, _) = changer.change();
        let want = fs::read(c.master_data.path().join(&rel)).unwrap();
        while fs::read(slave.join(&rel)).ok().as_ref() != Some(&want) {
            assert!(t0.elapsed() < TIMEOUT, "{rel} not replicated\n{}", c.logs());
            sleep(Duration::from_micros(500));
        }
        times.push(t0.elapsed());
        sleep(Duration::from_millis(100));
    }
    Stats::of(&times)
}

/// What a node's history keeps, from `gscluster status --json` (its own row).
fn history_bytes(node: &super::support::node::Node) -> u64 {
    let config = node.config_path();
    let id = node.config().id.clone();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r = run(
            &["status", "--json", "-c", config.to_str().unwrap()],
            "warn",
        );
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_default();
        let bytes = (v["nodes"].as_array().into_iter().flatten())
            .find(|n| n["node"] == id.as_str())
            .and_then(|n| n["history"]["bytes"].as_u64());
        if let Some(b) = bytes {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "no history in {id}'s status: {}{}",
            r.stdout,
            r.stderr
        );
        sleep(Duration::from_millis(200));
    }
}

/// A month of a busy site: `edits` GeoServer saves (the generator's random catalog edits: layers
/// added, changed, renamed and deleted, stores, styles, groups, workspaces), each waited for on
/// the slave; the history's growth on both nodes.
fn month_figure(c: &mut Cluster, edits: usize, report: &mut Report) {
    eprintln!("== history: a month of {edits} catalog edits");
    let (m0, s0) = (history_bytes(&c.master), history_bytes(&c.slaves[0].node));
    let root = c.master_data.path().to_path_buf();
    let t0 = Instant::now();
    let mut ops = 0;
    for i in 0..edits {
        ops += c.catalog.random_ops(&root, 1, 1000 + i as u64);
        // One save at a time, as an administrator makes them: wait for the master's Delta.
        sleep(Duration::from_millis(40));
    }
    c.converge(TIMEOUT);
    let (m1, s1) = (history_bytes(&c.master), history_bytes(&c.slaves[0].node));
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / edits as f64 / 1024.0;
    report.add(
        "history_month_bytes",
        &format!("a month of {edits} catalog edits: history growth, master / slave (MiB)"),
        format!("{:.1} / {:.1}", mib(m1.saturating_sub(m0)), mib(s1.saturating_sub(s0))),
        format!(
            "{ops} operations in {:.0} s; {:.1} / {:.1} KiB per edit; total kept now {:.1} / {:.1} MiB",
            t0.elapsed().as_secs_f64(),
            per(m0, m1),
            per(s0, s1),
            mib(m1),
            mib(s1)
        ),
    );
}

/// `gscluster log` on a node whose history holds `groups` changes (2 files each, paths of a
/// 10,000-layer tree), written with the history's own code into a fresh state directory: the
/// default (50 newest lines), everything as JSON, and one path's changes (a full walk).
fn log_figures(opts: &Opts, groups: u64, report: &mut Report) {
    eprintln!("== history: log over {groups} changes");
    let state = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write_history(state.path(), groups);
    let config = state.path().join("config.toml");
    // `log` never connects: the broker's address only has to be valid.
    let broker = vec!["mqtt://127.0.0.1:1".to_string()];
    let mut cfg = NodeConfig::new("logger", "master", data.path(), state.path(), broker);
    cfg.binary = Some(opts.binary.clone());
    fs::write(&config, cfg.to_toml()).unwrap();
    let c = config.to_str().unwrap();
    // Layer 77's folder (see `write_history`): changed once every 10,000 changes.
    let one = "workspaces/ws0/store0/layer77/layer.xml";
    for (key, what, args) in [
        (
            "log_default",
            "`log` (the 50 newest lines)",
            vec!["log", "-c", c],
        ),
        (
            "log_all_json",
            "`log --json --limit 0` (every line)",
            vec!["log", "--json", "--limit", "0", "-c", c],
        ),
        (
            "log_path",
            "`log PATH` (one file's changes)",
            vec!["log", "--limit", "0", one, "-c", c],
        ),
        (
            "log_node",
            "`log --node ID` (a node that made none)",
            vec!["log", "--node", "gs-b", "-c", c],
        ),
    ] {
        let mut times = Vec::new();
        let mut lines = 0;
        for _ in 0..5 {
            let t0 = Instant::now();
            let r = super::support::run::command("warn")
                .args(&args)
                .output()
                .expect("run gscluster log");
            times.push(t0.elapsed());
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            lines = r.stdout.iter().filter(|&&b| b == b'\n').count();
        }
        let s = Stats::of(&times);
        report.add(
            &format!("history_{key}_ms"),
            &format!("{what} over {groups} changes (ms)"),
            format!("{:.0}", s.median),
            format!(
                "median of 5 (min {:.0}, max {:.0}); {lines} lines{}",
                s.min,
                s.max,
                if key == "log_all_json" {
                    "; bounded by what it prints"
                } else {
                    "; goal ≤ 200 ms"
                }
            ),
        );
    }
}

/// A state directory whose history holds `groups` changes of 2 files each.
fn write_history(dir: &Path, groups: u64) {
    use gscluster::history::{write, Change, Group, Kind};
    use gscluster::hlc::Version;
    // A node's state as its first start makes it, then the history written into it.
    drop(gscluster::state::State::open(dir).unwrap());
    let db = redb::Database::open(dir.join("state.redb")).unwrap();
    let t0 = gscluster::clock::now_ms() - groups * 1000;
    let mut id = 0;
    while id < groups {
        let txn = db.begin_write().unwrap();
        let mut batch = Vec::new();
        let mut contents = std::collections::BTreeMap::new();
        for _ in 0..1000.min(groups - id) {
            let layer = id % 10_000;
            let folder = format!(
                "workspaces/ws{}/store{}/layer{layer}",
                layer / 1000,
                layer / 100 % 10
            );
            let changes = ["layer.xml", "featuretype.xml"]
                .iter()
                .map(|f| {
                    let body = format!(
                        "<layer><name>layer{layer}</name><title>edit {id}</title></layer>\n"
                    );
                    let sha: [u8; 32] =
                        <sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()).into();
                    contents.insert(sha, body.clone().into_bytes());
                    Change {
                        path: format!("{folder}/{f}"),
                        deleted: false,
                        version: Version::new((t0 + id * 1000) << 16, "gs-a"),
                        sha256: sha,
                        size: body.len() as u64,
                        before: Some([0; 32]),
                    }
                })
                .collect();
            batch.push(Group {
                time_ms: t0 + id * 1000,
                origin: "gs-a".into(),
                kind: Kind::Delta { seq: id + 1 },
                changes,
            });
            id += 1;
        }
        write(&txn, &batch, &contents, &Default::default()).unwrap();
        txn.commit().unwrap();
    }
}
