//! The `chaos` section: issue 14's harness (tests/it/support/chaos.rs) in its long mode. Seeded
//! rounds — two publishers editing, three slaves, random faults — over every broker setup this
//! machine has (Mosquitto with slaves on small filesystems, Mosquitto failover pairs with nodes in
//! network namespaces, the embedded broker, ActiveMQ where installed), until the edits reach the
//! target and every fault kind of the setups that ran was injected at least `per_kind` times, or
//! the time budget is spent. A round that fails is a divergence: its seed is reported and its
//! whole report (every log, the schedule, the finding) is saved to
//! `<target dir>/bench-logs/chaos-<seed>.log`; replay it with `GSCLUSTER_CHAOS_SEED=<seed>` and
//! the matching test in tests/it/chaos.rs.
//!
//! Every setup runs at least `rounds_each` rounds, so that a long run also kills the embedded
//! broker and ActiveMQ, whose setups bring no fault kind of their own.
//!
//! Only run when named: `GSCLUSTER_BENCH_ONLY=chaos` (it takes an hour or more in full).
//! `GSCLUSTER_BENCH_CHAOS_MINUTES` sets the budget (default 150), `GSCLUSTER_CHAOS_SEED` the
//! first seed (each round takes the next), `GSCLUSTER_BENCH_CHAOS_SETUPS=embedded,activemq`
//! the setups to run (`disks`, `partitions`, `embedded`, `activemq`; all by default).

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use super::support::chaos::{round, BrokerKind, Opts as RoundOpts, Outcome};
use super::{target_dir, Opts, Report};

pub struct ChaosOpts {
    /// Edits over all rounds (both publishers together).
    pub edits: usize,
    /// Faults of each kind, at least.
    pub per_kind: usize,
    pub round_edits: usize,
    pub round_faults: usize,
    pub budget: Duration,
    /// Rounds each setup runs at least.
    pub rounds_each: usize,
}

/// One broker setup a round can run on, and the fault kinds only it brings.
struct Setup {
    /// Its name in `GSCLUSTER_BENCH_CHAOS_SETUPS`.
    key: &'static str,
    name: &'static str,
    broker: BrokerKind,
    partitions: bool,
    disks: bool,
    own_kinds: &'static [&'static str],
    skipped: Option<String>,
}

const BASE_KINDS: [&str; 11] = [
    "Kill",
    "Broker",
    "Latency",
    "Slow",
    "Reset",
    "Blackhole",
    "HalfOpen",
    "Refuse",
    "GsError",
    "GsDown",
    "GsHang",
];

fn setups() -> Vec<Setup> {
    let setup = |key, name, broker, partitions, disks, own_kinds| Setup {
        key,
        name,
        broker,
        partitions,
        disks,
        own_kinds,
        skipped: None,
    };
    vec![
        setup(
            "disks",
            "Mosquitto, small disks",
            BrokerKind::Mosquitto,
            false,
            true,
            &["DataFull", "StateFull"],
        ),
        setup(
            "partitions",
            "Mosquitto pair, partitions",
            BrokerKind::Mosquitto,
            true,
            false,
            &["Partition", "CutFromFirst"],
        ),
        setup(
            "embedded",
            "embedded broker",
            BrokerKind::Embedded,
            false,
            false,
            &[],
        ),
        setup(
            "activemq",
            "ActiveMQ",
            BrokerKind::ActiveMq,
            false,
            false,
            &[],
        ),
    ]
}

/// The setups `GSCLUSTER_BENCH_CHAOS_SETUPS` names (every one when unset); an unknown name is
/// an error that lists the known ones.
fn chosen_setups() -> Vec<Setup> {
    let all = setups();
    let Ok(names) = std::env::var("GSCLUSTER_BENCH_CHAOS_SETUPS") else {
        return all;
    };
    let names: Vec<&str> = names.split(',').map(str::trim).collect();
    let known: Vec<&str> = all.iter().map(|s| s.key).collect();
    for n in &names {
        assert!(
            known.contains(n),
            "GSCLUSTER_BENCH_CHAOS_SETUPS: unknown setup {n:?} (known: {known:?})"
        );
    }
    all.into_iter().filter(|s| names.contains(&s.key)).collect()
}

pub fn chaos_figures(opts: &Opts, c: &ChaosOpts, report: &mut Report) {
    let budget = std::env::var("GSCLUSTER_BENCH_CHAOS_MINUTES")
        .ok()
        .and_then(|m| m.parse::<u64>().ok())
        .map_or(c.budget, |m| Duration::from_secs(m * 60));
    let mut seed = std::env::var("GSCLUSTER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(gscluster::clock::now_us);
    eprintln!(
        "== chaos: at least {} edits and {} faults of each kind, rounds of {} edits and {} faults, budget {} min, first seed {seed}",
        c.edits,
        c.per_kind,
        c.round_edits,
        c.round_faults,
        budget.as_secs() / 60
    );
    let started = Instant::now();
    let mut setups = chosen_setups();
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    let (mut edits, mut rounds, mut failovers) = (0usize, 0usize, 0usize);
    let mut converged: Vec<Duration> = Vec::new();
    let mut after_edit: Vec<Duration> = Vec::new();
    let mut per_setup: BTreeMap<&str, usize> = BTreeMap::new();
    let mut divergences: Vec<String> = Vec::new();
    let mut turn = 0usize;
    loop {
        let lacking = |kinds: &[&str], faults: &BTreeMap<String, usize>| {
            kinds
                .iter()
                .any(|k| faults.get(*k).copied().unwrap_or(0) < c.per_kind)
        };
        let runnable: Vec<usize> = (0..setups.len())
            .filter(|&i| setups[i].skipped.is_none())
            .collect();
        let rounds_of = |i: usize| per_setup.get(setups[i].name).copied().unwrap_or(0);
        let done = edits >= c.edits
            && !lacking(&BASE_KINDS, &faults)
            && runnable
                .iter()
                .all(|&i| !lacking(setups[i].own_kinds, &faults) && rounds_of(i) >= c.rounds_each);
        if done || runnable.is_empty() || started.elapsed() > budget {
            break;
        }
        // A setup that has not had its rounds yet; then the one whose own kinds are furthest
        // behind; otherwise take turns.
        let short = (runnable.iter().copied())
            .filter(|&i| rounds_of(i) < c.rounds_each)
            .min_by_key(|&i| rounds_of(i));
        let i = short
            .or_else(|| {
                (runnable.iter().copied())
                    .filter(|&i| lacking(setups[i].own_kinds, &faults))
                    .min_by_key(|&i| {
                        (setups[i].own_kinds.iter())
                            .map(|k| faults.get(*k).copied().unwrap_or(0))
                            .min()
                            .unwrap_or(0)
                    })
            })
            .unwrap_or_else(|| {
                turn += 1;
                runnable[turn % runnable.len()]
            });
        let s = &mut setups[i];
        let ropts = RoundOpts {
            seed,
            edits: c.round_edits,
            faults: c.round_faults,
            broker: s.broker,
            partitions: s.partitions,
            disks: s.disks,
        };
        seed += 1;
        eprintln!(
            "  round {} on {} (seed {}), {:.0} min in",
            rounds + 1,
            s.name,
            ropts.seed,
            started.elapsed().as_secs_f64() / 60.0
        );
        match round(&ropts) {
            Outcome::Passed(r) => {
                rounds += 1;
                edits += r.edits;
                failovers += r.failovers;
                converged.push(r.converged);
                after_edit.push(r.after_last_edit);
                *per_setup.entry(s.name).or_default() += 1;
                for (k, n) in r.faults {
                    *faults.entry(k).or_default() += n;
                }
            }
            Outcome::Skipped(why) => {
                eprintln!("  {}: skipped: {why}", s.name);
                s.skipped = Some(why);
            }
            Outcome::Failed(text) => {
                rounds += 1;
                *per_setup.entry(s.name).or_default() += 1;
                let dir = target_dir().join("bench-logs");
                fs::create_dir_all(&dir).unwrap();
                let path = dir.join(format!("chaos-{}.log", ropts.seed));
                fs::write(&path, &text).unwrap();
                let finding = text.lines().last().unwrap_or("").to_string();
                eprintln!(
                    "  DIVERGENCE, seed {}: {finding} ({})",
                    ropts.seed,
                    path.display()
                );
                divergences.push(format!("seed {} on {}", ropts.seed, s.name));
            }
        }
    }
    let took = started.elapsed();
    converged.sort();
    after_edit.sort();
    let at = |v: &[Duration], q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
    };
    let setups_run = (per_setup.iter())
        .map(|(s, n)| format!("{s}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let skipped = (setups.iter())
        .filter_map(|s| s.skipped.as_ref().map(|w| format!("{}: {w}", s.name)))
        .collect::<Vec<_>>()
        .join("; ");
    let mut note = format!(
        "{setups_run}; {:.0} min{}",
        took.as_secs_f64() / 60.0,
        if opts.quick { "; quick" } else { "" }
    );
    if !skipped.is_empty() {
        note += &format!("; skipped {skipped}");
    }
    report.add("chaos", "chaos rounds", rounds, note);
    report.add(
        "chaos",
        "chaos edits",
        edits,
        "both publishers, passed rounds",
    );
    for (k, n) in &faults {
        report.add("chaos", &format!("chaos faults: {k}"), n, "");
    }
    report.add(
        "chaos",
        "chaos divergences",
        divergences.len(),
        if divergences.is_empty() {
            "every round ended identical, nothing lost".to_string()
        } else {
            divergences.join(", ")
        },
    );
    report.add(
        "chaos",
        "chaos converged after the last fault (median / max)",
        format!("{} / {}", at(&converged, 0.5), at(&converged, 1.0)),
        format!("{failovers} failovers to the second broker in partition rounds"),
    );
    report.add(
        "chaos",
        "chaos converged after the last edit (median / max)",
        format!("{} / {}", at(&after_edit, 0.5), at(&after_edit, 1.0)),
        "faults end up to 5 s after it",
    );
}
