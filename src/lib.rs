//! gscluster: keeps a fleet of GeoServer data directories identical over MQTT.
//!
//! See ARCHITECTURE.md for the walk of one change from a master's disk to a slave's reload.

pub mod datadir;
pub mod hlc;
