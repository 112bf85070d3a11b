//! Helpers for the multi-process tests: a generator of GeoServer data directories and the edits
//! GeoServer makes to them, the stand-in GeoServer REST endpoint that checks catalog references at
//! each reload, a launcher for real `gscluster` processes, and a log capture for the tests that
//! run parts of the daemon in-process, and external MQTT brokers (Mosquitto, ActiveMQ) run as
//! child processes.
//!
//! Not every test binary uses every helper, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod brokers;
pub mod chaos;
pub mod cluster;
pub mod generator;
pub mod geoserver;
pub mod logs;
pub mod model;
pub mod mutations;
pub mod netns;
pub mod node;
pub mod proxy;
pub mod references;
pub mod rest;
pub mod run;
pub mod site;
pub mod smallfs;
pub mod templates;
