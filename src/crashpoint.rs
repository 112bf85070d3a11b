//! Crash points for the crash-safety tests: `GSCLUSTER_CRASH_AT=NAME:N` makes the process abort
//! (no unwinding, no flushing — as close to `kill -9` as a process can do to itself) the N-th
//! time it reaches the point called NAME. Unset, a crash point costs one atomic load.
//!
//! Points: `outbox-written` (master: Delta in the outbox, manifest not yet committed),
//! `delta-committed` (master: committed, not yet handed to the publisher), `puback-received`
//! (master: broker acknowledged, outbox entry not yet removed), `apply-planned` (slave: a Delta
//! or a resync batch planned, nothing written yet), `file-written` (slave: after
//! each file of a Delta), `delta-written` (slave: all files written, not yet recorded),
//! `delta-recorded` (slave: recorded, not yet acknowledged), `journal-half` (any: half of a
//! state record appended, then abort — a torn write), `history-pruned` (any: groups pruned from
//! the history, the transaction not yet committed).
//!
//! `GSCLUSTER_PAUSE_AT=NAME:N:MS` makes the process sleep MS milliseconds the N-th time it
//! reaches NAME (logged when the pause starts and ends), so a test can act at a known moment —
//! a local edit while a remote Delta is being applied, say — without guessing with timing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn spec() -> &'static Option<(String, u64)> {
    SPEC.get_or_init(|| {
        let v = std::env::var("GSCLUSTER_CRASH_AT").ok()?;
        let (name, n) = v.split_once(':').unwrap_or((v.as_str(), "1"));
        Some((name.to_string(), n.parse().unwrap_or(1)))
    })
}

/// Whether the named point is armed and this is the hit that must crash.
pub fn due(name: &str) -> bool {
    match spec() {
        Some((n, at)) if n == name => HITS.fetch_add(1, Ordering::SeqCst) + 1 == *at,
        _ => false,
    }
}

static PAUSE: OnceLock<Option<(String, u64, u64)>> = OnceLock::new();
static PAUSE_HITS: AtomicU64 = AtomicU64::new(0);

fn pause_spec() -> &'static Option<(String, u64, u64)> {
    PAUSE.get_or_init(|| {
        let v = std::env::var("GSCLUSTER_PAUSE_AT").ok()?;
        let mut parts = v.splitn(3, ':');
        let name = parts.next()?.to_string();
        let n = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
        let ms = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
        Some((name, n, ms))
    })
}

/// Abort here if this point is armed for this hit; pause here if a pause is.
pub fn hit(name: &str) {
    if due(name) {
        abort(name);
    }
    if let Some((n, at, ms)) = pause_spec() {
        if n == name && PAUSE_HITS.fetch_add(1, Ordering::SeqCst) + 1 == *at {
            log::warn!("pause point {name} reached: pausing {ms} ms");
            std::thread::sleep(std::time::Duration::from_millis(*ms));
            log::warn!("pause point {name}: resuming");
        }
    }
}

/// Abort now, saying where.
pub fn abort(name: &str) -> ! {
    eprintln!("gscluster: crash point {name} reached: aborting");
    std::process::abort()
}
