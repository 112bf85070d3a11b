//! Drift on a pure slave: the detector's scan of a node that never publishes. A local edit of a
//! replicated file there is reported, and by default reverted by a resync.

use super::Detector;
use crate::config::OnDrift;
use crate::datadir::LocalChange;
use std::sync::atomic::Ordering;

impl Detector {
    /// A pure slave is read-only: a local edit of a replicated file is drift. It is logged
    /// (once per path and content) and, with `on_drift = "revert"`, a resync restores the
    /// cluster's version: the resync fetches files whose content differs from the responder's
    /// manifest and removes files no master knows.
    pub(super) fn report_drift(&self, changes: &[LocalChange], mode: OnDrift) {
        let mut reported = self.reported.lock().unwrap();
        let mut fresh = false;
        for c in changes {
            let (path, hash, what) = match c {
                LocalChange::Write { path, sha256, .. } => (path, Some(*sha256), "changed"),
                LocalChange::Delete { path } => (path, None, "deleted"),
            };
            if reported.get(path) == Some(&hash) {
                continue;
            }
            reported.insert(path.clone(), hash);
            fresh = true;
            crate::telemetry::record_drift();
            self.shared.board.drift();
            match mode {
                OnDrift::Revert => log::warn!(
                    "drift: {path} was {what} locally on this read-only slave; restoring the cluster's version"
                ),
                OnDrift::Warn => log::warn!(
                    "drift: {path} was {what} locally on this read-only slave; left as it is (on_drift = \"warn\")"
                ),
            }
        }
        if fresh && mode == OnDrift::Revert {
            reported.clear();
            self.shared.drift.store(true, Ordering::SeqCst);
        }
    }
}
