//! `gscluster demo`: a small cluster on loopback, in one command and with nothing installed —
//! the embedded broker in a master, two slaves, each node a `gscluster run` process of this
//! binary with its own copy of the example data directory and a stand-in GeoServer of its own
//! that records reloads. It makes GeoServer-shaped changes on the master (a new layer with its
//! style, an edit, a delete), prints each Delta published, applied on each slave and each
//! reload as it happens, then the group's status table; with `--keep` it leaves the cluster
//! running for the user's own edits until Ctrl-C. It removes everything it made when it ends
//! (a run that failed keeps its folder and says where, for its logs). DOCS: README.md.

mod example;
mod standin;

use crate::status::report::{report, table, Limits};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

/// `println!` that does not panic when standard output is gone (`gscluster demo | head`): the
/// demo goes on and still stops its nodes.
macro_rules! show {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `gscluster demo [--keep] [--dir DIR]`.
pub struct Options {
    pub keep: bool,
    /// Where to put the nodes' folders (a new or empty folder); a temporary one otherwise.
    pub dir: Option<PathBuf>,
}

/// What the demo hears of its nodes.
pub enum Event {
    /// A line a node logged.
    Line { node: String, line: String },
    /// A node's stand-in GeoServer was asked to reload (`ok`: with the right credentials).
    Reload { node: String, ok: bool },
    /// A node's process ended.
    Exited { node: String },
    /// Ctrl-C or SIGTERM (`--keep`).
    Stop,
}

/// The nodes: id and role. The master holds the embedded broker.
const NODES: [(&str, &str); 3] = [
    ("gs-master", "master"),
    ("gs-slave1", "slave"),
    ("gs-slave2", "slave"),
];
const SLAVES: [&str; 2] = ["gs-slave1", "gs-slave2"];
/// The group key the nodes share, in the demo's folder.
const KEY_FILE: &str = "group.key";
/// How long one step may take before the demo gives up (each takes about a second).
const STEP: Duration = Duration::from_secs(30);

/// Run the demo.
pub fn run(opts: Options) -> ExitCode {
    let mut demo = match Demo::start(&opts) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("gscluster demo: {e}");
            return ExitCode::from(1);
        }
    };
    let mut result = demo.scenario();
    if result.is_ok() && opts.keep {
        result = demo.keep();
    }
    if let Err(e) = &result {
        eprintln!("gscluster demo: {e}");
    }
    demo.stop(result.is_ok());
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Where the demo's files live, and how much of it to remove at the end.
enum Folder {
    Temp(tempfile::TempDir),
    /// `--dir`: the folder given, and whether the demo made it.
    Given(PathBuf, bool),
}

impl Folder {
    fn open(dir: Option<&Path>) -> Result<Folder, String> {
        let Some(dir) = dir else {
            return tempfile::Builder::new()
                .prefix("gscluster-demo-")
                .tempdir()
                .map(Folder::Temp)
                .map_err(|e| format!("cannot make a temporary folder: {e}"));
        };
        let made = !dir.exists();
        if !made && std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_some()) {
            return Err(format!(
                "--dir {}: not an empty folder; give a new or empty one (the demo removes what it makes there)",
                dir.display()
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
        Ok(Folder::Given(dir.to_path_buf(), made))
    }

    fn path(&self) -> &Path {
        match self {
            Folder::Temp(t) => t.path(),
            Folder::Given(p, _) => p,
        }
    }

    /// Remove what the demo made.
    fn remove(self) -> std::io::Result<()> {
        match self {
            Folder::Temp(t) => t.close(),
            Folder::Given(p, true) => std::fs::remove_dir_all(p),
            Folder::Given(p, false) => {
                for (node, _) in NODES {
                    let dir = p.join(node);
                    if dir.exists() {
                        std::fs::remove_dir_all(dir)?;
                    }
                }
                match std::fs::remove_file(p.join(KEY_FILE)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                }
            }
        }
    }
}

struct Demo {
    folder: Option<Folder>,
    children: Vec<(String, Child)>,
    events: Receiver<Event>,
    sender: Sender<Event>,
    started: Instant,
    /// Per node: its status page's port.
    pages: BTreeMap<String, u16>,
    connected: BTreeSet<String>,
    synced: BTreeSet<String>,
    reloads: BTreeMap<String, u32>,
    /// Per slave, its reload count when it last wrote files (a Delta applied, a round that
    /// wrote): a reload above it has taken them in.
    last_write: BTreeMap<String, u32>,
    /// The slaves that applied a Delta since the current step began.
    applied_in_step: BTreeSet<String>,
    stopping: bool,
}

impl Demo {
    fn start(opts: &Options) -> Result<Demo, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let folder = Folder::open(opts.dir.as_deref())?;
        let (sender, events) = mpsc::channel();
        let mut demo = Demo {
            folder: Some(folder),
            children: Vec::new(),
            events,
            sender,
            started: Instant::now(),
            pages: BTreeMap::new(),
            connected: BTreeSet::new(),
            synced: BTreeSet::new(),
            reloads: BTreeMap::new(),
            last_write: BTreeMap::new(),
            applied_in_step: BTreeSet::new(),
            stopping: false,
        };
        if let Err(e) = demo.launch(&exe) {
            demo.stop(false);
            return Err(e);
        }
        Ok(demo)
    }

    fn root(&self) -> &Path {
        self.folder
            .as_ref()
            .expect("the folder is there until stop")
            .path()
    }

    fn data(&self, node: &str) -> PathBuf {
        self.root().join(node).join("data")
    }

    /// Lay out the nodes' folders, start their stand-in GeoServers and their processes.
    fn launch(&mut self, exe: &Path) -> Result<(), String> {
        let broker = free_port()?;
        let key = self.root().join(KEY_FILE);
        write_key(&key).map_err(|e| format!("{}: {e}", key.display()))?;
        show!(
            "gscluster demo: a master and two slaves on loopback, in {}",
            self.root().display()
        );
        let mut configs = Vec::new();
        for (node, role) in NODES {
            let dir = self.root().join(node);
            let data = dir.join("data");
            example::write_tree(&data).map_err(|e| format!("{}: {e}", data.display()))?;
            let geoserver = TcpListener::bind("127.0.0.1:0")
                .map_err(|e| format!("cannot listen for {node}'s stand-in GeoServer: {e}"))?;
            let gs_port = geoserver.local_addr().map_err(|e| e.to_string())?.port();
            let (events, id) = (self.sender.clone(), node.to_string());
            standin::serve(geoserver, move |ok| {
                let node = id.clone();
                let _ = events.send(Event::Reload { node, ok });
            });
            let page = free_port()?;
            self.pages.insert(node.to_string(), page);
            let config = dir.join("config.toml");
            let text = node_config(node, role, &dir, broker, gs_port, page)
                + &format!(
                    "\n[security]\nkey_file = {}\n",
                    toml::Value::String(key.to_string_lossy().into_owned())
                );
            std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
            configs.push((node, config));
            show!(
                "  {node:<10} {role:<7} status page http://127.0.0.1:{page}/  data {}",
                data.display()
            );
        }
        // The master first, with the broker: slaves started before it would log refused
        // connections until it listens.
        let mut configs = configs.into_iter();
        let (master, config) = configs.next().expect("the master");
        self.spawn(exe, master, &config)?;
        self.wait("the master and its broker up", |d| {
            d.connected.contains(master)
        })?;
        for (node, config) in configs {
            self.spawn(exe, node, &config)?;
        }
        Ok(())
    }

    /// Start `node`'s `gscluster run` with its log copied to its folder and to the demo.
    fn spawn(&mut self, exe: &Path, node: &str, config: &Path) -> Result<(), String> {
        let mut child = Command::new(exe)
            .arg("run")
            .arg("-c")
            .arg(config)
            .env("RUST_LOG", "info,rumqttd=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: Ctrl-C reaches the demo, which stops the nodes in turn.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {node}: {e}"))?;
        let stderr = child.stderr.take().expect("piped");
        let dir = self.root().join(node);
        let log = std::fs::File::create(dir.join("gscluster.log"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        follow(node, stderr, log, self.sender.clone());
        self.children.push((node.to_string(), child));
        Ok(())
    }

    /// The changes, each waited for on both slaves.
    fn scenario(&mut self) -> Result<(), String> {
        // Caught up, and what that wrote reloaded: a reload still due would pass for the
        // first step's.
        self.wait("the nodes connected and the slaves caught up", |d| {
            d.connected.len() == NODES.len()
                && SLAVES.iter().all(|s| d.synced.contains(*s) && d.settled(s))
        })?;
        let master = self.data("gs-master");

        self.step("1/3  a new layer, demo:rivers, with its new style river");
        example::add_layer(&master).map_err(|e| e.to_string())?;
        self.replicated("the new layer")?;

        self.step("2/3  the layer's title edited: \"Rivers and canals\"");
        example::retitle_layer(&master, "Rivers and canals").map_err(|e| e.to_string())?;
        self.replicated("the edit")?;

        self.step("3/3  the layer and its style deleted");
        example::remove_layer(&master).map_err(|e| e.to_string())?;
        self.replicated("the deletion")?;

        self.status_table()?;
        let reloads: Vec<String> = (SLAVES.iter())
            .map(|s| format!("{s} {}", self.reloads_of(s)))
            .collect();
        show!(
            "3 changes replicated to 2 slaves in {:.1} s; GeoServer reloads: {}.",
            self.started.elapsed().as_secs_f64(),
            reloads.join(", ")
        );
        Ok(())
    }

    fn step(&mut self, what: &str) {
        self.applied_in_step.clear();
        show!("\n== {what}, on gs-master");
    }

    /// How many times `node`'s GeoServer reloaded.
    fn reloads_of(&self, node: &str) -> u32 {
        self.reloads.get(node).copied().unwrap_or(0)
    }

    /// Whether `slave`'s GeoServer reloaded since it last wrote files.
    fn settled(&self, slave: &str) -> bool {
        (self.last_write.get(slave)).is_none_or(|&at| self.reloads_of(slave) > at)
    }

    /// Wait until both slaves hold the master's files of the layer (or lack them with it),
    /// having applied a Delta for it, and each has reloaded its GeoServer since.
    fn replicated(&mut self, what: &str) -> Result<(), String> {
        let master = self.data("gs-master");
        self.wait(&format!("{what} on both slaves, and a reload each"), |d| {
            SLAVES.iter().all(|s| {
                let same = example::LAYER_FILES.iter().all(|f| {
                    std::fs::read(master.join(f)).ok() == std::fs::read(d.data(s).join(f)).ok()
                });
                same && d.applied_in_step.contains(*s) && d.settled(s)
            })
        })
    }

    /// `node` wrote files: the next reload takes them in.
    fn wrote(&mut self, node: &str) {
        self.last_write
            .insert(node.to_string(), self.reloads_of(node));
    }

    /// Print the group's status as `gscluster status` does, once every node reports its last
    /// change (statuses are coalesced: up to a second late).
    fn status_table(&mut self) -> Result<(), String> {
        let config = self.root().join("gs-master").join("config.toml");
        let cfg = crate::config::load(&config).map_err(|e| e.to_string())?;
        let auth = cfg.auth();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + STEP;
        let r = loop {
            let (broker, statuses) = rt.block_on(crate::cmd::status::gather(&cfg, &auth))?;
            let r = report(
                &cfg.node.group,
                &broker,
                &statuses,
                crate::clock::now_ms(),
                Limits::default(),
            );
            let settled = r.nodes.len() == NODES.len()
                && r.problems.is_empty()
                && (r.nodes.iter())
                    .all(|n| n.role != "slave" || n.reload.as_ref().is_some_and(|rl| rl.ok > 0));
            if settled || Instant::now() > deadline {
                break r;
            }
            self.drain(Duration::from_millis(300));
        };
        show!("\n== the group's status (gscluster status)\n{}", table(&r));
        Ok(())
    }

    /// `--keep`: stream what happens until Ctrl-C or SIGTERM.
    fn keep(&mut self) -> Result<(), String> {
        show!(
            "\nThe cluster keeps running. Edit, add or remove files under\n  {}\nand watch them reach the slaves; the status pages are listed above. Ctrl-C stops it and removes {}.",
            self.data("gs-master").display(),
            self.root().display()
        );
        let stop = self.sender.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    use tokio::signal::unix::{signal, SignalKind};
                    let Ok(mut term) = signal(SignalKind::terminate()) else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                });
            }
            let _ = stop.send(Event::Stop);
        });
        loop {
            match self.events.recv() {
                Ok(Event::Stop) | Err(_) => break,
                Ok(e) => self.on(e)?,
            }
        }
        show!("\nstopping");
        Ok(())
    }

    /// Take events until `done` holds, for at most [`STEP`].
    fn wait(&mut self, what: &str, done: impl Fn(&Demo) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + STEP;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{what}: not within {} s", STEP.as_secs()));
            }
            match self
                .events
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(e) => self.on(e)?,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the nodes are gone".into())
                }
            }
        }
        Ok(())
    }

    /// Take the events that arrive within `d`.
    fn drain(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while let Ok(e) = self
            .events
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            if self.on(e).is_err() {
                return;
            }
        }
    }

    /// Note and print one event.
    fn on(&mut self, e: Event) -> Result<(), String> {
        match e {
            Event::Line { node, line } => self.on_line(&node, &line),
            Event::Reload { node, ok: true } => {
                let n = self.reloads.entry(node.clone()).or_default();
                *n += 1;
                let n = *n;
                self.say(&node, &format!("its GeoServer reloaded (reload {n})"));
            }
            Event::Reload { node, ok: false } => {
                self.say(&node, "its GeoServer refused a reload: wrong credentials")
            }
            Event::Exited { node } if !self.stopping => {
                return Err(format!(
                    "{node} stopped unexpectedly; its log: {}",
                    self.root().join(&node).join("gscluster.log").display()
                ));
            }
            Event::Exited { .. } | Event::Stop => {}
        }
        Ok(())
    }

    /// The lines worth showing, said plainly; warnings and errors as they are.
    fn on_line(&mut self, node: &str, line: &str) {
        let Some((level, msg)) = parse_line(line) else {
            return;
        };
        if msg.starts_with("connected to broker") && self.connected.insert(node.to_string()) {
            self.say(node, "connected to the broker");
        } else if let Some(rest) = msg.split_once(": seq ").map(|(_, r)| r) {
            // "<why>: seq N: K change(s) in M message(s), B bytes, detected in …"
            let what = rest.split(", detected").next().unwrap_or(rest);
            self.say(node, &format!("published delta {what}"));
        } else if let Some(rest) = msg.strip_prefix("applied delta ") {
            // "E/N from gs-master: K of M change(s) written in T ms": K = 0 writes nothing.
            if !rest.contains(": 0 of ") {
                self.wrote(node);
            }
            self.applied_in_step.insert(node.to_string());
            self.say(node, &format!("applied delta {rest}"));
        } else if msg.starts_with("no GeoServer reload needed") {
            self.last_write.remove(node);
            self.say(node, msg);
        } else if msg.starts_with("resync round ") && msg.contains(" complete in ") {
            // "resync round N from gs-master complete in 15 ms: 0 file(s) fetched (0 written), …"
            self.synced.insert(node.to_string());
            if !msg.contains(" (0 written)") || !msg.contains(" 0 removed") {
                self.wrote(node);
            }
            let rest = msg.split_once(" from ").map_or(msg, |(_, r)| r);
            let said = rest.replacen(" complete in ", " in ", 1);
            self.say(node, &format!("caught up with {said}"));
        } else if level == "WARN" || level == "ERROR" {
            self.say(node, &format!("{level}: {msg}"));
        }
    }

    fn say(&self, node: &str, what: &str) {
        show!(
            "{:>6.2} s  {node:<10} {what}",
            self.started.elapsed().as_secs_f64()
        );
        let _ = std::io::stdout().flush();
    }

    /// Stop the nodes (SIGTERM, then a kill after 10 s), and remove the folder if `clean`.
    fn stop(&mut self, clean: bool) {
        self.stopping = true;
        for (_, child) in &self.children {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (node, child) in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        eprintln!("gscluster demo: {node} did not stop within 10 s; killed");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        let Some(folder) = self.folder.take() else {
            return;
        };
        let path = folder.path().to_path_buf();
        if !clean {
            eprintln!(
                "gscluster demo: its folder and the nodes' logs are kept in {}",
                path.display()
            );
            if let Folder::Temp(t) = folder {
                let _ = t.keep();
            }
            return;
        }
        match folder.remove() {
            Ok(()) => show!("removed {}", path.display()),
            Err(e) => eprintln!("gscluster demo: cannot remove {}: {e}", path.display()),
        }
    }
}

impl Drop for Demo {
    /// A demo ended any other way (a panic) still stops its nodes; their folder stays.
    fn drop(&mut self) {
        if self.folder.is_some() {
            self.stop(false);
        }
    }
}

/// Copy a node's log to its file and to the demo, line by line.
fn follow(
    node: &str,
    from: impl std::io::Read + Send + 'static,
    mut to: std::fs::File,
    events: Sender<Event>,
) {
    let node = node.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(to, "{line}");
            let event = Event::Line {
                node: node.clone(),
                line,
            };
            if events.send(event).is_err() {
                break;
            }
        }
        let _ = events.send(Event::Exited { node });
    });
}

/// "[2026-12-07T15:52:03.475Z INFO  gscluster::reload] message" → ("INFO", "message").
fn parse_line(line: &str) -> Option<(&str, &str)> {
    let (head, msg) = line.strip_prefix('[')?.split_once("] ")?;
    let level = head.split_whitespace().nth(1)?;
    Some((level, msg))
}

/// A new group key (32 random bytes, hex, mode 0600): the demo's messages are authenticated,
/// as a real cluster's should be (docs/security.md).
fn write_key(path: &Path) -> std::io::Result<()> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{hex}")
}

/// A port free on loopback now.
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

/// One node's configuration: short quiet windows, so that the demo's changes show within a
/// second; everything else as shipped.
fn node_config(
    node: &str,
    role: &str,
    dir: &Path,
    broker: u16,
    geoserver: u16,
    page: u16,
) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let path = |p: &Path| q(&p.to_string_lossy());
    let mut out = format!(
        "[node]\nid = {}\ngroup = \"demo\"\nrole = {}\nstate_dir = {}\n\n",
        q(node),
        q(role),
        path(&dir.join("state"))
    );
    out += &format!(
        "[geoserver]\ndata_dir = {}\nurl = \"http://127.0.0.1:{geoserver}/geoserver\"\nuser = \"admin\"\npassword = \"geoserver\"\nreload_quiet_ms = 300\n\n",
        path(&dir.join("data"))
    );
    out += "[master]\nquiet_ms = 100\n\n";
    out += &format!("[mqtt]\nservers = [\"mqtt://127.0.0.1:{broker}\"]\n\n");
    if role == "master" {
        out += &format!("[broker]\nlisten = \"127.0.0.1:{broker}\"\n\n");
    }
    out += &format!("[metrics]\nlisten = \"127.0.0.1:{page}\"\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_s_config_is_valid_and_says_where_it_lives() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("gs-master");
        example::write_tree(&node.join("data")).unwrap();
        let text = node_config("gs-master", "master", &node, 1883, 8080, 9464);
        let file = dir.path().join("config.toml");
        std::fs::write(&file, text).unwrap();
        let cfg = crate::config::load(&file).unwrap();
        assert_eq!(cfg.node.id, "gs-master");
        assert_eq!(cfg.geoserver.data_dir, node.join("data"));
        assert!(cfg.broker.is_some() && cfg.metrics.is_some());
    }

    #[test]
    fn log_lines_are_read_for_their_level_and_message() {
        let line = "[2026-12-07T15:52:03.475Z WARN  gscluster::cmd] no key_file: x";
        assert_eq!(parse_line(line), Some(("WARN", "no key_file: x")));
        assert_eq!(parse_line("thread panicked"), None);
    }

    #[test]
    fn a_given_folder_must_be_new_or_empty_and_only_what_the_demo_made_goes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.txt"), "x").unwrap();
        let e = Folder::open(Some(dir.path())).err().unwrap();
        assert!(e.contains("not an empty folder"), "{e}");
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let f = Folder::open(Some(&empty)).unwrap();
        std::fs::create_dir_all(empty.join("gs-slave1/data")).unwrap();
        write_key(&empty.join(KEY_FILE)).unwrap();
        f.remove().unwrap();
        assert!(empty.is_dir() && std::fs::read_dir(&empty).unwrap().next().is_none());
        let new = dir.path().join("new");
        let f = Folder::open(Some(&new)).unwrap();
        f.remove().unwrap();
        assert!(!new.exists());
    }
}
