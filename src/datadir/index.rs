//! [`CatalogIndex`]: which catalog object lives in which file and what it refers to, so a slave
//! can tell, before asking GeoServer to reload, whether the objects a Delta touched are complete.
//!
//! Memory: a 10,000-layer catalog is ~40,000 files, most of them XML. Per indexed file we keep the
//! path once (shared with the id map through an `Arc<str>`), the id, and each reference as an
//! interned id plus a one-byte element tag. Ids are interned, so an id referenced by many layers
//! (a popular style) is stored once. That is roughly 150–250 bytes per file, a few MB in all. XML is
//! not kept; non-XML files (bodies, icons) are not indexed; callers answer "does this file exist"
//! with the manifest they already have.

use super::catalog::{parse_object_checked, CatalogObject};
use super::filter::Filter;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

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

#[derive(Clone)]
struct Node {
    id: Option<Arc<str>>,
    refs: Box<[(u8, Arc<str>)]>,
    /// Resolved relative paths of files this object needs (style bodies).
    file_refs: Box<[Box<str>]>,
}

/// In-memory index of the catalog: path → (id, refs, file refs) and id → path(s).
#[derive(Default, Clone)]
pub struct CatalogIndex {
    nodes: HashMap<Arc<str>, Node>,
    by_id: HashMap<Arc<str>, Vec<Arc<str>>>,
    /// Ids and element names, stored once.
    ids: HashSet<Arc<str>>,
    elements: Vec<Box<str>>,
    /// Path → id of indexed files since removed, so [`Self::unresolved`] can find objects that
    /// still refer to them. Cleared by [`Self::clear_removed`] once a check cycle is done.
    removed: HashMap<Arc<str>, Arc<str>>,
}

/// The one file whose root `<id>` is a copy of another object's id: it names the default
/// workspace, so it is indexed as a reference to that workspace.
const DEFAULT_WORKSPACE: &str = "workspaces/default.xml";

impl CatalogIndex {
    /// Indexes every `.xml` file of `data_dir` that `filter` replicates. Unreadable or malformed
    /// files are logged and left out; GeoServer would skip them too.
    pub fn build(data_dir: &Path, filter: &Filter) -> CatalogIndex {
        let mut index = CatalogIndex::default();
        let files = match super::scan::scan(data_dir, filter, &[]) {
            Ok(f) => f,
            Err(e) => {
                log::warn!("catalog index: cannot scan {}: {e}", data_dir.display());
                return index;
            }
        };
        for rel in files.keys().filter(|p| p.ends_with(".xml")) {
            match std::fs::read(data_dir.join(rel)) {
                Ok(bytes) => index.update(rel, Some(&bytes)),
                Err(e) => log::warn!("catalog index: cannot read {rel}: {e}"),
            }
        }
        index
    }

    /// Number of indexed catalog files.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The paths holding the object with this id (normally one).
    pub fn paths_of(&self, id: &str) -> impl Iterator<Item = &str> {
        self.by_id.get(id).into_iter().flatten().map(|p| &**p)
    }

    /// Records new content (`Some`) or the deletion (`None`) of one relative path.
    pub fn update(&mut self, rel_path: &str, bytes: Option<&[u8]>) {
        let obj = match bytes {
            Some(b) if rel_path.ends_with(".xml") => match parse_object_checked(b) {
                Ok(o) => o,
                Err(e) => {
                    log::warn!(
                        "catalog index: {rel_path} is not well-formed XML ({e}); ignoring it"
                    );
                    None
                }
            },
            _ => None,
        };
        if let Some(Some(id)) = self.remove_node(rel_path) {
            self.removed.insert(rel_path.into(), id);
        }
        let Some(mut obj) = obj else { return };
        if rel_path == DEFAULT_WORKSPACE {
            if let Some(id) = obj.id.take() {
                obj.refs.push(super::catalog::Reference {
                    id,
                    element: "workspace".into(),
                });
            }
        }
        self.insert_node(rel_path, obj);
    }

    /// Whether some indexed object needs the file `rel_path` beside it (a style's body, which
    /// its `<filename>` names).
    pub fn is_needed_file(&self, rel_path: &str) -> bool {
        (self.nodes.values()).any(|n| n.file_refs.iter().any(|f| &**f == rel_path))
    }

    /// Forgets which deleted files held which ids (see [`Self::unresolved`]).
    pub fn clear_removed(&mut self) {
        self.removed.clear();
        self.ids.retain(|id| Arc::strong_count(id) > 1);
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.ids.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        self.ids.insert(a.clone());
        a
    }

    fn element_tag(&mut self, name: &str) -> u8 {
        if let Some(i) = self.elements.iter().position(|e| &**e == name) {
            return i as u8;
        }
        if self.elements.len() < u8::MAX as usize {
            self.elements.push(name.into());
            (self.elements.len() - 1) as u8
        } else {
            u8::MAX // only reachable with hundreds of distinct reference element names
        }
    }

    fn insert_node(&mut self, rel_path: &str, obj: CatalogObject) {
        let path: Arc<str> = rel_path.into();
        let dir = rel_path.rsplit_once('/').map_or("", |(d, _)| d);
        let file_refs = obj
            .file_refs
            .iter()
            .map(|f| {
                if dir.is_empty() {
                    f.clone()
                } else {
                    format!("{dir}/{f}")
                }
                .into_boxed_str()
            })
            .collect();
        let refs = obj
            .refs
            .iter()
            .map(|r| (self.element_tag(&r.element), self.intern(&r.id)))
            .collect();
        let id = obj.id.as_deref().map(|id| self.intern(id));
        if let Some(id) = &id {
            self.by_id.entry(id.clone()).or_default().push(path.clone());
        }
        self.removed.remove(rel_path);
        self.nodes.insert(
            path,
            Node {
                id,
                refs,
                file_refs,
            },
        );
    }

    /// Removes the node at `rel_path`; `Some(id)` if one was indexed there.
    fn remove_node(&mut self, rel_path: &str) -> Option<Option<Arc<str>>> {
        let node = self.nodes.remove(rel_path)?;
        if let Some(id) = &node.id {
            if let Some(paths) = self.by_id.get_mut(id) {
                paths.retain(|p| &**p != rel_path);
                if paths.is_empty() {
                    self.by_id.remove(id);
                }
            }
        }
        Some(node.id)
    }

    fn element_name(&self, tag: u8) -> &str {
        self.elements.get(tag as usize).map_or("?", |e| e)
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
        let mut out = BTreeSet::new();
        let mut gone_ids: HashSet<&str> = HashSet::new();
        let mut gone_files: HashSet<&str> = HashSet::new();
        let touched_set: HashSet<&str> = touched.iter().map(String::as_str).collect();
        for t in touched {
            if let Some(node) = self.nodes.get(t.as_str()) {
                self.check_node(
                    t,
                    node,
                    &|id| !self.by_id.contains_key(id),
                    &|f| !file_exists(f),
                    &mut out,
                );
                continue;
            }
            if let Some(id) = self.removed.get(t.as_str()) {
                if !self.by_id.contains_key(id) {
                    gone_ids.insert(id);
                }
            }
            if !file_exists(t) {
                gone_files.insert(t);
            }
        }
        if !gone_ids.is_empty() || !gone_files.is_empty() {
            for (path, node) in &self.nodes {
                if !touched_set.contains(&**path) {
                    self.check_node(
                        path,
                        node,
                        &|id| gone_ids.contains(id),
                        &|f| gone_files.contains(f),
                        &mut out,
                    );
                }
            }
        }
        out.into_iter().collect()
    }

    fn check_node(
        &self,
        path: &str,
        node: &Node,
        id_missing: &dyn Fn(&str) -> bool,
        file_missing: &dyn Fn(&str) -> bool,
        out: &mut BTreeSet<Unresolved>,
    ) {
        for (tag, id) in node.refs.iter() {
            if id_missing(id) {
                out.insert(Unresolved {
                    path: path.to_string(),
                    missing: id.to_string(),
                    via: self.element_name(*tag).to_string(),
                });
            }
        }
        for f in node.file_refs.iter() {
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
        assert_eq!(
            ix.paths_of("L-1").collect::<Vec<_>>(),
            ["workspaces/ws/st/roads/layer.xml"]
        );
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
        ix.clear_removed();
        assert_eq!(ix.len(), 6);
    }

    #[test]
    fn default_workspace_file_refers_to_the_workspace() {
        let mut ix = full();
        ix.update("workspaces/default.xml", Some(WS.as_bytes()));
        assert_eq!(ix.paths_of("WS-1").count(), 1);
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

    #[test]
    fn malformed_update_drops_the_old_node() {
        let mut ix = full();
        ix.update("workspaces/ws/st/roads/layer.xml", Some(b"<layer><id>L-1"));
        assert_eq!(ix.paths_of("L-1").count(), 0);
    }
}
