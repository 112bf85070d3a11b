//! The four roles at once, as real processes on one embedded broker: a pure master (which also
//! runs the broker), two `both` nodes and two pure slaves. Concurrent edits of the same files on
//! all three publishing nodes end byte-identical on every applying node; the pure master applies
//! nothing, keeps its own copy, and says which of its edits lost a conflict.

use crate::support::cluster::{self, wait_for_subscriptions, Member};
use crate::support::generator::{generate, Rng, Spec};
use crate::support::geoserver::assert_reloads_consistent;
use crate::support::node::{
    assert_converged, free_port, logs_of, replicated_tree, wait_until_logs, Node, NodeConfig,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(120);

fn start_member(
    id: &str,
    role: &str,
    tree: &Path,
    servers: &[String],
    broker: Option<String>,
) -> Member {
    start_member_with(id, role, tree, servers, broker, |_| {})
}

fn start_member_with(
    id: &str,
    role: &str,
    tree: &Path,
    servers: &[String],
    broker: Option<String>,
    tweak: impl FnOnce(&mut NodeConfig),
) -> Member {
    cluster::start_member(id, role, tree, servers, |cfg| {
        cfg.broker_listen = broker;
        tweak(cfg);
    })
}

/// A pure master running the embedded broker on a free port, connected; and the `servers`
/// list every other member uses.
fn start_pure_master(tree: &Path) -> (Member, Vec<String>) {
    let port = free_port();
    let servers = vec![format!("mqtt://127.0.0.1:{port}")];
    let master = start_member(
        "gs-master",
        "master",
        tree,
        &servers,
        Some(format!("127.0.0.1:{port}")),
    );
    wait_until_logs("master connected", CONVERGE, &[&master.node], || {
        master.node.log_contents().contains("connected to broker")
    });
    (master, servers)
}

/// A pure master (running the broker), one `both` node (`tweak`ed) and one pure slave, each on a
/// copy of a tree generated from `seed`, every subscription made.
struct Trio {
    catalog: crate::support::generator::Catalog,
    master: Member,
    both: Member,
    slave: Member,
}

fn trio(seed: u64, both_id: &str, tweak: impl FnOnce(&mut NodeConfig)) -> Trio {
    let origin = tempfile::tempdir().unwrap();
    let catalog = generate(origin.path(), &Spec::small(), seed);
    let (master, servers) = start_pure_master(origin.path());
    let both = start_member_with(both_id, "both", origin.path(), &servers, None, tweak);
    let slave = start_member("gs-slave", "slave", origin.path(), &servers, None);
    for m in [&both, &slave] {
        wait_for_subscriptions(&m.node, 1);
    }
    Trio {
        catalog,
        master,
        both,
        slave,
    }
}

/// A trio whose `both` node, "gs-ahead", reads a clock `hours` ahead, watched by the pure master.
fn trio_ahead(seed: u64, hours: u64) -> Trio {
    trio_skewed(seed, "gs-ahead", hours as i64)
}

/// A trio whose `both` node `id` reads a clock `hours` off (negative: behind), watched by the
/// pure master.
fn trio_skewed(seed: u64, id: &str, hours: i64) -> Trio {
    let t = trio(seed, id, |cfg| {
        cfg.clock_offset_ms = Some(hours * 3600 * 1000);
    });
    wait_watching(&t.master, &[id]);
    t
}

/// Wait until the pure master watches the Deltas of every node in `publishers` (it subscribes
/// per origin once it has seen that node's status).
fn wait_watching(master: &Member, publishers: &[&str]) {
    wait_until_logs(
        "the pure master watches the publishers",
        CONVERGE,
        &[&master.node],
        || {
            let log = master.node.log_contents();
            publishers
                .iter()
                .all(|p| log.contains(&format!("watching {p}'s deltas")))
        },
    );
}

/// Write like GeoServer: a temp file in the same folder, then a rename.
fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("xml.edit.tmp");
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, &path).unwrap();
}

/// The same layer.xml with a new title (keeps every reference intact).
fn retitled(root: &Path, rel: &str, title: &str) -> Vec<u8> {
    let old = fs::read_to_string(root.join(rel)).unwrap();
    let (start, end) = (old.find("<title>").unwrap(), old.find("</title>").unwrap());
    format!("{}<title>{title}</title>{}", &old[..start], &old[end + 8..]).into_bytes()
}

#[test]
fn pure_master_two_both_nodes_and_two_slaves_converge_under_concurrent_edits_of_the_same_files() {
    let seed: u64 = std::env::var("GSCLUSTER_TOPOLOGY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261129);
    println!("topology: seed {seed} (set GSCLUSTER_TOPOLOGY_SEED to replay)");
    let origin = tempfile::tempdir().unwrap();
    let catalog = generate(origin.path(), &Spec::small(), 71);
    let (master, servers) = start_pure_master(origin.path());
    let members: Vec<Member> = [
        ("gs-both1", "both"),
        ("gs-both2", "both"),
        ("gs-slave1", "slave"),
        ("gs-slave2", "slave"),
    ]
    .iter()
    .map(|(id, role)| start_member(id, role, origin.path(), &servers, None))
    .collect();
    for m in &members {
        wait_for_subscriptions(&m.node, 1);
    }
    let all: Vec<&Node> = std::iter::once(&master.node)
        .chain(members.iter().map(|m| &m.node))
        .collect();
    let applying: Vec<PathBuf> = members
        .iter()
        .map(|m| m.data.path().to_path_buf())
        .collect();
    let converge = |what: &str| {
        let refs: Vec<&Path> = applying[1..].iter().map(|p| p.as_path()).collect();
        let result = std::panic::catch_unwind(|| assert_converged(&applying[0], &refs, CONVERGE));
        if let Err(e) = result {
            eprintln!("{what}:\n{}", logs_of(&all));
            // Which edit each node holds of every file they disagree on.
            let trees: Vec<_> = applying.iter().map(|d| replicated_tree(d)).collect();
            let paths: BTreeSet<&String> = trees.iter().flat_map(|t| t.keys()).collect();
            for path in paths {
                if trees.iter().all(|t| t.get(path) == trees[0].get(path)) {
                    continue;
                }
                eprintln!("{path}:");
                let dirs =
                    std::iter::once(master.data.path()).chain(applying.iter().map(|p| p.as_path()));
                let ids = std::iter::once("gs-master")
                    .chain(members.iter().map(|m| m.node.config().id.as_str()));
                for (id, dir) in ids.zip(dirs) {
                    let text =
                        fs::read_to_string(dir.join(path)).unwrap_or_else(|e| format!("({e})"));
                    let title = text
                        .find("<title>")
                        .map(|s| text[s..].lines().next().unwrap_or("").to_string())
                        .unwrap_or_else(|| text.chars().take(120).collect());
                    eprintln!("  {id}: {title}");
                }
            }
            std::panic::resume_unwind(e);
        }
    };
    converge("start-up");
    wait_watching(&master, &["gs-both1", "gs-both2"]);

    // 200 edits, each on a random publishing node, of 6 shared layer.xml files and 3 style
    // bodies that come and go; a few milliseconds apart, so the same file is often changed on
    // two nodes before either change has reached the other.
    let publishers: [(&str, &Path); 3] = [
        ("gs-master", master.data.path()),
        ("gs-both1", members[0].data.path()),
        ("gs-both2", members[1].data.path()),
    ];
    let layers: Vec<String> = catalog
        .layers
        .iter()
        .take(6)
        .map(|l| l.layer_file())
        .collect();
    let bodies: Vec<String> = (0..3)
        .map(|k| format!("styles/contested_{k}.sld"))
        .collect();
    let mut rng = Rng::new(seed);
    let mut edited_on_master = std::collections::BTreeSet::new();
    let master_before = replicated_tree(master.data.path());
    for n in 0..200 {
        let (who, root) = publishers[rng.below(3)];
        let rel = if rng.chance(70) {
            let rel = layers[rng.below(layers.len())].clone();
            write(
                root,
                &rel,
                &retitled(root, &rel, &format!("edit {n} on {who}")),
            );
            rel
        } else {
            let rel = bodies[rng.below(bodies.len())].clone();
            if rng.chance(40) && root.join(&rel).exists() {
                fs::remove_file(root.join(&rel)).unwrap();
            } else {
                let sld = format!(
                    "<StyledLayerDescriptor><!-- edit {n} on {who} --></StyledLayerDescriptor>"
                );
                write(root, &rel, sld.as_bytes());
            }
            rel
        };
        if who == "gs-master" {
            edited_on_master.insert(rel);
        }
        std::thread::sleep(Duration::from_millis(rng.below(12) as u64));
    }
    let edits_done = std::time::Instant::now();
    converge("after 200 concurrent edits");
    let converged_in = edits_done.elapsed();
    // Still identical once everything in flight has landed.
    std::thread::sleep(Duration::from_secs(2));
    converge("2 s later");

    // The pure master applied nothing: its tree is its own start plus its own edits.
    let master_log = master.node.log_contents();
    assert!(
        !master_log.contains("applied delta"),
        "the pure master must not apply:\n{master_log}"
    );
    let master_now = replicated_tree(master.data.path());
    for (path, hash) in &master_now {
        if !edited_on_master.contains(path) {
            assert_eq!(
                master_before.get(path),
                Some(hash),
                "{path} changed on the pure master without a local edit"
            );
        }
    }
    // Where the cluster settled on another node's version of a file the master edited, the
    // master's log says it lost that conflict.
    let cluster: BTreeMap<String, [u8; 32]> = replicated_tree(&applying[0]);
    let mut lost = 0;
    for path in &edited_on_master {
        if master_now.get(path) != cluster.get(path) {
            lost += 1;
            assert!(
                master_log.contains(&format!("conflict lost: {path}:")),
                "the master's copy of {path} lost, but its log does not say so:\n{master_log}"
            );
        }
    }
    // Changes a node received but did not write because a newer version was already there:
    // "applied delta …: N of M change(s) written".
    let (mut received, mut written) = (0, 0);
    for m in &members {
        for l in m.node.log_contents().lines() {
            if let Some((_, tail)) = l.split_once("applied delta ") {
                let counts = tail.rsplit(": ").next().unwrap_or("");
                let mut words = counts.split(' ');
                let n: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                let total: usize = words.nth(1).and_then(|w| w.parse().ok()).unwrap_or(0);
                written += n;
                received += total;
            }
        }
    }
    println!(
        "measured: converged {} ms after the last edit; {} files edited on the pure master, {lost} of them lost a conflict; the 4 applying nodes received {received} changes and skipped {} as older than what they held",
        converged_in.as_millis(),
        edited_on_master.len(),
        received - written
    );
    for m in &members {
        if let Some(gs) = &m.gs {
            assert_reloads_consistent(gs, m.data.path(), &m.node.config().id);
        }
    }
}

/// `global.xml` with `updateSequence` set to `seq` (GeoServer's counter).
fn with_sequence(doc: &str, seq: u64) -> String {
    let start = doc.find("<updateSequence>").unwrap() + "<updateSequence>".len();
    let end = doc.find("</updateSequence>").unwrap();
    format!("{}{seq}{}", &doc[..start], &doc[end..])
}

fn sequence_of(doc: &str) -> u64 {
    let start = doc.find("<updateSequence>").unwrap() + "<updateSequence>".len();
    let end = doc.find("</updateSequence>").unwrap();
    doc[start..end].parse().unwrap()
}

/// GeoServer bumps `updateSequence` in global.xml on most changes. A settings edit on one master
/// must not lose to a counter bump another master makes later without having seen the edit: the
/// counter is merged (highest wins) apart from the settings (newest settings edit wins).
#[test]
fn a_settings_edit_in_global_xml_survives_a_later_counter_bump_on_another_master() {
    // The pure master never applies, so its counter bump is made on the settings it had before
    // the other master's edit: exactly the race of two masters whose GeoServers each save
    // global.xml before seeing the other's change.
    let Trio {
        master,
        both,
        slave,
        ..
    } = trio(72, "gs-both", |_| {});
    wait_watching(&master, &["gs-both"]);
    let all = [&master.node, &both.node, &slave.node];
    let read = |m: &Member| fs::read_to_string(m.data.path().join("global.xml")).unwrap();
    let wait_for = |what: &str, want: &str| {
        wait_until_logs(what, CONVERGE, &all, || {
            read(&both) == want && read(&slave) == want
        });
    };
    let base = read(&master);
    let n0 = sequence_of(&base);

    // 1. A settings edit on the `both` node (GeoServer bumps the counter with it).
    let edited = with_sequence(
        &base.replace("<charset>UTF-8", "<charset>ISO-8859-1"),
        n0 + 1,
    );
    assert_ne!(
        edited,
        with_sequence(&base, n0 + 1),
        "the edit changes a setting"
    );
    write(both.data.path(), "global.xml", edited.as_bytes());
    wait_until_logs("the slave has the edit", CONVERGE, &all, || {
        read(&slave) == edited
    });

    // 2. Later, the pure master's GeoServer bumps the counter on its old settings. The whole-file
    //    rule would hand every node the old settings; the merge keeps the edit.
    write(
        master.data.path(),
        "global.xml",
        with_sequence(&base, n0 + 5).as_bytes(),
    );
    wait_for(
        "the edit with the master's counter",
        &with_sequence(&edited, n0 + 5),
    );

    // 3. A counter bump on the `both` node itself reaches the slave as it is.
    write(
        both.data.path(),
        "global.xml",
        with_sequence(&edited, n0 + 6).as_bytes(),
    );
    wait_for("the both node's bump", &with_sequence(&edited, n0 + 6));

    // 4. A newer settings edit wins, even with a lower counter than the cluster's: the counter
    //    stays the highest.
    let newer = with_sequence(&base.replace("<numDecimals>8", "<numDecimals>4"), n0 + 2);
    write(master.data.path(), "global.xml", newer.as_bytes());
    wait_for("the master's newer edit", &with_sequence(&newer, n0 + 6));

    // Still so once everything in flight has landed; the master kept its own copy and said its
    // settings lost to the both node's newer edit in step 1.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(read(&both), with_sequence(&newer, n0 + 6));
    assert_eq!(read(&slave), with_sequence(&newer, n0 + 6));
    assert_eq!(read(&master), newer);
    let master_log = master.node.log_contents();
    assert!(
        master_log.contains("conflict lost: global.xml:"),
        "{master_log}"
    );
    for m in [&both, &slave] {
        assert_reloads_consistent(m.gs.as_ref().unwrap(), m.data.path(), &m.node.config().id);
    }
}

/// A `both` node never republishes what it applies, yet a local edit made while it is in the
/// middle of applying a remote Delta is published like any other: no "muted while applying"
/// switch. The node is paused (GSCLUSTER_PAUSE_AT) with the remote Delta planned and nothing
/// written; during the pause one file the Delta does not touch and one file it does are edited
/// locally. Both edits must reach the slave, and the second must win over the remote change
/// (it was made later), not be overwritten by it and lost.
#[test]
fn a_local_edit_made_while_a_remote_delta_is_applied_is_still_published() {
    let Trio {
        catalog,
        master,
        both,
        slave,
    } = trio(73, "gs-both", |cfg| {
        cfg.pause_at = Some("apply-planned:1:3000".into());
    });
    let all = [&master.node, &both.node, &slave.node];
    assert_converged(both.data.path(), &[slave.data.path()], CONVERGE);
    wait_until_logs("the both node bootstrapped", CONVERGE, &all, || {
        both.node.log_contents().contains(" complete in ")
    });
    assert!(
        !both.node.log_contents().contains("pause point"),
        "the start-up applied something; the pause must come with the remote Delta"
    );

    // The pure master publishes 20 new style bodies and a new title of one layer, in one Delta.
    let contested = catalog.layers[0].layer_file();
    let untouched = catalog.layers[1].layer_file();
    for k in 0..20 {
        let sld = format!("<StyledLayerDescriptor><!-- burst {k} --></StyledLayerDescriptor>");
        write(
            master.data.path(),
            &format!("styles/burst_{k}.sld"),
            sld.as_bytes(),
        );
    }
    let remote = retitled(master.data.path(), &contested, "remote edit");
    write(master.data.path(), &contested, &remote);
    wait_until_logs("the both node paused mid-apply", CONVERGE, &all, || {
        both.node
            .log_contents()
            .contains("pause point apply-planned reached")
    });
    // Mid-apply, two local edits: the contested layer and one the Delta does not touch.
    let local = retitled(both.data.path(), &contested, "local edit, made later");
    write(both.data.path(), &contested, &local);
    let other = retitled(both.data.path(), &untouched, "local edit of another file");
    write(both.data.path(), &untouched, &other);
    assert!(
        !both
            .node
            .log_contents()
            .contains("pause point apply-planned: resuming"),
        "the edits must land while the apply is paused"
    );

    // The slave gets the burst and both local edits; the both node kept its edit of the
    // contested file and published it, and republished nothing it applied.
    let has = |m: &Member, rel: &str, bytes: &[u8]| {
        fs::read(m.data.path().join(rel)).ok().as_deref() == Some(bytes)
    };
    wait_until_logs(
        "the slave has the burst and both edits",
        CONVERGE,
        &all,
        || {
            has(&slave, &contested, &local)
                && has(&slave, &untouched, &other)
                && slave.data.path().join("styles/burst_19.sld").exists()
        },
    );
    assert_converged(both.data.path(), &[slave.data.path()], CONVERGE);
    assert!(has(&both, &contested, &local));
    let log = both.node.log_contents();
    assert!(
        log.contains(&format!(
            "{contested}: holds a local edit not published yet"
        )),
        "{log}"
    );
    let published: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("] seq ").map(|(_, t)| t))
        .collect();
    for rel in [&contested, &untouched] {
        assert!(
            published
                .iter()
                .any(|t| t.contains(&format!(": {rel} Write"))),
            "the both node did not publish its edit of {rel}:\n{log}"
        );
    }
    assert!(
        !published.iter().any(|t| t.contains("styles/burst_")),
        "the both node republished what it applied:\n{log}"
    );
    for m in [&both, &slave] {
        assert_reloads_consistent(m.gs.as_ref().unwrap(), m.data.path(), &m.node.config().id);
    }
}

/// A publisher whose wall clock runs three hours ahead cannot win every conflict for those
/// hours: a pure master that has seen its change (it watches every publisher's Deltas) edits the
/// same file afterwards, and that later edit wins on every applying node. Regression: a pure
/// master did not take in the clock of the Deltas it watched, so its edits lost for three hours.
#[test]
fn a_publisher_with_a_clock_hours_ahead_does_not_win_the_edits_made_after_its_own() {
    let Trio {
        catalog: cat,
        master,
        both: ahead,
        slave,
    } = trio_ahead(74, 3);
    let all = [&master.node, &ahead.node, &slave.node];
    let rel = cat.layers[0].layer_file();
    let read = |m: &Member| fs::read(m.data.path().join(&rel)).unwrap();

    // 1. The node three hours ahead edits the layer; every applying node takes it, and the
    //    pure master sees it go by.
    let future = retitled(ahead.data.path(), &rel, "from three hours ahead");
    write(ahead.data.path(), &rel, &future);
    wait_until_logs("the slave has the edit", CONVERGE, &all, || {
        read(&slave) == future
    });
    wait_until_logs("the master saw it", CONVERGE, &all, || {
        master
            .node
            .log_contents()
            .contains("watched delta gs-ahead/")
    });
    // 2. Afterwards, the pure master edits the same layer: the later edit wins everywhere. (The
    //    master said its own older copy lost to step 1's edit; it must not say so of this one.)
    let lost = format!("conflict lost: {rel}");
    let lost_before = master.node.log_contents().matches(&lost).count();
    let later = retitled(master.data.path(), &rel, "made later, on time");
    write(master.data.path(), &rel, &later);
    wait_until_logs("the later edit wins", CONVERGE, &all, || {
        read(&slave) == later && read(&ahead) == later
    });
    assert_eq!(
        master.node.log_contents().matches(&lost).count(),
        lost_before,
        "{}",
        master.node.log_contents()
    );
}

/// A publisher whose wall clock runs three hours behind still wins with an edit made after the
/// one it received: its clock takes in the versions of every Delta it applies, so its next
/// version is above them however far behind its wall clock reads. Without that, its edits would
/// lose on every node for three hours and its own GeoServer would be put back under its users.
#[test]
fn a_publisher_with_a_clock_hours_behind_wins_the_edits_it_makes_after_receiving_others() {
    let Trio {
        catalog: cat,
        master,
        both: behind,
        slave,
    } = trio_skewed(76, "gs-behind", -3);
    let all = [&master.node, &behind.node, &slave.node];
    let rel = cat.layers[0].layer_file();
    let read = |m: &Member| fs::read(m.data.path().join(&rel)).unwrap();

    // 1. The pure master, on time, edits the layer; the node three hours behind applies it.
    let on_time = retitled(master.data.path(), &rel, "on time");
    write(master.data.path(), &rel, &on_time);
    wait_until_logs("every node has the edit", CONVERGE, &all, || {
        read(&slave) == on_time && read(&behind) == on_time
    });
    // 2. Afterwards the node behind edits the same layer: its later edit wins on every applying
    //    node, and the pure master (which keeps its own copy) says its copy lost to it.
    let later = retitled(behind.data.path(), &rel, "made later, three hours behind");
    write(behind.data.path(), &rel, &later);
    let lost = format!("conflict lost: {rel}: the edit of gs-behind");
    wait_until_logs("the later edit wins", CONVERGE, &all, || {
        read(&slave) == later && master.node.log_contents().contains(&lost)
    });
    assert_eq!(read(&behind), later, "the node behind kept its own edit");
}

/// Found by issue 14's chaos rounds: a new `both` node hours ahead publishes its whole tree at
/// start-up, before the pure master has its status and so before it watches that node's Deltas;
/// the master's clock never took in those versions, and a layer it deleted right after lost to
/// them on every node (the files came back everywhere but on the master). Statuses carry the
/// clock now, and every receiver takes it in.
#[test]
fn a_deletion_on_the_pure_master_beats_the_start_up_delta_of_a_new_node_hours_ahead() {
    let Trio {
        catalog: cat,
        master,
        both: ahead,
        slave,
    } = trio_ahead(75, 2);
    let all = [&master.node, &ahead.node, &slave.node];
    let layer = &cat.layers[0];
    let gone = [layer.layer_file(), layer.resource_file()];
    for rel in &gone {
        fs::remove_file(master.data.path().join(rel)).unwrap();
    }
    wait_until_logs("the deletion reaches every node", CONVERGE, &all, || {
        (gone.iter()).all(|rel| {
            !ahead.data.path().join(rel).exists() && !slave.data.path().join(rel).exists()
        })
    });
}

/// A file saved on a `both` node (by GeoServer, here the test) in the instant between the
/// apply renaming a remote change into place and recording it is a local edit, and it is
/// published. Regression (the stat race behind a rare divergence of the four-role test in CI):
/// the apply recorded the stat of whatever file was at the path by then, beside the remote
/// change's hash, so the detector took the local edit for unchanged, forever. The node is paused
/// (GSCLUSTER_PAUSE_AT=file-written) right after the rename, and the edit lands in the pause.
#[test]
fn a_file_saved_while_the_apply_records_it_is_still_published() {
    let Trio {
        catalog,
        master,
        both,
        slave,
    } = trio(75, "gs-both", |cfg| {
        cfg.pause_at = Some("file-written:1:3000".into());
    });
    let all = [&master.node, &both.node, &slave.node];
    wait_until_logs("the both node bootstrapped", CONVERGE, &all, || {
        both.node.log_contents().contains(" complete in ")
    });
    assert!(
        !both.node.log_contents().contains("pause point"),
        "the start-up wrote a file; the pause must come with the remote Delta"
    );
    let rel = catalog.layers[0].layer_file();
    let remote = retitled(master.data.path(), &rel, "remote edit");
    write(master.data.path(), &rel, &remote);
    wait_until_logs(
        "the both node paused after the rename",
        CONVERGE,
        &all,
        || {
            both.node
                .log_contents()
                .contains("pause point file-written reached")
        },
    );
    let local = retitled(both.data.path(), &rel, "saved during the apply");
    write(both.data.path(), &rel, &local);
    assert!(
        !both
            .node
            .log_contents()
            .contains("pause point file-written: resuming"),
        "the edit must land while the apply is paused"
    );
    // The local edit is newer: every applying node ends with it.
    let read = |m: &Member| fs::read(m.data.path().join(&rel)).unwrap();
    wait_until_logs("the local edit reaches the slave", CONVERGE, &all, || {
        read(&slave) == local && read(&both) == local
    });
}

/// GeoServer on a `both` node saves `global.xml` with the counter it loaded at its last reload,
/// which a remote bump may since have raised on disk: the node publishes the edit with the
/// highest counter and keeps the same bytes itself. Regression (found by the chaos round, seed
/// 1796361536065724): the node kept the lower counter while every other node joined to the
/// higher one, so its global.xml differed from theirs for good.
#[test]
fn a_global_xml_saved_with_a_stale_counter_ends_identical_on_every_node() {
    let Trio {
        master,
        both,
        slave,
        ..
    } = trio(76, "gs-both", |_| {});
    wait_watching(&master, &["gs-both"]);
    let all = [&master.node, &both.node, &slave.node];
    let read = |m: &Member| fs::read_to_string(m.data.path().join("global.xml")).unwrap();
    let base = read(&master);
    let n0 = sequence_of(&base);
    // 1. The pure master's GeoServer counts on: every applying node has counter n0 + 10.
    let bumped = with_sequence(&base, n0 + 10);
    write(master.data.path(), "global.xml", bumped.as_bytes());
    wait_until_logs("the bump arrived", CONVERGE, &all, || {
        read(&both) == bumped && read(&slave) == bumped
    });
    // 2. The both node's GeoServer, which has not reloaded since, saves a settings edit with
    //    the counter it knows: n0 + 1.
    let edited = base.replace("<charset>UTF-8", "<charset>ISO-8859-1");
    assert_ne!(edited, base);
    write(
        both.data.path(),
        "global.xml",
        with_sequence(&edited, n0 + 1).as_bytes(),
    );
    // The edit wins, with the highest counter, on both applying nodes alike.
    let want = with_sequence(&edited, n0 + 10);
    wait_until_logs(
        "both applying nodes hold the same global.xml",
        CONVERGE,
        &all,
        || read(&both) == want && read(&slave) == want,
    );
}
