//! Defaults, in one place so config.toml.example and the code agree.

pub const GROUP: &str = "default";
pub const STATE_DIR: &str = "/var/lib/gscluster";
pub const DATA_DIR: &str = "/var/lib/geoserver/data";
pub const USER: &str = "admin";
pub const PASSWORD: &str = "geoserver";
pub const RELOAD_QUIET_MS: u64 = 1000;
pub const RELOAD_MAX_DELAY_MS: u64 = 10_000;
pub const RELOAD_TIMEOUT_S: u64 = 600;
pub const REFERENCE_WAIT_MS: u64 = 30_000;
pub const DRAIN_MS: u64 = 0;
/// Longest `drain_ms`: the applies of Deltas wait while a node drains.
pub const MAX_DRAIN_MS: u64 = 120_000;
/// `max_concurrent_reloads`: half the group keeps serving while the other half reloads.
pub const MAX_CONCURRENT_RELOADS: &str = "50%";
pub const RELOAD_LEASE_TIMEOUT_MS: u64 = 30_000;
/// `reload_max_share`: a node streaming changes serves at least three quarters of the time.
pub const RELOAD_MAX_SHARE_PERCENT: u32 = 25;
/// Shortest `reload_lease_timeout_ms`: a claim is refreshed three times per timeout.
pub const MIN_RELOAD_LEASE_TIMEOUT_MS: u64 = 1000;
pub const QUIET_MS: u64 = 20;
/// Full rescans: the safety net under filesystem notifications, or the only detection
/// where the data directory cannot be watched.
pub const RESCAN_WATCHED_S: u64 = 600;
pub const RESCAN_UNWATCHED_S: u64 = 60;
pub const SERVER: &str = "mqtt://127.0.0.1:1883";
pub const TOPIC_PREFIX: &str = "gscluster";
pub const KEEP_ALIVE_S: u64 = 30;
pub const FAILBACK_S: u64 = 30;
pub const BROKER_LISTEN: &str = "0.0.0.0:1883";
pub const BROKER_MAX_PACKET_SIZE: usize = 1024 * 1024;
pub const BROKER_SEGMENT_SIZE: usize = 4 * 1024 * 1024;
pub const BROKER_SEGMENT_COUNT: usize = 4;
pub const BROKER_MAX_CONNECTIONS: usize = 1000;
/// `[history]`: a month of changes, within 512 MiB and 100,000 groups, whichever is reached
/// first (BENCHMARKS.md: a month of a busy site's edits).
pub const HISTORY_KEEP_DAYS: u64 = 30;
pub const HISTORY_MAX_MB: u64 = 512;
pub const HISTORY_MAX_CHANGES: u64 = 100_000;
/// `[resync]`: at most 2,000 files (the ask's list of paths stays well under one message) and
/// 4 MiB of content before compression per batch.
pub const RESYNC_BATCH_FILES: usize = 2000;
pub const RESYNC_BATCH_KB: u64 = 4096;
