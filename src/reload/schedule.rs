//! When to reload: the pure timing policy of the reload task.
//!
//! No sockets, no sleeping: the task feeds events (`on_notify`, `on_not_ready`,
//! `on_reload_started`, `on_reload_finished`) with the current instant and sleeps until
//! `next_deadline`. Everything here is tested by passing instants by hand.

use tokio::time::{Duration, Instant};

/// Timing of the reload task; `Default` gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadSettings {
    /// `reload_quiet_ms`: reload once no delta has arrived for this long.
    pub quiet: Duration,
    /// `reload_max_delay_ms`: but never later than this after the first pending delta.
    pub max_delay: Duration,
    /// How long a reload waits for unresolved references before it goes ahead anyway.
    pub reference_wait: Duration,
    /// How often readiness is re-checked while a reload is held back.
    pub recheck: Duration,
    /// Wait after the first failed reload; doubles with each further failure...
    pub backoff_initial: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    /// `drain_ms`: how long the node says it is not ready (`/readyz`) before a reload starts.
    pub drain: Duration,
    /// `reload_max_share` in percent: while changes keep coming, the next reload waits until
    /// the last one took at most this share of the time since it started (100: no pacing);
    /// never past `max_delay` after the first pending notify.
    pub max_share: u32,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        ReloadSettings {
            quiet: Duration::from_millis(1000),
            max_delay: Duration::from_millis(10_000),
            reference_wait: Duration::from_secs(30),
            recheck: Duration::from_millis(100),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            drain: Duration::ZERO,
            max_share: 25,
        }
    }
}

/// The reload timing state of one GeoServer.
///
/// What must stay true: at most one reload runs, and however many notifies arrive while it runs
/// or while a failed one waits for its retry, they are owed exactly one more reload.
#[derive(Debug)]
pub(crate) struct Schedule {
    settings: ReloadSettings,
    /// First and latest notify not yet covered by a started reload.
    pending: Option<Notified>,
    running: bool,
    /// Failed attempts in a row; the backoff grows with it and a success resets it.
    failures: u32,
    /// After a failure the reload is owed again, but not before this instant.
    retry_at: Option<Instant>,
    /// Set while a due reload is held back because references do not resolve yet.
    hold: Option<Hold>,
    /// When the running reload started.
    started: Option<Instant>,
    /// After a successful reload, the next one not before this (`max_share`).
    rest_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Notified {
    first: Instant,
    last: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    since: Instant,
    recheck_at: Instant,
}

/// What to do with a due reload whose readiness check said "wait".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// The hold just began; worth one log line.
    Started,
    /// Still within the bound; check again at the next deadline.
    Continues,
    /// The bound (`reference_wait`) has passed: reload anyway.
    Expired,
}

impl Schedule {
    pub(crate) fn new(settings: ReloadSettings) -> Self {
        Schedule {
            settings,
            pending: None,
            running: false,
            failures: 0,
            retry_at: None,
            hold: None,
            started: None,
            rest_until: None,
        }
    }

    /// A delta was applied: a reload is owed, and the quiet window starts again.
    pub(crate) fn on_notify(&mut self, now: Instant) {
        let first = self.pending.map_or(now, |p| p.first);
        self.pending = Some(Notified { first, last: now });
        if let Some(hold) = &mut self.hold {
            // The missing reference may just have arrived: check again right away.
            hold.recheck_at = now;
        }
    }

    /// When the task should next wake up to try a reload, or `None` when nothing is owed (or a
    /// reload is running: its completion wakes the task instead).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.running {
            return None;
        }
        if let Some(hold) = self.hold {
            return Some(
                hold.recheck_at
                    .min(hold.since + self.settings.reference_wait),
            );
        }
        let quiet = self.pending.map(|p| {
            let after = (p.last + self.settings.quiet).max(self.rest_until.unwrap_or(p.last));
            after.min(p.first + self.settings.max_delay)
        });
        match (quiet, self.retry_at) {
            (Some(q), Some(r)) => Some(q.max(r)),
            (q, r) => q.or(r),
        }
    }

    /// True when a reload should start now, readiness permitting.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.next_deadline().is_some_and(|d| d <= now)
    }

    /// The readiness check said "wait" for a due reload.
    pub(crate) fn on_not_ready(&mut self, now: Instant) -> Held {
        let started = self.hold.is_none();
        let since = self.hold.map_or(now, |h| h.since);
        if now >= since + self.settings.reference_wait {
            return Held::Expired;
        }
        self.hold_since(since, now, started)
    }

    /// The readiness check said "wait for a resync" (one runs, or this node lacks Deltas it
    /// skipped): held with no time limit, and the bounded wait for references starts again once
    /// that is over.
    pub(crate) fn on_awaiting_resync(&mut self, now: Instant) -> Held {
        let started = self.hold.is_none();
        self.hold_since(now, now, started)
    }

    /// Hold the due reload (counted from `since`) and recheck it after `recheck`.
    fn hold_since(&mut self, since: Instant, now: Instant, started: bool) -> Held {
        self.hold = Some(Hold {
            since,
            recheck_at: now + self.settings.recheck,
        });
        if started {
            Held::Started
        } else {
            Held::Continues
        }
    }

    /// What was owed was applied without a reload (per object): nothing is owed any more.
    pub(crate) fn on_covered(&mut self) {
        self.pending = None;
        self.hold = None;
    }

    /// A reload request was sent: it covers every notify so far.
    pub(crate) fn on_reload_started(&mut self, now: Instant) {
        self.pending = None;
        self.retry_at = None;
        self.hold = None;
        self.running = true;
        self.started = Some(now);
    }

    /// The reload finished. On failure the reload is owed again after a backoff, which is
    /// returned for the log line. After a success, the next reload rests so that this one took
    /// at most `max_share` of the time from its start to the next one's.
    pub(crate) fn on_reload_finished(&mut self, ok: bool, now: Instant) -> Option<Duration> {
        self.running = false;
        let took = self.started.take().map_or(Duration::ZERO, |s| now - s);
        if ok {
            self.failures = 0;
            self.rest_until = rest(took, self.settings.max_share).map(|r| now + r);
            return None;
        }
        self.failures += 1;
        let delay = backoff(&self.settings, self.failures);
        self.retry_at = Some(now + delay);
        Some(delay)
    }

    /// Failed attempts in a row (0 after a success).
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

/// How long to rest after a reload that took `took`, so that it is at most `share` percent of
/// the time until the next one starts; `None` at 100 % (or more).
pub(crate) fn rest(took: Duration, share: u32) -> Option<Duration> {
    if share >= 100 || share == 0 {
        return None;
    }
    Some(took * (100 - share) / share)
}

/// The wait after the `failures`-th failure in a row: the initial delay doubling up to a cap.
pub(crate) fn backoff(settings: &ReloadSettings, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    settings
        .backoff_initial
        .saturating_mul(1 << doublings)
        .min(settings.backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings() -> ReloadSettings {
        ReloadSettings {
            quiet: ms(1000),
            max_delay: ms(10_000),
            reference_wait: ms(30_000),
            recheck: ms(100),
            backoff_initial: ms(1000),
            backoff_max: ms(60_000),
            drain: Duration::ZERO,
            max_share: 100,
        }
    }

    #[test]
    fn nothing_owed_means_no_deadline() {
        let s = Schedule::new(settings());
        assert_eq!(s.next_deadline(), None);
        assert!(!s.is_due(Instant::now()));
    }

    #[test]
    fn each_notify_restarts_the_quiet_window() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings());
        s.on_notify(t0);
        assert_eq!(s.next_deadline(), Some(t0 + ms(1000)));
        s.on_notify(t0 + ms(900));
        assert_eq!(s.next_deadline(), Some(t0 + ms(1900)));
        assert!(!s.is_due(t0 + ms(1000)));
        assert!(s.is_due(t0 + ms(1900)));
    }

    #[test]
    fn a_hold_for_skipped_deltas_never_expires_and_restarts_the_reference_wait() {
        let t0 = Instant::now();
        let mut s = Schedule::new(ReloadSettings::default());
        let wait = ReloadSettings::default().reference_wait;
        assert_eq!(s.on_awaiting_resync(t0), Held::Started);
        // Long past the bounded wait for references, still held.
        assert_eq!(s.on_awaiting_resync(t0 + wait * 10), Held::Continues);
        // The Deltas arrived, references still do not resolve: the bounded wait counts from
        // the last hold for skipped Deltas, not from the first hold.
        assert_eq!(s.on_not_ready(t0 + wait * 10 + ms(100)), Held::Continues);
        assert_eq!(s.on_not_ready(t0 + wait * 11 - ms(100)), Held::Continues);
        assert_eq!(s.on_not_ready(t0 + wait * 11 + ms(100)), Held::Expired);
    }

    #[test]
    fn max_delay_caps_a_never_ending_trickle() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings());
        let mut t = t0;
        while t < t0 + ms(9_800) {
            s.on_notify(t);
            assert!(!s.is_due(t), "due too early at {:?}", t - t0);
            t += ms(500);
        }
        s.on_notify(t);
        assert_eq!(s.next_deadline(), Some(t0 + ms(10_000)));
    }

    #[test]
    fn notifies_during_a_running_reload_owe_exactly_one_more() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings());
        s.on_notify(t0);
        s.on_reload_started(t0);
        assert_eq!(s.next_deadline(), None, "nothing starts while one runs");
        for i in 0..50 {
            s.on_notify(t0 + ms(10 * i));
        }
        assert_eq!(s.next_deadline(), None);
        s.on_reload_finished(true, t0 + ms(5000));
        // One more reload, already due since the burst ended long ago.
        assert!(s.is_due(t0 + ms(5000)));
        s.on_reload_started(t0);
        s.on_reload_finished(true, t0 + ms(6000));
        assert_eq!(
            s.next_deadline(),
            None,
            "the burst was covered by one reload"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let got: Vec<u64> = (1..=9).map(|n| backoff(&settings(), n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(&settings(), u32::MAX), ms(60_000));
    }

    #[test]
    fn a_failed_reload_is_retried_after_the_backoff_and_success_resets_it() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings());
        s.on_notify(t0);
        s.on_reload_started(t0);
        assert_eq!(s.on_reload_finished(false, t0 + ms(1000)), Some(ms(1000)));
        assert_eq!(s.next_deadline(), Some(t0 + ms(2000)));
        s.on_reload_started(t0);
        assert_eq!(s.on_reload_finished(false, t0 + ms(2000)), Some(ms(2000)));
        assert_eq!(s.failures(), 2);
        assert_eq!(s.next_deadline(), Some(t0 + ms(4000)));
        s.on_reload_started(t0);
        assert_eq!(s.on_reload_finished(true, t0 + ms(4000)), None);
        assert_eq!(s.failures(), 0);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn notifies_during_backoff_do_not_add_reloads_or_cut_the_backoff() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings());
        s.on_notify(t0);
        s.on_reload_started(t0);
        s.on_reload_finished(false, t0);
        s.on_reload_started(t0);
        s.on_reload_finished(false, t0); // retry at t0 + 2 s
        s.on_notify(t0 + ms(100));
        s.on_notify(t0 + ms(200));
        assert_eq!(s.next_deadline(), Some(t0 + ms(2000)));
        // A notify late in the backoff still gets its quiet window.
        s.on_notify(t0 + ms(1900));
        assert_eq!(s.next_deadline(), Some(t0 + ms(2900)));
        s.on_reload_started(t0);
        s.on_reload_finished(true, t0 + ms(3000));
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_hold_rechecks_periodically_and_on_notify_and_expires_at_the_bound() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings());
        s.on_notify(t0);
        let due = t0 + ms(1000);
        assert!(s.is_due(due));
        assert_eq!(s.on_not_ready(due), Held::Started);
        assert_eq!(s.next_deadline(), Some(due + ms(100)));
        assert_eq!(s.on_not_ready(due + ms(100)), Held::Continues);
        s.on_notify(due + ms(150));
        assert_eq!(
            s.next_deadline(),
            Some(due + ms(150)),
            "notify rechecks at once"
        );
        assert_eq!(s.on_not_ready(due + ms(150)), Held::Continues);
        // Near the bound the deadline is the bound itself.
        assert_eq!(s.on_not_ready(due + ms(29_950)), Held::Continues);
        assert_eq!(s.next_deadline(), Some(due + ms(30_000)));
        assert_eq!(s.on_not_ready(due + ms(30_000)), Held::Expired);
        s.on_reload_started(t0);
        s.on_reload_finished(true, due + ms(31_000));
        // The next reload gets a fresh bound.
        s.on_notify(due + ms(40_000));
        assert_eq!(s.on_not_ready(due + ms(41_000)), Held::Started);
    }

    #[test]
    fn after_a_reload_the_next_one_rests_to_keep_its_share_within_the_max_delay() {
        let t0 = Instant::now();
        let mut s = Schedule::new(ReloadSettings {
            max_share: 25,
            ..settings()
        });
        assert_eq!(rest(ms(3000), 25), Some(ms(9000)));
        assert_eq!(rest(ms(3000), 100), None);
        // A first change after a long quiet time: no rest.
        s.on_notify(t0);
        assert_eq!(s.next_deadline(), Some(t0 + ms(1000)));
        s.on_reload_started(t0 + ms(1000));
        s.on_reload_finished(true, t0 + ms(3000)); // took 2 s: rest 6 s, until 9 s
        s.on_notify(t0 + ms(3500));
        assert_eq!(
            s.next_deadline(),
            Some(t0 + ms(9000)),
            "rests past the quiet window"
        );
        // Never past max_delay after the first pending notify.
        s.on_reload_started(t0 + ms(9000));
        s.on_reload_finished(true, t0 + ms(13_000)); // took 4 s: rest 12 s, until 25 s
        s.on_notify(t0 + ms(13_000));
        assert_eq!(s.next_deadline(), Some(t0 + ms(23_000)));
        // A failed reload does not rest: its backoff rules.
        s.on_reload_started(t0 + ms(23_000));
        s.on_reload_finished(false, t0 + ms(24_000));
        assert_eq!(s.next_deadline(), Some(t0 + ms(25_000)));
    }
}
