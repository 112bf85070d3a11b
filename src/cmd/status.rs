//! `gscluster status [--json]`: every node of the group, from the retained status topic.
//!
//! Connects to the first reachable broker of `[mqtt] servers` with a throw-away clean session,
//! subscribes to `{prefix}/{group}/status/+`, gathers the retained statuses (each authenticated
//! with the group key when one is configured), and reports per node: online or offline (the
//! MQTT last will), role, version, stream published, outbox, per origin the Delta applied and
//! the lag, reloads, last error, keystore digest, drift. DOCS: docs/monitoring.md.
//!
//! Exit status: 0 when every node is online, none lags beyond the thresholds and the keystores
//! agree; 1 otherwise (usable as a monitoring check); 2 on bad usage; 3 when the cluster's
//! status cannot be read (configuration, no broker reachable).

use crate::clock::now_ms;
use crate::config::{self, Config};
use crate::delta;
use crate::mqtt::{retained, Topics};
use crate::security::Auth;
use crate::status::report::{report, table};
use crate::status::Status;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

pub use crate::status::report::Limits;

/// Gather the retained statuses of the group from the first broker that answers.
pub async fn gather(cfg: &Config, auth: &Auth) -> Result<(String, Vec<Status>), String> {
    let topics = Topics::new(&cfg.mqtt.topic_prefix, &cfg.node.group);
    let client_id = format!("{}-status-{}", cfg.node.id, std::process::id());
    let (server, messages) = retained::read(&cfg.mqtt, &client_id, &topics.status_filter()).await?;
    let mut statuses: BTreeMap<String, Status> = BTreeMap::new();
    for (topic, payload) in messages {
        let node = topic.rsplit('/').next().unwrap_or("").to_string();
        let decoded = delta::decode_part(&payload, &cfg.node.group, auth)
            .map_err(|e| e.to_string())
            .and_then(|part| Status::decode(part).map_err(|e| e.to_string()));
        match decoded {
            Ok(s) if s.node == node => {
                statuses.insert(node, s);
            }
            Ok(s) => eprintln!(
                "gscluster status: ignored a status of {:?} on the topic of {node:?}",
                s.node
            ),
            Err(e) => eprintln!("gscluster status: ignored the status on {topic}: {e}"),
        }
    }
    Ok((server, statuses.into_values().collect()))
}

/// `gscluster status`.
pub fn run(config_path: &Path, json: bool, limits: Limits) -> ExitCode {
    let cfg = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gscluster status: {e}");
            return ExitCode::from(3);
        }
    };
    let auth = cfg.auth();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gscluster status: {e}");
            return ExitCode::from(3);
        }
    };
    let (broker, statuses) = match rt.block_on(gather(&cfg, &auth)) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("gscluster status: {e}");
            return ExitCode::from(3);
        }
    };
    let r = report(&cfg.node.group, &broker, &statuses, now_ms(), limits);
    if json {
        match serde_json::to_string_pretty(&r) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("gscluster status: {e}");
                return ExitCode::from(3);
            }
        }
    } else {
        print!("{}", table(&r));
    }
    if r.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
