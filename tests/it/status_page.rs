//! The status page a node's metrics listener serves (issue 18), read by a real headless
//! browser: Debian's `chromium` renders it (`--dump-dom`, and a phone-sized screenshot); where
//! no chromium can be had the test says it skipped that part and checks the HTML as served.

use crate::support::cluster::Cluster;
use crate::support::generator::Spec;
use crate::support::node::{free_port, wait_until_logs};
use crate::support::run::get;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// The page as a browser renders it, or as served when there is no browser.
fn rendered(port: u16, browser: Option<&Path>) -> String {
    let url = format!("http://127.0.0.1:{port}/");
    match browser {
        Some(b) => {
            let out = Command::new(b)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--dump-dom",
                    &url,
                ])
                .output()
                .expect("run the browser");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        None => get(port, "/").map(|(_, body)| body).unwrap_or_default(),
    }
}

fn chromium() -> Option<std::path::PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

#[test]
fn the_status_page_shows_a_live_cluster_and_a_stopped_node_as_offline() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let next = std::sync::Mutex::new(ports.clone());
    let mut c = Cluster::start_with(&Spec::small(), 61, 2, move |cfg| {
        let port = next.lock().unwrap().remove(0);
        cfg.metrics_listen = Some(format!("127.0.0.1:{port}"));
    });
    c.converge(DEADLINE);
    let browser = chromium();
    if browser.is_none() {
        eprintln!("SKIPPED the browser: no chromium here (apt-get install chromium); checking the HTML as served");
    }
    let slave_port = ports[1];
    let ids: Vec<String> = std::iter::once(c.master.config().id.clone())
        .chain(c.slaves.iter().map(|s| s.node.config().id.clone()))
        .collect();
    let row = |id: &str, state: &str| format!("<tr class=\"{state}\" id=\"node-{id}\">");
    let nodes: Vec<_> = std::iter::once(&c.master)
        .chain(c.slaves.iter().map(|s| &s.node))
        .collect();
    wait_until_logs(
        "the page shows three nodes online",
        DEADLINE,
        &nodes,
        || {
            let page = rendered(slave_port, browser.as_deref());
            ids.iter().all(|id| page.contains(&row(id, "online")))
        },
    );
    let (code, json) = get(slave_port, "/status.json").unwrap();
    assert_eq!(code, 200, "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(3), "{json}");
    assert_eq!(json["problems"].as_array().map(Vec::len), Some(0), "{json}");

    if let Some(b) = &browser {
        let shot = tempfile::tempdir().unwrap();
        let png = shot.path().join("status-phone.png");
        let out = Command::new(b)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg("--window-size=412,915")
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("http://127.0.0.1:{slave_port}/"))
            .output()
            .unwrap();
        let bytes = std::fs::read(&png).unwrap_or_else(|e| {
            panic!(
                "no screenshot ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{} bytes",
            bytes.len()
        );
        // Kept for a person to look at when asked to.
        if let Ok(dir) = std::env::var("GSCLUSTER_TEST_SCREENSHOTS") {
            std::fs::copy(&png, Path::new(&dir).join("status-phone.png")).unwrap();
        }
    }

    // The second slave stops: the page of the first says so.
    let stopped = ids[2].clone();
    drop(nodes);
    c.slaves[1].node.stop();
    let nodes = [&c.master, &c.slaves[0].node];
    wait_until_logs(
        "the page shows the stopped node offline",
        DEADLINE,
        &nodes,
        || {
            let page = rendered(slave_port, browser.as_deref());
            page.contains(&row(&stopped, "offline")) && page.contains("problem(s)")
        },
    );

    // Taken out for good: its retained status cleared (docs/monitoring.md), it leaves the
    // page, and with it the problem.
    let port: u16 = c.servers()[0].rsplit(':').next().unwrap().parse().unwrap();
    clear_retained(port, &format!("gscluster/test/status/{stopped}"));
    wait_until_logs("the page forgets the node", DEADLINE, &nodes, || {
        let page = rendered(slave_port, browser.as_deref());
        !page.contains(&format!("id=\"node-{stopped}\"")) && page.contains("No problems")
    });
}

/// Publish an empty retained message on `topic` (QoS 1, waiting for the broker's PUBACK).
fn clear_retained(port: u16, topic: &str) {
    let opts = rumqttc::MqttOptions::new("operator", "127.0.0.1", port);
    let (client, mut connection) = rumqttc::Client::new(opts, 8);
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, true, Vec::new())
        .unwrap();
    for event in connection.iter() {
        if let Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_))) = event {
            break;
        }
    }
    client.disconnect().ok();
}
