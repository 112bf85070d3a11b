//! `[metrics]`: `/metrics` in the Prometheus text format and `/healthz`, scraped from real
//! nodes during a burst.

use crate::support::cluster::Cluster;
use crate::support::generator::Spec;
use crate::support::node::{free_port, wait_until_logs};
use crate::support::run::get;
use std::collections::BTreeMap;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// Parse the Prometheus text exposition format strictly enough to catch a malformed line:
/// `# HELP name text`, `# TYPE name kind`, or `name{label="value",...} number`. Returns the
/// samples, keyed by name with labels as written.
fn parse_exposition(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut samples = BTreeMap::new();
    let mut typed = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !name_ok(name) {
                return Err(format!("bad metric name in {line:?}"));
            }
            match kind {
                "HELP" => {}
                "TYPE" => {
                    let t = parts.next().unwrap_or("");
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(format!("bad type in {line:?}"));
                    }
                    typed.insert(name.to_string(), t.to_string());
                }
                _ => return Err(format!("unknown comment {line:?}")),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("no value in {line:?}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value in {line:?}"))?,
        };
        let name = series.split('{').next().unwrap();
        if !name_ok(name) {
            return Err(format!("bad metric name in {line:?}"));
        }
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .ok_or_else(|| format!("bad labels in {line:?}"))?;
                for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once("=\"")
                        .ok_or_else(|| format!("bad label in {line:?}"))?;
                    if !name_ok(k) || v.trim_end_matches('"').contains('"') {
                        return Err(format!("bad label in {line:?}"));
                    }
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.contains_key(*f))
            .unwrap_or(name);
        if !typed.contains_key(family) {
            return Err(format!("sample without a # TYPE line: {line:?}"));
        }
        samples.insert(series.to_string(), value);
    }
    Ok(samples)
}

fn scrape(port: u16) -> BTreeMap<String, f64> {
    let (code, body) = get(port, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    parse_exposition(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

fn value(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[test]
fn metrics_move_during_a_burst_and_health_follows_the_broker() {
    let master_port = free_port();
    let slave_port = free_port();
    let ports = std::sync::Mutex::new(vec![master_port, slave_port]);
    let mut c = Cluster::start_with(&Spec::small(), 51, 1, move |cfg| {
        let port = ports.lock().unwrap().remove(0);
        cfg.metrics_listen = Some(format!("127.0.0.1:{port}"));
    });
    for port in [master_port, slave_port] {
        let (code, body) = get(port, "/healthz").unwrap();
        assert_eq!(code, 200, "{body}");
    }
    let before_m = scrape(master_port);
    let before_s = scrape(slave_port);
    assert_eq!(value(&before_m, "gscluster_broker_connected"), 1.0);

    // A burst of 40 new style bodies, scraped while it is on its way.
    let mut during = Vec::new();
    for k in 0..40 {
        let sld = format!("<StyledLayerDescriptor><!-- {k} --></StyledLayerDescriptor>");
        std::fs::write(
            c.master_data.path().join(format!("styles/metrics_{k}.sld")),
            sld,
        )
        .unwrap();
        if k % 10 == 0 {
            during.push(scrape(slave_port));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    c.converge(DEADLINE);
    assert!(!during.is_empty());
    wait_until_logs("the slave reloaded", DEADLINE, &[&c.slaves[0].node], || {
        value(
            &scrape(slave_port),
            "gscluster_reloads_total{result=\"ok\"}",
        ) >= 1.0
    });
    let after_m = scrape(master_port);
    let after_s = scrape(slave_port);
    let moved = |b: &BTreeMap<String, f64>, a: &BTreeMap<String, f64>, s: &str| {
        assert!(
            value(a, s) > value(b, s),
            "{s} did not move: {} → {}",
            value(b, s),
            value(a, s)
        );
    };
    moved(&before_m, &after_m, "gscluster_deltas_published_total");
    moved(&before_m, &after_m, "gscluster_published_bytes_total");
    moved(&before_s, &after_s, "gscluster_deltas_applied_total");
    moved(&before_s, &after_s, "gscluster_files_written_total");
    moved(&before_s, &after_s, "gscluster_received_bytes_total");
    moved(
        &before_s,
        &after_s,
        "gscluster_apply_duration_seconds_count",
    );
    assert_eq!(value(&after_m, "gscluster_outbox_deltas"), 0.0);
    assert_eq!(value(&after_s, "gscluster_broker_connected"), 1.0);
    assert_eq!(
        value(&after_s, "gscluster_lag_deltas{origin=\"gs-master\"}"),
        0.0
    );
    assert!(value(&after_s, "gscluster_reload_duration_seconds_count") >= 1.0);
    assert!(
        after_s.contains_key("gscluster_apply_duration_seconds_bucket{le=\"+Inf\"}"),
        "{after_s:?}"
    );

    // The broker (embedded in the master) goes away: the slave's health says so.
    c.master.kill9();
    wait_until_logs(
        "the slave unhealthy",
        DEADLINE,
        &[&c.slaves[0].node],
        || get(slave_port, "/healthz").is_ok_and(|(code, _)| code == 503),
    );
    assert_eq!(
        value(&scrape(slave_port), "gscluster_broker_connected"),
        0.0
    );
}

#[test]
fn the_exposition_parser_rejects_malformed_text() {
    assert!(parse_exposition("# TYPE a counter\na 1\n").is_ok());
    assert!(parse_exposition("a 1\n").is_err(), "no TYPE");
    assert!(parse_exposition("# TYPE a counter\na one\n").is_err());
    assert!(parse_exposition("# TYPE a counter\na{b=1} 1\n").is_err());
    assert!(parse_exposition("# TYPE 9a counter\n").is_err());
    assert!(parse_exposition("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\nh_count 3\n").is_ok());
}
