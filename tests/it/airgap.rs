//! Air-gapped transfer between two independent clusters: `gscluster export` on site A, then
//! `gscluster import` on site B (a master with its own embedded broker and a stand-in
//! GeoServer, and a slave with one). B's nodes converge byte-identical with A's tree, one
//! reload each; a changes-only bundle follows; damaged, tampered, wrong-group, wrongly signed
//! and unsigned bundles are refused with nothing written; a bundle imported while B's daemon
//! is down goes out when it starts.

use crate::support::cluster::Cluster;
use crate::support::generator::{generate, Spec};
use crate::support::node::{
    assert_converged, converge, diff_summary, replicated_tree, Node, NodeConfig,
};
use crate::support::run::run;
use crate::support::site::Site;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// Run the binary with `args`: (exit code, stdout, stderr).
fn gscluster(args: &[&str]) -> (i32, String, String) {
    let r = run(args, "warn");
    (r.code, r.stdout, r.stderr)
}

fn export(config: &Path, out: &Path, since: Option<u64>) -> String {
    let mut args = vec!["export", "-c", config.to_str().unwrap(), "--out"];
    args.push(out.to_str().unwrap());
    let since = since.map(|s| s.to_string());
    if let Some(s) = &since {
        args.extend(["--since", s]);
    }
    let (code, stdout, stderr) = gscluster(&args);
    assert_eq!(code, 0, "export failed: {stdout}{stderr}");
    stdout
}

fn import(config: &Path, bundle: &Path) -> (i32, String, String) {
    gscluster(&[
        "import",
        "-c",
        config.to_str().unwrap(),
        bundle.to_str().unwrap(),
    ])
}

fn key_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("{byte:02x}").repeat(32)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Both of site B's nodes hold `expected` (global.xml aside: its updateSequence is the highest
/// either site had, see docs/conflicts.md) and the same bytes as each other, global.xml included.
fn converge_to(site: &Site, expected: &Path) {
    let without_global = |mut t: BTreeMap<String, [u8; 32]>| {
        t.remove("global.xml");
        t
    };
    let want = || without_global(replicated_tree(expected));
    let have = || {
        let (m, s) = site.trees();
        vec![
            ("site B's master".to_string(), without_global(m)),
            ("site B's slave".to_string(), without_global(s)),
        ]
    };
    converge("site A's tree on site B", DEADLINE, want, have, || {
        site.logs()
    });
    // global.xml too: the same bytes on both of site B's nodes.
    assert_converged(site.master_data.path(), &[site.slave_data.path()], DEADLINE);
}

#[test]
fn a_snapshot_then_its_changes_reach_both_nodes_of_another_cluster_with_one_reload_each() {
    let mut a = Cluster::start(&Spec::small(), 31, 0);
    let b = Site::start(32, None);
    let dir = tempfile::tempdir().unwrap();
    let a_config = a.master.config_path();
    let b_config = b.master.config_path();

    // Snapshot: site A's daemon runs while it is exported; site B's while it is imported.
    let first = dir.path().join("a-1.bundle");
    let said = export(&a_config, &first, None);
    assert!(said.contains("exported snapshot 1 of gs-master"), "{said}");
    assert_eq!(
        fs::metadata(&first).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = b.reloads();
    let (code, out, err) = import(&b_config, &first);
    assert_eq!(code, 0, "{out}{err}\n{}", b.logs());
    assert!(
        out.contains("imported snapshot 1 of gs-master on b-master"),
        "{out}"
    );
    assert!(out.contains("published as Delta"), "{out}");
    assert!(out.contains("GeoServer reloaded"), "{out}");
    assert!(err.contains("handing it over"), "{err}");
    converge_to(&b, a.master_dir());
    b.one_reload_each_since(before, "the import");

    // Changes: a layer added, one modified, one deleted, a style added on A.
    let root = a.master_dir().to_path_buf();
    let ids: Vec<String> = a.catalog.layers.iter().map(|l| l.id.clone()).collect();
    a.catalog.add_style(&root, "carried_style");
    a.catalog.add_layer(&root, 0, 0, "carried layer");
    a.catalog.modify_layer(&root, &ids[0]);
    a.catalog.delete_layer(&root, &ids[1]);
    let second = dir.path().join("a-2.bundle");
    let said = export(&a_config, &second, Some(1));
    assert!(said.contains("exported changes 1→2 of gs-master"), "{said}");
    let before = b.reloads();
    let (code, out, err) = import(&b_config, &second);
    assert_eq!(code, 0, "{out}{err}\n{}", b.logs());
    assert!(out.contains("imported changes 1→2"), "{out}");
    converge_to(&b, a.master_dir());
    b.one_reload_each_since(before, "the import");

    // The same bundle again: nothing to do, no reload, still exit 0 (idempotent).
    let before = b.reloads();
    let (code, out, _) = import(&b_config, &second);
    assert_eq!(code, 0);
    assert!(out.contains("imported here before"), "{out}");
    assert_eq!(b.reloads(), before);
    // What the daemon wrote was recorded: its detector never found it again as a local edit.
    assert!(
        !b.master.log_contents().contains("change: seq"),
        "{}",
        b.logs()
    );
}

#[test]
fn damaged_tampered_wrong_group_and_wrongly_signed_bundles_are_refused_with_nothing_written() {
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path(), "group.key", 0x5a);
    let other_key = key_file(keys.path(), "other.key", 0xa5);
    let k = key.clone();
    let a = Cluster::start_with(&Spec::small(), 41, 0, move |c| c.key_file = Some(k.clone()));
    let b = Site::start(42, Some(key.clone()));
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.bundle");
    export(&a.master.config_path(), &good, None);
    let bytes = fs::read(&good).unwrap();

    // The same tree exported by a node of another group, by one with another key, unsigned.
    let variant = |name: &str, f: &dyn Fn(&mut NodeConfig)| {
        let state = dir.path().join(format!("{name}-state"));
        let mut cfg = NodeConfig::new(
            "a-other",
            "master",
            a.master_dir(),
            &state,
            vec!["mqtt://127.0.0.1:1".into()],
        );
        cfg.group = "test".into();
        cfg.key_file = Some(key.clone());
        f(&mut cfg);
        let config = dir.path().join(format!("{name}.toml"));
        fs::write(&config, cfg.to_toml()).unwrap();
        let out = dir.path().join(format!("{name}.bundle"));
        export(&config, &out, None);
        out
    };
    let wrong_group = variant("wrong-group", &|c| c.group = "other".into());
    let wrong_key = variant("wrong-key", &|c| c.key_file = Some(other_key.clone()));
    let unsigned = variant("unsigned", &|c| c.key_file = None);
    let truncated = dir.path().join("truncated.bundle");
    fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let tampered = dir.path().join("tampered.bundle");
    let mut t = bytes.clone();
    let at = t.len() / 2;
    t[at] ^= 0x04;
    fs::write(&tampered, &t).unwrap();

    let trees = b.trees();
    let reloads = b.reloads();
    let published = |n: &Node| n.log_contents().matches(": seq ").count();
    let published_before = published(&b.master);
    for (bundle, reason) in [
        (&truncated, "truncated or damaged"),
        (&tampered, "checksum does not match"),
        (
            &wrong_group,
            "bundle of group \"other\", this node is in group \"test\"",
        ),
        (&wrong_key, "authentication tag does not match"),
        (&unsigned, "no authentication tag"),
    ] {
        let (code, out, err) = import(&b.master.config_path(), bundle);
        assert_eq!(code, 1, "{}: {out}{err}", bundle.display());
        assert!(err.contains(reason), "{}: {err}", bundle.display());
        assert!(err.contains("nothing was written"), "{err}");
        assert!(out.is_empty(), "{out}");
        // Refused before anything was handed over or written: same trees, no reload, no Delta.
        assert_eq!(b.trees(), trees, "{}", bundle.display());
        assert_eq!(b.reloads(), reloads);
        assert!(b.master.is_running() && b.slave.is_running());
    }
    assert_eq!(published(&b.master), published_before, "{}", b.logs());

    // A pure slave takes what its masters publish: a good bundle is refused there too.
    let (code, _, err) = import(&b.slave.config_path(), &good);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("b-slave is a pure slave: import the bundle on a master"),
        "{err}"
    );
    assert_eq!(b.trees(), trees);
    assert_eq!(b.reloads(), reloads);

    // The refusals left everything in order: the good bundle imports.
    let (code, out, err) = import(&b.master.config_path(), &good);
    assert_eq!(code, 0, "{out}{err}\n{}", b.logs());
    assert!(
        err.contains("its signature verified with the group key"),
        "{err}"
    );
    converge_to(&b, a.master_dir());
}

#[test]
fn a_bundle_imported_with_no_daemon_goes_out_when_it_starts_and_bundles_keep_their_order() {
    let mut a = Cluster::start(&Spec::small(), 51, 0);
    let mut b = Site::start(52, None);
    let dir = tempfile::tempdir().unwrap();
    let a_config = a.master.config_path();
    let first = dir.path().join("1.bundle");
    export(&a_config, &first, None);
    let at_first = replicated_tree(a.master_dir());
    let root = a.master_dir().to_path_buf();
    a.catalog.add_layer(&root, 1, 0, "second export");
    let second = dir.path().join("2.bundle");
    export(&a_config, &second, Some(1));
    a.catalog.add_layer(&root, 1, 1, "third export");
    let third = dir.path().join("3.bundle");
    export(&a_config, &third, Some(2));

    // Changes 2→3 before anything of A was imported: a gap, refused; nothing written.
    let trees = b.trees();
    let (code, _, err) = import(&b.master.config_path(), &third);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("changes since export 2 of gs-master")
            && err.contains("has imported none of its bundles"),
        "{err}"
    );
    assert_eq!(b.trees(), trees);

    // With b-master stopped (and its broker with it), the command applies the bundle itself.
    b.master.stop();
    let before = b.reloads();
    let started = Instant::now();
    let (code, out, err) = import(&b.master.config_path(), &first);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("no daemon runs on this node"), "{err}");
    assert!(out.contains("wait in the outbox"), "{out}");
    let without_global = |mut t: BTreeMap<String, [u8; 32]>| {
        t.remove("global.xml");
        t
    };
    let (here, there) = (without_global(b.trees().0), without_global(at_first));
    assert!(here == there, "{}", diff_summary(&there, &here));
    assert_eq!(
        b.reloads().0,
        before.0 + 1,
        "b-master's GeoServer reloaded once"
    );
    // 2 then 3, in order, also without the daemon.
    for bundle in [&second, &third] {
        let (code, out, err) = import(&b.master.config_path(), bundle);
        assert_eq!(code, 0, "{out}{err}");
    }
    assert!(started.elapsed() < DEADLINE);

    let logged = b.master.log_contents().len();
    b.master.restart();
    converge_to(&b, a.master_dir());
    assert!(
        !b.master.log_contents()[logged..].contains("start-up scan: seq"),
        "the imported files are recorded, not found again as local edits\n{}",
        b.logs()
    );

    // Site A's state dir is replaced: its exports are numbered from 1 again, in a new series,
    // and B takes snapshot 1 of it for new rather than for one it had imported.
    fs::remove_dir_all(a._master_state.path().join("exports")).unwrap();
    a.catalog.add_layer(&root, 0, 1, "new series");
    let fresh = dir.path().join("fresh.bundle");
    assert!(export(&a_config, &fresh, None).contains("snapshot 1 of gs-master"));
    let (code, out, err) = import(&b.master.config_path(), &fresh);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("imported snapshot 1 of gs-master"), "{out}");
    converge_to(&b, a.master_dir());
}

#[test]
fn export_shows_its_progress_on_a_terminal_and_only_there() {
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(data.path(), &Spec::small(), 61);
    let files = replicated_tree(data.path()).len();
    let cfg = NodeConfig::new(
        "a-terminal",
        "master",
        data.path(),
        state.path(),
        vec!["mqtt://127.0.0.1:1".into()],
    );
    let config = dir.path().join("a.toml");
    fs::write(&config, cfg.to_toml()).unwrap();

    // Not a terminal: the report only.
    let (code, _, err) = gscluster(&[
        "export",
        "-c",
        config.to_str().unwrap(),
        "--out",
        dir.path().join("1.bundle").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("reading the data directory"), "{err}");

    // A terminal (util-linux `script` gives the command a pseudo-terminal).
    let command = format!(
        "{} export -c {} --out {}",
        crate::support::run::BIN,
        config.display(),
        dir.path().join("2.bundle").display()
    );
    let out = match Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("RUST_LOG", "warn")
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            println!("skipped the terminal half: no `script` ({e})");
            return;
        }
    };
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!(
            "reading the data directory: {files}/{files} files"
        )),
        "{shown}"
    );
    assert!(
        shown.contains("exported snapshot 2 of a-terminal"),
        "{shown}"
    );
}

#[test]
fn export_and_import_with_a_missing_data_dir_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("no-such-data-dir");
    let state = dir.path().join("state");
    let cfg = NodeConfig::new(
        "a-missing",
        "master",
        &data,
        &state,
        vec!["mqtt://127.0.0.1:1".into()],
    );
    let config = dir.path().join("a.toml");
    fs::write(&config, cfg.to_toml()).unwrap();
    let bundle = dir.path().join("x.bundle");
    fs::write(&bundle, b"GSCBNDL\n").unwrap();
    for args in [
        vec![
            "export",
            "-c",
            config.to_str().unwrap(),
            "--out",
            "/tmp/never",
        ],
        vec![
            "import",
            "-c",
            config.to_str().unwrap(),
            bundle.to_str().unwrap(),
        ],
    ] {
        let (code, _, err) = gscluster(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "[geoserver] data_dir {}: not a directory",
                data.display()
            )),
            "{args:?}: {err}"
        );
        assert!(!state.exists(), "{args:?} created the state dir");
        assert!(!data.exists());
    }
    assert!(!Path::new("/tmp/never").exists());
}
