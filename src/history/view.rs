//! What `gscluster log` and `gscluster show` print, read from the history (the same code
//! whether the command reads the state itself or a running daemon answers for it).

use super::{Change, Group, Kind};
use serde::{Deserialize, Serialize};

/// `gscluster log`'s filters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    /// Only changes of these paths, or of what is below them (all when empty).
    pub paths: Vec<String>,
    /// Only groups recorded at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only groups this node made.
    pub node: Option<String>,
    /// At most this many lines.
    pub limit: usize,
    pub json: bool,
}

/// Whether `path` is one of `paths` or below one of them (every path when `paths` is empty).
pub fn within(paths: &[String], path: &str) -> bool {
    paths.is_empty()
        || paths.iter().any(|p| {
            let p = p.trim_end_matches('/');
            path == p || (path.starts_with(p) && path.as_bytes().get(p.len()) == Some(&b'/'))
        })
}

/// One line of `log`: a change of one group.
#[derive(Serialize)]
struct LogLine<'a> {
    id: u64,
    time: String,
    origin: &'a str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    op: &'static str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<String>,
    size: u64,
    version: String,
}

/// `log`'s output: newest first, one line per change, a group's changes under its id.
pub fn log(db: &redb::Database, q: &LogQuery) -> Result<String, redb::Error> {
    let mut out = String::new();
    let mut lines = 0;
    let limit = if q.limit == 0 { usize::MAX } else { q.limit };
    // Groups that cannot match are not decoded: they hold none of the paths, or not the node.
    let needles: Vec<memchr::memmem::Finder> = (q.paths.iter())
        .map(|p| memchr::memmem::Finder::new(p.trim_end_matches('/').as_bytes()))
        .collect();
    let node = q
        .node
        .as_deref()
        .map(|n| memchr::memmem::Finder::new(n.as_bytes()));
    let maybe = |raw: &[u8]| {
        (needles.is_empty() || needles.iter().any(|n| n.find(raw).is_some()))
            && node.as_ref().is_none_or(|n| n.find(raw).is_some())
    };
    super::walk_where(db, None, maybe, |id, g| {
        if q.since_ms.is_some_and(|s| g.time_ms < s) {
            return false;
        }
        if q.node.as_deref().is_some_and(|n| n != g.origin) {
            return true;
        }
        for c in g.changes.iter().filter(|c| within(&q.paths, &c.path)) {
            if lines == limit {
                return false;
            }
            lines += 1;
            let line = LogLine {
                id,
                time: super::time::format(g.time_ms),
                origin: &g.origin,
                kind: g.kind.word(),
                seq: seq(&g.kind),
                op: c.op(),
                path: &c.path,
                object: object_name(&c.path),
                size: if c.deleted { 0 } else { c.size },
                version: format!("{}@{}", c.version.hlc, c.version.origin),
            };
            if q.json {
                out.push_str(&serde_json::to_string(&line).expect("a log line encodes"));
            } else {
                out.push_str(&text_line(&line));
            }
            out.push('\n');
        }
        true
    })?;
    Ok(out)
}

fn seq(kind: &Kind) -> Option<u64> {
    match kind {
        Kind::Delta { seq } | Kind::Local { seq } => Some(*seq),
        _ => None,
    }
}

fn text_line(l: &LogLine) -> String {
    let what = match &l.object {
        Some(o) => format!("{}  ({o})", l.path),
        None => l.path.to_string(),
    };
    let size = if l.op == "delete" {
        String::new()
    } else {
        format!("  {} B", l.size)
    };
    format!(
        "{:>6}  {}  {:<12} {:<8} {:<6} {what}{size}",
        l.id, l.time, l.origin, l.kind, l.op
    )
}

/// The catalog object a path holds, named as GeoServer's UI names it (`layer topp:roads`), for
/// the files whose folder layout names it (geoserver-datadir.md); `None` for the rest.
pub fn object_name(path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split('/').collect();
    let xml = |f: &str| {
        f.strip_suffix(".xml")
            .filter(|n| !n.is_empty())
            .map(str::to_string)
    };
    Some(match segs.as_slice() {
        ["global.xml"] => "global settings".into(),
        ["logging.xml"] => "logging settings".into(),
        [f] if ["wms.xml", "wfs.xml", "wcs.xml", "wmts.xml", "wps.xml"].contains(f) => {
            format!("service {}", xml(f)?)
        }
        ["styles", f] if f.ends_with(".xml") => format!("style {}", xml(f)?),
        ["layergroups", f] if f.ends_with(".xml") => format!("layer group {}", xml(f)?),
        ["workspaces", ws, "workspace.xml"] => format!("workspace {ws}"),
        ["workspaces", ws, "namespace.xml"] => format!("namespace {ws}"),
        ["workspaces", ws, "settings.xml"] => format!("workspace settings {ws}"),
        ["workspaces", ws, "styles", f] if f.ends_with(".xml") => {
            format!("style {ws}:{}", xml(f)?)
        }
        ["workspaces", ws, "layergroups", f] if f.ends_with(".xml") => {
            format!("layer group {ws}:{}", xml(f)?)
        }
        ["workspaces", ws, store, f]
            if [
                "datastore.xml",
                "coveragestore.xml",
                "wmsstore.xml",
                "wmtsstore.xml",
            ]
            .contains(f) =>
        {
            format!("store {ws}:{store}")
        }
        ["workspaces", ws, _, res, "layer.xml"] => format!("layer {ws}:{res}"),
        ["workspaces", ws, _, res, f]
            if [
                "featuretype.xml",
                "coverage.xml",
                "wmslayer.xml",
                "wmtslayer.xml",
            ]
            .contains(f) =>
        {
            format!("resource {ws}:{res}")
        }
        _ => return None,
    })
}

/// `show`'s output: the group's files, each with what it held before; with `diff`, each as a
/// unified diff against the version before it (content the history no longer keeps is said).
pub fn show(
    db: &redb::Database,
    id: u64,
    diff: bool,
) -> Result<Result<String, String>, redb::Error> {
    let Some(g) = super::group(db, id)? else {
        let e = super::extent(db)?;
        return Ok(Err(format!(
            "change {id} is not in this node's history ({})",
            if e.groups == 0 {
                "it holds none".to_string()
            } else {
                format!(
                    "it holds {} change(s), the newest {}; older ones were pruned",
                    e.groups, e.newest_id
                )
            }
        )));
    };
    let mut out = heading(id, &g);
    for c in &g.changes {
        let object = object_name(&c.path).map_or(String::new(), |o| format!("  ({o})"));
        let size = if c.deleted {
            String::new()
        } else {
            format!(", {} B", c.size)
        };
        out.push_str(&format!(
            "  {:<6} {}{object}  version {}@{}{size}\n",
            c.op(),
            c.path,
            c.version.hlc,
            c.version.origin
        ));
    }
    if diff {
        for c in &g.changes {
            out.push('\n');
            out.push_str(&change_diff(db, c)?);
        }
    }
    Ok(Ok(out))
}

fn heading(id: u64, g: &Group) -> String {
    let what = match &g.kind {
        Kind::Delta { seq } => format!("Delta {seq} of {}", g.origin),
        Kind::Local { seq } => format!("edit on {}, published as Delta {seq}", g.origin),
        Kind::Resync => format!("resync of {}", g.origin),
        Kind::Import => format!("air-gap bundle of {}, imported", g.origin),
        Kind::Rollback { to } => format!("rollback on {} to the tree as it was {to}", g.origin),
    };
    format!(
        "change {id}: {what}, recorded {}, {} file(s)\n",
        super::time::format(g.time_ms),
        g.changes.len()
    )
}

fn change_diff(db: &redb::Database, c: &Change) -> Result<String, redb::Error> {
    let side = |sha: Option<&super::Sha>| -> Result<Option<Vec<u8>>, redb::Error> {
        match sha {
            None => Ok(Some(Vec::new())),
            Some(s) => super::content(db, s),
        }
    };
    let old = side(c.before.as_ref())?;
    let new = side((!c.deleted).then_some(&c.sha256))?;
    let a = match c.before {
        Some(_) => format!("a/{}", c.path),
        None => "/dev/null".into(),
    };
    let b = if c.deleted {
        "/dev/null".into()
    } else {
        format!("b/{}", c.path)
    };
    Ok(match (old, new) {
        (Some(old), Some(new)) => super::diff::unified(&a, &b, &old, &new),
        (None, _) => format!(
            "{}: the version before this change is not kept (the history began after it)\n",
            c.path
        ),
        (_, None) => format!("{}: this version's content is not kept\n", c.path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_named_from_their_paths() {
        let n = |p| object_name(p);
        assert_eq!(
            n("workspaces/topp/roads_ds/roads/layer.xml").as_deref(),
            Some("layer topp:roads")
        );
        assert_eq!(
            n("workspaces/topp/roads_ds/roads/featuretype.xml").as_deref(),
            Some("resource topp:roads")
        );
        assert_eq!(
            n("workspaces/topp/roads_ds/datastore.xml").as_deref(),
            Some("store topp:roads_ds")
        );
        assert_eq!(
            n("workspaces/topp/workspace.xml").as_deref(),
            Some("workspace topp")
        );
        assert_eq!(n("styles/line.xml").as_deref(), Some("style line"));
        assert_eq!(
            n("workspaces/topp/styles/x.xml").as_deref(),
            Some("style topp:x")
        );
        assert_eq!(n("wms.xml").as_deref(), Some("service wms"));
        assert_eq!(n("styles/line.sld"), None);
        assert_eq!(n("security/usergroup/default/users.xml"), None);
    }

    #[test]
    fn paths_select_themselves_and_what_is_below_them() {
        let p = vec!["workspaces/topp".to_string()];
        assert!(within(&p, "workspaces/topp"));
        assert!(within(&p, "workspaces/topp/workspace.xml"));
        assert!(!within(&p, "workspaces/topp2/workspace.xml"));
        assert!(within(
            &["workspaces/topp/".into()],
            "workspaces/topp/a.xml"
        ));
        assert!(within(&[], "anything"));
    }
}
