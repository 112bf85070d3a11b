//! The command-line contract (README "The two commands", design.md sections 4 and 5), against the
//! real `gscluster` binary: exit codes, what `check` prints, how configuration errors are named,
//! and how `run` starts and stops. Nothing here looks inside the product; it only runs it.

use crate::support::run::{run, Ran};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::cluster::copy_tree;
use crate::support::generator::{generate, Spec};
use crate::support::node::{free_port, tree, wait_until, NodeConfig};

/// The binary with a clean environment for what it reads (info logs).
fn gscluster() -> Command {
    crate::support::run::command("info")
}

fn run_to_end(args: &[&str]) -> Ran {
    run(args, "info")
}

/// `gscluster check -c CONFIG`.
fn check(config: &Path) -> Ran {
    run(
        &["check", "-c", config.to_str().expect("UTF-8 path")],
        "info",
    )
}

/// Waits (with a deadline, killing it on timeout) for a child that is expected to exit by itself.
fn exit_within(child: &mut Child, deadline: Duration, what: &str) -> ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Usage

#[test]
fn version_prints_the_package_version_and_exits_0() {
    let out = run_to_end(&["--version"]);
    assert_eq!(Some(out.code), Some(0));
    assert_eq!(
        out.stdout.clone().trim(),
        format!("gscluster {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run_to_end(&["-V"]);
    assert_eq!(Some(out.code), Some(0));
    assert!(out.stdout.clone().contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_prints_usage_with_run_and_check_and_exits_0() {
    for flag in ["--help", "-h"] {
        let out = run_to_end(&[flag]);
        assert_eq!(Some(out.code), Some(0), "{flag}");
        let usage = out.stdout.clone();
        assert!(usage.contains("USAGE"), "{flag}: {usage}");
        assert!(usage.contains("gscluster run"), "{flag}: {usage}");
        assert!(usage.contains("gscluster check"), "{flag}: {usage}");
        assert!(usage.contains("-c"), "{flag}: {usage}");
        assert!(usage.contains("GSCLUSTER_CONFIG"), "{flag}: {usage}");
    }
}

#[test]
fn unknown_command_exits_2_and_names_it() {
    let out = run_to_end(&["frobnicate"]);
    assert_eq!(Some(out.code), Some(2));
    let err = out.stderr.clone();
    assert!(err.contains("frobnicate"), "{err}");
    assert!(err.contains("USAGE"), "usage follows the message: {err}");
}

#[test]
fn unknown_argument_exits_2_and_names_it() {
    for args in [
        &["check", "--frobnicate"][..],
        &["run", "-x"][..],
        &["check", "extra"][..],
    ] {
        let out = run_to_end(args);
        assert_eq!(Some(out.code), Some(2), "{args:?}");
        let err = out.stderr.clone();
        let bad = args.last().unwrap();
        assert!(err.contains(bad), "{args:?}: {err}");
    }
}

#[test]
fn config_option_without_a_file_exits_2() {
    let out = run_to_end(&["check", "-c"]);
    assert_eq!(Some(out.code), Some(2));
    assert!(out.stderr.clone().contains("-c"), "{}", out.stderr.clone());
}

#[test]
fn an_option_of_another_command_exits_2_naming_the_option_and_the_command() {
    for (args, option, command) in [
        (&["check", "--json"][..], "--json", "check"),
        (&["run", "--limit", "5"][..], "--limit", "run"),
        (&["status", "--diff"][..], "--diff", "status"),
    ] {
        let out = run_to_end(args);
        assert_eq!(Some(out.code), Some(2), "{args:?}");
        let err = out.stderr.clone();
        assert!(
            err.contains(option) && err.contains(command),
            "{args:?}: {err}"
        );
        assert!(err.contains("USAGE"), "usage follows the message: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Shell completions

/// `gscluster completions SHELL` written to `dir/name`.
fn completion_script(shell: &str, dir: &Path, name: &str) -> PathBuf {
    let out = run_to_end(&["completions", shell]);
    assert_eq!(
        Some(out.code),
        Some(0),
        "completions {shell}: {}",
        out.stderr
    );
    let path = dir.join(name);
    fs::write(&path, &out.stdout).unwrap();
    path
}

/// What the bash completion function offers for `words` (the last one is being completed),
/// in `cwd`, as bash sets it up for a completion.
fn bash_completes(script: &Path, cwd: &Path, words: &[&str]) -> Vec<String> {
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c"])
        .arg(
            r#"source "$1" || exit 9; shift
            COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
            _gscluster; status=$?
            printf '%s
' "${COMPREPLY[@]}"; exit $status"#,
        )
        .arg("bash")
        .arg(script)
        .args(words)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{words:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut offered: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    offered.sort();
    offered
}

#[test]
fn completions_bash_is_valid_bash_that_completes_commands_options_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let script = completion_script("bash", dir.path(), "gscluster.bash");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let cwd = dir.path().join("here");
    fs::create_dir_all(cwd.join("configs")).unwrap();
    fs::write(cwd.join("config.toml"), "").unwrap();
    fs::write(cwd.join("site-a-1.bundle"), "").unwrap();
    let complete = |words: &[&str]| bash_completes(&script, &cwd, words);

    assert_eq!(complete(&["gscluster", "st"]), ["status"]);
    assert_eq!(complete(&["gscluster", "co"]), ["completions"]);
    let commands = complete(&["gscluster", ""]);
    for c in [
        "run", "check", "status", "export", "import", "log", "show", "rollback",
    ] {
        assert!(commands.iter().any(|o| o == c), "{c}: {commands:?}");
    }
    assert_eq!(
        complete(&["gscluster", "status", "--"]),
        ["--config", "--json", "--max-lag", "--max-lag-s"]
    );
    // The command is found after an option given first, with its value.
    assert_eq!(
        complete(&["gscluster", "-c", "config.toml", "log", "--"]),
        ["--config", "--json", "--limit", "--node", "--since"]
    );
    assert_eq!(
        complete(&["gscluster", "status", "-c", "con"]),
        ["config.toml", "configs"]
    );
    assert_eq!(
        complete(&["gscluster", "check", "--config", "config."]),
        ["config.toml"]
    );
    assert_eq!(
        complete(&["gscluster", "import", "site"]),
        ["site-a-1.bundle"]
    );
    assert_eq!(
        complete(&["gscluster", "export", "--out", "si"]),
        ["site-a-1.bundle"]
    );
    assert_eq!(complete(&["gscluster", "demo", "--dir", ""]), ["configs"]);
    assert_eq!(complete(&["gscluster", "completions", ""]), ["bash", "zsh"]);
    assert_eq!(complete(&["gscluster", "completions", "z"]), ["zsh"]);
    assert!(
        complete(&["gscluster", "log", "--limit", ""]).is_empty(),
        "a number"
    );
    assert_eq!(complete(&["gscluster", "-"]), ["--help", "--version"]);
}

#[test]
fn completions_zsh_is_valid_zsh_when_zsh_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let script = completion_script("zsh", dir.path(), "_gscluster");
    let text = fs::read_to_string(&script).unwrap();
    assert!(text.starts_with("#compdef gscluster\n"), "{text}");
    match Command::new("zsh").arg("-n").arg(&script).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("skipped: zsh -n of the zsh completion script: zsh is not installed");
        }
        Err(e) => panic!("zsh: {e}"),
        Ok(out) => assert!(
            out.status.success(),
            "zsh -n: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn completions_for_another_shell_exits_2_naming_it() {
    for args in [&["completions", "fish"][..], &["completions"][..]] {
        let out = run_to_end(args);
        assert_eq!(Some(out.code), Some(2), "{args:?}");
        let err = out.stderr.clone();
        assert!(err.contains("bash or zsh"), "{args:?}: {err}");
        assert!(err.contains("USAGE"), "{args:?}: {err}");
    }
    assert!(run_to_end(&["completions", "fish"]).stderr.contains("fish"));
    assert!(run_to_end(&["completions", "fish"]).stdout.is_empty());
}

// ---------------------------------------------------------------------------------------------
// check on a good configuration

/// A temp folder holding `data/` (the data dir), `config.toml`, and room for `state/`, which no
/// test creates: a command that must write nothing is caught creating it.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("cli test ")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("data")).unwrap();
        Setup { dir }
    }
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }
    /// The test-support config for this setup: a slave without a broker.
    fn node_config(&self) -> NodeConfig {
        NodeConfig::new(
            "cli-node",
            "slave",
            &self.data(),
            &self.state(),
            vec![format!("mqtt://127.0.0.1:{}", free_port())],
        )
    }
    fn write_config(&self, toml: &str) -> PathBuf {
        fs::write(self.config_path(), toml).unwrap();
        self.config_path()
    }
}

/// Files per top-level entry of a generated tree, computed from what the generator is documented
/// to write: everything replicates except its node-local content (crate::support::node::NODE_LOCAL).
fn expected_per_top(data: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for path in tree(data, &[]).keys() {
        let (top, label) = match path.split_once('/') {
            Some((dir, _)) => (dir.to_string(), format!("{dir}/")),
            None => (path.clone(), path.clone()),
        };
        if !crate::support::node::NODE_LOCAL.contains(&top.as_str()) {
            *out.entry(label).or_insert(0) += 1;
        }
    }
    out
}

/// `check`'s table: lines `  N files B bytes  TOP`, without the `in all` line.
fn listed_per_top(stdout: &str) -> (BTreeMap<String, usize>, Option<usize>) {
    let mut per_top = BTreeMap::new();
    let mut total = None;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [n, "files", _bytes, "bytes", rest @ ..] = words.as_slice() {
            let Ok(n) = n.parse::<usize>() else { continue };
            let top = rest.join(" ");
            if top == "in all" {
                total = Some(n);
            } else {
                per_top.insert(top, n);
            }
        }
    }
    (per_top, total)
}

#[test]
fn check_on_a_good_config_prints_ok_and_per_folder_counts_of_the_files_that_replicate() {
    let s = Setup::new();
    generate(&s.data(), &Spec::small(), 5);
    let before = tree(&s.data(), &[]);
    let cfg = s.write_config(&s.node_config().to_toml());
    let out = check(&cfg);
    let stdout = out.stdout.clone();
    assert_eq!(Some(out.code), Some(0), "{stdout}\n{}", out.stderr.clone());
    assert!(stdout.lines().any(|l| l.trim() == "ok"), "{stdout}");

    let expected = expected_per_top(&s.data());
    for top in ["workspaces/", "styles/", "layergroups/", "global.xml"] {
        assert!(
            expected.contains_key(top),
            "generator wrote no {top}: {expected:?}"
        );
    }
    let (listed, total) = listed_per_top(&stdout);
    assert_eq!(listed, expected, "per-folder counts\n{stdout}");
    assert_eq!(total, Some(expected.values().sum()), "{stdout}");
    for local in ["logs", "security", "data", "temp", "logging.xml", "gwc"] {
        assert!(
            !listed.keys().any(|t| t.trim_end_matches('/') == local),
            "{local} is node-local and must not be listed\n{stdout}"
        );
    }
    assert!(!s.state().exists(), "check created the state dir");
    assert_eq!(tree(&s.data(), &[]), before, "check changed the data dir");
}

#[test]
fn check_honours_gscluster_config_when_c_is_absent() {
    let s = Setup::new();
    generate(&s.data(), &Spec::small(), 6);
    let cfg = s.write_config(&s.node_config().to_toml());
    let out: Ran = (gscluster().arg("check").env("GSCLUSTER_CONFIG", &cfg))
        .output()
        .unwrap()
        .into();
    let stdout = out.stdout.clone();
    assert_eq!(Some(out.code), Some(0), "{stdout}\n{}", out.stderr.clone());
    assert!(stdout.contains("cli-node"), "{stdout}");
    assert!(stdout.contains(&s.data().display().to_string()), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// check and run on bad configurations

/// One broken configuration: how to break it, and what the message must contain.
struct Bad {
    what: &'static str,
    toml: String,
    /// Every one of these must appear in the error message (the key, and the reason).
    needles: Vec<String>,
}

/// Inserts `line` right after the `[section]` header of a rendered config.
fn with_line(toml: &str, section: &str, line: &str) -> String {
    let header = format!("[{section}]\n");
    let at = toml.find(&header).unwrap_or_else(|| panic!("no {header}")) + header.len();
    format!("{}{line}\n{}", &toml[..at], &toml[at..])
}

/// Removes the first line starting with `prefix`.
fn without_line(toml: &str, prefix: &str) -> String {
    let mut done = false;
    toml.lines()
        .filter(|l| {
            let drop = !done && l.starts_with(prefix);
            done |= drop;
            !drop
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn q(p: &Path) -> String {
    toml::Value::String(p.to_string_lossy().into_owned()).to_string()
}

fn bad_configs(s: &Setup) -> Vec<Bad> {
    let good = s.node_config().to_toml();
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut inside = s.node_config();
    inside.state_dir = s.data().join(".gscluster");
    let missing_pw = s.dir.path().join("no such password");
    let pw_file = s.dir.path().join("gs.pass");
    fs::write(&pw_file, "secret\n").unwrap();
    vec![
        Bad {
            what: "unknown key",
            toml: with_line(&good, "geoserver", "relod_quiet_ms = 500"),
            needles: v(&["relod_quiet_ms", "unknown"]),
        },
        Bad {
            what: "drain_ms above its bound",
            toml: with_line(&good, "geoserver", "drain_ms = 3600000"),
            needles: v(&["[geoserver] drain_ms", "3600000", "at most"]),
        },
        Bad {
            what: "missing [geoserver] data_dir",
            toml: without_line(&good, "data_dir ="),
            needles: v(&["[geoserver] data_dir", "required"]),
        },
        Bad {
            what: "data_dir that does not exist",
            toml: {
                let mut c = s.node_config();
                c.data_dir = s.dir.path().join("no such data dir");
                c.to_toml()
            },
            needles: v(&[
                "[geoserver] data_dir",
                "no such data dir",
                "not a directory",
            ]),
        },
        Bad {
            what: "state_dir inside data_dir",
            toml: inside.to_toml(),
            needles: v(&["[node] state_dir", "must not be inside"]),
        },
        Bad {
            what: "bad [mqtt] servers entry",
            toml: good.replace("servers = [", "servers = [\"http://broker:1883\", "),
            needles: v(&["[mqtt] servers", "http://broker:1883", "mqtt://host:port"]),
        },
        Bad {
            what: "[broker] listen that is not an address",
            toml: format!("{good}[broker]\nlisten = \"not an address\"\n"),
            needles: v(&["[broker] listen", "not an address", "must be an address"]),
        },
        Bad {
            what: "password_file that does not exist",
            toml: with_line(
                &without_line(&good, "password ="),
                "geoserver",
                &format!("password_file = {}", q(&missing_pw)),
            ),
            needles: vec![
                "[geoserver] password_file".into(),
                "no such password".into(),
                "cannot read".into(),
            ],
        },
        Bad {
            what: "both password and password_file",
            toml: with_line(
                &good,
                "geoserver",
                &format!("password_file = {}", q(&pw_file)),
            ),
            needles: v(&["password_file", "password", "only one"]),
        },
        Bad {
            what: "bad enum value",
            toml: good.replace("role = \"slave\"", "role = \"boss\""),
            needles: v(&["boss", "master", "slave", "both"]),
        },
    ]
}

fn assert_names(bad: &Bad, message: &str) {
    for n in &bad.needles {
        assert!(
            message.contains(n.as_str()),
            "{}: message does not contain {n:?}:\n{message}",
            bad.what
        );
    }
}

#[test]
fn check_exits_1_naming_the_key_and_reason_for_each_bad_config_and_writes_nothing() {
    let s = Setup::new();
    generate(&s.data(), &Spec::small(), 7);
    let before = tree(&s.data(), &[]);
    for bad in bad_configs(&s) {
        let cfg = s.write_config(&bad.toml);
        let out = check(&cfg);
        let stderr = out.stderr.clone();
        assert_eq!(
            Some(out.code),
            Some(1),
            "{}: {stderr}\n{}",
            bad.what,
            out.stdout.clone()
        );
        assert_names(&bad, &stderr);
        assert!(
            !out.stdout.clone().lines().any(|l| l.trim() == "ok"),
            "{}: said ok",
            bad.what
        );
        assert!(!s.state().exists(), "{}: state dir created", bad.what);
        assert!(
            !s.data().join(".gscluster").exists(),
            "{}: state dir created inside the data dir",
            bad.what
        );
        assert_eq!(
            tree(&s.data(), &[]),
            before,
            "{}: data dir changed",
            bad.what
        );
    }
}

#[test]
fn check_names_a_config_file_that_does_not_exist() {
    let s = Setup::new();
    let missing = s.dir.path().join("no such config.toml");
    let out = check(&missing);
    assert_eq!(Some(out.code), Some(1));
    let stderr = out.stderr.clone();
    assert!(
        stderr.contains(&missing.display().to_string()),
        "the file is named: {stderr}"
    );
    assert!(stderr.contains("cannot read"), "{stderr}");
}

/// design.md section 5: "bad values ... fail at start-up with the key's name and why".
#[test]
fn check_names_the_key_of_a_bad_enum_or_typed_value() {
    let s = Setup::new();
    let good = s.node_config().to_toml();
    for (toml, key) in [
        (good.replace("role = \"slave\"", "role = \"boss\""), "role"),
        (
            good.replace("reload_quiet_ms = 200", "reload_quiet_ms = \"soon\""),
            "reload_quiet_ms",
        ),
        (
            with_line(&good, "node", "on_drift = \"ignore\""),
            "on_drift",
        ),
    ] {
        let cfg = s.write_config(&toml);
        let out = check(&cfg);
        assert_eq!(Some(out.code), Some(1));
        let stderr = out.stderr.clone();
        // The config path is echoed first; the key must be named in what follows it.
        let message = stderr.replace(&cfg.display().to_string(), "CONFIG");
        assert!(message.contains(key), "{key} not named: {stderr}");
    }
}

#[test]
fn run_with_a_bad_config_exits_1_quickly_naming_the_key_and_writes_nothing() {
    let s = Setup::new();
    generate(&s.data(), &Spec::small(), 8);
    let before = tree(&s.data(), &[]);
    let mut cases = bad_configs(&s);
    cases.push(Bad {
        what: "config file that does not exist",
        toml: String::new(),
        needles: vec![],
    });
    for bad in cases {
        let cfg = if bad.needles.is_empty() {
            fs::remove_file(s.config_path()).ok();
            s.config_path()
        } else {
            s.write_config(&bad.toml)
        };
        let log = s.dir.path().join("run.log");
        let mut child = gscluster()
            .arg("run")
            .arg("-c")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let status = exit_within(&mut child, Duration::from_secs(10), bad.what);
        let stderr = fs::read_to_string(&log).unwrap();
        assert_eq!(status.code(), Some(1), "{}: {stderr}", bad.what);
        if bad.needles.is_empty() {
            assert!(
                stderr.contains(&cfg.display().to_string()),
                "{}: {stderr}",
                bad.what
            );
        }
        assert_names(&bad, &stderr);
        assert!(!s.state().exists(), "{}: state dir created", bad.what);
        assert!(
            !s.data().join(".gscluster").exists(),
            "{}: state dir created inside the data dir",
            bad.what
        );
        assert_eq!(
            tree(&s.data(), &[]),
            before,
            "{}: data dir changed",
            bad.what
        );
    }
}

// ---------------------------------------------------------------------------------------------
// run on the shipped example

/// `config.toml.example` copied beside a copy of `examples/datadir`, so its relative paths
/// resolve there, with the broker moved to a free port.
struct Demo {
    dir: tempfile::TempDir,
    port: u16,
}

impl Demo {
    fn new() -> Demo {
        let dir = tempfile::Builder::new().prefix("demo ").tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_tree(
            &root.join("examples/datadir"),
            &dir.path().join("examples/datadir"),
        );
        let port = free_port();
        let example = fs::read_to_string(root.join("config.toml.example")).unwrap();
        let (mut listen, mut servers) = (0, 0);
        let config: String = example
            .lines()
            .map(|l| {
                if l.starts_with("listen = ") {
                    listen += 1;
                    format!("listen = \"127.0.0.1:{port}\"\n")
                } else if l.starts_with("servers = ") {
                    servers += 1;
                    format!("servers = [\"mqtt://127.0.0.1:{port}\"]\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert_eq!((listen, servers), (1, 1), "example layout changed");
        fs::write(dir.path().join("config.toml"), config).unwrap();
        Demo { dir, port }
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }
    fn data(&self) -> PathBuf {
        self.dir.path().join("examples/datadir")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("target/demo-state")
    }
}

/// A `gscluster run` child whose stderr goes to a file.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// `with_c`: pass `-c`; otherwise set `GSCLUSTER_CONFIG`. The working directory is elsewhere,
    /// so relative paths must resolve against the config file's folder.
    fn start(config: &Path, with_c: bool, log: PathBuf, cwd: &Path) -> Daemon {
        let mut cmd = gscluster();
        cmd.arg("run").current_dir(cwd);
        if with_c {
            cmd.arg("-c").arg(config);
        } else {
            cmd.env("GSCLUSTER_CONFIG", config);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn wait_connected(&mut self) {
        let end = Instant::now() + Duration::from_secs(20);
        while !self.log().contains("connected to broker") {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("exited with {status} before connecting:\n{}", self.log());
            }
            assert!(
                Instant::now() < end,
                "not connected after 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        exit_within(&mut self.child, Duration::from_secs(10), "SIGTERM")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn run_on_the_example_config_connects_and_stops_cleanly_on_sigterm_with_c_or_gscluster_config() {
    let demo = Demo::new();
    let before = tree(&demo.data(), &[]);
    let elsewhere = tempfile::tempdir().unwrap();
    for (i, with_c) in [true, false].into_iter().enumerate() {
        let how = if with_c { "-c" } else { "GSCLUSTER_CONFIG" };
        let log = demo.dir.path().join(format!("run{i}.log"));
        let mut d = Daemon::start(&demo.config(), with_c, log, elsewhere.path());
        d.wait_connected();
        let log = d.log();
        assert!(
            log.contains(&format!("mqtt://127.0.0.1:{}", demo.port)),
            "{how}: {log}"
        );
        assert!(log.contains("demo-node"), "{how}: {log}");
        let status = d.terminate();
        let log = d.log();
        assert!(
            log.contains("for changes; full rescan every 600 s"),
            "{how}: a watched data dir is rescanned every 10 minutes by default: {log}"
        );
        assert_eq!(status.code(), Some(0), "{how}: {status}\n{log}");
        assert!(log.contains("stopped cleanly"), "{how}: {log}");
        assert!(
            demo.state().is_dir(),
            "{how}: state_dir resolves beside the config file"
        );
        assert_eq!(
            fs::read_dir(elsewhere.path()).unwrap().count(),
            0,
            "{how}: nothing is written relative to the working directory"
        );
        assert_eq!(
            tree(&demo.data(), &[]),
            before,
            "{how}: the data dir is left alone"
        );
    }
}

#[test]
fn second_run_on_the_same_state_dir_fails_saying_it_is_in_use() {
    let demo = Demo::new();
    let cwd = tempfile::tempdir().unwrap();
    let mut first = Daemon::start(
        &demo.config(),
        true,
        demo.dir.path().join("first.log"),
        cwd.path(),
    );
    first.wait_connected();
    let mut second = Daemon::start(
        &demo.config(),
        true,
        demo.dir.path().join("second.log"),
        cwd.path(),
    );
    let status = exit_within(
        &mut second.child,
        Duration::from_secs(10),
        "second run on a state dir in use",
    );
    let log = second.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("in use"), "{log}");
    assert!(log.contains("state_dir"), "{log}");
    // The first one is unaffected and still stops cleanly.
    assert!(
        first.child.try_wait().unwrap().is_none(),
        "the first daemon died: {}",
        first.log()
    );
    let status = first.terminate();
    assert_eq!(status.code(), Some(0), "{}", first.log());
    assert!(first.log().contains("stopped cleanly"), "{}", first.log());
}

#[test]
fn passwords_never_appear_in_check_output_or_in_the_daemon_log() {
    let s = Setup::new();
    generate(&s.data(), &Spec::small(), 8);
    let mut cfg = s.node_config();
    cfg.password = "gs-hunter2-secret".into();
    cfg.geoserver_url = Some(format!("http://127.0.0.1:{}/geoserver", free_port()));
    cfg.mqtt_extra = vec![
        "username = \"node\"".into(),
        "password = \"mqtt-hunter2-secret\"".into(),
    ];
    let path = s.write_config(&cfg.to_toml());
    let out = check(&path);
    let all = format!("{}{}", out.stdout.clone(), out.stderr.clone());
    assert_eq!(Some(out.code), Some(0), "{all}");
    assert!(
        !all.contains("hunter2"),
        "a password in check's output:\n{all}"
    );

    let mut node = crate::support::node::Node::start(cfg);
    wait_until(
        "the daemon tried its broker and its GeoServer",
        Duration::from_secs(20),
        || {
            let log = node.log_contents();
            log.contains("unreachable") && log.contains("GeoServer at")
        },
    );
    node.stop();
    assert!(
        !node.log_contents().contains("hunter2"),
        "a password in the log:\n{}",
        node.log_contents()
    );
}
