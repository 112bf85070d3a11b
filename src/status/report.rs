//! The group's statuses read as a report: per node its state, lag per origin, reloads,
//! keystore, drift; and the problems, in plain sentences. `gscluster status` prints it as a
//! table or JSON; a node's metrics listener serves it as a page and as JSON (`page`).

use crate::status::Status;
use serde::Serialize;
use std::collections::BTreeMap;

/// Thresholds for the exit status.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A node this many seconds without progress on an origin it is behind is lagging.
    pub max_lag_s: u64,
    /// A node this many Deltas behind an origin is lagging (`None`: only seconds count).
    pub max_lag_deltas: Option<u64>,
}

impl Default for Limits {
    /// `gscluster status` without `--max-lag-s` or `--max-lag`.
    fn default() -> Limits {
        Limits {
            max_lag_s: 60,
            max_lag_deltas: None,
        }
    }
}

/// The whole report, as `--json` prints it. Field names are stable: scripts read them.
#[derive(Serialize, Debug)]
pub struct Report {
    pub group: String,
    pub broker: String,
    pub at_unix_ms: u64,
    pub nodes: Vec<NodeReport>,
    /// Plain sentences, one per problem; empty when all is well.
    pub problems: Vec<String>,
}

#[derive(Serialize, Debug)]
pub struct NodeReport {
    pub node: String,
    pub online: bool,
    pub role: String,
    pub version: String,
    /// When the node made this status (0: its last will, time unknown).
    pub status_at_unix_ms: u64,
    pub epoch: u64,
    pub published: u64,
    pub published_at_unix_ms: u64,
    pub outbox: u64,
    pub synced: bool,
    /// Per publishing origin this node applies from.
    pub applied: BTreeMap<String, OriginLag>,
    pub reload: Option<crate::status::ReloadInfo>,
    pub last_error: Option<String>,
    pub last_error_at_unix_ms: u64,
    pub keystore: Option<String>,
    /// `false` when another node reports a different keystore digest.
    pub keystore_matches: bool,
    pub drift_events: u64,
    pub lagging: bool,
    /// Its reload turn (`max_concurrent_reloads`): waiting for one since, or holding one.
    pub lease: Option<crate::reload::Claim>,
    /// What its history keeps (docs/history.md); `None`: it keeps none.
    pub history: Option<crate::history::Extent>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct OriginLag {
    pub epoch: u64,
    pub seq: u64,
    pub at_unix_ms: u64,
    /// Deltas the origin announced that this node has not applied.
    pub lag_deltas: u64,
    /// While behind: seconds since this node last made progress on that origin (or since the
    /// origin published, when it applied nothing of it since it started). 0 when in step.
    pub lag_s: u64,
    /// Deltas of that origin this node skipped and still lacks (a resync fills them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<crate::state::Hole>,
}

/// Build the report from the statuses gathered, `now` in Unix milliseconds.
pub fn report(group: &str, broker: &str, statuses: &[Status], now: u64, limits: Limits) -> Report {
    let by_node: BTreeMap<&str, &Status> = statuses.iter().map(|s| (s.node.as_str(), s)).collect();
    let digests: std::collections::BTreeSet<&str> = statuses
        .iter()
        .filter_map(|s| s.keystore.as_deref())
        .collect();
    let mut problems = Vec::new();
    let mut nodes = Vec::new();
    for s in by_node.values() {
        let applies = s.role == "slave" || s.role == "both";
        let mut applied = BTreeMap::new();
        let mut lagging = false;
        if applies {
            for o in by_node.values() {
                let publishes = o.role == "master" || o.role == "both";
                if !publishes || o.node == s.node {
                    continue;
                }
                let (lag, behind) = origin_lag(s, o, now, limits, &mut problems);
                lagging |= behind;
                applied.insert(o.node.clone(), lag);
            }
        }
        if !s.online {
            problems.push(format!("{} is offline", s.node));
        }
        let keystore_matches = s.keystore.is_none() || digests.len() <= 1;
        nodes.push(NodeReport {
            node: s.node.clone(),
            online: s.online,
            role: s.role.clone(),
            version: s.version.clone(),
            status_at_unix_ms: s.at_unix_ms,
            epoch: s.epoch,
            published: s.published,
            published_at_unix_ms: s.published_at_unix_ms,
            outbox: s.outbox,
            synced: s.synced,
            applied,
            reload: s.reload.clone(),
            last_error: s.last_error.clone(),
            last_error_at_unix_ms: s.last_error_at_unix_ms,
            keystore: s.keystore.clone(),
            keystore_matches,
            drift_events: s.drift_events,
            lagging,
            lease: s.lease.filter(|_| s.online),
            history: s.history,
        });
    }
    if digests.len() > 1 {
        let who: Vec<String> = (nodes.iter())
            .filter_map(|n| n.keystore.as_ref().map(|k| format!("{} {k}", n.node)))
            .collect();
        problems.push(format!(
            "the nodes' security/geoserver.jceks differ ({}): store passwords encrypted on one node cannot be decrypted on the others",
            who.join(", ")
        ));
    }
    Report {
        group: group.to_string(),
        broker: broker.to_string(),
        at_unix_ms: now,
        nodes,
        problems,
    }
}

/// Where node `s` stands on publisher `o`'s stream at `now`, and whether that makes it lagging
/// (each reason said in `problems`).
fn origin_lag(
    s: &Status,
    o: &Status,
    now: u64,
    limits: Limits,
    problems: &mut Vec<String>,
) -> (OriginLag, bool) {
    let mut behind = false;
    let mine = s.applied.get(&o.node);
    let lag_deltas = match mine {
        Some(a) if a.epoch == o.epoch => o.published.saturating_sub(a.seq),
        _ => o.published,
    };
    let since = match mine {
        Some(a) if a.at_unix_ms > 0 => a.at_unix_ms,
        _ => o.published_at_unix_ms,
    };
    let lag_s = if lag_deltas == 0 || since == 0 {
        0
    } else {
        now.saturating_sub(since) / 1000
    };
    let over = lag_s > limits.max_lag_s || limits.max_lag_deltas.is_some_and(|m| lag_deltas > m);
    if over {
        behind = true;
        problems.push(format!(
            "{} is {lag_deltas} delta(s) behind {} and has made no progress on it for {lag_s} s",
            s.node, o.node
        ));
    }
    let missing = mine.and_then(|a| a.missing);
    if let Some(h) = missing {
        behind = true;
        problems.push(format!(
            "{} lacks deltas {}–{} of {} (skipped; a resync from a node that holds them fills them)",
            s.node,
            h.from,
            if h.to == u64::MAX { "…".to_string() } else { h.to.to_string() },
            o.node
        ));
    }
    let (epoch, seq, at) = mine.map_or((0, 0, 0), |a| (a.epoch, a.seq, a.at_unix_ms));
    let lag = OriginLag {
        epoch,
        seq,
        at_unix_ms: at,
        lag_deltas,
        lag_s,
        missing,
    };
    (lag, behind)
}

/// "12 s ago", "3 min ago", "never".
fn ago(now: u64, at: u64) -> String {
    if at == 0 {
        return "-".into();
    }
    let s = now.saturating_sub(at) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// The columns of a node's row, as the table heads them.
pub const HEADINGS: [&str; 11] = [
    "NODE",
    "ROLE",
    "STATE",
    "VERSION",
    "PUBLISHED",
    "OUTBOX",
    "APPLIED (LAG)",
    "RELOAD",
    "KEYSTORE",
    "DRIFT",
    "LAST ERROR",
];

/// The report as a table for a person.
pub fn table(r: &Report) -> String {
    let mut rows = vec![HEADINGS.map(String::from)];
    rows.extend(r.nodes.iter().map(|n| row(n, r.at_unix_ms)));
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "group {}: {} node(s) via {}\n",
        r.group,
        r.nodes.len(),
        r.broker
    );
    for row in &rows {
        let cells: Vec<String> = (row.iter().zip(&widths))
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
    }
    if r.problems.is_empty() {
        out += "no problems\n";
    } else {
        out += "problems:\n";
        for p in &r.problems {
            out += &format!("  {p}\n");
        }
    }
    out
}

/// One node's row of the table, at `now`.
pub fn row(n: &NodeReport, now: u64) -> [String; 11] {
    let state = match (n.online, n.lagging) {
        (false, _) => "OFFLINE",
        (true, true) => "LAGGING",
        (true, false) => "online",
    };
    let published = if n.role == "slave" {
        "-".to_string()
    } else {
        format!("{} ({})", n.published, ago(now, n.published_at_unix_ms))
    };
    let applied = if n.applied.is_empty() {
        "-".to_string()
    } else {
        (n.applied.iter())
            .map(|(o, a)| {
                let shown = if a.lag_deltas == 0 {
                    format!("{o} {}", a.seq)
                } else {
                    format!("{o} {} (-{}, {} s)", a.seq, a.lag_deltas, a.lag_s)
                };
                match a.missing {
                    Some(h) if h.to == u64::MAX => format!("{shown} (lacks {}…)", h.from),
                    Some(h) => format!("{shown} (lacks {}–{})", h.from, h.to),
                    None => shown,
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let reload = match &n.reload {
        None => "-".to_string(),
        Some(rl) => {
            let skipped = match rl.skipped {
                0 => String::new(),
                n => format!(", {n} not needed"),
            };
            let skipped = match rl.per_object {
                0 => skipped,
                n => format!("{skipped}, {n} per object"),
            };
            let skipped = match rl.reloading_ms {
                0 => skipped,
                ms => format!("{skipped}, {:.1} s reloading", ms as f64 / 1000.0),
            };
            let skipped = match rl.waiting_ms {
                0 => skipped,
                ms => format!("{skipped}, {:.1} s waiting for turns", ms as f64 / 1000.0),
            };
            match (&rl.last_result, rl.last_at_unix_ms) {
                (Some(res), Some(at)) => format!(
                    "{} {} ({} ok, {} failed{skipped})",
                    if res == "ok" { "ok" } else { "FAILED" },
                    ago(now, at),
                    rl.ok,
                    rl.failed
                ),
                _ if rl.skipped > 0 => format!("none yet ({} not needed)", rl.skipped),
                _ => "none yet".to_string(),
            }
        }
    };
    let reload = match n.lease {
        None => reload,
        Some(c) if c.holding => format!(
            "holds a reload turn (queued {}); {reload}",
            ago(now, c.since_unix_ms)
        ),
        Some(c) => format!(
            "waits for a reload turn (queued {}); {reload}",
            ago(now, c.since_unix_ms)
        ),
    };
    let keystore = match (&n.keystore, n.keystore_matches) {
        (None, _) => "-".to_string(),
        (Some(k), true) => k.clone(),
        (Some(k), false) => format!("{k} DIFFERS"),
    };
    let error = match &n.last_error {
        None => "-".to_string(),
        Some(e) => format!("{} ({})", e, ago(now, n.last_error_at_unix_ms)),
    };
    [
        n.node.clone(),
        n.role.clone(),
        state.to_string(),
        n.version.clone(),
        published,
        n.outbox.to_string(),
        applied,
        reload,
        keystore,
        n.drift_events.to_string(),
        error,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Hole;
    use crate::status::Applied;

    #[test]
    fn deltas_a_node_lacks_are_shown_and_are_a_problem_until_filled() {
        let both = Status::new("gs-both", "both", true, 7, 140);
        let mut slave = Status::new("gs-slave", "slave", true, 1, 0);
        let hole = Hole {
            epoch: 7,
            from: 100,
            to: 126,
        };
        slave.applied.insert(
            "gs-both".into(),
            Applied {
                epoch: 7,
                seq: 140,
                at_unix_ms: 1,
                missing: Some(hole),
            },
        );
        let limits = Limits::default();
        let r = report("g", "b", &[both.clone(), slave.clone()], 2, limits);
        let n = r.nodes.iter().find(|n| n.node == "gs-slave").unwrap();
        assert!(n.lagging, "in step by position, but lacking");
        assert_eq!(n.applied["gs-both"].missing, Some(hole));
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("lacks deltas 100–126 of gs-both")),
            "{:?}",
            r.problems
        );
        assert!(
            table(&r).contains("gs-both 140 (lacks 100–126)"),
            "{}",
            table(&r)
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["nodes"][1]["applied"]["gs-both"]["missing"]["from"],
            100
        );

        slave.applied.get_mut("gs-both").unwrap().missing = None;
        let r = report("g", "b", &[both, slave], 2, limits);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["nodes"][1]["applied"]["gs-both"]
            .get("missing")
            .is_none());
    }
}
