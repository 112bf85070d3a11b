//! The integration tests: one binary, so the support code (the data-directory generator, the
//! stand-in GeoServer, the process launcher, the external brokers) compiles once. Each module
//! is one behaviour area; they start the real `gscluster` binary as separate processes on
//! loopback (`layout` reads the source instead, and keeps its layering true). `cargo test
//! <module>::` runs one area, e.g. `cargo test replication::`.

mod support;

mod airgap;
mod apply_errors;
mod brokers;
mod chaos;
mod cli;
mod crash;
mod datadir_fixtures;
mod demo;
mod drift;
mod edge;
mod failover;
mod fixtures_replication;
mod full_disk;
mod fuzz_decode;
mod history;
mod hostile;
mod layout;
mod lone;
mod metrics;
mod per_object;
mod readyz;
mod reload;
mod reload_needs;
mod replication;
mod resync;
mod rolling;
mod status;
mod status_page;
mod support_selftest;
mod tls;
mod topology;
