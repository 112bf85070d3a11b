//! The datadir module against real GeoServer data directories (configuration only), from
//! `shared/fixtures/datadirs` beside the checkout. Skipped when the folder is absent.

use gscluster::datadir::{scan, CatalogIndex, Filter};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixtures() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GSCLUSTER_FIXTURES") {
        return Some(PathBuf::from(p));
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/fixtures/datadirs"))
        .find(|p| p.is_dir())
}

fn fixture(name: &str) -> Option<PathBuf> {
    let p = fixtures()?.join(name);
    if p.is_dir() {
        Some(p)
    } else {
        None
    }
}

macro_rules! fixture_or_skip {
    ($name:expr) => {
        match fixture($name) {
            Some(p) => p,
            None => {
                println!("skipped: ../shared fixtures not present");
                return;
            }
        }
    };
}

fn all_files(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(rel) = gscluster::datadir::to_rel(root, &p) {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn default_filter_on_magosm_keeps_configuration_only() {
    let root = fixture_or_skip!("magosm");
    let filter = Filter::defaults();
    let scanned = scan(&root, &filter, &[]).unwrap();
    let mut per_top: BTreeMap<&str, usize> = BTreeMap::new();
    for p in scanned.keys() {
        *per_top.entry(p.split('/').next().unwrap()).or_default() += 1;
    }
    println!("replicated files per top-level entry: {per_top:?}");
    for absent in [
        "logs",
        "security",
        "data",
        "logging.xml",
        "monitoring",
        "demo",
    ] {
        assert!(!per_top.contains_key(absent), "{absent} must not replicate");
    }
    assert_eq!(per_top["gwc-layers"], 30);
    assert_eq!(per_top["gwc"], 1, "only gwc/geowebcache.xml");
    assert!(scanned.contains_key("global.xml"));
    assert!(scanned
        .keys()
        .all(|p| !p.ends_with(".bak") && !p.ends_with(".swp")));
    assert!(scanned
        .keys()
        .any(|p| p.starts_with("styles/") && p.ends_with(".sld")));
    assert!(scanned
        .keys()
        .any(|p| p.starts_with("styles/") && p.ends_with(".svg")));
    let layers = scanned
        .keys()
        .filter(|p| p.starts_with("workspaces/") && p.ends_with("/layer.xml"));
    assert_eq!(layers.count(), 31);
    // The scan (with pruning) and the filter applied to every file agree.
    let by_filter: Vec<String> = all_files(&root)
        .into_iter()
        .filter(|p| filter.matches(p))
        .collect();
    assert_eq!(scanned.keys().cloned().collect::<Vec<_>>(), by_filter);
}

#[test]
fn default_filter_on_nhs_bi_keeps_names_with_spaces() {
    let root = fixture_or_skip!("nhs-bi");
    let scanned = scan(&root, &Filter::defaults(), &[]).unwrap();
    assert!(scanned.keys().any(|p| p.contains(' ')));
    assert!(scanned.contains_key("gwc/geowebcache.xml"));
    assert!(!scanned.contains_key("gwc/geowebcache-diskquota.xml"));
    assert_eq!(
        scanned
            .keys()
            .filter(|p| p.starts_with("gwc-layers/"))
            .count(),
        3
    );
}

fn all_touched(root: &std::path::Path) -> (Vec<String>, impl Fn(&str) -> bool) {
    let files = scan(root, &Filter::defaults(), &[]).unwrap();
    let touched: Vec<String> = files.keys().cloned().collect();
    let root = root.to_path_buf();
    (touched, move |p: &str| root.join(p).is_file())
}

#[test]
fn magosm_catalog_reports_the_missing_style_body_and_nothing_on_layers() {
    let root = fixture_or_skip!("magosm");
    let index = CatalogIndex::build(&root, &Filter::defaults());
    assert!(index.len() > 100, "indexed {}", index.len());
    let (touched, exists) = all_touched(&root);
    let unresolved = index.unresolved(&touched, exists);
    for u in &unresolved {
        println!("unresolved: {} -> {} ({})", u.path, u.missing, u.via);
    }
    assert!(
        unresolved
            .iter()
            .any(|u| u.via == "filename" && u.path.contains("styles/")),
        "the style whose body file is missing must be reported"
    );
    assert!(
        !unresolved.iter().any(|u| u.via == "resource"),
        "every layer's resource resolves"
    );
    // The body file of this style is absent from the source repository (see SOURCES.md).
    assert!(unresolved
        .iter()
        .any(|u| u.missing == "styles/highways_line_legend_test.sld"));
    assert!(!unresolved
        .iter()
        .any(|u| u.via == "store" || u.via == "workspace"));
}

#[test]
fn nhs_bi_catalog_resolves_layers() {
    let root = fixture_or_skip!("nhs-bi");
    let index = CatalogIndex::build(&root, &Filter::defaults());
    let (touched, exists) = all_touched(&root);
    let unresolved = index.unresolved(&touched, exists);
    for u in &unresolved {
        println!("unresolved: {} -> {} ({})", u.path, u.missing, u.via);
    }
    assert!(!unresolved
        .iter()
        .any(|u| u.via == "resource" || u.via == "store"));
}
