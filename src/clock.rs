//! Wall-clock time, read in one place. gscluster orders changes with the hybrid logical clock
//! (`hlc`), never with these values alone; they stamp statuses, exports and log-facing times,
//! and seed identifiers that must differ across restarts.

use std::time::{SystemTime, UNIX_EPOCH};

/// Time since the Unix epoch; zero on a clock set before 1970.
fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
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
    let now = since_epoch().as_secs() as libc::time_t;
    // SAFETY: `localtime_r` only writes the `tm` it is given, which lives on this stack.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&now, &mut tm).is_null() };
    if !ok {
        return (now.rem_euclid(86_400)) as u32;
    }
    (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec) as u32
}

/// How long from `now` (seconds since midnight) until the next `at` (seconds since midnight):
/// a day when it is now.
pub fn until_time_of_day(now: u32, at: u32) -> std::time::Duration {
    let wait = (i64::from(at) - i64::from(now)).rem_euclid(86_400);
    std::time::Duration::from_secs(if wait == 0 { 86_400 } else { wait as u64 })
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
