//! The `rolling` section: real-time publishing. A master and four slaves on the bootstrap tree
//! (10,000 layers in the full run), each slave with a stand-in GeoServer whose reload costs what
//! GeoServer's costs on that catalog (140 µs per catalog object, and "layer not found" for the
//! whole reload: the stand-in does not serve meanwhile). The master publishes one new layer
//! every 2 s for 2 minutes, once with `max_concurrent_reloads = 0` and `reload_max_share = 100%`
//! (every node reloads as soon as its changes are due: the behaviour before rolling reloads and
//! pacing), once with the product defaults, and once tuned for a large catalog (20 %, at most
//! 30 s behind).
//!
//! Figures per run, from the stand-ins' own records of every reload (request received →
//! answered): node-seconds of not serving per published layer, the longest time with no node
//! serving, the longest with fewer than half serving, and publish → visible on the last node
//! (visible: the end of the first reload that started after the layer's files were on that
//! node, which a poller sees within 2 ms).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::support::cluster::Cluster;
use super::support::generator::Spec;
use super::support::node::{Node, NodeConfig};
use super::{configure, layers, save_logs, Opts, Report, PRODUCT_QUIET_MS};

/// What a run changes in the slaves' configuration.
type Tune = fn(&mut NodeConfig);

pub struct RollingOpts {
    pub slaves: usize,
    pub every: Duration,
    pub publishes: usize,
}

/// One run's measurements.
struct Run {
    /// Per slave: (started, answered) of each reload in the window.
    reloads: Vec<Vec<(Instant, Instant)>>,
    /// Per published layer: publish → visible on the last slave.
    visible: Vec<Duration>,
    window: Duration,
}

/// The longest stretch during which at least `at_least` of `intervals` overlap.
fn longest_with(intervals: &[(Instant, Instant)], at_least: usize) -> Duration {
    let mut events: Vec<(Instant, i32)> = Vec::new();
    for &(a, b) in intervals {
        events.push((a, 1));
        events.push((b, -1));
    }
    // At one instant, ends before starts: touching reloads do not overlap.
    events.sort_by_key(|&(t, d)| (t, d));
    let (mut count, mut since, mut longest) = (0i32, None, Duration::ZERO);
    for (t, d) in events {
        count += d;
        if count as usize >= at_least && since.is_none() {
            since = Some(t);
        } else if (count as usize) < at_least {
            if let Some(s) = since.take() {
                longest = longest.max(t - s);
            }
        }
    }
    longest
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// Publish and measure on a fresh cluster whose slaves `tune` changes from the product
/// defaults.
fn run(opts: &Opts, r: &RollingOpts, spec: &Spec, key: &str, tune: Tune) -> Run {
    let binary = opts.binary.clone();
    let mut c = Cluster::start_with(spec, 77, r.slaves, move |cfg| {
        configure(cfg, &binary, PRODUCT_QUIET_MS);
        if cfg.role == "slave" {
            tune(cfg);
        }
    });
    let root = c.master_dir().to_path_buf();
    c.converge(Duration::from_secs(300));
    // Quiet first: no reload running or owed.
    sleep(Duration::from_millis(3000));
    while !c.slaves.iter().all(|s| s.gs.serving()) {
        sleep(Duration::from_millis(20));
    }

    // The poller: when each published layer's layer.xml is on each slave.
    let pending: Arc<Mutex<Vec<PathBuf>>> = Arc::default();
    let seen: Arc<Mutex<BTreeMap<(usize, usize), Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let dirs: Vec<PathBuf> = c.slave_dirs();
    let poller = {
        let (pending, seen, stop) = (pending.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let files = pending.lock().unwrap().clone();
                for (layer, rel) in files.iter().enumerate() {
                    for (slave, dir) in dirs.iter().enumerate() {
                        if seen.lock().unwrap().contains_key(&(layer, slave)) {
                            continue;
                        }
                        if dir.join(rel).is_file() {
                            seen.lock().unwrap().insert((layer, slave), Instant::now());
                        }
                    }
                }
                sleep(Duration::from_millis(2));
            }
        })
    };

    let earlier: Vec<usize> = c.slaves.iter().map(|s| s.gs.reloads().len()).collect();
    let workspaces = c.catalog.workspaces.len();
    let t0 = Instant::now();
    let mut published = Vec::new();
    for i in 0..r.publishes {
        let at = t0 + r.every * i as u32;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            sleep(wait);
        }
        let t = Instant::now();
        let files = c
            .catalog
            .add_layer(&root, i % workspaces, 0, &format!("live_{i}"));
        let layer_xml = files
            .iter()
            .find(|f| f.ends_with("/layer.xml"))
            .expect("a new layer writes its layer.xml")
            .clone();
        pending.lock().unwrap().push(PathBuf::from(layer_xml));
        published.push(t);
    }

    // Until every layer is visible on every slave.
    let visible_at = |layer: usize, slave: usize| -> Option<Instant> {
        let on_disk = *seen.lock().unwrap().get(&(layer, slave))?;
        let gs = &c.slaves[slave].gs;
        (gs.reloads().iter())
            .filter(|rl| rl.at >= on_disk && rl.status == 200)
            .filter_map(|rl| rl.finished)
            .min()
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let all_visible =
        || (0..published.len()).all(|l| (0..r.slaves).all(|s| visible_at(l, s).is_some()));
    while !all_visible() {
        assert!(
            Instant::now() < deadline,
            "rolling bench: layers not visible on every slave within 300 s\n{}",
            c.logs()
        );
        sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    let visible: Vec<Duration> = (published.iter().enumerate())
        .map(|(l, &t)| {
            let last = (0..r.slaves)
                .filter_map(|s| visible_at(l, s))
                .max()
                .unwrap();
            last - t
        })
        .collect();
    // Let the last reloads finish, then take every reload of the window.
    while !c.slaves.iter().all(|s| s.gs.serving()) {
        sleep(Duration::from_millis(20));
    }
    let reloads: Vec<Vec<(Instant, Instant)>> = (c.slaves.iter().zip(&earlier))
        .map(|(s, &n)| {
            s.gs.reloads()[n..]
                .iter()
                .filter_map(|rl| rl.finished.map(|f| (rl.at, f)))
                .collect()
        })
        .collect();
    let end = reloads
        .iter()
        .flatten()
        .map(|&(_, f)| f)
        .max()
        .unwrap_or(t0);
    let nodes: Vec<&Node> = std::iter::once(&c.master)
        .chain(c.slaves.iter().map(|s| &s.node))
        .collect();
    save_logs(&format!("rolling-{key}"), &nodes);
    Run {
        reloads,
        visible,
        window: end - t0,
    }
}

pub fn rolling_figures(opts: &Opts, r: &RollingOpts, report: &mut Report) {
    let spec = opts.bootstraps.last().expect("a bootstrap tree").clone();
    let n = layers(&spec);
    eprintln!(
        "== rolling: {n} layers, {} slaves, one new layer every {:?}, {} layers",
        r.slaves, r.every, r.publishes
    );
    let mut per_layer = Vec::new();
    let runs: [(&str, &str, Tune); 3] = [
        (
            "before (max_concurrent_reloads = 0, reload_max_share = 100%)",
            "before",
            |cfg| {
                cfg.geoserver_extra = vec![
                    "max_concurrent_reloads = 0".into(),
                    "reload_max_share = \"100%\"".into(),
                ]
            },
        ),
        ("default (\"50%\", \"25%\", 10 s)", "default", |_| {}),
        (
            "tuned for a large catalog (\"50%\", reload_max_share = 20%, reload_max_delay_ms = 30000)",
            "tuned",
            |cfg| {
                cfg.geoserver_extra = vec!["reload_max_share = \"20%\"".into()];
                cfg.reload_max_delay_ms = 30_000;
            },
        ),
    ];
    for (label, key, tune) in runs {
        let run = run(opts, r, &spec, key, tune);
        let all: Vec<(Instant, Instant)> = run.reloads.iter().flatten().copied().collect();
        let down: Duration = all.iter().map(|&(a, b)| b - a).sum();
        let per = down / r.publishes as u32;
        per_layer.push(per);
        let counts: Vec<usize> = run.reloads.iter().map(Vec::len).collect();
        let durations: Vec<Duration> = all.iter().map(|&(a, b)| b - a).collect();
        let fewer_than_half = r.slaves - r.slaves.div_ceil(2) + 1;
        let k = |m: &str| format!("rolling_{key}_{n}_{m}");
        report.add(
            &k("down_per_layer_ms"),
            &format!("{label}: node-seconds not serving per published layer (ms)"),
            ms(per),
            format!(
                "{} reloads ({counts:?} per slave), median reload {} ms, over {:.0} s",
                all.len(),
                ms(median(durations)),
                run.window.as_secs_f64()
            ),
        );
        report.add(
            &k("none_serving_ms"),
            &format!("{label}: longest time with no slave serving (ms)"),
            ms(longest_with(&all, r.slaves)),
            format!("{} slaves", r.slaves),
        );
        report.add(
            &k("under_half_serving_ms"),
            &format!("{label}: longest time with fewer than half serving (ms)"),
            ms(longest_with(&all, fewer_than_half)),
            format!("{fewer_than_half} or more of {} reloading", r.slaves),
        );
        report.add(
            &k("visible_last_ms"),
            &format!("{label}: publish → visible on the last slave, median (ms)"),
            ms(median(run.visible.clone())),
            format!(
                "max {} ms",
                ms(run.visible.iter().max().copied().unwrap_or_default())
            ),
        );
    }
    for (i, key) in [(1, "default"), (2, "tuned")] {
        let ratio = per_layer[0].as_secs_f64() / per_layer[i].as_secs_f64().max(1e-9);
        report.add(
            &format!("rolling_down_ratio_{key}_{n}"),
            &format!("not serving per layer: before / {key} (×)"),
            format!("{ratio:.1}"),
            "goal ≥ 4",
        );
    }
}
