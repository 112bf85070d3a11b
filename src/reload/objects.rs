//! Per-object apply (`[geoserver] apply = "per-object"`): the GeoServer REST call that brings one
//! changed catalog file into GeoServer's memory without a reload, or why only a reload can; and
//! whether GeoServer's rewrite of a file says what the master's file says. Pure.
//!
//! From GeoServer's source (`src/restconfig/src/main/java/org/geoserver/rest/catalog/`, the
//! `*Controller.java` of each object; docs/reload.md "Per-object apply" has the table):
//! a PUT never changes an object's id; a POST keeps the `<id>` of its body for stores, styles
//! and layer groups, but no REST call creates a layer with a chosen id, and a new workspace
//! gets a namespace with a new id — so new layers, resources, workspaces and namespaces, and
//! renames and moves (a delete and an add of other paths), need a reload. Object names come
//! from the path: GeoServer names folders and files after their objects and renames them with
//! the object.

use quick_xml::events::Event;
use quick_xml::Reader;

/// What happened to a path since GeoServer last heard of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Added,
    Modified,
    Deleted,
}

impl Kind {
    /// This change followed by `next`, as one; `None`: nothing to tell GeoServer (added, then
    /// deleted before it heard of it).
    pub fn then(self, next: Kind) -> Option<Kind> {
        match (self, next) {
            (Kind::Added, Kind::Deleted) => None,
            (Kind::Added, _) => Some(Kind::Added),
            (Kind::Deleted, Kind::Added | Kind::Modified) => Some(Kind::Modified),
            (_, k) => Some(k),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Put,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One REST call: `method {url}/rest{endpoint}`, with the file's bytes as an XML body unless
/// it deletes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    pub endpoint: String,
}

impl Call {
    fn put(endpoint: String) -> Call {
        Call {
            method: Method::Put,
            endpoint,
        }
    }
    fn post(endpoint: String) -> Call {
        Call {
            method: Method::Post,
            endpoint,
        }
    }
    fn delete(endpoint: String) -> Call {
        Call {
            method: Method::Delete,
            endpoint,
        }
    }
}

const SERVICES: &[&str] = &["wms", "wfs", "wcs", "wmts", "wps"];

/// `name` of a `name.xml` file.
fn xml_name(file: &str) -> Option<&str> {
    file.strip_suffix(".xml").filter(|n| !n.is_empty())
}

fn store_kind(file: &str) -> Option<&'static str> {
    Some(match file {
        "datastore.xml" => "datastores",
        "coveragestore.xml" => "coveragestores",
        "wmsstore.xml" => "wmsstores",
        "wmtsstore.xml" => "wmtsstores",
        _ => return None,
    })
}

/// The REST call for `path` after `kind` (`None`: GeoServer needs none), or why it needs a
/// reload.
pub fn plan(path: &str, kind: Kind) -> Result<Option<Call>, String> {
    use Kind::*;
    let segs: Vec<&str> = path.split('/').collect();
    let in_styles = matches!(
        segs.as_slice(),
        ["styles", ..] | ["workspaces", _, "styles", ..]
    );
    if kind == Added && in_styles && !path.ends_with(".xml") {
        // A new icon or body: read when a style uses it, and the style comes with its own call.
        return Ok(None);
    }
    let call = match (segs.as_slice(), kind) {
        (["global.xml"], Modified) => Call::put("/settings".into()),
        (["logging.xml"], Modified) => Call::put("/logging".into()),
        ([file], Modified) if xml_name(file).is_some_and(|s| SERVICES.contains(&s)) => {
            Call::put(format!("/services/{}/settings", xml_name(file).unwrap()))
        }
        (["styles", file], Added) if xml_name(file).is_some() => Call::post("/styles".into()),
        (["styles", file], Modified) if xml_name(file).is_some() => {
            Call::put(format!("/styles/{}", xml_name(file).unwrap()))
        }
        (["styles", file], Deleted) if xml_name(file).is_some() => {
            Call::delete(format!("/styles/{}", xml_name(file).unwrap()))
        }
        (["layergroups", file], Added) if xml_name(file).is_some() => {
            Call::post("/layergroups".into())
        }
        (["layergroups", file], Modified) if xml_name(file).is_some() => {
            Call::put(format!("/layergroups/{}", xml_name(file).unwrap()))
        }
        (["layergroups", file], Deleted) if xml_name(file).is_some() => {
            Call::delete(format!("/layergroups/{}", xml_name(file).unwrap()))
        }
        (["workspaces", ws, "workspace.xml"], Modified) => Call::put(format!("/workspaces/{ws}")),
        (["workspaces", ws, "namespace.xml"], Modified) => Call::put(format!("/namespaces/{ws}")),
        (["workspaces", ws, "settings.xml"], Modified) => {
            Call::put(format!("/workspaces/{ws}/settings"))
        }
        (["workspaces", ws, file], Modified)
            if xml_name(file).is_some_and(|s| SERVICES.contains(&s)) =>
        {
            let svc = xml_name(file).unwrap();
            Call::put(format!("/services/{svc}/workspaces/{ws}/settings"))
        }
        (["workspaces", ws, "styles", file], k) if xml_name(file).is_some() => {
            let name = xml_name(file).unwrap();
            match k {
                Added => Call::post(format!("/workspaces/{ws}/styles")),
                Modified => Call::put(format!("/workspaces/{ws}/styles/{name}")),
                Deleted => Call::delete(format!("/workspaces/{ws}/styles/{name}")),
            }
        }
        (["workspaces", ws, "layergroups", file], k) if xml_name(file).is_some() => {
            let name = xml_name(file).unwrap();
            match k {
                Added => Call::post(format!("/workspaces/{ws}/layergroups")),
                Modified => Call::put(format!("/workspaces/{ws}/layergroups/{name}")),
                Deleted => Call::delete(format!("/workspaces/{ws}/layergroups/{name}")),
            }
        }
        (["workspaces", ws, store, file], k) if store_kind(file).is_some() => {
            let kinds = store_kind(file).unwrap();
            match k {
                Added => Call::post(format!("/workspaces/{ws}/{kinds}")),
                Modified => Call::put(format!("/workspaces/{ws}/{kinds}/{store}")),
                Deleted => Call::delete(format!("/workspaces/{ws}/{kinds}/{store}")),
            }
        }
        (["workspaces", ws, _, res, "layer.xml"], Modified) => {
            Call::put(format!("/layers/{ws}:{res}"))
        }
        (["workspaces", ws, _, res, "layer.xml"], Deleted) => {
            Call::delete(format!("/layers/{ws}:{res}"))
        }
        (["workspaces", ws, store, res, file], Modified | Deleted) if resource(file).is_some() => {
            let (stores, resources, query) = resource(file).unwrap();
            let endpoint = format!("/workspaces/{ws}/{stores}/{store}/{resources}/{res}");
            if kind == Deleted {
                Call::delete(endpoint)
            } else {
                Call::put(format!("{endpoint}{query}"))
            }
        }
        (["workspaces", _, _, _, "layer.xml"], Added) => {
            return Err(format!(
                "{path}: a new layer (no REST call keeps a layer's id)"
            ))
        }
        (_, Added) if path.starts_with("workspaces/") && path.ends_with(".xml") => {
            return Err(format!("{path}: a new object REST cannot add with its id"))
        }
        _ if path.starts_with("security/") => {
            return Err(format!("{path}: security configuration"))
        }
        _ => return Err(format!("{path}: no REST call applies this change")),
    };
    Ok(Some(Call {
        endpoint: encode_path(&call.endpoint),
        ..call
    }))
}

/// The endpoint with each path segment percent-encoded (object names may hold spaces and
/// other characters a URL cannot carry as they are); the query is left as it is.
fn encode_path(endpoint: &str) -> String {
    let (path, query) = match endpoint.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (endpoint, None),
    };
    let mut out = String::with_capacity(endpoint.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The resource files: (store kind, resource kind, the PUT query that keeps GeoServer from
/// recomputing fields the master set).
fn resource(file: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match file {
        "featuretype.xml" => ("datastores", "featuretypes", "?recalculate=none"),
        "coverage.xml" => ("coveragestores", "coverages", "?calculate=none"),
        "wmslayer.xml" => ("wmsstores", "wmslayers", ""),
        "wmtslayer.xml" => ("wmtsstores", "layers", ""),
        _ => return None,
    })
}

/// Elements GeoServer stamps itself when it saves an object: they may differ from the master's.
const STAMPED: &[&str] = &["dateCreated", "dateModified", "updateSequence"];

/// Whether GeoServer's rewrite of a file says what the master's file says, apart from what
/// GeoServer stamps itself (creation and modification dates, the update sequence) and store
/// passwords, which it re-encrypts with a random salt. `Err`: the first difference, e.g. an id.
pub fn same_object(master: &[u8], rewrite: &[u8]) -> Result<(), String> {
    let (a, b) = (canonical(master)?, canonical(rewrite)?);
    for (x, y) in a.iter().zip(&b) {
        if x != y {
            return Err(format!("GeoServer wrote {y} where the master has {x}"));
        }
    }
    match a.len().cmp(&b.len()) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(format!("GeoServer added {}", b[a.len()])),
        std::cmp::Ordering::Greater => Err(format!("GeoServer left out {}", a[b.len()])),
    }
}

/// The XML as a list of `path=text` and `path@attr=value` items, stamped elements left out,
/// encrypted values reduced to their scheme.
fn canonical(xml: &[u8]) -> Result<Vec<String>, String> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut skip = 0usize;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("not well-formed XML: {e}"))?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if skip > 0 || STAMPED.contains(&name.as_str()) {
                    skip += 1;
                } else {
                    for a in e.attributes().flatten() {
                        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                        let value = String::from_utf8_lossy(&a.value).into_owned();
                        out.push(format!("<{}>@{key}={value:?}", path_of(&path, &name)));
                    }
                    path.push(name);
                }
            }
            Event::End(_) => {
                if skip > 0 {
                    skip -= 1;
                } else {
                    path.pop();
                }
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if skip == 0 && !STAMPED.contains(&name.as_str()) {
                    out.push(format!("<{}/>", path_of(&path, &name)));
                }
            }
            Event::Text(t) if skip == 0 => {
                let text = t
                    .unescape()
                    .map(|s| s.into_owned())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&t).into_owned());
                let text = match text.split_once(':') {
                    Some((scheme @ ("crypt1" | "crypt2"), _)) => format!("{scheme}:…"),
                    _ => text,
                };
                out.push(format!("<{}>{text:?}", path.join("/")));
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

fn path_of(path: &[String], name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", path.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Kind::*;

    fn call(path: &str, kind: Kind) -> String {
        let c = plan(path, kind)
            .unwrap_or_else(|why| panic!("{path}: {why}"))
            .expect("a call");
        format!("{} {}", c.method.as_str(), c.endpoint)
    }

    #[test]
    fn modified_objects_are_put_to_their_endpoint_named_by_the_path() {
        let cases = [
            ("global.xml", "PUT /settings"),
            ("logging.xml", "PUT /logging"),
            ("wms.xml", "PUT /services/wms/settings"),
            (
                "workspaces/topp/wfs.xml",
                "PUT /services/wfs/workspaces/topp/settings",
            ),
            (
                "workspaces/topp/settings.xml",
                "PUT /workspaces/topp/settings",
            ),
            ("workspaces/topp/workspace.xml", "PUT /workspaces/topp"),
            ("workspaces/topp/namespace.xml", "PUT /namespaces/topp"),
            (
                "workspaces/topp/states/datastore.xml",
                "PUT /workspaces/topp/datastores/states",
            ),
            (
                "workspaces/topp/states/roads/featuretype.xml",
                "PUT /workspaces/topp/datastores/states/featuretypes/roads?recalculate=none",
            ),
            (
                "workspaces/nurc/mosaic/mosaic/coverage.xml",
                "PUT /workspaces/nurc/coveragestores/mosaic/coverages/mosaic?calculate=none",
            ),
            (
                "workspaces/topp/states/roads/layer.xml",
                "PUT /layers/topp:roads",
            ),
            ("styles/line.xml", "PUT /styles/line"),
            (
                "workspaces/topp/styles/red.xml",
                "PUT /workspaces/topp/styles/red",
            ),
            ("layergroups/base.xml", "PUT /layergroups/base"),
            (
                "workspaces/topp/layergroups/tasmania.xml",
                "PUT /workspaces/topp/layergroups/tasmania",
            ),
        ];
        for (path, want) in cases {
            assert_eq!(call(path, Modified), want, "{path}");
        }
    }

    #[test]
    fn new_stores_styles_and_groups_are_posted_and_deletes_deleted() {
        assert_eq!(
            call("workspaces/topp/new/datastore.xml", Added),
            "POST /workspaces/topp/datastores"
        );
        assert_eq!(call("styles/new.xml", Added), "POST /styles");
        assert_eq!(
            call("workspaces/topp/styles/new.xml", Added),
            "POST /workspaces/topp/styles"
        );
        assert_eq!(call("layergroups/new.xml", Added), "POST /layergroups");
        assert_eq!(
            call("workspaces/topp/states/roads/layer.xml", Deleted),
            "DELETE /layers/topp:roads"
        );
        assert_eq!(
            call("workspaces/topp/states/roads/featuretype.xml", Deleted),
            "DELETE /workspaces/topp/datastores/states/featuretypes/roads"
        );
        assert_eq!(
            call("workspaces/topp/states/datastore.xml", Deleted),
            "DELETE /workspaces/topp/datastores/states"
        );
        assert_eq!(call("styles/old.xml", Deleted), "DELETE /styles/old");
    }

    #[test]
    fn what_rest_cannot_keep_needs_a_reload() {
        for (path, kind) in [
            ("workspaces/topp/states/roads/layer.xml", Added),
            ("workspaces/topp/states/roads/featuretype.xml", Added),
            ("workspaces/new/workspace.xml", Added),
            ("workspaces/new/namespace.xml", Added),
            ("workspaces/topp/workspace.xml", Deleted),
            ("workspaces/default.xml", Modified),
            ("gwc-gs.xml", Modified),
            ("security/config.xml", Modified),
            ("styles/line.sld", Modified),
            ("wms.xml", Added),
            ("user_projections/epsg.properties", Modified),
        ] {
            assert!(plan(path, kind).is_err(), "{path} {kind:?}");
        }
    }

    #[test]
    fn new_icons_and_bodies_need_no_call_but_changed_ones_a_reload() {
        assert_eq!(plan("styles/img/pin.png", Added), Ok(None));
        assert_eq!(plan("workspaces/topp/styles/red.sld", Added), Ok(None));
        assert!(plan("styles/img/pin.png", Modified).is_err());
    }

    #[test]
    fn names_are_percent_encoded_in_the_endpoint() {
        assert_eq!(
            call("workspaces/topp/PostGIS Store/roads_é/featuretype.xml", Modified),
            "PUT /workspaces/topp/datastores/PostGIS%20Store/featuretypes/roads_%C3%A9?recalculate=none"
        );
    }

    #[test]
    fn changes_of_one_path_combine() {
        assert_eq!(Added.then(Modified), Some(Added));
        assert_eq!(Added.then(Deleted), None);
        assert_eq!(Modified.then(Deleted), Some(Deleted));
        assert_eq!(Deleted.then(Added), Some(Modified));
        assert_eq!(Modified.then(Modified), Some(Modified));
    }

    #[test]
    fn a_rewrite_may_differ_in_stamps_and_encrypted_passwords_but_not_in_ids() {
        let master = br#"<dataStore>
  <id>DataStoreInfoImpl-1</id>
  <name>states</name>
  <dateCreated>2026-01-01 10:00:00.0 UTC</dateCreated>
  <connectionParameters>
    <entry key="passwd">crypt2:AAAA</entry>
  </connectionParameters>
</dataStore>"#;
        let rewrite = br#"<dataStore>
    <id>DataStoreInfoImpl-1</id>
    <name>states</name>
    <dateCreated>2026-12-04 04:00:00.0 UTC</dateCreated>
    <dateModified>2026-12-04 04:00:00.1 UTC</dateModified>
    <connectionParameters>
      <entry key="passwd">crypt2:BBBB</entry>
    </connectionParameters>
</dataStore>"#;
        assert_eq!(same_object(master, rewrite), Ok(()));
        let new_id = String::from_utf8_lossy(rewrite).replace("Impl-1", "Impl-2");
        let e = same_object(master, new_id.as_bytes()).unwrap_err();
        assert!(
            e.contains("DataStoreInfoImpl-2") && e.contains("DataStoreInfoImpl-1"),
            "{e}"
        );
        let fewer = String::from_utf8_lossy(rewrite).replace("<name>states</name>", "");
        assert!(same_object(master, fewer.as_bytes()).is_err());
        assert!(same_object(master, b"<dataStore><id>").is_err());
    }
}
