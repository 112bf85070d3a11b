//! Records of the catalog objects the generator wrote: enough for a test to find each object's
//! files and ids, and for mutations to keep references consistent. The disk is the truth; these
//! mirror it (a test checks they agree after hundreds of random edits).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    FeatureType,
    Coverage,
}

impl ResourceKind {
    /// File name of the resource inside the layer folder.
    pub fn file(self) -> &'static str {
        match self {
            ResourceKind::FeatureType => "featuretype.xml",
            ResourceKind::Coverage => "coverage.xml",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Workspace {
    pub name: String,
    pub id: String,
    pub namespace_id: String,
    /// The workspace's "isolated" flag (in workspace.xml and namespace.xml alike).
    pub isolated: bool,
}

#[derive(Clone, Debug)]
pub struct Store {
    pub workspace: String,
    pub name: String,
    pub id: String,
    pub kind: ResourceKind,
    /// Relative folder, e.g. `workspaces/données_2/PostGIS Store_3`.
    pub dir: String,
}

#[derive(Clone, Debug)]
pub struct Layer {
    pub workspace: String,
    pub store_id: String,
    pub name: String,
    /// Relative folder holding layer.xml and the resource file.
    pub dir: String,
    pub id: String,
    pub resource_id: String,
    pub kind: ResourceKind,
    pub title: String,
    pub abstract_: String,
    /// Style ids.
    pub default_style: String,
    pub styles: Vec<String>,
}

impl Layer {
    pub fn layer_file(&self) -> String {
        format!("{}/layer.xml", self.dir)
    }
    pub fn resource_file(&self) -> String {
        format!("{}/{}", self.dir, self.kind.file())
    }
    pub fn gwc_file(&self) -> String {
        gwc_file(&self.id)
    }
}

#[derive(Clone, Debug)]
pub struct Style {
    pub name: String,
    pub id: String,
    /// Workspace name when workspace-scoped.
    pub workspace: Option<String>,
    /// Relative folder holding NAME.xml and its body.
    pub dir: String,
    pub body_file: String,
    /// Relative path of a binary icon the body refers to.
    pub icon: Option<String>,
}

impl Style {
    pub fn xml_file(&self) -> String {
        format!("{}/{}.xml", self.dir, self.name)
    }
    pub fn body_path(&self) -> String {
        format!("{}/{}", self.dir, self.body_file)
    }
}

#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub id: String,
    /// Layer ids, and per layer an optional style id (`None` = `<style/>`, the layer's default).
    pub layers: Vec<String>,
    pub styles: Vec<Option<String>>,
}

impl Group {
    pub fn file(&self) -> String {
        format!("layergroups/{}.xml", self.name)
    }
}

/// `gwc-layers/<id with ':' replaced by '_'>.xml`, as GeoServer names tile-layer configs.
pub fn gwc_file(id: &str) -> String {
    format!("gwc-layers/{}.xml", id.replace(':', "_"))
}
