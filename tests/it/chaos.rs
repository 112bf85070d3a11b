//! Chaos rounds in `cargo test` (the harness and its checker: support::chaos): a few hundred
//! GeoServer-shaped edits on two publishers and ~20 random faults per round, each round with
//! its own seed, printed with its fault schedule so that `GSCLUSTER_CHAOS_SEED=N` replays it
//! (`GSCLUSTER_CHAOS_EDITS`, `GSCLUSTER_CHAOS_FAULTS` scale it).

use crate::support::chaos::{round, BrokerKind, Opts, Outcome};

/// The short rounds `cargo test` runs.
const EDITS: usize = 240;
const FAULTS: usize = 20;

fn run_round(opts: Opts) {
    match round(&opts) {
        Outcome::Passed(r) => println!(
            "chaos seed {}: passed ({} edits, faults {:?}, converged {:.1} s after the last fault and {:.1} s after the last edit, {} failovers, {:.0} s in all)",
            r.seed,
            r.edits,
            r.faults,
            r.converged.as_secs_f64(),
            r.after_last_edit.as_secs_f64(),
            r.failovers,
            r.took.as_secs_f64()
        ),
        Outcome::Skipped(why) => println!("skipped: {why}"),
        Outcome::Failed(report) => panic!("{report}"),
    }
}

#[test]
fn chaos_round_with_mosquitto_and_full_disks_ends_identical_and_nothing_lost() {
    let mut opts = Opts::from_env(EDITS, FAULTS, BrokerKind::Mosquitto);
    opts.disks = true;
    run_round(opts);
}

/// Nodes in network namespaces on a failover pair of Mosquittos: links cut and restored, nodes
/// cut off from the first broker only. These rounds found the resync that took a manifest as far
/// behind as the asker (issue 14's note; holes, docs/resync.md).
#[test]
fn chaos_round_with_partitions_between_namespaces_and_a_failover_pair_ends_identical() {
    let mut opts = Opts::from_env(EDITS, FAULTS, BrokerKind::Mosquitto);
    opts.partitions = true;
    run_round(opts);
}

#[test]
fn chaos_round_on_the_embedded_broker_ends_identical_and_nothing_lost() {
    run_round(Opts::from_env(EDITS, FAULTS, BrokerKind::Embedded));
}

/// ActiveMQ where it is installed (Debian's `activemq`): killed and restarted like Mosquitto,
/// with its own session and redelivery behaviour (mqtt-measured.md).
#[test]
fn chaos_round_on_activemq_ends_identical_and_nothing_lost() {
    run_round(Opts::from_env(EDITS, FAULTS, BrokerKind::ActiveMq));
}
