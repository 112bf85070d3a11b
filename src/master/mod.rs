//! Master side: detect local changes → diff against the manifest → Delta → outbox → publish.
//!
//! Detection runs on its own thread. Filesystem notifications (inotify) wake it; it then waits
//! for a quiet window (one GeoServer UI action writes its files within a few milliseconds) and
//! compares the data directory with the manifest, stat first, hashing only files whose stat
//! changed. A periodic full rescan catches what notifications miss (NFS, overflowed queues,
//! changes made while gscluster was down).

pub mod conflicts;
mod drift;
pub mod local_edit;
pub mod publisher;
pub mod rollback;

use crate::config::{defaults, OnDrift};
use crate::context::Shared;
use crate::datadir::watch::{Event, Watch};
use crate::datadir::{self, LocalChange};
use crate::delta::{self, Change};
use crate::file_error::Context;
use crate::history::note::Note;
use crate::history::Kind;
use crate::hlc::Version;
use crate::state::Record;
use local_edit::Cutter;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// A burst that never pauses is still cut into Deltas at this interval.
const MAX_BATCH_WAIT: Duration = Duration::from_millis(500);
/// When a batch refers to objects that do not exist (yet), wait this long at most for the rest
/// of the change before publishing: GeoServer writes referenced objects first, so a reference
/// that is still missing after this is a real inconsistency of this data directory.
const REFERENCE_GRACE: Duration = Duration::from_secs(1);

/// What a detection pass looks at.
#[derive(Debug)]
enum Scope {
    /// The whole data directory (start-up, periodic rescan, lost notifications).
    Full,
    /// Only these relative paths (files or folders) that notifications named.
    Paths(BTreeSet<String>),
}

impl Scope {
    /// Take in what an event names; an event that cannot be trusted widens to a full scan.
    fn add(&mut self, ev: Event) {
        let Scope::Paths(set) = self else { return };
        match ev {
            Event::Changed(rel) if !rel.is_empty() => {
                set.insert(rel);
            }
            // The data directory itself, or lost notifications: look at everything.
            Event::Changed(_) | Event::Rescan(_) => *self = Scope::Full,
        }
    }
}

/// The data directory's notifications, or none (then waiting for one only waits).
struct Events(Option<Watch>);

impl Events {
    /// The next event within `timeout`; `None` when none came.
    fn next(&mut self, timeout: Duration) -> Option<Event> {
        let Some(w) = &mut self.0 else {
            std::thread::sleep(timeout);
            return None;
        };
        match w.next(timeout) {
            Ok(ev) => ev,
            Err(e) => {
                log::error!("{e}; looking at everything");
                std::thread::sleep(timeout);
                Some(Event::Rescan("notifications could not be read"))
            }
        }
    }
}

/// Everything the detector needs.
pub struct Detector {
    pub shared: Arc<Shared>,
    pub quiet: Duration,
    /// `None`: the default for a watched or an unwatched data directory.
    pub rescan_interval: Option<Duration>,
    /// Sequence numbers written to the outbox go here, for the publisher.
    pub published: UnboundedSender<u64>,
    /// On a pure slave: local changes are drift, never published (see [`Detector::drift`]).
    pub drift: Option<OnDrift>,
    /// Drifted paths already reported (with the content hash seen), so each is logged once.
    pub reported: std::sync::Mutex<HashMap<String, Option<[u8; 32]>>>,
}

impl Detector {
    /// Run until the shared shutdown flag is set.
    pub fn run(self) {
        let data_dir = self.shared.data_dir.clone();
        // The start-up scan's walk watches every folder it lists.
        let watcher = match Watch::root(&data_dir, &self.shared.filter, &self.shared.skip_dirs) {
            Ok(w) => Some(w),
            Err(e) => {
                log::warn!("filesystem notifications unavailable: {e}");
                None
            }
        };
        let mut rx = Events(watcher);
        // A slave's first resync writes the whole tree: until it is done, whatever a scan
        // finds is the bootstrap at work, not drift, so no scan is made (at 100,000 layers a
        // first scan hashes 330,000 files, and every file written raises a notification). One
        // full rescan follows once the node is synced.
        // Set while the full rescan that follows a bootstrap is still owed.
        let mut bootstrap_pending = self.bootstrapping(true);
        if bootstrap_pending {
            log::info!("bootstrap under way: drift detection starts when it is done");
        } else {
            self.detect_and_publish(&mut rx, "start-up scan", Scope::Full);
        }
        if let Some(why) = rx.0.as_ref().and_then(Watch::trouble) {
            log::warn!("filesystem notifications unavailable: {why}");
            rx.0 = None;
        }
        let watcher = &rx.0;
        // Watched, a full rescan is only the safety net for what notifications miss (their
        // overflow is reported and starts one at once): on 10,000 layers it costs ~0.2 CPU s.
        // Unwatched, it is the detection itself.
        let rescan_interval =
            self.rescan_interval
                .unwrap_or(Duration::from_secs(if watcher.is_some() {
                    defaults::RESCAN_WATCHED_S
                } else {
                    defaults::RESCAN_UNWATCHED_S
                }));
        if let Some(w) = &watcher {
            log::info!(
                "watching {} for changes; full rescan every {} s ({} folder(s) watched)",
                data_dir.display(),
                rescan_interval.as_secs(),
                w.folders()
            );
        } else {
            log::warn!(
                "relying on a full rescan of {} every {} s to detect changes",
                data_dir.display(),
                rescan_interval.as_secs()
            );
        }
        let mut next_rescan = Instant::now() + rescan_interval;
        while !self.shared.stopping.load(Ordering::SeqCst) {
            if bootstrap_pending && !self.bootstrapping(false) {
                bootstrap_pending = false;
                self.detect_and_publish(&mut rx, "after the bootstrap", Scope::Full);
                next_rescan = Instant::now() + rescan_interval;
            }
            if bootstrap_pending {
                // The bootstrap's own writes: drained a quarter second at a time (a few
                // thousand notifications per read instead of one), never scanned.
                std::thread::sleep(Duration::from_millis(250));
                while rx.next(Duration::ZERO).is_some() {}
                continue;
            }
            let wait = next_rescan
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(250));
            match rx.next(wait) {
                Some(first) => {
                    if !self.relevant(&first) {
                        continue;
                    }
                    let mut scope = Scope::Paths(BTreeSet::new());
                    scope.add(first);
                    self.wait_quiet(&mut rx, &mut scope);
                    self.detect_and_publish(&mut rx, "change", scope);
                }
                None => {
                    if Instant::now() >= next_rescan {
                        self.detect_and_publish(&mut rx, "periodic rescan", Scope::Full);
                        next_rescan = Instant::now() + rescan_interval;
                    }
                }
            }
        }
    }

    /// Is this a slave whose first resync is still writing the tree? Without `wait`, a state
    /// busy (the resync committing) counts as yes: asked again a moment later.
    fn bootstrapping(&self, wait: bool) -> bool {
        if self.drift.is_none() {
            return false;
        }
        let state = if wait {
            self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
        } else {
            match self.shared.state.try_lock() {
                Ok(s) => s,
                Err(_) => return true,
            }
        };
        !state.synced
    }

    /// Events about our own temp files or excluded paths do not start a scan.
    fn relevant(&self, ev: &Event) -> bool {
        match ev {
            Event::Rescan(why) => {
                log::info!("{why}: looking at the whole data directory");
                true
            }
            Event::Changed(rel) => {
                !crate::durable::is_temp_path(rel)
                    && (self.shared.filter.matches(rel) || self.shared.filter.may_contain(rel))
            }
        }
    }

    /// Drain events until no relevant one arrived for the quiet window (bounded by
    /// MAX_BATCH_WAIT, so a burst that never pauses is still published).
    fn wait_quiet(&self, rx: &mut Events, scope: &mut Scope) {
        let give_up = Instant::now() + MAX_BATCH_WAIT;
        let mut quiet_until = Instant::now() + self.quiet;
        loop {
            let left = quiet_until
                .min(give_up)
                .saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match rx.next(left) {
                Some(ev) if self.relevant(&ev) => {
                    scope.add(ev);
                    quiet_until = Instant::now() + self.quiet;
                }
                Some(_) => {}
                None => return,
            }
        }
    }

    /// Scan, diff and publish; errors are logged and retried at the next wake-up. A batch whose
    /// objects refer to missing ones waits (up to REFERENCE_GRACE) for more of the change.
    fn detect_and_publish(&self, rx: &mut Events, why: &str, mut scope: Scope) {
        crate::memory::worked();
        let deadline = Instant::now() + REFERENCE_GRACE;
        loop {
            let may_defer = Instant::now() < deadline;
            match self.detect(why, may_defer, &scope, rx.0.as_mut()) {
                Ok(Some(seqs)) => {
                    for seq in seqs {
                        let _ = self.published.send(seq);
                    }
                    return;
                }
                Ok(None) => {
                    // Wait for the next write of this change, then for its quiet window.
                    if let Some(ev) = rx.next(deadline.saturating_duration_since(Instant::now())) {
                        if self.relevant(&ev) {
                            scope.add(ev);
                        }
                        self.wait_quiet(rx, &mut scope);
                    }
                }
                Err(e) => {
                    log::error!("change detection ({why}) failed: {e}; retrying in 1 s");
                    // A missing or unreadable data directory must not become a busy loop of
                    // notifications and failed scans.
                    std::thread::sleep(Duration::from_secs(1));
                    return;
                }
            }
        }
    }

    /// Detect and publish one batch. `None`: deferred, because the batch refers to objects that
    /// do not exist yet and `may_defer` allowed waiting for them. A full scan also watches each
    /// folder it walks into (again, harmlessly, after the first).
    fn detect(
        &self,
        why: &str,
        may_defer: bool,
        scope: &Scope,
        watch: Option<&mut Watch>,
    ) -> std::io::Result<Option<Vec<u64>>> {
        let sh = &self.shared;
        let started = Instant::now();
        // The state lock also keeps the slave side of a "both" node from writing while we
        // compare: its writes are recorded in the manifest before we can see them.
        let mut state = sh.state.lock().unwrap();
        let (mut changes, restat, seen) = self.compare(&state, scope, watch)?;
        // What an apply of this node left unrecorded when it was interrupted is not a local
        // edit: the redelivered Delta or a resync records it.
        changes.retain(|c| !state.intended(c));
        // Nor is what GeoServer rewrites during a per-object REST call: it is put back to the
        // master's bytes right after (`reload::per_object`).
        let rewriting = sh.rewrites.lock().unwrap().clone();
        changes.retain(|c| !rewriting.contains(c.path()));
        if !restat.is_empty() {
            // Same content, new stat: remember the stat so the next scan does not hash again.
            let entries = restat
                .iter()
                .filter_map(|u| {
                    let mut e = state.manifest.live_entry(&u.path)?.clone();
                    e.set_stat(&u.stat);
                    Some((u.path.clone(), e))
                })
                .collect();
            state.commit(Record {
                entries,
                ..Default::default()
            })?;
        }
        if changes.is_empty() {
            log::trace!("{why}: no change ({seen} files, {:?})", started.elapsed());
            return Ok(Some(Vec::new()));
        }
        if let Some(mode) = self.drift {
            // Before the first completed resync the manifest does not cover the tree: what
            // differs is what the bootstrap is about to fix, not drift — and the bootstrap
            // indexes the whole tree at its end.
            if state.synced {
                // The catalog index follows the disk, drift or not (it is trusted without a
                // walk after a clean stop: what changed meanwhile reaches it through here).
                self.unresolved(&changes);
                self.report_drift(&changes, mode);
            }
            return Ok(Some(Vec::new()));
        }
        // First pass: bring the catalog index up to date and find the references the batch
        // leaves unresolved, without keeping any content.
        let dangling = self.unresolved(&changes);
        if may_defer && !dangling.is_empty() {
            log::debug!("{why}: waiting for referenced objects: {dangling:?}");
            return Ok(None);
        }
        // Second pass: read each file once more and cut Deltas of at most SPLIT_DELTA_AT.
        let hlc = sh.clock.lock().unwrap().tick();
        let version = Version::new(hlc, sh.node_id.clone());
        let mut cut = Cutter::default();
        let mut seqs = Vec::new();
        for change in changes {
            let Some((change, entry)) = self.read_change(&state, change, &version)? else {
                continue;
            };
            if let Some(full) = cut.push(change, entry) {
                seqs.push(self.publish_batch(&mut state, full, &dangling, hlc, why, started)?);
            }
        }
        if let Some(last) = cut.finish() {
            seqs.push(self.publish_batch(&mut state, last, &dangling, hlc, why, started)?);
        }
        Ok(Some(seqs))
    }

    /// What differs between the data directory (all of it, or the scope's paths) and the
    /// manifest: the changes, the files whose stat alone changed, and how many files were
    /// looked at.
    fn compare(
        &self,
        state: &crate::state::State,
        scope: &Scope,
        watch: Option<&mut Watch>,
    ) -> std::io::Result<(Vec<LocalChange>, Vec<datadir::StatUpdate>, usize)> {
        let sh = &self.shared;
        // A full rescan walks the tree and the manifest side by side, in path order: neither
        // is held whole. A notification's few paths are looked at alone.
        match scope {
            // Hashes are streamed: the content is read again, one Delta at a time, when the
            // Deltas are built, so a start-up scan of tens of thousands of files never holds
            // them all.
            Scope::Full => datadir::rescan(
                &sh.data_dir,
                &sh.filter,
                &sh.skip_dirs,
                &state.manifest,
                watch,
                |rel| datadir::sha256_file(&sh.data_dir.join(rel)),
            ),
            Scope::Paths(rels) => {
                let mut scan = datadir::scan_paths(&sh.data_dir, rels, &sh.filter, &sh.skip_dirs)?;
                scan.retain(|rel, _| !crate::durable::is_temp_path(rel));
                let seen = scan.len();
                let (changes, restat) = datadir::diff_with_stats(
                    &manifest_within(&state.manifest, rels),
                    scan,
                    |rel| datadir::sha256_file(&sh.data_dir.join(rel)),
                );
                Ok((changes, restat, seen))
            }
        }
    }

    /// Bring the catalog index up to date with `changes` and return the references they leave
    /// unresolved — references the master itself cannot resolve, which receivers must not wait
    /// for.
    fn unresolved(&self, changes: &[LocalChange]) -> Vec<String> {
        let sh = &self.shared;
        let mut catalog = sh.catalog.lock().unwrap();
        let mut touched = Vec::with_capacity(changes.len());
        let mut updates = Vec::new();
        for change in changes {
            match change {
                LocalChange::Write { path, stat, .. } => {
                    // Only XML is indexed: other files are not read here.
                    if path.ends_with(".xml") {
                        if let Ok(bytes) = std::fs::read(sh.data_dir.join(path)) {
                            updates.push((path.clone(), Some((Cow::Owned(bytes), *stat))));
                        }
                    }
                    touched.push(path.clone());
                }
                LocalChange::Delete { path } => {
                    updates.push((path.clone(), None));
                    touched.push(path.clone());
                }
            }
            // Bounded memory whatever the batch: a first scan finds every file.
            if updates.len() >= 1000 {
                catalog.update_many(std::mem::take(&mut updates));
            }
        }
        catalog.update_many(updates);
        let missing: HashSet<String> = catalog
            .unresolved(&touched, |rel| sh.data_dir.join(rel).is_file())
            .into_iter()
            .map(|u| u.missing)
            .collect();
        catalog.forget_removed(&touched);
        missing.into_iter().collect()
    }

    /// A detected change as the change to publish (the file read once more: what is sent may
    /// be newer than what the diff hashed) and the manifest entry it leaves. `None`: the file
    /// is gone since the scan (the next pass sees the deletion) or too large to replicate.
    fn read_change(
        &self,
        state: &crate::state::State,
        change: LocalChange,
        version: &Version,
    ) -> std::io::Result<Option<(Change, (String, datadir::Entry))>> {
        let manifest = &state.manifest;
        let (change, stat) = match change {
            LocalChange::Write { path, stat, .. } => {
                let file = self.shared.data_dir.join(&path);
                let bytes = match std::fs::read(&file) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e).at("read", &file),
                };
                if bytes.len() as u64 > delta::MAX_FILE_SIZE {
                    log::warn!(
                        "{path}: {} bytes is over the {} byte limit for one file; not replicated",
                        bytes.len(),
                        delta::MAX_FILE_SIZE
                    );
                    return Ok(None);
                }
                let (bytes, stat) = match self.align_counter(manifest, &path, bytes)? {
                    Aligned::As(bytes) => (bytes, stat),
                    Aligned::Rewritten(bytes, stat) => (bytes, stat),
                };
                (
                    local_edit::write(manifest, path, bytes, version),
                    Some(stat),
                )
            }
            LocalChange::Delete { path } => (local_edit::delete(manifest, path, version), None),
        };
        let mut entry = change.entry();
        if let Some(stat) = stat {
            entry.set_stat(&stat);
        }
        let path = change.path.clone();
        Ok(Some((change, (path, entry))))
    }

    /// A merged file (`global.xml`) saved on a node that applies (`both`) with a lower
    /// `updateSequence` than the node already holds — GeoServer counts from what it loaded at its
    /// last reload, and a remote bump may have raised the file since — is put back to the
    /// highest counter before it is published, in the file too: every other applying node joins
    /// to that counter, and this node's copy must be the same bytes. A pure master keeps its own
    /// copy as GeoServer wrote it (it never holds the group's bytes anyway).
    fn align_counter(
        &self,
        manifest: &datadir::Manifest,
        path: &str,
        bytes: Vec<u8>,
    ) -> std::io::Result<Aligned> {
        use crate::update_sequence as us;
        let held = (manifest.live_entry(path))
            .and_then(|e| e.merged)
            .map(|m| m.counter);
        let (Some(held), Some((_, now))) = (held, us::counter(&bytes).filter(|_| us::merged(path)))
        else {
            return Ok(Aligned::As(bytes));
        };
        if !self.shared.applies {
            return Ok(Aligned::As(bytes));
        }
        if now >= held {
            return Ok(Aligned::As(bytes));
        }
        let aligned = us::with_counter(&bytes, held);
        let file = self.shared.data_dir.join(path);
        crate::durable::write_file(&file, &aligned)?;
        let stat = datadir::FileStat::from_metadata(&std::fs::metadata(&file).at("stat", &file)?);
        log::info!(
            "{path}: saved with updateSequence {now}, below the {held} this node holds; published and kept with {held}"
        );
        Ok(Aligned::Rewritten(aligned, stat))
    }

    /// Turn one batch into a Delta: outbox first, then the manifest and sequence number.
    fn publish_batch(
        &self,
        state: &mut crate::state::State,
        (changes, entries): (Vec<Change>, Vec<(String, datadir::Entry)>),
        dangling: &[String],
        hlc: u64,
        why: &str,
        started: Instant,
    ) -> std::io::Result<u64> {
        let seq = state.next_seq;
        // Outbox first: a crash after this but before the commit is adopted at the next start
        // (adopt_uncommitted); the reverse order could lose the changes.
        let (d, sent) = local_edit::enqueue(&self.shared, state, seq, changes, dangling)?;
        crate::crashpoint::hit("outbox-written");
        let history = state.history.then(|| {
            let mut note = Note::default();
            note.changes(&self.shared.node_id, Kind::Local { seq }, &d.changes);
            Box::new(note)
        });
        state.commit(Record {
            entries,
            next_seq: Some(seq + 1),
            hlc,
            history,
            ..Default::default()
        })?;
        log::info!(
            "{why}: seq {seq}: {} change(s) in {sent}, detected in {:?}",
            d.changes.len(),
            started.elapsed()
        );
        for c in &d.changes {
            log::debug!("seq {seq}: {} {:?}", c.path, c.op);
        }
        crate::crashpoint::hit("delta-committed");
        Ok(seq)
    }
}

/// Finish what a crash interrupted between writing a Delta to the outbox and recording it in
/// the manifest: the outbox entry is what was (or will be) published, so its changes become the
/// manifest's, and the start-up scan does not publish them a second time. Entries that cannot be
/// read are left for the publisher (which sends them as they are) and logged.
pub fn adopt_uncommitted(
    state: &mut crate::state::State,
    group: &str,
    auth: &crate::security::Auth,
) -> std::io::Result<()> {
    let outbox = state.outbox();
    for seq in std::mem::take(&mut state.uncommitted) {
        let delta = match outbox.get(seq).map(|p| delta::decode(&p, group, auth)) {
            Ok(Ok(d)) if d.epoch == state.epoch => d,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => {
                log::error!("outbox entry {seq} cannot be decoded ({e}); it is published as it is");
                continue;
            }
            Err(e) => return Err(e),
        };
        // Stat unknown: the next scan hashes each file once and keeps its stat.
        let entries = (delta.changes.iter())
            .map(|c| (c.path.clone(), c.entry()))
            .collect();
        let hlc = delta
            .changes
            .iter()
            .map(|c| c.version.hlc)
            .max()
            .unwrap_or(0);
        let history = state.history.then(|| {
            let mut note = Note::default();
            note.changes(&delta.origin, Kind::Local { seq }, &delta.changes);
            Box::new(note)
        });
        state.commit(Record {
            entries,
            next_seq: Some(seq + 1),
            hlc,
            history,
            ..Default::default()
        })?;
        log::info!("recovered seq {seq} from the outbox after an interrupted run");
    }
    Ok(())
}

/// The manifest entries at or below the given paths: what a scan of just those paths is
/// compared with (an entry there that the scan no longer finds is a deletion).
fn manifest_within(manifest: &datadir::Manifest, rels: &BTreeSet<String>) -> datadir::Manifest {
    (rels.iter())
        .flat_map(|rel| manifest.within(rel))
        .map(|(path, entry)| (path.clone(), entry.clone()))
        .collect()
}

/// A file's bytes as read, or put back to the counter this node holds (and its new stat).
enum Aligned {
    As(Vec<u8>),
    Rewritten(Vec<u8>, datadir::FileStat),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadir::{Entry, Manifest};

    #[test]
    fn manifest_within_takes_the_paths_and_what_is_below_them_only() {
        let mut m = Manifest::default();
        for p in [
            "global.xml",
            "styles",
            "styles-old.xml",
            "styles/a.sld",
            "styles/x/b.png",
            "styles0/c.sld",
            "workspaces/w/workspace.xml",
        ] {
            m.set(p.to_string(), Entry::tombstone(Version::new(1, "a")));
        }
        let rels: BTreeSet<String> = ["styles".to_string(), "global.xml".to_string()].into();
        let part = manifest_within(&m, &rels);
        let keys: Vec<String> = part.iter().map(|(s, _)| s).collect();
        assert_eq!(
            keys,
            ["global.xml", "styles", "styles/a.sld", "styles/x/b.png"]
        );
    }
}
