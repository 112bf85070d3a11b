//! The embedded MQTT broker (rumqttd), so a site needs nothing else installed.
//!
//! rumqttd keeps everything in memory: sessions and queued messages live until the process
//! exits, and each topic filter's log holds at most `segment_count × segment_size` bytes before
//! the oldest segment is dropped — silently, even for a connected subscriber. gscluster's
//! sequence numbers detect such a loss on the slave and a resync heals it; the limits below
//! decide only how often that safety net is needed.

use crate::config::Broker as BrokerConfig;
use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::TcpListener;

/// Packets the broker reads from one connection per batch (rumqttd's `max_inflight_count`).
const READ_BATCH: usize = 100;

/// The status filter's log: status messages are small, only the newest matters (the broker
/// keeps it retained apart from the log), and they are published after every acknowledged
/// Delta — with the Delta filter's limits their log would grow to 16 MiB on a long-running node.
const STATUS_SEGMENT: rumqttd::SegmentConfig = rumqttd::SegmentConfig {
    max_segment_size: 128 * 1024,
    max_segment_count: 2,
};

fn rumqttd_config(cfg: &BrokerConfig, topic_prefix: &str) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: cfg.max_packet_size,
        max_inflight_count: READ_BATCH,
        auth: cfg.users.clone(),
        external_auth: None,
        // Without this, a publish to a topic nobody subscribed to yet disconnects the publisher.
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "gscluster".into(),
        listen: cfg.listen,
        tls: cfg
            .tls
            .as_ref()
            .map(|(cert, key)| rumqttd::TlsConfig::Rustls {
                capath: None,
                certpath: cert.to_string_lossy().into_owned(),
                keypath: key.to_string_lossy().into_owned(),
            }),
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: cfg.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: cfg.segment_size,
            max_segment_count: cfg.segment_count,
            custom_segment: Some(HashMap::from([(
                format!("{topic_prefix}/+/status/#"),
                STATUS_SEGMENT,
            )])),
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("gscluster".to_string(), server)])),
        ..Default::default()
    }
}

/// Start the embedded broker on its own threads. Fails at once, naming the address, when the
/// port cannot be bound (rumqttd itself would only log that from a background thread).
pub fn start(cfg: &BrokerConfig, topic_prefix: &str) -> Result<(), String> {
    // Probe the address first so a port in use is a clear start-up error.
    TcpListener::bind(cfg.listen)
        .map_err(|e| format!("[broker] listen {}: cannot listen: {e}", cfg.listen))?;
    let config = rumqttd_config(cfg, topic_prefix);
    let listen = cfg.listen;
    std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            match broker.start() {
                Ok(()) => log::error!("embedded broker on {listen} stopped"),
                Err(e) => log::error!("embedded broker on {listen} failed: {e}"),
            }
        })
        .map_err(|e| format!("cannot start the embedded broker thread: {e}"))?;
    log::info!(
        "embedded broker listening on {listen}{}{} (log per topic filter: {} segments of {} bytes)",
        if cfg.tls.is_some() { " with TLS" } else { "" },
        cfg.users
            .as_ref()
            .map(|u| format!(", {} user(s) may log in", u.len()))
            .unwrap_or_default(),
        cfg.segment_count,
        cfg.segment_size
    );
    Ok(())
}
