//! The asking side of a resync: one round at a time, driven by the inbound worker.
//!
//! A round asks for manifests, takes the first complete answer that covers this node's holes
//! (`state::holes`: Deltas it knows it skipped; every answer does when there are none),
//! fetches what is missing one bounded batch at a time from that responder, and finishes by
//! adopting identical files, deleting, recording positions, filling the holes covered and
//! asking for one reload. When no answer covers within [`CHOOSE`] of the first, the best one
//! is taken all the same and the round is asked again, with back-off, until one does (the
//! origin may be down). A round that stops getting answers is abandoned after
//! [`ANSWER_TIMEOUT`] and asked again with back-off.

use super::{batches, decode_answer, encode_ask, plan, Answer, Ask, Plan};
use crate::context::Shared;
use crate::datadir::{self, Entry};
use crate::delta::{Change, Op, Part};
use crate::hlc::Version;
use crate::mqtt::connection::Link;
use crate::slave::{self, apply};
use crate::state::{holes, Hole, Position, Record};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A round whose next answer takes longer than this is asked again.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// A manifest ask nobody answered is sent again this often until the timeout: a responder may
/// connect after the ask went out (a node failing back to its preferred broker, a master
/// starting late), and asks are not queued for it.
const MANIFEST_REASK: Duration = Duration::from_secs(3);
/// A node that was part of the cluster and starts its first round since it (re)started may be
/// behind: for this long it leaves manifest asks to others, so that a slave does not take its
/// outdated manifest (and remove what it lacks). Bounded, so that nodes restarted together
/// still answer each other.
pub const STALE_GRACE: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a round waits, after a manifest that does not cover this node's holes, for one
/// that does (the origin's, or a node's that holds what was skipped).
pub const CHOOSE: Duration = Duration::from_secs(3);

/// What the asker needs from the node.
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub link: watch::Receiver<Link>,
    /// Called once a round changed files, to schedule a reload.
    pub notify: Box<dyn Fn() + Send + Sync>,
    /// Pure slaves delete replicated files no responder knows of.
    pub forget_unknown: bool,
}

enum Stage {
    Manifest,
    Fetch {
        responder: String,
        positions: BTreeMap<String, Position>,
        plan: Plan,
        pending: VecDeque<Vec<String>>,
        fetched: usize,
        written: usize,
    },
}

struct Round {
    id: u64,
    batch: u64,
    started: Instant,
    asked_at: Instant,
    /// When the manifest ask was last sent (see [`MANIFEST_REASK`]).
    reasked_at: Instant,
    stage: Stage,
    /// The best manifest so far that does not cover every hole, and when the first came.
    fallback: Option<(Instant, Manifest)>,
}

/// One manifest answer: its responder, covered positions and items, and which holes of
/// this node it leaves uncovered.
struct Manifest {
    responder: String,
    positions: BTreeMap<String, Position>,
    items: Vec<super::Item>,
    lacking: Vec<String>,
}

/// Resync state of one node.
pub struct Resync {
    wanted: Option<String>,
    round: Option<Round>,
    next_id: u64,
    failures: u32,
    not_before: Instant,
}

impl Default for Resync {
    fn default() -> Self {
        let seed = crate::clock::now_us().max(1);
        Resync {
            wanted: None,
            round: None,
            next_id: seed,
            failures: 0,
            not_before: Instant::now(),
        }
    }
}

impl Resync {
    /// Ask for a resync. While a round runs, requests are absorbed: the round's positions are
    /// taken after the gaps that prompted them.
    pub fn request(&mut self, why: &str) {
        if self.round.is_none() && self.wanted.is_none() {
            log::info!("resync needed: {why}");
            self.wanted = Some(why.to_string());
        }
    }

    /// Whether a round is running (reloads wait for it).
    pub fn active(&self) -> bool {
        self.round.is_some()
    }

    /// Start a wanted round, or give up on one that stopped getting answers.
    pub async fn tick(&mut self, ctx: &Ctx) {
        let now = Instant::now();
        let settle = (self.round.as_mut())
            .filter(|r| (r.fallback.as_ref()).is_some_and(|(t, _)| now.duration_since(*t) > CHOOSE))
            .and_then(|r| r.fallback.take());
        if let Some((_, m)) = settle {
            log::warn!(
                "resync round {}: no manifest within {} s covers {}; taking {}'s, and asking again later",
                self.round.as_ref().map_or(0, |r| r.id),
                CHOOSE.as_secs(),
                m.lacking.join(", "),
                m.responder
            );
            let result = self.take(ctx, m).await;
            self.proceed(ctx, result).await;
            return;
        }
        if let Some(r) = self.round.as_mut() {
            if matches!(r.stage, Stage::Manifest)
                && now.duration_since(r.reasked_at) > MANIFEST_REASK
            {
                r.reasked_at = now;
                log::info!("resync round {}: no manifest yet; asking again", r.id);
                send_ask(ctx, r.id, 1, &Ask::Manifest).await;
            }
        }
        if let Some(r) = &self.round {
            if now.duration_since(r.asked_at) > ANSWER_TIMEOUT {
                self.failures += 1;
                let wait = backoff(self.failures);
                log::warn!(
                    "resync: no answer within {} s (attempt {}); asking again in {} s",
                    ANSWER_TIMEOUT.as_secs(),
                    self.failures,
                    wait.as_secs()
                );
                self.abandon(ctx);
                self.wanted = Some("previous round timed out".into());
                self.not_before = now + wait;
            }
            return;
        }
        if self.wanted.is_none() || now < self.not_before {
            return;
        }
        if ctx.link.borrow().client.is_none() {
            return;
        }
        self.wanted = None;
        self.next_id += 1;
        let id = self.next_id;
        self.round = Some(Round {
            id,
            batch: 1,
            started: now,
            asked_at: now,
            reasked_at: now,
            stage: Stage::Manifest,
            fallback: None,
        });
        ctx.shared.resyncing.store(true, Ordering::SeqCst);
        let sh = &ctx.shared;
        let synced = sh.state.lock().unwrap().synced;
        if synced && !sh.current.load(Ordering::SeqCst) {
            *sh.stale_until.lock().unwrap() = Some(now + STALE_GRACE);
        }
        log::info!("resync round {id}: asking for manifests");
        send_ask(ctx, id, 1, &Ask::Manifest).await;
    }

    fn abandon(&mut self, ctx: &Ctx) {
        self.round = None;
        ctx.shared.resyncing.store(false, Ordering::SeqCst);
    }

    /// Handle one complete answer addressed to this node.
    pub async fn on_answer(&mut self, ctx: &Ctx, header: Part, body: Vec<u8>) {
        let Some(round) = self.round.as_mut() else {
            return;
        };
        if header.epoch != round.id || header.seq != round.batch {
            return; // an answer to an earlier round or request, or a second responder's
        }
        let answer = match decode_answer(&body) {
            Ok(a) => a,
            Err(e) => {
                ctx.shared.rejected.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::record_rejected();
                log::warn!("resync: rejected an answer from {}: {e}", header.origin);
                return;
            }
        };
        let result = match (&mut round.stage, answer) {
            (Stage::Manifest, Answer::Manifest { positions, items }) => {
                log::info!(
                    "resync round {}: manifest of {} entries from {}",
                    round.id,
                    items.len(),
                    header.origin
                );
                let lacking = {
                    let state = ctx.shared.state.lock().unwrap();
                    uncovered(&state.holes, &header.origin, &positions)
                };
                let m = Manifest {
                    responder: header.origin.clone(),
                    positions,
                    items,
                    lacking,
                };
                if !m.lacking.is_empty() {
                    log::info!(
                        "resync round {}: {} does not hold {}; waiting up to {} s for a manifest that does",
                        round.id,
                        m.responder,
                        m.lacking.join(", "),
                        CHOOSE.as_secs()
                    );
                    let since = round.fallback.as_ref().map_or_else(Instant::now, |f| f.0);
                    // The newest of the best: a manifest kept for seconds goes stale.
                    if (round.fallback.as_ref())
                        .is_none_or(|(_, f)| m.lacking.len() <= f.lacking.len())
                    {
                        round.fallback = Some((since, m));
                    }
                    return;
                }
                return {
                    let result = self.take(ctx, m).await;
                    self.proceed(ctx, result).await
                };
            }
            (
                Stage::Fetch {
                    responder,
                    fetched,
                    written,
                    ..
                },
                Answer::Files { changes },
            ) if *responder == header.origin => {
                *fetched += changes.len();
                let count = changes.len();
                let (waited, t) = (round.asked_at.elapsed(), Instant::now());
                let sh = ctx.shared.clone();
                match tokio::task::spawn_blocking(move || write_batch(&sh, &changes)).await {
                    Ok(Ok(n)) => {
                        *written += n;
                        log::debug!(
                            "resync round {}: batch {}: {count} file(s) arrived {} ms after the ask, written in {} ms",
                            round.id,
                            round.batch,
                            waited.as_millis(),
                            t.elapsed().as_millis()
                        );
                        Ok(())
                    }
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(RoundError::Task(e.to_string())),
                }
            }
            _ => return,
        };
        self.proceed(ctx, result).await;
    }

    /// Plan the round from manifest `m` (blocking work on its own thread).
    async fn take(&mut self, ctx: &Ctx, m: Manifest) -> Result<(), RoundError> {
        let round = self.round.as_mut().expect("a round runs");
        round.fallback = None;
        let sh = ctx.shared.clone();
        let forget = ctx.forget_unknown.then(|| m.responder.clone());
        let items = m.items;
        match tokio::task::spawn_blocking(move || make_plan(&sh, &items, forget.as_deref())).await {
            Ok(Ok(plan)) => {
                let pending: VecDeque<_> = batches(&plan.fetch).into();
                round.stage = Stage::Fetch {
                    responder: m.responder,
                    positions: m.positions,
                    plan,
                    pending,
                    fetched: 0,
                    written: 0,
                };
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(RoundError::Task(e.to_string())),
        }
    }

    /// After an answer was handled: ask for what comes next, or start over on a failure.
    async fn proceed(&mut self, ctx: &Ctx, result: Result<(), RoundError>) {
        if let Err(e) = result {
            let id = self.round.as_ref().map_or(0, |r| r.id);
            log::error!("resync round {id}: {e}; starting over");
            self.abandon(ctx);
            self.wanted = Some("previous round failed".into());
            self.not_before = Instant::now() + backoff(1);
            return;
        }
        self.next_request(ctx).await;
    }

    /// Ask for the next batch, or finish the round.
    async fn next_request(&mut self, ctx: &Ctx) {
        let round = self.round.as_mut().expect("a round runs");
        let Stage::Fetch {
            responder, pending, ..
        } = &mut round.stage
        else {
            return;
        };
        if let Some(paths) = pending.pop_front() {
            round.batch += 1;
            round.asked_at = Instant::now();
            let ask = Ask::Files {
                to: responder.clone(),
                paths,
            };
            let (id, batch) = (round.id, round.batch);
            send_ask(ctx, id, batch, &ask).await;
            return;
        }
        let round = self.round.take().expect("a round runs");
        let Stage::Fetch {
            responder,
            positions,
            plan,
            fetched,
            written,
            ..
        } = round.stage
        else {
            unreachable!()
        };
        let sh = ctx.shared.clone();
        let (adopt, delete, forget) = (plan.adopt.len(), plan.delete.len(), plan.forget.len());
        let from = responder.clone();
        let result = tokio::task::spawn_blocking(move || finish(&sh, plan, &from, positions)).await;
        ctx.shared.resyncing.store(false, Ordering::SeqCst);
        match result {
            Ok(Ok((removed, lacking))) => {
                match lacking {
                    None => self.failures = 0,
                    Some(lacking) => {
                        // The origin (or a node holding what was skipped) may answer next time.
                        self.failures += 1;
                        let wait = backoff(self.failures);
                        log::warn!(
                            "resync round {}: still lacking {lacking}; asking again in {} s",
                            round.id,
                            wait.as_secs()
                        );
                        self.wanted = Some(format!("deltas still missing ({lacking})"));
                        self.not_before = Instant::now() + wait;
                    }
                }
                crate::telemetry::record_resync();
                // Positions moved: the node's status says so now, not at its next refresh.
                ctx.shared.board.changed.notify_one();
                crate::telemetry::record_files_written((written + removed) as u64);
                ctx.shared.current.store(true, Ordering::SeqCst);
                *ctx.shared.stale_until.lock().unwrap() = None;
                log::info!(
                    "resync round {} from {responder} complete in {} ms: {fetched} file(s) fetched ({written} written), {adopt} already identical, {removed} removed ({delete} deleted upstream, {forget} unknown upstream)",
                    round.id,
                    round.started.elapsed().as_millis()
                );
                if written + removed > 0 {
                    (ctx.notify)();
                }
            }
            Ok(Err(e)) => {
                log::error!(
                    "resync round {}: cannot finish: {e}; starting over",
                    round.id
                );
                self.wanted = Some("previous round failed".into());
                self.not_before = Instant::now() + backoff(1);
            }
            Err(e) => log::error!("resync round {}: {e}", round.id),
        }
    }
}

/// Why a resync round failed (it starts over after a back-off).
#[derive(Debug)]
enum RoundError {
    /// Reading the data directory or the journal failed; the error names the file.
    Io(io::Error),
    /// Writing what the responder sent failed (or the node is stopping).
    Apply(slave::ApplyError),
    /// What the responder sent does not fit this node (outside its filter, unsafe paths).
    Refused(String),
    /// The blocking task died.
    Task(String),
}

impl std::fmt::Display for RoundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoundError::Io(e) => write!(f, "{e}"),
            RoundError::Apply(e) => write!(f, "{e}"),
            RoundError::Refused(e) => f.write_str(e),
            RoundError::Task(e) => write!(f, "resync task failed: {e}"),
        }
    }
}

impl From<io::Error> for RoundError {
    fn from(e: io::Error) -> Self {
        RoundError::Io(e)
    }
}

impl From<slave::ApplyError> for RoundError {
    fn from(e: slave::ApplyError) -> Self {
        RoundError::Apply(e)
    }
}

fn backoff(failures: u32) -> Duration {
    (Duration::from_secs(5) * 2u32.saturating_pow(failures.saturating_sub(1))).min(MAX_BACKOFF)
}

async fn send_ask(ctx: &Ctx, id: u64, batch: u64, ask: &Ask) {
    let sh = &ctx.shared;
    let payloads = encode_ask(&sh.group, &sh.node_id, id, batch, ask, &sh.auth);
    let Some(client) = ctx.link.borrow().client.clone() else {
        return; // the timeout asks again once connected
    };
    for p in payloads {
        let topic = sh.topics.sync_ask(&sh.node_id);
        if client.publish_once(&topic, p, false).await.is_err() {
            return;
        }
    }
}

/// Compare the responder's manifest with this node's manifest and files (blocking).
fn make_plan(
    sh: &Shared,
    items: &[super::Item],
    forget_unknown: Option<&str>,
) -> Result<Plan, RoundError> {
    let state = sh.state.lock().unwrap();
    let scan = datadir::scan(&sh.data_dir, &sh.filter, &sh.skip_dirs)?;
    let on_disk = |path: &str| -> Option<[u8; 32]> {
        let stat = scan.get(path)?;
        match state.manifest.live_entry(path) {
            Some(e) if e.same_stat(stat) => Some(e.sha256),
            _ => datadir::sha256_file(&sh.data_dir.join(path)).ok(),
        }
    };
    let replicated: BTreeSet<String> = scan.keys().cloned().collect();
    // Only paths this node replicates are planned; others are not ours to fetch.
    let items: Vec<super::Item> = items
        .iter()
        .filter(|i| sh.filter.matches(&i.path))
        .cloned()
        .collect();
    Ok(plan(
        &state.manifest,
        &items,
        on_disk,
        &replicated,
        forget_unknown,
    ))
}

/// Write one batch of fetched files (blocking); returns how many were written.
fn write_batch(sh: &Shared, changes: &[Change]) -> Result<usize, RoundError> {
    let mut state = sh.state.lock().unwrap();
    let keep = slave::LocalEdits::Keep;
    match slave::write_changes(sh, &mut state, changes, apply::Equal::Rewrite, keep)? {
        Ok(w) => {
            state.commit(Record {
                entries: w.entries,
                ..Default::default()
            })?;
            Ok(w.steps.len())
        }
        Err(why) => Err(RoundError::Refused(format!("answer refused: {why}"))),
    }
}

/// Adopt, delete, forget, record positions and fill the holes `responder` covers (blocking).
/// Returns how many files were removed, and the holes left, described.
fn finish(
    sh: &Shared,
    plan: Plan,
    responder: &str,
    positions: BTreeMap<String, Position>,
) -> Result<(usize, Option<String>), RoundError> {
    let mut state = sh.state.lock().unwrap();
    let deletes: Vec<Change> = plan
        .delete
        .iter()
        .map(|(path, version)| Change {
            path: path.clone(),
            version: version.clone(),
            op: Op::Delete,
            merged: None,
        })
        .collect();
    let keep = slave::LocalEdits::Keep;
    let (mut removed, mut entries) =
        match slave::write_changes(sh, &mut state, &deletes, apply::Equal::Rewrite, keep)? {
            Ok(w) => (w.steps.len(), w.entries),
            Err(why) => return Err(RoundError::Refused(format!("deletions refused: {why}"))),
        };
    for (path, version, sha256, merged) in plan.adopt {
        let Ok(stat) = std::fs::symlink_metadata(sh.data_dir.join(&path)) else {
            continue;
        };
        let stat = datadir::FileStat::from_metadata(&stat);
        let mut e = Entry::live(sha256, stat.size, version).with_merged(merged);
        e.set_stat(&stat);
        entries.push((path, e));
    }
    // Files no responder knows: remove them the way a deletion would, and forget them.
    let steps: Vec<apply::Step> = plan
        .forget
        .iter()
        .map(|p| apply::Step::Delete {
            path: p.clone(),
            version: Version::new(0, ""),
            merged: None,
        })
        .collect();
    if !steps.is_empty() {
        slave::record_intent(&mut state, &steps)?;
        let _writing = sh.files.blocking_write();
        apply::execute(&sh.data_dir, &steps)?;
        removed += steps.len();
        for p in &plan.forget {
            log::info!("resync: removed {p}, which no master has");
        }
    }
    let holes: Vec<(String, Option<Hole>)> = (state.holes.iter())
        .filter(|(origin, h)| h.covered_by(origin, responder, &positions))
        .map(|(origin, _)| (origin.clone(), None))
        .collect();
    let mut applied = Vec::new();
    for (origin, remote) in positions {
        if origin == sh.node_id {
            continue;
        }
        let keep_local = state
            .applied
            .get(&origin)
            .is_some_and(|l| l.epoch == remote.epoch && l.seq >= remote.seq);
        if !keep_local {
            applied.push((origin, remote));
        }
    }
    state.commit(Record {
        entries,
        forget: plan.forget,
        applied,
        holes,
        synced: true,
        ..Default::default()
    })?;
    Ok((removed, holes::describe_holes(&state.holes)))
}

/// The holes in `holes` a manifest from `responder` with covered `positions` does not cover,
/// described.
fn uncovered(
    holes: &BTreeMap<String, Hole>,
    responder: &str,
    positions: &BTreeMap<String, Position>,
) -> Vec<String> {
    (holes.iter())
        .filter(|(origin, h)| !h.covered_by(origin, responder, positions))
        .map(|(origin, h)| holes::describe_hole(origin, h))
        .collect()
}
