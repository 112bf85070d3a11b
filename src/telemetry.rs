//! `[metrics]`: Prometheus metrics on `/metrics`, health checks on `/healthz` and `/readyz`, and
//! the status page on `/` (with `/status.json`), rendered by the caller.
//!
//! The counters are recorded where the work happens (`record_*` below, one line at each call
//! site) through the `metrics` facade; without `[metrics]` no recorder is installed and every
//! record is a no-op. With it, `metrics-exporter-prometheus` renders the Prometheus text format
//! and `axum` serves it. DOCS: docs/monitoring.md lists every metric.

use axum::http::StatusCode;
use axum::routing::get;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::time::Duration;
use tokio::sync::watch;

/// Buckets for the duration histograms, in seconds: an apply takes milliseconds, a reload of a
/// big catalog minutes.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Install the recorder (once per process) and describe every metric.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    describe_counter!(
        "gscluster_deltas_published_total",
        "Deltas of this node acknowledged by the broker"
    );
    describe_counter!(
        "gscluster_published_bytes_total",
        "Bytes of Delta messages handed to the broker (republished ones included)"
    );
    describe_gauge!(
        "gscluster_outbox_deltas",
        "Deltas in the outbox, not yet acknowledged by the broker"
    );
    describe_counter!(
        "gscluster_deltas_applied_total",
        "Deltas applied (their winning changes written)"
    );
    describe_counter!(
        "gscluster_deltas_duplicate_total",
        "Deltas received again and skipped"
    );
    describe_counter!(
        "gscluster_deltas_rejected_total",
        "Messages and Deltas refused (bad encoding or tag, wrong group, unsafe paths)"
    );
    describe_counter!(
        "gscluster_files_written_total",
        "Files written or deleted by applying Deltas and resyncs"
    );
    describe_counter!(
        "gscluster_received_bytes_total",
        "Bytes of Delta messages received"
    );
    describe_histogram!(
        "gscluster_apply_duration_seconds",
        "Time to write and record one group of Deltas"
    );
    describe_histogram!(
        "gscluster_reload_duration_seconds",
        "Time GeoServer took to answer POST /rest/reload"
    );
    describe_counter!(
        "gscluster_reloads_total",
        "GeoServer reloads, by result (ok, failed)"
    );
    describe_counter!(
        "gscluster_reloads_skipped_total",
        "Applied changes that needed no GeoServer reload: it re-reads every file they wrote by itself"
    );
    describe_counter!(
        "gscluster_reload_per_object_total",
        "Changes applied through GeoServer's REST API instead of a reload (apply = per-object)"
    );
    describe_histogram!(
        "gscluster_reload_turn_wait_seconds",
        "Time a due reload waited for its turn in the group (max_concurrent_reloads)"
    );
    describe_gauge!(
        "gscluster_reload_turn",
        "This node's reload turn: 0 none, 1 waiting for one, 2 holding one"
    );
    describe_gauge!(
        "gscluster_lag_deltas",
        "Deltas an origin announced that this node has not applied yet, by origin"
    );
    describe_gauge!(
        "gscluster_history_bytes",
        "Bytes the node's history keeps (changes and content; [history])"
    );
    describe_gauge!(
        "gscluster_history_changes",
        "Changes (groups) the node's history keeps"
    );
    describe_gauge!(
        "gscluster_history_oldest_timestamp_seconds",
        "The oldest point the node can roll back to, Unix time (0: nothing recorded yet)"
    );
    describe_gauge!(
        "gscluster_broker_connected",
        "1 while connected to a broker, else 0"
    );
    describe_counter!(
        "gscluster_broker_connections_total",
        "Connections made to a broker (the first one and every reconnect or failover)"
    );
    describe_counter!("gscluster_resyncs_total", "Resync rounds completed");
    describe_counter!(
        "gscluster_gaps_total",
        "Sequence gaps seen in received Deltas"
    );
    describe_counter!(
        "gscluster_drift_events_total",
        "Local edits found on a read-only slave"
    );
    Ok(handle)
}

/// What the listener serves besides the metrics: whether the node is connected to a broker now
/// (`/healthz`); why its GeoServer should get no requests now — being drained or reloaded —
/// or `None` while it serves (`/readyz`, for a load balancer's health check); and the group's
/// status as this node sees it, as a page and as JSON (`/` and `/status.json`; blocking: they
/// read the node's state).
pub struct Probes<C, B, P, J> {
    pub connected: C,
    pub busy: B,
    pub page: P,
    pub json: J,
}

/// Serve `/metrics`, `/healthz`, `/readyz`, the status page `/` and `/status.json` on
/// `listener` (bound, non-blocking) until `shutdown`.
pub async fn serve<C, B, P, J>(
    listener: std::net::TcpListener,
    handle: PrometheusHandle,
    probes: Probes<C, B, P, J>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String>
where
    C: Fn() -> bool + Clone + Send + Sync + 'static,
    B: Fn() -> Option<&'static str> + Clone + Send + Sync + 'static,
    P: Fn() -> String + Clone + Send + Sync + 'static,
    J: Fn() -> Result<String, String> + Clone + Send + Sync + 'static,
{
    let Probes {
        connected,
        busy,
        page,
        json,
    } = probes;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("[metrics] listen {addr}: {e}"))?;
    log::info!(
        "status page on http://{addr}/, metrics on /metrics, health on /healthz and /readyz"
    );
    let app = axum::Router::new()
        .route(
            "/",
            get(move || {
                let page = page.clone();
                rendered(
                    move || Ok(page()),
                    "text/html; charset=utf-8",
                    "status page",
                )
            }),
        )
        .route(
            "/status.json",
            get(move || rendered(json.clone(), "application/json", "status.json")),
        )
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                        handle.render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let up = connected();
                async move {
                    if up {
                        (StatusCode::OK, "ok: connected to the broker\n")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "unhealthy: not connected to any broker\n",
                        )
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let busy = busy();
                async move {
                    match busy {
                        None => (
                            StatusCode::OK,
                            "ready: GeoServer serves its current catalog\n".to_string(),
                        ),
                        Some(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(|e| format!("metrics server: {e}"))
}

/// What `render` makes (blocking: on a blocking thread), as `content_type`; a failure as a 500
/// naming `what`.
async fn rendered(
    render: impl FnOnce() -> Result<String, String> + Send + 'static,
    content_type: &'static str,
    what: &'static str,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    match (tokio::task::spawn_blocking(render).await).unwrap_or_else(|e| Err(e.to_string())) {
        Ok(text) => (StatusCode::OK, [("content-type", content_type)], text),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain; charset=utf-8")],
            format!("{what}: {e}\n"),
        ),
    }
}

pub fn record_published(deltas: u64) {
    counter!("gscluster_deltas_published_total").increment(deltas);
}

pub fn record_published_bytes(bytes: usize) {
    counter!("gscluster_published_bytes_total").increment(bytes as u64);
}

pub fn record_outbox(len: usize) {
    gauge!("gscluster_outbox_deltas").set(len as f64);
}

pub fn record_received_bytes(bytes: usize) {
    counter!("gscluster_received_bytes_total").increment(bytes as u64);
}

/// One group of Deltas applied: how many were applied and duplicates, the files written and
/// the time it took. Refused Deltas are counted where they are refused (`record_rejected`).
pub fn record_apply(applied: u64, duplicate: u64, files: u64, took: Duration) {
    counter!("gscluster_deltas_applied_total").increment(applied);
    counter!("gscluster_deltas_duplicate_total").increment(duplicate);
    counter!("gscluster_files_written_total").increment(files);
    histogram!("gscluster_apply_duration_seconds").record(took.as_secs_f64());
}

pub fn record_rejected() {
    counter!("gscluster_deltas_rejected_total").increment(1);
}

pub fn record_files_written(files: u64) {
    counter!("gscluster_files_written_total").increment(files);
}

pub fn record_reload(ok: bool, took: Duration) {
    let result = if ok { "ok" } else { "failed" };
    counter!("gscluster_reloads_total", "result" => result).increment(1);
    histogram!("gscluster_reload_duration_seconds").record(took.as_secs_f64());
}

pub fn record_reload_skipped() {
    counter!("gscluster_reloads_skipped_total").increment(1);
}

pub fn record_per_object(changes: usize) {
    counter!("gscluster_reload_per_object_total").increment(changes as u64);
}

pub fn record_turn_wait(waited: Duration) {
    histogram!("gscluster_reload_turn_wait_seconds").record(waited.as_secs_f64());
}

/// 0: no reload turn, 1: waiting for one, 2: holding one.
pub fn record_turn(state: u8) {
    gauge!("gscluster_reload_turn").set(f64::from(state));
}

pub fn record_lag(origin: &str, deltas: u64) {
    gauge!("gscluster_lag_deltas", "origin" => origin.to_string()).set(deltas as f64);
}

pub fn record_history(e: &crate::history::Extent) {
    gauge!("gscluster_history_bytes").set(e.bytes as f64);
    gauge!("gscluster_history_changes").set(e.groups as f64);
    gauge!("gscluster_history_oldest_timestamp_seconds").set(e.oldest_ms as f64 / 1000.0);
}

pub fn record_connected(up: bool) {
    gauge!("gscluster_broker_connected").set(if up { 1.0 } else { 0.0 });
    if up {
        counter!("gscluster_broker_connections_total").increment(1);
    }
}

pub fn record_resync() {
    counter!("gscluster_resyncs_total").increment(1);
}

pub fn record_gap() {
    counter!("gscluster_gaps_total").increment(1);
}

pub fn record_drift() {
    counter!("gscluster_drift_events_total").increment(1);
}
