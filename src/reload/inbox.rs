//! What the reload task is told: that GeoServer's memory is behind its data directory, and by
//! which files. A burst of notifies merges into one wake-up, and their files into one list.

use super::objects::Kind;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// "Files were written": the only message the reload task receives; what they were is in the
/// shared [`Owed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadRequest;

/// What GeoServer has not been told of yet.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Owed {
    /// Something only a reload applies (a resync, an import): no per-object apply.
    pub full: bool,
    /// The files written or deleted since GeoServer last heard of them, and how.
    pub objects: BTreeMap<String, Kind>,
}

impl Owed {
    /// Any of the files is GeoServer security configuration (`security/…`), which a reload
    /// leaves as it was: the security manager is reloaded as well.
    pub fn security(&self) -> bool {
        self.objects.keys().any(|p| p.starts_with("security/"))
    }
}

/// The sending side, cheap to clone, given to whoever writes the data directory.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    tx: mpsc::Sender<ReloadRequest>,
    owed: Arc<Mutex<Owed>>,
}

impl ReloadHandle {
    /// A reload is needed (files were written that only a reload applies). Never blocks: when a
    /// notify is already queued this one merges into it.
    pub fn notify(&self) {
        self.owed.lock().unwrap().full = true;
        self.wake();
    }

    /// These files were written or deleted, each needing GeoServer to hear of it: a reload, or
    /// (`apply = "per-object"`) one REST call each.
    pub fn changed(&self, files: &[(String, Kind)]) {
        let mut owed = self.owed.lock().unwrap();
        for (path, kind) in files {
            match owed.objects.get(path).copied() {
                None => {
                    owed.objects.insert(path.clone(), *kind);
                }
                Some(before) => match before.then(*kind) {
                    Some(k) => {
                        owed.objects.insert(path.clone(), k);
                    }
                    None => {
                        owed.objects.remove(path);
                    }
                },
            }
        }
        drop(owed);
        self.wake();
    }

    fn wake(&self) {
        // Full: a queued request already stands for this one. Closed: the task is gone
        // (shutdown, no GeoServer configured, or a node that applies nothing).
        let _ = self.tx.try_send(ReloadRequest);
    }
}

/// The reload task's side.
#[derive(Debug)]
pub struct Inbox {
    pub(super) rx: mpsc::Receiver<ReloadRequest>,
    owed: Arc<Mutex<Owed>>,
}

impl Inbox {
    /// A copy of what is owed now.
    pub(super) fn owed(&self) -> Owed {
        self.owed.lock().unwrap().clone()
    }

    /// A reload starts (or a per-object apply succeeded for `covered`): what it covers is no
    /// longer owed. Files changed again since the copy was taken stay owed.
    pub(super) fn settle(&self, covered: &Owed) {
        let mut owed = self.owed.lock().unwrap();
        if covered.full {
            owed.full = false;
        }
        for (path, kind) in &covered.objects {
            if owed.objects.get(path) == Some(kind) {
                owed.objects.remove(path);
            }
        }
    }

    /// Only a reload will do for what is owed now (a per-object apply fell back).
    pub(super) fn need_full(&self) {
        self.owed.lock().unwrap().full = true;
    }
}

/// The handle for appliers and the inbox for the reload task.
pub fn channel() -> (ReloadHandle, Inbox) {
    let (tx, rx) = mpsc::channel(1);
    let owed = Arc::new(Mutex::new(Owed::default()));
    (
        ReloadHandle {
            tx,
            owed: owed.clone(),
        },
        Inbox { rx, owed },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_merge_per_path_and_a_settled_copy_leaves_later_ones_owed() {
        let (handle, inbox) = channel();
        let p = |s: &str| s.to_string();
        handle.changed(&[
            (p("styles/a.xml"), Kind::Added),
            (p("layergroups/g.xml"), Kind::Modified),
        ]);
        handle.changed(&[
            (p("styles/a.xml"), Kind::Modified),
            (p("styles/b.xml"), Kind::Added),
        ]);
        handle.changed(&[(p("styles/b.xml"), Kind::Deleted)]);
        let owed = inbox.owed();
        assert!(!owed.full);
        assert_eq!(
            owed.objects.into_iter().collect::<Vec<_>>(),
            [
                (p("layergroups/g.xml"), Kind::Modified),
                (p("styles/a.xml"), Kind::Added)
            ]
        );
        let copy = inbox.owed();
        handle.changed(&[(p("styles/a.xml"), Kind::Deleted)]);
        handle.notify();
        inbox.settle(&copy);
        let left = inbox.owed();
        assert!(left.full, "the notify came after the copy");
        assert_eq!(left.objects.len(), 0, "added then deleted: nothing to tell");
        assert!(!left.security());
        handle.changed(&[(p("security/config.xml"), Kind::Modified)]);
        assert!(inbox.owed().security());
    }
}
