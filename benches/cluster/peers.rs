//! Peers: the same scenarios on the same generated tree, with the same stand-in GeoServer per
//! target, run against gscluster (1 master + 3 slaves), lsyncd (`default.rsync` to 3 local
//! targets, `delay = 0` and its default delay) and a plain `rsync` + reload loop.
//!
//! Scenarios, in this order for every contender: idle (CPU and RSS), bootstrap of an empty
//! target (on the untouched generated tree), single new layer (write start → `layer.xml`
//! byte-identical on all 3 targets), burst of N new layers (write start → all 3 targets'
//! replicated trees identical to the source, reloads per target).
//!
//! How the peers reload: lsyncd runs a small script as its rsync binary (`rsync.binary`), which
//! execs rsync with lsyncd's arguments and stdin and, when rsync succeeded, POSTs
//! `/rest/reload` to that target's stand-in with curl: a reload after every sync to a target,
//! serialized with that target's syncs (`default.rsync` runs one process per sync at a time).
//! This is the `postcmd` pattern of lsyncd's own `examples/lpostcmd.lua` without the blanket
//! event. The loop does what the issue says: rsync each target, POST its reload, sleep.
//!
//! What replicates: gscluster's default filter, mapped to rsync filter rules (`RULES`, checked
//! against `default_include()` / `default_exclude()` at start-up, and checked again on every
//! bootstrapped target: no file outside gscluster's filter may arrive, every file inside must).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::support::cluster::{copy_tree, Cluster};
use super::support::generator::{generate, Catalog, Spec};
use super::support::geoserver::StandInGeoServer;
use super::support::node::{diff_summary, replicated_tree, tree};
use super::{
    bootstrap_figure, clock_ticks_per_second, configure, settle_reloads, status_kb, Opts, Report,
    Stats, PRODUCT_QUIET_MS, TIMEOUT,
};

/// gscluster's default replicate filter as rsync filter rules (first match wins, so the
/// excludes, which win in gscluster, come first). Each rule names the pattern(s) it stands for.
const RULES: &[(&str, &[&str])] = &[
    ("- /logging.xml", &["logging.xml"]),
    ("- /logs", &["logs/**"]),
    ("- /temp", &["temp/**"]),
    ("- /tmp", &["tmp/**"]),
    ("- /data", &["data/**"]),
    ("- /coverages", &["coverages/**"]),
    ("- /filelocks", &["filelocks/**"]),
    // Folders directly under gwc/: everything two or more levels below gwc/.
    ("- /gwc/*/", &["gwc/*/**/*"]),
    ("- *.tmp", &["**/*.tmp"]),
    ("- *.lock", &["**/*.lock"]),
    ("- *.bak", &["**/*.bak"]),
    ("- *~", &["**/*~"]),
    ("- *.swp", &["**/*.swp"]),
    // A dot name at any depth, file or folder (and so everything under a dot folder).
    ("- .*", &["**/.*", "**/.*/**"]),
    ("+ /workspaces/***", &["workspaces/**"]),
    ("+ /styles/***", &["styles/**"]),
    ("+ /layergroups/***", &["layergroups/**"]),
    ("+ /global.xml", &["global.xml"]),
    ("+ /wms.xml", &["wms.xml"]),
    ("+ /wfs.xml", &["wfs.xml"]),
    ("+ /wcs.xml", &["wcs.xml"]),
    ("+ /wmts.xml", &["wmts.xml"]),
    ("+ /wps.xml", &["wps.xml"]),
    ("+ /csw.xml", &["csw.xml"]),
    ("+ /gwc-gs.xml", &["gwc-gs.xml"]),
    ("+ /gwc-layers/***", &["gwc-layers/**"]),
    ("+ /gwc/", &[]),
    ("+ /gwc/geowebcache.xml", &["gwc/geowebcache.xml"]),
    ("+ /user_projections/***", &["user_projections/**"]),
    ("+ /templates/***", &["templates/**"]),
    // Descend everywhere else only to find `*.ftl` files; nothing else.
    ("+ */", &[]),
    ("+ *.ftl", &["**/*.ftl"]),
    ("- *", &[]),
];

/// rsync's quick check compares whole seconds by default: a file rewritten within the second
/// at the same size is skipped, and GeoServer's global.xml (`updateSequence` + 1 on every
/// change) is exactly that — with the default, lsyncd left the targets' global.xml stale for
/// good (the first version of this bench timed out waiting for it). Both peers compare
/// nanoseconds instead (rsync ≥ 3.1.3 on the receiver).
const MODIFY_WINDOW: &str = "--modify-window=-1";

const USER: &str = "admin";
const PASSWORD: &str = "geoserver";

/// lsyncd 2.2.3 (Debian 12): `default.rsync` has `delay = 15` (seconds) and `maxDelays = 1000`
/// (seen in `lsyncd -log all`: "going into select ( timeout 15.0 seconds )" after a change).
const LSYNCD_DEFAULT_DELAY_S: u64 = 15;

pub struct PeerOpts {
    pub lsyncd0_trials: usize,
    pub lsyncd_default_trials: usize,
    pub loop_trials: usize,
    pub burst_layers: usize,
    pub idle_window: Duration,
    pub loop_period_s: u64,
}

/// What one contender measured, for the ratios.
#[derive(Default, Clone)]
struct Figures {
    name: String,
    latency: Option<(f64, f64)>,
    burst_ms: Option<f64>,
    burst_reloads: Option<f64>,
    bootstrap_ms: Option<f64>,
    bootstrap_reloads: Option<usize>,
    idle_cpu: Option<f64>,
    idle_rss_kib: Option<u64>,
}

/// Which of lsyncd, rsync and curl are missing, if any.
fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = ["lsyncd", "rsync", "curl"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

fn version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s += &String::from_utf8_lossy(&o.stderr);
            s.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

/// The rules must cover exactly the product's default patterns.
fn check_rules() {
    let mut want: Vec<String> = gscluster::datadir::filter::default_include();
    want.extend(gscluster::datadir::filter::default_exclude());
    want.sort();
    let mut got: Vec<String> = (RULES.iter())
        .flat_map(|(_, pats)| pats.iter().map(|p| p.to_string()))
        .collect();
    got.sort();
    assert_eq!(
        got, want,
        "benches/cluster/peers.rs RULES no longer map gscluster's default replicate filter"
    );
}

pub fn peer_figures(opts: &Opts, po: &PeerOpts, report: &mut Report) {
    eprintln!("== peers: gscluster vs lsyncd vs rsync loop, 3 targets each");
    if let Some(missing) = missing_tools() {
        let why = format!("not installed: {missing} (apt-get install lsyncd rsync curl)");
        eprintln!("  peers skipped: {why}");
        report.add("peers_skipped", "peers", "skipped", why);
        return;
    }
    check_rules();
    report.add(
        "peers_versions",
        "peer versions",
        "-",
        format!(
            "lsyncd {}, {}, {}",
            version("lsyncd", "--version").trim_start_matches("Version: "),
            version("rsync", "--version"),
            version("curl", "--version")
                .split(' ')
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    let mut all = vec![gscluster_figures(opts, po, report)];
    for kind in [
        Kind::Lsyncd { delay_s: Some(0) },
        Kind::Lsyncd { delay_s: None },
        Kind::Loop {
            period_s: po.loop_period_s,
        },
    ] {
        all.push(peer(opts, po, &kind, report));
    }
    ratios(&all, report);
}

// ---------------------------------------------------------------------------------------------
// gscluster, 1 master + 3 slaves

fn gscluster_figures(opts: &Opts, po: &PeerOpts, report: &mut Report) -> Figures {
    eprintln!("-- gscluster, 1 master (embedded broker) + 3 slaves");
    let binary = opts.binary.clone();
    let configure_node =
        move |cfg: &mut super::NodeConfig| configure(cfg, &binary, PRODUCT_QUIET_MS);
    let mut c = Cluster::start_with(&opts.spec, 7, 3, configure_node.clone());
    let mut f = Figures {
        name: "gscluster".into(),
        ..Figures::default()
    };
    let key = "peers_gscluster";
    // Idle: the master and every slave.
    sleep(opts.idle_settle);
    let mut procs = vec![("master".to_string(), Proc::Pid(c.master.pid().unwrap()))];
    for s in &c.slaves {
        procs.push((s.node.config().id.clone(), Proc::Pid(s.node.pid().unwrap())));
    }
    let idle = measure_idle(&procs, po.idle_window);
    let total_cpu: f64 = idle.iter().map(|i| i.1).sum();
    let total_rss: u64 = idle.iter().map(|i| i.2).sum();
    report.add(
        &format!("{key}_idle_cpu_s_per_min"),
        "gscluster ×4 processes, idle CPU (CPU s per minute)",
        format!("{total_cpu:.3}"),
        format!(
            "{} layers; per process: {}",
            opts.layers(),
            describe_idle(&idle)
        ),
    );
    report.add(
        &format!("{key}_idle_rss_kib"),
        "gscluster ×4 processes, idle RSS (KiB, sum)",
        total_rss,
        "master with the embedded broker + 3 slaves, RSS sampled every 100 ms, maximum",
    );
    f.idle_cpu = Some(total_cpu);
    f.idle_rss_kib = Some(total_rss);

    // Bootstrap of a fourth, empty slave, on the untouched tree.
    let (boot, boot_reloads) = bootstrap_figure(
        &c,
        &configure_node,
        report,
        "peers_gscluster_",
        "3-slave cluster, ",
        None,
    );
    f.bootstrap_ms = Some(ms(boot));
    f.bootstrap_reloads = Some(boot_reloads);

    // Single new layer.
    let root = c.master_dir().to_path_buf();
    let dirs = c.slave_dirs();
    let alive = |c: &Cluster| -> Result<(), String> {
        if c.master.is_running() && c.slaves.iter().all(|s| s.node.is_running()) {
            Ok(())
        } else {
            Err(format!("a gscluster node exited\n{}", c.logs()))
        }
    };
    let times = {
        let Cluster { catalog, .. } = &mut c;
        single_layer_trials(catalog, &root, &dirs, opts.trials, "gscluster", &mut || {
            Ok(())
        })
    };
    alive(&c).unwrap();
    f.latency = Some(latency_rows(report, key, "gscluster", &times));

    // Burst.
    settle_reloads(&c, Instant::now());
    let (t0, written, converged) = {
        let Cluster { catalog, .. } = &mut c;
        layer_burst(catalog, &root, &dirs, po.burst_layers, &mut || Ok(()))
    };
    alive(&c).unwrap();
    settle_reloads(&c, t0 + converged);
    let mut nodes = vec![&c.master];
    nodes.extend(c.slaves.iter().map(|s| &s.node));
    super::save_logs("peers-burst", &nodes);
    let reloads: Vec<usize> = (c.slaves.iter())
        .map(|s| {
            s.gs.successful_reloads()
                .iter()
                .filter(|r| r.at > t0)
                .count()
        })
        .collect();
    burst_rows(
        report,
        key,
        "gscluster",
        po.burst_layers,
        written,
        converged,
        &reloads,
        "counted until each slave answered a reload started after convergence, + 1.5 s",
    );
    f.burst_ms = Some(ms(converged));
    f.burst_reloads = Some(mean(&reloads));
    f
}

// ---------------------------------------------------------------------------------------------
// The peers

#[derive(Clone, Debug)]
enum Kind {
    /// `delay_s: None` = lsyncd's default delay.
    Lsyncd {
        delay_s: Option<u64>,
    },
    Loop {
        period_s: u64,
    },
}

impl Kind {
    fn name(&self) -> String {
        match self {
            Kind::Lsyncd { delay_s: Some(d) } => format!("lsyncd delay = {d}"),
            Kind::Lsyncd { delay_s: None } => {
                format!("lsyncd default delay ({LSYNCD_DEFAULT_DELAY_S} s)")
            }
            Kind::Loop { period_s } => format!("rsync + reload loop, sleep {period_s} s"),
        }
    }

    fn key(&self) -> String {
        match self {
            Kind::Lsyncd { delay_s: Some(d) } => format!("peers_lsyncd_delay{d}"),
            Kind::Lsyncd { delay_s: None } => "peers_lsyncd_default".into(),
            Kind::Loop { period_s } => format!("peers_loop_{period_s}s"),
        }
    }
}

/// A peer process (and its children) in its own process group, with its config in a temp dir.
struct Peer {
    child: Child,
    dir: tempfile::TempDir,
    name: String,
}

impl Peer {
    fn start(kind: &Kind, src: &Path, targets: &[(PathBuf, String)]) -> Peer {
        let dir = tempfile::Builder::new().prefix("peer-").tempdir().unwrap();
        let rules: String = RULES.iter().map(|(r, _)| format!("{r}\n")).collect();
        fs::write(dir.path().join("filter.rules"), &rules).unwrap();
        let reload = |url: &str| {
            format!("curl -s -o /dev/null -u {USER}:{PASSWORD} -X POST '{url}/rest/reload'",)
        };
        let mut command = match kind {
            Kind::Lsyncd { delay_s } => {
                let lua_rules: Vec<String> =
                    (RULES.iter()).map(|(r, _)| format!("  \"{r}\",")).collect();
                let mut lua = format!(
                    "settings {{\n  nodaemon = true,\n  insist = true,\n  logfile = \"{}\",\n  \
                     statusFile = \"{}\",\n}}\nlocal rules = {{\n{}\n}}\n",
                    dir.path().join("lsyncd.log").display(),
                    dir.path().join("lsyncd.status").display(),
                    lua_rules.join("\n")
                );
                for (i, (target, url)) in targets.iter().enumerate() {
                    // rsync, then this target's reload when rsync succeeded (24: some source
                    // files vanished during the transfer, which a later event resends).
                    let script = dir.path().join(format!("rsync-reload-{i}.sh"));
                    fs::write(
                        &script,
                        format!(
                            "#!/bin/sh\nrsync \"$@\"\nrc=$?\nif [ $rc -eq 0 ] || [ $rc -eq 24 ]; \
                             then\n  {}\nfi\nexit $rc\n",
                            reload(url)
                        ),
                    )
                    .unwrap();
                    chmod_x(&script);
                    let delay = delay_s.map_or(String::new(), |d| format!("  delay = {d},\n"));
                    lua += &format!(
                        "sync {{\n  default.rsync,\n  source = \"{}/\",\n  target = \"{}/\",\n\
                         {delay}  filter = rules,\n  rsync = {{ binary = \"{}\", archive = true, \
                         _extra = {{ \"{MODIFY_WINDOW}\" }} }},\n}}\n",
                        src.display(),
                        target.display(),
                        script.display()
                    );
                }
                let config = dir.path().join("lsyncd.lua");
                fs::write(&config, lua).unwrap();
                let mut c = Command::new("lsyncd");
                c.arg(&config);
                c
            }
            Kind::Loop { period_s } => {
                let mut script = String::from("#!/bin/sh\nwhile true; do\n");
                for (target, url) in targets {
                    script += &format!(
                        "  rsync -a --delete {MODIFY_WINDOW} --filter='merge {}' '{}/' '{}/'\n  {}\n",
                        dir.path().join("filter.rules").display(),
                        src.display(),
                        target.display(),
                        reload(url)
                    );
                }
                script += &format!("  sleep {period_s}\ndone\n");
                let path = dir.path().join("loop.sh");
                fs::write(&path, script).unwrap();
                chmod_x(&path);
                Command::new(path)
            }
        };
        let log = fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", kind.name()));
        Peer {
            child,
            dir,
            name: kind.name(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn logs(&self) -> String {
        let read = |f: &str| fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "----- {} stderr -----\n{}\n----- lsyncd.log -----\n{}",
            self.name,
            read("stderr.log"),
            read("lsyncd.log")
        )
    }

    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            other => Err(format!("{} exited: {other:?}\n{}", self.name, self.logs())),
        }
    }

    fn signal_group(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{}", self.pid())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Peer {
    /// SIGTERM to the peer's own process group (the peer and the rsync/curl it runs), SIGKILL
    /// after 5 s.
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            sleep(Duration::from_millis(20));
        }
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}

fn chmod_x(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The source tree and 3 targets that start as copies of it, each with its stand-in.
struct Rig {
    src: tempfile::TempDir,
    catalog: Catalog,
    targets: Vec<(tempfile::TempDir, StandInGeoServer)>,
}

impl Rig {
    fn new(spec: &Spec, n: usize) -> Rig {
        let src = tempfile::tempdir().unwrap();
        let catalog = generate(src.path(), spec, 7);
        let targets = (0..n)
            .map(|_| {
                let t = tempfile::tempdir().unwrap();
                copy_tree(src.path(), t.path());
                let gs = StandInGeoServer::start(t.path(), USER, PASSWORD);
                (t, gs)
            })
            .collect();
        Rig {
            src,
            catalog,
            targets,
        }
    }

    fn target_list(&self) -> Vec<(PathBuf, String)> {
        (self.targets.iter())
            .map(|(t, gs)| (t.path().to_path_buf(), gs.url()))
            .collect()
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.targets
            .iter()
            .map(|(t, _)| t.path().to_path_buf())
            .collect()
    }

    fn reloads_since(&self, t0: Instant) -> Vec<usize> {
        (self.targets.iter())
            .map(|(_, gs)| gs.successful_reloads().iter().filter(|r| r.at > t0).count())
            .collect()
    }

    /// Successful reloads per target so far.
    fn reload_counts(&self) -> Vec<usize> {
        (self.targets.iter())
            .map(|(_, gs)| gs.successful_reloads().len())
            .collect()
    }

    /// Until no target's reload count changed for `quiet` (at most `limit`).
    fn wait_reloads_quiet(&self, quiet: Duration, limit: Duration) {
        let t0 = Instant::now();
        let mut last = self.reload_counts();
        let mut since = Instant::now();
        while since.elapsed() < quiet && t0.elapsed() < limit {
            sleep(Duration::from_millis(50));
            let now = self.reload_counts();
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
    }
}

fn peer(opts: &Opts, po: &PeerOpts, kind: &Kind, report: &mut Report) -> Figures {
    let name = kind.name();
    let key = kind.key();
    eprintln!("-- {name}");
    let mut f = Figures {
        name: name.clone(),
        ..Figures::default()
    };
    let (trials, period) = match kind {
        Kind::Lsyncd { delay_s: Some(_) } => (po.lsyncd0_trials, None),
        Kind::Lsyncd { delay_s: None } => (po.lsyncd_default_trials, None),
        Kind::Loop { period_s } => (po.loop_trials, Some(*period_s)),
    };
    let mut rig = Rig::new(&opts.spec, 3);
    let root = rig.src.path().to_path_buf();
    let dirs = rig.dirs();
    let mut p = Peer::start(kind, &root, &rig.target_list());
    // Start-up: lsyncd's initial rsync per target (a no-op on these copies) and its reload; the
    // loop's first pass.
    let t0 = Instant::now();
    while rig.reload_counts().contains(&0) {
        p.check_alive().unwrap();
        assert!(
            t0.elapsed() < TIMEOUT,
            "{name}: no first reload\n{}",
            p.logs()
        );
        sleep(Duration::from_millis(20));
    }
    rig.wait_reloads_quiet(Duration::from_secs(1), Duration::from_secs(3));

    // Idle.
    let before = rig.reload_counts();
    let idle = measure_idle(&[(name.clone(), Proc::Group(p.pid()))], po.idle_window);
    let idle_reloads: Vec<usize> = (rig.reload_counts().iter().zip(before))
        .map(|(a, b)| a - b)
        .collect();
    report.add(
        &format!("{key}_idle_cpu_s_per_min"),
        &format!("{name}, idle CPU (CPU s per minute)"),
        format!("{:.3}", idle[0].1),
        format!(
            "{} layers, 3 targets; {}; includes the children it waited for (rsync, curl, \
             sleep: cutime + cstime), not the stand-ins' reload work; reloads per target \
             answered in the window: {:?}",
            opts.layers(),
            describe_idle(&idle),
            idle_reloads
        ),
    );
    report.add(
        &format!("{key}_idle_rss_kib"),
        &format!("{name}, idle RSS (KiB)"),
        idle[0].2,
        "sum over its process group (children included), sampled every 100 ms, maximum",
    );
    f.idle_cpu = Some(idle[0].1);
    f.idle_rss_kib = Some(idle[0].2);

    // Bootstrap: a second instance of the same peer with one empty target.
    {
        let (boot, reloads) = peer_bootstrap(kind, &root, report, &key);
        f.bootstrap_ms = Some(ms(boot));
        f.bootstrap_reloads = Some(reloads);
    }

    // Single new layer.
    let times = single_layer_trials(&mut rig.catalog, &root, &dirs, trials, &key, &mut || {
        p.check_alive()
    });
    f.latency = Some(latency_rows(report, &key, &name, &times));

    // Burst.
    rig.wait_reloads_quiet(Duration::from_secs(2), Duration::from_secs(30));
    let (t0, written, converged) =
        layer_burst(&mut rig.catalog, &root, &dirs, po.burst_layers, &mut || {
            p.check_alive()
        });
    let (reloads, how) = match period {
        // The loop reloads on every pass, changes or not: count up to the pass that converged.
        Some(s) => {
            let until = t0 + converged + Duration::from_millis(500);
            sleep(Duration::from_millis(700));
            let r: Vec<usize> = (rig.targets.iter())
                .map(|(_, gs)| {
                    (gs.successful_reloads().iter())
                        .filter(|r| r.at > t0 && r.at <= until)
                        .count()
                })
                .collect();
            (
                r,
                format!(
                    "counted from write start to convergence + 0.5 s: the loop reloads every \
                     target on every pass ({s} s sleep between passes) whether anything changed \
                     or not"
                ),
            )
        }
        None => {
            rig.wait_reloads_quiet(Duration::from_secs(3), Duration::from_secs(60));
            (
                rig.reloads_since(t0),
                "counted until no target was reloaded for 3 s (one reload per rsync run)".into(),
            )
        }
    };
    burst_rows(
        report,
        &key,
        &name,
        po.burst_layers,
        written,
        converged,
        &reloads,
        &how,
    );
    f.burst_ms = Some(ms(converged));
    f.burst_reloads = Some(mean(&reloads));
    p.check_alive().unwrap();
    f
}

/// A fresh instance of the peer, one empty target: process start → the target's replicated tree
/// equals the source's; then checks that exactly the files of gscluster's filter arrived.
fn peer_bootstrap(kind: &Kind, src: &Path, report: &mut Report, key: &str) -> (Duration, usize) {
    let target = tempfile::tempdir().unwrap();
    let gs = StandInGeoServer::start(target.path(), USER, PASSWORD);
    let want = replicated_tree(src);
    let t0 = Instant::now();
    let mut p = Peer::start(kind, src, &[(target.path().to_path_buf(), gs.url())]);
    let dirs = [target.path().to_path_buf()];
    let converged = wait_trees(src, &dirs, &want, t0, &mut || true, &mut || p.check_alive());
    // Its reload: right after the rsync for lsyncd, at the end of the pass for the loop.
    let until = Instant::now() + TIMEOUT;
    while !gs.successful_reloads().iter().any(|r| r.at > t0) && Instant::now() < until {
        sleep(Duration::from_millis(10));
    }
    let reloaded = gs.successful_reloads().first().map(|r| r.at - t0);
    let reloads = gs.successful_reloads().len();
    drop(p);
    // What arrived, against gscluster's default filter on the source's whole tree.
    let filter = gscluster::datadir::filter::Filter::defaults();
    let expected: Vec<String> = (tree(src, &[]).into_keys())
        .filter(|rel| filter.matches(rel))
        .collect();
    let got: Vec<String> = tree(target.path(), &[]).into_keys().collect();
    assert_eq!(
        got,
        expected,
        "{}: the bootstrapped target's files differ from what gscluster's default filter selects",
        kind.name()
    );
    report.add(
        &format!("{key}_bootstrap_ms"),
        &format!(
            "{}: bootstrap of an empty target, {} files: process start → converged (ms)",
            kind.name(),
            want.len()
        ),
        ms(converged) as u64,
        format!(
            "first reload answered {} ms after start; {reloads} reload(s); the target got exactly \
             the {} files gscluster's default filter selects (checked); {}",
            reloaded.map_or("-".into(), |d| ms(d).round().to_string()),
            expected.len(),
            match kind {
                Kind::Lsyncd { .. } => "lsyncd's start-up rsync, which does not depend on delay",
                Kind::Loop { .. } => "the loop's first pass",
            }
        ),
    );
    (converged, reloads)
}

// ---------------------------------------------------------------------------------------------
// Scenarios shared by all contenders

/// Each trial publishes a new layer on the source and polls every target's copy of its
/// layer.xml every millisecond until byte-identical; then waits for global.xml (written last) to
/// be identical everywhere, and 200 ms more, before the next trial.
fn single_layer_trials(
    catalog: &mut Catalog,
    root: &Path,
    targets: &[PathBuf],
    trials: usize,
    tag: &str,
    alive: &mut dyn FnMut() -> Result<(), String>,
) -> Vec<Duration> {
    let workspaces = catalog.workspaces.len();
    let mut times = vec![];
    for i in 0..trials {
        let name = format!("{tag} layer {i}");
        let t0 = Instant::now();
        let touched = catalog.add_layer(root, i % workspaces, 0, &name);
        let rel = (touched.iter())
            .find(|p| p.ends_with("/layer.xml"))
            .expect("add_layer writes a layer.xml")
            .clone();
        let want = fs::read(root.join(&rel)).unwrap();
        wait_files(targets, &rel, &want, t0, alive);
        times.push(t0.elapsed());
        let global = fs::read(root.join("global.xml")).unwrap();
        wait_files(targets, "global.xml", &global, t0, alive);
        sleep(Duration::from_millis(200));
    }
    times
}

fn wait_files(
    targets: &[PathBuf],
    rel: &str,
    want: &[u8],
    t0: Instant,
    alive: &mut dyn FnMut() -> Result<(), String>,
) {
    let mut pending: Vec<PathBuf> = targets.iter().map(|d| d.join(rel)).collect();
    loop {
        pending.retain(|p| fs::read(p).ok().as_deref() != Some(want));
        if pending.is_empty() {
            return;
        }
        if t0.elapsed() > TIMEOUT {
            panic!("{rel} not on {pending:?} after {TIMEOUT:?}");
        }
        if let Err(e) = alive() {
            panic!("{e}");
        }
        sleep(Duration::from_millis(1));
    }
}

/// `n` new layers as fast as the generator writes them; returns (write start, writing time,
/// write start → every target's replicated tree identical to the source's).
fn layer_burst(
    catalog: &mut Catalog,
    root: &Path,
    targets: &[PathBuf],
    n: usize,
    alive: &mut dyn FnMut() -> Result<(), String>,
) -> (Instant, Duration, Duration) {
    let workspaces = catalog.workspaces.len();
    let stores = (catalog.stores.iter())
        .filter(|s| s.workspace == catalog.workspaces[0].name)
        .count()
        .max(1);
    let t0 = Instant::now();
    let mut last = String::new();
    for i in 0..n {
        let touched = catalog.add_layer(
            root,
            i % workspaces,
            (i / workspaces) % stores,
            &format!("burst layer {i}"),
        );
        last = touched
            .into_iter()
            .find(|p| p.ends_with("/layer.xml"))
            .unwrap();
    }
    let written = t0.elapsed();
    let want = replicated_tree(root);
    let last_content = fs::read(root.join(&last)).unwrap();
    let global = fs::read(root.join("global.xml")).unwrap();
    let mut ready = || {
        targets.iter().all(|d| {
            fs::read(d.join(&last)).ok().as_deref() == Some(&last_content[..])
                && fs::read(d.join("global.xml")).ok().as_deref() == Some(&global[..])
        })
    };
    let converged = wait_trees(root, targets, &want, t0, &mut ready, alive);
    (t0, written, converged)
}

/// Polls `ready` every 2 ms, then compares every target's whole replicated tree with `want`
/// (again every 50 ms until equal). Returns the time since `t0` of the successful comparison.
fn wait_trees(
    root: &Path,
    targets: &[PathBuf],
    want: &std::collections::BTreeMap<String, [u8; 32]>,
    t0: Instant,
    ready: &mut dyn FnMut() -> bool,
    alive: &mut dyn FnMut() -> Result<(), String>,
) -> Duration {
    let limit = super::CONVERGE_TIMEOUT;
    let mut next_full = Instant::now();
    loop {
        if ready() && Instant::now() >= next_full {
            let at = t0.elapsed();
            if targets.iter().all(|d| replicated_tree(d) == *want) {
                return at;
            }
            next_full = Instant::now() + Duration::from_millis(50);
        }
        if t0.elapsed() > limit {
            let diffs: Vec<String> = (targets.iter())
                .map(|d| diff_summary(want, &replicated_tree(d)))
                .collect();
            panic!(
                "{} not converged after {limit:?}:\n{}",
                root.display(),
                diffs.join("\n")
            );
        }
        if let Err(e) = alive() {
            panic!("{e}");
        }
        sleep(Duration::from_millis(2));
    }
}

fn latency_rows(report: &mut Report, key: &str, name: &str, times: &[Duration]) -> (f64, f64) {
    let s = Stats::of(times);
    report.add(
        &format!("{key}_latency_median_ms"),
        &format!("{name}: new layer → layer.xml on 3 targets, median (ms)"),
        format!("{:.1}", s.median),
        format!(
            "{} trials; min {:.1}, mean {:.1}, max {:.1}",
            s.n, s.min, s.mean, s.max
        ),
    );
    report.add(
        &format!("{key}_latency_p99_ms"),
        &format!("{name}: new layer → layer.xml on 3 targets, p99 (ms)"),
        format!("{:.1}", s.p99),
        "nearest rank (with fewer than 100 trials: the maximum)",
    );
    (s.median, s.p99)
}

#[allow(clippy::too_many_arguments)]
fn burst_rows(
    report: &mut Report,
    key: &str,
    name: &str,
    n: usize,
    written: Duration,
    converged: Duration,
    reloads: &[usize],
    how: &str,
) {
    report.add(
        &format!("{key}_burst_ms"),
        &format!("{name}: burst of {n} new layers → 3 targets converged (ms)"),
        converged.as_millis(),
        format!(
            "writing took {} ms (the harness's generator; the peer works while it writes); the \
             last layer.xml and global.xml polled every 2 ms, then the whole replicated trees \
             hashed",
            written.as_millis()
        ),
    );
    report.add(
        &format!("{key}_burst_after_last_write_ms"),
        &format!("{name}: burst of {n} new layers, last write → 3 targets converged (ms)"),
        converged.saturating_sub(written).as_millis(),
        "derived: the figure above minus the writing time",
    );
    report.add(
        &format!("{key}_burst_reloads"),
        &format!("{name}: reloads per target for the {n}-layer burst"),
        reloads
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        how,
    );
}

// ---------------------------------------------------------------------------------------------
// Idle CPU and RSS

#[derive(Clone, Copy)]
pub enum Proc {
    Pid(u32),
    /// A process group: CPU of its leader including reaped children, RSS summed over members.
    Group(u32),
}

/// (name, CPU s per minute, max sampled RSS in KiB) per process, over `window`.
pub fn measure_idle(procs: &[(String, Proc)], window: Duration) -> Vec<(String, f64, u64)> {
    let leader = |p: &Proc| match p {
        Proc::Pid(pid) | Proc::Group(pid) => *pid,
    };
    let before: Vec<u64> = procs.iter().map(|(_, p)| all_ticks(leader(p))).collect();
    let mut rss = vec![0u64; procs.len()];
    let t0 = Instant::now();
    while t0.elapsed() < window {
        for (i, (_, p)) in procs.iter().enumerate() {
            let now = match p {
                Proc::Pid(pid) => status_kb(*pid, "VmRSS"),
                Proc::Group(pgid) => group_rss_kib(*pgid),
            };
            rss[i] = rss[i].max(now);
        }
        sleep(Duration::from_millis(100));
    }
    let secs = t0.elapsed().as_secs_f64();
    let hz = clock_ticks_per_second() as f64;
    (procs.iter().zip(before).zip(rss))
        .map(|(((name, p), b), r)| {
            let cpu = (all_ticks(leader(p)) - b) as f64 / hz;
            (name.clone(), cpu * 60.0 / secs, r)
        })
        .collect()
}

fn describe_idle(idle: &[(String, f64, u64)]) -> String {
    (idle.iter())
        .map(|(n, cpu, rss)| format!("{n} {cpu:.3} CPU s/min, {:.1} MiB", *rss as f64 / 1024.0))
        .collect::<Vec<_>>()
        .join("; ")
}

/// utime + stime + cutime + cstime (/proc/PID/stat fields 14 to 17), in clock ticks.
fn all_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    (11..15).map(|i| f[i].parse::<u64>().unwrap_or(0)).sum()
}

/// Sum of VmRSS over the live processes of a process group.
fn group_rss_kib(pgid: u32) -> u64 {
    let mut sum = 0;
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        // Field 5 (pgrp) is the third after the command name.
        let pgrp = stat[close + 2..].split_whitespace().nth(2);
        if pgrp == Some(&pgid.to_string()) {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            sum += (status.lines())
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    sum
}

// ---------------------------------------------------------------------------------------------
// Ratios

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mean(v: &[usize]) -> f64 {
    v.iter().sum::<usize>() as f64 / v.len().max(1) as f64
}

/// peer / gscluster for every figure both have; > 1 means gscluster is lower (better).
fn ratios(all: &[Figures], report: &mut Report) {
    let g = &all[0];
    let r = |p: Option<f64>, q: Option<f64>| match (p, q) {
        (Some(p), Some(q)) if q > 0.0 => format!("{:.1}", p / q),
        (Some(p), Some(_)) if p > 0.0 => "∞ (gscluster 0)".into(),
        (Some(_), Some(_)) => "both 0".into(),
        _ => "-".into(),
    };
    for p in &all[1..] {
        let key = p
            .name
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            .to_lowercase();
        let parts = [
            (
                "latency median",
                r(p.latency.map(|l| l.0), g.latency.map(|l| l.0)),
            ),
            (
                "latency p99",
                r(p.latency.map(|l| l.1), g.latency.map(|l| l.1)),
            ),
            ("burst time", r(p.burst_ms, g.burst_ms)),
            ("burst reloads", r(p.burst_reloads, g.burst_reloads)),
            ("bootstrap time", r(p.bootstrap_ms, g.bootstrap_ms)),
            (
                "bootstrap reloads",
                r(
                    p.bootstrap_reloads.map(|x| x as f64),
                    g.bootstrap_reloads.map(|x| x as f64),
                ),
            ),
            ("idle CPU", r(p.idle_cpu, g.idle_cpu)),
            (
                "idle RSS",
                r(
                    p.idle_rss_kib.map(|x| x as f64),
                    g.idle_rss_kib.map(|x| x as f64),
                ),
            ),
        ];
        report.add(
            &format!("peers_ratio_{key}"),
            &format!("ratio {} / gscluster", p.name),
            parts[0].1.clone(),
            parts
                .iter()
                .map(|(what, v)| format!("{what} {v}"))
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
}
