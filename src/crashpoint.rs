//! Crash points for the crash-safety tests: `GSCLUSTER_CRASH_AT=NAME:N` makes the process abort
//! (no unwinding, no flushing — as close to `kill -9` as a process can do to itself) the N-th
//! time it reaches the point called NAME. Unset, a crash point costs one atomic load.
//!
//! Points: `outbox-written` (master: Delta in the outbox, manifest not yet committed),
//! `delta-committed` (master: committed, not yet handed to the publisher), `puback-received`
//! (master: broker acknowledged, outbox entry not yet removed), `file-written` (slave: after
//! each file of a Delta), `delta-written` (slave: all files written, not yet recorded),
//! `delta-recorded` (slave: recorded, not yet acknowledged), `journal-half` (any: half of a
//! state record appended, then abort — a torn write).

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

/// Abort here if this point is armed for this hit.
pub fn hit(name: &str) {
    if due(name) {
        abort(name);
    }
}

/// Abort now, saying where.
pub fn abort(name: &str) -> ! {
    eprintln!("gscluster: crash point {name} reached: aborting");
    std::process::abort()
}
