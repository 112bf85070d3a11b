//! Cluster benchmark: real `gscluster` processes on loopback (a master with the embedded broker,
//! two slaves, each slave with the stand-in GeoServer of the tests), measured from the outside.
//!
//! Figures: change → all slaves applied (median / p99), reloads per 100-change burst, binary size,
//! start-up time, idle RSS and idle CPU. They are printed as a Markdown table and written to
//! `<target dir>/bench-results.md` (plus one JSON object per line in `bench-results.jsonl`).
//!
//! ```sh
//! cargo build --release && cargo test --bench cluster    # full run, about three minutes
//! cargo test --bench cluster -- --quick                  # tiny sizes, asserts nothing about speed
//! ```
//!
//! The binary under test is `$GSCLUSTER_BENCH_BIN`, else `<target dir>/release/gscluster` (what a
//! user ships), else the binary Cargo built for this bench, with a warning. `cargo test`, not
//! `cargo bench`: the latter rebuilds `target/release/gscluster` itself with the
//! dev-dependencies' features unified in (proptest's regex-syntax), a bigger binary than the one
//! `cargo build --release` ships. The harness only polls files and /proc, so its own profile does
//! not matter much. Environment:
//! `GSCLUSTER_BENCH_QUICK=1` (same as `--quick`), `GSCLUSTER_BENCH_TRIALS=N` (latency trials,
//! at least 20 outside quick mode; default 50).

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use support::cluster::Cluster;
use support::generator::{generate, Spec};
use support::geoserver::catalog_problems;
use support::node::{free_port, replicated_tree, Node, NodeConfig};

/// The product's defaults (src/config.rs), so the nodes run the configuration users get.
const PRODUCT_QUIET_MS: u64 = 30;
const PRODUCT_RESCAN_S: u64 = 60;
const PRODUCT_RELOAD_QUIET_MS: u64 = 1000;
const PRODUCT_RELOAD_MAX_DELAY_MS: u64 = 10_000;
/// The product's default log filter, plus the master's trace line for a rescan that found
/// nothing, so the idle figure can say whether a periodic rescan fell inside its window.
const RUST_LOG: &str = "info,gscluster::master=trace,rumqttd=warn,tracing=warn";
/// Any single wait longer than this is a failure, not a figure.
const TIMEOUT: Duration = Duration::from_secs(60);

struct Opts {
    quick: bool,
    trials: usize,
    burst_ops: usize,
    idle_settle: Duration,
    idle_window: Duration,
    startup_runs: usize,
    spec: Spec,
    binary: PathBuf,
    /// Where the binary comes from, for the report.
    binary_origin: String,
}

impl Opts {
    fn layers(&self) -> usize {
        self.spec.workspaces * self.spec.stores_per_workspace * self.spec.layers_per_store
    }
}

/// One figure of the report.
struct Row {
    key: String,
    metric: String,
    value: String,
    note: String,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn add(&mut self, key: &str, metric: &str, value: impl ToString, note: impl ToString) {
        let row = Row {
            key: key.into(),
            metric: metric.into(),
            value: value.to_string(),
            note: note.to_string(),
        };
        eprintln!("  {:<55} {:>14}  {}", row.metric, row.value, row.note);
        self.rows.push(row);
    }

    fn markdown(&self) -> String {
        let mut out = String::from("| figure | value | notes |\n|---|---:|---|\n");
        for r in &self.rows {
            let _ = writeln!(out, "| {} | {} | {} |", r.metric, r.value, r.note);
        }
        out
    }

    fn json_lines(&self) -> String {
        let q = |s: &str| toml::Value::String(s.into()).to_string(); // a JSON-compatible quote
        let mut out = String::new();
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{{\"key\": {}, \"metric\": {}, \"value\": {}, \"note\": {}}}",
                q(&r.key),
                q(&r.metric),
                q(&r.value),
                q(&r.note)
            );
        }
        out
    }
}

fn main() {
    let mut quick = std::env::var("GSCLUSTER_BENCH_QUICK").is_ok_and(|v| v == "1");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "--bench" => {} // `cargo bench` passes it to harness-less benches
            other => eprintln!("cluster bench: ignoring argument {other:?}"),
        }
    }
    let trials = std::env::var("GSCLUSTER_BENCH_TRIALS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let (binary, binary_origin) = binary_under_test();
    let opts = if quick {
        Opts {
            quick,
            trials: trials.unwrap_or(3),
            burst_ops: 10,
            idle_settle: Duration::from_millis(500),
            idle_window: Duration::from_secs(2),
            startup_runs: 1,
            spec: Spec::small(),
            binary,
            binary_origin,
        }
    } else {
        Opts {
            quick,
            trials: trials.unwrap_or(50).max(20),
            burst_ops: 100,
            idle_settle: Duration::from_secs(5),
            idle_window: Duration::from_secs(30),
            startup_runs: 5,
            // 10 × 10 × 10 = 1,000 layers, ~4,300 replicated files.
            spec: Spec {
                workspaces: 10,
                stores_per_workspace: 10,
                layers_per_store: 10,
                global_styles: 20,
                layer_groups: 20,
            },
            binary,
            binary_origin,
        }
    };
    let started = Instant::now();
    let mut report = Report::default();
    eprintln!(
        "cluster bench{}: {} on a tree of {} layers",
        if quick {
            " (quick: sizes are tiny, figures mean nothing)"
        } else {
            ""
        },
        opts.binary.display(),
        opts.layers()
    );

    binary_figures(&opts, &mut report);
    startup_figures(&opts, &mut report);
    // Product default last: its cluster then serves the burst and the idle figures too.
    for quiet_ms in [20, PRODUCT_QUIET_MS] {
        cluster_figures(&opts, quiet_ms, &mut report);
    }

    let elapsed = started.elapsed();
    let md = render(&opts, &report, elapsed);
    println!("{md}");
    let target = target_dir();
    let stem = if quick {
        "bench-results-quick"
    } else {
        "bench-results"
    };
    let md_path = target.join(format!("{stem}.md"));
    fs::write(&md_path, &md).unwrap();
    fs::write(target.join(format!("{stem}.jsonl")), report.json_lines()).unwrap();
    eprintln!("written {} in {elapsed:.1?}", md_path.display());
}

/// `$GSCLUSTER_BENCH_BIN`, else the release binary next to Cargo's, else Cargo's (warned).
fn binary_under_test() -> (PathBuf, String) {
    if let Some(bin) = std::env::var_os("GSCLUSTER_BENCH_BIN") {
        return (bin.into(), "from $GSCLUSTER_BENCH_BIN".into());
    }
    let cargo_bin = PathBuf::from(env!("CARGO_BIN_EXE_gscluster"));
    let release = target_dir().join("release").join("gscluster");
    if release.is_file() {
        let built = mtime(&release);
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let newest_source =
            newest_mtime(&manifest.join("src")).max(mtime(&manifest.join("Cargo.lock")));
        if release == cargo_bin {
            eprintln!(
                "WARNING: {} was just rebuilt by `cargo bench` with the dev-dependencies' features \
                 unified in (it differs from what `cargo build --release` ships); to measure the \
                 shipped binary run `cargo build --release && cargo test --bench cluster`",
                release.display()
            );
        }
        if newest_source > built {
            eprintln!(
                "WARNING: {} is older than the sources; run `cargo build --release` first",
                release.display()
            );
        }
        let origin = if release == cargo_bin {
            "rebuilt by `cargo bench`: NOT the shipped binary"
        } else if newest_source > built {
            "`cargo build --release`, OLDER than the sources"
        } else {
            "`cargo build --release`"
        };
        (release, origin.into())
    } else {
        eprintln!(
            "WARNING: no release binary at {}; measuring {} instead (run `cargo build --release`)",
            release.display(),
            cargo_bin.display()
        );
        (
            cargo_bin,
            "the bench build's own binary (no release binary found)".into(),
        )
    }
}

/// Cargo's target directory: the one holding the binary Cargo built for this bench.
fn target_dir() -> PathBuf {
    let cargo_bin = Path::new(env!("CARGO_BIN_EXE_gscluster"));
    cargo_bin.parent().unwrap().parent().unwrap().to_path_buf()
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = mtime(dir);
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            mtime(&path)
        };
        newest = newest.max(t);
    }
    newest
}

// ---------------------------------------------------------------------------------------------
// 3. Binary size and start-up time

fn binary_figures(opts: &Opts, report: &mut Report) {
    eprintln!("== binary");
    let bytes = fs::read(&opts.binary).unwrap();
    let sections = elf_section_names(&bytes);
    let symbols = sections.iter().any(|s| s == ".symtab");
    let debug = sections.iter().any(|s| s.starts_with(".debug_"));
    let stripped = match (symbols, debug) {
        (false, false) => "stripped (no .symtab, no .debug_*)",
        (true, false) => "not stripped: .symtab present, no debug info",
        (_, true) => "not stripped: .debug_* sections present",
    };
    report.add(
        "binary_bytes",
        "binary size (bytes)",
        bytes.len(),
        format!("{:.2} MiB; {stripped}", bytes.len() as f64 / 1048576.0),
    );
}

/// Section names of a little-endian ELF64 file (empty for anything else).
fn elf_section_names(b: &[u8]) -> Vec<String> {
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return vec![];
    }
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    if shnum == 0 || header(shnum) > b.len() {
        return vec![];
    }
    let strtab = u64_at(header(shstrndx) + 0x18);
    (0..shnum)
        .map(|i| {
            let start = strtab + u32_at(header(i));
            let end = (start..b.len()).find(|&j| b[j] == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[start.min(end)..end]).into_owned()
        })
        .collect()
}

/// Master with the embedded broker: process start → "connected to broker" in its log, on a fresh
/// state dir (first start) and again on the state that start left (restart).
fn startup_figures(opts: &Opts, report: &mut Report) {
    eprintln!("== start-up");
    for (label, spec) in [("empty-ish", tiny_spec()), ("tree", opts.spec.clone())] {
        let data = tempfile::tempdir().unwrap();
        generate(data.path(), &spec, 3);
        let layers = spec.workspaces * spec.stores_per_workspace * spec.layers_per_store;
        let (mut first, mut again, mut listening) = (vec![], vec![], vec![]);
        let mut refused = 0;
        for _ in 0..opts.startup_runs {
            let state = tempfile::tempdir().unwrap();
            let port = free_port();
            let mut cfg = NodeConfig::new(
                "gs-start",
                "master",
                data.path(),
                state.path(),
                vec![format!("mqtt://127.0.0.1:{port}")],
            );
            cfg.broker_listen = Some(format!("127.0.0.1:{port}"));
            configure(&mut cfg, &opts.binary, PRODUCT_QUIET_MS);
            let t0 = Instant::now();
            let mut node = Node::start(cfg);
            let [listen, connect] = wait_log_count(
                &node,
                ["embedded broker listening", "connected to broker"],
                1,
                t0,
            );
            listening.push(listen);
            first.push(connect);
            node.stop();
            let t0 = Instant::now();
            node.restart();
            again.push(wait_log_count(&node, ["connected to broker"], 2, t0)[0]);
            node.stop();
            // A dial before the embedded broker listens costs one reconnect back-off.
            refused += node.log_contents().matches("unreachable").count();
        }
        let what = if label == "tree" {
            format!("{layers} layers")
        } else {
            format!("{layers} layers ({label})")
        };
        for (key, when, times) in [
            ("first", "fresh state", &first),
            ("restart", "restart", &again),
        ] {
            let s = Stats::of(times);
            let mut note = format!("median of {}; min {:.1}, max {:.1}", s.n, s.min, s.max);
            if key == "first" {
                let l = Stats::of(&listening);
                let _ = write!(
                    note,
                    "; \"embedded broker listening\" after {:.1} ms (median); {refused} of {} \
                     starts logged a refused first dial to the own broker (then a 200 ms back-off)",
                    l.median,
                    2 * s.n
                );
            }
            report.add(
                &format!("startup_{key}_{label}_ms"),
                &format!("start-up to \"connected to broker\", {what}, {when} (ms)"),
                format!("{:.1}", s.median),
                note,
            );
        }
    }
}

fn tiny_spec() -> Spec {
    Spec {
        workspaces: 1,
        stores_per_workspace: 1,
        layers_per_store: 1,
        global_styles: 1,
        layer_groups: 0,
    }
}

/// Poll the node's log every millisecond until each needle occurs `n` times; the time since
/// `t0` at which each was first seen.
fn wait_log_count<const K: usize>(
    node: &Node,
    needles: [&str; K],
    n: usize,
    t0: Instant,
) -> [Duration; K] {
    let mut seen = [None; K];
    loop {
        let log = node.log_contents();
        for (needle, at) in needles.iter().zip(seen.iter_mut()) {
            if at.is_none() && log.matches(needle).count() >= n {
                *at = Some(t0.elapsed());
            }
        }
        if seen.iter().all(Option::is_some) {
            return seen.map(Option::unwrap);
        }
        assert!(
            node.is_running() && t0.elapsed() < TIMEOUT,
            "waiting for {needles:?} ×{n}:\n{log}"
        );
        sleep(Duration::from_millis(1));
    }
}

/// The configuration under test: product defaults except the master's quiet window.
fn configure(cfg: &mut NodeConfig, binary: &Path, quiet_ms: u64) {
    cfg.binary = Some(binary.to_path_buf());
    cfg.rust_log = Some(RUST_LOG.into());
    cfg.quiet_ms = quiet_ms;
    cfg.rescan_interval_s = PRODUCT_RESCAN_S;
    cfg.reload_quiet_ms = PRODUCT_RELOAD_QUIET_MS;
    cfg.reload_max_delay_ms = PRODUCT_RELOAD_MAX_DELAY_MS;
}

// ---------------------------------------------------------------------------------------------
// 1., 2. and 4.: one cluster per quiet window

fn cluster_figures(opts: &Opts, quiet_ms: u64, report: &mut Report) {
    eprintln!("== cluster, master quiet_ms = {quiet_ms}");
    let binary = opts.binary.clone();
    let mut c = Cluster::start_with(&opts.spec, 7, 2, move |cfg| {
        configure(cfg, &binary, quiet_ms)
    });
    let product = quiet_ms == PRODUCT_QUIET_MS;
    if product {
        idle_figures(opts, &c, report, "idle");
    }
    latency_figures(opts, &mut c, quiet_ms, report);
    if product {
        burst_figures(opts, &mut c, report);
        for (who, pid) in pids(&c) {
            let (rss, hwm) = (status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM"));
            report.add(
                &format!("rss_after_burst_{who}_kib"),
                &format!("RSS of the {who} after the burst (KiB)"),
                rss,
                format!("peak (VmHWM) {hwm} KiB"),
            );
        }
    }
}

fn pids(c: &Cluster) -> Vec<(&'static str, u32)> {
    vec![
        ("master", c.master.pid().expect("master running")),
        ("slave", c.slaves[0].node.pid().expect("slave running")),
    ]
}

/// Figure 1: write one new layer on the master; poll both slaves' copies of its layer.xml every
/// millisecond until they are byte-identical to the master's. Time = write start → last slave.
fn latency_figures(opts: &Opts, c: &mut Cluster, quiet_ms: u64, report: &mut Report) {
    let root = c.master_dir().to_path_buf();
    let workspaces = c.catalog.workspaces.len();
    let mut times = vec![];
    for i in 0..opts.trials {
        let name = format!("bench q{quiet_ms} layer {i}");
        let t0 = Instant::now();
        let touched = c.catalog.add_layer(&root, i % workspaces, 0, &name);
        let rel = touched
            .iter()
            .find(|p| p.ends_with("/layer.xml"))
            .expect("add_layer writes a layer.xml")
            .clone();
        let want = fs::read(root.join(&rel)).unwrap();
        let mut pending: Vec<PathBuf> = c.slave_dirs().iter().map(|d| d.join(&rel)).collect();
        while !pending.is_empty() {
            pending.retain(|p| fs::read(p).ok().as_ref() != Some(&want));
            if t0.elapsed() > TIMEOUT {
                panic!("{rel} not replicated after {TIMEOUT:?}\n{}", c.logs());
            }
            if !pending.is_empty() {
                sleep(Duration::from_millis(1));
            }
        }
        times.push(t0.elapsed());
        // Let the acks and the slaves' bookkeeping finish before the next change.
        sleep(Duration::from_millis(100));
    }
    let s = Stats::of(&times);
    let tree = format!("{} layers", opts.layers());
    report.add(
        &format!("latency_q{quiet_ms}_median_ms"),
        &format!("change → 2 slaves applied, quiet_ms {quiet_ms}, median (ms)"),
        format!("{:.1}", s.median),
        format!(
            "{} trials on {tree}; min {:.1}, mean {:.1}, max {:.1}",
            s.n, s.min, s.mean, s.max
        ),
    );
    report.add(
        &format!("latency_q{quiet_ms}_p99_ms"),
        &format!("change → 2 slaves applied, quiet_ms {quiet_ms}, p99 (ms)"),
        format!("{:.1}", s.p99),
        "nearest rank (with 50 trials: the maximum)",
    );
    let q = quiet_ms as f64;
    report.add(
        &format!("latency_q{quiet_ms}_median_minus_quiet_ms"),
        &format!("… minus the {quiet_ms} ms quiet window, median / p99 (ms)"),
        format!("{:.1} / {:.1}", s.median - q, s.p99 - q),
        "derived: the figures above minus quiet_ms, not measured separately",
    );
}

/// Figure 2: `burst_ops` random catalog edits at once; time to converge, and reloads per slave.
fn burst_figures(opts: &Opts, c: &mut Cluster, report: &mut Report) {
    let root = c.master_dir().to_path_buf();
    // Let the reloads the latency trials caused happen first, so they are not counted.
    settle_reloads(c, Instant::now());
    let applied_before: Vec<usize> = (c.slaves.iter())
        .map(|s| s.node.log_contents().matches("applied delta").count())
        .collect();
    let t0 = Instant::now();
    c.catalog.random_ops(&root, opts.burst_ops, 2024);
    let written = t0.elapsed();
    let master = replicated_tree(&root);
    let dirs = c.slave_dirs();
    while !dirs.iter().all(|d| replicated_tree(d) == master) {
        assert!(
            t0.elapsed() < TIMEOUT,
            "burst did not converge\n{}",
            c.logs()
        );
        sleep(Duration::from_millis(2));
    }
    let converged_at = Instant::now();
    let converged = t0.elapsed();
    settle_reloads(c, converged_at);
    let allowed = catalog_problems(&root);
    let mut reloads = vec![];
    let mut deltas = vec![];
    let mut half_state = 0;
    for (s, before) in c.slaves.iter().zip(applied_before) {
        let after_burst: Vec<_> = (s.gs.successful_reloads().into_iter())
            .filter(|r| r.at > t0)
            .collect();
        half_state += (after_burst.iter())
            .filter(|r| r.problems.iter().any(|p| !allowed.contains(p)))
            .count();
        reloads.push(after_burst.len().to_string());
        deltas.push((s.node.log_contents().matches("applied delta").count() - before).to_string());
    }
    report.add(
        "burst_converge_ms",
        &format!(
            "burst of {} random changes: write start → 2 slaves converged (ms)",
            opts.burst_ops
        ),
        converged.as_millis(),
        format!(
            "writing took {} ms; convergence polled by hashing the slaves' trees (~{} files)",
            written.as_millis(),
            master.len()
        ),
    );
    report.add(
        "burst_reloads_per_slave",
        &format!("reloads per slave for the {}-change burst", opts.burst_ops),
        reloads.join(", "),
        format!(
            "reload_quiet_ms {PRODUCT_RELOAD_QUIET_MS}, reload_max_delay_ms \
             {PRODUCT_RELOAD_MAX_DELAY_MS}; {half_state} reload(s) saw an unresolved reference"
        ),
    );
    report.add(
        "burst_deltas_per_slave",
        "deltas applied per slave for the burst",
        deltas.join(", "),
        "count of \"applied delta\" log lines",
    );
}

/// Wait until each slave has answered a reload started after `after` (or the longest the
/// coalescing can take has passed), then a little more for stragglers.
fn settle_reloads(c: &Cluster, after: Instant) {
    let limit = Duration::from_millis(PRODUCT_RELOAD_MAX_DELAY_MS + PRODUCT_RELOAD_QUIET_MS + 3000);
    while after.elapsed() < limit
        && !(c.slaves.iter()).all(|s| s.gs.successful_reloads().iter().any(|r| r.at > after))
    {
        sleep(Duration::from_millis(20));
    }
    sleep(Duration::from_millis(1500));
}

/// Figure 4: RSS and CPU of the master (with broker) and a slave after the cluster has been idle.
fn idle_figures(opts: &Opts, c: &Cluster, report: &mut Report, key: &str) {
    sleep(opts.idle_settle);
    let pids = pids(c);
    let rescans_before = rescans(&c.master);
    let idle_scans_before = c.master.log_contents().matches("change: no change").count();
    let ticks_before: Vec<u64> = pids.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
    let threads_before: Vec<_> = pids.iter().map(|(_, pid)| thread_ticks(*pid)).collect();
    let t0 = Instant::now();
    sleep(opts.idle_window);
    let ticks_after: Vec<u64> = pids.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
    let threads_after: Vec<_> = pids.iter().map(|(_, pid)| thread_ticks(*pid)).collect();
    let window = t0.elapsed().as_secs_f64();
    let hz = clock_ticks_per_second();
    let rescan_lines: Vec<String> = rescans(&c.master).split_off(rescans_before.len());
    let idle_scans =
        c.master.log_contents().matches("change: no change").count() - idle_scans_before;
    let files = replicated_tree(c.master_dir()).len();
    let busiest = |i: usize| -> String {
        let mut busy: Vec<(u64, String)> = (threads_after[i].iter())
            .map(|(tid, (name, t))| {
                let before = threads_before[i].get(tid).map_or(0, |(_, b)| *b);
                (t - before, format!("{name} ({tid})"))
            })
            .filter(|(t, _)| *t > 0)
            .collect();
        busy.sort_by(|a, b| b.cmp(a));
        let top: Vec<String> = (busy.iter().take(3))
            .map(|(t, name)| format!("{name} {:.2} s", *t as f64 / hz as f64))
            .collect();
        top.join(", ")
    };
    for (i, (((who, pid), before), after)) in
        pids.iter().zip(ticks_before).zip(ticks_after).enumerate()
    {
        let rss = status_kb(*pid, "VmRSS");
        report.add(
            &format!("{key}_rss_{who}_kib"),
            &format!("idle RSS of the {who} (KiB)"),
            rss,
            format!(
                "{:.1} MiB; {} layers, {files} replicated files{}",
                rss as f64 / 1024.0,
                opts.layers(),
                if *who == "master" {
                    ", embedded broker"
                } else {
                    ""
                }
            ),
        );
        let cpu = (after - before) as f64 / hz as f64;
        let mut note = format!(
            "{:.2} s utime+stime in a {window:.1} s window × 60 / window; resolution 1/{hz} s",
            cpu
        );
        if after > before {
            let _ = write!(note, "; busiest threads: {}", busiest(i));
        }
        if *who == "master" {
            let _ = write!(
                note,
                "; {idle_scans} scans woken by a filesystem event found no change; {} periodic \
                 rescan(s) (every {PRODUCT_RESCAN_S} s) in the window{}",
                rescan_lines.len(),
                if rescan_lines.is_empty() {
                    String::new()
                } else {
                    format!(": {}", rescan_lines.join("; "))
                }
            );
        }
        report.add(
            &format!("{key}_cpu_{who}_s_per_min"),
            &format!("idle CPU of the {who} (CPU s per minute)"),
            format!("{:.3}", cpu * 60.0 / window),
            note,
        );
    }
}

/// The master's "periodic rescan: no change (N files, T)" trace lines, as "(N files, T)".
fn rescans(master: &Node) -> Vec<String> {
    (master.log_contents().lines())
        .filter_map(|l| {
            l.split_once("periodic rescan: no change ")
                .map(|(_, r)| r.to_string())
        })
        .collect()
}

/// utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    parse_ticks(&fs::read_to_string(format!("/proc/{pid}/stat")).unwrap())
}

fn parse_ticks(stat: &str) -> u64 {
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is fields[N - 3].
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Thread id → (name, utime + stime in clock ticks) for every thread of a process.
fn thread_ticks(pid: u32) -> std::collections::BTreeMap<u32, (String, u64)> {
    let mut out = std::collections::BTreeMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let name = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()].to_string();
        out.insert(tid, (name, parse_ticks(&stat)));
    }
    out
}

/// A `kB` line of /proc/PID/status, e.g. VmRSS.
fn status_kb(pid: u32, key: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    (status.lines())
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

// ---------------------------------------------------------------------------------------------

/// Summary of durations, in milliseconds; percentiles by nearest rank.
struct Stats {
    n: usize,
    min: f64,
    median: f64,
    mean: f64,
    p99: f64,
    max: f64,
}

impl Stats {
    fn of(times: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let rank = |p: f64| ms[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Stats {
            n,
            min: ms[0],
            median: rank(0.5),
            mean: ms.iter().sum::<f64>() / n as f64,
            p99: rank(0.99),
            max: ms[n - 1],
        }
    }
}

fn render(opts: &Opts, report: &Report, elapsed: Duration) -> String {
    let mut out = String::from("# gscluster cluster benchmark\n\n");
    if opts.quick {
        out += "**Quick mode: tiny sizes and few trials; these figures are not benchmarks.**\n\n";
    }
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            (s.lines()).find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|x| x.1.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .map(|v| v.trim().trim_end_matches("kB").trim().to_string())
            })
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let commit = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "- machine: {cpu}, {cores} CPU(s) available, {:.1} GiB RAM, Linux {}",
        mem_kib as f64 / 1048576.0,
        kernel.trim()
    );
    let _ = writeln!(out, "- commit: {}", commit.trim());
    let _ = writeln!(
        out,
        "- binary: {} ({})",
        opts.binary.display(),
        opts.binary_origin
    );
    let _ = writeln!(
        out,
        "- command: `cargo build --release && cargo test --bench cluster{}`",
        if opts.quick { " -- --quick" } else { "" }
    );
    let _ = writeln!(
        out,
        "- cluster: 1 master (embedded broker) + 2 slaves, each slave with the tests' stand-in \
         GeoServer, all on loopback; tree of {} layers (generator Spec); product defaults \
         except where a row says otherwise (rescan {PRODUCT_RESCAN_S} s, reload_quiet_ms \
         {PRODUCT_RELOAD_QUIET_MS}, reload_max_delay_ms {PRODUCT_RELOAD_MAX_DELAY_MS})",
        opts.layers()
    );
    let _ = writeln!(out, "- run took {:.0} s\n", elapsed.as_secs_f64());
    out += &report.markdown();
    out
}
