//! Node status, published retained on `{prefix}/{group}/status/{node}`.
//!
//! A publishing node announces how far its stream goes (epoch and the highest sequence number
//! the broker has acknowledged) whenever its outbox drains, and on every connection; its MQTT
//! last will says it went offline. Receivers compare the announcement with what they applied:
//! a broker that dropped the *newest* queued Deltas (Mosquitto's queue limit does that) leaves
//! no gap in what arrives, and only this announcement shows that the slave is behind.

use crate::delta::{self, DecodeError, Part};
use crate::security::Auth;
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Sequence number given to status frames (they are not part of the Delta stream).
const STATUS_SEQ: u64 = 1;

/// What a node says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub online: bool,
    pub role: String,
    pub version: String,
    /// The node's own stream: its epoch and the highest sequence number up to which the broker
    /// acknowledged everything (0: nothing published yet).
    pub epoch: u64,
    pub published: u64,
    pub at_unix_ms: u64,
}

impl Status {
    pub fn new(node: &str, role: &str, online: bool, epoch: u64, published: u64) -> Status {
        Status {
            node: node.into(),
            online,
            role: role.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            epoch,
            published,
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        }
    }

    /// One authenticated frame (a status is far below the message size).
    pub fn encode(&self, group: &str, auth: &Auth) -> Vec<u8> {
        let mut body = Vec::new();
        ciborium::into_writer(self, &mut body).expect("CBOR into memory");
        delta::encode_parts(group, &self.node, self.epoch, STATUS_SEQ, &body, auth)
            .into_iter()
            .next()
            .expect("one part")
    }

    /// Decode the body of a status frame whose part came from `header`.
    pub fn decode(header: &Part, body: &[u8]) -> Result<Status, DecodeError> {
        let s: Status =
            ciborium::from_reader(body).map_err(|e| DecodeError::Cbor(e.to_string()))?;
        if s.node != header.origin {
            return Err(DecodeError::Part(format!(
                "status of {:?} sent as {:?}",
                s.node, header.origin
            )));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_an_authenticated_frame() {
        let auth = Auth::with_keys(vec![1; 32], vec![]);
        let s = Status::new("gs-a", "master", true, 7, 42);
        let frame = s.encode("g", &auth);
        let part = delta::decode_part(&frame, "g", &auth).unwrap();
        let body = part.body.clone();
        assert_eq!(Status::decode(&part, &body).unwrap(), s);
        assert!(delta::decode_part(&frame, "g", &Auth::with_keys(vec![2; 32], vec![])).is_err());
    }
}
