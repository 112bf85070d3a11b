//! What the reload task reports: its counters and what GeoServer is doing, for the status, the
//! metrics and `/readyz`.

use super::lease::Claim;

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
    /// Changes applied through GeoServer's REST API instead of a reload (`apply = "per-object"`).
    pub per_object: u64,
    /// Time spent waiting for a reload turn (`max_concurrent_reloads`), milliseconds.
    pub waiting_ms: u64,
    /// Whether GeoServer serves now, or is being drained or reloaded (`/readyz`).
    pub phase: Phase,
    /// This node's place in the group's reload queue, published in its status.
    pub lease: Option<Claim>,
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
