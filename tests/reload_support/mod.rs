//! Helpers shared by the integration tests: a stand-in GeoServer and a log capture.

#![allow(dead_code)] // each test binary uses a different part of the support module

pub mod geoserver;
pub mod logs;

use std::time::Duration;

/// Waits for `cond` to become true, polling, and fails the test naming `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
