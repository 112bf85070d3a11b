//! The commands, one file each: `run` (the daemon), `check`, `status`, `export`, `import`.
//! `main.rs` parses the arguments and dispatches here; everything a command shares with the
//! others (opening the node's state) is in this file.

pub mod check;
pub mod demo;
pub mod export;
pub mod history;
pub mod import;
pub mod run;
pub mod status;

use crate::config::Config;
use crate::context::Shared;
use crate::datadir::CatalogIndex;
use crate::state::State;

/// The data directory must exist before anything is created in the state directory: a wrong
/// `data_dir` writes nothing.
pub fn require_data_dir(cfg: &Config) -> Result<(), String> {
    let data_dir = &cfg.geoserver.data_dir;
    if data_dir.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "[geoserver] data_dir {}: not a directory",
            data_dir.display()
        ))
    }
}

/// How long a starting daemon waits for a command that holds the state dir (`log`, `show`,
/// an `import` or `rollback` run while no daemon did) to finish with it.
const COMMAND_HOLD: std::time::Duration = std::time::Duration::from_secs(30);

/// Open the node's state directory (after [`require_data_dir`]) for the daemon: a command
/// holding it is waited for a while; another daemon holding it is an error at once.
pub fn open_state(cfg: &Config) -> Result<State, String> {
    let dir = &cfg.node.state_dir;
    let started = std::time::Instant::now();
    let mut said = false;
    let state = loop {
        match State::open(dir) {
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && !crate::state::held_by_daemon(dir)
                    && started.elapsed() < COMMAND_HOLD =>
            {
                if !said {
                    log::info!("{e}: waiting up to {COMMAND_HOLD:?} for it to finish");
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => break r.map_err(|e| format!("[node] state_dir {}: {e}", dir.display()))?,
        }
    };
    (state.hold_as_daemon())
        .map_err(|e| format!("[node] state_dir {}: lock file: {e}", dir.display()))?;
    Ok(state)
}

/// The node's shared context over its opened `state`: keys, recovery of an interrupted run,
/// the replicate filter, the catalog index. Blocking (it reads the data directory); used by
/// the daemon and by a `gscluster import` that runs while no daemon does.
pub fn open_node(cfg: &Config, mut state: State) -> Result<Shared, String> {
    let auth = cfg.auth();
    if !auth.is_on() {
        log::warn!(
            "no [security] key_file: deltas are not authenticated, so anyone who can publish to the broker can write into every GeoServer of group {} (docs/security.md)",
            cfg.node.group
        );
    }
    state.history = cfg.history.is_some();
    crate::master::adopt_uncommitted(&mut state, &cfg.node.group, &auth)
        .map_err(|e| format!("[node] state_dir {}: {e}", cfg.node.state_dir.display()))?;
    let filter = cfg.filter()?;
    let data_dir = &cfg.geoserver.data_dir;
    let skip = [cfg.node.state_dir.clone()];
    let catalog = CatalogIndex::open(&state.catalog_file(), data_dir, &filter, &skip)
        .map_err(|e| format!("[node] state_dir {}: {e}", cfg.node.state_dir.display()))?;
    // Only a run killed while writing leaves temporary files; after a clean stop there are
    // none to look for (a walk of the whole tree: a second at 100,000 layers).
    if !catalog.after_clean_stop() {
        let leftovers = crate::slave::apply::remove_leftovers(data_dir, &filter);
        if leftovers > 0 {
            log::info!(
                "removed {leftovers} temporary file(s) an interrupted run left in the data directory"
            );
        }
    }
    Ok(Shared::new(cfg, state, auth, filter, catalog))
}
