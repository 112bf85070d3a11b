//! The stand-in GeoServer's catalog REST API, for per-object apply: what GeoServer's source says
//! its endpoints do to its memory and to the data directory, and nothing more.
//!
//! Modelled on (geoserver/geoserver, `src/restconfig/src/main/java/org/geoserver/rest/catalog/`
//! and `src/main/src/main/java/org/geoserver/`):
//! - a PUT updates the object the endpoint names and never changes its id
//!   (`CatalogBuilder.update` → `OwsUtils.copy` skips `id`); the object's file is written again
//!   by `GeoServerConfigPersister` with GeoServer's own serialization, here: the body with the
//!   id GeoServer holds and a fresh `<dateModified>` (`CatalogTimeStampUpdater`);
//! - a POST of a store, style or layer group keeps the body's `<id>` (`CatalogImpl.add` →
//!   `setId` only when null) and stamps `<dateCreated>`; `set_rest_new_ids(true)` plays a
//!   GeoServer that does not, so that a client can be seen to notice;
//! - a DELETE drops the object and its file;
//! - every catalog change saves `global.xml` again with `updateSequence` + 1
//!   (`UpdateSequenceListener`);
//! - `POST /rest/security/acl/catalog/reload` reloads the security manager
//!   (`org/geoserver/rest/security/CatalogSecurityController.java`).
//!
//! The stand-in's memory is the object ids it holds per file: loaded from the data directory at
//! start and at every reload, changed by these calls. Written apart from the product's planner
//! (src/reload/objects.rs), so a wrong endpoint there meets a 404 here.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// What a call did, for the caller's answer.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

fn answer(status: u16, body: impl Into<String>) -> Answer {
    Answer {
        status,
        body: body.into(),
    }
}

/// The file of the object `endpoint` names (query stripped), or `None` for an endpoint GeoServer
/// does not have. POSTs name a folder: the new object's name comes from the body.
fn file_of(dir: &Path, method: &str, endpoint: &str, body: &[u8]) -> Option<String> {
    let endpoint = endpoint.split('?').next().unwrap_or("");
    let decoded: Vec<String> = (endpoint.trim_start_matches('/').split('/'))
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let name = || element(body, "name");
    let store_file = |kind: &str| match kind {
        "datastores" => Some("datastore.xml"),
        "coveragestores" => Some("coveragestore.xml"),
        "wmsstores" => Some("wmsstore.xml"),
        "wmtsstores" => Some("wmtsstore.xml"),
        _ => None,
    };
    let services = ["wms", "wfs", "wcs", "wmts", "wps"];
    Some(match (method, segs.as_slice()) {
        ("PUT", ["settings"]) => "global.xml".into(),
        ("PUT", ["logging"]) => "logging.xml".into(),
        ("PUT", ["services", svc, "settings"]) if services.contains(svc) => format!("{svc}.xml"),
        ("PUT", ["services", svc, "workspaces", ws, "settings"]) if services.contains(svc) => {
            format!("workspaces/{ws}/{svc}.xml")
        }
        ("PUT", ["workspaces", ws, "settings"]) => format!("workspaces/{ws}/settings.xml"),
        ("PUT", ["workspaces", ws]) => format!("workspaces/{ws}/workspace.xml"),
        ("PUT", ["namespaces", ws]) => format!("workspaces/{ws}/namespace.xml"),
        ("POST", ["styles"]) => format!("styles/{}.xml", name()?),
        ("POST", ["layergroups"]) => format!("layergroups/{}.xml", name()?),
        ("POST", ["workspaces", ws, "styles"]) => format!("workspaces/{ws}/styles/{}.xml", name()?),
        ("POST", ["workspaces", ws, "layergroups"]) => {
            format!("workspaces/{ws}/layergroups/{}.xml", name()?)
        }
        ("POST", ["workspaces", ws, kind]) => {
            format!("workspaces/{ws}/{}/{}", name()?, store_file(kind)?)
        }
        ("PUT" | "DELETE", ["styles", n]) => format!("styles/{n}.xml"),
        ("PUT" | "DELETE", ["layergroups", n]) => format!("layergroups/{n}.xml"),
        ("PUT" | "DELETE", ["workspaces", ws, "styles", n]) => {
            format!("workspaces/{ws}/styles/{n}.xml")
        }
        ("PUT" | "DELETE", ["workspaces", ws, "layergroups", n]) => {
            format!("workspaces/{ws}/layergroups/{n}.xml")
        }
        ("PUT" | "DELETE", ["workspaces", ws, kind, store]) => {
            format!("workspaces/{ws}/{store}/{}", store_file(kind)?)
        }
        ("PUT" | "DELETE", ["workspaces", ws, kind, store, res_kind, res]) => {
            let file = match (*kind, *res_kind) {
                ("datastores", "featuretypes") => "featuretype.xml",
                ("coveragestores", "coverages") => "coverage.xml",
                ("wmsstores", "wmslayers") => "wmslayer.xml",
                _ => return None,
            };
            format!("workspaces/{ws}/{store}/{res}/{file}")
        }
        ("PUT" | "DELETE", ["layers", qualified]) => {
            let (ws, res) = qualified.split_once(':')?;
            // GeoServer finds a layer by name; on disk it is workspaces/ws/<store>/res/layer.xml.
            let stores = fs::read_dir(dir.join("workspaces").join(ws)).ok()?;
            stores
                .flatten()
                .map(|e| {
                    format!(
                        "workspaces/{ws}/{}/{res}/layer.xml",
                        e.file_name().to_string_lossy()
                    )
                })
                .find(|rel| dir.join(rel).is_file())
                .unwrap_or_else(|| format!("workspaces/{ws}/?/{res}/layer.xml"))
        }
        _ => return None,
    })
}

/// `%XX` escapes of a URL path segment decoded (as the servlet container does for GeoServer).
fn percent_decode(seg: &str) -> String {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The text of the first `<tag>` of `xml`.
fn element(xml: &[u8], tag: &str) -> Option<String> {
    let text = String::from_utf8_lossy(xml);
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&format!("</{tag}>"))?;
    Some(text[start..end].trim().to_string())
}

/// `xml` with the first `<tag>`'s text set to `value`, or the element added before the root's
/// end when there is none.
fn set_element(xml: &str, tag: &str, value: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    if let Some(start) = xml.find(&open) {
        let from = start + open.len();
        if let Some(len) = xml[from..].find(&close) {
            return format!("{}{value}{}", &xml[..from], &xml[from + len..]);
        }
    }
    match xml.rfind("</") {
        Some(at) => format!("{}  {open}{value}{close}\n{}", &xml[..at], &xml[at..]),
        None => xml.to_string(),
    }
}

/// Written the way GeoServer's resource store writes (`FileSystemResourceStore.out()`): a
/// temporary `<name>.<uuid>.tmp` beside the file, then a rename.
fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let tmp = path.with_file_name(format!("{name}.{}.tmp", std::process::id()));
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, &path).unwrap();
}

/// `UpdateSequenceListener`: every catalog change saves global.xml with the sequence + 1.
fn bump_update_sequence(dir: &Path) {
    let Ok(text) = fs::read_to_string(dir.join("global.xml")) else {
        return;
    };
    let next = element(text.as_bytes(), "updateSequence")
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(1, |n| n + 1);
    write(
        dir,
        "global.xml",
        &set_element(&text, "updateSequence", &next.to_string()),
    );
}

fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:03} UTC", d.as_secs(), d.subsec_millis())
}

/// One call of the catalog REST API. `memory`: per object file, the id GeoServer holds.
pub fn call(
    dir: &Path,
    memory: &mut BTreeMap<String, String>,
    new_ids: bool,
    method: &str,
    endpoint: &str,
    body: &[u8],
) -> Answer {
    let Some(rel) = file_of(dir, method, endpoint, body) else {
        return answer(404, format!("no such endpoint: {method} {endpoint}"));
    };
    let settings = !rel.starts_with("workspaces/")
        && !rel.starts_with("styles/")
        && !rel.starts_with("layergroups/")
        || rel.ends_with("/settings.xml")
        || ["wms", "wfs", "wcs", "wmts", "wps"]
            .iter()
            .any(|s| rel.ends_with(&format!("/{s}.xml")));
    let text = String::from_utf8_lossy(body).into_owned();
    match method {
        "PUT" if settings => {
            if !dir.join(&rel).is_file() {
                return answer(404, format!("no {rel}"));
            }
            write(dir, &rel, &text);
            // Saving settings is itself a change: the sequence moves on (global.xml too).
            bump_update_sequence(dir);
            answer(200, "")
        }
        "PUT" => {
            let Some(id) = memory.get(&rel).cloned() else {
                return answer(404, format!("No such object: {rel}"));
            };
            let rewrite = set_element(&set_element(&text, "id", &id), "dateModified", &now());
            write(dir, &rel, &rewrite);
            bump_update_sequence(dir);
            answer(200, "")
        }
        "POST" => {
            if memory.contains_key(&rel) {
                return answer(500, format!("{rel} already exists"));
            }
            let id = match element(body, "id") {
                Some(id) if !new_ids => id,
                _ => format!("Stand-in-{}", now().replace([' ', '.'], "-")),
            };
            let rewrite = set_element(&set_element(&text, "id", &id), "dateCreated", &now());
            write(dir, &rel, &rewrite);
            memory.insert(rel, id);
            bump_update_sequence(dir);
            answer(201, "")
        }
        "DELETE" => {
            if memory.remove(&rel).is_none() {
                return answer(404, format!("No such object: {rel}"));
            }
            let _ = fs::remove_file(dir.join(&rel));
            bump_update_sequence(dir);
            answer(200, "")
        }
        _ => answer(405, ""),
    }
}
