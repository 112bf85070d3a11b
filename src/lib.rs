//! gscluster: keeps a fleet of GeoServer data directories identical over MQTT.
//!
//! See ARCHITECTURE.md for the walk of one change from a master's disk to a slave's reload.

pub mod airgap;
pub mod cbor;
pub mod clock;
pub mod durable;

pub mod cmd;
pub mod config;
pub mod context;
pub mod crashpoint;
pub mod datadir;
pub mod delta;
pub mod hlc;
pub mod inbound;
pub mod logging;
pub mod master;
pub mod memory;
pub mod mqtt;
pub mod reload;
pub mod security;
pub mod slave;
pub mod state;
pub mod status;
pub mod update_sequence;

pub mod resync;
pub mod telemetry;
