//! Applying received Deltas in groups: complete Deltas that arrive while more messages wait are
//! gathered and applied together (`slave::apply_deltas`: one intent, one write pass, one journal
//! record), then released for acknowledgement. A single change is applied at once; a backlog (a
//! catch-up, a burst cut into several Deltas) pays the flushes once per group.

use super::acks::AckQueue;
use super::route::reject;
use crate::context::Shared;
use crate::delta::{self, Delta};
use crate::mqtt::Message;
use crate::reload::ReloadHandle;
use crate::resync::asker::Resync;
use crate::slave::{apply_deltas, Applied, ApplyError, Outcome};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A failed write (disk full, permissions) is retried after this long, forever.
const RETRY_APPLY: Duration = Duration::from_secs(2);
/// While more messages wait, complete Deltas are gathered and applied together, up to this
/// many Deltas...
const GROUP_DELTAS: usize = 100;
/// ...or this many bytes of file content.
const GROUP_BYTES: usize = 16 * 1024 * 1024;
/// A group of at least this much content whose next Delta is arriving waits for it (up to
/// [`GROUP_WAIT`]) rather than being applied the moment the queue runs dry: a large transfer
/// (a bootstrap-sized import, a burst cut into 4 MiB Deltas) reaches a slave at the pace of the
/// broker's in-flight window, and each apply of a group pays two filesystem flushes. Small
/// changes are applied at once.
pub const GROUP_WAIT_FROM: usize = 1024 * 1024;
pub const GROUP_WAIT: Duration = Duration::from_millis(100);

/// The node is stopping: what was not applied stays unacknowledged and comes again after the
/// restart.
#[derive(Debug)]
pub struct Stopping;

/// Complete Deltas received while more messages were waiting, applied together.
#[derive(Default)]
pub struct Group {
    pub deltas: Vec<Delta>,
    pub bytes: usize,
}

impl Group {
    pub fn push(&mut self, delta: Delta) {
        self.bytes += (delta.changes.iter())
            .map(|c| match &c.op {
                delta::Op::Write { bytes, .. } => bytes.len(),
                delta::Op::Delete => 0,
            })
            .sum::<usize>();
        self.deltas.push(delta);
    }

    pub fn full(&self) -> bool {
        self.deltas.len() >= GROUP_DELTAS || self.bytes >= GROUP_BYTES
    }
}

/// "delta E/S from O", or the range of a group, for log lines.
fn describe(deltas: &[Delta]) -> String {
    match deltas {
        [d] => d.id().to_string(),
        [first, .., last] => format!(
            "{} deltas ({}/{} from {} … {}/{} from {})",
            deltas.len(),
            first.epoch,
            first.seq,
            first.origin,
            last.epoch,
            last.seq,
            last.origin
        ),
        [] => "no delta".into(),
    }
}

/// What applying a group needs besides the group.
pub struct Flush<'a> {
    pub shared: &'a Arc<Shared>,
    pub acks: &'a mut AckQueue<Message>,
    pub resync: &'a mut Resync,
    pub shutdown: &'a mut watch::Receiver<bool>,
    /// Told which files the group wrote that GeoServer must hear of.
    pub reload: &'a ReloadHandle,
}

/// Apply the gathered Deltas (retrying a failed write until it succeeds or the node stops),
/// then release their messages for acknowledgement.
pub async fn flush(group: &mut Group, f: Flush<'_>) -> Result<(), Stopping> {
    if group.deltas.is_empty() {
        return Ok(());
    }
    // Reloads wait from now until the caller counts the backlog again, after the notify
    // below: a reload that fell due meanwhile would otherwise take the data directory the
    // moment the write releases it, and the notify would then ask for a second one.
    (f.shared.backlog).fetch_add(group.deltas.len(), Ordering::Relaxed);
    let deltas = Arc::new(std::mem::take(group).deltas);
    let started = Instant::now();
    let Applied {
        outcomes,
        reload,
        objects,
    } = apply_until_done(f.shared, &deltas, f.shutdown).await?;
    let took = started.elapsed();
    record(&outcomes, took);
    let together = match deltas.len() {
        1 => String::new(),
        n => format!(" (applied together with {} other deltas)", n - 1),
    };
    let mut written = false;
    for (delta, outcome) in deltas.iter().zip(outcomes) {
        let id = delta.id();
        match outcome {
            Outcome::Applied { steps, gap } => {
                log::info!(
                    "applied {id}: {steps} of {} change(s) written in {} ms{together}",
                    delta.changes.len(),
                    took.as_millis()
                );
                written |= steps > 0;
                f.shared.board.applied(&delta.origin);
                if gap {
                    f.resync
                        .request(&format!("a gap in the deltas from {}", delta.origin));
                }
            }
            Outcome::Duplicate => log::debug!(
                "delta {}/{}/{} already applied",
                id.origin,
                id.epoch,
                id.seq
            ),
            Outcome::Rejected(why) => reject(
                f.shared,
                &delta.origin,
                &format!(
                    "delta {}/{}: {why}; nothing of it was written",
                    delta.epoch, delta.seq
                ),
            ),
        }
        f.acks.release(&id);
    }
    match reload {
        _ if !written => {}
        Some(path) => {
            log::debug!("GeoServer must hear of {path} (and whatever came with it)");
            f.reload.changed(&objects);
        }
        None => {
            log::info!(
                "no GeoServer reload needed for {}: GeoServer re-reads every file written by itself",
                describe(&deltas)
            );
            f.shared.board.reload_skipped();
            crate::telemetry::record_reload_skipped();
        }
    }
    Ok(())
}

/// Apply `deltas` on a blocking thread, retrying a failed write every [`RETRY_APPLY`] until it
/// succeeds or the node stops.
async fn apply_until_done(
    sh: &Arc<Shared>,
    deltas: &Arc<Vec<Delta>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Applied, Stopping> {
    let what = describe(deltas);
    loop {
        let (s, d) = (sh.clone(), deltas.clone());
        let result = tokio::task::spawn_blocking(move || apply_deltas(&s, &d))
            .await
            .unwrap_or_else(|e| Err(ApplyError::Task(e.to_string())));
        match result {
            Ok(applied) => return Ok(applied),
            Err(ApplyError::Stopping) => {
                log::info!("{what} left for after the restart (not acknowledged)");
                return Err(Stopping);
            }
            Err(e) => {
                log::error!(
                    "cannot apply {what}: {e}; retrying in {} s (not acknowledged)",
                    RETRY_APPLY.as_secs()
                );
                sh.board.error(&format!("cannot apply {what}: {e}"));
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_APPLY) => {}
                    _ = shutdown.changed() => return Err(Stopping),
                }
            }
        }
    }
}

/// The metrics of one applied group.
fn record(outcomes: &[Outcome], took: Duration) {
    let (mut applied, mut duplicate, mut files) = (0, 0, 0);
    for o in outcomes {
        match o {
            Outcome::Applied { steps, .. } => {
                applied += 1;
                files += *steps as u64;
            }
            Outcome::Duplicate => duplicate += 1,
            Outcome::Rejected(_) => {}
        }
    }
    crate::telemetry::record_apply(applied, duplicate, files, took);
}
