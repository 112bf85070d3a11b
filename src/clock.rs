//! Wall-clock time, read in one place. gscluster orders changes with the hybrid logical clock
//! (`hlc`), never with these values alone; they stamp statuses, exports and log-facing times,
//! and seed identifiers that must differ across restarts.

//!
//! `GSCLUSTER_CLOCK_OFFSET_MS=N` (a test hook, like `crashpoint`) shifts this node's wall clock
//! by N milliseconds (negative: behind), so a test can run a node whose clock is hours off and
//! show that the versioning rule still converges. Unset, it costs one load.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static OFFSET_MS: OnceLock<i64> = OnceLock::new();

/// The test hook's offset, read once (0 when unset or unreadable).
fn offset_ms() -> i64 {
    *OFFSET_MS.get_or_init(|| {
        let Ok(v) = std::env::var("GSCLUSTER_CLOCK_OFFSET_MS") else {
            return 0;
        };
        match v.trim().parse::<i64>() {
            Ok(ms) => {
                log::warn!("GSCLUSTER_CLOCK_OFFSET_MS={ms}: this node's wall clock is shifted by {ms} ms (a test hook)");
                ms
            }
            Err(_) => {
                log::error!("GSCLUSTER_CLOCK_OFFSET_MS={v:?} is not a number of milliseconds; ignored");
                0
            }
        }
    })
}

/// Time since the Unix epoch (shifted by the test hook); zero on a clock set before 1970.
fn since_epoch() -> Duration {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    match offset_ms() {
        0 => real,
        ms if ms > 0 => real + Duration::from_millis(ms as u64),
        ms => real.saturating_sub(Duration::from_millis(ms.unsigned_abs())),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    u64::try_from(since_epoch().as_micros()).unwrap_or(u64::MAX)
}

/// Nanoseconds since the Unix epoch (wrapping after the year 2554).
pub fn now_ns() -> u64 {
    since_epoch().as_nanos() as u64
}

/// Seconds since local midnight now (the machine's time zone, as `localtime_r` reads it).
pub fn local_seconds_of_day() -> u32 {
    let secs = since_epoch().as_secs();
    // The type `localtime_r` takes (`time_t`, whose name musl's libc deprecates), inferred.
    let now = secs as _;
    // SAFETY: `localtime_r` only writes the `tm` it is given, which lives on this stack.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&now, &mut tm).is_null() };
    if !ok {
        return (secs % 86_400) as u32;
    }
    (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec) as u32
}

/// How long from `now` (seconds since midnight) until the next `at` (seconds since midnight):
/// a day when it is now.
pub fn until_time_of_day(now: u32, at: u32) -> Duration {
    let wait = (i64::from(at) - i64::from(now)).rem_euclid(86_400);
    Duration::from_secs(if wait == 0 { 86_400 } else { wait as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_time_of_day_is_today_or_tomorrow() {
        let h = |n: u32| n * 3600;
        assert_eq!(until_time_of_day(h(2), h(3)).as_secs(), 3600);
        assert_eq!(until_time_of_day(h(4), h(3)).as_secs(), 23 * 3600);
        assert_eq!(until_time_of_day(h(3), h(3)).as_secs(), 86_400);
        assert!(local_seconds_of_day() < 86_400);
    }
}
