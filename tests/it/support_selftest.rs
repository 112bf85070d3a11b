//! Multi-process tests of gscluster. For now: the tests of the support module itself (generator,
//! stand-in GeoServer, launcher), so the helpers the cluster tests rely on are known to be right.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::generator::{generate, Catalog, ResourceKind, Spec};
use crate::support::geoserver::{base64, catalog_problems, StandInGeoServer};
use crate::support::node::{
    assert_converged, diff_summary, free_port, replicated_tree, tree, wait_until, wait_until_logs,
    Node, NodeConfig,
};

fn generated(seed: u64) -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let cat = generate(dir.path(), &Spec::small(), seed);
    (dir, cat)
}

fn update_sequence(root: &Path) -> u64 {
    let xml = fs::read_to_string(root.join("global.xml")).unwrap();
    let start = xml.find("<updateSequence>").unwrap() + "<updateSequence>".len();
    xml[start..start + xml[start..].find('<').unwrap()]
        .parse()
        .unwrap()
}

// ----- generator -----

#[test]
fn same_seed_generates_identical_trees_and_another_seed_differs() {
    let (a, _) = generated(7);
    let (b, _) = generated(7);
    let (c, _) = generated(8);
    assert_eq!(
        tree(a.path(), &[]),
        tree(b.path(), &[]),
        "{}",
        diff_summary(&tree(a.path(), &[]), &tree(b.path(), &[]))
    );
    assert_ne!(tree(a.path(), &[]), tree(c.path(), &[]));
}

#[test]
fn generated_tree_has_geoserver_shape_and_node_local_content() {
    let (dir, cat) = generated(1);
    let root = dir.path();
    for f in [
        "global.xml",
        "wms.xml",
        "wfs.xml",
        "logging.xml",
        "workspaces/default.xml",
    ] {
        assert!(root.join(f).is_file(), "{f}");
    }
    for f in [
        "logs/geoserver.log",
        "temp/x.tmp",
        "data/roads.shp",
        "gwc/layer/00/01.png",
        "security/usergroup/default/users.xml",
    ] {
        assert!(root.join(f).is_file(), "{f}");
    }
    assert!(fs::read_to_string(root.join("global.xml"))
        .unwrap()
        .contains("<updateSequence>"));
    assert_eq!(cat.workspaces.len(), 2);
    assert_eq!(cat.stores.len(), 6);
    assert_eq!(cat.layers.len(), 12);
    assert!(cat.stores.iter().any(|s| s.kind == ResourceKind::Coverage));
    for ws in &cat.workspaces {
        assert!(root
            .join(format!("workspaces/{}/namespace.xml", ws.name))
            .is_file());
    }
    for l in &cat.layers {
        assert!(
            root.join(l.layer_file()).is_file() && root.join(l.resource_file()).is_file(),
            "{}",
            l.dir
        );
        assert!(root.join(l.gwc_file()).is_file());
        assert!(
            l.id.starts_with("LayerInfoImpl-") && l.id.matches(':').count() == 2,
            "{}",
            l.id
        );
    }
    let datastore = cat
        .stores
        .iter()
        .find(|s| s.kind == ResourceKind::FeatureType)
        .unwrap();
    let xml = fs::read_to_string(root.join(format!("{}/datastore.xml", datastore.dir))).unwrap();
    assert!(xml.contains("<entry key=\"passwd\">crypt1:"));
    let paths: Vec<String> = tree(root, &[]).into_keys().collect();
    assert!(paths.iter().any(|p| p.contains(' ')), "a path with a space");
    assert!(paths.iter().any(|p| !p.is_ascii()), "a non-ASCII path");
    assert!(paths.iter().any(|p| p.ends_with(".ftl")), "a template");
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("styles/img/") && p.ends_with(".png")),
        "an icon"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("layergroups/")),
        "a layer group"
    );
}

#[test]
fn generated_tree_has_no_unresolved_references_before_and_during_200_random_ops() {
    let (dir, mut cat) = generated(42);
    assert_eq!(catalog_problems(dir.path()), Default::default());
    for i in 0..200 {
        cat.random_ops(dir.path(), 1, 1000 + i);
        let problems = catalog_problems(dir.path());
        assert!(problems.is_empty(), "after op {i}: {problems:#?}");
    }
    // The record the tests mutate through must match the disk exactly.
    let on_disk: Vec<String> = (tree(dir.path(), &[]).into_keys())
        .filter(|p| p.ends_with("/layer.xml"))
        .collect();
    let mut recorded: Vec<String> = cat.layers.iter().map(|l| l.layer_file()).collect();
    recorded.sort();
    assert_eq!(on_disk, recorded);
    eprintln!(
        "after 200 ops: {} workspaces, {} stores, {} layers, {} styles, {} groups",
        cat.workspaces.len(),
        cat.stores.len(),
        cat.layers.len(),
        cat.styles.len(),
        cat.groups.len()
    );
}

#[test]
fn mutations_write_what_they_report_and_bump_update_sequence() {
    let (dir, mut cat) = generated(3);
    let root = dir.path();
    let seq = update_sequence(root);
    let touched = cat.add_layer(root, 0, 0, "Nouvelle couche");
    assert_eq!(touched.last().unwrap(), "global.xml");
    assert_eq!(update_sequence(root), seq + 1);
    let layer = cat.layers.last().unwrap().clone();
    let resource_pos = touched
        .iter()
        .position(|p| *p == layer.resource_file())
        .unwrap();
    let layer_pos = touched
        .iter()
        .position(|p| *p == layer.layer_file())
        .unwrap();
    assert!(
        resource_pos < layer_pos,
        "resource before layer: {touched:?}"
    );
    touched
        .iter()
        .for_each(|p| assert!(root.join(p).is_file(), "{p}"));

    cat.modify_layer(root, &layer.id);
    assert!(fs::read_to_string(root.join(layer.resource_file()))
        .unwrap()
        .contains("révision"));

    let touched = cat.rename_layer(root, &layer.id, "Renamed layer");
    assert!(!root.join(&layer.dir).exists());
    assert!(touched.iter().any(|p| p.starts_with(&layer.dir)));
    let renamed = cat.layer(&layer.id).clone();
    assert!(root.join(renamed.layer_file()).is_file());

    let touched = cat.delete_layer(root, &layer.id);
    assert!(!root.join(&renamed.dir).exists() && !root.join(renamed.gwc_file()).exists());
    assert!(touched.contains(&renamed.gwc_file()));

    let touched = cat.add_style(root, "ma légende");
    assert!(
        touched.iter().position(|p| p.ends_with(".sld"))
            < touched.iter().position(|p| p.ends_with("légende.xml"))
    );
    cat.modify_style_body(root, "ma légende");
    cat.delete_style(root, "ma légende");
    assert!(!root.join("styles/ma légende.xml").exists());

    cat.add_workspace(root, "nouvel_espace");
    assert!(root
        .join("workspaces/nouvel_espace/namespace.xml")
        .is_file());
    cat.delete_workspace(root, "nouvel_espace");
    assert!(!root.join("workspaces/nouvel_espace").exists());
    assert_eq!(catalog_problems(root), Default::default());
    assert_eq!(update_sequence(root), seq + 9);
}

#[test]
fn store_group_and_workspace_edits_write_what_they_report_and_keep_references_whole() {
    let (dir, mut cat) = generated(6);
    let root = dir.path();
    let seq = update_sequence(root);

    // A store: a new password, then deleted with its layers (out of groups, tile layers gone).
    let store = cat.stores[0].clone();
    let file = match store.kind {
        ResourceKind::FeatureType => "datastore.xml",
        ResourceKind::Coverage => "coveragestore.xml",
    };
    let before = fs::read(root.join(&store.dir).join(file)).unwrap();
    let touched = cat.modify_store(root, &store.id);
    assert_eq!(
        touched,
        [format!("{}/{file}", store.dir), "global.xml".into()]
    );
    if store.kind == ResourceKind::FeatureType {
        assert_ne!(fs::read(root.join(&store.dir).join(file)).unwrap(), before);
    }
    let layers: Vec<_> = (cat.layers.iter())
        .filter(|l| l.store_id == store.id)
        .cloned()
        .collect();
    assert!(!layers.is_empty(), "the generated store has layers");
    let touched = cat.delete_store(root, &store.id);
    assert!(!root.join(&store.dir).exists());
    for l in &layers {
        assert!(touched.contains(&l.layer_file()) && touched.contains(&l.gwc_file()));
        assert!(!root.join(l.gwc_file()).exists());
        assert!(cat.groups.iter().all(|g| !g.layers.contains(&l.id)));
    }
    assert_eq!(catalog_problems(root), Default::default());

    // A group: one more layer in it, then deleted with its tile layer.
    cat.add_group(root, "groupe_test");
    let group = cat.groups.last().unwrap().clone();
    cat.modify_group(root, &group.id);
    let modified = cat.groups.last().unwrap();
    assert_eq!(modified.layers.len(), group.layers.len() + 1);
    let xml = fs::read_to_string(root.join(group.file())).unwrap();
    assert!(xml.contains(modified.layers.last().unwrap()));
    let touched = cat.delete_group(root, &group.id);
    assert_eq!(
        touched[..2],
        [crate::support::model::gwc_file(&group.id), group.file()]
    );
    assert!(!root.join(group.file()).exists());

    // A workspace: its isolated flag, in both files.
    let ws = cat.workspaces[0].name.clone();
    cat.modify_workspace(root, &ws);
    for f in ["workspace.xml", "namespace.xml"] {
        let xml = fs::read_to_string(root.join("workspaces").join(&ws).join(f)).unwrap();
        assert!(xml.contains("<isolated>true</isolated>"), "{f}: {xml}");
    }
    assert_eq!(catalog_problems(root), Default::default());
    assert_eq!(update_sequence(root), seq + 6);
}

#[test]
#[should_panic(expected = "still in use")]
fn deleting_a_style_in_use_is_refused() {
    let (dir, mut cat) = generated(4);
    let used = cat.layers[0].default_style.clone();
    let name = cat
        .styles
        .iter()
        .find(|s| s.id == used)
        .unwrap()
        .name
        .clone();
    cat.delete_style(dir.path(), &name);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
        #[test]
        fn any_seed_and_ops_keep_the_catalog_consistent(seed in any::<u64>(), ops in any::<u64>()) {
            let dir = tempfile::tempdir().unwrap();
            let spec = Spec { workspaces: 1, stores_per_workspace: 2, layers_per_store: 2, global_styles: 2, layer_groups: 1 };
            let mut cat = generate(dir.path(), &spec, seed);
            cat.random_ops(dir.path(), 30, ops);
            prop_assert!(catalog_problems(dir.path()).is_empty());
        }
    }
}

// ----- reference checker -----

#[test]
fn checker_reports_a_missing_store_and_a_missing_style_body() {
    let (dir, cat) = generated(5);
    let store = &cat.stores[0];
    let file = if store.kind == ResourceKind::Coverage {
        "coveragestore.xml"
    } else {
        "datastore.xml"
    };
    fs::remove_file(dir.path().join(format!("{}/{file}", store.dir))).unwrap();
    let style = &cat.styles[0];
    fs::remove_file(dir.path().join(style.body_path())).unwrap();
    let problems = catalog_problems(dir.path());
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&store.id) && p.contains("<store>")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("style body")),
        "{problems:#?}"
    );
}

#[test]
fn checker_reports_unparsable_files() {
    let (dir, cat) = generated(6);
    fs::write(
        dir.path().join(cat.layers[0].layer_file()),
        "<layer><id>x</id>",
    )
    .unwrap();
    let problems = catalog_problems(dir.path());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("cannot parse") || p.contains("unclosed")),
        "{problems:#?}"
    );
}

/// Real data directories: the checker must understand them and find only their real flaws.
#[test]
fn checker_on_real_fixtures_finds_only_small_inconsistencies() {
    let fixtures = Path::new("/work/shared/fixtures/datadirs");
    if !fixtures.exists() {
        eprintln!("skipped: fixtures not present");
        return;
    }
    let magosm = catalog_problems(&fixtures.join("magosm"));
    // magosm's one known flaw: a style whose body file is missing.
    let expected =
        "styles/highways_line_legend_test.xml: style body highways_line_legend_test.sld is missing";
    assert_eq!(magosm.into_iter().collect::<Vec<_>>(), [expected]);
    let nhs = catalog_problems(&fixtures.join("nhs-bi"));
    assert!(nhs.is_empty(), "{nhs:#?}");
}

// ----- stand-in GeoServer -----

/// A raw HTTP/1.1 request, so the stand-in is tested without any client library's help.
fn http(port: u16, method: &str, path: &str, auth: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = auth
        .map(|a| format!("Authorization: Basic {}\r\n", base64(a.as_bytes())))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, response))
}

/// `POST /geoserver/rest/reload` with the credentials every stand-in here is started with.
fn reload_as_admin(port: u16) -> std::io::Result<(u16, String)> {
    http(
        port,
        "POST",
        "/geoserver/rest/reload",
        Some("admin:geoserver"),
    )
}

#[test]
fn base64_matches_rfc4648_vectors() {
    for (input, out) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), out);
    }
    assert_eq!(base64(b"admin:geoserver"), "YWRtaW46Z2Vvc2VydmVy");
}

#[test]
fn reload_with_right_credentials_is_recorded_without_problems() {
    let (dir, _) = generated(10);
    let gs = StandInGeoServer::start(dir.path(), "admin", "geoserver");
    assert!(gs.url().starts_with("http://127.0.0.1:") && gs.url().ends_with("/geoserver"));
    let (status, response) = reload_as_admin(gs.port()).unwrap();
    assert_eq!(status, 200, "{response}");
    assert!(response.contains("Content-Length: 0"));
    let reloads = gs.reloads();
    assert_eq!(reloads.len(), 1);
    assert!(reloads[0].authorized && reloads[0].problems.is_empty());
    assert_eq!(gs.successful_reloads().len(), 1);
}

#[test]
fn reload_with_wrong_or_missing_credentials_is_refused_with_401() {
    let (dir, _) = generated(11);
    let gs = StandInGeoServer::start(dir.path(), "admin", "geoserver");
    let (status, response) = http(
        gs.port(),
        "POST",
        "/geoserver/rest/reload",
        Some("admin:wrong"),
    )
    .unwrap();
    assert_eq!(status, 401);
    assert!(response.contains("WWW-Authenticate: Basic"));
    assert_eq!(
        http(gs.port(), "POST", "/geoserver/rest/reload", None)
            .unwrap()
            .0,
        401
    );
    let reloads = gs.reloads();
    assert_eq!(reloads.len(), 2);
    assert!(reloads.iter().all(|r| !r.authorized && r.status == 401));
    assert!(gs.successful_reloads().is_empty());
    assert_eq!(
        http(gs.port(), "GET", "/geoserver/web", None).unwrap().0,
        404
    );
}

#[test]
fn reload_lists_problems_when_a_store_file_is_missing() {
    let (dir, cat) = generated(12);
    let gs = StandInGeoServer::start(dir.path(), "admin", "geoserver");
    let store = cat
        .stores
        .iter()
        .find(|s| s.kind == ResourceKind::FeatureType)
        .unwrap();
    fs::remove_file(dir.path().join(format!("{}/datastore.xml", store.dir))).unwrap();
    assert_eq!(reload_as_admin(gs.port()).unwrap().0, 200);
    let reload = &gs.reloads()[0];
    let expected = cat.layers.iter().filter(|l| l.store_id == store.id).count();
    assert_eq!(reload.problems.len(), expected, "{:#?}", reload.problems);
    assert!(reload.problems.iter().all(|p| p.contains(&store.id)));
}

#[test]
fn status_mode_answers_500_until_reset() {
    let (dir, _) = generated(13);
    let gs = StandInGeoServer::start(dir.path(), "admin", "geoserver");
    gs.set_status(500);
    assert_eq!(reload_as_admin(gs.port()).unwrap().0, 500);
    gs.set_status(200);
    assert_eq!(reload_as_admin(gs.port()).unwrap().0, 200);
    let statuses: Vec<u16> = gs.reloads().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 200]);
    assert_eq!(gs.successful_reloads().len(), 1);
}

#[test]
fn down_mode_refuses_connections_and_recovers_on_the_same_port() {
    let (dir, _) = generated(14);
    let gs = StandInGeoServer::start(dir.path(), "admin", "geoserver");
    gs.set_down(true);
    wait_until(
        "stand-in refuses connections",
        Duration::from_secs(5),
        || reload_as_admin(gs.port()).is_err(),
    );
    gs.set_down(false);
    wait_until("stand-in answers again", Duration::from_secs(5), || {
        matches!(reload_as_admin(gs.port()), Ok((200, _)))
    });
    assert!(!gs.successful_reloads().is_empty());
}

#[test]
fn delay_mode_slows_reloads() {
    let (dir, _) = generated(15);
    let gs = StandInGeoServer::start(dir.path(), "admin", "geoserver");
    gs.set_delay(Duration::from_millis(300));
    let start = Instant::now();
    assert_eq!(reload_as_admin(gs.port()).unwrap().0, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_reload_costs_time_per_catalog_object_and_ows_answers_503_meanwhile() {
    let (dir, _) = generated(17);
    let objects = crate::support::references::catalog_objects(dir.path());
    assert!(objects > 20, "{objects} catalog objects");
    let gs = StandInGeoServer::start(dir.path(), "admin", "geoserver");
    gs.set_cost_per_object(Duration::from_millis(10));
    let ows = |gs: &StandInGeoServer| http(gs.port(), "GET", "/geoserver/ows", None).unwrap().0;
    assert_eq!(ows(&gs), 200);
    assert!(gs.serving());
    let port = gs.port();
    let reload = std::thread::spawn(move || reload_as_admin(port).unwrap().0);
    wait_until("the reload runs", Duration::from_secs(5), || !gs.serving());
    assert_eq!(ows(&gs), 503, "not serving while the catalog reloads");
    assert_eq!(
        http(gs.port(), "GET", "/geoserver/topp/wms", None)
            .unwrap()
            .0,
        503
    );
    assert_eq!(reload.join().unwrap(), 200);
    assert_eq!(ows(&gs), 200);
    let r = &gs.reloads()[0];
    let took = r.finished.expect("answered") - r.at;
    assert!(
        took >= Duration::from_millis(10) * objects as u32,
        "{took:?} for {objects}"
    );
}

#[test]
fn scripted_statuses_come_first_then_the_status_mode_again() {
    let (dir, _) = generated(16);
    let gs = StandInGeoServer::start(dir.path(), "admin", "geoserver");
    gs.answer_next(&[500, 503]);
    let reload = || reload_as_admin(gs.port()).unwrap();
    let (status, response) = reload();
    assert_eq!(status, 500);
    assert!(response.ends_with("java.lang.RuntimeException: catalog reload failed"));
    assert_eq!(reload().0, 503);
    assert_eq!(reload().0, 200);
    let statuses: Vec<u16> = gs.reloads().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 503, 200]);
}

#[test]
fn every_request_is_recorded_even_without_a_data_dir() {
    let gs = StandInGeoServer::start_without_data_dir("admin", "geoserver");
    let reload = |auth| {
        http(gs.port(), "POST", "/geoserver/rest/reload", auth)
            .unwrap()
            .0
    };
    assert_eq!(reload(Some("admin:geoserver")), 200);
    assert_eq!(reload(Some("admin:wrong")), 401);
    assert_eq!(
        http(gs.port(), "GET", "/geoserver/web", None).unwrap().0,
        404
    );
    let requests = gs.requests();
    assert_eq!(gs.request_count(), 3);
    let seen: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("POST", "/geoserver/rest/reload"),
            ("POST", "/geoserver/rest/reload"),
            ("GET", "/geoserver/web"),
        ]
    );
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some("Basic YWRtaW46Z2Vvc2VydmVy")
    );
    assert_eq!(requests[2].authorization, None);
    assert!(gs.successful_reloads()[0].problems.is_empty());
}

#[test]
fn start_on_serves_on_the_given_port() {
    let port = free_port();
    assert!(reload_as_admin(port).is_err());
    let gs = StandInGeoServer::start_on(port, None, "admin", "geoserver");
    assert_eq!(gs.port(), port);
    assert_eq!(gs.url(), format!("http://127.0.0.1:{port}/geoserver"));
    assert_eq!(reload_as_admin(port).unwrap().0, 200);
    assert_eq!(gs.request_count(), 1);
}

// ----- launcher and tree comparison -----

#[test]
fn free_ports_are_bindable() {
    let port = free_port();
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn node_config_renders_the_documented_toml() {
    let mut cfg = NodeConfig::new(
        "gs-a",
        "master",
        Path::new("/tmp/d \"q\""),
        Path::new("/tmp/s"),
        vec!["mqtt://127.0.0.1:1883".into()],
    );
    let value: toml::Value = toml::from_str(&cfg.to_toml()).unwrap();
    assert_eq!(value["node"]["id"].as_str(), Some("gs-a"));
    assert_eq!(value["node"]["role"].as_str(), Some("master"));
    assert_eq!(
        value["geoserver"]["data_dir"].as_str(),
        Some("/tmp/d \"q\"")
    );
    assert!(value["geoserver"].get("url").is_none());
    assert!(value.get("broker").is_none());
    assert_eq!(value["master"]["quiet_ms"].as_integer(), Some(20));
    assert_eq!(
        value["mqtt"]["servers"][0].as_str(),
        Some("mqtt://127.0.0.1:1883")
    );
    cfg.geoserver_url = Some("http://127.0.0.1:8080/geoserver".into());
    cfg.broker_listen = Some("127.0.0.1:1884".into());
    let value: toml::Value = toml::from_str(&cfg.to_toml()).unwrap();
    assert_eq!(
        value["geoserver"]["url"].as_str(),
        Some("http://127.0.0.1:8080/geoserver")
    );
    assert_eq!(value["broker"]["listen"].as_str(), Some("127.0.0.1:1884"));
    assert_eq!(
        value["geoserver"]["reload_max_delay_ms"].as_integer(),
        Some(2000)
    );
}

#[test]
fn replicated_tree_skips_node_local_content() {
    let (dir, _) = generated(20);
    let paths: Vec<String> = replicated_tree(dir.path()).into_keys().collect();
    for local in [
        "logs/",
        "temp/",
        "data/",
        "gwc/",
        "security/",
        "logging.xml",
    ] {
        assert!(!paths.iter().any(|p| p.starts_with(local)), "{local}");
    }
    assert!(paths.iter().any(|p| p.starts_with("gwc-layers/")));
    assert!(paths.contains(&"global.xml".to_string()));
}

#[test]
fn assert_converged_accepts_equal_trees_that_differ_only_in_node_local_content() {
    let (a, _) = generated(21);
    let (b, _) = generated(21);
    fs::write(b.path().join("logs/geoserver.log"), "another node's log").unwrap();
    assert_converged(a.path(), &[b.path()], Duration::from_secs(1));
}

#[test]
#[should_panic(expected = "different (1)")]
fn assert_converged_reports_a_diff_on_timeout() {
    let (a, mut cat) = generated(22);
    let (b, _) = generated(22);
    cat.modify_style_body(a.path(), &cat.styles[0].name.clone());
    // global.xml and the style body differ; both are "different".
    fs::write(
        b.path().join("global.xml"),
        fs::read(a.path().join("global.xml")).unwrap(),
    )
    .unwrap();
    assert_converged(a.path(), &[b.path()], Duration::from_millis(100));
}

#[test]
#[should_panic(expected = "timed out after")]
fn wait_until_panics_with_what_it_waited_for() {
    wait_until(
        "something that never happens",
        Duration::from_millis(50),
        || false,
    );
}

#[test]
fn binary_reports_its_version() {
    let r = crate::support::run::run(&["--version"], "info");
    assert!(r.stdout.contains(env!("CARGO_PKG_VERSION")), "{r:?}");
}

#[test]
fn node_with_embedded_broker_starts_and_stops_on_sigterm() {
    let (data, _) = generated(30);
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cfg = NodeConfig::new(
        "gs-a",
        "master",
        data.path(),
        state.path(),
        vec![format!("mqtt://127.0.0.1:{port}")],
    );
    cfg.broker_listen = Some(format!("127.0.0.1:{port}"));
    let mut node = Node::start(cfg);
    wait_until_logs(
        "broker accepts connections",
        Duration::from_secs(10),
        &[&node],
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    assert!(node.is_running());
    let status = node.stop().unwrap();
    assert!(status.success(), "{status:?}\n{}", node.log_contents());
}

/// Runs today against the stub binary too: a node whose config is invalid must exit by itself,
/// and the launcher must capture that, its log, and restart it with the same config.
#[test]
fn launcher_spawns_logs_and_restarts_a_node_that_exits() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let servers = vec![format!("mqtt://127.0.0.1:{port}")];
    let cfg = NodeConfig::new("gs-bad", "bogus-role", data.path(), state.path(), servers);
    let mut node = Node::start(cfg);
    assert!(node.config_path().is_file() && node.log_path().is_file());
    assert!(fs::read_to_string(node.config_path())
        .unwrap()
        .contains("role = \"bogus-role\""));
    wait_until_logs(
        "node with a bad role exits",
        Duration::from_secs(10),
        &[&node],
        || node.exit_status().is_some(),
    );
    let status = node.exit_status().unwrap();
    if !status.success() {
        // The real daemon: the error must name the key (design.md section 5).
        assert!(
            node.log_contents().contains("role"),
            "{}",
            node.log_contents()
        );
    }
    node.restart();
    wait_until(
        "restarted node exits again",
        Duration::from_secs(10),
        || node.exit_status().is_some(),
    );
}

#[test]
fn reload_with_a_chunked_or_sized_body_is_answered() {
    let (dir, _) = generated(16);
    let gs = StandInGeoServer::start(dir.path(), "admin", "geoserver");
    let auth = base64(b"admin:geoserver");
    for body in [
        "Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n".to_string(),
        "Content-Length: 5\r\n\r\nhello".to_string(),
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", gs.port())).unwrap();
        write!(
            stream,
            "POST /geoserver/rest/reload HTTP/1.1\r\nAuthorization: Basic {auth}\r\n{body}"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    }
    assert_eq!(gs.successful_reloads().len(), 2);
}

// ----- the fault-injecting proxy -----

mod proxy {
    use crate::support::proxy::{Faults, Proxy};
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    /// An echo server on a free port: every byte comes back.
    fn echo() -> u16 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = stream;
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    fn connect(p: &Proxy) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", p.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Send `n` bytes and read them back; the time it took.
    fn round_trip(s: &mut TcpStream, n: usize) -> std::io::Result<Duration> {
        let t0 = Instant::now();
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        s.write_all(&data)?;
        let mut back = vec![0u8; n];
        s.read_exact(&mut back)?;
        assert_eq!(back, data, "bytes arrive whole and in order");
        Ok(t0.elapsed())
    }

    #[test]
    fn bytes_pass_in_order_and_are_counted() {
        let p = Proxy::start(echo());
        let mut s = connect(&p);
        round_trip(&mut s, 100_000).unwrap();
        // The count moves just after each write, so the echo may be read a moment before.
        crate::support::node::wait_until("all bytes counted", Duration::from_secs(5), || {
            p.bytes() == (100_000, 100_000)
        });
        assert_eq!(p.accepted(), 1);
    }

    #[test]
    fn latency_jitter_and_a_bandwidth_cap_slow_the_link_without_reordering() {
        let p = Proxy::start(echo());
        let mut s = connect(&p);
        p.set(Faults {
            latency: Duration::from_millis(150),
            jitter: Duration::from_millis(50),
            ..Faults::default()
        });
        let took = round_trip(&mut s, 1000).unwrap();
        assert!(
            took >= Duration::from_millis(300),
            "150 ms each way: {took:?}"
        );
        p.set(Faults {
            bandwidth: Some(1_000_000),
            ..Faults::default()
        });
        // 200 kB at 1 MB/s, each way in turn as the echo sends it back.
        let took = round_trip(&mut s, 200_000).unwrap();
        assert!(
            took >= Duration::from_millis(180),
            "capped at 1 MB/s: {took:?}"
        );
    }

    #[test]
    fn a_black_hole_holds_the_connection_open_and_delivers_nothing_until_healed() {
        let p = Proxy::start(echo());
        let mut s = connect(&p);
        p.set(Faults {
            blackhole: true,
            ..Faults::default()
        });
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.write_all(b"lost").unwrap();
        let mut buf = [0u8; 16];
        let e = s.read(&mut buf).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "no answer and no close: {e:?}"
        );
        p.heal();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut held = [0u8; 4];
        s.read_exact(&mut held).unwrap();
        assert_eq!(
            &held, b"lost",
            "what was sent into the black hole arrives once healed"
        );
        round_trip(&mut s, 10).expect("the same connection works on");
    }

    #[test]
    fn half_open_lets_bytes_reach_upstream_and_holds_the_way_back_until_healed() {
        let p = Proxy::start(echo());
        let mut s = connect(&p);
        p.set(Faults {
            half_open: true,
            ..Faults::default()
        });
        s.write_all(b"ping").unwrap();
        crate::support::node::wait_until(
            "the bytes reached upstream",
            Duration::from_secs(5),
            || p.bytes().0 == 4,
        );
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 16];
        let e = s.read(&mut buf).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "the echo is held: {e:?}"
        );
        assert_eq!(p.bytes().1, 0);
        p.heal();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut held = [0u8; 4];
        s.read_exact(&mut held).unwrap();
        assert_eq!(&held, b"ping", "delivered once healed");
    }

    #[test]
    fn resets_cut_open_connections_and_refusal_closes_new_ones() {
        let p = Proxy::start(echo());
        let mut s = connect(&p);
        round_trip(&mut s, 10).unwrap();
        p.reset_all();
        let mut buf = [0u8; 16];
        let cut = match s.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
        };
        assert!(cut, "the connection is gone");
        p.set(Faults {
            refuse: true,
            ..Faults::default()
        });
        let mut s = connect(&p);
        let refused = match s.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
        };
        assert!(refused, "a new connection is closed at once");
        p.heal();
        let mut s = connect(&p);
        round_trip(&mut s, 10).unwrap();
    }
}
