//! The reload gate: what the next reload must wait for. A reload waits while a resync round
//! runs, while received messages are still to be applied, and until every catalog reference of
//! the objects touched since the last reload resolves — except those the origin itself could not
//! resolve (it sent them as `dangling`). The reload task asks before every attempt
//! (`reload::run`'s `ready`), so this must stay cheap.

use crate::datadir::CatalogIndex;
use std::collections::BTreeSet;
use std::path::Path;

/// Whether GeoServer may reload now, as told by the caller's reference check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// What is still missing, e.g. "layer.xml refers to missing featuretype id X".
    Wait(String),
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
    /// round is running; `backlog`: received messages not applied yet.
    pub fn readiness(
        &mut self,
        resyncing: bool,
        backlog: usize,
        catalog: &CatalogIndex,
        data_dir: &Path,
    ) -> Readiness {
        if resyncing {
            return Readiness::Wait("a resync is in progress".into());
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
            self.touched.clear();
            self.dangling.clear();
            Readiness::Ready
        } else {
            Readiness::Wait(missing.join("; "))
        }
    }
}
