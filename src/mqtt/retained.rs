//! Reading what brokers keep retained (`gscluster status`): a short-lived clean session on the
//! first broker of `[mqtt] servers` that answers, subscribed to one filter until the retained
//! messages stop arriving.

use super::connection::{mqtt_options, Options};
use crate::config::Mqtt;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::time::{Duration, Instant};

/// How long to wait for one broker to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retained messages arrive right after the subscription; this long without a new one ends the
/// reading.
const QUIET: Duration = Duration::from_millis(500);
/// The reading never takes longer than this.
const MAX_READ: Duration = Duration::from_secs(5);

/// The retained messages on `filter` (topic, payload; empty payloads left out) and the broker
/// they were read from.
pub async fn read(
    cfg: &Mqtt,
    client_id: &str,
    filter: &str,
) -> Result<(String, Vec<(String, Vec<u8>)>), String> {
    let mut errors = Vec::new();
    for server in &cfg.servers {
        let opts = Options {
            client_id: client_id.to_string(),
            subscriptions: vec![],
            will: None,
            birth: None,
            max_packet: 64 * 1024,
        };
        let mut o = mqtt_options(cfg, server, &opts);
        o.set_clean_session(true).set_manual_acks(false);
        let (client, mut events) = AsyncClient::new(o, 64);
        let started = Instant::now();
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await;
        match connected {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                errors.push(format!("{server}: {e}"));
                continue;
            }
            Err(_) => {
                errors.push(format!(
                    "{server}: no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ));
                continue;
            }
        }
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(|e| format!("{server}: subscribe to {filter}: {e}"))?;
        let mut messages = Vec::new();
        let mut last = Instant::now();
        let mut subscribed = false;
        while started.elapsed() < MAX_READ && !(subscribed && last.elapsed() > QUIET) {
            match tokio::time::timeout(QUIET, events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                    subscribed = true;
                    last = Instant::now();
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    last = Instant::now();
                    if !p.payload.is_empty() {
                        messages.push((p.topic.clone(), p.payload.to_vec()));
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("{server}: {e}")),
                Err(_) => {}
            }
        }
        let _ = client.disconnect().await;
        return Ok((server.to_string(), messages));
    }
    Err(format!("no broker answered: {}", errors.join("; ")))
}
