//! The history's commands on a node whose daemon runs: it holds the state directory, so
//! `gscluster log`, `show` and `rollback` ask it through a Unix socket in the state directory
//! (`control.sock`, mode 0600: the daemon's user and root only). One request per connection,
//! one JSON line each way; the daemon answers with the same code the command runs when no
//! daemon does ([`answer`]).

use crate::context::Shared;
use crate::history::view::{self, LogQuery};
use crate::master::rollback;
use crate::reload::GeoServer;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc::UnboundedSender, watch};

pub const SOCKET: &str = "control.sock";
/// How long a command waits for a daemon that is starting to answer.
const STARTING: Duration = Duration::from_secs(60);
/// Longest request line read.
const MAX_REQUEST: u64 = 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Log(LogQuery),
    Show { id: u64, diff: bool },
    Rollback(rollback::Request),
}

/// The command's output, or why it failed (worded for the administrator).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    pub text: String,
}

impl From<Result<String, String>> for Answer {
    fn from(r: Result<String, String>) -> Answer {
        match r {
            Ok(text) => Answer { ok: true, text },
            Err(text) => Answer { ok: false, text },
        }
    }
}

/// A read-only request answered from the state's database.
pub fn read(db: &redb::Database, req: &Request) -> Result<String, String> {
    let db_err = |e: redb::Error| format!("state database: {e}");
    match req {
        Request::Log(q) => view::log(db, q).map_err(db_err),
        Request::Show { id, diff } => view::show(db, *id, *diff).map_err(db_err)?,
        Request::Rollback(_) => Err("a rollback is not a read".into()),
    }
}

/// Answer `req` on this node: a rollback goes through [`rollback::run`], then the Deltas it
/// published are handed to the publisher (`published`) and GeoServer is reloaded once.
pub fn answer(
    sh: &Shared,
    gs: Option<&GeoServer>,
    published: Option<&UnboundedSender<u64>>,
    req: &Request,
) -> Result<String, String> {
    let Request::Rollback(r) = req else {
        let db = sh.state.lock().unwrap().shared_database();
        return read(&db, req);
    };
    let done = rollback::run(sh, r)?;
    for seq in &done.seqs {
        if let Some(p) = published {
            let _ = p.send(*seq);
        }
    }
    let mut report = done.report;
    if done.reload.is_some() {
        report.push_str(&crate::airgap::import::reload(sh, gs));
    }
    Ok(report)
}

/// The daemon's side: serve requests until shutdown.
pub async fn serve(
    sh: Arc<Shared>,
    gs: Option<GeoServer>,
    published: Option<UnboundedSender<u64>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let path = sh.lock_state().dir().join(SOCKET);
    let listener = match bind(&path) {
        Ok(l) => l,
        Err(e) => {
            log::error!(
                "{}: {e}; `gscluster log`, `show` and `rollback` cannot reach this daemon",
                path.display()
            );
            return;
        }
    };
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    log::warn!("{}: {e}", path.display());
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let (sh, gs, published) = (sh.clone(), gs.clone(), published.clone());
        tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let mut line = String::new();
            let mut rd = tokio::io::BufReader::new(rd.take(MAX_REQUEST));
            if rd.read_line(&mut line).await.is_err() {
                return;
            }
            let answer: Answer = match serde_json::from_str::<Request>(&line) {
                Err(e) => Err(format!("request not understood ({e}): is the command an older or newer gscluster than the daemon?")).into(),
                Ok(req) => tokio::task::spawn_blocking(move || {
                    answer(&sh, gs.as_ref(), published.as_ref(), &req)
                })
                .await
                .unwrap_or_else(|e| Err(format!("the daemon failed answering: {e}")))
                .into(),
            };
            let mut out = serde_json::to_vec(&answer).expect("an answer encodes");
            out.push(b'\n');
            let _ = wr.write_all(&out).await;
        });
    }
    let _ = std::fs::remove_file(&path);
}

fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    // The daemon holds the state directory: a socket left there is a crashed run's.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The command's side: ask the daemon that holds `state_dir`, waiting at most `wait`.
pub fn ask(state_dir: &Path, req: &Request, wait: Duration) -> Result<Answer, String> {
    let path: PathBuf = state_dir.join(SOCKET);
    let cannot = |e: std::io::Error| {
        format!(
            "a daemon holds state dir {}, but {} does not answer ({e}); is that daemon an older gscluster? restart it",
            state_dir.display(),
            path.display()
        )
    };
    // A daemon that holds the state but does not answer yet is starting (it opens the socket
    // once its state and catalog index are open): wait for it a while.
    let started = std::time::Instant::now();
    let mut stream = loop {
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                ) && started.elapsed() < STARTING =>
            {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(cannot(e)),
        }
    };
    stream.set_read_timeout(Some(wait)).map_err(cannot)?;
    let mut line = serde_json::to_vec(req).expect("a request encodes");
    line.push(b'\n');
    stream.write_all(&line).map_err(cannot)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(|e| format!("no answer from the daemon within {wait:?}: {e}"))?;
    serde_json::from_str(&reply).map_err(|e| format!("the daemon's answer is not understood: {e}"))
}
