//! Validation: raw TOML shapes → [`super::Config`], with errors that name the key and why.

use super::defaults;
use super::raw::*;
use super::role::{OnDrift, Role};
use super::types::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Check everything and fill in the defaults; relative paths resolve against `base`.
pub(super) fn validate(raw: RawConfig, base: Option<&Path>) -> Result<Config, ConfigError> {
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
        rescan_interval: raw.master.rescan_interval_s.map(Duration::from_secs),
    };
    if master.rescan_interval.is_some_and(|d| d.is_zero()) {
        return err("[master] rescan_interval_s: must be at least 1");
    }
    let mqtt = validate_mqtt(raw.mqtt, base)?;
    let broker = raw.broker.map(|b| validate_broker(b, base)).transpose()?;
    let security = raw
        .security
        .map(|s| validate_security(s, base))
        .transpose()?;
    let metrics = match raw.metrics {
        None => None,
        Some(m) => {
            let listen = m.listen.ok_or_else(|| {
                ConfigError("[metrics] listen: required when [metrics] is present (e.g. \"127.0.0.1:9464\")".into())
            })?;
            Some(listen.parse().map_err(|e| {
                ConfigError(format!(
                    "[metrics] listen {listen:?}: not an address and port like \"127.0.0.1:9464\" ({e})"
                ))
            })?)
        }
    };
    let history = validate_history(raw.history)?;
    let resync = validate_resync(raw.resync)?;
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
        metrics,
        history,
        resync,
    })
}

fn validate_resync(raw: RawResync) -> Result<Resync, ConfigError> {
    let files = raw.batch_files.unwrap_or(defaults::RESYNC_BATCH_FILES);
    if !(1..=defaults::RESYNC_BATCH_FILES).contains(&files) {
        return err(format!(
            "[resync] batch_files: {files} is not between 1 and {} (an ask lists its paths in one message)",
            defaults::RESYNC_BATCH_FILES
        ));
    }
    let kb = raw.batch_kb.unwrap_or(defaults::RESYNC_BATCH_KB);
    if !(16..=defaults::RESYNC_BATCH_KB).contains(&kb) {
        return err(format!(
            "[resync] batch_kb: {kb} is not between 16 and {} (an answer must stay within a message body's limit)",
            defaults::RESYNC_BATCH_KB
        ));
    }
    Ok(Resync {
        batch_files: files,
        batch_bytes: kb * 1024,
    })
}

fn validate_history(raw: RawHistory) -> Result<Option<History>, ConfigError> {
    let h = History {
        keep_days: raw.keep_days.unwrap_or(defaults::HISTORY_KEEP_DAYS),
        max_mb: raw.max_mb.unwrap_or(defaults::HISTORY_MAX_MB),
        max_changes: raw.max_changes.unwrap_or(defaults::HISTORY_MAX_CHANGES),
    };
    for (key, v) in [
        ("keep_days", h.keep_days),
        ("max_mb", h.max_mb),
        ("max_changes", h.max_changes),
    ] {
        if v == 0 {
            return err(format!(
                "[history] {key}: must be at least 1 (to keep no history, set enabled = false)"
            ));
        }
    }
    Ok(raw.enabled.unwrap_or(true).then_some(h))
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
    let drain = raw.drain_ms.unwrap_or(defaults::DRAIN_MS);
    if drain > defaults::MAX_DRAIN_MS {
        return err(format!(
            "[geoserver] drain_ms {drain}: at most {} (a load balancer's health check takes a node out in seconds)",
            defaults::MAX_DRAIN_MS
        ));
    }
    let timeout = raw.reload_timeout_s.unwrap_or(defaults::RELOAD_TIMEOUT_S);
    if timeout == 0 {
        return err("[geoserver] reload_timeout_s: must be at least 1");
    }
    let max_concurrent_reloads = match raw.max_concurrent_reloads {
        None => reload_limit(&RawCount::Text(defaults::MAX_CONCURRENT_RELOADS.into()))?,
        Some(raw) => reload_limit(&raw)?,
    };
    let lease_timeout = raw
        .reload_lease_timeout_ms
        .unwrap_or(defaults::RELOAD_LEASE_TIMEOUT_MS);
    if lease_timeout < defaults::MIN_RELOAD_LEASE_TIMEOUT_MS {
        return err(format!(
            "[geoserver] reload_lease_timeout_ms {lease_timeout}: at least {} (a turn is refreshed three times per timeout)",
            defaults::MIN_RELOAD_LEASE_TIMEOUT_MS
        ));
    }
    let reload_max_share = match raw.reload_max_share {
        None => defaults::RELOAD_MAX_SHARE_PERCENT,
        Some(raw) => percent("[geoserver] reload_max_share", &raw)?,
    };
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
        drain: Duration::from_millis(drain),
        max_concurrent_reloads,
        lease_timeout: Duration::from_millis(lease_timeout),
        reload_max_share,
        apply: raw.apply.unwrap_or(ApplyMode::Reload),
        convergence_reload: raw
            .convergence_reload
            .as_deref()
            .map(|t| time_of_day("[geoserver] convergence_reload", t))
            .transpose()?,
    })
}

/// `"HH:MM"` or `"HH:MM:SS"`, local time, as seconds since midnight.
fn time_of_day(key: &str, text: &str) -> Result<u32, ConfigError> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let num = |s: &str, max: u32| s.parse::<u32>().ok().filter(|n| *n <= max && s.len() == 2);
    let secs = match parts.as_slice() {
        [h, m] => num(h, 23).zip(num(m, 59)).map(|(h, m)| h * 3600 + m * 60),
        [h, m, s] => {
            (num(h, 23).zip(num(m, 59)).zip(num(s, 59))).map(|((h, m), s)| h * 3600 + m * 60 + s)
        }
        _ => None,
    };
    secs.ok_or_else(|| {
        ConfigError(format!(
            "{key} {text:?}: a local time of day, \"HH:MM\" (e.g. \"03:00\") or \"HH:MM:SS\""
        ))
    })
}

/// A percentage from 1 to 100, written `"25%"` or `25`.
fn percent(key: &str, raw: &RawCount) -> Result<u32, ConfigError> {
    let text = match raw {
        RawCount::Number(n) => n.to_string(),
        RawCount::Text(t) => t.trim().to_string(),
    };
    match text.trim_end_matches('%').trim().parse::<u32>() {
        Ok(p @ 1..=100) => Ok(p),
        _ => err(format!(
            "{key} {text:?}: a percentage from 1 to 100, e.g. \"25%\" (100%: no pacing)"
        )),
    }
}

/// `[geoserver] max_concurrent_reloads`: `0` (no limit), a number of nodes, or `"N%"`.
fn reload_limit(raw: &RawCount) -> Result<ReloadLimit, ConfigError> {
    let bad = |what: &str| {
        err(format!(
            "[geoserver] max_concurrent_reloads {what}: a number of nodes (2), a percentage of the group's applying nodes (\"50%\"), or 0 for no limit"
        ))
    };
    let text = match raw {
        RawCount::Number(n) => n.to_string(),
        RawCount::Text(t) => t.trim().to_string(),
    };
    if let Some(p) = text.strip_suffix('%') {
        return match p.trim().parse::<u32>() {
            Ok(p @ 1..=100) => Ok(ReloadLimit::Percent(p)),
            _ => bad(&format!("{text:?}")),
        };
    }
    match text.parse::<u32>() {
        Ok(0) => Ok(ReloadLimit::Unlimited),
        Ok(n) => Ok(ReloadLimit::Nodes(n)),
        Err(_) if matches!(raw, RawCount::Number(_)) => bad(&text),
        Err(_) => bad(&format!("{text:?}")),
    }
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
    let failback = match raw.failback_s.unwrap_or(defaults::FAILBACK_S) {
        0 => None,
        s if s <= 86_400 => Some(Duration::from_secs(s)),
        s => {
            return err(format!(
                "[mqtt] failback_s {s}: must be between 0 (never) and 86400"
            ))
        }
    };
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
        Some(crate::tls::client_config(ca, client).map_err(ConfigError)?)
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
        failback,
        tls,
    })
}

fn validate_broker(raw: RawBroker, base: Option<&Path>) -> Result<Broker, ConfigError> {
    let tls = match (raw.tls_cert_file, raw.tls_key_file) {
        (Some(c), Some(k)) => {
            let c = resolve("[broker] tls_cert_file", c, base)?;
            let k = resolve("[broker] tls_key_file", k, base)?;
            crate::tls::check_server_files(&c, &k).map_err(ConfigError)?;
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
    let cap = crate::delta::MAX_INCOMING_PACKET;
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

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
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
