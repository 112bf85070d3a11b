//! Applying received Deltas in groups: complete Deltas that arrive while more messages wait
//! are gathered and applied together (`slave::apply_deltas`: one intent, one write pass, one
//! journal record), then released for acknowledgement.

use super::{release, Held, Worker};
use crate::delta::{self, Delta, DeltaId};
use crate::resync::asker::Resync;
use crate::slave::{apply_deltas, Outcome};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A failed write (disk full, permissions) is retried after this long, forever.
const RETRY_APPLY: Duration = Duration::from_secs(2);
/// While more messages wait, complete Deltas are gathered and applied together (see
/// `slave::apply_deltas`), up to this many Deltas...
const GROUP_DELTAS: usize = 100;
/// ...or this many bytes of file content.
const GROUP_BYTES: usize = 16 * 1024 * 1024;
/// A group of at least this much content whose next Delta is arriving waits for it (up to
/// GROUP_WAIT) rather than being applied the moment the queue runs dry: a large transfer (a
/// bootstrap-sized import, a burst cut into 4 MiB Deltas) reaches a slave at the pace of the
/// broker's in-flight window, and each apply of a group pays two filesystem flushes. Small
/// changes are applied at once.
pub(super) const GROUP_WAIT_FROM: usize = 1024 * 1024;
pub(super) const GROUP_WAIT: Duration = Duration::from_millis(100);

/// Complete Deltas received while more messages were waiting, applied together.
#[derive(Default)]
pub(super) struct Group {
    pub(super) deltas: Vec<Delta>,
    pub(super) bytes: usize,
}

impl Group {
    pub(super) fn push(&mut self, delta: Delta) {
        self.bytes += (delta.changes.iter())
            .map(|c| match &c.op {
                delta::Op::Write { bytes, .. } => bytes.len(),
                delta::Op::Delete => 0,
            })
            .sum::<usize>();
        self.deltas.push(delta);
    }

    pub(super) fn full(&self) -> bool {
        self.deltas.len() >= GROUP_DELTAS || self.bytes >= GROUP_BYTES
    }
}

/// "delta E/S from O", or the range of a group, for log lines.
fn describe(deltas: &[Delta]) -> String {
    match deltas {
        [d] => format!("delta {}/{} from {}", d.epoch, d.seq, d.origin),
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

impl Worker {
    /// Apply the gathered Deltas (retrying a failed write until it succeeds or the node stops),
    /// then release their messages for acknowledgement. `Err` when the node is stopping: the
    /// Deltas stay unacknowledged and come again after the restart.
    pub(super) async fn flush(
        &self,
        group: &mut Group,
        held: &mut VecDeque<Held>,
        resync: &mut Resync,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ()> {
        if group.deltas.is_empty() {
            return Ok(());
        }
        // Reloads wait from now until the caller counts the backlog again, after the notify
        // below: a reload that fell due meanwhile would otherwise take the data directory the
        // moment the write releases it, and the notify would then ask for a second one.
        (self.shared.backlog).fetch_add(group.deltas.len(), Ordering::Relaxed);
        let deltas = std::mem::take(group).deltas;
        let deltas = Arc::new(deltas);
        let started = Instant::now();
        let outcomes = loop {
            let (sh, d) = (self.shared.clone(), deltas.clone());
            let result = tokio::task::spawn_blocking(move || apply_deltas(&sh, &d))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(format!("apply task failed: {e}"))));
            let what = describe(&deltas);
            match result {
                Ok(outcomes) => break outcomes,
                Err(_) if self.shared.stopping.load(Ordering::SeqCst) => {
                    log::info!("{what} left for after the restart (not acknowledged)");
                    return Err(());
                }
                Err(e) => {
                    log::error!(
                        "cannot apply {what}: {e}; retrying in {} s (not acknowledged)",
                        RETRY_APPLY.as_secs()
                    );
                    self.shared
                        .board
                        .error(&format!("cannot apply {what}: {e}"));
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_APPLY) => {}
                        _ = shutdown.changed() => return Err(()),
                    }
                }
            }
        };
        let together = match deltas.len() {
            1 => String::new(),
            n => format!(" (applied together with {} other deltas)", n - 1),
        };
        let mut written = false;
        let (mut applied, mut duplicate, mut files) = (0, 0, 0);
        for o in &outcomes {
            match o {
                Outcome::Applied { steps, .. } => {
                    applied += 1;
                    files += *steps as u64;
                }
                Outcome::Duplicate => duplicate += 1,
                Outcome::Rejected(_) => {}
            }
        }
        let took = started.elapsed();
        crate::telemetry::record_apply(applied, duplicate, files, took);
        for (delta, outcome) in deltas.iter().zip(outcomes) {
            let id: DeltaId = (delta.origin.clone(), delta.epoch, delta.seq);
            match outcome {
                Outcome::Applied { steps, gap } => {
                    log::info!(
                        "applied delta {}/{} from {}: {steps} of {} change(s) written in {} ms{together}",
                        delta.epoch,
                        delta.seq,
                        delta.origin,
                        delta.changes.len(),
                        took.as_millis()
                    );
                    written |= steps > 0;
                    self.shared.board.applied(&delta.origin);
                    if gap {
                        resync.request(&format!("a gap in the deltas from {}", delta.origin));
                    }
                }
                Outcome::Duplicate => {
                    log::debug!("delta {}/{}/{} already applied", id.0, id.1, id.2);
                }
                Outcome::Rejected(why) => self.reject(
                    &delta.origin,
                    &format!(
                        "delta {}/{}: {why}; nothing of it was written",
                        delta.epoch, delta.seq
                    ),
                ),
            }
            release(held, &id);
        }
        if written {
            (self.notify)();
        }
        Ok(())
    }
}
