//! The XML bodies the generator writes, shaped after what GeoServer itself writes (element order,
//! two-space indent, `class` attributes on references, dates as `yyyy-MM-dd HH:mm:ss.SSS UTC`).
//!
//! Kept apart from `generator.rs` so the catalog model and its mutations read without the noise of
//! string templates. Every function here is pure: record in, bytes out.

use super::model::{Group, Layer, ResourceKind, Store, Style, Workspace};

/// XML text escaping; names with `&` or quotes must not break the files.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A fixed-looking timestamp that still changes with `n`, so rewrites change bytes like real saves.
pub fn date(n: u64) -> String {
    format!(
        "2024-{:02}-{:02} {:02}:{:02}:{:02}.{:03} UTC",
        1 + n % 12,
        1 + n % 28,
        n % 24,
        n % 60,
        (n / 7) % 60,
        n % 1000
    )
}

pub fn global_xml(update_sequence: u64) -> String {
    format!(
        "<global>\n  <settings>\n    <id>SettingsInfoImpl--70d05a93:15d7f782348:-8000</id>\n    \
<contact>\n      <id>contact</id>\n      <contactPerson>Ops</contactPerson>\n    </contact>\n    \
<charset>UTF-8</charset>\n    <numDecimals>8</numDecimals>\n    <verbose>false</verbose>\n    \
<verboseExceptions>false</verboseExceptions>\n  </settings>\n  <jai>\n    \
<allowInterpolation>false</allowInterpolation>\n    <tilePriority>5</tilePriority>\n    \
<tileThreads>7</tileThreads>\n    <memoryCapacity>0.5</memoryCapacity>\n  </jai>\n  \
<coverageAccess>\n    <maxPoolSize>5</maxPoolSize>\n    <corePoolSize>5</corePoolSize>\n    \
<queueType>UNBOUNDED</queueType>\n  </coverageAccess>\n  <metadata>\n    \
<entry key=\"logRequestsEnabled\">false</entry>\n  </metadata>\n  \
<updateSequence>{update_sequence}</updateSequence>\n  <featureTypeCacheSize>0</featureTypeCacheSize>\n  \
<globalServices>true</globalServices>\n  <xmlPostRequestLogBufferSize>1024</xmlPostRequestLogBufferSize>\n  \
<webUIMode>DEFAULT</webUIMode>\n</global>"
    )
}

pub fn service_xml(kind: &str, id: &str) -> String {
    let upper = kind.to_uppercase();
    format!(
        "<{kind}>\n  <id>{id}</id>\n  <enabled>true</enabled>\n  <name>{upper}</name>\n  \
<title>Generated {upper} Service</title>\n  <abstrct>Service d&apos;accès généré</abstrct>\n  \
<versions>\n    <org.geotools.util.Version>\n      <version>1.1.1</version>\n    \
</org.geotools.util.Version>\n  </versions>\n  <citeCompliant>false</citeCompliant>\n  \
<schemaBaseURL>http://schemas.opengis.net</schemaBaseURL>\n  <verbose>false</verbose>\n</{kind}>"
    )
}

pub const LOGGING_XML: &str = "<logging>\n  <level>PRODUCTION_LOGGING</level>\n  \
<location>/opt/geoserver/data_dir/logs/geoserver.log</location>\n  <stdOutLogging>true</stdOutLogging>\n</logging>";

pub fn workspace_xml(ws: &Workspace) -> String {
    format!(
        "<workspace>\n  <id>{}</id>\n  <name>{}</name>\n  <isolated>{}</isolated>\n</workspace>",
        esc(&ws.id),
        esc(&ws.name),
        ws.isolated
    )
}

pub fn namespace_xml(ws: &Workspace) -> String {
    format!(
        "<namespace>\n  <id>{}</id>\n  <prefix>{}</prefix>\n  <uri>http://example.org/{}</uri>\n  \
<isolated>{}</isolated>\n</namespace>",
        esc(&ws.namespace_id),
        esc(&ws.name),
        esc(&ws.name),
        ws.isolated
    )
}

/// Datastores carry an encrypted-looking `passwd` (GeoServer's `crypt1:` form) because replicating
/// it between nodes with different keystores is a real failure mode the product must face.
pub fn store_xml(store: &Store, ws: &Workspace, secret: &str) -> String {
    match store.kind {
        ResourceKind::FeatureType => format!(
            "<dataStore>\n  <id>{}</id>\n  <name>{}</name>\n  <type>PostGIS</type>\n  \
<enabled>true</enabled>\n  <workspace>\n    <id>{}</id>\n  </workspace>\n  \
<connectionParameters>\n    <entry key=\"schema\">public</entry>\n    \
<entry key=\"database\">gis</entry>\n    <entry key=\"host\">db.internal</entry>\n    \
<entry key=\"port\">5432</entry>\n    <entry key=\"passwd\">crypt1:{}</entry>\n    \
<entry key=\"dbtype\">postgis</entry>\n    <entry key=\"namespace\">http://example.org/{}</entry>\n    \
<entry key=\"user\">geo</entry>\n  </connectionParameters>\n  <__default>false</__default>\n</dataStore>",
            esc(&store.id),
            esc(&store.name),
            esc(&ws.id),
            secret,
            esc(&ws.name)
        ),
        ResourceKind::Coverage => format!(
            "<coverageStore>\n  <id>{}</id>\n  <name>{}</name>\n  <type>GeoTIFF</type>\n  \
<enabled>true</enabled>\n  <workspace>\n    <id>{}</id>\n  </workspace>\n  \
<__default>false</__default>\n  <url>file:data/{}.tif</url>\n</coverageStore>",
            esc(&store.id),
            esc(&store.name),
            esc(&ws.id),
            esc(&store.name)
        ),
    }
}

pub fn resource_xml(layer: &Layer, ws: &Workspace, store: &Store) -> String {
    let (root, class) = match layer.kind {
        ResourceKind::FeatureType => ("featureType", "dataStore"),
        ResourceKind::Coverage => ("coverage", "coverageStore"),
    };
    format!(
        "<{root}>\n  <id>{}</id>\n  <name>{}</name>\n  <nativeName>{}</nativeName>\n  \
<namespace>\n    <id>{}</id>\n  </namespace>\n  <title>{}</title>\n  <abstract>{}</abstract>\n  \
<keywords>\n    <string>features</string>\n  </keywords>\n  <srs>EPSG:4326</srs>\n  \
<nativeBoundingBox>\n    <minx>-3.05</minx>\n    <maxx>-2.61</maxx>\n    <miny>53.73</miny>\n    \
<maxy>54.09</maxy>\n  </nativeBoundingBox>\n  <projectionPolicy>FORCE_DECLARED</projectionPolicy>\n  \
<enabled>true</enabled>\n  <metadata>\n    <entry key=\"cachingEnabled\">true</entry>\n  </metadata>\n  \
<store class=\"{class}\">\n    <id>{}</id>\n  </store>\n  <serviceConfiguration>false</serviceConfiguration>\n\
</{root}>",
        esc(&layer.resource_id),
        esc(&layer.name),
        esc(&layer.name.to_lowercase().replace(' ', "_")),
        esc(&ws.namespace_id),
        esc(&layer.title),
        esc(&layer.abstract_),
        esc(&store.id),
    )
}

pub fn layer_xml(layer: &Layer, revision: u64) -> String {
    let (kind, class) = match layer.kind {
        ResourceKind::FeatureType => ("VECTOR", "featureType"),
        ResourceKind::Coverage => ("RASTER", "coverage"),
    };
    let mut styles = String::new();
    if !layer.styles.is_empty() {
        styles.push_str("  <styles class=\"linked-hash-set\">\n");
        for s in &layer.styles {
            styles.push_str(&format!(
                "    <style>\n      <id>{}</id>\n    </style>\n",
                esc(s)
            ));
        }
        styles.push_str("  </styles>\n");
    }
    format!(
        "<layer>\n  <name>{}</name>\n  <id>{}</id>\n  <type>{kind}</type>\n  <defaultStyle>\n    \
<id>{}</id>\n  </defaultStyle>\n{styles}  <resource class=\"{class}\">\n    <id>{}</id>\n  </resource>\n  \
<attribution>\n    <title>© Génération</title>\n    <logoWidth>0</logoWidth>\n    \
<logoHeight>0</logoHeight>\n  </attribution>\n  <dateModified>{}</dateModified>\n</layer>",
        esc(&layer.name),
        esc(&layer.id),
        esc(&layer.default_style),
        esc(&layer.resource_id),
        date(revision)
    )
}

pub fn style_xml(style: &Style, ws: Option<&Workspace>) -> String {
    let ws = ws
        .map(|w| {
            format!(
                "  <workspace>\n    <id>{}</id>\n  </workspace>\n",
                esc(&w.id)
            )
        })
        .unwrap_or_default();
    format!(
        "<style>\n  <id>{}</id>\n  <name>{}</name>\n{ws}  <format>sld</format>\n  <languageVersion>\n    \
<version>1.0.0</version>\n  </languageVersion>\n  <filename>{}</filename>\n</style>",
        esc(&style.id),
        esc(&style.name),
        esc(&style.body_file)
    )
}

/// An SLD body; `variant` changes the colour so body-only edits change bytes.
pub fn sld(style: &Style, variant: u64) -> String {
    let graphic = match &style.icon {
        Some(icon) => format!(
            "<sld:ExternalGraphic><sld:OnlineResource xmlns:xlink=\"http://www.w3.org/1999/xlink\" \
xlink:type=\"simple\" xlink:href=\"{}\"/><sld:Format>image/png</sld:Format></sld:ExternalGraphic>",
            esc(icon.trim_start_matches("styles/"))
        ),
        None => "<sld:Mark><sld:WellKnownName>circle</sld:WellKnownName></sld:Mark>".to_string(),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sld:StyledLayerDescriptor \
xmlns:sld=\"http://www.opengis.net/sld\" xmlns:ogc=\"http://www.opengis.net/ogc\" version=\"1.0.0\">\n  \
<sld:NamedLayer>\n    <sld:Name>{}</sld:Name>\n    <sld:UserStyle>\n      <sld:FeatureTypeStyle>\n        \
<sld:Rule>\n          <sld:PointSymbolizer><sld:Graphic>{graphic}<sld:Size>12</sld:Size></sld:Graphic>\
</sld:PointSymbolizer>\n          <sld:PolygonSymbolizer><sld:Fill><sld:CssParameter name=\"fill\">\
#{:06x}</sld:CssParameter></sld:Fill></sld:PolygonSymbolizer>\n        </sld:Rule>\n      \
</sld:FeatureTypeStyle>\n    </sld:UserStyle>\n  </sld:NamedLayer>\n</sld:StyledLayerDescriptor>\n",
        esc(&style.name),
        (variant.wrapping_mul(0x9E37_79B9)) & 0xFF_FFFF
    )
}

pub fn group_xml(group: &Group, revision: u64) -> String {
    let mut published = String::new();
    let mut styles = String::new();
    for (layer, style) in group.layers.iter().zip(&group.styles) {
        published.push_str(&format!(
            "    <published type=\"layer\">\n      <id>{}</id>\n    </published>\n",
            esc(layer)
        ));
        match style {
            Some(s) => styles.push_str(&format!(
                "    <style>\n      <id>{}</id>\n    </style>\n",
                esc(s)
            )),
            None => styles.push_str("    <style/>\n"),
        }
    }
    format!(
        "<layerGroup>\n  <id>{}</id>\n  <name>{}</name>\n  <mode>SINGLE</mode>\n  <title>{}</title>\n  \
<publishables>\n{published}  </publishables>\n  <styles>\n{styles}  </styles>\n  <bounds>\n    \
<minx>-180.0</minx>\n    <maxx>180.0</maxx>\n    <miny>-90.0</miny>\n    <maxy>90.0</maxy>\n    \
<crs>EPSG:4326</crs>\n  </bounds>\n  <dateModified>{}</dateModified>\n</layerGroup>",
        esc(&group.id),
        esc(&group.name),
        esc(&group.name),
        date(revision)
    )
}

/// GWC tile layer config: the file name and `<id>` are the published object's id.
pub fn gwc_layer_xml(id: &str, qualified_name: &str) -> String {
    format!(
        "<GeoServerTileLayer>\n  <id>{}</id>\n  <enabled>true</enabled>\n  <inMemoryCached>true</inMemoryCached>\n  \
<name>{}</name>\n  <mimeFormats>\n    <string>image/png</string>\n    <string>image/jpeg</string>\n  \
</mimeFormats>\n  <gridSubsets>\n    <gridSubset>\n      <gridSetName>EPSG:4326</gridSetName>\n    \
</gridSubset>\n    <gridSubset>\n      <gridSetName>EPSG:900913</gridSetName>\n    </gridSubset>\n  \
</gridSubsets>\n  <metaWidthHeight>\n    <int>4</int>\n    <int>4</int>\n  </metaWidthHeight>\n  \
<expireCache>0</expireCache>\n  <expireClients>0</expireClients>\n  <gutter>0</gutter>\n</GeoServerTileLayer>",
        esc(id),
        esc(qualified_name)
    )
}

pub fn content_ftl(layer: &Layer) -> String {
    format!(
        "<#-- content template for {} -->\n<ul>\n<#list features as feature>\n  <li>${{feature.fid}}</li>\n</#list>\n</ul>\n",
        layer.name
    )
}

/// A few bytes that are a valid PNG signature followed by non-UTF-8 data: icons are binary.
pub fn png_bytes(seed: u64) -> Vec<u8> {
    let mut v = vec![
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R',
    ];
    let mut x = seed | 1;
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push((x >> 24) as u8);
    }
    v.push(0xFF);
    v
}
