//! The asking side of a resync: one round at a time, driven by the inbound worker.
//!
//! A round asks for manifests, takes the first answer that covers this node's holes
//! (`state::holes`: Deltas it knows it skipped; every answer does when there are none), and
//! then, one page of that responder's manifest at a time: fetches what is missing one
//! bounded batch at a time, adopts identical files, deletes, and asks for the next page.
//! After the last page it records positions, fills the holes covered and asks for one
//! reload. The blocking work is in [`super::local`]. When no answer covers within [`CHOOSE`]
//! of the first, the best one is taken all the same and the round is asked again, with
//! back-off, until one does (the origin may be down).
//!
//! A manifest ask nobody answers is abandoned after [`ANSWER_TIMEOUT`] and asked again with
//! back-off. Once a round chose its responder it goes on where it stands whatever the link
//! does — an outage in the middle of a bootstrap fetches nothing twice, the manifest included:
//! while the connection is down it waits; when it comes back, or an answer is late, it asks the
//! same again. It starts over only when its responder goes offline or stays silent for
//! [`FETCH_PATIENCE`] on a live connection.

use super::local::{self, Range, RoundError};
use super::{batches, decode_answer, encode_ask, newest, Answer, Ask, Item, Plan};
use crate::context::Shared;
use crate::delta::Part;
use crate::mqtt::connection::Link;
use crate::state::{holes, Hole, Position};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A round whose next answer takes longer than this is asked again.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a round that chose its responder goes on asking it again, connected all the while
/// and with nothing arriving, before it starts over (the responder is gone without a word).
/// Long enough for a keep-alive to notice a dead link (two keep-alives at the most): a round
/// does not start over because its link died, it waits for the link and goes on. A responder
/// whose status says it went offline ends the round at once.
pub const FETCH_PATIENCE: Duration = Duration::from_secs(120);
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
    /// Working through the chosen responder's manifest, one page at a time.
    Fetch(Box<Paging>),
}

/// A round's progress through its responder's manifest.
struct Paging {
    responder: String,
    positions: BTreeMap<String, Position>,
    /// The responder's clock for `forget_unknown` (see `resync::plan`).
    newest: u64,
    /// The current page's plan and the batches of it still to fetch.
    plan: Plan,
    pending: VecDeque<Vec<String>>,
    /// The current page's range; its `high` is where the next page starts.
    range: Range,
    done: Done,
}

/// What a round did so far, over all its pages.
#[derive(Default)]
struct Done {
    pages: usize,
    fetched: usize,
    written: usize,
    adopted: usize,
    deleted: usize,
    forgotten: usize,
    removed: usize,
}

struct Round {
    id: u64,
    batch: u64,
    started: Instant,
    /// What the round asks now (sent again after a timeout or a reconnection), when, and on
    /// which connection.
    ask: Ask,
    asked_at: Instant,
    /// When the manifest was last asked for, on this node's wall clock (see [`Resync::peer`]).
    asked_ms: u64,
    gen: u64,
    /// When something last arrived from the responder, or the connection came (back) up.
    heard_at: Instant,
    /// When the manifest ask was last sent (see [`MANIFEST_REASK`]).
    reasked_at: Instant,
    stage: Stage,
    /// The best manifest so far that does not cover every hole, and when the first came.
    fallback: Option<(Instant, Manifest)>,
}

/// One manifest answer (its first page): its responder, covered positions, clock and items,
/// whether more pages follow, and which holes of this node it leaves uncovered.
struct Manifest {
    responder: String,
    positions: BTreeMap<String, Position>,
    /// None: a whole manifest from a node before paging.
    clock: Option<u64>,
    items: Vec<Item>,
    more: bool,
    lacking: Vec<String>,
}

/// Resync state of one node.
pub struct Resync {
    wanted: Option<String>,
    round: Option<Round>,
    next_id: u64,
    failures: u32,
    not_before: Instant,
    /// A reason for another round once this one is done: the broker lost this node's session
    /// after the round took its positions.
    again: Option<String>,
    /// The other nodes that publish and whose status says they are online: the ones that can
    /// answer a manifest ask. None: this node is alone, and says so once ([`Resync::peer`]).
    publishers: BTreeSet<String>,
    said_alone: bool,
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
            again: None,
            publishers: BTreeSet::new(),
            said_alone: false,
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

    /// The broker had no session for this node: what was published while it was away is gone
    /// for it. A round that took its positions before is no proof of the rest: another round
    /// follows it.
    pub fn session_lost(&mut self, why: &str) {
        match &self.round {
            Some(r) if matches!(r.stage, Stage::Fetch(_)) => {
                log::info!("resync needed once round {} is done: {why}", r.id);
                self.again = Some(why.to_string());
            }
            _ => self.request(why),
        }
    }

    /// A node's status says it went offline: a round fetching from it starts over at once
    /// (another node answers).
    pub fn gone(&mut self, ctx: &Ctx, node: &str) {
        let Some(r) = &self.round else { return };
        if matches!(&r.stage, Stage::Fetch(p) if p.responder == node) {
            log::warn!(
                "resync round {}: {node}, its responder, went offline; starting over",
                r.id
            );
            self.abandon(ctx);
            self.wanted = Some(format!("{node} went offline during a round"));
            self.not_before = Instant::now();
        }
    }

    /// Another node's status, made at `made_ms` (its wall clock): whether it publishes and is
    /// online. A node alone in its group asks for manifests once a minute and says so once;
    /// the first publisher to come online is asked at once. So is a publisher that came online
    /// after this round's manifest ask went out (it was not there to hear it: a slave started
    /// before its master); one that was online already has heard it, and asking again would
    /// have it send its manifest twice.
    pub async fn peer(
        &mut self,
        ctx: &Ctx,
        node: &str,
        publishes: bool,
        online: bool,
        made_ms: u64,
    ) {
        if !(publishes && online) {
            self.publishers.remove(node);
            return;
        }
        if !self.publishers.insert(node.to_string()) {
            return;
        }
        let was_alone = std::mem::take(&mut self.said_alone);
        let came_after_ask = (self.round.as_ref())
            .is_some_and(|r| matches!(r.stage, Stage::Manifest) && made_ms > r.asked_ms);
        if !was_alone && !came_after_ask {
            return;
        }
        log::info!("resync: {node} is online; asking it now");
        match &self.round {
            Some(r) if matches!(r.stage, Stage::Manifest) => self.ask_again(ctx).await,
            Some(_) => {}
            None if self.wanted.is_some() => {
                self.not_before = Instant::now();
                self.tick(ctx).await;
            }
            None => {}
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
        if self.round.is_some() {
            return self.watch_round(ctx, now).await;
        }
        self.start_round(ctx, now).await;
    }

    /// A running round: wait for the link, ask again what a reconnection or a timeout lost, or
    /// give up on it.
    async fn watch_round(&mut self, ctx: &Ctx, now: Instant) {
        if let Some(r) = self.round.as_mut() {
            let (gen, connected) = {
                let l = ctx.link.borrow();
                (l.gen, l.client.is_some())
            };
            if !connected {
                // Nothing goes out or comes in: the round waits for the link, and its
                // timeouts count from the link's return.
                return;
            }
            if gen != r.gen {
                // The link came back since the ask went out: the answer (QoS 0) is lost.
                log::info!(
                    "resync round {}: connected again; asking again where the round stood",
                    r.id
                );
                r.heard_at = now;
                return self.ask_again(ctx).await;
            }
            // Alone, nobody can answer: the first publisher to come online is asked at once.
            let alone = self.publishers.is_empty();
            if matches!(r.stage, Stage::Manifest)
                && now.duration_since(r.reasked_at) > MANIFEST_REASK
                && !alone
            {
                (r.reasked_at, r.asked_ms) = (now, crate::clock::now_ms());
                log::info!("resync round {}: no manifest yet; asking again", r.id);
                send_ask(ctx, r.id, 1, &Ask::Manifest).await;
            }
            if let Stage::Fetch(p) = &r.stage {
                let waited = now.duration_since(r.heard_at);
                if now.duration_since(r.asked_at) > ANSWER_TIMEOUT && waited < FETCH_PATIENCE {
                    log::warn!(
                        "resync round {}: no answer from {} within {} s; asking again",
                        r.id,
                        p.responder,
                        ANSWER_TIMEOUT.as_secs()
                    );
                    return self.ask_again(ctx).await;
                }
            }
        }
        if let Some(r) = &self.round {
            // A manifest ask is abandoned after one timeout; a fetch from a chosen responder,
            // asked again meanwhile, after its patience with nothing heard.
            let (since, patience) = match r.stage {
                Stage::Manifest => (r.asked_at.max(r.heard_at), ANSWER_TIMEOUT),
                Stage::Fetch(_) => (r.heard_at, FETCH_PATIENCE),
            };
            let manifest = matches!(r.stage, Stage::Manifest);
            if now.duration_since(since) > patience && manifest && self.publishers.is_empty() {
                return self.alone(ctx, now);
            }
            if now.duration_since(since) > patience {
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
        }
    }

    /// Nobody answered a manifest ask, and no node that could is online: say so once, and ask
    /// again in a minute (at once when one comes online: [`Resync::peer`]).
    fn alone(&mut self, ctx: &Ctx, now: Instant) {
        if !std::mem::replace(&mut self.said_alone, true) {
            log::warn!(
                "resync: no other node of group {} that publishes is online, so none can \
                 answer; asking again every {} s, and at once when one comes online",
                ctx.shared.group,
                MAX_BACKOFF.as_secs()
            );
        }
        self.abandon(ctx);
        self.wanted = Some("no node to resync from was online".into());
        self.not_before = now + MAX_BACKOFF;
    }

    /// Start a wanted round once its back-off is over and the node is connected.
    async fn start_round(&mut self, ctx: &Ctx, now: Instant) {
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
            ask: Ask::Manifest,
            asked_at: now,
            asked_ms: crate::clock::now_ms(),
            gen: ctx.link.borrow().gen,
            heard_at: now,
            reasked_at: now,
            stage: Stage::Manifest,
            fallback: None,
        });
        ctx.shared.resyncing.store(true, Ordering::SeqCst);
        let sh = &ctx.shared;
        let synced = sh.lock_state().synced;
        if synced && !sh.current.load(Ordering::SeqCst) {
            *sh.stale_until.lock().unwrap() = Some(now + STALE_GRACE);
        }
        if self.said_alone {
            log::debug!("resync round {id}: asking for manifests (alone so far)");
        } else {
            log::info!("resync round {id}: asking for manifests");
        }
        send_ask(ctx, id, 1, &Ask::Manifest).await;
    }

    /// A part of an answer to request `batch` of round `id` arrived, the rest still on its
    /// way: the round is getting its answer (the timeout counts from now) and a manifest is
    /// coming (not asked for again, which on a slow link would send it twice).
    pub fn arriving(&mut self, id: u64, batch: u64) {
        if let Some(r) = self
            .round
            .as_mut()
            .filter(|r| r.id == id && r.batch == batch)
        {
            let now = Instant::now();
            (r.asked_at, r.reasked_at, r.heard_at) = (now, now, now);
        }
    }

    /// Send the round's ask again: as a new request (a late answer to the old one is not
    /// taken for it), the manifest ask as it was (every responder answers request 1).
    async fn ask_again(&mut self, ctx: &Ctx) {
        let r = self.round.as_mut().expect("a round runs");
        if !matches!(r.ask, Ask::Manifest) {
            r.batch += 1;
        }
        let now = Instant::now();
        (r.asked_at, r.reasked_at, r.gen) = (now, now, ctx.link.borrow().gen);
        r.asked_ms = crate::clock::now_ms();
        send_ask(ctx, r.id, r.batch, &r.ask).await;
    }

    fn abandon(&mut self, ctx: &Ctx) {
        self.round = None;
        // The next round takes its positions afresh.
        self.again = None;
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
        let (positions, clock, items, more) = match answer {
            Answer::Manifest { positions, items } => (positions, None, items, false),
            Answer::Page {
                positions,
                clock,
                items,
                more,
            } if matches!(round.stage, Stage::Manifest) => (positions, Some(clock), items, more),
            answer => {
                if let Some(result) = self.on_page_or_files(ctx, &header, answer).await {
                    self.proceed(ctx, result).await;
                }
                return;
            }
        };
        if !matches!(round.stage, Stage::Manifest) {
            return; // a first answer from a second responder, once the round chose one
        }
        log::info!(
            "resync round {}: manifest of {}{} entries from {}",
            round.id,
            items.len(),
            if more { "+" } else { "" },
            header.origin
        );
        let lacking = {
            let state = ctx.shared.lock_state();
            uncovered(&state.holes, &header.origin, &positions)
        };
        let m = Manifest {
            responder: header.origin.clone(),
            positions,
            clock,
            items,
            more,
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
            if (round.fallback.as_ref()).is_none_or(|(_, f)| m.lacking.len() <= f.lacking.len()) {
                round.fallback = Some((since, m));
            }
            return;
        }
        let result = self.take(ctx, m).await;
        self.proceed(ctx, result).await;
    }

    /// A batch of files, or the next page, from the chosen responder. `None`: not an answer
    /// this round waits for.
    async fn on_page_or_files(
        &mut self,
        ctx: &Ctx,
        header: &Part,
        answer: Answer,
    ) -> Option<Result<(), RoundError>> {
        let round = self.round.as_mut().expect("a round runs");
        let Stage::Fetch(paging) = &mut round.stage else {
            return None;
        };
        let Paging {
            responder,
            newest,
            plan,
            pending,
            range,
            done,
            ..
        } = &mut **paging;
        if *responder != header.origin {
            return None;
        }
        round.heard_at = Instant::now();
        Some(match answer {
            Answer::Files { changes } => {
                done.fetched += changes.len();
                let count = changes.len();
                let (waited, t) = (round.asked_at.elapsed(), Instant::now());
                let sh = ctx.shared.clone();
                let n = match blocking(move || local::write_batch(&sh, &changes)).await {
                    Ok(n) => n,
                    Err(e) => return Some(Err(e)),
                };
                done.written += n;
                log::debug!(
                    "resync round {}: batch {}: {count} file(s) arrived {} ms after the ask, written in {} ms",
                    round.id,
                    round.batch,
                    waited.as_millis(),
                    t.elapsed().as_millis()
                );
                Ok(())
            }
            Answer::Page { items, more, .. } => {
                let next = Range {
                    low: range.high.clone(),
                    high: more.then(|| items.last().map(|i| i.path.clone())).flatten(),
                };
                if more && next.high.is_none() {
                    let e = "an empty manifest page with more to follow";
                    return Some(Err(RoundError::Refused(e.into())));
                }
                let sh = ctx.shared.clone();
                let forget = ctx.forget_unknown.then(|| (responder.clone(), *newest));
                let asked = next.clone();
                let planned = blocking(move || {
                    let forget = forget.as_ref().map(|(r, n)| (r.as_str(), *n));
                    local::plan_page(&sh, &items, &asked, forget)
                })
                .await;
                *plan = match planned {
                    Ok(p) => p,
                    Err(e) => return Some(Err(e)),
                };
                *pending = batches(&plan.fetch, &ctx.shared.resync).into();
                *range = next;
                done.pages += 1;
                Ok(())
            }
            Answer::Manifest { .. } | Answer::Contents { .. } => return None,
        })
    }

    /// Plan the round's first page, from manifest `m` (blocking work on its own thread).
    async fn take(&mut self, ctx: &Ctx, m: Manifest) -> Result<(), RoundError> {
        let round = self.round.as_mut().expect("a round runs");
        round.fallback = None;
        let sh = ctx.shared.clone();
        let newest = newest(&m.responder, m.clock, &m.items);
        let forget = ctx.forget_unknown.then(|| (m.responder.clone(), newest));
        let range = Range {
            low: None,
            high: m
                .more
                .then(|| m.items.last().map(|i| i.path.clone()))
                .flatten(),
        };
        if m.more && range.high.is_none() {
            return Err(RoundError::Refused(
                "an empty manifest page with more to follow".into(),
            ));
        }
        let (items, asked) = (m.items, range.clone());
        let plan = blocking(move || {
            let forget = forget.as_ref().map(|(r, n)| (r.as_str(), *n));
            local::plan_page(&sh, &items, &asked, forget)
        })
        .await?;
        round.stage = Stage::Fetch(Box::new(Paging {
            responder: m.responder,
            positions: m.positions,
            newest,
            pending: batches(&plan.fetch, &ctx.shared.resync).into(),
            plan,
            range,
            done: Done {
                pages: 1,
                ..Done::default()
            },
        }));
        Ok(())
    }

    /// After an answer was handled: ask for what comes next, or start over on a failure.
    async fn proceed(&mut self, ctx: &Ctx, result: Result<(), RoundError>) {
        match result {
            Ok(()) => self.next_request(ctx).await,
            Err(e) => self.fail(ctx, e),
        }
    }

    /// The round failed: start over after a back-off.
    fn fail(&mut self, ctx: &Ctx, e: RoundError) {
        let id = self.round.as_ref().map_or(0, |r| r.id);
        log::error!("resync round {id}: {e}; starting over");
        self.abandon(ctx);
        self.wanted = Some("previous round failed".into());
        self.not_before = Instant::now() + backoff(1);
    }

    /// Ask for the next batch; at the end of a page, settle it and ask for the next page; after
    /// the last, finish the round.
    async fn next_request(&mut self, ctx: &Ctx) {
        let round = self.round.as_mut().expect("a round runs");
        let Stage::Fetch(paging) = &mut round.stage else {
            return;
        };
        let Paging {
            responder,
            plan,
            pending,
            range,
            done,
            ..
        } = &mut **paging;
        if let Some(paths) = pending.pop_front() {
            let ask = Ask::Files {
                to: responder.clone(),
                paths,
            };
            return self.ask_next(ctx, ask).await;
        }
        let page = std::mem::take(plan);
        done.adopted += page.adopt.len();
        done.deleted += page.delete.len();
        done.forgotten += page.forget.len();
        let sh = ctx.shared.clone();
        match blocking(move || local::settle(&sh, page)).await {
            Ok(n) => done.removed += n,
            Err(e) => return self.fail(ctx, e),
        }
        if let Some(after) = range.high.clone() {
            let ask = Ask::Page {
                to: responder.clone(),
                after,
            };
            return self.ask_next(ctx, ask).await;
        }
        self.finish(ctx).await;
    }

    /// Send the round's next request.
    async fn ask_next(&mut self, ctx: &Ctx, ask: Ask) {
        let r = self.round.as_mut().expect("a round runs");
        r.batch += 1;
        (r.asked_at, r.gen) = (Instant::now(), ctx.link.borrow().gen);
        send_ask(ctx, r.id, r.batch, &ask).await;
        r.ask = ask;
    }

    /// After the last page: record the positions, and say what the round did.
    async fn finish(&mut self, ctx: &Ctx) {
        let round = self.round.take().expect("a round runs");
        let Stage::Fetch(paging) = round.stage else {
            unreachable!()
        };
        let Paging {
            responder,
            positions,
            done,
            ..
        } = *paging;
        let sh = ctx.shared.clone();
        let from = responder.clone();
        let result = blocking(move || local::conclude(&sh, &from, positions)).await;
        ctx.shared.resyncing.store(false, Ordering::SeqCst);
        if let Some(why) = self.again.take() {
            self.request(&why);
        }
        match result {
            Ok(lacking) => {
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
                crate::telemetry::record_files_written((done.written + done.removed) as u64);
                ctx.shared.current.store(true, Ordering::SeqCst);
                *ctx.shared.stale_until.lock().unwrap() = None;
                log::info!(
                    "resync round {} from {responder} complete in {} ms: {} file(s) fetched ({} written), {} already identical, {} removed ({} deleted upstream, {} unknown upstream){}",
                    round.id,
                    round.started.elapsed().as_millis(),
                    done.fetched,
                    done.written,
                    done.adopted,
                    done.removed,
                    done.deleted,
                    done.forgotten,
                    if done.pages > 1 { format!(", {} manifest pages", done.pages) } else { String::new() }
                );
                if done.written + done.removed > 0 {
                    (ctx.notify)();
                }
            }
            Err(e) => {
                log::error!(
                    "resync round {}: cannot finish: {e}; starting over",
                    round.id
                );
                self.wanted = Some("previous round failed".into());
                self.not_before = Instant::now() + backoff(1);
            }
        }
    }
}

/// Run blocking work of a round on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RoundError> + Send + 'static,
) -> Result<T, RoundError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(RoundError::Task(e.to_string())),
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
