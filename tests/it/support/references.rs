//! The stand-in GeoServer's reading of a catalog: does every id reference resolve?
//!
//! Deliberately written apart from the product's checker (src/datadir) so a bug there cannot hide
//! itself in the tests. It models what GeoServer does at reload: load every catalog object under
//! workspaces/, styles/, layergroups/ and gwc-layers/, index them by their first-level `<id>`, and
//! resolve every `<x><id>…</id></x>` deeper in each file. Problems are plain sentences naming the
//! file, so a test can compare a slave's problems with the master's own (real data directories
//! are rarely perfect).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use quick_xml::events::Event;
use quick_xml::Reader;

/// Root elements whose first-level `<id>` is the object's identity.
const OBJECTS: &[&str] = &[
    "workspace",
    "namespace",
    "dataStore",
    "coverageStore",
    "wmsStore",
    "wmtsStore",
    "featureType",
    "coverage",
    "wmsLayer",
    "wmtsLayer",
    "layer",
    "style",
    "layerGroup",
];

/// What one catalog file says about references.
#[derive(Debug, Default)]
struct Parsed {
    root: String,
    own_id: Option<String>,
    /// (element wrapping the `<id>`, id)
    refs: Vec<(String, String)>,
    filename: Option<String>,
}

fn parse(text: &str) -> Result<Parsed, String> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<String> = vec![];
    let mut out = Parsed::default();
    loop {
        match reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?
        {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if stack.is_empty() {
                    out.root = name.clone();
                }
                stack.push(name);
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(t) => {
                let value = t.unescape().map_err(|e| e.to_string())?.trim().to_string();
                match (stack.len(), stack.last().map(String::as_str)) {
                    (2, Some("id")) => out.own_id = Some(value),
                    (2, Some("filename")) => out.filename = Some(value),
                    (n, Some("id")) if n >= 3 => out.refs.push((stack[n - 2].clone(), value)),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed <{}>", stack.join("><")));
    }
    if out.root.is_empty() {
        return Err("no root element".into());
    }
    Ok(out)
}

/// Relative `/`-separated paths of every `.xml` file under `dir/top`.
fn xml_files(dir: &Path, top: &str, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir.join(top)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{top}/{name}");
        match entry.file_type() {
            Ok(ft) if ft.is_dir() => xml_files(dir, &rel, out),
            Ok(ft) if ft.is_file() && name.ends_with(".xml") => out.push(rel),
            _ => {}
        }
    }
}

/// How many catalog objects GeoServer loads from `dir` (one per XML file of workspaces, stores,
/// resources, layers, styles and layer groups).
pub fn catalog_objects(dir: &Path) -> usize {
    let mut files = vec![];
    for top in ["workspaces", "styles", "layergroups"] {
        xml_files(dir, top, &mut files);
    }
    files.len()
}

/// The catalog GeoServer holds after a reload of `dir`: per object file, the object's id.
pub fn catalog_ids(dir: &Path) -> BTreeMap<String, String> {
    let mut files = vec![];
    for top in ["workspaces", "styles", "layergroups"] {
        xml_files(dir, top, &mut files);
    }
    let mut out = BTreeMap::new();
    for rel in files {
        let Ok(bytes) = fs::read(dir.join(&rel)) else {
            continue;
        };
        if let Some(id) = own_id(&bytes) {
            out.insert(rel, id);
        }
    }
    out
}

/// The first-level `<id>` of a catalog object's XML, if it is one.
pub fn own_id(xml: &[u8]) -> Option<String> {
    let parsed = parse(&String::from_utf8_lossy(xml)).ok()?;
    OBJECTS
        .contains(&parsed.root.as_str())
        .then_some(parsed.own_id)
        .flatten()
}

/// Every unresolved reference in the catalog under `dir`, as sentences such as
/// `workspaces/ws/st/roads/layer.xml: <resource> refers to missing id FeatureTypeInfoImpl-…`.
pub fn catalog_problems(dir: &Path) -> BTreeSet<String> {
    let mut files = vec![];
    for top in ["workspaces", "styles", "layergroups", "gwc-layers"] {
        xml_files(dir, top, &mut files);
    }
    files.sort();
    let mut problems = BTreeSet::new();
    let mut objects: BTreeMap<String, String> = BTreeMap::new();
    let mut parsed = vec![];
    for rel in files {
        // A file can vanish between listing and reading while a node applies a change.
        let Ok(bytes) = fs::read(dir.join(&rel)) else {
            continue;
        };
        match parse(&String::from_utf8_lossy(&bytes)) {
            Err(e) => {
                problems.insert(format!("{rel}: cannot parse: {e}"));
            }
            Ok(mut p) => {
                let is_object =
                    OBJECTS.contains(&p.root.as_str()) && rel != "workspaces/default.xml";
                match (is_object, p.own_id.take()) {
                    (true, Some(id)) => {
                        if let Some(other) = objects.insert(id.clone(), rel.clone()) {
                            problems.insert(format!("duplicate id {id} in {other} and {rel}"));
                        }
                    }
                    (true, None) => {
                        problems.insert(format!("{rel}: <{}> has no <id>", p.root));
                    }
                    // A tile layer or default.xml names the object it belongs to by its id.
                    (false, Some(id))
                        if p.root == "GeoServerTileLayer" || p.root == "workspace" =>
                    {
                        p.refs.push((p.root.clone(), id))
                    }
                    (false, _) => {}
                }
                parsed.push((rel, p));
            }
        }
    }
    for (rel, p) in &parsed {
        for (elem, id) in &p.refs {
            if !objects.contains_key(id) {
                problems.insert(format!("{rel}: <{elem}> refers to missing id {id}"));
            }
        }
        if let (Some(body), "style") = (&p.filename, p.root.as_str()) {
            let beside = Path::new(rel).parent().unwrap().join(body);
            if !dir.join(&beside).is_file() {
                problems.insert(format!("{rel}: style body {body} is missing"));
            }
        }
    }
    problems
}
