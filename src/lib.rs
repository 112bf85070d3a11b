//! gscluster: keeps a fleet of GeoServer data directories identical over MQTT.
//!
//! The path of one change, by folder (ARCHITECTURE.md walks it function by function):
//!
//! - `master/` detects local edits (`datadir` knows GeoServer's files) and turns them into
//!   Deltas in the outbox (`master::local_edit`), which the publisher sends;
//! - `delta` is the wire type and its codec, `security` signs and verifies it, `mqtt` carries
//!   it (and is the only module that names the MQTT library);
//! - `receive/` takes every received message in order, assembles Deltas and acknowledges them
//!   once applied; `slave/` applies them durably; `resync/` fetches what the stream missed;
//! - `reload/` decides when GeoServer may re-read its configuration, and asks it to;
//! - `state` is the durable journal and outbox; `context` the daemon's shared context;
//!   `cmd/` holds the commands, `cli/` the command line's one definition (the parser, the help
//!   and the shell completions follow it); `airgap/` moves configuration without a network.
//!
//! The pure core (`delta`, `cbor`, `hlc`, `update_sequence`, `datadir`, `slave::apply::plan`)
//! imports no I/O-owning module; `tests/it/layout.rs` keeps it so.

pub mod airgap;
pub mod cbor;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod context;
pub mod control;
pub mod crashpoint;
pub mod datadir;
pub mod delta;
pub mod durable;
pub mod file_error;
pub mod history;
pub mod hlc;
pub mod logging;
pub mod master;
pub mod memory;
pub mod mqtt;
pub mod receive;
pub mod reload;
pub mod resync;
pub mod security;
pub mod slave;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod update_sequence;
pub mod upkeep;
