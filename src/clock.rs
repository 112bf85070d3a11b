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
