//! Watching the data directory for changes (inotify), one watch per folder that can hold
//! replicated files.
//!
//! What this keeps per folder is its watch descriptor, its parent's and its name, in one shared
//! string: about 30 bytes, so 100,000 folders cost ~3 MB, where a table of absolute paths (two
//! maps of them, as general-purpose watchers keep) cost ~23 MB. Folders the replicate filter
//! cannot match below (`data/`, `logs/`, GWC's tile cache, which may hold millions of folders)
//! and the state dir are never watched: their changes are never replicated, and watching them
//! would spend the kernel's watch budget (`fs.inotify.max_user_watches`) and wake the detector
//! for nothing.
//!
//! Events are translated to relative paths that may have changed; the detector then looks at
//! those paths. A folder created or moved into the tree is watched at once and reported whole
//! (files written into it before its watch existed are found by looking at it). When the kernel
//! drops events (its queue overflowed) the caller is told to rescan everything.

use super::filter::Filter;
use super::scan::Skip;
use crate::file_error::Context;
use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What may have changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The file or folder at this relative path (`""`: the data directory itself).
    Changed(String),
    /// Notifications were lost, or the data directory itself moved: look at everything.
    Rescan(&'static str),
}

/// The watches on one data directory. Reading events also watches the folders they create.
pub struct Watch {
    fd: OwnedFd,
    root: PathBuf,
    /// The folders below the root that are watched too; `None`: the root alone.
    filter: Option<Filter>,
    skip: Skip,
    folders: Folders,
    pending: VecDeque<Event>,
    buf: Vec<u8>,
    /// The root's watch descriptor.
    root_wd: i32,
    /// Why folders could not be watched (out of watches), if they could not.
    trouble: Option<String>,
}

/// The folders a walk registered last ([`Watch::add_folder`]), each below the one before: the
/// walk's current path, for finding a new folder's parent. One per walk, so that walks of two
/// parts of the tree can register folders in turn.
pub struct WalkPath(Vec<(String, i32)>);

/// Everything a watch reports. Opens and reads (our own scans among them) are not watched.
const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_ATTRIB
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW
    | libc::IN_EXCL_UNLINK;

/// Room for many events per read (one is 16 bytes + the name, at most 256).
const BUF: usize = 16 * 1024;

impl Watch {
    /// Watch `root` and every folder below it that `filter` can match below, except `skip_dirs`.
    /// An error names what could not be watched; running out of watches names the setting to
    /// raise.
    pub fn new(root: &Path, filter: &Filter, skip_dirs: &[PathBuf]) -> io::Result<Watch> {
        Watch::start(root, Some(filter.clone()), skip_dirs)
    }

    /// Watch the folder `dir` alone (what is created in it, not below).
    pub fn folder(dir: &Path) -> io::Result<Watch> {
        Watch::start(dir, None, &[])
    }

    /// Watch `root` only, for now: the walk of a full scan adds every folder below it as it
    /// goes ([`Self::add_folder`]), so the tree is listed once, not once more for the watches.
    pub fn root(root: &Path, filter: &Filter, skip_dirs: &[PathBuf]) -> io::Result<Watch> {
        let mut w = Watch::start(root, None, skip_dirs)?;
        w.filter = Some(filter.clone());
        Ok(w)
    }

    /// Where a walk that registers folders ([`Self::add_folder`]) starts: at the root.
    pub fn walk_path(&self) -> WalkPath {
        WalkPath(vec![(String::new(), self.root_wd)])
    }

    /// Watch the folder at `rel`, whose parent is the root or a folder added just before on
    /// the same walk (`at`: a walk's order). Watched already: kept as it is. Out of watches:
    /// noted in [`Self::trouble`], and nothing more is added.
    pub fn add_folder(&mut self, at: &mut WalkPath, rel: &str) {
        if self.trouble.is_some() {
            return;
        }
        let path = &mut at.0;
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        while path.len() > 1 && path.last().is_some_and(|(r, _)| r != parent) {
            path.pop();
        }
        let Some(&(ref r, parent_wd)) = path.last() else {
            return;
        };
        if r != parent {
            return; // its parent vanished before it could be watched
        }
        match self.add_watch(&self.root.join(rel)) {
            Ok(Some(wd)) => {
                self.folders.insert(wd, parent_wd, name);
                path.push((rel.to_string(), wd));
            }
            Ok(None) => {}
            Err(e) => {
                // Said once here: a rescan after start-up meets it with nobody checking.
                log::warn!("{e}; folders from here on are found by the periodic rescan only");
                self.trouble = Some(e.to_string());
            }
        }
    }

    /// Why some folders are not watched, when some are not.
    pub fn trouble(&self) -> Option<&str> {
        self.trouble.as_deref()
    }

    fn start(root: &Path, filter: Option<Filter>, skip_dirs: &[PathBuf]) -> io::Result<Watch> {
        // SAFETY: inotify_init1 takes flags only and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error()).at("start watching (inotify)", root);
        }
        let mut w = Watch {
            // SAFETY: fd was just returned by inotify_init1 and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            root: root.to_path_buf(),
            filter,
            skip: Skip::new(root, skip_dirs),
            folders: Folders::default(),
            pending: VecDeque::new(),
            buf: vec![0; BUF],
            root_wd: ROOT,
            trouble: None,
        };
        w.add_tree(ROOT, "")?;
        let Some((&wd, _)) = w.folders.by_wd.iter().find(|(_, f)| f.parent == ROOT) else {
            return Err(io::Error::from(io::ErrorKind::NotFound)).at("watch", root);
        };
        w.root_wd = wd;
        Ok(w)
    }

    /// How many folders are watched.
    pub fn folders(&self) -> usize {
        self.folders.by_wd.len()
    }

    /// The next event, waiting up to `timeout` for one; `None` when none came.
    pub fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Some(ev));
        }
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the length given.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e).at("wait for notifications of", &self.root)
            };
        }
        if n > 0 {
            self.read()?;
        }
        Ok(self.pending.pop_front())
    }

    /// Read what the kernel has queued and translate it.
    fn read(&mut self) -> io::Result<()> {
        loop {
            // SAFETY: reads at most buf.len() bytes into buf.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(()),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e).at("read notifications of", &self.root),
                };
            }
            let buf = std::mem::take(&mut self.buf);
            let mut at = 0;
            let head = std::mem::size_of::<libc::inotify_event>();
            while at + head <= n as usize {
                // SAFETY: the kernel wrote a whole inotify_event header at `at`; read_unaligned
                // because the buffer is a byte vector.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf.as_ptr().add(at).cast()) };
                let name_bytes = &buf[at + head..at + head + ev.len as usize];
                let name = name_bytes.split(|&b| b == 0).next().unwrap_or(&[]);
                self.translate(ev.wd, ev.mask, name);
                at += head + ev.len as usize;
            }
            self.buf = buf;
        }
    }

    /// One kernel event → what may have changed (and new watches).
    fn translate(&mut self, wd: i32, mask: u32, name: &[u8]) {
        if mask & libc::IN_Q_OVERFLOW != 0 {
            self.pending.push_back(Event::Rescan(
                "the kernel dropped notifications (queue full)",
            ));
            return;
        }
        if mask & libc::IN_IGNORED != 0 {
            // The watch is gone (its folder was deleted, or we removed it).
            self.folders.remove(wd);
            return;
        }
        let Some(dir) = self.folders.rel(wd) else {
            return; // a folder we stopped watching; its last events are stale
        };
        if mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
            if self.folders.is_root(wd) {
                self.pending.push_back(Event::Rescan(
                    "the data directory itself was moved or deleted",
                ));
            }
            // Any other folder: its parent reports it.
            return;
        }
        let Ok(name) = std::str::from_utf8(name) else {
            // Not a name a Delta can carry; the folder is looked at as a whole.
            self.pending.push_back(Event::Changed(dir));
            return;
        };
        let rel = if name.is_empty() {
            dir
        } else if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        };
        if mask & libc::IN_ISDIR != 0 {
            if mask & (libc::IN_MOVED_FROM | libc::IN_DELETE) != 0 {
                // Moved away: its watches would report under a path it no longer has.
                if let Some(child) = self.folders.child(wd, name) {
                    self.unwatch_tree(child);
                }
            } else if mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 && self.may_contain(&rel) {
                if let Err(e) = self.add_tree(wd, name) {
                    log::warn!("{e}; relying on the periodic rescan for the rest");
                    self.pending
                        .push_back(Event::Rescan("a new folder could not be watched"));
                }
            }
        }
        self.pending.push_back(Event::Changed(rel));
    }

    /// Watch folder `name` of the watched folder `parent` (the root: [`ROOT`], `""`) and every
    /// folder below it that may hold replicated files.
    fn add_tree(&mut self, parent: i32, name: &str) -> io::Result<()> {
        let mut todo = vec![(parent, name.to_string())];
        while let Some((parent, name)) = todo.pop() {
            let rel = match self.folders.rel(parent) {
                Some(dir) if !dir.is_empty() => format!("{dir}/{name}"),
                _ => name.clone(),
            };
            let abs = if rel.is_empty() {
                self.root.clone()
            } else {
                self.root.join(&rel)
            };
            let Some(wd) = self.add_watch(&abs)? else {
                continue;
            };
            self.folders.insert(wd, parent, &name);
            // Watched before listed: what is created from now on is reported, what existed
            // is found here or by the detector's look at the reported folder.
            let Ok(entries) = fs::read_dir(&abs) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue; // files, and symlinks (never followed)
                }
                let Ok(child) = entry.file_name().into_string() else {
                    continue;
                };
                let child_rel = if rel.is_empty() {
                    child.clone()
                } else {
                    format!("{rel}/{child}")
                };
                if self.may_contain(&child_rel) {
                    todo.push((wd, child));
                }
            }
        }
        Ok(())
    }

    /// Is the folder at `rel` watched?
    fn may_contain(&self, rel: &str) -> bool {
        (self.filter.as_ref()).is_some_and(|f| f.may_contain(rel))
            && !self.skip.skipped(&self.root.join(rel), rel)
    }

    /// `Ok(None)`: the folder vanished or is not readable (logged) — nothing to watch.
    fn add_watch(&self, abs: &Path) -> io::Result<Option<i32>> {
        let c = CString::new(abs.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
            .at("watch", abs)?;
        // SAFETY: a valid NUL-terminated path and our own inotify descriptor.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) };
        if wd >= 0 {
            return Ok(Some(wd));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => Ok(None),
            Some(libc::ENOSPC) => Err(io::Error::other(format!(
                "out of inotify watches after {} folders (raise the sysctl \
                 fs.inotify.max_user_watches, now {}): cannot watch {}",
                self.folders.by_wd.len(),
                fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                    .map_or("unknown".into(), |s| s.trim().to_string()),
                abs.display()
            ))),
            Some(libc::EACCES) => {
                log::warn!("cannot watch {}: {e}; skipping it", abs.display());
                Ok(None)
            }
            _ => Err(e).at("watch", abs),
        }
    }

    /// Stop watching folder `wd` and every watched folder below it.
    fn unwatch_tree(&mut self, wd: i32) {
        for w in self.folders.subtree(wd) {
            // SAFETY: removing a watch of our own descriptor; an already gone one is EINVAL.
            unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), w) };
            self.folders.remove(w);
        }
    }
}

/// The parent of the data directory's own watch.
const ROOT: i32 = -1;

/// Watched folders by watch descriptor: parent and name, the names in one string.
#[derive(Default)]
struct Folders {
    by_wd: HashMap<i32, Folder>,
    names: String,
    /// Bytes of `names` no folder uses any more.
    garbage: usize,
}

#[derive(Clone, Copy)]
struct Folder {
    parent: i32,
    start: u32,
    len: u32,
}

impl Folders {
    fn insert(&mut self, wd: i32, parent: i32, name: &str) {
        if (self.by_wd.get(&wd)).is_some_and(|f| f.parent == parent && self.name(f) == name) {
            return; // watched already (a rescan walks past it again)
        }
        // The same folder watched again (moved back in) keeps its descriptor.
        self.remove(wd);
        if self.garbage > self.names.len() / 2 && self.garbage > 4096 {
            self.compact();
        }
        let start = self.names.len() as u32;
        self.names.push_str(name);
        let len = name.len() as u32;
        self.by_wd.insert(wd, Folder { parent, start, len });
    }

    fn remove(&mut self, wd: i32) {
        if let Some(f) = self.by_wd.remove(&wd) {
            self.garbage += f.len as usize;
        }
    }

    fn compact(&mut self) {
        let mut names = String::with_capacity(self.names.len() - self.garbage);
        for f in self.by_wd.values_mut() {
            let start = names.len() as u32;
            names.push_str(&self.names[f.start as usize..(f.start + f.len) as usize]);
            f.start = start;
        }
        self.names = names;
        self.garbage = 0;
    }

    fn name(&self, f: &Folder) -> &str {
        &self.names[f.start as usize..(f.start + f.len) as usize]
    }

    fn is_root(&self, wd: i32) -> bool {
        self.by_wd.get(&wd).is_some_and(|f| f.parent == ROOT)
    }

    /// The folder's path relative to the root (`""`: the root).
    fn rel(&self, wd: i32) -> Option<String> {
        let mut names = Vec::new();
        let mut at = self.by_wd.get(&wd)?;
        while at.parent != ROOT {
            names.push(self.name(at));
            at = self.by_wd.get(&at.parent)?;
        }
        names.reverse();
        Some(names.join("/"))
    }

    fn child(&self, parent: i32, name: &str) -> Option<i32> {
        (self.by_wd.iter())
            .find(|(_, f)| f.parent == parent && self.name(f) == name)
            .map(|(wd, _)| *wd)
    }

    /// `wd` and every folder below it.
    fn subtree(&self, wd: i32) -> Vec<i32> {
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for (w, f) in &self.by_wd {
            children.entry(f.parent).or_default().push(*w);
        }
        let mut out = vec![wd];
        let mut i = 0;
        while i < out.len() {
            out.extend(children.remove(&out[i]).unwrap_or_default());
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn mkdirs(root: &Path, rels: &[&str]) {
        for r in rels {
            fs::create_dir_all(root.join(r)).unwrap();
        }
    }

    /// Events until `done` says the ones so far are enough, or 10 s pass (then all seen).
    fn events_until(w: &mut Watch, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while !done(&seen) && Instant::now() < deadline {
            seen.extend(w.next(Duration::from_millis(50)).unwrap());
        }
        seen
    }

    /// The events until `want` comes (asserted to come within 10 s).
    fn wait_for(w: &mut Watch, want: &Event) -> Vec<Event> {
        let seen = events_until(w, |s| s.contains(want));
        assert!(seen.contains(want), "no {want:?} in {seen:?}");
        seen
    }

    /// The watched folders' relative paths, sorted.
    fn watched(w: &Watch) -> Vec<String> {
        let mut rels: Vec<_> = (w.folders.by_wd.keys())
            .filter_map(|&wd| w.folders.rel(wd))
            .collect();
        rels.sort();
        rels
    }

    /// Everything that arrives within a short while.
    fn settle(w: &mut Watch) -> Vec<Event> {
        let mut seen = Vec::new();
        while let Some(ev) = w.next(Duration::from_millis(200)).unwrap() {
            seen.push(ev);
        }
        seen
    }

    fn changed(rel: &str) -> Event {
        Event::Changed(rel.to_string())
    }

    #[test]
    fn only_folders_that_can_hold_replicated_files_are_watched() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        mkdirs(
            root,
            &[
                "workspaces/w/s/l",
                "styles",
                "data/raster/a",
                "logs",
                "state/x",
            ],
        );
        let w = Watch::new(root, &Filter::defaults(), &[root.join("state")]).unwrap();
        // root, workspaces, w, s, l, styles: not data/**, logs/**, nor the skipped state dir.
        assert_eq!(w.folders(), 6);
        assert_eq!(
            watched(&w),
            [
                "",
                "styles",
                "workspaces",
                "workspaces/w",
                "workspaces/w/s",
                "workspaces/w/s/l"
            ]
        );
    }

    #[test]
    fn a_full_scan_walk_registers_the_folders_it_lists() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        mkdirs(
            root,
            &["workspaces/a/s", "workspaces/b", "styles", "data/x"],
        );
        fs::write(root.join("workspaces/a/s/f.xml"), "<f/>").unwrap();
        let filter = Filter::defaults();
        let mut w = Watch::root(root, &filter, &[]).unwrap();
        assert_eq!(w.folders(), 1, "the root only");
        let walk = crate::datadir::walk(root, &filter, &[], None).unwrap();
        let mut at = w.walk_path();
        assert_eq!(
            walk.before_listing(|rel| w.add_folder(&mut at, rel))
                .count(),
            1
        );
        assert_eq!(
            watched(&w),
            [
                "",
                "styles",
                "workspaces",
                "workspaces/a",
                "workspaces/a/s",
                "workspaces/b"
            ]
        );
        // Walked again (a periodic rescan): nothing changes; a folder whose parent is not
        // watched is not either.
        let names = w.folders.names.len();
        let walk = crate::datadir::walk(root, &filter, &[], None).unwrap();
        let mut at = w.walk_path();
        walk.before_listing(|rel| w.add_folder(&mut at, rel))
            .for_each(drop);
        let mut at = w.walk_path();
        w.add_folder(&mut at, "nowhere/child");
        assert_eq!((w.folders(), w.folders.names.len()), (6, names));
        fs::write(root.join("workspaces/a/s/g.xml"), "<g/>").unwrap();
        wait_for(&mut w, &changed("workspaces/a/s/g.xml"));
    }

    #[test]
    fn writes_are_reported_by_relative_path_and_unwatched_folders_stay_silent() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        mkdirs(root, &["workspaces/w/s/l", "data/raster"]);
        let mut w = Watch::new(root, &Filter::defaults(), &[]).unwrap();
        fs::write(root.join("data/raster/tile.tif"), "raw").unwrap();
        fs::write(root.join("workspaces/w/s/l/layer.xml"), "<layer/>").unwrap();
        fs::write(root.join("global.xml"), "<global/>").unwrap();
        let want = [changed("workspaces/w/s/l/layer.xml"), changed("global.xml")];
        let seen = events_until(&mut w, |s| want.iter().all(|e| s.contains(e)));
        assert!(want.iter().all(|e| seen.contains(e)), "{seen:?}");
        let all: Vec<_> = seen.into_iter().chain(settle(&mut w)).collect();
        assert!(
            !all.iter()
                .any(|e| matches!(e, Event::Changed(r) if r.starts_with("data"))),
            "{all:?}"
        );
    }

    #[test]
    fn a_new_folder_is_reported_whole_and_watched_from_then_on() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        mkdirs(root, &["workspaces"]);
        let mut w = Watch::new(root, &Filter::defaults(), &[]).unwrap();
        // Created with content before the watch can see inside: the folder itself is reported.
        mkdirs(root, &["workspaces/new/store"]);
        fs::write(root.join("workspaces/new/store/datastore.xml"), "<x/>").unwrap();
        wait_for(&mut w, &changed("workspaces/new"));
        settle(&mut w);
        assert_eq!(w.folders(), 4, "root, workspaces, new, store");
        fs::write(root.join("workspaces/new/store/again.xml"), "<y/>").unwrap();
        wait_for(&mut w, &changed("workspaces/new/store/again.xml"));
    }

    #[test]
    fn a_folder_moved_within_reports_under_its_new_path_and_one_moved_out_goes_silent() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = t.path();
        mkdirs(root, &["workspaces/a/s", "workspaces/b/s"]);
        let mut w = Watch::new(root, &Filter::defaults(), &[]).unwrap();
        assert_eq!(w.folders(), 6);

        fs::rename(root.join("workspaces/a"), root.join("workspaces/z")).unwrap();
        let seen = wait_for(&mut w, &changed("workspaces/z"));
        assert!(seen.contains(&changed("workspaces/a")), "{seen:?}");
        settle(&mut w);
        fs::write(root.join("workspaces/z/s/f.xml"), "<f/>").unwrap();
        wait_for(&mut w, &changed("workspaces/z/s/f.xml"));

        fs::rename(root.join("workspaces/b"), outside.path().join("b")).unwrap();
        wait_for(&mut w, &changed("workspaces/b"));
        settle(&mut w);
        assert_eq!(w.folders(), 4, "b and b/s are no longer watched");
        fs::write(outside.path().join("b/s/f.xml"), "<f/>").unwrap();
        let after = settle(&mut w);
        assert!(after.is_empty(), "{after:?}");
    }

    #[test]
    fn deleted_folders_are_forgotten() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        mkdirs(root, &["workspaces/a/s/l"]);
        let mut w = Watch::new(root, &Filter::defaults(), &[]).unwrap();
        assert_eq!(w.folders(), 5);
        fs::remove_dir_all(root.join("workspaces/a")).unwrap();
        wait_for(&mut w, &changed("workspaces/a"));
        settle(&mut w);
        assert_eq!(w.folders(), 2);
    }

    #[test]
    fn lost_notifications_ask_for_a_rescan() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let mut w = Watch::new(root, &Filter::defaults(), &[]).unwrap();
        let queue: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .map_or(16384, |s| s.trim().parse().unwrap());
        // Each new file is at least a creation and a close: twice the queue overflows it.
        for i in 0..queue {
            fs::File::create(root.join(format!("{i}.xml"))).unwrap();
        }
        let seen = events_until(&mut w, |s| s.iter().any(|e| matches!(e, Event::Rescan(_))));
        assert!(seen.iter().any(|e| matches!(e, Event::Rescan(_))));
    }

    #[test]
    fn names_are_compacted_when_most_are_garbage() {
        let mut f = Folders::default();
        f.insert(1, ROOT, "");
        for wd in 2..2000 {
            f.insert(wd, 1, "a-rather-long-folder-name");
        }
        for wd in 2..1990 {
            f.remove(wd);
        }
        f.insert(5000, 1999, "child");
        assert!(f.names.len() < 1000, "{}", f.names.len());
        assert_eq!(f.rel(5000).unwrap(), "a-rather-long-folder-name/child");
        assert_eq!(f.rel(1).unwrap(), "");
    }
}
