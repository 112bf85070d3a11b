//! The sizes every sender and receiver agrees on (docs/wire-format.md, "Limits").

/// The newest version of the frame layout: 2 marks a compressed body (docs/wire-format.md).
/// A receiver reads every version up to it and rejects a newer one, naming it.
pub const FORMAT_VERSION: u16 = 2;

/// Largest MQTT payload gscluster publishes: well under the 256 KiB that common brokers accept.
pub const MAX_MESSAGE_SIZE: usize = 192 * 1024;

/// Room left in a message for the frame and part header around a body slice.
pub(super) const HEADER_ROOM: usize = 4 * 1024;

/// Largest single file that is replicated; larger files are skipped with a warning. GeoServer
/// configuration files are kilobytes; this bound keeps a Delta within the broker's in-flight
/// window (see docs/wire-format.md, "Limits").
pub const MAX_FILE_SIZE: u64 = 8 * 1024 * 1024;

/// A master starts a new Delta once the change list of the current one reaches this size.
pub const SPLIT_DELTA_AT: usize = 4 * 1024 * 1024;

/// Largest reassembled change list a receiver accepts (one maximal file plus the split size).
pub const MAX_DELTA_BODY: usize = MAX_FILE_SIZE as usize + SPLIT_DELTA_AT + 64 * 1024;

/// Largest MQTT packet this node accepts from a broker. rumqttc cannot skip a packet above its limit:
/// it drops the connection, and the broker sends the same packet again after the reconnect — one
/// oversized message from anyone who can publish would stall the node forever. So the limit is
/// generous (the message is then rejected by the decoder, acknowledged and forgotten), and
/// brokers are configured to refuse anything larger (`[broker] max_packet_size` is capped at
/// this value; docs/brokers.md for external brokers).
pub const MAX_INCOMING_PACKET: usize = 16 * 1024 * 1024;
