//! Catalog knowledge: in which order files must be written so that what a file refers to exists
//! first, and which references a catalog file holds.
//!
//! GeoServer stores one catalog object per XML file; objects refer to each other by id, as an
//! element wrapping a single `<id>` (see geoserver-datadir.md). A layer whose resource is not there
//! yet is logged and dropped by a reload, so both the writer (apply order) and the slave's
//! pre-reload check (the [`CatalogIndex`] in `index.rs`) need this knowledge.

use quick_xml::events::Event;
use quick_xml::Reader;
use std::cmp::Ordering;

/// Apply ranks, lowest written first. Named so the ordering reads like the catalog's dependencies.
mod rank {
    pub const WORKSPACE: u8 = 0;
    pub const DEFAULT_WORKSPACE: u8 = 1;
    pub const STORE: u8 = 2;
    pub const RESOURCE: u8 = 3;
    pub const STYLE_BODY: u8 = 4;
    pub const STYLE: u8 = 5;
    pub const LAYER: u8 = 6;
    pub const LAYER_GROUP: u8 = 7;
    pub const GWC_CONFIG: u8 = 8;
    pub const TILE_LAYER: u8 = 9;
    pub const OTHER: u8 = 10;
}

/// The write rank of a relative path: workspace/namespace → default workspace → store → resource →
/// style body and icons → style NAME.xml → layer → layer group → GWC config (gridsets) → GWC tile
/// layer → everything else (global and service configs, settings, templates). Deletions use the
/// reverse order.
///
/// A style's NAME.xml and its body NAME.sld are siblings; the body ranks first so the StyleInfo
/// never points at a body that is not there yet. Folder checks come before file-name checks
/// because object names are folder and file names: a style called `layer` is `styles/layer.xml`.
pub fn apply_rank(path: &str) -> u8 {
    let segs: Vec<&str> = path.split('/').collect();
    let name = segs[segs.len() - 1];
    let styles_folder = |i: usize| {
        // Direct children of a styles folder that end in .xml are StyleInfo files; anything else
        // (bodies, icons, subfolders such as styles/images/) is content they point to.
        if segs.len() == i + 2 && name.ends_with(".xml") {
            rank::STYLE
        } else {
            rank::STYLE_BODY
        }
    };
    match segs.as_slice() {
        ["styles", ..] => styles_folder(0),
        ["layergroups", ..] => rank::LAYER_GROUP,
        ["gwc", "geowebcache.xml"] | ["gwc-gs.xml"] => rank::GWC_CONFIG,
        ["gwc-layers", ..] => rank::TILE_LAYER,
        ["workspaces", "default.xml"] => rank::DEFAULT_WORKSPACE,
        ["workspaces", _, "workspace.xml" | "namespace.xml"] => rank::WORKSPACE,
        ["workspaces", _, "styles", _, ..] => styles_folder(2),
        ["workspaces", _, "layergroups", _, ..] => rank::LAYER_GROUP,
        ["workspaces", _, _, "datastore.xml" | "coveragestore.xml" | "wmsstore.xml" | "wmtsstore.xml"] => {
            rank::STORE
        }
        ["workspaces", _, _, _, "featuretype.xml" | "coverage.xml" | "wmslayer.xml" | "wmtslayer.xml"] => {
            rank::RESOURCE
        }
        ["workspaces", _, _, _, "layer.xml"] => rank::LAYER,
        _ => rank::OTHER,
    }
}

/// Total order for applying changes, shared by the master's diff and the slave's plan:
/// deletions first, referrers before what they refer to (descending rank), then writes with
/// referenced objects first (ascending rank); ties by path so the order is deterministic.
///
/// Deleting first means a rename (delete the old folder, write the new one with the same ids)
/// never leaves two files with the same id on disk.
pub fn apply_cmp(a: (&str, bool), b: (&str, bool)) -> Ordering {
    fn key(path: &str, deleted: bool) -> (u8, u8) {
        let r = apply_rank(path);
        if deleted {
            (0, u8::MAX - r)
        } else {
            (1, r)
        }
    }
    key(a.0, a.1).cmp(&key(b.0, b.1)).then_with(|| a.0.cmp(b.0))
}

/// Sorts anything that has a path and a deleted flag into apply order (see [`apply_cmp`]).
pub fn sort_for_apply<T>(items: &mut [T], key: impl Fn(&T) -> (&str, bool)) {
    items.sort_by(|a, b| apply_cmp(key(a), key(b)));
}

/// A reference from one catalog object to another, by id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub id: String,
    /// The element that wraps the `<id>`: "workspace", "store", "resource", "defaultStyle",
    /// "style", "published", "namespace", "rootLayer"…
    pub element: String,
}

/// What the reference check needs from one catalog file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogObject {
    /// The object's identity: the root element's first-level `<id>`.
    pub id: Option<String>,
    pub refs: Vec<Reference>,
    /// Files this object needs beside it, relative to its own folder: a style's `<filename>`.
    pub file_refs: Vec<String>,
}

/// Root element of a GWC tile layer file. Its first-level `<id>` is the id of the layer or group
/// it caches, not an identity of its own, so it is reported as a reference.
const TILE_LAYER_ROOT: &str = "GeoServerTileLayer";

/// Elements that can hold nothing but an `<id>` yet are values written inline, not references.
/// `<contact>` in global.xml / settings.xml is the `ContactInfo` of the settings object, serialised
/// in place; an empty one is `<contact><id>contact</id></contact>` (seen in the magosm fixture).
const EMBEDDED: &[&str] = &["contact"];

/// Reads the id and references of a catalog XML file.
///
/// `None` for files that are not catalog objects (no first-level `<id>` and no references: SLD
/// bodies, templates, properties) and for malformed XML; use [`parse_object_checked`] to tell the
/// two apart for logging.
pub fn parse_object(bytes: &[u8]) -> Option<CatalogObject> {
    parse_object_checked(bytes).ok().flatten()
}

struct Frame {
    name: String,
    /// Child elements seen so far, and whether any of them was not `<id>`.
    children: u32,
    other_child: bool,
    id_text: Option<String>,
    /// Text content, collected only for `<id>` and `<filename>`.
    text: Option<String>,
}

/// Like [`parse_object`], but malformed XML is an `Err` with quick-xml's message.
pub fn parse_object_checked(bytes: &[u8]) -> Result<Option<CatalogObject>, String> {
    let mut reader = Reader::from_reader(bytes);
    let mut stack: Vec<Frame> = Vec::new();
    let mut obj = CatalogObject::default();
    let mut root_name = String::new();
    let mut saw_root = false;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match ev {
            Event::Start(e) | Event::Empty(e) if saw_root && stack.is_empty() => {
                let _ = e;
                return Err("more than one root element".into());
            }
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                open_child(&mut stack, &name);
                if stack.is_empty() {
                    root_name = name.clone();
                    saw_root = true;
                }
                let collect = name == "id" || name == "filename";
                stack.push(Frame {
                    name,
                    children: 0,
                    other_child: false,
                    id_text: None,
                    text: collect.then(String::new),
                });
            }
            Event::Empty(e) => {
                // `<style/>` in a layer group means "default style": no reference.
                if stack.is_empty() {
                    saw_root = true;
                }
                open_child(&mut stack, &String::from_utf8_lossy(e.name().as_ref()));
            }
            Event::Text(t) => {
                if let Some(buf) = stack.last_mut().and_then(|f| f.text.as_mut()) {
                    buf.push_str(&t.unescape().map_err(|e| e.to_string())?);
                }
            }
            Event::CData(t) => {
                if let Some(buf) = stack.last_mut().and_then(|f| f.text.as_mut()) {
                    buf.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::End(_) => {
                let f = stack.pop().ok_or("unbalanced end tag")?;
                close(&mut stack, f, &root_name, &mut obj);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(format!(
            "unexpected end of file inside <{}>",
            stack[stack.len() - 1].name
        ));
    }
    Ok((obj.id.is_some() || !obj.refs.is_empty()).then_some(obj))
}

fn open_child(stack: &mut [Frame], name: &str) {
    if let Some(parent) = stack.last_mut() {
        parent.children += 1;
        parent.other_child |= name != "id";
    }
}

fn close(stack: &mut [Frame], f: Frame, root_name: &str, obj: &mut CatalogObject) {
    let depth = stack.len(); // depth of `f`'s parent; 0 means `f` was the root
    let text = f
        .text
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    if f.name == "id" {
        let root_id_taken =
            obj.id.is_some() || obj.refs.iter().any(|r| r.element == TILE_LAYER_ROOT);
        if depth == 1 && !root_id_taken {
            if let Some(id) = text.clone() {
                if root_name == TILE_LAYER_ROOT {
                    obj.refs.push(Reference {
                        id,
                        element: TILE_LAYER_ROOT.into(),
                    });
                } else {
                    obj.id = Some(id);
                }
            }
        }
        if let Some(parent) = stack.last_mut() {
            parent.id_text = parent.id_text.take().or(text);
        }
        return;
    }
    if f.name == "filename" && depth == 1 && root_name == "style" {
        obj.file_refs.extend(text);
        return;
    }
    // A reference: below the root, exactly one child element, and that child is `<id>`.
    if depth >= 1 && f.children == 1 && !f.other_child && !EMBEDDED.contains(&f.name.as_str()) {
        if let Some(id) = f.id_text {
            obj.refs.push(Reference {
                id,
                element: f.name,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranks_follow_catalog_dependencies() {
        let order = [
            "workspaces/ws/workspace.xml",
            "workspaces/default.xml",
            "workspaces/ws/st/datastore.xml",
            "workspaces/ws/st/roads/featuretype.xml",
            "styles/roads.sld",
            "workspaces/ws/styles/images/pin.svg",
            "styles/roads.xml",
            "workspaces/ws/st/roads/layer.xml",
            "workspaces/ws/layergroups/base.xml",
            "gwc/geowebcache.xml",
            "gwc-layers/LayerInfoImpl-1.xml",
            "global.xml",
        ];
        for w in order.windows(2) {
            assert!(
                apply_rank(w[0]) <= apply_rank(w[1]),
                "{} before {}",
                w[0],
                w[1]
            );
        }
        assert!(apply_rank("styles/roads.sld") < apply_rank("styles/roads.xml"));
        assert_eq!(
            apply_rank("styles/layer.xml"),
            apply_rank("styles/roads.xml")
        );
        assert_eq!(apply_rank("layergroups/workspace.xml"), rank::LAYER_GROUP);
        assert_eq!(apply_rank("workspaces/ws/settings.xml"), rank::OTHER);
    }

    #[test]
    fn deletions_come_first_and_in_reverse_rank() {
        let mut v = vec![
            ("workspaces/ws/workspace.xml", true),
            ("workspaces/ws/st/r/layer.xml", true),
            ("workspaces/ws/st/datastore.xml", false),
            ("workspaces/ws/workspace.xml", false),
        ];
        sort_for_apply(&mut v, |x| *x);
        assert_eq!(
            v,
            [
                ("workspaces/ws/st/r/layer.xml", true),
                ("workspaces/ws/workspace.xml", true),
                ("workspaces/ws/workspace.xml", false),
                ("workspaces/ws/st/datastore.xml", false),
            ]
        );
    }

    #[test]
    fn layer_references_resource_and_styles() {
        let xml = br#"<layer>
  <name>roads</name><id>LayerInfoImpl-1</id>
  <defaultStyle><id>StyleInfoImpl-1</id></defaultStyle>
  <styles class="linked-hash-set"><style><id>StyleInfoImpl-2</id></style></styles>
  <resource class="featureType"><id>FeatureTypeInfoImpl-1</id></resource>
  <attribution><title>x</title></attribution>
</layer>"#;
        let o = parse_object(xml).unwrap();
        assert_eq!(o.id.as_deref(), Some("LayerInfoImpl-1"));
        let refs: Vec<_> = o
            .refs
            .iter()
            .map(|r| (r.element.as_str(), r.id.as_str()))
            .collect();
        assert_eq!(
            refs,
            [
                ("defaultStyle", "StyleInfoImpl-1"),
                ("style", "StyleInfoImpl-2"),
                ("resource", "FeatureTypeInfoImpl-1")
            ]
        );
    }

    #[test]
    fn layer_group_publishables_and_empty_styles() {
        let xml = br#"<layerGroup><id>LG-1</id><name>base</name>
  <workspace><id>WS-1</id></workspace>
  <publishables>
    <published type="layer"><id>L-1</id></published>
    <published type="layerGroup"><id>LG-2</id></published>
  </publishables>
  <styles><style/><style><id>S-1</id></style></styles>
  <bounds><minx>0</minx><crs class="projected">EPSG:3857</crs></bounds>
</layerGroup>"#;
        let o = parse_object(xml).unwrap();
        assert_eq!(o.id.as_deref(), Some("LG-1"));
        let ids: Vec<_> = o.refs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["WS-1", "L-1", "LG-2", "S-1"]);
    }

    #[test]
    fn style_names_its_body_file() {
        let xml = b"<style><id>S-1</id><name>roads</name><format>sld</format>\
<filename>roads.sld</filename><languageVersion><version>1.0.0</version></languageVersion></style>";
        let o = parse_object(xml).unwrap();
        assert_eq!(o.file_refs, ["roads.sld"]);
        assert!(o.refs.is_empty());
    }

    #[test]
    fn tile_layer_id_is_a_reference_to_the_layer() {
        let xml = b"<GeoServerTileLayer><id>LayerInfoImpl-1</id><enabled>true</enabled></GeoServerTileLayer>";
        let o = parse_object(xml).unwrap();
        assert_eq!(o.id, None);
        assert_eq!(o.refs[0].id, "LayerInfoImpl-1");
    }

    #[test]
    fn non_catalog_and_malformed_files_give_none() {
        let sld = br#"<?xml version="1.0"?><StyledLayerDescriptor version="1.0.0"><NamedLayer><Name>x</Name></NamedLayer></StyledLayerDescriptor>"#;
        assert_eq!(parse_object(sld), None);
        assert_eq!(parse_object(b"<layer><id>x</id>"), None);
        assert!(parse_object_checked(b"<layer><id>x</id>").is_err());
        assert!(parse_object_checked(b"<a></b>").is_err());
        assert_eq!(parse_object(b"title: ${name}"), None);
    }

    #[test]
    fn inline_contact_is_not_a_reference() {
        let xml =
            b"<global><settings><id>SettingsInfoImpl-1</id><contact><id>contact</id></contact>\
<charset>UTF-8</charset></settings><updateSequence>3</updateSequence></global>";
        assert_eq!(parse_object(xml), None);
    }

    #[test]
    fn escaped_ids_are_unescaped() {
        let o = parse_object(b"<namespace><id>a&amp;b</id></namespace>").unwrap();
        assert_eq!(o.id.as_deref(), Some("a&b"));
    }

    proptest! {
        #[test]
        fn apply_order_is_total_and_puts_deletes_first(
            paths in prop::collection::vec(("(workspaces/w/(s/(r/)?)?|styles/|gwc-layers/)?[a-z]{1,3}\\.(xml|sld)", any::<bool>()), 0..20)
        ) {
            let mut v: Vec<(String, bool)> = paths;
            sort_for_apply(&mut v, |(p, d)| (p.as_str(), *d));
            for w in v.windows(2) {
                let (a, b) = (&w[0], &w[1]);
                prop_assert!(apply_cmp((&a.0, a.1), (&b.0, b.1)) != Ordering::Greater);
                prop_assert!(a.1 || !b.1, "write before delete");
                if !a.1 && !b.1 {
                    prop_assert!(apply_rank(&a.0) <= apply_rank(&b.0));
                }
                if a.1 && b.1 {
                    prop_assert!(apply_rank(&a.0) >= apply_rank(&b.0));
                }
            }
        }

        #[test]
        fn parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_object(&bytes);
        }
    }
}
