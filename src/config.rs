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

/// Where the configuration is read from when neither `-c` nor `GSCLUSTER_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/gscluster/config.toml";

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
    pub rescan_interval: Duration,
}

#[derive(Clone)]
pub struct Mqtt {
    pub servers: Vec<Server>,
    pub topic_prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: Duration,
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

// ---- raw TOML shapes (serde) ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    node: RawNode,
    geoserver: Option<RawGeoServer>,
    #[serde(default)]
    replicate: RawReplicate,
    #[serde(default)]
    master: RawMaster,
    #[serde(default)]
    mqtt: RawMqtt,
    broker: Option<RawBroker>,
    security: Option<RawSecurity>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    key_file: Option<PathBuf>,
    #[serde(default)]
    previous_key_files: Vec<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: Option<String>,
    group: Option<String>,
    role: Option<Role>,
    state_dir: Option<PathBuf>,
    on_drift: Option<OnDrift>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeoServer {
    data_dir: Option<PathBuf>,
    url: Option<String>,
    user: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    reload_quiet_ms: Option<u64>,
    reload_max_delay_ms: Option<u64>,
    reload_timeout_s: Option<u64>,
    reference_wait_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReplicate {
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMaster {
    quiet_ms: Option<u64>,
    rescan_interval_s: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    servers: Option<Vec<String>>,
    topic_prefix: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    keep_alive_s: Option<u64>,
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    listen: Option<String>,
    max_packet_size: Option<usize>,
    segment_size: Option<usize>,
    segment_count: Option<usize>,
    max_connections: Option<usize>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    users_file: Option<PathBuf>,
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
    pub const QUIET_MS: u64 = 30;
    pub const RESCAN_INTERVAL_S: u64 = 60;
    pub const SERVER: &str = "mqtt://127.0.0.1:1883";
    pub const TOPIC_PREFIX: &str = "gscluster";
    pub const KEEP_ALIVE_S: u64 = 30;
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

fn validate(raw: RawConfig, base: Option<&Path>) -> Result<Config, ConfigError> {
    let node = validate_node(raw.node, base)?;
    let geoserver = validate_geoserver(raw.geoserver, base)?;
    let replicate = Replicate {
        include: raw
            .replicate
            .include
            .unwrap_or_else(crate::datadir::default_include),
        exclude: raw
            .replicate
            .exclude
            .unwrap_or_else(crate::datadir::default_exclude),
    };
    if let Err(e) = crate::datadir::Filter::new(&replicate.include, &replicate.exclude) {
        return err(format!("[replicate]: {e}"));
    }
    let master = Master {
        quiet: Duration::from_millis(raw.master.quiet_ms.unwrap_or(defaults::QUIET_MS)),
        rescan_interval: Duration::from_secs(
            raw.master
                .rescan_interval_s
                .unwrap_or(defaults::RESCAN_INTERVAL_S),
        ),
    };
    if master.rescan_interval.is_zero() {
        return err("[master] rescan_interval_s: must be at least 1");
    }
    let mqtt = validate_mqtt(raw.mqtt, base)?;
    let broker = raw.broker.map(|b| validate_broker(b, base)).transpose()?;
    let security = raw
        .security
        .map(|s| validate_security(s, base))
        .transpose()?;
    if geoserver.data_dir.starts_with(&node.state_dir)
        || node.state_dir.starts_with(&geoserver.data_dir)
    {
        return err(format!(
            "[node] state_dir {}: must not be inside [geoserver] data_dir {} (nor contain it)",
            node.state_dir.display(),
            geoserver.data_dir.display()
        ));
    }
    Ok(Config {
        node,
        geoserver,
        replicate,
        master,
        mqtt,
        broker,
        security,
    })
}

fn validate_security(raw: RawSecurity, base: Option<&Path>) -> Result<Security, ConfigError> {
    let key_file = raw.key_file.ok_or_else(|| {
        ConfigError("[security] key_file: required when [security] is present".into())
    })?;
    let key_file = resolve("[security] key_file", key_file, base)?;
    let key = crate::security::load_key("[security] key_file", &key_file).map_err(ConfigError)?;
    let mut previous = Vec::new();
    for f in raw.previous_key_files {
        let f = resolve("[security] previous_key_files", f, base)?;
        previous.push(
            crate::security::load_key("[security] previous_key_files", &f).map_err(ConfigError)?,
        );
    }
    Ok(Security { key, previous })
}

/// Node ids and groups become MQTT topic levels and MQTT client ids.
fn check_name(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() || value.len() > 64 {
        return err(format!("{key} {value:?}: must be 1 to 64 characters"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return err(format!(
            "{key} {value:?}: character {c:?} not allowed (use letters, digits, '-', '_', '.')"
        ));
    }
    Ok(())
}

/// The host name, as the default node id.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = name.trim().to_string();
    (!name.is_empty()).then_some(name)
}

fn validate_node(raw: RawNode, base: Option<&Path>) -> Result<Node, ConfigError> {
    let id = match raw.id {
        Some(id) => id,
        None => host_name().ok_or_else(|| {
            ConfigError("[node] id: not set and the host name cannot be read".into())
        })?,
    };
    check_name("[node] id", &id)?;
    let group = raw.group.unwrap_or_else(|| defaults::GROUP.into());
    check_name("[node] group", &group)?;
    let state_dir = resolve(
        "[node] state_dir",
        raw.state_dir
            .unwrap_or_else(|| PathBuf::from(defaults::STATE_DIR)),
        base,
    )?;
    Ok(Node {
        id,
        group,
        role: raw.role.unwrap_or(Role::Both),
        state_dir,
        on_drift: raw.on_drift.unwrap_or(OnDrift::Revert),
    })
}

fn validate_geoserver(
    raw: Option<RawGeoServer>,
    base: Option<&Path>,
) -> Result<GeoServer, ConfigError> {
    let raw = raw
        .ok_or_else(|| ConfigError("[geoserver]: section missing (data_dir is required)".into()))?;
    let data_dir = raw
        .data_dir
        .ok_or_else(|| ConfigError("[geoserver] data_dir: required".into()))?;
    let data_dir = resolve("[geoserver] data_dir", data_dir, base)?;
    if let Some(url) = &raw.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return err(format!(
                "[geoserver] url {url:?}: must start with http:// or https://"
            ));
        }
    }
    let password = match (raw.password, raw.password_file) {
        (Some(_), Some(_)) => {
            return err("[geoserver] password and password_file: set only one of them")
        }
        (Some(p), None) => p,
        (None, Some(file)) => read_secret(
            "[geoserver] password_file",
            &resolve("[geoserver] password_file", file, base)?,
        )?,
        (None, None) => defaults::PASSWORD.into(),
    };
    let quiet = raw.reload_quiet_ms.unwrap_or(defaults::RELOAD_QUIET_MS);
    let max_delay = raw
        .reload_max_delay_ms
        .unwrap_or(defaults::RELOAD_MAX_DELAY_MS);
    if max_delay < quiet {
        return err(format!(
            "[geoserver] reload_max_delay_ms {max_delay}: must not be below reload_quiet_ms {quiet}"
        ));
    }
    let timeout = raw.reload_timeout_s.unwrap_or(defaults::RELOAD_TIMEOUT_S);
    if timeout == 0 {
        return err("[geoserver] reload_timeout_s: must be at least 1");
    }
    Ok(GeoServer {
        data_dir,
        url: raw.url.map(|u| u.trim_end_matches('/').to_string()),
        user: raw.user.unwrap_or_else(|| defaults::USER.into()),
        password,
        reload_quiet: Duration::from_millis(quiet),
        reload_max_delay: Duration::from_millis(max_delay),
        reload_timeout: Duration::from_secs(timeout),
        reference_wait: Duration::from_millis(
            raw.reference_wait_ms.unwrap_or(defaults::REFERENCE_WAIT_MS),
        ),
    })
}

/// A secret file holds one line; trailing newline stripped.
fn read_secret(key: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{key} {}: cannot read: {e}", path.display())))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return err(format!("{key} {}: file is empty", path.display()));
    }
    Ok(secret)
}

/// `[broker] users_file`: one `user:password` per line (`#` comments); not readable by others.
fn read_users(path: &Path) -> Result<std::collections::HashMap<String, String>, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let key = "[broker] users_file";
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError(format!("{key} {}: cannot read: {e}", path.display())))?;
    if meta.permissions().mode() & 0o004 != 0 {
        return err(format!(
            "{key} {}: readable by every user; run chmod 600 on it",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{key} {}: cannot read: {e}", path.display())))?;
    let mut users = std::collections::HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => {
                users.insert(u.to_string(), p.to_string());
            }
            _ => {
                return err(format!(
                    "{key} {} line {}: expected user:password",
                    path.display(),
                    n + 1
                ))
            }
        }
    }
    if users.is_empty() {
        return err(format!("{key} {}: no users", path.display()));
    }
    Ok(users)
}

/// Parse `mqtt://host:port` (port 1883 by default) or `mqtts://host:port` (TLS, port 8883).
pub fn parse_server(s: &str) -> Result<Server, String> {
    let (rest, tls) = if let Some(r) = s
        .strip_prefix("mqtt://")
        .or_else(|| s.strip_prefix("tcp://"))
    {
        (r, false)
    } else if let Some(r) = s
        .strip_prefix("mqtts://")
        .or_else(|| s.strip_prefix("ssl://"))
    {
        (r, true)
    } else {
        return Err("must look like mqtt://host:port or mqtts://host:port".to_string());
    };
    let default_port = if tls { 8883 } else { 1883 };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("port {p:?} is not a number from 1 to 65535"))?;
            if port == 0 {
                return Err("port 0 is not valid".into());
            }
            (h, port)
        }
        _ => (rest, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("host is empty".into());
    }
    Ok(Server {
        host: host.to_string(),
        port,
        tls,
    })
}

fn validate_mqtt(raw: RawMqtt, base: Option<&Path>) -> Result<Mqtt, ConfigError> {
    let servers_raw = raw
        .servers
        .unwrap_or_else(|| vec![defaults::SERVER.to_string()]);
    if servers_raw.is_empty() {
        return err("[mqtt] servers: list is empty (give at least one mqtt://host:port)");
    }
    let mut servers = Vec::new();
    for s in &servers_raw {
        servers
            .push(parse_server(s).map_err(|e| ConfigError(format!("[mqtt] servers {s:?}: {e}")))?);
    }
    let topic_prefix = raw
        .topic_prefix
        .unwrap_or_else(|| defaults::TOPIC_PREFIX.into());
    if topic_prefix.is_empty()
        || topic_prefix
            .chars()
            .any(|c| matches!(c, '#' | '+' | '\0') || c.is_control())
        || topic_prefix.starts_with('/')
        || topic_prefix.ends_with('/')
    {
        return err(format!(
            "[mqtt] topic_prefix {topic_prefix:?}: must be a non-empty topic without wildcards or leading/trailing '/'"
        ));
    }
    let password = match (raw.password, raw.password_file) {
        (Some(_), Some(_)) => {
            return err("[mqtt] password and password_file: set only one of them")
        }
        (Some(p), None) => Some(p),
        (None, Some(f)) => Some(read_secret(
            "[mqtt] password_file",
            &resolve("[mqtt] password_file", f, base)?,
        )?),
        (None, None) => None,
    };
    if password.is_some() && raw.username.is_none() {
        return err("[mqtt] password: set username too");
    }
    let keep_alive = raw.keep_alive_s.unwrap_or(defaults::KEEP_ALIVE_S);
    if !(5..=3600).contains(&keep_alive) {
        return err(format!(
            "[mqtt] keep_alive_s {keep_alive}: must be between 5 and 3600"
        ));
    }
    let path = |key: &str, p: Option<PathBuf>| p.map(|p| resolve(key, p, base)).transpose();
    let ca_file = path("[mqtt] ca_file", raw.ca_file)?;
    let client_cert = path("[mqtt] client_cert_file", raw.client_cert_file)?;
    let client_key = path("[mqtt] client_key_file", raw.client_key_file)?;
    let client = match (&client_cert, &client_key) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        (None, None) => None,
        _ => return err("[mqtt] client_cert_file and client_key_file: set both or neither"),
    };
    let tls = if servers.iter().any(|s| s.tls) {
        let ca = ca_file.as_deref().ok_or_else(|| {
            ConfigError("[mqtt] ca_file: required for mqtts:// servers (the CA that signed the broker's certificate)".into())
        })?;
        Some(crate::mqtt::tls::client_config(ca, client).map_err(ConfigError)?)
    } else {
        if ca_file.is_some() || client.is_some() {
            return err(
                "[mqtt] ca_file / client_cert_file: no server in [mqtt] servers uses mqtts://",
            );
        }
        None
    };
    Ok(Mqtt {
        servers,
        topic_prefix,
        username: raw.username,
        password,
        keep_alive: Duration::from_secs(keep_alive),
        tls,
    })
}

fn validate_broker(raw: RawBroker, base: Option<&Path>) -> Result<Broker, ConfigError> {
    let tls = match (raw.tls_cert_file, raw.tls_key_file) {
        (Some(c), Some(k)) => {
            let c = resolve("[broker] tls_cert_file", c, base)?;
            let k = resolve("[broker] tls_key_file", k, base)?;
            crate::mqtt::tls::check_server_files(&c, &k).map_err(ConfigError)?;
            Some((c, k))
        }
        (None, None) => None,
        _ => return err("[broker] tls_cert_file and tls_key_file: set both or neither"),
    };
    let users = raw
        .users_file
        .map(|f| read_users(&resolve("[broker] users_file", f, base)?))
        .transpose()?;
    let listen_s = raw.listen.unwrap_or_else(|| defaults::BROKER_LISTEN.into());
    let listen: SocketAddr = listen_s.parse().map_err(|_| {
        ConfigError(format!(
            "[broker] listen {listen_s:?}: must be an address and port such as 0.0.0.0:1883"
        ))
    })?;
    let max_packet_size = raw
        .max_packet_size
        .unwrap_or(defaults::BROKER_MAX_PACKET_SIZE);
    if max_packet_size < crate::delta::MAX_MESSAGE_SIZE + 4096 {
        return err(format!(
            "[broker] max_packet_size {max_packet_size}: must be at least {} (one delta part plus headers)",
            crate::delta::MAX_MESSAGE_SIZE + 4096
        ));
    }
    let cap = crate::mqtt::connection::MAX_INCOMING_PACKET;
    if max_packet_size > cap {
        return err(format!(
            "[broker] max_packet_size {max_packet_size}: must be at most {cap}, the largest packet a node accepts"
        ));
    }
    let segment_size = raw.segment_size.unwrap_or(defaults::BROKER_SEGMENT_SIZE);
    if segment_size < max_packet_size {
        return err(format!(
            "[broker] segment_size {segment_size}: must be at least max_packet_size {max_packet_size}"
        ));
    }
    let segment_count = raw.segment_count.unwrap_or(defaults::BROKER_SEGMENT_COUNT);
    if segment_count < 2 {
        return err(format!(
            "[broker] segment_count {segment_count}: must be at least 2"
        ));
    }
    Ok(Broker {
        listen,
        tls,
        users,
        max_packet_size,
        segment_size,
        segment_count,
        max_connections: raw
            .max_connections
            .unwrap_or(defaults::BROKER_MAX_CONNECTIONS),
    })
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
