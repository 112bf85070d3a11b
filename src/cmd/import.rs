//! `gscluster import [--force] [--wait S] BUNDLE`: verify a bundle, then apply it as one batch
//! with one reload — here when no daemon runs, else through the running daemon, which applies
//! it with the same code (`airgap::import::apply`, `airgap::spool`). docs/airgap.md.

use crate::airgap::import::{apply, describe, reload, verify, ImportError};
use crate::airgap::progress::Progress;
use crate::airgap::{signed, spool, Bundle};
use crate::config::Config;
use crate::reload::GeoServer;
use crate::state::State;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Options {
    pub file: PathBuf,
    /// Import even a bundle that is out of sequence or whose references do not resolve here.
    pub force: bool,
    /// How long to wait for a running daemon to apply the bundle.
    pub wait: Duration,
}

/// The command: verify `opts.file`, apply it here or through the running daemon, and say what
/// happened. `Err` is a refusal or a failure, already worded for the administrator.
pub fn run(cfg: &Config, opts: &Options) -> Result<String, String> {
    super::require_data_dir(cfg)?;
    let name = opts.file.display().to_string();
    let bytes = fs::read(&opts.file).map_err(|e| format!("read {name}: {e}"))?;
    let auth = cfg.auth();
    let filter = cfg.filter()?;
    let bundle = verify(
        &bytes,
        &cfg.node.group,
        &auth,
        &cfg.geoserver.data_dir,
        &filter,
    )
    .map_err(|e| format!("{name}: {}", ImportError::Refused(e)))?;
    let trust = if auth.is_on() {
        "its signature verified with the group key"
    } else if signed(&bytes) {
        "signed, but NOT verified: this node has no [security] key_file"
    } else {
        "not signed: only its checksum was verified"
    };
    let (w, d, b) = bundle.counts();
    eprintln!(
        "{name}: {} of group {}, {w} file(s) ({b} bytes){}; {trust}",
        bundle.header.describe(),
        bundle.header.group,
        if d > 0 {
            format!(", {d} deletion(s)")
        } else {
            String::new()
        }
    );
    match State::open(&cfg.node.state_dir) {
        Ok(state) => {
            eprintln!("no daemon runs on this node: applying it directly");
            alone(cfg, state, &bundle, opts.force)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            eprintln!("the daemon runs on this node: handing it over");
            spool::hand_over(cfg, &bytes, opts.force, opts.wait)
        }
        Err(e) => Err(format!(
            "[node] state_dir {}: {e}",
            cfg.node.state_dir.display()
        )),
    }
    .map_err(|e| format!("{name}: {e}"))
}

/// No daemon runs: apply under this process's own hold of the state.
fn alone(cfg: &Config, state: State, bundle: &Bundle, force: bool) -> Result<String, String> {
    let sh = super::open_node(cfg, state)?;
    let done = std::sync::atomic::AtomicBool::new(false);
    let applied = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut progress = Progress::new("applying");
            let started = Instant::now();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                progress.waiting(started);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let result = apply(&sh, bundle, force);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    })
    .map_err(|e| e.to_string())?;
    let mut report = describe(&sh, bundle, &applied);
    if !applied.seqs.is_empty() {
        report.push_str(
            "; no daemon runs here: the Deltas wait in the outbox and go out when it starts",
        );
    }
    if applied.written + applied.deleted > 0 && applied.reload.is_some() {
        report.push_str(&reload(
            &sh,
            GeoServer::from_config(&cfg.geoserver).as_ref(),
        ));
    }
    Ok(report)
}
