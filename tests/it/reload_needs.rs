//! A change costs GeoServer what it is worth: files GeoServer re-reads by itself — a style body,
//! the tile layer of an existing layer, the access rules (with `security/**` replicated) —
//! replicate without a `/rest/reload`; a catalog change still makes exactly one.

use crate::support::cluster::Cluster;
use crate::support::generator::Spec;
use crate::support::node::{wait_until_logs, Node};
use gscluster::datadir::default_include;
use std::fs;
use std::path::Path;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);
const NOT_NEEDED: &str = "no GeoServer reload needed";

/// Whether the slave's GeoServer has reloaded since the last write that asked for one: its
/// last "GeoServer reloaded" line comes after its last line that wrote files asking for a
/// reload (applies log before they ask; a reload never starts while an apply is under way).
fn reload_settled(slave: &Node) -> bool {
    let log = slave.log_contents();
    let lines: Vec<&str> = log.lines().collect();
    let last = |wanted: &dyn Fn(&str) -> bool| lines.iter().rposition(|l| wanted(l));
    let wrote = last(&|l| {
        l.contains("GeoServer reload requested")
            || (l.contains("resync round") && l.contains(" complete in "))
    });
    match (wrote, last(&|l| l.contains("GeoServer reloaded"))) {
        (Some(w), Some(r)) => r > w,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

fn not_needed(slave: &Node) -> usize {
    slave.log_contents().matches(NOT_NEEDED).count()
}

/// Write `rel` on the master and wait until the slave holds it and logged that its GeoServer
/// needs no reload for it.
fn replicate_without_reload(c: &Cluster, rel: &str, bytes: &[u8]) {
    let slave = &c.slaves[0];
    let before = not_needed(&slave.node);
    let file = c.master_dir().join(rel);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, bytes).unwrap();
    let target = slave.dir().join(rel);
    wait_until_logs(
        &format!("{rel} without a reload"),
        DEADLINE,
        &[&slave.node],
        || fs::read(&target).is_ok_and(|b| b == bytes) && not_needed(&slave.node) > before,
    );
}

#[test]
fn files_geoserver_rereads_by_itself_replicate_without_a_reload() {
    let mut c = Cluster::start_with(&Spec::small(), 73, 1, |cfg| {
        let mut include = default_include();
        include.push("security/**".into());
        cfg.replicate_include = Some(include);
    });
    let root = c.master_dir().to_path_buf();
    // A catalog change first; once its reload is done, the count is the baseline.
    c.catalog.add_layer(&root, 0, 0, "baseline");
    c.converge(DEADLINE);
    c.wait_logged_applied(DEADLINE);
    let slave = &c.slaves[0];
    wait_until_logs("the baseline reload", DEADLINE, &[&slave.node], || {
        reload_settled(&slave.node)
    });
    let baseline = slave.gs.reload_request_count();
    assert!(baseline > 0, "the baseline change made no reload");

    // 1. A style body (ResourcePool re-reads it).
    let style = c.catalog.styles[0].body_path();
    let mut body = fs::read(root.join(&style)).unwrap();
    body.extend_from_slice(b"\n<!-- edited on the master -->\n");
    replicate_without_reload(&c, &style, &body);
    // 2. The tile layer of an existing layer (GWC's tile layer catalog re-reads it).
    let gwc = c.catalog.layers[0].gwc_file();
    let mut tile_layer = fs::read(root.join(&gwc)).unwrap();
    tile_layer.extend_from_slice(b"\n<!-- edited on the master -->\n");
    replicate_without_reload(&c, &gwc, &tile_layer);
    // 3. The data access rules (GeoServer checks their modification time on every lookup).
    let rules = b"*.*.r=*\ntopp.*.w=ROLE_EDITOR\n";
    replicate_without_reload(&c, "security/layers.properties", rules);
    assert_eq!(
        slave.gs.reload_request_count(),
        baseline,
        "a reload for a file GeoServer re-reads itself\n{}",
        c.logs()
    );

    // 4. A new layer is a catalog change: exactly one reload.
    c.catalog
        .add_layer(&root, 0, 0, "after the self-read files");
    c.converge(DEADLINE);
    c.wait_logged_applied(DEADLINE);
    let slave = &c.slaves[0];
    wait_until_logs("the new layer's reload", DEADLINE, &[&slave.node], || {
        reload_settled(&slave.node) && slave.gs.reload_request_count() > baseline
    });
    assert_eq!(
        slave.gs.reload_request_count(),
        baseline + 1,
        "{}",
        c.logs()
    );
    assert!(
        Path::new(&slave.dir().join("security/layers.properties")).is_file(),
        "the rules replicated"
    );

    // 5. GeoServer's security configuration: `/rest/reload` leaves the security manager as it
    //    was, so it is reloaded too (`/rest/security/acl/catalog/reload`), once.
    assert_eq!(slave.gs.security_reloads(), 0);
    let config = "<security>\n  <roleServiceName>default</roleServiceName>\n  <authProviderNames>\n    <string>default</string>\n  </authProviderNames>\n</security>\n";
    fs::create_dir_all(root.join("security")).unwrap();
    fs::write(root.join("security/config.xml"), config).unwrap();
    c.converge(DEADLINE);
    c.wait_logged_applied(DEADLINE);
    let slave = &c.slaves[0];
    wait_until_logs("the security reload", DEADLINE, &[&slave.node], || {
        reload_settled(&slave.node) && slave.gs.security_reloads() > 0
    });
    assert_eq!(
        slave.gs.reload_request_count(),
        baseline + 2,
        "{}",
        c.logs()
    );
    assert_eq!(slave.gs.security_reloads(), 1, "{}", c.logs());
}
