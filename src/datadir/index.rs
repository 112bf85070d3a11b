//! [`CatalogIndex`]: which catalog object lives in which file and what it refers to, so a slave
//! can tell, before asking GeoServer to reload, whether the objects a Delta touched are complete.
//!
//! The index is a redb database of its own: on disk beside the state (`state_dir/catalog.redb`)
//! for a daemon, so that memory does not grow with the catalog and a restart does not read
//! every XML file again; in memory for `gscluster check` and for tests. It is derived data:
//! every indexed XML file is recorded with the stat it had when read, and opening the index
//! walks the data directory and reads again only the files whose stat differs (or that it
//! lacks), and forgets the ones gone. A crash, a failed write or a lost file costs a re-read,
//! never a wrong answer for long.
//!
//! Except after a clean stop: the daemon then closes the index with a durable commit that marks
//! it complete for its data directory and filter ([`CatalogIndex::close`]), and the next open
//! trusts it without a walk (on 100,000 layers the walk is 3–4 s of a start-up). What changed
//! on disk while the daemon was stopped is what the start-up scan finds against the manifest,
//! and the detector indexes every change it finds. The mark is removed, durably, at open,
//! before anything else is written: a crash later means a walk at the next open. A write that
//! failed, or a bootstrap that wrote files unindexed and did not finish, leaves no mark.
//!
//! Tables (keys joined by `\0`, which neither paths nor XML text can hold):
//! - `nodes`: path → the file's stat, its object's id, its references (element, id) and the
//!   files it needs beside it (a style's body), CBOR;
//! - `ids`: id `\0` path — which file holds an id;
//! - `refs`: referenced id `\0` path — who refers to an id;
//! - `files`: needed file `\0` path — who needs a file.
//!
//! XML is not kept; non-XML files (bodies, icons) are not indexed; callers answer "does this
//! file exist" themselves.

use super::catalog::parse_object_checked;
use super::filter::Filter;
use super::listing::FileStat;
use crate::file_error::Context;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

/// A reference of a touched object (or of an object that referred to a deleted one) that does not
/// resolve.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unresolved {
    /// The file holding the dangling reference.
    pub path: String,
    /// The id (or, for a style body, the relative file path) that could not be found.
    pub missing: String,
    /// The element that holds the reference ("resource", "defaultStyle", "filename"…).
    pub via: String,
}

type Tbl = TableDefinition<'static, &'static str, &'static [u8]>;
const NODES: Tbl = TableDefinition::new("nodes");
const IDS: Tbl = TableDefinition::new("ids");
const REFS: Tbl = TableDefinition::new("refs");
const FILES: Tbl = TableDefinition::new("files");
/// `closed` → what [`CatalogIndex::close`] marked the index complete for.
const META: Tbl = TableDefinition::new("meta");
const CLOSED: &str = "closed";

/// The index's page cache, on disk: lookups touch a few pages each (see the state's
/// `CACHE_BYTES` for the measurement).
const CACHE_BYTES: usize = 2 * 1024 * 1024;
/// One commit in this many is made durable (see `CatalogIndex::write`).
const DURABLE_EVERY: u64 = 32;

/// One indexed file.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
struct Node {
    /// The stat of the file when it was read (all zero: unknown, read again at the next open).
    stat: FileStat,
    id: Option<String>,
    /// (element, id) of each reference.
    refs: Vec<(String, String)>,
    /// Resolved relative paths of files this object needs (style bodies).
    file_refs: Vec<String>,
}

/// The one file whose root `<id>` is a copy of another object's id: it names the default
/// workspace, so it is indexed as a reference to that workspace.
const DEFAULT_WORKSPACE: &str = "workspaces/default.xml";

fn join(a: &str, b: &str) -> String {
    format!("{a}\0{b}")
}

/// The keys of `table` that start with `a\0`, as what follows it.
fn under<T: ReadableTable<&'static str, &'static [u8]>>(table: &T, a: &str) -> Vec<String> {
    let (from, to) = (format!("{a}\0"), format!("{a}\u{1}"));
    let Ok(range) = table.range(from.as_str()..to.as_str()) else {
        return Vec::new();
    };
    (range.flatten())
        .map(|(k, _)| k.value()[from.len()..].to_string())
        .collect()
}

/// A new file's content as a node (None: not well-formed; logged).
fn parse(rel_path: &str, bytes: &[u8], stat: FileStat) -> Node {
    let obj = match parse_object_checked(bytes) {
        Ok(o) => o,
        Err(e) => {
            log::warn!("catalog index: {rel_path} is not well-formed XML ({e}); ignoring it");
            None
        }
    };
    let Some(mut obj) = obj else {
        return Node {
            stat,
            ..Node::default()
        };
    };
    if rel_path == DEFAULT_WORKSPACE {
        if let Some(id) = obj.id.take() {
            obj.refs.push(super::catalog::Reference {
                id,
                element: "workspace".into(),
            });
        }
    }
    let dir = rel_path.rsplit_once('/').map_or("", |(d, _)| d);
    Node {
        stat,
        id: obj.id,
        refs: obj.refs.into_iter().map(|r| (r.element, r.id)).collect(),
        file_refs: (obj.file_refs.into_iter())
            .map(|f| {
                if dir.is_empty() {
                    f
                } else {
                    format!("{dir}/{f}")
                }
            })
            .collect(),
    }
}

/// The four tables, read through one transaction (read-only, or a write transaction's).
struct Tables<T> {
    nodes: T,
    ids: T,
    refs: T,
    files: T,
}

impl<T: ReadableTable<&'static str, &'static [u8]>> Tables<T> {
    fn node(&self, path: &str) -> Option<Node> {
        let v = self.nodes.get(path).ok()??;
        crate::cbor::decode(v.value()).ok()
    }

    fn has_id(&self, id: &str) -> bool {
        let (from, to) = (format!("{id}\0"), format!("{id}\u{1}"));
        (self.ids.range(from.as_str()..to.as_str())).is_ok_and(|mut r| r.next().is_some())
    }
}

type Writing<'t> = Tables<redb::Table<'t, &'static str, &'static [u8]>>;

impl Writing<'_> {
    fn open(txn: &redb::WriteTransaction) -> Result<Writing<'_>, redb::Error> {
        Ok(Tables {
            nodes: txn.open_table(NODES)?,
            ids: txn.open_table(IDS)?,
            refs: txn.open_table(REFS)?,
            files: txn.open_table(FILES)?,
        })
    }

    /// Drop the node at `path` and its keys; returns it.
    fn remove(&mut self, path: &str) -> Result<Option<Node>, redb::Error> {
        let Some(node) = self.node(path) else {
            return Ok(None);
        };
        self.nodes.remove(path)?;
        if let Some(id) = &node.id {
            self.ids.remove(join(id, path).as_str())?;
        }
        for (_, id) in &node.refs {
            self.refs.remove(join(id, path).as_str())?;
        }
        for f in &node.file_refs {
            self.files.remove(join(f, path).as_str())?;
        }
        Ok(Some(node))
    }

    fn insert(&mut self, path: &str, node: &Node) -> Result<(), redb::Error> {
        self.nodes
            .insert(path, crate::cbor::encode(node).as_slice())?;
        if let Some(id) = &node.id {
            self.ids.insert(join(id, path).as_str(), [].as_slice())?;
        }
        for (_, id) in &node.refs {
            self.refs.insert(join(id, path).as_str(), [].as_slice())?;
        }
        for f in &node.file_refs {
            self.files.insert(join(f, path).as_str(), [].as_slice())?;
        }
        Ok(())
    }

    /// Record new content (with the stat it was read at) or the deletion of `path`; returns
    /// the id the path held before, if it held one.
    fn update(
        &mut self,
        path: &str,
        content: Option<(&[u8], FileStat)>,
    ) -> Result<Option<String>, redb::Error> {
        let before = self.remove(path)?.and_then(|n| n.id);
        if let Some((bytes, stat)) = content.filter(|_| path.ends_with(".xml")) {
            self.insert(path, &parse(path, bytes, stat))?;
        }
        Ok(before)
    }
}

/// New content of a path, with the stat it was read at (None: a deletion).
pub type Content<'a> = Option<(Cow<'a, [u8]>, FileStat)>;

/// The catalog index; see the module documentation.
pub struct CatalogIndex {
    db: redb::Database,
    /// The database file, when on disk (reopened after a failed write).
    file: Option<PathBuf>,
    /// What the last open read again and forgot (see [`Self::open`]).
    opened: (usize, usize),
    /// The last open found the mark of a clean stop (see [`Self::after_clean_stop`]).
    after_clean_stop: bool,
    /// Commits made (see `DURABLE_EVERY`).
    commits: u64,
    /// A write failed, or files were written without being indexed, since the last walk: the
    /// index must not be closed as complete.
    incomplete: bool,
    /// Path → id of indexed files since removed, so [`Self::unresolved`] can find objects that
    /// still refer to them. Dropped by [`Self::forget_removed`] once the check is done.
    removed: HashMap<String, String>,
}

impl Default for CatalogIndex {
    /// An empty index in memory.
    fn default() -> Self {
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("an in-memory database");
        CatalogIndex {
            db,
            file: None,
            opened: (0, 0),
            after_clean_stop: false,
            commits: 0,
            incomplete: false,
            removed: HashMap::new(),
        }
    }
}

impl CatalogIndex {
    /// Indexes every `.xml` file of `data_dir` that `filter` replicates, in memory (a one-off
    /// check). Unreadable or malformed files are logged and left out; GeoServer would skip
    /// them too.
    pub fn build(data_dir: &Path, filter: &Filter) -> CatalogIndex {
        let mut index = CatalogIndex::default();
        if let Err(e) = index.refresh(data_dir, filter, &[]) {
            log::warn!("catalog index: {e}");
        }
        index
    }

    /// The index kept in `file`, brought up to date with `data_dir` (see the module
    /// documentation). An unreadable index file is removed and built again.
    pub fn open(
        file: &Path,
        data_dir: &Path,
        filter: &Filter,
        skip_dirs: &[PathBuf],
    ) -> io::Result<CatalogIndex> {
        let db = match open_file(file) {
            Ok(db) => db,
            Err(e) => {
                log::warn!("{}: {e}; building the catalog index again", file.display());
                crate::durable::remove_file(file)?;
                open_file(file)?
            }
        };
        let mut index = CatalogIndex {
            db,
            file: Some(file.to_path_buf()),
            opened: (0, 0),
            after_clean_stop: false,
            commits: 0,
            incomplete: false,
            removed: HashMap::new(),
        };
        let started = std::time::Instant::now();
        let closed = index
            .take_closed_mark()
            .map_err(|e| index.error("open", e))?;
        if closed.as_deref() == Some(closed_for(data_dir, filter).as_bytes()) {
            index.after_clean_stop = true;
            log::info!(
                "catalog index: {} file(s), closed cleanly: trusted without a walk ({} ms)",
                index.len(),
                started.elapsed().as_millis()
            );
            return Ok(index);
        }
        let (read, forgotten) = index.refresh(data_dir, filter, skip_dirs)?;
        index.opened = (read, forgotten);
        log::info!(
            "catalog index: {} file(s), {read} read again and {forgotten} forgotten in {} ms",
            index.len(),
            started.elapsed().as_millis()
        );
        Ok(index)
    }

    /// Walk the data directory and the index side by side (both in path order): read the XML
    /// files the index lacks or holds with another stat, drop the ones gone. Returns how many
    /// were read and dropped.
    ///
    /// One transaction for the whole walk: a catalog's reverse keys (ids, references) are in no
    /// order a walk follows, so every commit rewrites most of their pages; committing once
    /// writes each of them about once, whatever the number of files read. Memory stays
    /// bounded: the index is read through a snapshot, the tree walked, one file at a time.
    /// [`Self::open`] does this; so does a bootstrap, after writing the tree unindexed.
    pub fn refresh(
        &mut self,
        data_dir: &Path,
        filter: &Filter,
        skip_dirs: &[PathBuf],
    ) -> io::Result<(usize, usize)> {
        let walk = super::scan::walk(data_dir, filter, skip_dirs, None)?;
        let run = || -> Result<(usize, usize), redb::Error> {
            // What the index held when the walk started, streamed from a read snapshot while
            // the write transaction changes it.
            let snapshot = self.db.begin_read()?;
            let held = match snapshot.open_table(NODES) {
                Ok(t) => Some(t.range_owned(..)?),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            };
            let mut indexed = (held.into_iter().flatten())
                .filter_map(Result::ok)
                .map(|(k, v)| {
                    let stat = (crate::cbor::decode::<Node>(v.value()))
                        .map_or_else(|_| FileStat::default(), |n| n.stat);
                    (k.value().to_string(), stat)
                })
                .peekable();
            let txn = self.db.begin_write()?;
            let (mut read, mut forgotten) = (0, 0);
            {
                let mut t = Writing::open(&txn)?;
                for (path, stat) in walk.filter(|(p, _)| p.ends_with(".xml")) {
                    while let Some((gone, _)) = indexed.next_if(|(p, _)| *p < path) {
                        t.update(&gone, None)?;
                        forgotten += 1;
                    }
                    let known = indexed.next_if(|(p, _)| *p == path).map(|(_, s)| s);
                    if known.is_some_and(|s| s == stat && s != FileStat::default()) {
                        continue;
                    }
                    match std::fs::read(data_dir.join(&path)) {
                        Ok(bytes) => {
                            t.update(&path, Some((&bytes, stat)))?;
                        }
                        Err(e) => log::warn!("catalog index: cannot read {path}: {e}"),
                    }
                    read += 1;
                }
                for (gone, _) in indexed {
                    t.update(&gone, None)?;
                    forgotten += 1;
                }
            }
            txn.commit()?;
            Ok((read, forgotten))
        };
        let result = run();
        self.incomplete = result.is_err();
        result.map_err(|e| {
            let e = self.error("bring up to date", e);
            self.reopen();
            e
        })
    }

    /// Whether the last run on this data directory stopped cleanly (the index was trusted
    /// without a walk): nothing it wrote was left half done.
    pub fn after_clean_stop(&self) -> bool {
        self.after_clean_stop
    }

    /// Files are being written without being indexed (a bootstrap indexes at its end): until
    /// the next [`Self::refresh`], the index cannot be closed as complete.
    pub fn skipped(&mut self) {
        self.incomplete = true;
    }

    /// At a clean stop: mark the index complete for `data_dir` and `filter`, durably, so the
    /// next open trusts it without a walk — unless it is not (see [`Self::skipped`]).
    pub fn close(&mut self, data_dir: &Path, filter: &Filter) {
        if self.file.is_none() || self.incomplete {
            return;
        }
        let mark = closed_for(data_dir, filter);
        let result = (|| -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            txn.open_table(META)?.insert(CLOSED, mark.as_bytes())?;
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            log::warn!(
                "{}; the next start walks the data directory",
                self.error("close", e)
            );
        }
    }

    /// The mark [`Self::close`] left, removed durably (a crash from now on means a walk).
    fn take_closed_mark(&mut self) -> Result<Option<Vec<u8>>, redb::Error> {
        let txn = self.db.begin_write()?;
        let mark = {
            let mut t = txn.open_table(META)?;
            let mark = t.remove(CLOSED)?.map(|v| v.value().to_vec());
            mark
        };
        if mark.is_some() {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(mark)
    }

    fn error(&self, what: &str, e: redb::Error) -> io::Error {
        let name = (self.file.as_deref()).map_or("catalog index (in memory)".into(), |f| {
            f.display().to_string()
        });
        io::Error::other(format!("{name}: cannot {what}: {e}"))
    }

    /// Apply `updates` in one transaction. `removed`: remember the ids of removed files for
    /// [`Self::unresolved`].
    fn write(&mut self, updates: Vec<(String, Content)>, removed: bool) -> io::Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        // Derived data: most commits skip the fsync, and every `DURABLE_EVERY`th makes all
        // of them durable. A crash in between loses the latest updates, whose files then
        // differ in stat from what the index holds and are read again at the next open.
        self.commits += 1;
        let durable = self.file.is_none() || self.commits.is_multiple_of(DURABLE_EVERY);
        let result = (|| -> Result<Vec<(String, String)>, redb::Error> {
            let mut txn = self.db.begin_write()?;
            if !durable {
                (txn.set_durability(redb::Durability::None)).map_err(redb::Error::from)?;
            }
            let mut gone = Vec::new();
            {
                let mut t = Writing::open(&txn)?;
                for (path, content) in &updates {
                    let content = content.as_ref().map(|(b, s)| (&**b, *s));
                    let had = t.update(path, content)?;
                    if let (Some(id), None) = (had, content) {
                        gone.push((path.clone(), id));
                    }
                }
            }
            txn.commit()?;
            Ok(gone)
        })();
        match result {
            Ok(gone) => {
                if removed {
                    self.removed.extend(gone);
                    for (path, _) in updates.iter().filter(|(_, c)| c.is_some()) {
                        self.removed.remove(path);
                    }
                }
                Ok(())
            }
            Err(e) => {
                let e = self.error("write", e);
                self.incomplete = true;
                self.reopen();
                Err(e)
            }
        }
    }

    /// After a failed write the database refuses everything until reopened; what it missed
    /// is read again at the next open (the stats differ).
    fn reopen(&mut self) {
        let Some(file) = self.file.clone() else {
            return;
        };
        let placeholder = CatalogIndex::default().db;
        drop(std::mem::replace(&mut self.db, placeholder));
        match open_file(&file) {
            Ok(db) => self.db = db,
            Err(e) => log::error!(
                "{}: cannot reopen the catalog index ({e}); reference checks see an empty catalog until the next start",
                file.display()
            ),
        }
    }

    /// Records new content (`Some`, with the stat it was read at) or the deletion (`None`) of
    /// each path, in one transaction. A failure is logged: the index is derived data, and the
    /// next open reads those files again.
    pub fn update_many(&mut self, updates: Vec<(String, Content)>) {
        if let Err(e) = self.write(updates, true) {
            log::error!("catalog index: {e}; those files are read again at the next start");
        }
    }

    /// Records new content (`Some`) or the deletion (`None`) of one relative path, its stat
    /// unknown (read again at the next open).
    pub fn update(&mut self, rel_path: &str, bytes: Option<&[u8]>) {
        let content = bytes.map(|b| (Cow::Borrowed(b), FileStat::default()));
        self.update_many(vec![(rel_path.to_string(), content)]);
    }

    /// Number of indexed XML files.
    pub fn len(&self) -> usize {
        (self.db.begin_read().ok())
            .and_then(|t| t.open_table(NODES).ok())
            .and_then(|t| t.len().ok())
            .unwrap_or(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The paths holding the object with this id (normally one).
    pub fn paths_of(&self, id: &str) -> Vec<String> {
        (self.db.begin_read().ok())
            .and_then(|t| t.open_table(IDS).ok())
            .map_or_else(Vec::new, |t| under(&t, id))
    }

    /// Whether some indexed object needs the file `rel_path` beside it (a style's body, which
    /// its `<filename>` names).
    pub fn is_needed_file(&self, rel_path: &str) -> bool {
        (self.db.begin_read().ok())
            .and_then(|t| t.open_table(FILES).ok())
            .is_some_and(|t| !under(&t, rel_path).is_empty())
    }

    /// Forgets which ids the deleted `paths` held (see [`Self::unresolved`]), once the check
    /// that touched them is done.
    pub fn forget_removed<'a>(&mut self, paths: impl IntoIterator<Item = &'a String>) {
        for p in paths {
            self.removed.remove(p);
        }
    }

    /// References that do not resolve, among the objects in `touched` (the paths a Delta wrote or
    /// deleted) and among objects that refer to a touched object that was deleted.
    ///
    /// Only these are checked, not the whole catalog: real data directories carry old
    /// inconsistencies that must not block every reload (geoserver-datadir.md). `file_exists`
    /// answers for non-XML files (style bodies), which the index does not track.
    pub fn unresolved(
        &self,
        touched: &[String],
        file_exists: impl Fn(&str) -> bool,
    ) -> Vec<Unresolved> {
        let read = || -> Result<Vec<Unresolved>, redb::Error> {
            let txn = self.db.begin_read()?;
            let open = |t: Tbl| match txn.open_table(t) {
                Ok(t) => Ok(Some(t)),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(e),
            };
            match (open(NODES)?, open(IDS)?, open(REFS)?, open(FILES)?) {
                (Some(nodes), Some(ids), Some(refs), Some(files)) => {
                    let t = Tables {
                        nodes,
                        ids,
                        refs,
                        files,
                    };
                    Ok(check(&t, &self.removed, touched, &file_exists))
                }
                // Never written to: no object to check, nothing to refer to.
                _ => Ok(Vec::new()),
            }
        };
        read().unwrap_or_else(|e| {
            log::error!("{}", self.error("read", e));
            Vec::new()
        })
    }

    /// What [`Self::unresolved`] would say of `touched` once `updates` are applied, without
    /// applying them (an import's check before it writes anything): the updates go into a
    /// transaction that is never committed.
    pub fn unresolved_if(
        &self,
        updates: &[(&str, Option<&[u8]>)],
        touched: &[String],
        file_exists: impl Fn(&str) -> bool,
    ) -> Vec<Unresolved> {
        let run = || -> Result<Vec<Unresolved>, redb::Error> {
            let txn = self.db.begin_write()?;
            let out = {
                let mut t = Writing::open(&txn)?;
                let mut removed = self.removed.clone();
                for (path, bytes) in updates {
                    let content = bytes.map(|b| (b, FileStat::default()));
                    match t.update(path, content)? {
                        Some(id) if bytes.is_none() => {
                            removed.insert(path.to_string(), id);
                        }
                        _ => {}
                    }
                }
                check(&t, &removed, touched, &file_exists)
            };
            txn.abort()?;
            Ok(out)
        };
        run().unwrap_or_else(|e| {
            log::error!("{}", self.error("check", e));
            Vec::new()
        })
    }
}

/// What a closed index is complete for: the data directory, and the files the filter replicates.
fn closed_for(data_dir: &Path, filter: &Filter) -> String {
    format!("{}\n{filter:?}", data_dir.display())
}

fn open_file(file: &Path) -> io::Result<redb::Database> {
    if let Some(dir) = file.parent() {
        crate::durable::create_dirs(dir)?;
    }
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(file)
        .map_err(|e| io::Error::other(e.to_string()))
        .at("open the catalog index", file)
}

fn check<T: ReadableTable<&'static str, &'static [u8]>>(
    t: &Tables<T>,
    removed: &HashMap<String, String>,
    touched: &[String],
    file_exists: &dyn Fn(&str) -> bool,
) -> Vec<Unresolved> {
    let mut out = BTreeSet::new();
    let mut gone_ids: HashSet<&str> = HashSet::new();
    let mut gone_files: HashSet<&str> = HashSet::new();
    let touched_set: HashSet<&str> = touched.iter().map(String::as_str).collect();
    for path in touched {
        if let Some(node) = t.node(path) {
            check_node(
                path,
                &node,
                &|id| !t.has_id(id),
                &|f| !file_exists(f),
                &mut out,
            );
            continue;
        }
        if let Some(id) = removed.get(path.as_str()) {
            if !t.has_id(id) {
                gone_ids.insert(id);
            }
        }
        if !file_exists(path) {
            gone_files.insert(path);
        }
    }
    // The objects that refer to what is gone, found through the reverse keys.
    let mut referrers: BTreeSet<String> = BTreeSet::new();
    for id in &gone_ids {
        referrers.extend(under(&t.refs, id));
    }
    for f in &gone_files {
        referrers.extend(under(&t.files, f));
    }
    for path in referrers
        .iter()
        .filter(|p| !touched_set.contains(p.as_str()))
    {
        if let Some(node) = t.node(path) {
            check_node(
                path,
                &node,
                &|id| gone_ids.contains(id),
                &|f| gone_files.contains(f),
                &mut out,
            );
        }
    }
    out.into_iter().collect()
}

fn check_node(
    path: &str,
    node: &Node,
    id_missing: &dyn Fn(&str) -> bool,
    file_missing: &dyn Fn(&str) -> bool,
    out: &mut BTreeSet<Unresolved>,
) {
    for (element, id) in &node.refs {
        if id_missing(id) {
            out.insert(Unresolved {
                path: path.to_string(),
                missing: id.to_string(),
                via: element.clone(),
            });
        }
    }
    for f in &node.file_refs {
        // A `<filename>` that is not a clean relative path (`../x.sld`) never resolves, and
        // must not reach a caller's file_exists as a path outside data_dir.
        if super::path::normalize(f).is_err() || file_missing(f) {
            out.insert(Unresolved {
                path: path.to_string(),
                missing: f.to_string(),
                via: "filename".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: &str = "<workspace><id>WS-1</id><name>ws</name></workspace>";
    const STORE: &str = "<dataStore><id>DS-1</id><workspace><id>WS-1</id></workspace></dataStore>";
    const FT: &str = "<featureType><id>FT-1</id><namespace><id>NS-1</id></namespace>\
        <store class=\"dataStore\"><id>DS-1</id></store></featureType>";
    const LAYER: &str = "<layer><id>L-1</id><defaultStyle><id>S-1</id></defaultStyle>\
        <resource class=\"featureType\"><id>FT-1</id></resource></layer>";
    const STYLE: &str =
        "<style><id>S-1</id><name>roads</name><filename>roads.sld</filename></style>";

    fn index(files: &[(&str, &str)]) -> CatalogIndex {
        let mut ix = CatalogIndex::default();
        for (p, x) in files {
            ix.update(p, Some(x.as_bytes()));
        }
        ix
    }

    fn full() -> CatalogIndex {
        index(&[
            ("workspaces/ws/workspace.xml", WS),
            (
                "workspaces/ws/namespace.xml",
                "<namespace><id>NS-1</id></namespace>",
            ),
            ("workspaces/ws/st/datastore.xml", STORE),
            ("workspaces/ws/st/roads/featuretype.xml", FT),
            ("workspaces/ws/st/roads/layer.xml", LAYER),
            ("styles/roads.xml", STYLE),
        ])
    }

    fn touched(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn complete_change_has_nothing_unresolved() {
        let ix = full();
        let t = touched(&[
            "workspaces/ws/st/roads/featuretype.xml",
            "workspaces/ws/st/roads/layer.xml",
        ]);
        assert_eq!(ix.unresolved(&t, |_| true), []);
        assert_eq!(ix.paths_of("L-1"), ["workspaces/ws/st/roads/layer.xml"]);
    }

    #[test]
    fn layer_arriving_before_its_resource_is_reported() {
        let ix = index(&[
            ("workspaces/ws/st/roads/layer.xml", LAYER),
            ("styles/roads.xml", STYLE),
        ]);
        let got = ix.unresolved(&touched(&["workspaces/ws/st/roads/layer.xml"]), |_| true);
        assert_eq!(
            got,
            [Unresolved {
                path: "workspaces/ws/st/roads/layer.xml".into(),
                missing: "FT-1".into(),
                via: "resource".into()
            }]
        );
    }

    #[test]
    fn style_without_body_file_is_reported() {
        let ix = full();
        let got = ix.unresolved(&touched(&["styles/roads.xml"]), |f| f != "styles/roads.sld");
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].missing.as_str(), got[0].via.as_str()),
            ("styles/roads.sld", "filename")
        );
    }

    #[test]
    fn deleting_a_referenced_object_reports_its_referrers() {
        let mut ix = full();
        ix.update("workspaces/ws/st/roads/featuretype.xml", None);
        let got = ix.unresolved(
            &touched(&["workspaces/ws/st/roads/featuretype.xml"]),
            |_| true,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "workspaces/ws/st/roads/layer.xml");
        // Deleting the style body reports the style that names it.
        let got = ix.unresolved(&touched(&["styles/roads.sld"]), |f| f != "styles/roads.sld");
        assert_eq!(got[0].path, "styles/roads.xml");
    }

    #[test]
    fn rename_keeps_ids_resolvable() {
        let mut ix = full();
        ix.update("workspaces/ws/st/roads/featuretype.xml", None);
        ix.update("workspaces/ws/st/roads/layer.xml", None);
        ix.update(
            "workspaces/ws/st/streets/featuretype.xml",
            Some(FT.as_bytes()),
        );
        ix.update("workspaces/ws/st/streets/layer.xml", Some(LAYER.as_bytes()));
        let t = touched(&[
            "workspaces/ws/st/roads/featuretype.xml",
            "workspaces/ws/st/roads/layer.xml",
            "workspaces/ws/st/streets/featuretype.xml",
            "workspaces/ws/st/streets/layer.xml",
        ]);
        assert_eq!(ix.unresolved(&t, |_| true), []);
        ix.forget_removed(&t);
        assert!(ix.removed.is_empty());
        assert_eq!(ix.len(), 6);
    }

    #[test]
    fn default_workspace_file_refers_to_the_workspace() {
        let mut ix = full();
        ix.update("workspaces/default.xml", Some(WS.as_bytes()));
        assert_eq!(ix.paths_of("WS-1").len(), 1);
        ix.update("workspaces/ws/workspace.xml", None);
        let got = ix.unresolved(&touched(&["workspaces/ws/workspace.xml"]), |_| true);
        let paths: Vec<_> = got.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(
            paths,
            ["workspaces/default.xml", "workspaces/ws/st/datastore.xml"]
        );
    }

    #[test]
    fn style_body_outside_its_folder_never_resolves() {
        let style = "<style><id>S-9</id><filename>../../etc/passwd</filename></style>";
        let ix = index(&[("styles/evil.xml", style)]);
        let got = ix.unresolved(&touched(&["styles/evil.xml"]), |f| {
            panic!("asked about {f}")
        });
        assert_eq!(got[0].missing, "styles/../../etc/passwd");
    }

    fn write(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    /// On disk, the index is read again only where the data directory changed while it was
    /// closed; an unreadable index file is built again from the tree.
    #[test]
    fn an_index_on_disk_reads_again_only_what_changed_while_closed() {
        let (data, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let root = data.path();
        write(root, "workspaces/ws/workspace.xml", WS);
        write(root, "workspaces/ws/st/datastore.xml", STORE);
        write(root, "workspaces/ws/st/roads/featuretype.xml", FT);
        write(root, "workspaces/ws/st/roads/layer.xml", LAYER);
        write(root, "styles/roads.xml", STYLE);
        write(root, "styles/roads.sld", "<sld/>");
        let file = state.path().join("catalog.redb");
        let filter = Filter::defaults();
        let open = || CatalogIndex::open(&file, root, &filter, &[]).unwrap();
        let ix = open();
        assert_eq!((ix.len(), ix.opened), (5, (5, 0)), "XML only");
        assert!(ix.is_needed_file("styles/roads.sld"));
        drop(ix);
        assert_eq!(open().opened, (0, 0), "nothing changed");
        // Closed: a layer loses its resource, the store is rewritten.
        std::fs::remove_file(root.join("workspaces/ws/st/roads/featuretype.xml")).unwrap();
        write(root, "workspaces/ws/st/datastore.xml", STORE);
        let ix = open();
        assert_eq!(ix.opened, (1, 1));
        let t = touched(&["workspaces/ws/st/roads/layer.xml"]);
        assert_eq!(ix.unresolved(&t, |_| true)[0].missing, "FT-1");
        drop(ix);
        std::fs::write(&file, b"not a database").unwrap();
        let ix = open();
        assert_eq!((ix.len(), ix.opened), (4, (4, 0)), "built again");
    }

    /// Closed cleanly, the index is trusted without a walk, once: the mark is gone at open. Not
    /// for another data directory or filter, nor after files were written unindexed.
    #[test]
    fn a_cleanly_closed_index_opens_without_a_walk_once() {
        let (data, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let root = data.path();
        write(root, "workspaces/ws/workspace.xml", WS);
        write(root, "workspaces/ws/st/datastore.xml", STORE);
        let file = state.path().join("catalog.redb");
        let filter = Filter::defaults();
        let open = |f: &Filter| CatalogIndex::open(&file, root, f, &[]).unwrap();
        // The store rewritten with another id.
        let store = |id: &str| {
            write(
                root,
                "workspaces/ws/st/datastore.xml",
                &STORE.replace("DS-1", id),
            )
        };
        let mut ix = open(&filter);
        assert_eq!(ix.opened, (2, 0));
        ix.close(root, &filter);
        drop(ix);
        // Changed while stopped: a trusted index does not see it (the start-up scan does, and
        // indexes what it finds); the next open without a close walks and does.
        store("DS-2");
        let ix = open(&filter);
        assert_eq!((ix.len(), ix.opened), (2, (0, 0)), "trusted");
        assert!(ix.after_clean_stop());
        assert_eq!(ix.paths_of("DS-1"), ["workspaces/ws/st/datastore.xml"]);
        drop(ix);
        let mut ix = open(&filter);
        assert_eq!(ix.opened, (1, 0), "the mark was taken: walked");
        assert!(!ix.after_clean_stop());
        assert_eq!(ix.paths_of("DS-2"), ["workspaces/ws/st/datastore.xml"]);

        // Another filter: walked.
        ix.close(root, &filter);
        drop(ix);
        let other = Filter::new(&["workspaces/**".into()], &[]).unwrap();
        store("DS-1");
        assert_eq!(open(&other).opened, (1, 0));

        // Files written unindexed (a bootstrap): no mark until a walk.
        let mut ix = open(&filter);
        ix.skipped();
        ix.close(root, &filter);
        drop(ix);
        store("DS-3");
        let mut ix = open(&filter);
        assert_eq!(ix.opened, (1, 0), "not trusted");
        assert!(!ix.after_clean_stop(), "a bootstrap was under way");
        ix.close(root, &filter);
        drop(ix);
        store("DS-4");
        assert_eq!(
            open(&filter).opened,
            (0, 0),
            "after a walk it is trusted again"
        );
    }

    /// An import's what-if check sees its updates, and leaves the index as it was.
    #[test]
    fn a_what_if_check_changes_nothing() {
        let ix = full();
        let t = touched(&["workspaces/ws/st/roads/featuretype.xml"]);
        let got = ix.unresolved_if(
            &[("workspaces/ws/st/roads/featuretype.xml", None)],
            &t,
            |_| true,
        );
        assert_eq!(got[0].path, "workspaces/ws/st/roads/layer.xml");
        assert_eq!(ix.paths_of("FT-1").len(), 1, "still indexed");
        assert!(ix.unresolved(&t, |_| true).is_empty());
    }

    #[test]
    fn malformed_update_drops_the_old_node() {
        let mut ix = full();
        ix.update("workspaces/ws/st/roads/layer.xml", Some(b"<layer><id>L-1"));
        assert_eq!(ix.paths_of("L-1").len(), 0);
    }
}
