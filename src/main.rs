//! `gscluster`: parse arguments, load the configuration, dispatch to a command.

use gscluster::cmd;
use gscluster::config;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
gscluster — keeps a fleet of GeoServer instances configured identically

USAGE:
    gscluster run   [-c FILE]    run the daemon; its roles come from the config
    gscluster check [-c FILE]    validate config and data dir, list what would replicate
    gscluster status [-c FILE] [--json] [--max-lag-s S] [--max-lag N]
                                 every node of the group: online, role, version, published,
                                 outbox, applied and lag per origin, reloads, last error,
                                 keystore digest, drift; exit 1 when a node is offline or
                                 lagging or the keystores differ (a monitoring check)
    gscluster export [-c FILE] --out BUNDLE [--since N]
                                 air gap: write this node's replicated configuration (or
                                 what changed since export N) to one signed bundle file
    gscluster import [-c FILE] [--force] [--wait S] BUNDLE
                                 verify a bundle and apply it as one batch with one reload;
                                 on a master it then flows to the site's slaves
    gscluster log [-c FILE] [PATH...] [--since TIME] [--node ID] [--limit N] [--json]
                                 this node's history of the group's changes, newest first:
                                 change id, time, origin node, operation, path, object, size
    gscluster show [-c FILE] CHANGE [--diff]
                                 the files of one change; --diff: a unified diff of each
                                 against the version before it
    gscluster rollback [-c FILE] --to CHANGE|TIME [PATH...] [--dry-run] [--force]
                                 on a master: put the replicated tree (or the PATHs) back to
                                 what it was after change CHANGE or at TIME, published as a
                                 new change that every node applies with one reload
    gscluster --version          print the version
    gscluster --help             print this help

OPTIONS:
    -c, --config FILE   configuration file (default: $GSCLUSTER_CONFIG, else /etc/gscluster/config.toml)
    --json              status: stable JSON for scripts instead of the table
    --max-lag-s S       status: lagging = behind an origin without progress for over S s (60)
    --max-lag N         status: lagging also = more than N deltas behind an origin
    --out BUNDLE        export: the bundle file to write (mode 0600)
    --since N           export: only the changes since this node's export N (printed by
                        every export); default: the whole replicated tree
    --force             import: apply even a bundle out of sequence, one after which
                        catalog references would not resolve, or on a pure slave
    --wait S            import: how long to wait for a running daemon to apply it (600)
    --since TIME        log: only changes recorded since TIME
    --node ID           log: only changes made by node ID
    --limit N           log: at most N lines (50; 0: all)
    --json              log: one JSON object per line (id, time, origin, kind, op, path, ...)
    --diff              show: the changes as unified diffs
    --to CHANGE|TIME    rollback: the point, a change id from `log` or a TIME
    --dry-run           rollback: print what would change, write nothing
    --force             rollback: even when catalog references would not resolve after it

TIME is RFC 3339 (2026-12-04T10:00:00Z) or an age (90s, 10m, 2h, 3d).

ENVIRONMENT:
    RUST_LOG            log filter, e.g. info (default), debug, gscluster=debug
    GSCLUSTER_CONFIG    configuration file when -c is not given

Exit status: 0 on success, 1 on a configuration or start-up problem (status: a problem in the
cluster; import: the bundle was refused or failed), 2 on bad usage, 3 when status cannot read
the cluster's status.
";

struct Args {
    command: String,
    config: PathBuf,
    json: bool,
    limits: cmd::status::Limits,
    out: Option<PathBuf>,
    since: Option<u64>,
    force: bool,
    wait_s: u64,
    file: Option<PathBuf>,
    /// `log`/`rollback` paths, `show`'s change.
    words: Vec<String>,
    since_text: Option<String>,
    node: Option<String>,
    limit: usize,
    diff: bool,
    to: Option<String>,
    dry_run: bool,
    /// `demo`.
    keep: bool,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut command = None;
    let mut config = None;
    let mut json = false;
    let (mut out, mut since_text, mut force, mut wait_s, mut file) =
        (None, None::<String>, false, 600, None);
    let (mut words, mut node, mut limit, mut diff, mut to, mut dry_run) =
        (Vec::new(), None, 50, false, None, false);
    let (mut keep, mut dir) = (false, None);
    let mut limits = cmd::status::Limits::default();
    let number = |flag: &str, v: Option<String>| -> Result<u64, String> {
        v.as_deref()
            .and_then(|v| v.parse().ok())
            .ok_or(format!("{flag} needs a whole number"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--max-lag-s" => limits.max_lag_s = number("--max-lag-s", args.next())?,
            "--max-lag" => limits.max_lag_deltas = Some(number("--max-lag", args.next())?),
            "--since" => since_text = Some(args.next().ok_or("--since needs a value")?),
            "--node" => node = Some(args.next().ok_or("--node needs a node id")?),
            "--limit" => limit = number("--limit", args.next())? as usize,
            "--to" => to = Some(args.next().ok_or("--to needs a change id or a time")?),
            "--diff" => diff = true,
            "--dry-run" => dry_run = true,
            "--keep" => keep = true,
            "--dir" => dir = Some(PathBuf::from(args.next().ok_or("--dir needs a folder")?)),
            "--wait" => wait_s = number("--wait", args.next())?,
            "--force" => force = true,
            "--out" | "-o" => {
                out = Some(PathBuf::from(
                    args.next().ok_or("--out needs a file name".to_string())?,
                ))
            }
            "-c" | "--config" => {
                config = Some(PathBuf::from(
                    args.next().ok_or("-c needs a file name".to_string())?,
                ))
            }
            "-h" | "--help" | "help" => command = Some("help".to_string()),
            "-V" | "--version" => command = Some("version".to_string()),
            s if s.starts_with("--config=") => config = Some(PathBuf::from(&s[9..])),
            s if !s.starts_with('-') && command.is_none() => command = Some(s.to_string()),
            s if !s.starts_with('-') && command.as_deref() == Some("import") && file.is_none() => {
                file = Some(PathBuf::from(s))
            }
            s if !s.starts_with('-')
                && matches!(command.as_deref(), Some("log" | "show" | "rollback")) =>
            {
                words.push(s.to_string())
            }
            s => return Err(format!("unexpected argument {s:?}")),
        }
    }
    let since = match (command.as_deref(), &since_text) {
        (Some("export"), Some(t)) => Some(number("--since", Some(t.clone()))?),
        _ => None,
    };
    let config = config
        .or_else(|| std::env::var_os("GSCLUSTER_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    Ok(Args {
        command: command.unwrap_or_else(|| "help".into()),
        config,
        json,
        limits,
        out,
        since,
        force,
        wait_s,
        file,
        words,
        since_text,
        node,
        limit,
        diff,
        to,
        dry_run,
        keep,
        dir,
    })
}

fn main() -> ExitCode {
    gscluster::tls::install_provider();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gscluster: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    gscluster::logging::init(match args.command.as_str() {
        "export" | "import" => gscluster::logging::COMMAND,
        _ => gscluster::logging::DAEMON,
    });
    match args.command.as_str() {
        "help" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        "version" => {
            println!("gscluster {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        "run" => {
            let result = config::load(&args.config)
                .map_err(|e| e.to_string())
                .and_then(cmd::run::run);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        "check" => cmd::check::run(&args.config),
        "demo" => cmd::demo::run(cmd::demo::Options {
            keep: args.keep,
            dir: args.dir.clone(),
        }),
        "status" => cmd::status::run(&args.config, args.json, args.limits),
        "export" => {
            let Some(out) = args.out.clone() else {
                eprintln!("gscluster: export needs --out BUNDLE\n\n{USAGE}");
                return ExitCode::from(2);
            };
            let opts = cmd::export::Options {
                out,
                since: args.since,
            };
            finish(
                config::load(&args.config)
                    .map_err(|e| e.to_string())
                    .and_then(|cfg| cmd::export::run(&cfg, &opts))
                    .map(|report| report.to_string()),
            )
        }
        "import" => {
            let Some(file) = args.file.clone() else {
                eprintln!("gscluster: import needs the bundle file\n\n{USAGE}");
                return ExitCode::from(2);
            };
            let opts = cmd::import::Options {
                file,
                force: args.force,
                wait: std::time::Duration::from_secs(args.wait_s),
            };
            finish(
                config::load(&args.config)
                    .map_err(|e| e.to_string())
                    .and_then(|cfg| cmd::import::run(&cfg, &opts)),
            )
        }
        "log" | "show" | "rollback" => match history_request(&args) {
            Err(e) => {
                eprintln!("gscluster: {e}\n\n{USAGE}");
                ExitCode::from(2)
            }
            Ok(req) => {
                let result = config::load(&args.config)
                    .map_err(|e| e.to_string())
                    .and_then(|cfg| cmd::history::run(&cfg, &req));
                match result {
                    // `log` and `show` print what they print; nothing added.
                    Ok(text) => {
                        print!("{text}");
                        if !text.is_empty() && !text.ends_with('\n') {
                            println!();
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("gscluster: {e}");
                        ExitCode::from(1)
                    }
                }
            }
        },
        other => {
            eprintln!("gscluster: unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The history command the arguments ask for.
fn history_request(args: &Args) -> Result<gscluster::control::Request, String> {
    use gscluster::control::Request;
    use gscluster::history::{time, view::LogQuery};
    use gscluster::master::rollback::{self, Point};
    let now = gscluster::clock::now_ms();
    let since_ms = args
        .since_text
        .as_deref()
        .map(|t| time::parse(t, now))
        .transpose()?;
    Ok(match args.command.as_str() {
        "log" => Request::Log(LogQuery {
            paths: args.words.clone(),
            since_ms,
            node: args.node.clone(),
            limit: args.limit,
            json: args.json,
        }),
        "show" => {
            let [id] = args.words.as_slice() else {
                return Err("show needs one change id (from `gscluster log`)".into());
            };
            let id = id.parse().map_err(|_| format!("{id:?}: not a change id"))?;
            Request::Show {
                id,
                diff: args.diff,
            }
        }
        _ => {
            let to = args
                .to
                .as_deref()
                .ok_or("rollback needs --to CHANGE|TIME")?;
            let to = match to.parse() {
                Ok(id) => Point::Change(id),
                Err(_) => Point::Time(time::parse(to, now)?),
            };
            Request::Rollback(rollback::Request {
                to,
                paths: args.words.clone(),
                dry_run: args.dry_run,
                force: args.force,
            })
        }
    })
}

/// Print a command's report (stdout) or its error (stderr) and turn it into the exit status.
fn finish(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gscluster: {e}");
            ExitCode::from(1)
        }
    }
}
