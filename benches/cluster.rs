//! Cluster benchmark: real `gscluster` processes on loopback (a master with the embedded broker,
//! two slaves, each slave with the stand-in GeoServer of the tests), measured from the outside.
//!
//! Figures: change → all slaves applied (median / p99), reloads per 100-change burst, binary size,
//! start-up time, idle RSS and idle CPU; and, on a master + one slave, the catch-up of a slave
//! that was stopped while 1,000 and 10,000 changes were made, and the bootstrap of an empty slave
//! from 1,000 and 10,000 layers (time, reloads, whether the persistent session or a resync round
//! brought the changes). They are printed as a Markdown table and written to
//! `<target dir>/bench-results.md` (plus one JSON object per line in `bench-results.jsonl`).
//!
//! ```sh
//! cargo build --release && cargo test --bench cluster    # full run, about five minutes
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
//! at least 20 outside quick mode; default 50), `GSCLUSTER_BENCH_ONLY=a,b` (run only these
//! sections: `binary`, `startup`, `cluster`, `catchup`, `bootstrap`, `airgap`, `peers`,
//! `rolling`, `chaos`, `scale`; the results file then holds only their rows),
//! `GSCLUSTER_BENCH_LAYERS=1000,10000,100000` (the `scale` section's catalog sizes).
//!
//! The `peers` section (benches/cluster/peers.rs) runs the same scenarios — idle, bootstrap of an
//! empty target, one new layer, a burst of 1,000 new layers — against gscluster with 3 slaves,
//! lsyncd (`delay = 0` and its default delay) and an rsync + reload loop, each mirroring to 3
//! targets with the stand-in GeoServer, and prints the ratios peer / gscluster. It needs
//! `lsyncd`, `rsync` and `curl` on the PATH and says that it skipped them otherwise.
//!
//! The `rolling` section (benches/cluster/rolling.rs) publishes a new layer every 2 s for 2
//! minutes on the 10,000-layer tree to 4 slaves whose stand-in reloads cost what GeoServer's do,
//! with `max_concurrent_reloads = 0` and with the default, and reports the time not serving.
//!
//! The `chaos` section (benches/cluster/chaos.rs) is issue 14's chaos harness in its long mode:
//! seeded rounds of random faults on every broker setup this machine has, until 10,000 edits
//! and at least 100 faults of each kind, and reports divergences and convergence times. It runs
//! only when named (`GSCLUSTER_BENCH_ONLY=chaos`): it takes an hour or more.
//!
//! The `scale` section (benches/cluster/scale.rs) is issue 15's table: idle RSS, start-up, full
//! rescan, detection, bootstrap (beside `cp -r` + `sync`) and the catch-up of 10,000 changes at
//! each size of `GSCLUSTER_BENCH_LAYERS` (default 1,000, 10,000 and 100,000 layers). It runs
//! only when named (`GSCLUSTER_BENCH_ONLY=scale`).
//!
//! The `edge` section (benches/cluster/edge.rs) is issue 17's: the bytes a slave's link carries
//! (through the byte-counting proxy), compressed and not — bootstraps, a layer edit, a
//! catch-up, a bootstrap behind a slow link. It runs when named (`GSCLUSTER_BENCH_ONLY=edge`)
//! and in quick mode.
//!
//! The `history` section (benches/cluster/history.rs) is issue 16's: change latency and a
//! 10,000-change catch-up with the history off and on, the history's size after them and after a
//! month of catalog edits, and `gscluster log` over 100,000 changes. It runs only when named
//! (`GSCLUSTER_BENCH_ONLY=history`).

#[path = "cluster/airgap.rs"]
mod airgap;
#[path = "cluster/chaos.rs"]
mod chaos;
#[path = "cluster/edge.rs"]
mod edge;
#[path = "cluster/history.rs"]
mod history;
#[path = "cluster/peers.rs"]
mod peers;
#[path = "cluster/rolling.rs"]
mod rolling;
#[path = "cluster/scale.rs"]
mod scale;
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use support::cluster::Cluster;
use support::generator::{generate, Spec};
use support::geoserver::{catalog_problems, StandInGeoServer};
use support::node::{diff_summary, free_port, replicated_tree, Node, NodeConfig};

/// The product's defaults (src/config.rs), so the nodes run the configuration users get.
const PRODUCT_QUIET_MS: u64 = 20;
/// The product's default full-rescan interval for a watched data directory.
const PRODUCT_RESCAN_S: u64 = 600;
const PRODUCT_RELOAD_QUIET_MS: u64 = 1000;
const PRODUCT_RELOAD_MAX_DELAY_MS: u64 = 10_000;
/// The product's default log filter, plus the master's trace line for a rescan that found
/// nothing, so the idle figure can say whether a periodic rescan fell inside its window.
const RUST_LOG: &str =
    "info,gscluster::master=trace,gscluster::resync=debug,rumqttd=warn,tracing=warn,notify=warn";
/// Any single wait longer than this is a failure, not a figure.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The same for a whole catch-up or bootstrap, which may legitimately take longer.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);
/// The product's embedded broker log per topic filter (src/config.rs defaults).
const PRODUCT_SEGMENT_SIZE: u64 = 4 * 1024 * 1024;
const PRODUCT_SEGMENT_COUNT: u64 = 4;

struct Opts {
    quick: bool,
    trials: usize,
    burst_ops: usize,
    idle_settle: Duration,
    idle_window: Duration,
    startup_runs: usize,
    spec: Spec,
    /// Catch-up scenarios: (file changes the stopped slave misses, files written per burst).
    catchups: Vec<(usize, usize)>,
    /// Trees an empty slave bootstraps from; the first is `spec` (the catch-up cluster's master).
    bootstraps: Vec<Spec>,
    /// The peers section: gscluster, lsyncd and an rsync loop on the same scenarios.
    peers: peers::PeerOpts,
    /// The rolling section: real-time publishing on the bootstrap tree, reloads limited or not.
    rolling: rolling::RollingOpts,
    /// The chaos section (only when named).
    chaos: chaos::ChaosOpts,
    /// The scale section (only when named).
    scale: scale::ScaleOpts,
    /// The history section (only when named).
    history: history::HistoryOpts,
    /// The edge section (only when named; in quick mode always).
    edge: edge::EdgeOpts,
    /// Sections to run (`GSCLUSTER_BENCH_ONLY`), all when empty.
    only: Vec<String>,
    binary: PathBuf,
    /// Where the binary comes from, for the report.
    binary_origin: String,
}

impl Opts {
    fn layers(&self) -> usize {
        layers(&self.spec)
    }

    fn runs(&self, section: &str) -> bool {
        self.only.is_empty() || self.named(section)
    }

    /// Sections too long for the default run run only when named.
    fn named(&self, section: &str) -> bool {
        self.only.iter().any(|s| s == section)
    }
}

fn layers(spec: &Spec) -> usize {
    spec.workspaces * spec.stores_per_workspace * spec.layers_per_store
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
    /// Bounds a figure broke (see `Report::bound`): the run fails once the report is written.
    broken: Vec<String>,
}

impl Report {
    /// The value of the figure `key`, if measured.
    fn value(&self, key: &str) -> Option<&str> {
        (self.rows.iter().rev())
            .find(|r| r.key == key)
            .map(|r| r.value.as_str())
    }

    /// Check that figure `key` (a number) is at most `bound`, as a row of its own; a figure
    /// over it fails the run (after the report is written).
    fn bound(&mut self, key: &str, metric: &str, bound: f64, why: &str) {
        let Some(value) = self.value(key).and_then(|v| v.parse::<f64>().ok()) else {
            self.broken.push(format!("{metric}: not measured"));
            return;
        };
        let within = value <= bound;
        if !within {
            self.broken.push(format!("{metric}: {value} > {bound}"));
        }
        self.add(
            &format!("{key}_bound"),
            &format!("{metric}: at most {bound}"),
            if within { "within" } else { "EXCEEDED" },
            why,
        );
    }

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
        // JSON strings (a TOML one is not: it quotes text holding `"` with `'`).
        let q = |s: &str| serde_json::Value::String(s.into()).to_string();
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
    let only: Vec<String> = std::env::var("GSCLUSTER_BENCH_ONLY")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let opts = if quick {
        quick_opts(trials, only, binary, binary_origin)
    } else {
        full_opts(trials, only, binary, binary_origin)
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

    if opts.runs("binary") {
        binary_figures(&opts, &mut report);
    }
    if opts.runs("startup") {
        startup_figures(&opts, &mut report);
    }
    if opts.runs("cluster") {
        // Product default last: its cluster then serves the burst and the idle figures too.
        for quiet_ms in [30, PRODUCT_QUIET_MS] {
            cluster_figures(&opts, quiet_ms, &mut report);
        }
    }
    if opts.runs("catchup") || opts.runs("bootstrap") {
        recovery_figures(&opts, &mut report);
    }
    if opts.runs("airgap") {
        airgap::airgap_figures(&opts, &mut report);
    }
    if opts.runs("peers") {
        peers::peer_figures(&opts, &opts.peers, &mut report);
    }
    if opts.runs("rolling") {
        rolling::rolling_figures(&opts, &opts.rolling, &mut report);
    }
    if opts.named("chaos") {
        chaos::chaos_figures(&opts, &opts.chaos, &mut report);
    }
    if opts.named("scale") {
        scale::scale_figures(&opts, &opts.scale, &mut report);
    }
    if opts.named("history") {
        history::history_figures(&opts, &opts.history, &mut report);
    }
    if opts.named("edge") || (opts.quick && opts.runs("edge")) {
        edge::edge_figures(&opts, &opts.edge, &mut report);
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
    assert!(
        report.broken.is_empty(),
        "bounds broken: {}",
        report.broken.join("; ")
    );
}

/// What the bench measures: `--quick` checks that every scenario runs, on tiny sizes.
fn quick_opts(
    trials: Option<usize>,
    only: Vec<String>,
    binary: PathBuf,
    binary_origin: String,
) -> Opts {
    Opts {
        quick: true,
        trials: trials.unwrap_or(3),
        burst_ops: 10,
        idle_settle: Duration::from_millis(500),
        idle_window: Duration::from_secs(2),
        startup_runs: 1,
        spec: Spec::small(),
        catchups: vec![(20, 1), (100, 10)],
        bootstraps: vec![Spec::small()],
        peers: peers::PeerOpts {
            lsyncd0_trials: 3,
            lsyncd_default_trials: 1,
            loop_trials: 2,
            burst_layers: 10,
            idle_window: Duration::from_secs(2),
            loop_period_s: 1,
        },
        rolling: rolling::RollingOpts {
            slaves: 4,
            every: Duration::from_secs(1),
            publishes: 5,
        },
        chaos: chaos::ChaosOpts {
            edits: 60,
            per_kind: 0,
            round_edits: 60,
            round_faults: 6,
            budget: Duration::from_secs(600),
            rounds_each: 0,
        },
        scale: scale::ScaleOpts {
            layers: vec![100],
            catchup: (100, 10),
            restarts: 1,
        },
        history: history::HistoryOpts {
            trials: 3,
            catchup: (100, 10),
            month_edits: 20,
            log_groups: 2_000,
            bootstrap: tiny_spec(),
            pairs: 1,
        },
        edge: edge::EdgeOpts {
            bootstraps: vec![Spec::small()],
            catchup: (100, 10),
            slow: (125_000, Duration::from_millis(300)),
            outage: Duration::from_secs(5),
        },
        only,
        binary,
        binary_origin,
    }
}

/// What the bench measures for BENCHMARKS.md.
fn full_opts(
    trials: Option<usize>,
    only: Vec<String>,
    binary: PathBuf,
    binary_origin: String,
) -> Opts {
    // 1,000 layers, and 10 × 10 × 100 = 10,000 layers, ~35,000 replicated files.
    let bootstraps: Vec<Spec> = [10, 100]
        .into_iter()
        .map(|layers_per_store| Spec {
            workspaces: 10,
            stores_per_workspace: 10,
            layers_per_store,
            global_styles: 20,
            layer_groups: 20,
        })
        .collect();
    Opts {
        quick: false,
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
        // 1,000 changes as 1,000 Deltas; 10,000 changes in bursts of 20 files (one Delta
        // each, ~500 Deltas): the master needs ~100 ms per Delta on this tree, so one Delta
        // per change would take ~17 minutes.
        catchups: vec![(1_000, 1), (10_000, 20)],
        bootstraps: bootstraps.clone(),
        // lsyncd's default delay is 15 s per change: 3 trials; the 1 s loop: 10.
        peers: peers::PeerOpts {
            lsyncd0_trials: trials.unwrap_or(50).max(20),
            lsyncd_default_trials: 3,
            loop_trials: 10,
            burst_layers: 1_000,
            idle_window: Duration::from_secs(15),
            loop_period_s: 1,
        },
        // The issue's scenario: one new layer every 2 s for 2 minutes, 4 slaves.
        rolling: rolling::RollingOpts {
            slaves: 4,
            every: Duration::from_secs(2),
            publishes: 60,
        },
        // Rounds of 1,000 edits (150 s of editing) with 200 faults (several at once, on 5
        // nodes): 10 rounds reach 10,000 edits; the rarest kinds need a few more.
        chaos: chaos::ChaosOpts {
            edits: 10_000,
            per_kind: 100,
            round_edits: 1000,
            round_faults: 200,
            budget: Duration::from_secs(150 * 60),
            rounds_each: 2,
        },
        // Issue 15's table: 1,000, 10,000 and 100,000 layers (GSCLUSTER_BENCH_LAYERS).
        scale: scale::ScaleOpts {
            layers: vec![1_000, 10_000, 100_000],
            catchup: (10_000, 20),
            restarts: 3,
        },
        // Issue 16: 10,000 changes caught up with the history off and on; a month of a busy
        // site taken as 100 GeoServer saves a working day (2,000); log over 100,000 changes.
        history: history::HistoryOpts {
            trials: trials.unwrap_or(50).max(20),
            catchup: (10_000, 20),
            month_edits: 2_000,
            log_groups: 100_000,
            pairs: (std::env::var("GSCLUSTER_BENCH_PAIRS").ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(9),
            // 10 × 10 × 100 = 10,000 layers.
            bootstrap: Spec {
                workspaces: 10,
                stores_per_workspace: 10,
                layers_per_store: 100,
                global_styles: 20,
                layer_groups: 20,
            },
        },
        // Issue 17: 1,000 and 10,000 layers; a satellite-like link of 1 Mbit/s and 600 ms RTT.
        edge: edge::EdgeOpts {
            bootstraps: bootstraps.clone(),
            catchup: (10_000, 20),
            slow: (125_000, Duration::from_millis(300)),
            // Issue 17: "a link that drops for 5 minutes in the middle of a bootstrap".
            outage: Duration::from_secs(300),
        },
        only,
        binary,
        binary_origin,
    }
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
    cfg.rescan_interval_s = None; // the product default (PRODUCT_RESCAN_S while watched)
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
    let nodes: Vec<&Node> = std::iter::once(&c.master)
        .chain(c.slaves.iter().map(|s| &s.node))
        .collect();
    save_logs(&format!("latency-{quiet_ms}"), &nodes);
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

/// Bytes a process caused to be sent to the storage layer (`write_bytes` of /proc/PID/io).
fn io_write_bytes(pid: u32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    (io.lines())
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
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
    let _ = writeln!(
        out,
        "- catch-up and bootstrap rows: their own cluster, 1 master (embedded broker, default \
         log of {PRODUCT_SEGMENT_COUNT} × {} MiB per topic filter) + 1 slave with the stand-in \
         GeoServer, product defaults; the slave is stopped with SIGTERM, the master changes \
         layer.xml files, the slave restarts; bootstraps start a slave on an empty data dir \
         against an idle master",
        PRODUCT_SEGMENT_SIZE / 1048576
    );
    let _ = writeln!(out, "- run took {:.0} s\n", elapsed.as_secs_f64());
    out += &report.markdown();
    out
}

// ---------------------------------------------------------------------------------------------
// 5. "Nothing is lost": catch-up of a slave that was stopped, bootstrap of an empty slave

/// One master (embedded broker) + one slave with the stand-in GeoServer, product defaults: the
/// slave is stopped, misses N changes, restarts and catches up; then the same, now idle, master
/// bootstraps empty slaves, and a bigger tree's master does too.
fn recovery_figures(opts: &Opts, report: &mut Report) {
    let binary = opts.binary.clone();
    let configure_node = move |cfg: &mut NodeConfig| configure(cfg, &binary, PRODUCT_QUIET_MS);
    eprintln!(
        "== recovery: master + 1 slave on {} layers",
        layers(&opts.bootstraps[0])
    );
    let mut c = Cluster::start_with(&opts.bootstraps[0], 11, 1, configure_node.clone());
    if opts.runs("catchup") {
        let mut changer = Changer::new(c.master_data.path(), &c.catalog.layers);
        let mut made = 0u64;
        for &(n, burst) in &opts.catchups {
            catchup_figure(&mut c, &mut changer, n, burst, &mut made, report, "");
        }
    }
    if !opts.runs("bootstrap") {
        return;
    }
    bootstrap_figure(&c, &configure_node, report, "", "", None);
    drop(c);
    for spec in &opts.bootstraps[1..] {
        eprintln!("== recovery: master on {} layers", layers(spec));
        let t0 = Instant::now();
        let c = Cluster::start_with(spec, 13, 0, configure_node.clone());
        wait_log_quiet(&c.master, Duration::from_secs(2), CONVERGE_TIMEOUT);
        eprintln!(
            "  (tree generated, master started and idle in {:.1?})",
            t0.elapsed()
        );
        // The goal's idle figures are for this size: the master and the slave it just
        // bootstrapped, once both are quiet.
        let idle = Some((opts.idle_settle, opts.idle_window));
        bootstrap_figure(&c, &configure_node, report, "", "", idle);
        detection_figures(opts, &c, report);
    }
}

/// Copies the nodes' logs (millisecond timestamps) to `<target dir>/bench-logs/<scenario>-<id>.log`,
/// to see where a catch-up or bootstrap spent its time.
fn save_logs(scenario: &str, nodes: &[&Node]) {
    let dir = target_dir().join("bench-logs");
    fs::create_dir_all(&dir).unwrap();
    for node in nodes {
        let to = dir.join(format!("{scenario}-{}.log", node.config().id));
        fs::copy(node.log_path(), &to).unwrap();
    }
}

/// Rewrites layer.xml files on the master, each time with a unique attribution title, the way
/// GeoServer writes (temp file + rename): one call, one file change.
struct Changer {
    root: PathBuf,
    /// (relative path, content as generated)
    files: Vec<(String, String)>,
    next: usize,
}

const GENERATED_TITLE: &str = "<title>© Génération</title>";

impl Changer {
    fn new(root: &Path, layers: &[support::generator::Layer]) -> Changer {
        let files = (layers.iter())
            .map(|l| {
                let rel = l.layer_file();
                let content = fs::read_to_string(root.join(&rel)).unwrap();
                assert!(content.contains(GENERATED_TITLE), "{rel}: {content}");
                (rel, content)
            })
            .collect();
        Changer {
            root: root.to_path_buf(),
            files,
            next: 0,
        }
    }

    /// Changes the next file; returns its path and new size.
    fn change(&mut self) -> (String, u64) {
        let (rel, generated) = &self.files[self.next % self.files.len()];
        let title = format!("<title>© Génération, bench change {}</title>", self.next);
        let body = generated.replacen(GENERATED_TITLE, &title, 1);
        let path = self.root.join(rel);
        let tmp = path.with_file_name(format!("layer.xml.{:016x}.tmp", self.next));
        fs::write(&tmp, &body).unwrap();
        fs::rename(&tmp, &path).unwrap();
        self.next += 1;
        (rel.clone(), body.len() as u64)
    }
}

/// The lines a node appends to its log, read incrementally (the full log of a node that applied
/// 10,000 Deltas is megabytes; re-reading it every millisecond would cost more than the node).
struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LogTail {
    /// From the log's current end.
    fn at_end(node: &Node) -> LogTail {
        let path = node.log_path();
        let offset = fs::metadata(&path).map_or(0, |m| m.len());
        LogTail {
            path,
            offset,
            partial: vec![],
        }
    }

    /// The complete lines appended since the last call.
    fn lines(&mut self) -> Vec<String> {
        use std::io::{Read, Seek, SeekFrom};
        if let Ok(mut f) = fs::File::open(&self.path) {
            if f.seek(SeekFrom::Start(self.offset)).is_ok() {
                let before = self.partial.len();
                let _ = f.read_to_end(&mut self.partial);
                self.offset += (self.partial.len() - before) as u64;
            }
        }
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return vec![];
        };
        let rest = self.partial.split_off(end + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        (String::from_utf8_lossy(&done).lines())
            .map(str::to_string)
            .collect()
    }
}

/// Waits until the node's log has had no new line for `quiet`.
fn wait_log_quiet(node: &Node, quiet: Duration, limit: Duration) {
    let t0 = Instant::now();
    let mut tail = LogTail::at_end(node);
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if !tail.lines().is_empty() {
            last = Instant::now();
        }
        assert!(
            t0.elapsed() < limit,
            "{} never went quiet\n{}",
            node.config().id,
            node.log_contents()
        );
        sleep(Duration::from_millis(20));
    }
}

/// (changes, messages) of the master's "…: seq S: N change(s) in M message(s), …" line.
fn published(line: &str) -> Option<(usize, usize)> {
    let (head, tail) = line.split_once(" change(s) in ")?;
    let changes = head.rsplit(' ').next()?.parse().ok()?;
    let messages = tail.split(' ').next()?.parse().ok()?;
    Some((changes, messages))
}

/// What the master published for a series of changes.
#[derive(Default)]
struct Published {
    changes: usize,
    deltas: usize,
    messages: usize,
    /// Sum of the changed files' sizes (the payload adds paths, versions, hashes, framing).
    bytes: u64,
    took: Duration,
    /// The last file changed and its final content.
    last: Option<(String, Vec<u8>)>,
}

/// `n` file changes in bursts of `burst` distinct files; after each burst, waits until the
/// master's log has counted every change so far as published, so each burst is one Delta
/// (or, rarely, two when the master's quiet window cut it).
fn make_changes(master: &Node, changer: &mut Changer, n: usize, burst: usize) -> Published {
    assert!(
        burst <= changer.files.len(),
        "a burst must touch distinct files"
    );
    let mut tail = LogTail::at_end(master);
    let t0 = Instant::now();
    let mut p = Published::default();
    let mut written = 0;
    while written < n {
        for _ in 0..burst.min(n - written) {
            let (rel, size) = changer.change();
            p.bytes += size;
            written += 1;
            p.last = Some((rel, vec![]));
        }
        let since = Instant::now();
        while p.changes < written {
            for line in tail.lines() {
                if let Some((changes, messages)) = published(&line) {
                    p.changes += changes;
                    p.deltas += 1;
                    p.messages += messages;
                }
            }
            if p.changes < written {
                assert!(
                    since.elapsed() < TIMEOUT,
                    "master published {} of {written} changes\n{}",
                    p.changes,
                    master.log_contents()
                );
                sleep(Duration::from_millis(1));
            }
        }
    }
    p.took = t0.elapsed();
    if let Some((rel, content)) = p.last.as_mut() {
        *content = fs::read(changer.root.join(&*rel)).unwrap();
    }
    p
}

/// Milliseconds since midnight UTC of a log line's `[YYYY-MM-DDTHH:MM:SS.mmmZ …` timestamp.
fn log_ms_of_day(line: &str) -> Option<i64> {
    let t = line.get(1..25)?.split_once('T')?.1;
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    Some(((num(0..2)? * 60 + num(3..5)?) * 60 + num(6..8)?) * 1000 + num(9..12)?)
}

/// Milliseconds from `t0` (wall clock) to the line's timestamp.
fn log_offset_ms(line: &str, t0: SystemTime) -> Option<i64> {
    let day = 86_400_000;
    let start = (t0.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis() % day as u128) as i64;
    let d = (log_ms_of_day(line)? - start).rem_euclid(day);
    Some(if d > day / 2 { d - day } else { d })
}

/// The first line containing `needle`, as (ms after `t0`, line).
fn first_line<'a>(lines: &'a [String], needle: &str, t0: SystemTime) -> Option<(i64, &'a str)> {
    (lines.iter())
        .find(|l| l.contains(needle))
        .map(|l| (log_offset_ms(l, t0).unwrap_or(-1), l.as_str()))
}

fn last_line<'a>(lines: &'a [String], needle: &str, t0: SystemTime) -> Option<(i64, &'a str)> {
    (lines.iter())
        .rev()
        .find(|l| l.contains(needle))
        .map(|l| (log_offset_ms(l, t0).unwrap_or(-1), l.as_str()))
}

/// The message of a log line, without its `[timestamp LEVEL target]` prefix.
fn message(line: &str) -> &str {
    line.split_once("] ").map_or(line, |(_, m)| m)
}

/// Waits for the reloads a convergence at `after` causes: until the stand-in answered one that
/// started after it, or the node's log stayed quiet long enough for none to be pending; then a
/// little more for stragglers.
fn settle_reload(node: &Node, gs: &StandInGeoServer, after: Instant) {
    let quiet = Duration::from_millis(PRODUCT_RELOAD_QUIET_MS + 1500);
    let limit = Duration::from_millis(PRODUCT_RELOAD_MAX_DELAY_MS + PRODUCT_RELOAD_QUIET_MS + 3000);
    let mut tail = LogTail::at_end(node);
    let mut last_line = Instant::now();
    while after.elapsed() < limit
        && last_line.elapsed() < quiet
        && !gs.successful_reloads().iter().any(|r| r.at > after)
    {
        if !tail.lines().is_empty() {
            last_line = Instant::now();
        }
        sleep(Duration::from_millis(20));
    }
    sleep(Duration::from_millis(1500));
}

/// Polls until `dir`'s replicated tree is `want`: cheaply (`ready`) every 2 ms, then by hashing
/// the whole tree. Returns the time since `t0` at which the successful full comparison began.
fn wait_converged(
    dir: &Path,
    want: &std::collections::BTreeMap<String, [u8; 32]>,
    t0: Instant,
    node: &Node,
    mut ready: impl FnMut() -> bool,
) -> Duration {
    let mut next_full = Instant::now();
    loop {
        if ready() && Instant::now() >= next_full {
            let at = t0.elapsed();
            let got = replicated_tree(dir);
            if got == *want {
                return at;
            }
            next_full = Instant::now() + Duration::from_millis(50);
            if t0.elapsed() > CONVERGE_TIMEOUT {
                panic!(
                    "{} not converged after {CONVERGE_TIMEOUT:?}:\n{}\n{}",
                    node.config().id,
                    diff_summary(want, &got),
                    node.log_contents()
                );
            }
        }
        assert!(
            node.is_running() && t0.elapsed() < CONVERGE_TIMEOUT,
            "{} not converged after {CONVERGE_TIMEOUT:?} (or exited)\n{}",
            node.config().id,
            node.log_contents()
        );
        sleep(Duration::from_millis(2));
    }
}

fn catchup_figure(
    c: &mut Cluster,
    changer: &mut Changer,
    n: usize,
    burst: usize,
    made: &mut u64,
    report: &mut Report,
    key: &str,
) {
    eprintln!("== catch-up of a slave that missed {n} changes");
    let master_dir = c.master_data.path().to_path_buf();
    let slave = &mut c.slaves[0];
    // 1. Start from a converged, reloaded, quiet slave; stop it and make the changes.
    let want = replicated_tree(&master_dir);
    wait_converged(slave.dir(), &want, Instant::now(), &slave.node, || true);
    wait_log_quiet(
        &slave.node,
        Duration::from_millis(PRODUCT_RELOAD_QUIET_MS + 1000),
        TIMEOUT,
    );
    slave.node.stop();
    let p = make_changes(&c.master, changer, n, burst);
    *made += p.bytes;
    let want = replicated_tree(&master_dir);
    let (last_rel, last_content) = p.last.clone().unwrap();
    let sentinel = slave.dir().join(&last_rel);

    // 2. Restart it and time its convergence.
    let mut tail = LogTail::at_end(&slave.node);
    let wall0 = SystemTime::now();
    let t0 = Instant::now();
    slave.node.restart();
    let converged = wait_converged(slave.dir(), &want, t0, &slave.node, || {
        fs::read(&sentinel).is_ok_and(|b| b == last_content)
    });
    // What the slave spent to get there: CPU time and bytes sent to the disk since its start.
    let pid = slave.node.pid().expect("the slave runs");
    let cpu_ms = cpu_ticks(pid) * 1000 / clock_ticks_per_second();
    let disk_bytes = io_write_bytes(pid);
    settle_reload(&slave.node, &slave.gs, t0 + converged);
    let lines = tail.lines();
    save_logs(&format!("{key}catchup-{n}"), &[&c.master, &slave.node]);

    // 3. What its reloads and its log say about how it caught up.
    let allowed = catalog_problems(&master_dir);
    let reloads: Vec<_> = (slave.gs.successful_reloads().into_iter())
        .filter(|r| r.at > t0)
        .collect();
    let half_state = (reloads.iter())
        .filter(|r| r.problems.iter().any(|p| !allowed.contains(p)))
        .count();
    let applied = lines.iter().filter(|l| l.contains("applied delta")).count();
    let written: usize = (lines.iter())
        .filter(|l| l.contains("applied delta"))
        .filter_map(|l| {
            l.split(": ")
                .last()?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    let ms = |x: Option<(i64, &str)>| x.map_or("-".to_string(), |(t, _)| t.to_string());
    let connected = first_line(&lines, "connected to broker", wall0);
    let session = connected.map_or("?", |(_, l)| {
        if l.contains("session present: true") {
            "true"
        } else {
            "false"
        }
    });
    let needed: Vec<&str> = (lines.iter())
        .filter(|l| l.contains("resync needed: "))
        .map(|l| message(l))
        .collect();
    let rounds: Vec<String> = (lines.iter())
        .filter(|l| l.contains("resync round") && l.contains(" complete in "))
        .map(|l| {
            format!(
                "at {} ms: {}",
                log_offset_ms(l, wall0).unwrap_or(-1),
                message(l)
            )
        })
        .collect();
    let first_applied = first_line(&lines, "applied delta", wall0);
    let last_applied = last_line(&lines, "applied delta", wall0);
    let rate = match (first_applied, last_applied) {
        (Some((a, _)), Some((b, _))) if b > a => {
            format!("{:.0}", applied as f64 * 1000.0 / (b - a) as f64)
        }
        _ => "-".into(),
    };
    let reload_lines: Vec<String> = (lines.iter())
        .filter(|l| l.contains("GeoServer reloaded"))
        .filter_map(|l| log_offset_ms(l, wall0))
        .map(|t| t.to_string())
        .collect();
    let path = if !rounds.is_empty() {
        "resync round"
    } else if session == "true" {
        "persistent session"
    } else {
        "?"
    };
    // 4. The figures.
    let mib = |b: u64| b as f64 / 1048576.0;
    report.add(
        &format!("{key}catchup_{n}_ms"),
        &format!("catch-up of a slave that missed {n} changes: restart → converged (ms)"),
        converged.as_millis(),
        format!(
            "{} file changes → {} Deltas ({} messages) published while the slave was stopped \
             (bursts of {burst} file(s), each waited for in the master's log; making them took \
             {:.1} s); slave log, ms after restart: connected {} (session present: {session}), \
             first Delta applied {}, last {} ({applied} applied, {rate} Deltas/s), reload(s) \
             answered at {}; convergence: sentinel file polled every 2 ms, then the whole tree \
             hashed ({} files)",
            p.changes,
            p.deltas,
            p.messages,
            p.took.as_secs_f64(),
            ms(connected),
            ms(first_applied),
            ms(last_applied),
            if reload_lines.is_empty() {
                "-".into()
            } else {
                reload_lines.join(", ")
            },
            want.len()
        ),
    );
    report.add(
        &format!("{key}catchup_{n}_cpu_ms"),
        &format!("catch-up of {n} changes: the slave's CPU time, start → converged (ms)"),
        cpu_ms,
        "user + system time of the slave's process (/proc/PID/stat), its start included",
    );
    report.add(
        &format!("{key}catchup_{n}_disk_mib"),
        &format!("catch-up of {n} changes: bytes the slave sent to the disk (MiB)"),
        format!("{:.1}", disk_bytes as f64 / 1048576.0),
        "write_bytes of /proc/PID/io from its start to convergence: files, state and history",
    );
    report.add(
        &format!("{key}catchup_{n}_reloads"),
        &format!("reloads of the slave during the catch-up of {n} changes"),
        reloads.len(),
        format!(
            "reload_quiet_ms {PRODUCT_RELOAD_QUIET_MS}, reload_max_delay_ms \
             {PRODUCT_RELOAD_MAX_DELAY_MS}; counted until the slave was converged and its log \
             quiet; {half_state} reload(s) saw an unresolved reference"
        ),
    );
    report.add(
        &format!("{key}catchup_{n}_path"),
        &format!("catch-up of {n} changes came from"),
        path,
        format!(
            "{applied} \"applied delta\" lines after the restart ({written} file(s) written) for \
             {} Deltas published; resync requests: {}; resync rounds: {}; the changed files \
             total {:.1} MiB in this scenario, {:.1} MiB over the cluster's scenarios so far, \
             against an embedded broker log of {PRODUCT_SEGMENT_COUNT} × {} MiB per topic filter",
            p.deltas,
            if needed.is_empty() {
                "none".into()
            } else {
                needed.join("; ")
            },
            if rounds.is_empty() {
                "none".into()
            } else {
                rounds.join("; ")
            },
            mib(p.bytes),
            mib(*made),
            PRODUCT_SEGMENT_SIZE / 1048576
        ),
    );
}

/// Detection on a big tree: one file rewritten the way GeoServer writes (temp + rename) → the
/// master's log line that cut it into a Delta. The line's timestamp (ms resolution, same clock)
/// minus the quiet window is the detection time: notification, scoped scan, diff, hash and the
/// Delta in the outbox. The line's own "detected in" (scan → outbox, measured inside) is reported
/// beside it.
fn detection_figures(opts: &Opts, c: &Cluster, report: &mut Report) {
    let layers = c.catalog.layers.len();
    let mut changer = Changer::new(c.master_data.path(), &c.catalog.layers);
    let mut after_write = vec![];
    let mut inside = vec![];
    for _ in 0..opts.trials {
        let mut tail = LogTail::at_end(&c.master);
        let wall0 = SystemTime::now();
        let t0 = Instant::now();
        changer.change();
        let line = loop {
            if let Some(l) = tail
                .lines()
                .into_iter()
                .find(|l| l.contains("change: seq "))
            {
                break l;
            }
            assert!(
                t0.elapsed() < TIMEOUT,
                "the master never published the change\n{}",
                c.master.log_contents()
            );
            sleep(Duration::from_millis(1));
        };
        let at = log_offset_ms(&line, wall0).expect("timestamped line");
        after_write.push(Duration::from_millis(
            (at - PRODUCT_QUIET_MS as i64).max(0) as u64
        ));
        let took = line
            .rsplit_once("detected in ")
            .and_then(|(_, d)| parse_debug_duration(d.trim()));
        inside.extend(took);
        // Let the slave apply it and the acks settle before the next change.
        sleep(Duration::from_millis(100));
    }
    let s = Stats::of(&after_write);
    report.add(
        &format!("detect_{layers}_ms"),
        &format!("detection of one changed file, {layers} layers: write → Delta cut, minus the quiet window, median / p99 (ms)"),
        format!("{:.0} / {:.0}", s.median, s.p99),
        format!(
            "{} trials; master log timestamps (1 ms resolution) minus quiet_ms {PRODUCT_QUIET_MS}; min {:.0}, max {:.0}",
            s.n, s.min, s.max
        ),
    );
    if inside.is_empty() {
        return;
    }
    let s = Stats::of(&inside);
    report.add(
        &format!("detect_{layers}_scan_ms"),
        "… of which scan, diff, hash and outbox (the log's \"detected in\"), median / p99 (ms)",
        format!("{:.1} / {:.1}", s.median, s.p99),
        format!("{} trials", s.n),
    );
}

/// A `Debug`-printed `Duration` ("12.5ms", "1.2s", "830µs").
fn parse_debug_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "s" => v,
        "ms" => v / 1e3,
        "µs" | "us" => v / 1e6,
        "ns" => v / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Starts an empty slave against `master` (running, idle) and times its bootstrap.
/// Returns (process start → converged, successful reloads); `key` prefixes the rows' keys.
fn bootstrap_figure(
    c: &Cluster,
    configure_node: &dyn Fn(&mut NodeConfig),
    report: &mut Report,
    key: &str,
    who: &str,
    idle: Option<(Duration, Duration)>,
) -> (Duration, usize) {
    let master_dir = c.master_data.path();
    let want = replicated_tree(master_dir);
    let layers = c.catalog.layers.len();
    eprintln!(
        "== bootstrap of an empty slave from {layers} layers ({} files)",
        want.len()
    );
    // 1. An empty slave with its stand-in GeoServer, started and timed until converged.
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let gs = StandInGeoServer::start(data.path(), "admin", "geoserver");
    let mut cfg = NodeConfig::new(
        "gs-bootstrap",
        "slave",
        data.path(),
        state.path(),
        c.servers(),
    );
    cfg.geoserver_url = Some(gs.url());
    configure_node(&mut cfg);
    let wall0 = SystemTime::now();
    let t0 = Instant::now();
    let node = Node::start(cfg);
    let mut tail = LogTail::at_end(&node);
    tail.offset = 0; // the whole log of this new node
    let mut lines: Vec<String> = vec![];
    let converged = wait_converged(data.path(), &want, t0, &node, || {
        lines.extend(tail.lines());
        lines
            .iter()
            .any(|l| l.contains("resync round") && l.contains(" complete in "))
    });
    settle_reload(&node, &gs, t0 + converged);
    lines.extend(tail.lines());
    save_logs(
        &format!("{key}bootstrap-{}", c.catalog.layers.len()),
        &[&c.master, &node],
    );

    // 2. What its reloads and its log say, then the figures.
    let allowed = catalog_problems(master_dir);
    let reloads = gs.successful_reloads();
    let half_state = (reloads.iter())
        .filter(|r| r.problems.iter().any(|p| !allowed.contains(p)))
        .count();
    let ms = |x: Option<(i64, &str)>| x.map_or("-".to_string(), |(t, _)| t.to_string());
    let round = last_line(&lines, " complete in ", wall0);
    let reload_at: Vec<String> = (lines.iter())
        .filter(|l| l.contains("GeoServer reloaded"))
        .filter_map(|l| log_offset_ms(l, wall0))
        .map(|t| t.to_string())
        .collect();
    report.add(
        &format!("{key}bootstrap_{layers}_ms"),
        &format!(
            "{who}bootstrap of an empty slave, {layers} layers: process start → converged (ms)"
        ),
        converged.as_millis(),
        format!(
            "{} replicated files; slave log, ms after start: connected {}, asked for manifests \
             {}, manifest received {}, round complete {}, reload(s) answered at {}; convergence \
             checked by hashing the whole tree once the round's line appeared",
            want.len(),
            ms(first_line(&lines, "connected to broker", wall0)),
            ms(first_line(&lines, "asking for manifests", wall0)),
            ms(first_line(&lines, "manifest of", wall0)),
            ms(round),
            if reload_at.is_empty() {
                "-".into()
            } else {
                reload_at.join(", ")
            }
        ),
    );
    report.add(
        &format!("{key}bootstrap_{layers}_reloads"),
        &format!("{who}reloads of the bootstrapping slave, {layers} layers"),
        reloads.len(),
        format!("{half_state} reload(s) saw an unresolved reference"),
    );
    report.add(
        &format!("{key}bootstrap_{layers}_round"),
        &format!("{who}bootstrap, {layers} layers: the slave's resync summary"),
        round.map_or("-".to_string(), |(t, _)| format!("{t} ms")),
        round.map_or("no resync round completed".to_string(), |(_, l)| {
            message(l).to_string()
        }),
    );
    if let Some((settle, window)) = idle {
        sleep(settle);
        let rescans_before = rescans(&c.master).len();
        let procs = [
            (
                "master".to_string(),
                c.master.pid().expect("master running"),
            ),
            ("slave".to_string(), node.pid().expect("slave running")),
        ];
        let measured =
            peers::measure_idle(&procs.map(|(n, pid)| (n, peers::Proc::Pid(pid))), window);
        let rescans_in = rescans(&c.master).len() - rescans_before;
        for (who, cpu, rss) in measured {
            report.add(
                &format!("idle_{layers}_rss_{who}_kib"),
                &format!("idle RSS of the {who}, {layers} layers (KiB)"),
                rss,
                format!(
                    "{:.1} MiB, maximum sampled every 100 ms over {:.0} s{}",
                    rss as f64 / 1024.0,
                    window.as_secs_f64(),
                    if who == "master" {
                        ", embedded broker; the master + bootstrapped slave of the row above"
                    } else {
                        ", the slave bootstrapped above"
                    }
                ),
            );
            report.add(
                &format!("idle_{layers}_cpu_{who}_s_per_min"),
                &format!("idle CPU of the {who}, {layers} layers (CPU s per minute)"),
                format!("{cpu:.3}"),
                format!(
                    "utime+stime over {:.0} s, {settle:.0?} after the bootstrap's reload; \
                     {rescans_in} periodic rescan(s) of the master (every {PRODUCT_RESCAN_S} s) \
                     in the window",
                    window.as_secs_f64()
                ),
            );
        }
    }
    (converged, reloads.len())
}
