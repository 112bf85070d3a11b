//! What a written file costs GeoServer: most configuration files are read only at start-up or
//! on `POST /rest/reload`, but a few GeoServer watches itself and re-reads on its own once their
//! modification time changes. A batch that touched only those needs no reload — which matters,
//! because a reload empties the live catalog for the whole parse (docs/reload.md).
//!
//! Pure: the caller says which files are style bodies and what an XML user/group or role
//! service's `config.xml` holds. Each rule names the GeoServer source that backs it (read in
//! geoserver/geoserver; docs/reload.md has the details).

use std::borrow::Cow;

/// Why a written path needs no reload: GeoServer re-reads it itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfRead {
    /// `security/{layers,services,rest}.properties`: `AbstractAccessRuleDAO.checkPropertyFile`
    /// reloads the rules on the next lookup when `FileWatcher.isModified` (mtime, checked at
    /// most once per second) says so.
    AccessRules,
    /// The file of a file-based user/group or role service whose `config.xml` has a
    /// `checkInterval` above zero: `GeoServerSecurityManager` then starts a
    /// `UserGroupFileWatcher` / `RoleFileWatcher` on it.
    SecurityService,
    /// `gwc-layers/*.xml`: `DefaultTileLayerCatalog` listens to its folder (create, modify,
    /// delete; 10 s poll).
    TileLayer,
    /// A style's body (the file its `<filename>` names): `ResourcePool` drops the cached style
    /// when the resource changes (10 s poll). Tiles GWC cached with the old body stay until
    /// truncated.
    StyleBody,
}

impl SelfRead {
    pub fn describe(&self) -> &'static str {
        match self {
            SelfRead::AccessRules => "access rules GeoServer re-reads within a second",
            SelfRead::SecurityService => {
                "a users or roles file GeoServer re-reads at its checkInterval"
            }
            SelfRead::TileLayer => "a tile layer GeoServer's GWC re-reads within 10 s",
            SelfRead::StyleBody => "a style body GeoServer re-reads within 10 s",
        }
    }
}

/// What GeoServer needs once `path` was written (`written`) or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing: GeoServer re-reads it by itself.
    Nothing(SelfRead),
    /// A catalog reload (`POST /rest/reload`).
    Reload,
}

/// The facts about this node's data directory the rules look at.
pub trait Facts {
    /// Whether `path` is the body of a style (some `style.xml` names it in `<filename>`).
    fn is_style_body(&self, path: &str) -> bool;
    /// The content of a data-directory file (a security service's `config.xml`), if present.
    fn read(&self, path: &str) -> Option<Cow<'_, [u8]>>;
}

const ACCESS_RULES: &[&str] = &[
    "security/layers.properties",
    "security/services.properties",
    "security/rest.properties",
];

/// What `path` needs after it was written (`written == true`) or deleted. A deleted watched
/// file is not re-read (GeoServer's watchers only look at files that exist), so a deletion
/// needs a reload — except a tile layer, whose folder listener sees deletions.
pub fn need(path: &str, written: bool, facts: &dyn Facts) -> Need {
    if path.starts_with("gwc-layers/") && path.ends_with(".xml") && !path[11..].contains('/') {
        return Need::Nothing(SelfRead::TileLayer);
    }
    if !written {
        return Need::Reload;
    }
    if ACCESS_RULES.contains(&path) {
        return Need::Nothing(SelfRead::AccessRules);
    }
    if watched_service_file(path, facts) {
        return Need::Nothing(SelfRead::SecurityService);
    }
    if !path.ends_with(".xml") && facts.is_style_body(path) {
        return Need::Nothing(SelfRead::StyleBody);
    }
    Need::Reload
}

/// `security/usergroup/<svc>/<file>` or `security/role/<svc>/<file>`, where `<svc>/config.xml`
/// names `<file>` in `<fileName>` and has a `<checkInterval>` above zero (a file-based service;
/// others have no `fileName`).
fn watched_service_file(path: &str, facts: &dyn Facts) -> bool {
    let mut parts = path.split('/');
    let (Some("security"), Some(kind @ ("usergroup" | "role")), Some(svc), Some(file), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    if file == "config.xml" {
        return false;
    }
    let Some(config) = facts.read(&format!("security/{kind}/{svc}/config.xml")) else {
        return false;
    };
    let text = String::from_utf8_lossy(&config);
    let same_file = element(&text, "fileName").is_some_and(|f| f == file);
    let interval = element(&text, "checkInterval").and_then(|v| v.parse::<u64>().ok());
    same_file && interval.is_some_and(|ms| ms > 0)
}

/// The trimmed text of the first `<name>…</name>` in `xml`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + len].trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Dir {
        styles: Vec<&'static str>,
        files: HashMap<&'static str, String>,
    }

    impl Facts for Dir {
        fn is_style_body(&self, path: &str) -> bool {
            self.styles.contains(&path)
        }
        fn read(&self, path: &str) -> Option<Cow<'_, [u8]>> {
            self.files.get(path).map(|s| Cow::Borrowed(s.as_bytes()))
        }
    }

    fn service(class: &str, file: &str, interval: &str) -> String {
        format!(
            "<userGroupService>\n  <name>default</name>\n  <className>{class}</className>\n  <fileName>{file}</fileName>\n  <checkInterval>{interval}</checkInterval>\n</userGroupService>"
        )
    }

    #[test]
    fn catalog_files_need_a_reload() {
        let d = Dir::default();
        for p in [
            "workspaces/topp/workspace.xml",
            "workspaces/topp/states/states/featuretype.xml",
            "styles/line.xml",
            "global.xml",
            "gwc-gs.xml",
            "security/config.xml",
            "gwc-layers/sub/x.xml",
        ] {
            assert_eq!(need(p, true, &d), Need::Reload, "{p}");
        }
    }

    #[test]
    fn files_geoserver_watches_need_no_reload_when_written() {
        let mut d = Dir {
            styles: vec!["styles/line.sld", "workspaces/topp/styles/roads.css"],
            ..Default::default()
        };
        let xml = "org.geoserver.security.xml.XMLUserGroupService";
        (d.files).insert(
            "security/usergroup/default/config.xml",
            service(xml, "users.xml", "10000"),
        );
        (d.files).insert(
            "security/role/default/config.xml",
            service(
                "org.geoserver.security.xml.XMLRoleService",
                "roles.xml",
                " 5000 ",
            ),
        );
        let cases = [
            ("security/layers.properties", SelfRead::AccessRules),
            ("security/rest.properties", SelfRead::AccessRules),
            (
                "security/usergroup/default/users.xml",
                SelfRead::SecurityService,
            ),
            ("security/role/default/roles.xml", SelfRead::SecurityService),
            ("gwc-layers/LayerInfoImpl-1.xml", SelfRead::TileLayer),
            ("styles/line.sld", SelfRead::StyleBody),
            ("workspaces/topp/styles/roads.css", SelfRead::StyleBody),
        ];
        for (p, why) in cases {
            assert_eq!(need(p, true, &d), Need::Nothing(why), "{p}");
        }
        // Deleted, only the tile layer is seen by GeoServer's watcher.
        assert_eq!(need("security/layers.properties", false, &d), Need::Reload);
        assert_eq!(need("styles/line.sld", false, &d), Need::Reload);
        assert_eq!(
            need("gwc-layers/LayerInfoImpl-1.xml", false, &d),
            Need::Nothing(SelfRead::TileLayer)
        );
        // A file no style names is not a style body.
        assert_eq!(need("styles/unknown.sld", true, &d), Need::Reload);
    }

    #[test]
    fn a_security_service_without_a_check_interval_needs_a_reload() {
        let mut d = Dir::default();
        let xml = "org.geoserver.security.xml.XMLUserGroupService";
        for (config, file) in [
            (service(xml, "users.xml", "0"), "security/usergroup/default/users.xml"),
            (service(xml, "other.xml", "10000"), "security/usergroup/default/users.xml"),
            (
                "<userGroupService><className>org.geoserver.security.jdbc.JDBCUserGroupService</className><checkInterval>10000</checkInterval></userGroupService>".to_string(),
                "security/usergroup/default/users.xml",
            ),
        ] {
            (d.files).insert("security/usergroup/default/config.xml", config);
            assert_eq!(need(file, true, &d), Need::Reload, "{:?}", d.files);
        }
        d.files.clear();
        assert_eq!(
            need("security/usergroup/default/users.xml", true, &d),
            Need::Reload,
            "no config.xml"
        );
    }
}
