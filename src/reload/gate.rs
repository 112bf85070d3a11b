//! The reload gate: what the next reload must wait for. A reload waits while a resync round
//! runs, while received messages are still to be applied, and until every catalog reference of
//! the objects touched since the last reload resolves — except those the origin itself could not
//! resolve (it sent them as `dangling`). The reload task asks before every attempt
//! (`reload::run`'s `ready`), so this must stay cheap.
//!
//! The wait for references is bounded (`reference_wait_ms`), because an origin may publish an
//! object whose reference never resolves — except while a resync runs (its writes are half
//! done until it completes) and while this node knows it skipped Deltas (a hole): then what the
//! references need may be in those, and a reload would show GeoServer a catalog this node knows
//! to be half-applied (issue 14's chaos rounds: a slave cut from the embedded broker applied a
//! store's and a style's deletion without the earlier deletion of the layers using them, and
//! reloaded so after 30 s). It waits for the resync instead, however long.

use crate::datadir::CatalogIndex;
use std::collections::BTreeSet;
use std::path::Path;

/// Whether GeoServer may reload now, as told by the caller's reference check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// What is still missing, e.g. "layer.xml refers to missing featuretype id X".
    Wait(String),
    /// A resync is in progress, or references do not resolve and this node lacks Deltas it
    /// skipped: wait, without a time limit, until the resync is done and brought them.
    AwaitResync(String),
}

/// The objects touched since the last reload, and the references their origins could not
/// resolve either.
#[derive(Default)]
pub struct Gate {
    pub touched: BTreeSet<String>,
    pub dangling: BTreeSet<String>,
}

impl Gate {
    /// Whether GeoServer may reload now; clears the gate when it may. `resyncing`: a resync
    /// round is running; `backlog`: received messages not applied yet; `lacking`: the Deltas
    /// this node knows it skipped, described (asked only when references do not resolve).
    pub fn readiness(
        &mut self,
        resyncing: bool,
        backlog: usize,
        catalog: &mut CatalogIndex,
        data_dir: &Path,
        lacking: impl FnOnce() -> Option<String>,
    ) -> Readiness {
        if resyncing {
            return Readiness::AwaitResync("a resync is in progress".into());
        }
        if backlog > 0 {
            return Readiness::Wait(format!("{backlog} received message(s) still to apply"));
        }
        let touched: Vec<String> = self.touched.iter().cloned().collect();
        let missing: Vec<String> = catalog
            .unresolved(&touched, |rel| data_dir.join(rel).is_file())
            .into_iter()
            .filter(|u| !self.dangling.contains(&u.missing))
            .map(|u| format!("{} refers to missing {}", u.path, u.missing))
            .collect();
        if missing.is_empty() {
            catalog.forget_removed(&self.touched);
            self.touched.clear();
            self.dangling.clear();
            return Readiness::Ready;
        }
        match lacking() {
            Some(skipped) => {
                Readiness::AwaitResync(format!("{}; this node lacks {skipped}", missing.join("; ")))
            }
            None => Readiness::Wait(missing.join("; ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer whose default style was deleted: its reference no longer resolves.
    fn layer_without_its_style() -> (Gate, CatalogIndex) {
        let mut catalog = CatalogIndex::default();
        catalog.update(
            "styles/roads.xml",
            Some(b"<style><id>S-1</id><name>roads</name></style>"),
        );
        catalog.update(
            "workspaces/ws/st/roads/layer.xml",
            Some(b"<layer><id>L-1</id><defaultStyle><id>S-1</id></defaultStyle></layer>"),
        );
        catalog.update("styles/roads.xml", None);
        let mut gate = Gate::default();
        gate.touched.insert("styles/roads.xml".into());
        (gate, catalog)
    }

    #[test]
    fn unresolved_references_wait_and_say_what_is_missing() {
        let (mut gate, mut catalog) = layer_without_its_style();
        let got = gate.readiness(false, 0, &mut catalog, Path::new("/"), || None);
        let Readiness::Wait(why) = got else {
            panic!("{got:?}")
        };
        assert!(why.contains("layer.xml refers to missing S-1"), "{why}");
    }

    /// Regression (issue 14's chaos rounds): a node that skipped Deltas and found references
    /// unresolved reloaded anyway once the bounded wait was over. Knowing it lacks Deltas, it
    /// now says so, and the reload task holds such a wait without a limit.
    #[test]
    fn unresolved_references_on_a_node_that_skipped_deltas_wait_for_them() {
        let (mut gate, mut catalog) = layer_without_its_style();
        let lacking = || Some("seqs 324–373 of epoch 7 of gs-master".to_string());
        let got = gate.readiness(false, 0, &mut catalog, Path::new("/"), lacking);
        let Readiness::AwaitResync(why) = got else {
            panic!("{got:?}")
        };
        assert!(
            why.contains("missing S-1") && why.contains("324–373"),
            "{why}"
        );
        assert!(
            !gate.touched.is_empty(),
            "nothing is cleared while it waits"
        );
    }

    #[test]
    fn a_resync_in_progress_holds_a_reload_without_a_time_limit() {
        let mut gate = Gate::default();
        let got = gate.readiness(
            true,
            0,
            &mut CatalogIndex::default(),
            Path::new("/"),
            || None,
        );
        assert_eq!(
            got,
            Readiness::AwaitResync("a resync is in progress".into())
        );
    }

    #[test]
    fn skipped_deltas_do_not_hold_a_reload_whose_references_resolve() {
        let mut gate = Gate::default();
        gate.touched.insert("styles/roads.xml".into());
        let asked = std::cell::Cell::new(false);
        let lacking = || {
            asked.set(true);
            Some("seq 9 of epoch 7 of gs-master".to_string())
        };
        let got = gate.readiness(
            false,
            0,
            &mut CatalogIndex::default(),
            Path::new("/"),
            lacking,
        );
        assert_eq!(got, Readiness::Ready);
        assert!(
            !asked.get(),
            "the holes are only asked about when references do not resolve"
        );
        assert!(gate.touched.is_empty());
    }
}
