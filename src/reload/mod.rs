//! Asks the local GeoServer to re-read its configuration after deltas were applied.
//!
//! The slave calls [`ReloadHandle::notify`] after each applied delta; one task ([`run`]) turns a
//! burst of notifies into one `POST {url}/rest/reload`. What must stay true (design.md, sections
//! 3 and 8): at most one reload runs and one is pending; no reload while the touched objects'
//! references do not resolve yet (a bounded wait); a GeoServer that is down or failing delays the
//! reload but never loses it. The timing policy is the pure [`schedule`] module; this file only
//! owns the channel, the timer and the blocking HTTP call.

mod gate;
mod geoserver;
pub mod need;
mod schedule;

pub use gate::{Gate, Readiness};
pub use geoserver::{GeoServer, ReloadError, DEFAULT_RELOAD_TIMEOUT};

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;

use log::{debug, info, warn};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

pub use schedule::ReloadSettings;
use schedule::{Held, Schedule};

/// "A delta was applied": the only message the reload task receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadRequest;

/// The sending side, cheap to clone, given to whoever applies deltas.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    tx: mpsc::Sender<ReloadRequest>,
}

impl ReloadHandle {
    /// Schedules a reload. Never blocks: when a notify is already queued this one merges into it.
    pub fn notify(&self) {
        // Full: a queued notify already stands for this one. Closed: the task is gone (shutdown
        // or no GeoServer configured), and there is nothing to reload.
        let _ = self.tx.try_send(ReloadRequest);
    }
}

/// The handle for appliers and the receiver for [`run`].
pub fn channel() -> (ReloadHandle, mpsc::Receiver<ReloadRequest>) {
    let (tx, rx) = mpsc::channel(1);
    (ReloadHandle { tx }, rx)
}

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
    debug!("draining for {} before the reload", human(drain));
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
fn start(
    gs: Arc<GeoServer>,
    reading: Option<tokio::sync::OwnedRwLockReadGuard<()>>,
    stats: &watch::Sender<ReloadStats>,
) -> (JoinHandle<Result<(), ReloadError>>, Instant) {
    stats.send_modify(|s| s.phase = Phase::Reloading);
    let request = tokio::task::spawn_blocking(move || {
        let _reading = reading;
        gs.reload()
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

/// Counters for `gscluster status` and the metrics endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStats {
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// "ok" or the last error.
    pub last_result: Option<String>,
    pub last_at_unix_ms: Option<u64>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Time spent in reload requests (drain excluded), milliseconds.
    pub reloading_ms: u64,
    /// Time spent draining before reloads, milliseconds.
    pub draining_ms: u64,
    /// Whether GeoServer serves now, or is being drained or reloaded (`/readyz`).
    pub phase: Phase,
}

/// What this node's GeoServer is doing, as a load balancer's health check needs to know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    /// Serving its current catalog.
    #[default]
    Serving,
    /// A reload starts once `drain_ms` has passed: taken out of the load balancer first.
    Draining,
    /// Reloading: the catalog is empty until the reload has finished.
    Reloading,
}

/// The reload task. Runs until `shutdown` turns true (or its sender is dropped), or until every
/// [`ReloadHandle`] is gone and nothing is owed.
///
/// `gs == None` (no `[geoserver] url`) never reloads. `ready` is called on this task before every
/// reload attempt and every `settings.recheck` while it says `Wait`, so it must be cheap.
/// `files`, when given, is held shared from the readiness check to the end of the reload
/// request; whoever writes the data directory holds it exclusively while writing, so GeoServer
/// never re-reads half a Delta, nor one that `ready` did not see. On
/// shutdown no new reload starts and the task returns at once; a running request is abandoned on
/// its blocking thread, which ends at the GeoServer timeout at the latest. Dropping a tokio
/// runtime waits for its blocking threads, so `main` should end with
/// `Runtime::shutdown_timeout` (or exit the process) rather than wait up to that timeout.
pub async fn run(
    gs: Option<GeoServer>,
    settings: ReloadSettings,
    mut rx: mpsc::Receiver<ReloadRequest>,
    ready: impl Fn() -> Readiness + Send + 'static,
    files: Option<Arc<RwLock<()>>>,
    stats: watch::Sender<ReloadStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(gs) = gs else {
        info!("no [geoserver] url configured: GeoServer will not be reloaded after changes");
        drop(rx);
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
    let mut schedule = Schedule::new(settings);
    let mut running: Option<(JoinHandle<Result<(), ReloadError>>, Instant)> = None;
    let mut inbox_open = true;

    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let deadline = schedule.next_deadline();
        if !inbox_open && running.is_none() && deadline.is_none() {
            return;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            msg = rx.recv(), if inbox_open => match msg {
                Some(ReloadRequest) => schedule.on_notify(Instant::now()),
                None => inbox_open = false,
            },
            joined = async { (&mut running.as_mut().expect("guarded").0).await }, if running.is_some() => {
                let started = running.take().expect("guarded").1;
                let result = joined.unwrap_or_else(|e| {
                    Err(ReloadError::Unreachable(format!("reload thread failed: {e}")))
                });
                finish(&mut schedule, result, started, &url, &stats);
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                let now = Instant::now();
                if !schedule.is_due(now) {
                    continue;
                }
                // Hold the data directory still from the readiness check to the end of the
                // reload: a Delta written in between could otherwise go unchecked.
                let reading = match &files {
                    Some(f) => Some(Arc::clone(f).read_owned().await),
                    None => None,
                };
                if let Readiness::Wait(missing) = ready() {
                    let held = schedule.on_not_ready(now);
                    match held {
                        Held::Started => info!("reload held back until references resolve: {missing}"),
                        Held::Continues => debug!("reload still held back: {missing}"),
                        Held::Expired => warn!(
                            "reloading GeoServer although references still do not resolve after {}: {missing}",
                            human(settings.reference_wait)
                        ),
                    }
                    if held != Held::Expired {
                        drop(reading);
                        continue;
                    }
                }
                schedule.on_reload_started();
                if !drain(settings.drain, &stats, &mut shutdown).await {
                    return;
                }
                running = Some(start(Arc::clone(&gs), reading, &stats));
            }
        }
    }
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
            human(now - started)
        ),
        (Ok(()), _) => info!("GeoServer reloaded in {}", human(now - started)),
        (Err(e), retry_in) => warn!(
            "reload of {url} failed (attempt {}): {e}; retrying in {}",
            schedule.failures(),
            human(retry_in.unwrap_or_default())
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

/// "250 ms", "4 s", "2.5 s", "10 min" for log lines.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well_in_log_lines() {
        assert_eq!(human(Duration::from_millis(250)), "250 ms");
        assert_eq!(human(Duration::from_secs(4)), "4 s");
        assert_eq!(human(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(human(Duration::from_secs(600)), "10 min");
    }
}
