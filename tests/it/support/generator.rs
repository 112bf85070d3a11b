//! A deterministic generator of GeoServer-shaped data directories, and mutations that edit them the
//! way GeoServer does (referenced objects written first, referrers removed first, `updateSequence`
//! bumped in global.xml on every change).
//!
//! Why generate rather than copy the fixtures: tests need catalogs of any size, with ids that really
//! cross-reference, folder names with spaces and non-ASCII characters, binary files, and node-local
//! content that must not replicate — and they need to mutate them while the product watches.
//! Everything is derived from the seed, so a failing test reproduces exactly.

use std::fs;
use std::path::Path;

pub use super::model::*;
use super::templates as t;

/// How big a catalog to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    pub workspaces: usize,
    pub stores_per_workspace: usize,
    pub layers_per_store: usize,
    pub global_styles: usize,
    pub layer_groups: usize,
}

impl Spec {
    /// A catalog small enough for multi-process tests, big enough to have every kind of object.
    pub fn small() -> Spec {
        Spec {
            workspaces: 2,
            stores_per_workspace: 3,
            layers_per_store: 2,
            global_styles: 3,
            layer_groups: 2,
        }
    }
}

/// `count` style bodies `styles/{prefix}_{k}.sld` of `kib` KiB of random letters: large
/// files that compress only to about 5/8 (32 letters: 5 bits a byte), for tests about message
/// counts and slow links.
pub fn random_styles(root: &Path, prefix: &str, count: usize, kib: usize, seed: u64) {
    let mut x = seed;
    for k in 0..count {
        let body: String = (0..kib * 1024)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (b'a' + (x >> 59) as u8) as char
            })
            .collect();
        let sld = format!("<StyledLayerDescriptor><!-- {body} --></StyledLayerDescriptor>");
        std::fs::write(root.join(format!("styles/{prefix}_{k}.sld")), sld).unwrap();
    }
}

/// SplitMix64: tiny, good enough, and identical on every platform (no `rand` dependency needed).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x853C_49E6_748F_EA9B)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`; `n` must be > 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// What was generated; tests read it to pick mutation targets and mutate through it.
#[derive(Clone, Debug)]
pub struct Catalog {
    pub update_sequence: u64,
    pub default_workspace: Option<String>,
    pub workspaces: Vec<Workspace>,
    pub stores: Vec<Store>,
    pub layers: Vec<Layer>,
    pub styles: Vec<Style>,
    pub groups: Vec<Group>,
    pub(super) rng: Rng,
    uid_prefix: String,
    uid_count: i64,
    pub(super) serial: u64,
}

const WS_NAMES: &[&str] = &[
    "topp",
    "données",
    "DIUPostgres",
    "über",
    "citymap",
    "hydro_réseau",
];
const STORE_NAMES: &[&str] = &["PostGIS Store", "shapefiles", "Géodonnées"];
const COVERAGE_STORE_NAMES: &[&str] = &["rasters", "MNT Élévation", "orthophotos"];
const LAYER_NAMES: &[&str] = &[
    "Energy Performance Certificates",
    "roads",
    "bâtiments",
    "Mosaic Household",
    "rivers",
    "zones_ü",
];
const STYLE_NAMES: &[&str] = &[
    "line",
    "polygon",
    "point",
    "Mosaic Household",
    "légende",
    "roads casing",
];

/// A distinct suffix per temporary file (time and a counter; no randomness needed).
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(40)
}

/// Records every relative path a mutation writes or removes, in order.
pub(super) struct Tx<'a> {
    pub(super) root: &'a Path,
    pub(super) touched: Vec<String>,
}

impl Tx<'_> {
    /// Writes the way GeoServer's `FileSystemResourceStore` does: a `NAME.<random>.tmp` beside
    /// the file, then a rename over it, so no reader ever sees half a file.
    pub(super) fn write(&mut self, rel: &str, bytes: impl AsRef<[u8]>) {
        let path = self.root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = path.with_file_name(format!("{name}.{:016x}.tmp", rand_suffix()));
        fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
        self.touched.push(rel.to_string());
    }
    pub(super) fn remove(&mut self, rel: &str) {
        if fs::remove_file(self.root.join(rel)).is_ok() {
            self.touched.push(rel.to_string());
        }
    }
    /// `rm -r`, recording every file that disappears.
    pub(super) fn remove_dir(&mut self, rel: &str) {
        let mut files: Vec<String> = super::node::tree(&self.root.join(rel), &[])
            .into_keys()
            .collect();
        files.iter_mut().for_each(|f| *f = format!("{rel}/{f}"));
        fs::remove_dir_all(self.root.join(rel)).ok();
        self.touched.extend(files);
    }
}

/// Writes a whole data directory under `root` (which may already exist) and returns its catalog.
pub fn generate(root: &Path, spec: &Spec, seed: u64) -> Catalog {
    let mut rng = Rng::new(seed);
    let unique = rng.next_u64() as u32 as i32 as i64;
    let mut cat = Catalog {
        update_sequence: 100 + rng.below(900) as u64,
        default_workspace: None,
        workspaces: vec![],
        stores: vec![],
        layers: vec![],
        styles: vec![],
        groups: vec![],
        uid_prefix: format!(
            "{}:{:x}",
            signed_hex(unique),
            0x167_5b07_4524_u64 + rng.below(1 << 30) as u64
        ),
        uid_count: -0x8000,
        serial: 0,
        rng,
    };
    let mut tx = Tx {
        root,
        touched: vec![],
    };
    tx.write("wms.xml", t::service_xml("wms", &cat.new_id("WMSInfo")));
    tx.write("wfs.xml", t::service_xml("wfs", &cat.new_id("WFSInfo")));
    tx.write("logging.xml", t::LOGGING_XML);
    // Node-local content: a replicator must leave all of this alone.
    tx.write(
        "logs/geoserver.log",
        "2024-06-07 15:33:43 INFO [main] - started\n",
    );
    tx.write("temp/x.tmp", "scratch");
    tx.write("data/roads.shp", t::png_bytes(seed ^ 7));
    tx.write("gwc/layer/00/01.png", t::png_bytes(seed ^ 11));
    tx.write(
        "security/usergroup/default/users.xml",
        "<userRegistry><users><user enabled=\"true\" name=\"admin\" password=\"digest1:x\"/></users></userRegistry>",
    );
    for _ in 0..spec.global_styles {
        cat.create_style(&mut tx, None, None);
    }
    for _ in 0..spec.workspaces {
        let ws = cat.create_workspace(&mut tx, None);
        for s in 0..spec.stores_per_workspace {
            let kind = if s % 3 == 2 {
                ResourceKind::Coverage
            } else {
                ResourceKind::FeatureType
            };
            let si = cat.create_store(&mut tx, &ws, kind);
            for _ in 0..spec.layers_per_store {
                cat.create_layer(&mut tx, si, None);
            }
        }
    }
    for _ in 0..spec.layer_groups {
        cat.create_group(&mut tx, None);
    }
    tx.write("global.xml", t::global_xml(cat.update_sequence));
    cat
}

fn signed_hex(v: i64) -> String {
    if v < 0 {
        format!("-{:x}", -v)
    } else {
        format!("{v:x}")
    }
}

impl Catalog {
    /// A GeoServer-style id: `LayerInfoImpl--4ede52dd:1675b074524:-6526`.
    /// A second model of the same tree (another GeoServer editing it) makes ids of its own:
    /// ids made from now on carry `tag` in their prefix.
    pub fn fork_ids(&mut self, tag: &str) {
        self.uid_prefix = format!("{}{tag}", self.uid_prefix);
    }

    fn new_id(&mut self, class: &str) -> String {
        let id = format!(
            "{class}Impl-{}:{}",
            self.uid_prefix,
            signed_hex(self.uid_count)
        );
        self.uid_count += 1;
        id
    }

    fn unique(&mut self, pool: &[&str]) -> String {
        self.serial += 1;
        format!("{}_{}", pool[self.rng.below(pool.len())], self.serial)
    }

    pub fn workspace(&self, name: &str) -> &Workspace {
        self.workspaces
            .iter()
            .find(|w| w.name == name)
            .unwrap_or_else(|| panic!("no workspace {name}"))
    }

    pub fn layer(&self, id: &str) -> &Layer {
        self.layers
            .iter()
            .find(|l| l.id == id)
            .unwrap_or_else(|| panic!("no layer {id}"))
    }

    pub fn style(&self, name: &str) -> &Style {
        self.styles
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no style {name}"))
    }

    /// True when a layer or group refers to the style: deleting it then would break the catalog.
    pub fn style_in_use(&self, id: &str) -> bool {
        self.layers
            .iter()
            .any(|l| l.default_style == id || l.styles.iter().any(|s| s == id))
            || self
                .groups
                .iter()
                .any(|g| g.styles.iter().any(|s| s.as_deref() == Some(id)))
    }

    pub(super) fn finish(&mut self, mut tx: Tx) -> Vec<String> {
        self.update_sequence += 1;
        tx.write("global.xml", t::global_xml(self.update_sequence));
        tx.touched
    }

    pub(super) fn create_workspace(&mut self, tx: &mut Tx, name: Option<&str>) -> Workspace {
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| self.unique(WS_NAMES));
        let ws = Workspace {
            name,
            id: self.new_id("WorkspaceInfo"),
            namespace_id: self.new_id("NamespaceInfo"),
            isolated: false,
        };
        let dir = format!("workspaces/{}", ws.name);
        tx.write(&format!("{dir}/workspace.xml"), t::workspace_xml(&ws));
        tx.write(&format!("{dir}/namespace.xml"), t::namespace_xml(&ws));
        self.workspaces.push(ws.clone());
        if self.default_workspace.is_none() {
            tx.write("workspaces/default.xml", t::workspace_xml(&ws));
            self.default_workspace = Some(ws.name.clone());
        }
        if self.rng.chance(50) {
            tx.write(
                &format!("{dir}/title.ftl"),
                "${layer.name} — ${workspace.name}\n",
            );
        }
        // Every workspace has its own style, so layers always have a style to point at.
        self.create_style(tx, Some(&ws), None);
        ws
    }

    pub(super) fn create_store(
        &mut self,
        tx: &mut Tx,
        ws: &Workspace,
        kind: ResourceKind,
    ) -> usize {
        let name = self.unique(if kind == ResourceKind::Coverage {
            COVERAGE_STORE_NAMES
        } else {
            STORE_NAMES
        });
        let id = self.new_id(if kind == ResourceKind::Coverage {
            "CoverageStoreInfo"
        } else {
            "DataStoreInfo"
        });
        let dir = format!("workspaces/{}/{}", ws.name, name);
        let store = Store {
            workspace: ws.name.clone(),
            name,
            id,
            kind,
            dir,
        };
        let file = if kind == ResourceKind::Coverage {
            "coveragestore.xml"
        } else {
            "datastore.xml"
        };
        let secret = format!("{:016x}{:016x}=", self.rng.next_u64(), self.rng.next_u64());
        tx.write(
            &format!("{}/{file}", store.dir),
            t::store_xml(&store, ws, &secret),
        );
        self.stores.push(store);
        self.stores.len() - 1
    }

    pub(super) fn create_layer(
        &mut self,
        tx: &mut Tx,
        store_index: usize,
        name: Option<&str>,
    ) -> String {
        let store = self.stores[store_index].clone();
        let ws = self.workspace(&store.workspace).clone();
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| self.unique(LAYER_NAMES));
        let usable: Vec<String> = (self.styles.iter())
            .filter(|s| s.workspace.is_none() || s.workspace.as_deref() == Some(ws.name.as_str()))
            .map(|s| s.id.clone())
            .collect();
        let default_style = usable[self.rng.below(usable.len())].clone();
        let mut styles = vec![];
        for _ in 0..self.rng.below(3) {
            let s = usable[self.rng.below(usable.len())].clone();
            if s != default_style && !styles.contains(&s) {
                styles.push(s);
            }
        }
        let class = match store.kind {
            ResourceKind::FeatureType => "FeatureTypeInfo",
            ResourceKind::Coverage => "CoverageInfo",
        };
        let layer = Layer {
            workspace: ws.name.clone(),
            store_id: store.id.clone(),
            dir: format!("{}/{}", store.dir, name),
            title: name.clone(),
            abstract_: format!("Couche {name} générée"),
            name,
            resource_id: self.new_id(class),
            id: self.new_id("LayerInfo"),
            kind: store.kind,
            default_style,
            styles,
        };
        tx.write(&layer.resource_file(), t::resource_xml(&layer, &ws, &store));
        tx.write(&layer.layer_file(), t::layer_xml(&layer, self.serial));
        if self.rng.chance(30) {
            tx.write(
                &format!("{}/content.ftl", layer.dir),
                t::content_ftl(&layer),
            );
        }
        tx.write(
            &layer.gwc_file(),
            t::gwc_layer_xml(&layer.id, &format!("{}:{}", ws.name, layer.name)),
        );
        let id = layer.id.clone();
        self.layers.push(layer);
        id
    }

    /// Body (and icon) first, then NAME.xml: GeoServer's order, so NAME.xml never names a missing body.
    pub(super) fn create_style(
        &mut self,
        tx: &mut Tx,
        ws: Option<&Workspace>,
        name: Option<&str>,
    ) -> String {
        let name = match (name, ws) {
            (Some(n), _) => n.to_string(),
            (None, Some(w)) => format!("{} style", w.name),
            (None, None) => self.unique(STYLE_NAMES),
        };
        let dir = ws
            .map(|w| format!("workspaces/{}/styles", w.name))
            .unwrap_or_else(|| "styles".into());
        // Every other global style has an icon, so each catalog has binary files to replicate.
        let globals = self.styles.iter().filter(|s| s.workspace.is_none()).count();
        let icon = (ws.is_none() && globals % 2 == 0).then(|| format!("styles/img/{name}.png"));
        let style = Style {
            body_file: format!("{name}.sld"),
            name,
            id: self.new_id("StyleInfo"),
            workspace: ws.map(|w| w.name.clone()),
            dir,
            icon,
        };
        if let Some(icon) = &style.icon {
            tx.write(icon, t::png_bytes(self.rng.next_u64()));
        }
        tx.write(&style.body_path(), t::sld(&style, self.serial));
        tx.write(&style.xml_file(), t::style_xml(&style, ws));
        let id = style.id.clone();
        self.styles.push(style);
        id
    }

    pub(super) fn create_group(&mut self, tx: &mut Tx, name: Option<&str>) -> Option<String> {
        if self.layers.is_empty() {
            return None;
        }
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| format!("groupe_{}", self.serial + 1));
        self.serial += 1;
        let mut group = Group {
            name,
            id: self.new_id("LayerGroupInfo"),
            layers: vec![],
            styles: vec![],
        };
        for _ in 0..1 + self.rng.below(3) {
            let layer = &self.layers[self.rng.below(self.layers.len())];
            if !group.layers.contains(&layer.id) {
                let style = self.rng.chance(50).then(|| layer.default_style.clone());
                group.layers.push(layer.id.clone());
                group.styles.push(style);
            }
        }
        tx.write(&group.file(), t::group_xml(&group, self.serial));
        tx.write(
            &gwc_file(&group.id),
            t::gwc_layer_xml(&group.id, &group.name),
        );
        let id = group.id.clone();
        self.groups.push(group);
        Some(id)
    }

    /// Takes layers out of every group that publishes them (rewriting the group before the layer
    /// goes away, like GeoServer's cascade delete); a group left empty is deleted.
    pub(super) fn detach_layers(&mut self, tx: &mut Tx, layer_ids: &[String]) {
        let mut kept = vec![];
        for mut g in std::mem::take(&mut self.groups) {
            let before = g.layers.len();
            let pairs: Vec<_> = (g.layers.iter().cloned().zip(g.styles.iter().cloned()))
                .filter(|(l, _)| !layer_ids.contains(l))
                .collect();
            if pairs.len() == before {
                kept.push(g);
            } else if pairs.is_empty() {
                tx.remove(&gwc_file(&g.id));
                tx.remove(&g.file());
            } else {
                (g.layers, g.styles) = pairs.into_iter().unzip();
                self.serial += 1;
                tx.write(&g.file(), t::group_xml(&g, self.serial));
                kept.push(g);
            }
        }
        self.groups = kept;
    }

    pub(super) fn remove_layer(&mut self, tx: &mut Tx, id: &str) {
        self.detach_layers(tx, &[id.to_string()]);
        let layer = self.layer(id).clone();
        tx.remove(&layer.gwc_file());
        tx.remove(&layer.layer_file());
        tx.remove(&layer.resource_file());
        tx.remove_dir(&layer.dir);
        self.layers.retain(|l| l.id != id);
    }

    pub(super) fn rewrite_layer(&mut self, tx: &mut Tx, id: &str) {
        self.serial += 1;
        let layer = self.layer(id).clone();
        let store = self
            .stores
            .iter()
            .find(|s| s.id == layer.store_id)
            .unwrap()
            .clone();
        let ws = self.workspace(&layer.workspace).clone();
        tx.write(&layer.resource_file(), t::resource_xml(&layer, &ws, &store));
        tx.write(&layer.layer_file(), t::layer_xml(&layer, self.serial));
    }
}
