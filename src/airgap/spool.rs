//! The hand-over between `gscluster import` and a running daemon, through `state_dir/import/`.
//!
//! The daemon holds the state directory, so the command cannot apply a bundle itself while one
//! runs. It verifies the bundle, writes it into the folder (mode 0600, owned by the daemon's
//! user when run as root) under a temporary name and renames it to `ID.bundle`
//! (`ID.force.bundle` for `--force`); the daemon, woken by a notification of the folder (or its
//! poll), verifies it again, applies it with [`import::apply`](super::import::apply), reloads
//! GeoServer, and leaves `ID.result` ("ok", "refused" or "failed", a newline, the report) for
//! the command, which waits for it.

use super::import::{self, ImportError};
use super::progress::Progress;
use crate::config::Config;
use crate::context::Shared;
use crate::file_error::Context;
use crate::reload::GeoServer;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc::UnboundedSender, watch};

/// Folder of `state_dir` through which the command hands bundles to a running daemon.
pub const SPOOL: &str = "import";

/// How often a daemon looks for handed-over bundles without being woken by a notification
/// of the spool folder (which it normally is, at once).
const POLL: Duration = Duration::from_secs(5);

/// Age after which an uncollected answer or an unfinished hand-over is removed.
const STALE: Duration = Duration::from_secs(24 * 3600);

/// A daemon runs: hand the (verified) bundle over and wait for its answer.
pub fn hand_over(
    cfg: &Config,
    bytes: &[u8],
    force: bool,
    wait: Duration,
) -> Result<String, String> {
    let spool = cfg.node.state_dir.join(SPOOL);
    let meta = fs::metadata(&spool).map_err(|e| {
        format!(
            "a daemon holds state dir {}, but {} is not usable ({e}); is that daemon an older gscluster? restart it",
            cfg.node.state_dir.display(),
            spool.display()
        )
    })?;
    let id = format!("{}-{}", crate::clock::now_ms(), std::process::id());
    let name = if force {
        format!("{id}.force.bundle")
    } else {
        format!("{id}.bundle")
    };
    let handed = spool.join(&name);
    let result = spool.join(format!("{id}.result"));
    // Written beside its name and renamed into place, so the daemon never reads half of it; a
    // failure leaves no temporary file (it is removed when `staged` drops).
    (|| -> io::Result<()> {
        let staged = crate::durable::stage(&handed, bytes)?;
        // Run as root: hand the file to the daemon's user (the folder's owner), since it is
        // written with mode 0600 like the bundle.
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o600))
            .at("set the permissions of", &staged)?;
        if euid() == 0 {
            std::os::unix::fs::chown(&staged, Some(meta.uid()), Some(meta.gid()))
                .at("chown", &staged)?;
        }
        crate::durable::persist(staged, &handed)
    })()
    .map_err(|e| format!("cannot hand the bundle to the running daemon: {e}"))?;
    let started = Instant::now();
    let mut progress = Progress::new("waiting for the running daemon to apply it");
    loop {
        if let Ok(answer) = fs::read_to_string(&result) {
            progress.finish();
            let _ = fs::remove_file(&result);
            return match answer.split_once('\n') {
                Some(("ok", report)) => Ok(report.trim_end().to_string()),
                Some((_, why)) => Err(why.trim_end().to_string()),
                None => Err(format!("unreadable answer from the daemon: {answer:?}")),
            };
        }
        if started.elapsed() > wait {
            progress.finish();
            return Err(format!(
                "the running daemon did not apply it within {} s; it stays queued as {} and is applied when the daemon gets to it (see its log)",
                wait.as_secs(),
                handed.display()
            ));
        }
        progress.waiting(started);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The daemon's side: apply the bundles `gscluster import` hands over, one at a time, and
/// answer each. Runs on every role.
pub async fn serve(
    sh: Arc<Shared>,
    gs: Option<GeoServer>,
    published: Option<UnboundedSender<u64>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let spool = sh.lock_state().dir().join(SPOOL);
    if let Err(e) = crate::durable::create_dirs(&spool) {
        log::error!(
            "{}: {e}; `gscluster import` cannot reach this daemon",
            spool.display()
        );
        return;
    }
    // Woken at once by a notification of the spool folder (never by opens and reads: this
    // loop's own look at the folder is one); the poll is the fallback.
    let (wake_tx, mut wake) = tokio::sync::mpsc::unbounded_channel();
    match crate::datadir::watch::Watch::folder(&spool) {
        Ok(mut w) => {
            std::thread::spawn(move || {
                while !wake_tx.is_closed() {
                    match w.next(Duration::from_secs(1)) {
                        Ok(Some(_)) => {
                            let _ = wake_tx.send(());
                        }
                        Ok(None) => {}
                        Err(e) => {
                            log::warn!("{e}; looking every {POLL:?}");
                            return;
                        }
                    }
                }
            });
        }
        Err(e) => log::warn!("{e}; looking every {POLL:?}"),
    }
    loop {
        for path in look(&spool) {
            let (sh, gs, published) = (sh.clone(), gs.clone(), published.clone());
            let _ = tokio::task::spawn_blocking(move || {
                handle(&sh, gs.as_ref(), published.as_ref(), &path)
            })
            .await;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            Some(()) = wake.recv() => while wake.try_recv().is_ok() {},
            _ = shutdown.changed() => return,
        }
    }
}

/// The bundles handed over, oldest first. Answers nobody collected and hand-overs never
/// finished (the command was interrupted) are removed on the way once a day old.
fn look(spool: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(spool) else {
        return Vec::new();
    };
    let mut queued = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".bundle") {
            queued.push(e.path());
            continue;
        }
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > STALE);
        if stale && (name.ends_with(".result") || crate::durable::is_temp_name(&name)) {
            let _ = fs::remove_file(e.path());
        }
    }
    queued.sort();
    queued
}

/// Apply one handed-over bundle and leave the answer beside it.
fn handle(
    sh: &Shared,
    gs: Option<&GeoServer>,
    published: Option<&UnboundedSender<u64>>,
    path: &Path,
) {
    let file = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let (id, force) = match file.strip_suffix(".force.bundle") {
        Some(id) => (id.to_string(), true),
        None => (file.trim_end_matches(".bundle").to_string(), false),
    };
    let answer = match fs::read(path) {
        Err(e) => format!("failed\ncannot read {}: {e}", path.display()),
        Ok(bytes) => match import::verify(&bytes, &sh.group, &sh.auth, &sh.data_dir, &sh.filter)
            .map_err(ImportError::Refused)
            .and_then(|bundle| import::apply(sh, &bundle, force).map(|a| (bundle, a)))
        {
            Ok((bundle, applied)) => {
                for seq in &applied.seqs {
                    if let Some(p) = published {
                        let _ = p.send(*seq);
                    }
                }
                let mut report = import::describe(sh, &bundle, &applied);
                if applied.written + applied.deleted > 0 && applied.reload.is_some() {
                    report.push_str(&import::reload(sh, gs));
                }
                log::info!("import: {report}");
                format!("ok\n{report}")
            }
            Err(e) => {
                log::error!("import of a handed-over bundle {e}");
                format!(
                    "{}\n{e}",
                    if matches!(e, ImportError::Refused(_)) {
                        "refused"
                    } else {
                        "failed"
                    }
                )
            }
        },
    };
    let result = path.with_file_name(format!("{id}.result"));
    if let Err(e) = crate::durable::write_file(&result, answer.as_bytes()) {
        log::error!("{}: {e}", result.display());
    }
    let _ = fs::remove_file(path);
}
