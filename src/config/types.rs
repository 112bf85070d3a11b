//! The validated configuration, section by section (what `validate` builds from `raw`).

use super::role::{OnDrift, Role};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub node: Node,
    pub geoserver: GeoServer,
    pub replicate: Replicate,
    pub master: Master,
    pub mqtt: Mqtt,
    pub broker: Option<Broker>,
    pub security: Option<Security>,
    /// `[metrics]`: where to serve `/metrics` and `/healthz`; `None` = no HTTP server.
    pub metrics: Option<std::net::SocketAddr>,
    /// `[history]`: what this node keeps of the changes it applies and publishes; `None` = off.
    pub history: Option<History>,
    /// `[resync]`: how much a resync asks for at a time.
    pub resync: Resync,
}

/// `[resync]` (docs/resync.md): the most files and file bytes one batch of a resync asks for;
/// smaller batches for slow links (docs/brokers.md, "Slow and metered links").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resync {
    pub batch_files: usize,
    pub batch_bytes: u64,
}

impl Default for Resync {
    fn default() -> Resync {
        Resync {
            batch_files: super::defaults::RESYNC_BATCH_FILES,
            batch_bytes: super::defaults::RESYNC_BATCH_KB * 1024,
        }
    }
}

/// `[history]` (docs/history.md): groups older than `keep_days` go, and the oldest while more
/// than `max_mb` or `max_changes` groups are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct History {
    pub keep_days: u64,
    pub max_mb: u64,
    pub max_changes: u64,
}

/// `[security]`: the group key (never printed).
#[derive(Clone)]
pub struct Security {
    pub key: Vec<u8>,
    pub previous: Vec<Vec<u8>>,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Security {{ key: <redacted>, previous: {} }}",
            self.previous.len()
        )
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub group: String,
    pub role: Role,
    pub state_dir: PathBuf,
    pub on_drift: OnDrift,
}

#[derive(Clone, Debug)]
pub struct GeoServer {
    pub data_dir: PathBuf,
    /// `None`: never reload (files are still written).
    pub url: Option<String>,
    pub user: String,
    pub password: String,
    pub reload_quiet: Duration,
    pub reload_max_delay: Duration,
    pub reload_timeout: Duration,
    pub reference_wait: Duration,
    /// `drain_ms`: `/readyz` says 503 this long before a reload starts (0: not at all).
    pub drain: Duration,
    /// `max_concurrent_reloads`: how many applying nodes of the group reload at once.
    pub max_concurrent_reloads: ReloadLimit,
    /// `reload_lease_timeout_ms`: a reload turn whose node fell silent this long is void.
    pub lease_timeout: Duration,
    /// `apply`: how changes reach GeoServer's memory.
    pub apply: ApplyMode,
    /// `convergence_reload`: a reload every day at this local time (seconds since midnight),
    /// re-aligning GeoServer's memory with its data directory; `None`: never.
    pub convergence_reload: Option<u32>,
    /// `reload_max_share`, percent: while changes keep coming, reloads take at most this share
    /// of the time (within `reload_max_delay`); 100 = no pacing.
    pub reload_max_share: u32,
}

/// `[geoserver] apply`: how applied changes reach GeoServer's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyMode {
    /// `POST /rest/reload` (coalesced), for every change GeoServer does not re-read by itself.
    Reload,
    /// One REST call per changed object where GeoServer's REST API applies it exactly, a reload
    /// for the rest (docs/reload.md "Per-object apply").
    PerObject,
}

/// `[geoserver] max_concurrent_reloads`: a number of nodes, a share of the group's applying
/// nodes that are online, or no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadLimit {
    /// `0`: every node reloads when its changes are due (no turns taken).
    Unlimited,
    Nodes(u32),
    /// `"50%"`: rounded down, but at least one node.
    Percent(u32),
}

impl ReloadLimit {
    /// How many of `applying` online applying nodes (this one included) may reload at once;
    /// `None`: no limit.
    pub fn of(self, applying: usize) -> Option<usize> {
        match self {
            ReloadLimit::Unlimited => None,
            ReloadLimit::Nodes(n) => Some(n as usize),
            ReloadLimit::Percent(p) => Some((applying * p as usize / 100).max(1)),
        }
    }
}

impl fmt::Display for ReloadLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadLimit::Unlimited => f.write_str("no limit"),
            ReloadLimit::Nodes(n) => write!(f, "{n} node(s)"),
            ReloadLimit::Percent(p) => write!(f, "{p}% of the applying nodes"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Replicate {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Master {
    pub quiet: Duration,
    /// `None`: the default, which depends on whether the data directory can be watched.
    pub rescan_interval: Option<Duration>,
}

#[derive(Clone)]
pub struct Mqtt {
    pub servers: Vec<Server>,
    pub topic_prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: Duration,
    /// Connected to a later entry of `servers`, check this often whether the first is back,
    /// and move to it (`None`: stay wherever the connection works).
    pub failback: Option<Duration>,
    /// TLS client configuration, present when some server is `mqtts://`.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for Mqtt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mqtt")
            .field("servers", &self.servers)
            .field("topic_prefix", &self.topic_prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("keep_alive", &self.keep_alive)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// One broker address from `[mqtt] servers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

#[derive(Clone)]
pub struct Broker {
    pub listen: SocketAddr,
    /// Certificate chain and key files (PEM): the listener speaks TLS only.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// user → password; when set, clients must log in.
    pub users: Option<std::collections::HashMap<String, String>>,
    /// Largest MQTT packet the broker accepts, bytes.
    pub max_packet_size: usize,
    /// Size of one in-memory log segment per topic filter, bytes.
    pub segment_size: usize,
    /// Segments kept per topic filter before the oldest is dropped.
    pub segment_count: usize,
    pub max_connections: usize,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("users", &self.users.as_ref().map(|u| u.len()))
            .field("max_packet_size", &self.max_packet_size)
            .field("segment_size", &self.segment_size)
            .field("segment_count", &self.segment_count)
            .finish()
    }
}

/// A configuration problem: which key or path, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The keys `[security]` configures; no section, no key.
    pub fn auth(&self) -> crate::security::Auth {
        match &self.security {
            Some(s) => crate::security::Auth::with_keys(s.key.clone(), s.previous.clone()),
            None => crate::security::Auth::none(),
        }
    }

    /// The replicate filter `[replicate]` configures.
    pub fn filter(&self) -> Result<crate::datadir::Filter, String> {
        crate::datadir::Filter::new(&self.replicate.include, &self.replicate.exclude)
            .map_err(|e| format!("[replicate]: {e}"))
    }
}
