//! The TOML configuration: parsed, defaulted and validated up front.
//!
//! Every error names the key (`[section] key`) or the path it is about and says why, so that
//! `gscluster check` and a failed start tell the administrator exactly what to fix. Unknown keys
//! are errors: a typo must never silently fall back to a default.

use std::path::{Path, PathBuf};

pub mod defaults;
mod raw;
mod role;
mod types;
mod validate;

use raw::RawConfig;
pub use role::{OnDrift, Role};
pub use types::*;
pub use validate::parse_server;
use validate::validate;

/// Where the configuration is read from when neither `-c` nor `GSCLUSTER_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/gscluster/config.toml";

/// Read and validate the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base = std::path::absolute(&base).unwrap_or(base);
    parse_relative_to(&text, &base).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
}

/// Parse and validate configuration text; relative paths must not occur.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError(toml_error(text, &e)))?;
    validate(raw, None)
}

/// Parse and validate configuration text; relative paths are taken relative to `base` (the
/// config file's folder), so an example config can point at files beside it.
pub fn parse_relative_to(text: &str, base: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError(toml_error(text, &e)))?;
    validate(raw, Some(base))
}

/// One line for logs that names the key (`[section] key`), the line, and toml's reason.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else {
        return format!("invalid config: {msg}");
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text[..start]
        .rfind('\n')
        .map_or(text, |i| &text[i + 1..])
        .lines()
        .next()
        .unwrap_or("")
        .trim();
    let section = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.split(']').next().unwrap_or(l).to_string() + "]");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    match (section, key) {
        (Some(s), Some(k)) => format!("{s} {k} (line {line_no}): {msg}"),
        (None, Some(k)) => format!("{k} (line {line_no}): {msg}"),
        _ => format!("line {line_no}: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIN: &str =
        "[node]\nid = \"a\"\nstate_dir = \"/tmp/st\"\n[geoserver]\ndata_dir = \"/tmp/dd\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.node.role, Role::Both);
        assert_eq!(c.node.group, "default");
        assert_eq!(c.mqtt.servers[0].port, 1883);
        assert_eq!(c.geoserver.reload_quiet, Duration::from_millis(1000));
        assert!(c.broker.is_none());
    }

    #[test]
    fn failback_and_rescan_defaults_and_bounds() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.mqtt.failback, Some(Duration::from_secs(30)));
        assert_eq!(c.master.rescan_interval, None, "chosen by the detector");
        let c = parse(&format!(
            "{MIN}[mqtt]\nfailback_s = 0\n[master]\nrescan_interval_s = 5\n"
        ))
        .unwrap();
        assert_eq!(c.mqtt.failback, None);
        assert_eq!(c.master.rescan_interval, Some(Duration::from_secs(5)));
        let e = parse(&format!("{MIN}[mqtt]\nfailback_s = 100000\n")).unwrap_err();
        assert!(e.0.contains("[mqtt] failback_s"), "{e}");
    }

    #[test]
    fn max_concurrent_reloads_is_a_count_a_share_or_no_limit() {
        let limit = |v: &str| {
            parse(&format!("{MIN}max_concurrent_reloads = {v}\n"))
                .map(|c| c.geoserver.max_concurrent_reloads)
        };
        let default = parse(MIN).unwrap().geoserver;
        assert_eq!(default.max_concurrent_reloads, ReloadLimit::Percent(50));
        assert_eq!(default.lease_timeout, Duration::from_secs(30));
        assert_eq!(limit("0").unwrap(), ReloadLimit::Unlimited);
        assert_eq!(limit("1").unwrap(), ReloadLimit::Nodes(1));
        assert_eq!(limit("\"3\"").unwrap(), ReloadLimit::Nodes(3));
        assert_eq!(limit("\"25%\"").unwrap(), ReloadLimit::Percent(25));
        for bad in ["-1", "\"0%\"", "\"150%\"", "\"half\"", "1.5"] {
            let e = limit(bad).unwrap_err();
            assert!(
                e.0.contains("[geoserver] max_concurrent_reloads"),
                "{bad}: {e}"
            );
        }
        // 50 % of the online applying nodes, rounded down, never below one.
        let half = ReloadLimit::Percent(50);
        let of: Vec<_> = (1..=5).map(|n| half.of(n)).collect();
        assert_eq!(of, [Some(1), Some(1), Some(1), Some(2), Some(2)]);
        assert_eq!(ReloadLimit::Unlimited.of(4), None);
        let share = |v: &str| {
            parse(&format!("{MIN}reload_max_share = {v}\n")).map(|c| c.geoserver.reload_max_share)
        };
        assert_eq!(default.reload_max_share, 25);
        assert_eq!(default.apply, ApplyMode::Reload);
        let c = parse(&format!("{MIN}apply = \"per-object\"\n")).unwrap();
        assert_eq!(c.geoserver.apply, ApplyMode::PerObject);
        assert_eq!(default.convergence_reload, None);
        let at = |v: &str| {
            parse(&format!("{MIN}convergence_reload = \"{v}\"\n"))
                .map(|c| c.geoserver.convergence_reload)
        };
        assert_eq!(at("03:00").unwrap(), Some(3 * 3600));
        assert_eq!(at("23:59:30").unwrap(), Some(86_370));
        for bad in ["3:00", "24:00", "03:60", "noon", "03:00:00:00"] {
            let e = at(bad).unwrap_err();
            assert!(e.0.contains("[geoserver] convergence_reload"), "{bad}: {e}");
        }
        let e = parse(&format!("{MIN}apply = \"rest\"\n")).unwrap_err();
        assert!(e.0.contains("[geoserver] apply"), "{e}");
        assert_eq!(share("\"100%\"").unwrap(), 100);
        assert_eq!(share("40").unwrap(), 40);
        for bad in ["0", "\"101%\"", "\"most\""] {
            let e = share(bad).unwrap_err();
            assert!(e.0.contains("[geoserver] reload_max_share"), "{bad}: {e}");
        }
        let e = parse(&format!("{MIN}reload_lease_timeout_ms = 10\n")).unwrap_err();
        assert!(
            e.0.contains("[geoserver] reload_lease_timeout_ms 10"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse(&format!("{MIN}relod_quiet_ms = 5\n")).unwrap_err();
        assert!(e.0.contains("relod_quiet_ms"), "{e}");
    }

    #[test]
    fn bad_enum_and_bad_type_name_their_key_and_line() {
        let e = parse("[node]\nid = \"a\"\nrole = \"boss\"\n[geoserver]\ndata_dir=\"/x\"\n")
            .unwrap_err();
        assert!(e.0.starts_with("[node] role (line 3):"), "{e}");
        assert!(e.0.contains("boss"), "{e}");
        let e = parse(&format!("{MIN}reload_quiet_ms = \"x\"\n")).unwrap_err();
        assert!(
            e.0.starts_with("[geoserver] reload_quiet_ms (line 6):"),
            "{e}"
        );
    }

    #[test]
    fn history_is_on_by_default_and_its_limits_are_checked() {
        use super::types::History;
        let on = History {
            keep_days: 30,
            max_mb: 512,
            max_changes: 100_000,
        };
        assert_eq!(parse(MIN).unwrap().history, Some(on));
        let c = parse(&format!(
            "{MIN}[history]
keep_days = 7
max_mb = 64
"
        ))
        .unwrap();
        assert_eq!(
            (c.history.unwrap().keep_days, c.history.unwrap().max_mb),
            (7, 64)
        );
        assert_eq!(
            parse(&format!(
                "{MIN}[history]
enabled = false
"
            ))
            .unwrap()
            .history,
            None
        );
        let e = parse(&format!(
            "{MIN}[history]
max_mb = 0
"
        ))
        .unwrap_err();
        assert!(
            e.0.starts_with("[history] max_mb: must be at least 1"),
            "{e}"
        );
        let e = parse(&format!(
            "{MIN}[history]
keep = 3
"
        ))
        .unwrap_err();
        assert!(e.0.contains("keep"), "{e}");
    }

    #[test]
    fn resync_batches_default_to_2000_files_and_4_mib_and_are_bounded() {
        use super::types::Resync;
        let default = Resync {
            batch_files: 2000,
            batch_bytes: 4 << 20,
        };
        assert_eq!(parse(MIN).unwrap().resync, default);
        let c = parse(&format!(
            "{MIN}[resync]\nbatch_files = 200\nbatch_kb = 256\n"
        ))
        .unwrap();
        assert_eq!(
            c.resync,
            Resync {
                batch_files: 200,
                batch_bytes: 256 << 10
            }
        );
        for (line, says) in [
            (
                "batch_files = 0",
                "[resync] batch_files: 0 is not between 1 and 2000",
            ),
            (
                "batch_files = 5000",
                "[resync] batch_files: 5000 is not between",
            ),
            (
                "batch_kb = 8",
                "[resync] batch_kb: 8 is not between 16 and 4096",
            ),
            ("batch_kb = 100000", "[resync] batch_kb: 100000"),
        ] {
            let e = parse(&format!("{MIN}[resync]\n{line}\n")).unwrap_err();
            assert!(e.0.starts_with(says), "{line}: {e}");
        }
    }

    #[test]
    fn metrics_listen_is_an_address_and_port() {
        let c = parse(&format!("{MIN}[metrics]\nlisten = \"127.0.0.1:9464\"\n")).unwrap();
        assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(parse(MIN).unwrap().metrics, None);
        let e = parse(&format!("{MIN}[metrics]\nlisten = \"localhost\"\n")).unwrap_err();
        assert!(e.0.starts_with("[metrics] listen \"localhost\""), "{e}");
        let e = parse(&format!("{MIN}[metrics]\n")).unwrap_err();
        assert!(e.0.contains("[metrics] listen: required"), "{e}");
    }

    #[test]
    fn state_dir_inside_data_dir_is_refused() {
        let e = parse("[node]\nid = \"a\"\nstate_dir = \"/srv/gs/data/.gscluster\"\n[geoserver]\ndata_dir = \"/srv/gs/data\"\n").unwrap_err();
        assert!(e.0.contains("state_dir"), "{e}");
    }

    #[test]
    fn missing_data_dir_is_named() {
        let e = parse("[node]\nid = \"a\"\n[geoserver]\nurl = \"http://x\"\n").unwrap_err();
        assert!(e.0.contains("data_dir"), "{e}");
    }

    #[test]
    fn node_id_with_topic_wildcard_is_refused() {
        let e = parse("[node]\nid = \"a/#\"\n[geoserver]\ndata_dir = \"/x\"\n").unwrap_err();
        assert!(e.0.contains("[node] id"), "{e}");
    }

    #[test]
    fn servers_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_server("mqtt://broker.example:8883").unwrap(),
            Server {
                host: "broker.example".into(),
                port: 8883,
                tls: false
            }
        );
        assert_eq!(parse_server("mqtt://h").unwrap().port, 1883);
        let e = parse(&format!("{MIN}[mqtt]\nservers = [\"http://x\"]\n")).unwrap_err();
        assert!(e.0.contains("[mqtt] servers"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c = parse_relative_to(
            "[node]\nid = \"a\"\nstate_dir = \"st\"\n[geoserver]\ndata_dir = \"dd\"\n",
            Path::new("/etc/gs"),
        )
        .unwrap();
        assert_eq!(c.geoserver.data_dir, Path::new("/etc/gs/dd"));
        assert_eq!(c.node.state_dir, Path::new("/etc/gs/st"));
        assert!(parse("[node]\nid = \"a\"\n[geoserver]\ndata_dir = \"dd\"\n").is_err());
    }

    #[test]
    fn broker_section_defaults_and_limits() {
        let c = parse(&format!("{MIN}[broker]\n")).unwrap();
        let b = c.broker.unwrap();
        assert_eq!(b.listen.port(), 1883);
        let e = parse(&format!("{MIN}[broker]\nmax_packet_size = 1000\n")).unwrap_err();
        assert!(e.0.contains("max_packet_size"), "{e}");
    }
}
