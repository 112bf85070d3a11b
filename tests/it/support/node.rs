//! Runs the real `gscluster` binary as a child process, and compares data directories.
//!
//! Multi-process tests start, stop, `kill -9` and restart nodes exactly as an operator would, so
//! durability and recovery are tested on the real thing. Every wait is a poll with a deadline
//! (`wait_until`, or `wait_until_async` in async tests), never a bare sleep, and a timeout shows
//! the node logs: a red test must say why.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A port that was free a moment ago. Racy by nature; tests bind it soon after.
/// A port no one listens on, for a broker or a stand-in to bind. Taken below Linux's ephemeral
/// range (32768–60999), where the kernel picks the source ports of outgoing connections: a port
/// from `bind(0)` that a test frees and binds again (a node restarted on its broker's port)
/// could meanwhile be the source port of some client's connection. Each port is handed out once
/// per test process, from a start that differs between runs.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::Relaxed) == 0 {
        let seed = (std::process::id() % u32::from(SPAN)) as u16;
        let _ = NEXT.compare_exchange(0, LOW + seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + n.wrapping_sub(LOW) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One node's settings; `to_toml` renders the product's config format (design.md section 5).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: String,
    /// "master" | "slave" | "both"
    pub role: String,
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub group: String,
    pub mqtt_servers: Vec<String>,
    pub broker_listen: Option<String>,
    pub geoserver_url: Option<String>,
    pub user: String,
    pub password: String,
    pub reload_quiet_ms: u64,
    pub reload_max_delay_ms: u64,
    pub quiet_ms: u64,
    /// `[master] rescan_interval_s` (30 here; `None` = the product default: 600 s while the
    /// data directory is watched).
    pub rescan_interval_s: Option<u64>,
    /// The `gscluster` executable to run; `None` = the binary Cargo built with the tests.
    pub binary: Option<PathBuf>,
    /// `RUST_LOG` for the process; `None` = info with gscluster at debug (what tests want).
    pub rust_log: Option<String>,
    /// `GSCLUSTER_CRASH_AT` for the process (`NAME:N`, see src/crashpoint.rs).
    pub crash_at: Option<String>,
    /// `GSCLUSTER_PAUSE_AT` for the process (`NAME:N:MS`, see src/crashpoint.rs).
    pub pause_at: Option<String>,
    /// `GSCLUSTER_CLOCK_OFFSET_MS`: the node's wall clock this far ahead (negative: behind).
    pub clock_offset_ms: Option<i64>,
    /// `GSCLUSTER_PAGE_ITEMS`: entries per page of the node's resync answers.
    pub page_items: Option<usize>,
    /// `[security] key_file`, when set.
    pub key_file: Option<PathBuf>,
    /// Extra `key = value` lines for `[mqtt]` and `[broker]` (TLS, credentials…).
    pub mqtt_extra: Vec<String>,
    pub broker_extra: Vec<String>,
    /// `[node] on_drift` ("revert" | "warn"), when set.
    pub on_drift: Option<String>,
    /// `[metrics] listen`, when set.
    pub metrics_listen: Option<String>,
    /// Extra `key = value` lines for `[geoserver]` (drain_ms…).
    pub geoserver_extra: Vec<String>,
    /// `[replicate] include`, when set (it replaces the default list).
    pub replicate_include: Option<Vec<String>>,
    /// The network namespace the process runs in (`ip netns exec`; support::netns).
    pub netns: Option<String>,
    /// `key = value` lines for `[history]` (the section is left out when empty: the defaults).
    pub history: Vec<String>,
    /// `key = value` lines for `[resync]` (left out when empty).
    pub resync: Vec<String>,
    /// `GSCLUSTER_WIRE_COMPRESSION=off`: the node sends its messages uncompressed.
    pub uncompressed: bool,
}

impl NodeConfig {
    /// Test-friendly defaults: group "test", admin/geoserver, short quiet windows, no broker.
    pub fn new(
        id: &str,
        role: &str,
        data_dir: &Path,
        state_dir: &Path,
        mqtt_servers: Vec<String>,
    ) -> NodeConfig {
        NodeConfig {
            id: id.into(),
            role: role.into(),
            data_dir: data_dir.into(),
            state_dir: state_dir.into(),
            group: "test".into(),
            mqtt_servers,
            broker_listen: None,
            geoserver_url: None,
            user: "admin".into(),
            password: "geoserver".into(),
            reload_quiet_ms: 200,
            reload_max_delay_ms: 2000,
            quiet_ms: 20,
            rescan_interval_s: Some(30),
            binary: None,
            rust_log: None,
            crash_at: None,
            pause_at: None,
            clock_offset_ms: None,
            page_items: None,
            key_file: None,
            mqtt_extra: Vec::new(),
            broker_extra: Vec::new(),
            on_drift: None,
            metrics_listen: None,
            replicate_include: None,
            geoserver_extra: Vec::new(),
            netns: None,
            history: Vec::new(),
            resync: Vec::new(),
            uncompressed: false,
        }
    }

    pub fn to_toml(&self) -> String {
        // toml's own string rendering escapes quotes, backslashes and control characters.
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let path = |p: &Path| q(&p.to_string_lossy());
        let mut out = String::new();
        out += &format!(
            "[node]\nid = {}\ngroup = {}\nrole = {}\n",
            q(&self.id),
            q(&self.group),
            q(&self.role)
        );
        out += &format!("state_dir = {}\n", path(&self.state_dir));
        if let Some(d) = &self.on_drift {
            out += &format!("on_drift = {}\n", q(d));
        }
        out += &format!("[geoserver]\ndata_dir = {}\n", path(&self.data_dir));
        if let Some(url) = &self.geoserver_url {
            out += &format!("url = {}\n", q(url));
        }
        out += &format!(
            "user = {}\npassword = {}\n",
            q(&self.user),
            q(&self.password)
        );
        out += &format!(
            "reload_quiet_ms = {}\nreload_max_delay_ms = {}\n",
            self.reload_quiet_ms, self.reload_max_delay_ms
        );
        for line in &self.geoserver_extra {
            out += &format!("{line}\n");
        }
        out += &format!("[master]\nquiet_ms = {}\n", self.quiet_ms);
        if let Some(s) = self.rescan_interval_s {
            out += &format!("rescan_interval_s = {s}\n");
        }
        let servers: Vec<String> = self.mqtt_servers.iter().map(|s| q(s)).collect();
        out += &format!(
            "[mqtt]\nservers = [{}]\ntopic_prefix = \"gscluster\"\n",
            servers.join(", ")
        );
        for line in &self.mqtt_extra {
            out += &format!("{line}\n");
        }
        if let Some(listen) = &self.broker_listen {
            out += &format!("[broker]\nlisten = {}\n", q(listen));
            for line in &self.broker_extra {
                out += &format!("{line}\n");
            }
        }
        if let Some(key) = &self.key_file {
            out += &format!("[security]\nkey_file = {}\n", path(key));
        }
        if let Some(listen) = &self.metrics_listen {
            out += &format!("[metrics]\nlisten = {}\n", q(listen));
        }
        if let Some(include) = &self.replicate_include {
            let patterns: Vec<String> = include.iter().map(|p| q(p)).collect();
            out += &format!("[replicate]\ninclude = [{}]\n", patterns.join(", "));
        }
        if !self.history.is_empty() {
            out += &format!("[history]\n{}\n", self.history.join("\n"));
        }
        if !self.resync.is_empty() {
            out += &format!("[resync]\n{}\n", self.resync.join("\n"));
        }
        out
    }
}

/// A running (or stopped) `gscluster run` process with its own config file and log.
pub struct Node {
    cfg: NodeConfig,
    dir: tempfile::TempDir,
    /// Interior mutability so `is_running` works through `&Node`, e.g. inside a `wait_until`
    /// condition while the same node is passed for its logs.
    child: RefCell<Option<Child>>,
    /// How the last process ended, once reaped.
    exited: Cell<Option<ExitStatus>>,
}

impl Node {
    pub fn start(cfg: NodeConfig) -> Node {
        let mut node = Node::prepared(cfg);
        node.spawn();
        node
    }

    /// Like `start`, with the process left to `restart` (e.g. to time from its start).
    pub fn prepared(cfg: NodeConfig) -> Node {
        let dir = tempfile::Builder::new()
            .prefix(&format!("node-{}-", cfg.id))
            .tempdir()
            .unwrap();
        fs::write(dir.path().join("config.toml"), cfg.to_toml()).unwrap();
        Node {
            cfg,
            dir,
            child: RefCell::new(None),
            exited: Cell::new(None),
        }
    }

    fn spawn(&mut self) {
        assert!(
            self.child.borrow().is_none(),
            "node {} is already running",
            self.cfg.id
        );
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let binary = (self.cfg.binary.clone())
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gscluster")));
        let rust_log = (self.cfg.rust_log.as_deref())
            .unwrap_or("info,gscluster=debug,rumqttd=warn,tracing=warn,notify=warn");
        // `ip netns exec` execs the binary itself: the child's pid is the node's.
        let mut command = match &self.cfg.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        command
            .arg("run")
            .arg("-c")
            .arg(self.config_path())
            .env("RUST_LOG", rust_log)
            .env_remove("GSCLUSTER_CRASH_AT")
            .env_remove("GSCLUSTER_PAUSE_AT")
            .env_remove("GSCLUSTER_CLOCK_OFFSET_MS")
            .env_remove("GSCLUSTER_WIRE_COMPRESSION");
        if self.cfg.uncompressed {
            command.env("GSCLUSTER_WIRE_COMPRESSION", "off");
        }
        if let Some(n) = self.cfg.page_items {
            command.env("GSCLUSTER_PAGE_ITEMS", n.to_string());
        }
        if let Some(ms) = self.cfg.clock_offset_ms {
            command.env("GSCLUSTER_CLOCK_OFFSET_MS", ms.to_string());
        }
        if let Some(at) = &self.cfg.crash_at {
            command.env("GSCLUSTER_CRASH_AT", at);
        }
        if let Some(at) = &self.cfg.pause_at {
            command.env("GSCLUSTER_PAUSE_AT", at);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} for {}: {e}", binary.display(), self.cfg.id));
        *self.child.get_mut() = Some(child);
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Change the configuration for the next start (the file is rewritten now).
    pub fn reconfigure(&mut self, change: impl FnOnce(&mut NodeConfig)) {
        change(&mut self.cfg);
        fs::write(self.config_path(), self.cfg.to_toml()).unwrap();
    }

    /// Arm (or, with `None`, disarm) a crash point for the next start.
    pub fn set_crash_at(&mut self, at: Option<String>) {
        self.cfg.crash_at = at;
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    pub fn log_contents(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.borrow().as_ref().map(Child::id)
    }

    /// True while the process has not exited (reaps it and keeps its status if it has).
    pub fn is_running(&self) -> bool {
        let mut child = self.child.borrow_mut();
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(result) => {
                self.exited.set(result.ok().flatten());
                *child = None;
                false
            }
            None => false,
        }
    }

    /// How the process ended, if it has ended (e.g. a config error at start-up).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.is_running();
        self.exited.get()
    }

    /// Graceful stop: SIGTERM, then wait up to 10 s (then SIGKILL, and panic: a node that ignores
    /// SIGTERM is a bug the test must report).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.get_mut().take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.exited.set(Some(status));
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "node {} ignored SIGTERM for 10 s\n{}",
                    self.cfg.id,
                    self.log_contents()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Crash: SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.get_mut().take() {
            let _ = child.kill();
            self.exited.set(child.wait().ok());
        }
    }

    /// Stops gracefully if running, then starts again with the same config, log and state.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `cond` every 10 ms until it holds; on timeout panics with `what`.
pub fn wait_until(what: &str, deadline: Duration, cond: impl FnMut() -> bool) {
    wait_until_logs(what, deadline, &[], cond)
}

/// `wait_until` for async tests: sleeps on the runtime between polls (every 5 ms), so the tasks
/// under test keep running on a single-threaded test runtime.
pub async fn wait_until_async(what: &str, deadline: Duration, cond: impl Fn() -> bool) {
    let end = tokio::time::Instant::now() + deadline;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `wait_until` that also prints the given nodes' logs on timeout.
pub fn wait_until_logs(
    what: &str,
    deadline: Duration,
    nodes: &[&Node],
    mut cond: impl FnMut() -> bool,
) {
    let end = Instant::now() + deadline;
    while !cond() {
        if Instant::now() > end {
            let logs: String = nodes
                .iter()
                .map(|n| format!("\n----- log of {} -----\n{}", n.cfg.id, n.log_contents()))
                .collect();
            panic!("timed out after {deadline:?} waiting for: {what}{logs}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Relative `/`-separated path → SHA-256 of every regular file under `dir`, skipping the named
/// top-level entries. Files that vanish during the walk are ignored (a node may be writing).
pub fn tree(dir: &Path, skip: &[&str]) -> BTreeMap<String, [u8; 32]> {
    let mut out = BTreeMap::new();
    walk(dir, "", skip, &mut out);
    out
}

fn walk(dir: &Path, prefix: &str, skip: &[&str], out: &mut BTreeMap<String, [u8; 32]>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if prefix.is_empty() && skip.contains(&name.as_str()) {
            continue;
        }
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        match entry.file_type() {
            Ok(ft) if ft.is_dir() => walk(&entry.path(), &rel, &[], out),
            Ok(ft) if ft.is_file() => {
                let mut bytes = vec![];
                if File::open(entry.path())
                    .and_then(|mut f| f.read_to_end(&mut bytes))
                    .is_ok()
                {
                    out.insert(rel, Sha256::digest(&bytes).into());
                }
            }
            _ => {}
        }
    }
}

/// Node-local content the generator writes and that must never replicate.
pub const NODE_LOCAL: &[&str] = &["logs", "temp", "data", "gwc", "security", "logging.xml"];

/// The part of a data directory that must be identical on every node.
pub fn replicated_tree(dir: &Path) -> BTreeMap<String, [u8; 32]> {
    tree(dir, NODE_LOCAL)
}

/// Missing / extra / different paths of `b` relative to `a`, at most 20 of each kind.
pub fn diff_summary(a: &BTreeMap<String, [u8; 32]>, b: &BTreeMap<String, [u8; 32]>) -> String {
    let missing: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let extra: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    let different: Vec<_> = a
        .iter()
        .filter(|(k, h)| b.get(*k).is_some_and(|h2| h2 != *h))
        .map(|(k, _)| k)
        .collect();
    let mut out = String::new();
    for (label, list) in [
        ("missing", missing),
        ("extra", extra),
        ("different", different),
    ] {
        if !list.is_empty() {
            out += &format!("  {label} ({}):", list.len());
            list.iter()
                .take(20)
                .for_each(|p| out += &format!("\n    {p}"));
            out += "\n";
        }
    }
    out
}

/// Waits until every slave's replicated tree equals the master's; on timeout panics with a diff.
pub fn assert_converged(master_dir: &Path, slave_dirs: &[&Path], deadline: Duration) {
    let what = format!("converged with {}", master_dir.display());
    let have = || {
        (slave_dirs.iter())
            .map(|s| (s.display().to_string(), replicated_tree(s)))
            .collect()
    };
    converge(
        &what,
        deadline,
        || replicated_tree(master_dir),
        have,
        String::new,
    );
}

/// A file tree: relative path → SHA-256.
pub type Tree = BTreeMap<String, [u8; 32]>;

/// The one wait for convergence: until every tree `have` names equals `want` (both read again
/// at every poll). Returns the start of the last poll that still saw a difference — an instant
/// certainly before the last file landed. On timeout panics with each difference and `logs()`.
pub fn converge(
    what: &str,
    deadline: Duration,
    want: impl Fn() -> Tree,
    have: impl Fn() -> Vec<(String, Tree)>,
    logs: impl Fn() -> String,
) -> Instant {
    let end = Instant::now() + deadline;
    let mut last_unconverged = Instant::now();
    loop {
        let started = Instant::now();
        let want = want();
        let diffs: Vec<String> = (have().into_iter())
            .filter(|(_, t)| *t != want)
            .map(|(who, t)| format!("{who}:\n{}", diff_summary(&want, &t)))
            .collect();
        if diffs.is_empty() {
            return last_unconverged;
        }
        last_unconverged = started;
        if Instant::now() > end {
            panic!(
                "not {what} after {deadline:?}:\n{}\n{}",
                diffs.join(""),
                logs()
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The logs of `nodes`, each under a header with its id: what a failing test prints.
pub fn logs_of(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("----- {} -----\n{}", n.config().id, n.log_contents()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// gscluster's temporary files (`.gscluster-*.tmp`) under `dir`.
pub fn temp_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    find_temps(dir, &mut out);
    out
}

fn find_temps(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        match e.file_type() {
            Ok(t) if t.is_dir() => find_temps(&e.path(), out),
            _ if name.starts_with(".gscluster-") && name.ends_with(".tmp") => {
                out.push(e.path().display().to_string())
            }
            _ => {}
        }
    }
}
