//! `gscluster check`: validate the configuration and the data directory, and show what would
//! replicate, without starting anything.

use crate::config::{self, Config};
use crate::datadir::{self, CatalogIndex};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

/// Print findings; exit 1 when anything would stop the daemon.
pub fn run(config_path: &Path) -> ExitCode {
    let cfg = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut problems = folders(&cfg);
    describe(&cfg);
    if problems.is_empty() {
        if let Err(e) = what_replicates(&cfg) {
            problems.push(e);
        }
    }
    if problems.is_empty() {
        println!("ok");
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        ExitCode::from(1)
    }
}

/// What is wrong with the data directory and the state directory.
fn folders(cfg: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let data_dir = &cfg.geoserver.data_dir;
    if !data_dir.is_dir() {
        problems.push(format!(
            "[geoserver] data_dir {}: not a directory",
            data_dir.display()
        ));
    } else if let Err(e) = std::fs::read_dir(data_dir) {
        problems.push(format!(
            "[geoserver] data_dir {}: cannot read: {e}",
            data_dir.display()
        ));
    }
    let state_dir = &cfg.node.state_dir;
    match state_dir.ancestors().find(|a| a.exists()) {
        Some(a) if a.is_dir() => {
            if std::fs::metadata(a).is_ok_and(|m| m.permissions().readonly()) {
                problems.push(format!(
                    "[node] state_dir {}: {} is read-only",
                    state_dir.display(),
                    a.display()
                ));
            }
        }
        _ => problems.push(format!(
            "[node] state_dir {}: no existing parent folder",
            state_dir.display()
        )),
    }
    problems
}

/// The node, its brokers, its security and its GeoServer, one line each.
fn describe(cfg: &Config) {
    let servers: Vec<String> = cfg.mqtt.servers.iter().map(|s| s.to_string()).collect();
    println!(
        "node {} ({}) in group {}; brokers: {}{}",
        cfg.node.id,
        cfg.node.role.as_str(),
        cfg.node.group,
        servers.join(", "),
        cfg.broker
            .as_ref()
            .map(|b| format!("; embedded broker on {}", b.listen))
            .unwrap_or_default()
    );
    match &cfg.security {
        Some(s) => println!(
            "security: deltas signed and verified with the group key (HMAC-SHA256){}",
            if s.previous.is_empty() {
                String::new()
            } else {
                format!("; {} previous key(s) still accepted", s.previous.len())
            }
        ),
        None => println!(
            "security: OFF — deltas are not authenticated; set [security] key_file (docs/security.md)"
        ),
    }
    match &cfg.geoserver.url {
        Some(url) => println!("GeoServer: {url} (user {})", cfg.geoserver.user),
        None => println!("GeoServer: no url, reloads disabled"),
    }
}

/// What would replicate, per top-level folder, and the catalog references that do not resolve
/// in this data directory.
fn what_replicates(cfg: &Config) -> Result<(), String> {
    let data_dir = &cfg.geoserver.data_dir;
    let filter = cfg.filter()?;
    let files = datadir::scan(data_dir, &filter, std::slice::from_ref(&cfg.node.state_dir))
        .map_err(|e| {
            format!(
                "[geoserver] data_dir {}: scan failed: {e}",
                data_dir.display()
            )
        })?;
    let mut per_top: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for (rel, stat) in &files {
        let top = match rel.split_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => rel.clone(),
        };
        let e = per_top.entry(top).or_default();
        e.0 += 1;
        e.1 += stat.size;
    }
    println!("would replicate from {}:", data_dir.display());
    for (top, (n, bytes)) in &per_top {
        println!("  {n:>7} files {bytes:>12} bytes  {top}");
    }
    let total: u64 = per_top.values().map(|v| v.1).sum();
    println!("  {:>7} files {total:>12} bytes  in all", files.len());
    let catalog = CatalogIndex::build(data_dir, &filter);
    let all: Vec<String> = files.keys().cloned().collect();
    let unresolved = catalog.unresolved(&all, |rel| data_dir.join(rel).is_file());
    if !unresolved.is_empty() {
        println!(
            "note: {} catalog reference(s) do not resolve in this data directory (GeoServer skips those objects):",
            unresolved.len()
        );
        for u in unresolved.iter().take(20) {
            println!("  {} refers to missing {}", u.path, u.missing);
        }
    }
    Ok(())
}
