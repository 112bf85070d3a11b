//! The TOML configuration: parsed, defaulted and validated up front.
//!
//! Every error names the key (`[section] key`) or the path it is about and says why, so that
//! `gscluster check` and a failed start tell the administrator exactly what to fix. Unknown keys
//! are errors: a typo must never silently fall back to a default.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod raw;
mod validate;

use raw::RawConfig;
pub use validate::parse_server;
use validate::validate;

/// Where the configuration is read from when neither `-c` nor `GSCLUSTER_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/gscluster/config.toml";

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

/// What a node does with deltas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Publishes local changes, never applies remote ones.
    Master,
    /// Applies remote changes, never publishes.
    Slave,
    /// Both publishes and applies.
    Both,
}

impl Role {
    pub fn publishes(self) -> bool {
        matches!(self, Role::Master | Role::Both)
    }
    pub fn applies(self) -> bool {
        matches!(self, Role::Slave | Role::Both)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Slave => "slave",
            Role::Both => "both",
        }
    }
}

/// What a pure slave does when a replicated file is edited locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDrift {
    Revert,
    Warn,
}

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

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Defaults, in one place so config.toml.example and the code agree.
pub mod defaults {
    pub const GROUP: &str = "default";
    pub const STATE_DIR: &str = "/var/lib/gscluster";
    pub const DATA_DIR: &str = "/var/lib/geoserver/data";
    pub const USER: &str = "admin";
    pub const PASSWORD: &str = "geoserver";
    pub const RELOAD_QUIET_MS: u64 = 1000;
    pub const RELOAD_MAX_DELAY_MS: u64 = 10_000;
    pub const RELOAD_TIMEOUT_S: u64 = 600;
    pub const REFERENCE_WAIT_MS: u64 = 30_000;
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
}

/// Read and validate the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base = std::path::absolute(&base).unwrap_or(base);
    parse_relative_to(&text, &base).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
}

/// Parse and validate configuration text; relative paths must not occur.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError(toml_error(text, &e)))?;
    validate(raw, None)
}

/// Parse and validate configuration text; relative paths are taken relative to `base` (the
/// config file's folder), so an example config can point at files beside it.
pub fn parse_relative_to(text: &str, base: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError(toml_error(text, &e)))?;
    validate(raw, Some(base))
}

/// Make a configured path absolute, or explain why it cannot be.
fn resolve(key: &str, path: PathBuf, base: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if path.is_absolute() {
        return Ok(path);
    }
    match base {
        Some(b) => Ok(b.join(path)),
        None => err(format!(
            "{key} {}: must be an absolute path",
            path.display()
        )),
    }
}

/// One line for logs that names the key (`[section] key`), the line, and toml's reason.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else {
        return format!("invalid config: {msg}");
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text[..start]
        .rfind('\n')
        .map_or(text, |i| &text[i + 1..])
        .lines()
        .next()
        .unwrap_or("")
        .trim();
    let section = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.split(']').next().unwrap_or(l).to_string() + "]");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    match (section, key) {
        (Some(s), Some(k)) => format!("{s} {k} (line {line_no}): {msg}"),
        (None, Some(k)) => format!("{k} (line {line_no}): {msg}"),
        _ => format!("line {line_no}: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str =
        "[node]\nid = \"a\"\nstate_dir = \"/tmp/st\"\n[geoserver]\ndata_dir = \"/tmp/dd\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.node.role, Role::Both);
        assert_eq!(c.node.group, "default");
        assert_eq!(c.mqtt.servers[0].port, 1883);
        assert_eq!(c.geoserver.reload_quiet, Duration::from_millis(1000));
        assert!(c.broker.is_none());
    }

    #[test]
    fn failback_and_rescan_defaults_and_bounds() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.mqtt.failback, Some(Duration::from_secs(30)));
        assert_eq!(c.master.rescan_interval, None, "chosen by the detector");
        let c = parse(&format!(
            "{MIN}[mqtt]\nfailback_s = 0\n[master]\nrescan_interval_s = 5\n"
        ))
        .unwrap();
        assert_eq!(c.mqtt.failback, None);
        assert_eq!(c.master.rescan_interval, Some(Duration::from_secs(5)));
        let e = parse(&format!("{MIN}[mqtt]\nfailback_s = 100000\n")).unwrap_err();
        assert!(e.0.contains("[mqtt] failback_s"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse(&format!("{MIN}relod_quiet_ms = 5\n")).unwrap_err();
        assert!(e.0.contains("relod_quiet_ms"), "{e}");
    }

    #[test]
    fn bad_enum_and_bad_type_name_their_key_and_line() {
        let e = parse("[node]\nid = \"a\"\nrole = \"boss\"\n[geoserver]\ndata_dir=\"/x\"\n")
            .unwrap_err();
        assert!(e.0.starts_with("[node] role (line 3):"), "{e}");
        assert!(e.0.contains("boss"), "{e}");
        let e = parse(&format!("{MIN}reload_quiet_ms = \"x\"\n")).unwrap_err();
        assert!(
            e.0.starts_with("[geoserver] reload_quiet_ms (line 6):"),
            "{e}"
        );
    }

    #[test]
    fn metrics_listen_is_an_address_and_port() {
        let c = parse(&format!("{MIN}[metrics]\nlisten = \"127.0.0.1:9464\"\n")).unwrap();
        assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(parse(MIN).unwrap().metrics, None);
        let e = parse(&format!("{MIN}[metrics]\nlisten = \"localhost\"\n")).unwrap_err();
        assert!(e.0.starts_with("[metrics] listen \"localhost\""), "{e}");
        let e = parse(&format!("{MIN}[metrics]\n")).unwrap_err();
        assert!(e.0.contains("[metrics] listen: required"), "{e}");
    }

    #[test]
    fn state_dir_inside_data_dir_is_refused() {
        let e = parse("[node]\nid = \"a\"\nstate_dir = \"/srv/gs/data/.gscluster\"\n[geoserver]\ndata_dir = \"/srv/gs/data\"\n").unwrap_err();
        assert!(e.0.contains("state_dir"), "{e}");
    }

    #[test]
    fn missing_data_dir_is_named() {
        let e = parse("[node]\nid = \"a\"\n[geoserver]\nurl = \"http://x\"\n").unwrap_err();
        assert!(e.0.contains("data_dir"), "{e}");
    }

    #[test]
    fn node_id_with_topic_wildcard_is_refused() {
        let e = parse("[node]\nid = \"a/#\"\n[geoserver]\ndata_dir = \"/x\"\n").unwrap_err();
        assert!(e.0.contains("[node] id"), "{e}");
    }

    #[test]
    fn servers_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_server("mqtt://broker.example:8883").unwrap(),
            Server {
                host: "broker.example".into(),
                port: 8883,
                tls: false
            }
        );
        assert_eq!(parse_server("mqtt://h").unwrap().port, 1883);
        let e = parse(&format!("{MIN}[mqtt]\nservers = [\"http://x\"]\n")).unwrap_err();
        assert!(e.0.contains("[mqtt] servers"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c = parse_relative_to(
            "[node]\nid = \"a\"\nstate_dir = \"st\"\n[geoserver]\ndata_dir = \"dd\"\n",
            Path::new("/etc/gs"),
        )
        .unwrap();
        assert_eq!(c.geoserver.data_dir, Path::new("/etc/gs/dd"));
        assert_eq!(c.node.state_dir, Path::new("/etc/gs/st"));
        assert!(parse("[node]\nid = \"a\"\n[geoserver]\ndata_dir = \"dd\"\n").is_err());
    }

    #[test]
    fn broker_section_defaults_and_limits() {
        let c = parse(&format!("{MIN}[broker]\n")).unwrap();
        let b = c.broker.unwrap();
        assert_eq!(b.listen.port(), 1883);
        let e = parse(&format!("{MIN}[broker]\nmax_packet_size = 1000\n")).unwrap_err();
        assert!(e.0.contains("max_packet_size"), "{e}");
    }
}
