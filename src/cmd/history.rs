//! `gscluster log`, `show` and `rollback` (docs/history.md): read this node's history, or roll
//! the group back to a point of it. When no daemon runs the command opens the state itself;
//! when one does, it asks the daemon (`control`), which answers with the same code.

use crate::config::Config;
use crate::control::{self, Request};
use crate::reload::GeoServer;
use crate::state::State;
use std::io;
use std::time::Duration;

/// How long to wait for a running daemon's answer (a rollback writes and reloads).
const WAIT: Duration = Duration::from_secs(600);

/// Run `req` on this node; `Ok` is the output, `Err` a refusal or failure worded for the
/// administrator.
pub fn run(cfg: &Config, req: &Request) -> Result<String, String> {
    super::require_data_dir(cfg)?;
    match State::open(&cfg.node.state_dir) {
        Ok(mut state) => {
            state.history = cfg.history.is_some();
            match req {
                Request::Rollback(r) => alone(cfg, state, r),
                _ => control::read(state.database(), req),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            let answer = control::ask(&cfg.node.state_dir, req, WAIT)?;
            if answer.ok {
                Ok(answer.text)
            } else {
                Err(answer.text)
            }
        }
        Err(e) => Err(format!(
            "[node] state_dir {}: {e}",
            cfg.node.state_dir.display()
        )),
    }
}

/// A rollback while no daemon runs: made under this process's hold of the state; its Deltas
/// wait in the outbox for the daemon.
fn alone(
    cfg: &Config,
    state: State,
    r: &crate::master::rollback::Request,
) -> Result<String, String> {
    let sh = super::open_node(cfg, state)?;
    let done = crate::master::rollback::run(&sh, r)?;
    let mut report = done.report;
    if !done.seqs.is_empty() {
        report.push_str(
            "\nno daemon runs here: the Deltas wait in the outbox and go out when it starts",
        );
    }
    if done.reload.is_some() {
        let gs = GeoServer::from_config(&cfg.geoserver);
        report.push_str(&crate::airgap::import::reload(&sh, gs.as_ref()));
    }
    let data_dir = &cfg.geoserver.data_dir;
    sh.catalog.lock().unwrap().close(data_dir, &sh.filter);
    Ok(report)
}
