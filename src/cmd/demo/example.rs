//! The example data directory (`examples/datadir`: one workspace, one store, one layer with its
//! style, GeoServer's service files), built into the binary so that `gscluster demo` runs from
//! an installed package as well as from a checkout; and the GeoServer-shaped changes the demo
//! makes on the master.

use std::io;
use std::path::Path;

/// Every file of `examples/datadir`, by path (a test keeps the list whole).
pub const TREE: &[(&str, &[u8])] = &[
    (
        "global.xml",
        include_bytes!("../../../examples/datadir/global.xml"),
    ),
    (
        "gwc-layers/LayerInfoImpl-demo-roads.xml",
        include_bytes!("../../../examples/datadir/gwc-layers/LayerInfoImpl-demo-roads.xml"),
    ),
    (
        "logging.xml",
        include_bytes!("../../../examples/datadir/logging.xml"),
    ),
    (
        "logs/geoserver.log",
        include_bytes!("../../../examples/datadir/logs/geoserver.log"),
    ),
    (
        "styles/road.sld",
        include_bytes!("../../../examples/datadir/styles/road.sld"),
    ),
    (
        "styles/road.xml",
        include_bytes!("../../../examples/datadir/styles/road.xml"),
    ),
    (
        "wms.xml",
        include_bytes!("../../../examples/datadir/wms.xml"),
    ),
    (
        "workspaces/default.xml",
        include_bytes!("../../../examples/datadir/workspaces/default.xml"),
    ),
    (
        "workspaces/demo/namespace.xml",
        include_bytes!("../../../examples/datadir/workspaces/demo/namespace.xml"),
    ),
    (
        "workspaces/demo/roads_store/datastore.xml",
        include_bytes!("../../../examples/datadir/workspaces/demo/roads_store/datastore.xml"),
    ),
    (
        "workspaces/demo/roads_store/roads/featuretype.xml",
        include_bytes!(
            "../../../examples/datadir/workspaces/demo/roads_store/roads/featuretype.xml"
        ),
    ),
    (
        "workspaces/demo/roads_store/roads/layer.xml",
        include_bytes!("../../../examples/datadir/workspaces/demo/roads_store/roads/layer.xml"),
    ),
    (
        "workspaces/demo/workspace.xml",
        include_bytes!("../../../examples/datadir/workspaces/demo/workspace.xml"),
    ),
];

/// Write the example tree under `root`.
pub fn write_tree(root: &Path) -> io::Result<()> {
    for (path, bytes) in TREE {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().expect("a file in a folder"))?;
        std::fs::write(file, bytes)?;
    }
    Ok(())
}

/// The new layer's files, as GeoServer writes them when a layer is published with a new style:
/// the style's SLD and its catalog entry, the feature type and the layer.
pub const LAYER_FILES: [&str; 4] = [
    "styles/river.sld",
    "styles/river.xml",
    "workspaces/demo/roads_store/rivers/featuretype.xml",
    "workspaces/demo/roads_store/rivers/layer.xml",
];

/// The folder the layer lives in (removed with it).
pub const LAYER_DIR: &str = "workspaces/demo/roads_store/rivers";

/// Publish the layer `demo:rivers` with its style `river` in the data directory at `root`.
pub fn add_layer(root: &Path) -> io::Result<()> {
    let contents = [
        RIVER_SLD.to_string(),
        RIVER_STYLE.to_string(),
        feature_type("Rivers"),
        RIVER_LAYER.to_string(),
    ];
    // The style first, then the layer that refers to it: GeoServer's order too.
    for (path, text) in LAYER_FILES.iter().zip(contents) {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().expect("a file in a folder"))?;
        std::fs::write(file, text)?;
    }
    Ok(())
}

/// Change the layer's title, as saving it in GeoServer's layer page does.
pub fn retitle_layer(root: &Path, title: &str) -> io::Result<()> {
    std::fs::write(root.join(LAYER_FILES[2]), feature_type(title))
}

/// Remove the layer and its style, as deleting both in GeoServer does.
pub fn remove_layer(root: &Path) -> io::Result<()> {
    std::fs::remove_dir_all(root.join(LAYER_DIR))?;
    std::fs::remove_file(root.join(LAYER_FILES[0]))?;
    std::fs::remove_file(root.join(LAYER_FILES[1]))
}

fn feature_type(title: &str) -> String {
    format!(
        "<featureType>
  <id>FeatureTypeInfoImpl-demo-rivers</id>
  <name>rivers</name>
  <nativeName>rivers</nativeName>
  <namespace>
    <id>NamespaceInfoImpl-demo-ns</id>
  </namespace>
  <title>{title}</title>
  <abstract>River centre lines (added by gscluster demo)</abstract>
  <srs>EPSG:4326</srs>
  <nativeBoundingBox>
    <minx>-10.0</minx>
    <maxx>10.0</maxx>
    <miny>40.0</miny>
    <maxy>60.0</maxy>
    <crs>EPSG:4326</crs>
  </nativeBoundingBox>
  <projectionPolicy>FORCE_DECLARED</projectionPolicy>
  <enabled>true</enabled>
  <store class=\"dataStore\">
    <id>DataStoreInfoImpl-demo-roads</id>
  </store>
  <maxFeatures>0</maxFeatures>
  <numDecimals>0</numDecimals>
</featureType>
"
    )
}

const RIVER_LAYER: &str = "<layer>
  <name>rivers</name>
  <id>LayerInfoImpl-demo-rivers</id>
  <type>VECTOR</type>
  <defaultStyle>
    <id>StyleInfoImpl-demo-river</id>
  </defaultStyle>
  <resource class=\"featureType\">
    <id>FeatureTypeInfoImpl-demo-rivers</id>
  </resource>
  <attribution>
    <logoWidth>0</logoWidth>
    <logoHeight>0</logoHeight>
  </attribution>
</layer>
";

const RIVER_STYLE: &str = "<style>
  <id>StyleInfoImpl-demo-river</id>
  <name>river</name>
  <format>sld</format>
  <languageVersion>
    <version>1.0.0</version>
  </languageVersion>
  <filename>river.sld</filename>
</style>
";

const RIVER_SLD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<StyledLayerDescriptor version=\"1.0.0\" xmlns=\"http://www.opengis.net/sld\"
    xmlns:ogc=\"http://www.opengis.net/ogc\" xmlns:xlink=\"http://www.w3.org/1999/xlink\">
  <NamedLayer>
    <Name>river</Name>
    <UserStyle>
      <Title>River</Title>
      <FeatureTypeStyle>
        <Rule>
          <LineSymbolizer>
            <Stroke>
              <CssParameter name=\"stroke\">#2e86c1</CssParameter>
              <CssParameter name=\"stroke-width\">1.5</CssParameter>
            </Stroke>
          </LineSymbolizer>
        </Rule>
      </FeatureTypeStyle>
    </UserStyle>
  </NamedLayer>
</StyledLayerDescriptor>
";

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in tree is `examples/datadir`, whole and byte for byte.
    #[test]
    fn the_built_in_tree_is_the_example_data_directory() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/datadir");
        let mut on_disk = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(dir) = folders.pop() {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    folders.push(p);
                } else {
                    let rel = p
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    on_disk.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        on_disk.sort();
        let built: Vec<(String, Vec<u8>)> = TREE
            .iter()
            .map(|(p, b)| (p.to_string(), b.to_vec()))
            .collect();
        assert_eq!(built, on_disk);
    }

    #[test]
    fn the_layer_comes_and_goes_whole() {
        let dir = tempfile::tempdir().unwrap();
        write_tree(dir.path()).unwrap();
        add_layer(dir.path()).unwrap();
        for f in LAYER_FILES {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        retitle_layer(dir.path(), "Rivers and canals").unwrap();
        let ft = std::fs::read_to_string(dir.path().join(LAYER_FILES[2])).unwrap();
        assert!(ft.contains("<title>Rivers and canals</title>"));
        remove_layer(dir.path()).unwrap();
        assert!(LAYER_FILES.iter().all(|f| !dir.path().join(f).exists()));
        assert!(
            dir.path().join("styles/road.sld").is_file(),
            "the rest stays"
        );
    }
}
