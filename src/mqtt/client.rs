//! The MQTT client the rest of gscluster sees: publish, subscribe and acknowledge on the
//! current connection, and the received message type. Only `mqtt/` names the MQTT library, so
//! its quirks (manual acks, packet-id pairing, what a lost session drops) are handled here and
//! in `connection.rs`, and the rest of the tree reads as the product.

use rumqttc::{AsyncClient, Publish, QoS};
use std::fmt;

/// A handle on one connection (`Link::client`); cheap to clone. Requests made on it after the
/// connection is gone fail or are dropped with it, never reach a later connection.
#[derive(Clone)]
pub struct Client(pub(super) AsyncClient);

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Client")
    }
}

/// A request the connection did not take: it is closing.
#[derive(Debug)]
pub struct Closing(String);

impl fmt::Display for Closing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the connection is closing ({})", self.0)
    }
}

impl std::error::Error for Closing {}

fn closing(e: rumqttc::ClientError) -> Closing {
    Closing(e.to_string())
}

impl Client {
    /// Publish with QoS 1, not retained. Only the outbox publisher does: it pairs the packet
    /// ids the connection reports (`LinkEvent::Sent` / `Acked`) with its own publishes, which
    /// holds only while it is the one QoS 1 publisher.
    pub async fn publish_acknowledged(&self, topic: &str, payload: Vec<u8>) -> Result<(), Closing> {
        (self.0)
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(closing)
    }

    /// Publish with QoS 0 (statuses, resync asks and answers: each is sent again when lost).
    pub async fn publish_once(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), Closing> {
        (self.0)
            .publish(topic, QoS::AtMostOnce, retain, payload)
            .await
            .map_err(closing)
    }

    /// Subscribe to `filter` with QoS 1.
    pub async fn subscribe(&self, filter: &str) -> Result<(), Closing> {
        (self.0)
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(closing)
    }

    /// Acknowledge `message`. The caller acks in arrival order, on the connection the message
    /// came from only (mqtt-measured.md §5: an out-of-order ack costs the connection and the
    /// message at its head).
    pub async fn ack(&self, message: &Message) -> Result<(), Closing> {
        self.0.ack(&message.0).await.map_err(closing)
    }
}

/// A received message; acknowledged through [`Client::ack`].
pub struct Message(pub(super) Publish);

impl Message {
    pub fn topic(&self) -> &str {
        &self.0.topic
    }

    pub fn payload(&self) -> &[u8] {
        &self.0.payload
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Message({}, {} bytes)",
            self.topic(),
            self.payload().len()
        )
    }
}
