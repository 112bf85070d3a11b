//! Asks the local GeoServer to re-read its configuration after deltas were applied.
//!
//! The slave tells [`ReloadHandle::changed`] which files each applied group wrote; one task
//! ([`run`]) turns a burst of them into one `POST {url}/rest/reload` — or, with
//! `apply = "per-object"`, into one REST call per object where GeoServer's REST API can apply
//! the change exactly ([`objects`], [`per_object`]), falling back to the reload otherwise. What must stay true (design.md, sections
//! 3 and 8): at most one reload runs and one is pending; no reload while the touched objects'
//! references do not resolve yet (a bounded wait); a GeoServer that is down or failing delays the
//! reload but never loses it. The timing policy is the pure [`schedule`] module; this file only
//! owns the channel, the timer and the blocking HTTP call.

mod gate;
mod geoserver;
mod inbox;
pub mod lease;
pub mod need;
pub mod objects;
mod per_object;
mod schedule;
mod stats;
mod turn;

pub use gate::{Gate, Readiness};
pub use geoserver::{GeoServer, ReloadError, DEFAULT_RELOAD_TIMEOUT};
pub use inbox::{channel, Inbox, Owed, ReloadHandle, ReloadRequest};
pub use lease::Claim;
pub use objects::Kind;
pub use per_object::Rewrites;
pub use stats::{Phase, ReloadStats};
pub use turn::{Leases, Turn, TurnSettings};

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;

use log::{debug, info, warn};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

pub use schedule::ReloadSettings;
use schedule::{Held, Schedule};

/// Take the node out of its load balancer for `drain` before a reload (`/readyz` says 503),
/// while the caller keeps holding the data directory as the reference check saw it. `false`:
/// the node is stopping.
async fn drain(
    drain: Duration,
    stats: &watch::Sender<ReloadStats>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    if drain.is_zero() {
        return true;
    }
    stats.send_modify(|s| s.phase = Phase::Draining);
    debug!(
        "draining for {} before the reload",
        crate::logging::duration(drain)
    );
    tokio::select! {
        () = tokio::time::sleep(drain) => {}
        _ = shutdown.changed() => return false,
    }
    let drained = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX);
    stats.send_modify(|s| s.draining_ms += drained);
    true
}

/// Start the reload request on a blocking thread, holding `reading` (the data directory, shared)
/// until GeoServer has answered: it re-reads every file meanwhile, so no Delta may be written.
/// Returns the request and when it started (the reload's own time; the drain is counted apart).
/// `security`: GeoServer's security configuration changed too, which `/rest/reload` leaves as
/// it was, so the security manager is reloaded after it.
fn start(
    gs: Arc<GeoServer>,
    reading: Option<tokio::sync::OwnedRwLockReadGuard<()>>,
    security: bool,
    stats: &watch::Sender<ReloadStats>,
) -> (JoinHandle<Result<(), ReloadError>>, Instant) {
    stats.send_modify(|s| s.phase = Phase::Reloading);
    let request = tokio::task::spawn_blocking(move || {
        let _reading = reading;
        gs.reload()?;
        if security {
            gs.reload_security()?;
        }
        Ok(())
    });
    (request, Instant::now())
}

/// Say once at start whether GeoServer answers (on a blocking thread; reloads do not wait
/// for it).
fn probe(gs: Arc<GeoServer>) {
    tokio::task::spawn_blocking(move || {
        match gs.probe() {
        Ok(()) => info!("GeoServer at {} answers; reloads go to {}", gs.url(), gs.reload_url()),
        Err(e @ ReloadError::Unauthorized { .. }) => warn!("GeoServer at {}: {e}", gs.url()),
        Err(e) => warn!(
            "GeoServer at {} is not reachable ({e}): files are still written, and reloads wait until it answers",
            gs.url()
        ),
    }
    });
}

/// What the reload task works with.
///
/// `gs == None` (no `[geoserver] url`) never reloads. `ready` is called on the task before every
/// reload attempt and every `settings.recheck` while it says `Wait`, so it must be cheap.
/// `files`, when given, is held shared from the last readiness check to the end of the reload
/// request; whoever writes the data directory holds it exclusively while writing, so GeoServer
/// never re-reads half a Delta, nor one that `ready` did not see. `turn` says when the group
/// lets this node reload ([`Turn::unlimited`]: at once).
pub struct Reloader<R> {
    pub gs: Option<GeoServer>,
    pub settings: ReloadSettings,
    pub ready: R,
    pub files: Option<Arc<RwLock<()>>>,
    pub turn: Turn,
    /// `apply = "per-object"`: where the data directory is, and the files the change detector
    /// leaves alone while GeoServer rewrites them. `None`: every change is reloaded.
    pub per_object: Option<PerObject>,
    /// `convergence_reload`: a reload every day at this local time (seconds since midnight).
    pub convergence: Option<u32>,
}

/// What a per-object apply needs besides GeoServer.
#[derive(Debug, Clone)]
pub struct PerObject {
    pub data_dir: std::path::PathBuf,
    pub rewrites: Rewrites,
}

/// How often a node waiting for its turn looks at the queue besides each status that arrives
/// (claims time out without a status arriving).
const TURN_RECHECK: Duration = Duration::from_millis(250);

/// The reload task. Runs until `shutdown` turns true (or its sender is dropped), or until every
/// [`ReloadHandle`] is gone and nothing is owed.
///
/// A due reload waits until references resolve (bounded), then for its turn in the group —
/// holding no lock, so Deltas are still applied, and every notify meanwhile is covered by the
/// reload that follows — then drains and reloads. On shutdown no new reload starts and the
/// task returns at once; a running request is abandoned on its blocking thread, which ends at
/// the GeoServer timeout at the latest. Dropping a tokio runtime waits for its blocking threads,
/// so `main` should end with `Runtime::shutdown_timeout` (or exit the process) rather than wait
/// up to that timeout.
pub async fn run<R: Fn() -> Readiness + Send + 'static>(
    task: Reloader<R>,
    inbox: Inbox,
    stats: watch::Sender<ReloadStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(gs) = task.gs else {
        info!("no [geoserver] url configured: GeoServer will not be reloaded after changes");
        drop(inbox);
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        return;
    };
    let gs = Arc::new(gs);
    let url = gs.reload_url();
    probe(Arc::clone(&gs));
    let convergence = task.convergence;
    let next_convergence = |at: u32| {
        Instant::now() + crate::clock::until_time_of_day(crate::clock::local_seconds_of_day(), at)
    };
    let mut converge_at = convergence.map(next_convergence);
    let mut r = Reloading {
        gs,
        settings: task.settings,
        ready: task.ready,
        files: task.files,
        turn: task.turn,
        per_object: task.per_object,
        inbox,
        stats,
        schedule: Schedule::new(task.settings),
        turn_at: None,
    };
    let mut running: Option<(JoinHandle<Result<(), ReloadError>>, Instant)> = None;
    let mut inbox_open = true;

    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let deadline = r.deadline();
        if !inbox_open && running.is_none() && deadline.is_none() {
            return;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            msg = r.inbox.rx.recv(), if inbox_open => match msg {
                Some(ReloadRequest) => r.schedule.on_notify(Instant::now()),
                None => inbox_open = false,
            },
            () = r.turn.changed(), if r.turn.waiting() => r.turn_at = Some(Instant::now()),
            () = sleep_until(converge_at.unwrap_or_else(Instant::now)), if converge_at.is_some() => {
                info!("convergence reload (convergence_reload): GeoServer re-reads its data directory");
                r.inbox.need_full();
                r.schedule.on_notify(Instant::now());
                converge_at = convergence.map(next_convergence);
            }
            joined = async { (&mut running.as_mut().expect("guarded").0).await }, if running.is_some() => {
                let started = running.take().expect("guarded").1;
                let result = joined.unwrap_or_else(|e| {
                    Err(ReloadError::Unreachable(format!("reload thread failed: {e}")))
                });
                finish(&mut r.schedule, result, started, &url, &r.stats);
                r.turn.release(&r.stats);
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                match r.on_due(&mut shutdown).await {
                    Due::Wait => {}
                    Due::Started(request) => running = Some(request),
                    Due::Stopping => return,
                }
            }
        }
    }
}

/// What the reload task holds while it runs.
struct Reloading<R> {
    gs: Arc<GeoServer>,
    settings: ReloadSettings,
    ready: R,
    files: Option<Arc<RwLock<()>>>,
    turn: Turn,
    per_object: Option<PerObject>,
    inbox: Inbox,
    stats: watch::Sender<ReloadStats>,
    schedule: Schedule,
    /// When a node waiting for its turn looks at the queue again.
    turn_at: Option<Instant>,
}

/// What a deadline that came led to.
enum Due {
    /// Not yet (not due, references missing, no turn yet, or applied per object).
    Wait,
    /// A reload request runs, since this instant.
    Started((JoinHandle<Result<(), ReloadError>>, Instant)),
    /// The node stops (during the drain).
    Stopping,
}

impl<R: Fn() -> Readiness> Reloading<R> {
    /// When the task should next look at its reload.
    fn deadline(&self) -> Option<Instant> {
        if self.turn.waiting() {
            // Committed to a reload, waiting for a turn: look again in a moment (or on a
            // status). Notifies meanwhile are covered by the coming reload.
            Some(self.turn_at.unwrap_or_else(Instant::now))
        } else {
            self.schedule.next_deadline()
        }
    }

    /// A deadline came: references, then a per-object apply or a turn, then the drain and the
    /// reload request.
    async fn on_due(&mut self, shutdown: &mut watch::Receiver<bool>) -> Due {
        let now = Instant::now();
        let settings = self.settings;
        if !self.turn.waiting() {
            if !self.schedule.is_due(now) {
                return Due::Wait;
            }
            // References first (a turn held while they resolve would hold up the group),
            // then the turn.
            if !references_resolve(&self.ready, &mut self.schedule, now, settings) {
                return Due::Wait;
            }
            if let Some(po) = &self.per_object {
                let files = self.files.as_ref();
                if apply_per_object(&self.gs, po, &self.inbox, files, &self.stats).await {
                    self.schedule.on_covered();
                    return Due::Wait;
                }
            }
        }
        if !self.turn.poll(now.into_std(), &self.stats) {
            self.turn_at = Some(now + TURN_RECHECK);
            return Due::Wait;
        }
        self.turn_at = None;
        // Hold the data directory still from the last readiness check to the end of the
        // reload: a Delta written in between could otherwise go unchecked.
        let reading = match &self.files {
            Some(f) => Some(Arc::clone(f).read_owned().await),
            None => None,
        };
        if !references_resolve(&self.ready, &mut self.schedule, Instant::now(), settings) {
            // A Delta written while this node waited for its turn: give the turn back.
            drop(reading);
            self.turn.release(&self.stats);
            return Due::Wait;
        }
        self.schedule.on_reload_started(Instant::now());
        let covered = self.inbox.owed();
        self.inbox.settle(&covered);
        if !drain(settings.drain, &self.stats, shutdown).await {
            return Due::Stopping;
        }
        let request = start(
            Arc::clone(&self.gs),
            reading,
            covered.security(),
            &self.stats,
        );
        Due::Started(request)
    }
}

/// With `apply = "per-object"`: apply what is owed through GeoServer's REST API, holding the
/// data directory. `true`: done, no reload; `false`: a reload is needed (logged why).
async fn apply_per_object(
    gs: &Arc<GeoServer>,
    po: &PerObject,
    inbox: &Inbox,
    files: Option<&Arc<RwLock<()>>>,
    stats: &watch::Sender<ReloadStats>,
) -> bool {
    let owed = inbox.owed();
    if owed.full {
        return false;
    }
    if owed.objects.is_empty() {
        // Added and deleted again before GeoServer heard of them: nothing to tell.
        return true;
    }
    let writing = match files {
        Some(f) => Some(Arc::clone(f).write_owned().await),
        None => None,
    };
    let (gs, po2) = (Arc::clone(gs), po.clone());
    let changes: Vec<(String, Kind)> = owed.objects.iter().map(|(p, k)| (p.clone(), *k)).collect();
    let started = std::time::Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        let _writing = writing;
        per_object::apply(&gs, &po2.data_dir, &changes, &po2.rewrites)
    })
    .await
    .unwrap_or_else(|e| Err(format!("the per-object apply failed: {e}")));
    match outcome {
        Ok(calls) => {
            inbox.settle(&owed);
            info!(
                "applied {calls} change(s) through GeoServer's REST API in {}; no reload",
                crate::logging::duration(started.elapsed())
            );
            crate::telemetry::record_per_object(calls);
            stats.send_modify(|s| s.per_object += calls as u64);
            true
        }
        Err(why) => {
            info!("a reload applies the changes instead of REST calls: {why}");
            inbox.need_full();
            false
        }
    }
}

/// Whether a due reload may go ahead as far as references go: they resolve, or the bounded
/// wait for them is over (logged). `false`: hold it back, the schedule rechecks.
fn references_resolve(
    ready: &impl Fn() -> Readiness,
    schedule: &mut Schedule,
    now: Instant,
    settings: ReloadSettings,
) -> bool {
    let missing = match ready() {
        Readiness::Ready => return true,
        Readiness::AwaitResync(why) => {
            match schedule.on_awaiting_resync(now) {
                Held::Started => info!("reload held back until a resync completes: {why}"),
                _ => debug!("reload still held back until a resync completes: {why}"),
            }
            return false;
        }
        Readiness::Wait(missing) => missing,
    };
    match schedule.on_not_ready(now) {
        Held::Started => info!("reload held back until references resolve: {missing}"),
        Held::Continues => debug!("reload still held back: {missing}"),
        Held::Expired => {
            warn!(
                "reloading GeoServer although references still do not resolve after {}: {missing}",
                crate::logging::duration(settings.reference_wait)
            );
            return true;
        }
    }
    false
}

/// Logs and counts the outcome of one reload.
fn finish(
    schedule: &mut Schedule,
    result: Result<(), ReloadError>,
    started: Instant,
    url: &str,
    stats: &watch::Sender<ReloadStats>,
) {
    let now = Instant::now();
    let failures_before = schedule.failures();
    let retry_in = schedule.on_reload_finished(result.is_ok(), now);
    match (&result, retry_in) {
        (Ok(()), _) if failures_before > 0 => info!(
            "reload of {url} succeeded after {failures_before} failed attempt(s), in {}",
            crate::logging::duration(now - started)
        ),
        (Ok(()), _) => info!(
            "GeoServer reloaded in {}",
            crate::logging::duration(now - started)
        ),
        (Err(e), retry_in) => warn!(
            "reload of {url} failed (attempt {}): {e}; retrying in {}",
            schedule.failures(),
            crate::logging::duration(retry_in.unwrap_or_default())
        ),
    }
    let at = crate::clock::now_ms();
    crate::telemetry::record_reload(result.is_ok(), now - started);
    stats.send_modify(|s| {
        match &result {
            Ok(()) => {
                s.reloads_ok += 1;
                s.last_result = Some("ok".to_string());
            }
            Err(e) => {
                s.reloads_failed += 1;
                s.last_result = Some(e.to_string());
            }
        }
        s.last_at_unix_ms = Some(at);
        s.consecutive_failures = schedule.failures();
        s.reloading_ms += u64::try_from((now - started).as_millis()).unwrap_or(u64::MAX);
        s.phase = Phase::Serving;
    });
}
