//! Convergence over the real fixture data directories (`shared/fixtures/datadirs` beside the
//! checkout; skipped when absent): a master and two slaves, all starting EMPTY, then the whole
//! fixture copied into the master at once (the "publish everything" burst), then a few edits.
//!
//! The expected slave content is the master's tree through the product's default filter; the
//! filter itself is tested against the same fixtures in tests/datadir_fixtures.rs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::cluster::{copy_tree, wait_for_subscriptions};
use crate::support::geoserver::{
    catalog_problems, problems_beyond_master, Reload, StandInGeoServer,
};
use crate::support::node::{converge, free_port, tree, wait_until_logs, Node, NodeConfig};
use gscluster::datadir::{default_exclude, default_include, Filter};

const CONVERGE: Duration = Duration::from_secs(60);
const MAX_RELOADS_PER_BURST: usize = 5;

type Tree = BTreeMap<String, [u8; 32]>;

fn fixtures() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GSCLUSTER_FIXTURES") {
        return Some(PathBuf::from(p)).filter(|p| p.is_dir());
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/fixtures/datadirs"))
        .find(|p| p.is_dir())
}

/// The master's files that must replicate, by the product's default filter.
fn expected(master: &Path) -> Tree {
    let filter = Filter::new(&default_include(), &default_exclude()).unwrap();
    tree(master, &[])
        .into_iter()
        .filter(|(path, _)| filter.matches(path))
        .collect()
}

struct Slave {
    node: Node,
    gs: StandInGeoServer,
    data: tempfile::TempDir,
    _state: tempfile::TempDir,
}

struct Fleet {
    name: String,
    master: Node,
    master_data: tempfile::TempDir,
    _master_state: tempfile::TempDir,
    slaves: Vec<Slave>,
}

/// Temp folders with spaces in their names, like the fixtures' own folders.
fn temp(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

impl Fleet {
    fn start(name: &str, slaves: usize) -> Fleet {
        let master_data = temp("master data ");
        let master_state = temp("master state ");
        let port = free_port();
        let servers = vec![format!("mqtt://127.0.0.1:{port}")];
        let mut cfg = NodeConfig::new(
            "fx-master",
            "master",
            master_data.path(),
            master_state.path(),
            servers.clone(),
        );
        cfg.broker_listen = Some(format!("127.0.0.1:{port}"));
        let master = Node::start(cfg);
        wait_until_logs(
            "master connected to its embedded broker",
            Duration::from_secs(20),
            &[&master],
            || master.log_contents().contains("connected to broker"),
        );
        let mut fleet = Fleet {
            name: name.to_string(),
            master,
            master_data,
            _master_state: master_state,
            slaves: vec![],
        };
        for i in 0..slaves {
            let data = temp("slave data ");
            let state = temp("slave state ");
            let gs = StandInGeoServer::start(data.path(), "admin", "geoserver");
            let mut cfg = NodeConfig::new(
                &format!("fx-slave{}", i + 1),
                "slave",
                data.path(),
                state.path(),
                servers.clone(),
            );
            cfg.geoserver_url = Some(gs.url());
            let node = Node::start(cfg);
            wait_for_subscriptions(&node, 1);
            fleet.slaves.push(Slave {
                node,
                gs,
                data,
                _state: state,
            });
        }
        fleet
    }

    fn master_dir(&self) -> &Path {
        self.master_data.path()
    }

    fn logs(&self) -> String {
        let mut nodes = vec![&self.master];
        nodes.extend(self.slaves.iter().map(|s| &s.node));
        crate::support::node::logs_of(&nodes)
    }

    /// Waits until every slave holds exactly the master's replicated files, byte for byte, and
    /// nothing else. Returns an instant that is certainly before the last file of the burst
    /// landed on any slave (the start of the last poll that still saw a difference), so a reload
    /// that starts after it came after (some of) the final writes.
    fn wait_converged(&self, phase: &str) -> Instant {
        let have = || {
            (self.slaves.iter())
                .map(|s| (s.node.config().id.clone(), tree(s.data.path(), &[])))
                .collect()
        };
        let what = format!("{}, {phase}: slaves converged", self.name);
        converge(
            &what,
            CONVERGE,
            || expected(self.master_dir()),
            have,
            || self.logs(),
        )
    }

    /// After convergence: every reload since `since` was authenticated, the burst cost only a
    /// few reloads, and a reload that started after the burst landed (after `converged_bound`)
    /// saw no catalog problem beyond the master's own.
    /// (`assert_no_half_catalog_reloads` checks every reload on the way.)
    fn check_reloads(&self, phase: &str, since: Instant, converged_bound: Instant) {
        let allowed = catalog_problems(self.master_dir());
        for s in &self.slaves {
            let who = format!("{}, {phase}, {}", self.name, s.node.config().id);
            let end = Instant::now() + CONVERGE;
            let complete = |r: &Reload| {
                r.authorized
                    && r.status == 200
                    && r.at > converged_bound
                    && r.problems.iter().all(|p| allowed.contains(p))
            };
            while !s.gs.reloads().iter().any(complete) {
                assert!(
                    Instant::now() < end,
                    "{who}: no reload of the complete catalog after the burst landed\nreloads: {:#?}\nmaster's own problems: {allowed:#?}\n{}",
                    s.gs.reloads(),
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            let reloads: Vec<_> =
                s.gs.reloads()
                    .into_iter()
                    .filter(|r| r.at > since)
                    .collect();
            assert!(
                reloads.iter().all(|r| r.authorized),
                "{who}: unauthenticated reload"
            );
            println!("{who}: {} reload(s)", reloads.len());
            assert!(
                reloads.len() <= MAX_RELOADS_PER_BURST,
                "{who}: {} reloads for one burst\n{}",
                reloads.len(),
                self.logs()
            );
        }
    }

    /// Every reload since `since` saw no catalog problem beyond the master's final own ones.
    fn assert_no_half_catalog_reloads(&self, since: Instant) {
        for s in &self.slaves {
            let extra = problems_beyond_master(&s.gs, self.master_dir(), Some(since));
            assert!(
                extra.is_empty(),
                "{}, {}: a reload saw a catalog the master ends up without problems in: {extra:#?}\nmaster's own: {:#?}\n{}",
                self.name,
                s.node.config().id,
                catalog_problems(self.master_dir()),
                self.logs()
            );
        }
    }
}

// ---- edits an administrator makes on the master ----

/// Changes the first `<title>` of a layer.xml (path order; where no layer.xml has one, as in
/// nhs-bi, of the layer's featuretype.xml or coverage.xml) and returns its path.
fn edit_a_layer_title(root: &Path) -> String {
    let files: Vec<String> = tree(root, &[]).into_keys().collect();
    let suffixes: [&[&str]; 2] = [&["/layer.xml"], &["/featuretype.xml", "/coverage.xml"]];
    for wanted in suffixes {
        for path in files
            .iter()
            .filter(|p| wanted.iter().any(|s| p.ends_with(s)))
        {
            let file = root.join(path);
            let xml = fs::read_to_string(&file).unwrap();
            if let (Some(a), Some(b)) = (xml.find("<title>"), xml.find("</title>")) {
                if a < b {
                    let edited = format!(
                        "{}<title>edited by the fixtures test</title>{}",
                        &xml[..a],
                        &xml[b + "</title>".len()..]
                    );
                    fs::write(&file, edited).unwrap();
                    return path.clone();
                }
            }
        }
    }
    panic!("no layer with a title under {}", root.display())
}

fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let a = xml.find(&open)? + open.len();
    let b = a + xml[a..].find(&format!("</{name}>"))?;
    Some(xml[a..b].trim())
}

/// Deletes a style (its XML and its body), preferring one no other file refers to by id.
/// Returns the two paths.
fn delete_a_style_pair(root: &Path) -> (String, String) {
    let files = tree(root, &[]);
    let mut pairs = vec![];
    for path in files.keys() {
        let in_styles = path.starts_with("styles/") || path.contains("/styles/");
        if !in_styles || !path.ends_with(".xml") {
            continue;
        }
        let xml = fs::read_to_string(root.join(path)).unwrap_or_default();
        if !xml.trim_start().starts_with("<style") {
            continue;
        }
        let (Some(id), Some(body)) = (element(&xml, "id"), element(&xml, "filename")) else {
            continue;
        };
        let folder = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let body_path = format!("{folder}/{body}");
        if !files.contains_key(&body_path) {
            continue;
        }
        let referenced = files.keys().filter(|p| p.ends_with(".xml")).any(|p| {
            p != path && fs::read_to_string(root.join(p)).is_ok_and(|other| other.contains(id))
        });
        pairs.push((referenced, path.clone(), body_path));
    }
    pairs.sort();
    let (_, xml, body) = pairs
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no style with its body under {}", root.display()));
    fs::remove_file(root.join(&xml)).unwrap();
    fs::remove_file(root.join(&body)).unwrap();
    (xml, body)
}

const ADDED: &str = "styles/added by the fixtures test.svg";

fn add_a_style_file(root: &Path) {
    fs::create_dir_all(root.join("styles")).unwrap();
    fs::write(
        root.join(ADDED),
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"8\" height=\"8\"><circle cx=\"4\" cy=\"4\" r=\"3\"/></svg>\n",
    )
    .unwrap();
}

fn replicate_fixture(name: &str, fixture: &Path) {
    let fleet = Fleet::start(name, 2);
    let root = fleet.master_dir().to_path_buf();

    // Burst 1: everything at once into an empty master.
    let since = Instant::now();
    copy_tree(fixture, &root);
    let want = expected(&root);
    assert!(
        want.len() > 5,
        "{name}: only {} files replicate",
        want.len()
    );
    let bound = fleet.wait_converged("publish everything");
    fleet.check_reloads("publish everything", since, bound);
    fleet.assert_no_half_catalog_reloads(since);
    println!(
        "{name}: {} of {} files replicated to {} slaves",
        want.len(),
        tree(&root, &[]).len(),
        fleet.slaves.len()
    );

    // Burst 2: a title edit, a style deleted, a file added.
    let before = expected(&root);
    let since = Instant::now();
    let edited = edit_a_layer_title(&root);
    let (style_xml, style_body) = delete_a_style_pair(&root);
    add_a_style_file(&root);
    let after = expected(&root);
    assert_ne!(before.get(&edited), after.get(&edited), "{name}: {edited}");
    assert!(!after.contains_key(&style_xml) && !after.contains_key(&style_body));
    assert!(after.contains_key(ADDED), "{name}: {ADDED} must replicate");
    let bound = fleet.wait_converged("edits");
    fleet.check_reloads("edits", since, bound);
    fleet.assert_no_half_catalog_reloads(since);
    for s in &fleet.slaves {
        let dir = s.data.path();
        assert!(!dir.join(&style_xml).exists() && !dir.join(&style_body).exists());
        assert!(fs::read_to_string(dir.join(&edited))
            .unwrap()
            .contains("edited by the fixtures test"));
    }
    println!("{name}: edited {edited}, deleted {style_xml} and {style_body}, added {ADDED}");
}

#[test]
fn every_fixture_data_dir_replicates_from_an_empty_master_to_empty_slaves_then_edits_follow() {
    let Some(dir) = fixtures() else {
        println!("skipped: ../shared fixtures not present");
        return;
    };
    let mut names: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixture under {}", dir.display());
    for (name, path) in names {
        replicate_fixture(&name, &path);
    }
}
