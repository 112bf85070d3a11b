//! `gscluster`: parse arguments, load the configuration, dispatch to a command.

use gscluster::cli::completion;
use gscluster::cli::parse::{self, Parsed};
use gscluster::cli::table::USAGE;
use gscluster::cmd;
use gscluster::config;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// `log`/`rollback` paths, `show`'s change, `completions`' shell.
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

/// The arguments, checked against the command table (`gscluster::cli`), as the commands take
/// them.
fn parse_args() -> Result<Args, String> {
    let p: Parsed = parse::parse(std::env::args().skip(1))?;
    let command = p.command();
    let config = p
        .value("--config")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("GSCLUSTER_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    Ok(Args {
        command: command.to_string(),
        config,
        json: p.flag("--json"),
        limits: cmd::status::Limits {
            max_lag_s: p.number("--max-lag-s").unwrap_or(60),
            max_lag_deltas: p.number("--max-lag"),
        },
        out: p.value("--out").map(PathBuf::from),
        // `export --since N`; `log --since TIME` is `since_text`.
        since: p.number("--since").filter(|_| command == "export"),
        force: p.flag("--force"),
        wait_s: p.number("--wait").unwrap_or(600),
        file: p
            .operands
            .first()
            .filter(|_| command == "import")
            .map(PathBuf::from),
        since_text: p.value("--since").map(String::from),
        node: p.value("--node").map(String::from),
        limit: p.number("--limit").map_or(50, |n| n as usize),
        diff: p.flag("--diff"),
        to: p.value("--to").map(String::from),
        dry_run: p.flag("--dry-run"),
        keep: p.flag("--keep"),
        dir: p.value("--dir").map(PathBuf::from),
        words: p.operands,
    })
}

fn main() -> ExitCode {
    gscluster::tls::install_provider();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => return usage_error(&e),
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
        "status" => cmd::status::run(&args.config, args.json, args.limits),
        "export" => {
            let Some(out) = args.out.clone() else {
                return usage_error("export needs --out BUNDLE");
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
                return usage_error("import needs the bundle file");
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
        "completions" => match args.words.first().and_then(|s| completion::script(s)) {
            Some(script) => {
                print!("{script}");
                ExitCode::SUCCESS
            }
            None => usage_error("completions needs bash or zsh"),
        },
        "demo" => cmd::demo::run(cmd::demo::Options {
            keep: args.keep,
            dir: args.dir.clone(),
        }),
        "log" | "show" | "rollback" => match history_request(&args) {
            Err(e) => usage_error(&e),
            Ok(req) => finish(
                config::load(&args.config)
                    .map_err(|e| e.to_string())
                    .and_then(|cfg| cmd::history::run(&cfg, &req)),
            ),
        },
        other => usage_error(&format!("unknown command {other:?}")),
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
/// A usage error: said, with the usage after it; exit status 2.
fn usage_error(what: &str) -> ExitCode {
    eprintln!("gscluster: {what}\n\n{USAGE}");
    ExitCode::from(2)
}

fn finish(result: Result<String, String>) -> ExitCode {
    match result {
        // Printed as it is, ended by a newline if it has none (`log` and `show` end theirs;
        // nothing at all prints nothing).
        Ok(report) => {
            print!("{report}");
            if !report.is_empty() && !report.ends_with('\n') {
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
