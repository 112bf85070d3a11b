//! The node's one MQTT connection, with failover over `[mqtt] servers` and retry forever.
//!
//! Every (re)connection builds a fresh rumqttc client and event loop. That throws away
//! rumqttc's own retransmission queue — which it would silently clear anyway whenever a broker
//! lost the session — and, more importantly, any manual ack still queued for the old
//! connection: an ack must never reach a new connection, where packet ids are reused and an
//! out-of-order ack costs rumqttd's connection and a message (mqtt-measured.md §5). What must
//! survive a reconnect lives in the node's own outbox and is re-published by the publisher.
//!
//! The first entry of `servers` is the preferred broker. A node that failed over to a later one
//! checks every `failback_s` whether the first accepts connections again and then moves back:
//! with independent brokers (no shared sessions) nodes must end up on the same broker, or a
//! slave restarted onto the recovered first broker would never hear from a master that stayed
//! on the second. The check is a TCP connect: a first broker that accepts TCP but fails the
//! MQTT handshake (a proxy in front of a dead broker, a login it refuses) would have the node
//! flap between the two, so each failed move back doubles the wait before the next check, up to
//! [`FAILBACK_MAX_FACTOR`] × `failback_s`, until a move back holds.

use super::client::{Client, Message};
use crate::config::{Mqtt, Server};
use crate::delta::MAX_INCOMING_PACKET;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS,
};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Outgoing publishes allowed in flight: modest, so packet ids never wrap around an ack that is
/// still outstanding (rumqttc's collision handling can livelock, mqtt-notes.md K2).
pub const INFLIGHT: u16 = 32;
const REQUEST_CHANNEL: usize = 512;
/// Short at first: the embedded broker binds its port a few milliseconds after start.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Failed moves back to the first broker stretch the check up to this many times `failback_s`.
pub const FAILBACK_MAX_FACTOR: u32 = 16;

/// The current connection, if any: its number and a client to publish and ack through.
#[derive(Clone, Default)]
pub struct Link {
    pub gen: u64,
    pub client: Option<Client>,
    /// Whether the broker still had this node's session: if not, anything published while
    /// the node was away is gone for it (and a resync is due).
    pub session_present: bool,
}

/// What the publisher needs to follow its own publishes.
#[derive(Debug)]
pub enum LinkEvent {
    /// A connection is up (CONNACK received and subscriptions requested).
    Up { gen: u64, client: Client },
    /// The connection with this number is gone.
    Down { gen: u64 },
    /// A publish request was written to the network with this packet id.
    Sent { gen: u64, pkid: u16 },
    /// The broker acknowledged this packet id.
    Acked { gen: u64, pkid: u16 },
}

/// A message received on connection `gen`; it may only be acked on that same connection.
pub struct Inbound {
    pub gen: u64,
    pub message: Message,
}

/// How to connect: identity, subscriptions, last will.
pub struct Options {
    pub client_id: String,
    pub subscriptions: Vec<String>,
    pub will: Option<(String, Vec<u8>)>,
    /// Published (retained) after every CONNACK.
    pub birth: Option<(String, Vec<u8>)>,
    pub max_packet: usize,
}

pub(crate) fn mqtt_options(cfg: &Mqtt, server: &Server, opts: &Options) -> MqttOptions {
    let mut o = MqttOptions::new(opts.client_id.clone(), server.host.clone(), server.port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(cfg.keep_alive)
        .set_inflight(INFLIGHT)
        .set_request_channel_capacity(REQUEST_CHANNEL)
        .set_max_packet_size(MAX_INCOMING_PACKET, opts.max_packet);
    if server.tls {
        if let Some(tls) = &cfg.tls {
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
    }
    if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
        o.set_credentials(user.clone(), pass.clone());
    } else if let Some(user) = &cfg.username {
        o.set_credentials(user.clone(), "");
    }
    if let Some((topic, payload)) = &opts.will {
        o.set_last_will(LastWill::new(
            topic.clone(),
            payload.clone(),
            QoS::AtLeastOnce,
            true,
        ));
    }
    o
}

/// Run the connection until shutdown. Inbound publishes go to `inbound` in arrival order.
pub async fn run(
    cfg: Mqtt,
    opts: Options,
    link: watch::Sender<Link>,
    events: mpsc::UnboundedSender<LinkEvent>,
    inbound: mpsc::Sender<Inbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut gen = 0u64;
    let mut index = 0usize;
    let mut backoff = FIRST_BACKOFF;
    let mut failures_in_a_row = 0u32;
    // Moves back to the first broker that failed in a row, and whether one is being tried.
    let (mut failback_misses, mut failing_back) = (0u32, false);
    while !*shutdown.borrow() {
        let server = cfg.servers[index % cfg.servers.len()].clone();
        gen += 1;
        let (client, mut eventloop) =
            AsyncClient::new(mqtt_options(&cfg, &server, &opts), REQUEST_CHANNEL);
        let preferred = &cfg.servers[0];
        let away = !index.is_multiple_of(cfg.servers.len());
        let check_every =
            (cfg.failback).map(|f| f * 2u32.pow(failback_misses).min(FAILBACK_MAX_FACTOR));
        let outcome = tokio::select! {
            o = drive(gen, &server, &client, &mut eventloop, &opts, &link, &events, &inbound) => o,
            _ = shutdown.changed() => Outcome::Shutdown,
            _ = back_up(preferred, check_every), if away && cfg.failback.is_some() => Outcome::FailBack,
        };
        link.send_replace(Link {
            gen,
            client: None,
            session_present: false,
        });
        let _ = events.send(LinkEvent::Down { gen });
        crate::telemetry::record_connected(false);
        match outcome {
            Outcome::Shutdown => {
                // A clean DISCONNECT would suppress the last will; this node really goes
                // offline, so let the broker publish it.
                break;
            }
            Outcome::FailBack => {
                log::info!(
                    "broker {preferred} accepts connections again; moving back to it from {server}"
                );
                index = 0;
                backoff = FIRST_BACKOFF;
                failures_in_a_row = 0;
                failing_back = true;
            }
            Outcome::Dropped(e) => {
                log::warn!("connection to broker {server} lost: {e}; reconnecting");
                backoff = FIRST_BACKOFF;
                failures_in_a_row = 0;
                if !away {
                    // It was connected to the first broker: the move back held.
                    (failback_misses, failing_back) = (0, false);
                }
            }
            Outcome::Failed(e) if failing_back => {
                // Accepted TCP, failed MQTT: straight back to the next server, and wait longer
                // before checking the first one again.
                failing_back = false;
                failback_misses = (failback_misses + 1).min(FAILBACK_MAX_FACTOR.ilog2());
                let next = &cfg.servers[(index + 1) % cfg.servers.len()];
                let again = cfg.failback.unwrap_or_default()
                    * 2u32.pow(failback_misses).min(FAILBACK_MAX_FACTOR);
                log::warn!(
                    "moving back to broker {server} failed: {}; back to {next}, and checking {server} again in {} s",
                    describe(&e),
                    again.as_secs()
                );
                index += 1;
            }
            Outcome::Failed(e) => {
                failures_in_a_row += 1;
                let next = &cfg.servers[(index + 1) % cfg.servers.len()];
                // The very first attempt may race the embedded broker binding its port.
                let level = if gen == 1 {
                    log::Level::Info
                } else {
                    log::Level::Warn
                };
                log::log!(
                    level,
                    "broker {server} {}; trying {next} in {} ms (attempt {failures_in_a_row})",
                    describe(&e),
                    backoff.as_millis()
                );
                index += 1;
                let wait = backoff;
                // Back off only once a whole round of servers failed.
                if index.is_multiple_of(cfg.servers.len()) {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
    }
}

/// Resolves once `server` accepts a TCP connection, checked every `every`.
async fn back_up(server: &Server, every: Option<Duration>) {
    let every = every.unwrap_or(Duration::MAX);
    loop {
        tokio::time::sleep(every).await;
        let probe = tokio::net::TcpStream::connect((server.host.as_str(), server.port));
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), probe).await {
            return;
        }
    }
}

/// A connect failure in words an administrator can act on.
fn describe(e: &ConnectionError) -> String {
    use rumqttc::ConnectReturnCode as Code;
    match e {
        ConnectionError::ConnectionRefused(Code::BadUserNamePassword | Code::NotAuthorized) => {
            "refused the login: check [mqtt] username and password / password_file".into()
        }
        ConnectionError::ConnectionRefused(code) => format!("refused the connection: {code:?}"),
        // Some brokers (rumqttd among them) refuse a login by closing the connection.
        other if other.to_string().contains("closed by peer") => format!(
            "unreachable: {other} (a broker that hangs up during the handshake may have refused [mqtt] username/password or this client id)"
        ),
        other => format!("unreachable: {other}"),
    }
}

enum Outcome {
    Shutdown,
    /// Connected to a later server while the first one accepts connections again.
    FailBack,
    /// Never got a CONNACK.
    Failed(ConnectionError),
    /// Was connected, then lost it.
    Dropped(ConnectionError),
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    gen: u64,
    server: &Server,
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    opts: &Options,
    link: &watch::Sender<Link>,
    events: &mpsc::UnboundedSender<LinkEvent>,
    inbound: &mpsc::Sender<Inbound>,
) -> Outcome {
    let mut connected = false;
    let mut subscribed = false;
    loop {
        let event = match eventloop.poll().await {
            Ok(e) => e,
            Err(e) if connected => return Outcome::Dropped(e),
            Err(e) => return Outcome::Failed(e),
        };
        match event {
            Event::Incoming(Incoming::ConnAck(ack)) => {
                connected = true;
                log::info!(
                    "connected to broker {server} (session present: {})",
                    ack.session_present
                );
                // Re-subscribing to an existing subscription is harmless and covers a session
                // that was created but never got its subscription (a crash in between).
                // One SUBSCRIBE for all filters: one SUBACK says they all hold.
                if !opts.subscriptions.is_empty() {
                    let filters = opts
                        .subscriptions
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        log::error!("cannot request subscriptions {:?}: {e}", opts.subscriptions);
                    }
                }
                if let Some((topic, payload)) = &opts.birth {
                    let _ =
                        client.try_publish(topic.clone(), QoS::AtLeastOnce, true, payload.clone());
                }
                link.send_replace(Link {
                    gen,
                    client: Some(Client(client.clone())),
                    session_present: ack.session_present,
                });
                let _ = events.send(LinkEvent::Up {
                    gen,
                    client: Client(client.clone()),
                });
                crate::telemetry::record_connected(true);
            }
            Event::Incoming(Incoming::Publish(publish)) => {
                // The receiver is gone only when the node is stopping.
                let message = Message(publish);
                let delivered = inbound.send(Inbound { gen, message }).await.is_ok();
                if !delivered {
                    return Outcome::Shutdown;
                }
            }
            Event::Incoming(Incoming::PubAck(ack)) => {
                let _ = events.send(LinkEvent::Acked {
                    gen,
                    pkid: ack.pkid,
                });
            }
            Event::Incoming(Incoming::SubAck(ack)) => {
                let failed = ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                // The first SUBACK of a connection answers `opts.subscriptions`; later ones,
                // subscriptions a pure master adds per origin (logged where it asks).
                if failed && !subscribed {
                    log::error!(
                        "broker {server} refused the subscription to {:?}",
                        opts.subscriptions
                    );
                } else if failed {
                    log::error!(
                        "broker {server} refused a subscription (packet {})",
                        ack.pkid
                    );
                } else if !subscribed {
                    log::info!("subscribed to {}", opts.subscriptions.join(", "));
                }
                subscribed = true;
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let _ = events.send(LinkEvent::Sent { gen, pkid });
            }
            _ => {}
        }
    }
}
