//! The TOML shapes as serde reads them, before validation: every key optional, unknown keys
//! refused. `validate` turns them into the checked [`super::Config`].

use super::role::{OnDrift, Role};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) node: RawNode,
    pub(super) geoserver: Option<RawGeoServer>,
    #[serde(default)]
    pub(super) replicate: RawReplicate,
    #[serde(default)]
    pub(super) master: RawMaster,
    #[serde(default)]
    pub(super) mqtt: RawMqtt,
    pub(super) broker: Option<RawBroker>,
    pub(super) metrics: Option<RawMetrics>,
    pub(super) security: Option<RawSecurity>,
    #[serde(default)]
    pub(super) history: RawHistory,
    #[serde(default)]
    pub(super) resync: RawResync,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResync {
    pub(super) batch_files: Option<usize>,
    pub(super) batch_kb: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHistory {
    pub(super) enabled: Option<bool>,
    pub(super) keep_days: Option<u64>,
    pub(super) max_mb: Option<u64>,
    pub(super) max_changes: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecurity {
    pub(super) key_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) previous_key_files: Vec<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) id: Option<String>,
    pub(super) group: Option<String>,
    pub(super) role: Option<Role>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) on_drift: Option<OnDrift>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGeoServer {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) url: Option<String>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) reload_quiet_ms: Option<u64>,
    pub(super) reload_max_delay_ms: Option<u64>,
    pub(super) reload_timeout_s: Option<u64>,
    pub(super) reference_wait_ms: Option<u64>,
    pub(super) drain_ms: Option<u64>,
    pub(super) max_concurrent_reloads: Option<RawCount>,
    pub(super) reload_lease_timeout_ms: Option<u64>,
    pub(super) reload_max_share: Option<RawCount>,
    pub(super) apply: Option<super::types::ApplyMode>,
    pub(super) convergence_reload: Option<String>,
}

/// A number, or a string such as `"50%"`.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub(super) enum RawCount {
    Number(i64),
    Text(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplicate {
    pub(super) include: Option<Vec<String>>,
    pub(super) exclude: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaster {
    pub(super) quiet_ms: Option<u64>,
    pub(super) rescan_interval_s: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMqtt {
    pub(super) servers: Option<Vec<String>>,
    pub(super) topic_prefix: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) keep_alive_s: Option<u64>,
    pub(super) failback_s: Option<u64>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) client_cert_file: Option<PathBuf>,
    pub(super) client_key_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBroker {
    pub(super) listen: Option<String>,
    pub(super) max_packet_size: Option<usize>,
    pub(super) segment_size: Option<usize>,
    pub(super) segment_count: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) tls_cert_file: Option<PathBuf>,
    pub(super) tls_key_file: Option<PathBuf>,
    pub(super) users_file: Option<PathBuf>,
}
